//! The spool on the DHCP host: one file per lease event, written atomically (temp file, fsync,
//! rename, fsync of the directory) so the hook can return to the DHCP server at once and a
//! crash or NetBox outage loses nothing; and, per MAC, the leases that wrote nothing to NetBox.
//!
//! ```text
//! <spool>/pending/<nanos>-<pid>-<rand>.json   waiting for NetBox, oldest first by name
//! <spool>/unknown/<MAC>.json                  leases from MACs NetBox has on no BMC interface
//! <spool>/unmanaged/<MAC>.json                leases from BMCs of devices racklift does not manage
//! <spool>/rejected/<MAC>.json                 leases NetBox refused (no prefix, a 4xx), until requeued
//! <spool>/corrupt/<pending name>.json         pending files racklift could not read, set aside
//! <spool>/counters.json                       what the drains did, summed
//! <spool>/drain.lock                          held by the one drain at work
//! <spool>/drain.log, drain.log.1              the detached drains' output, rotated by size
//! ```
//!
//! The per-MAC lists keep the latest event, the reason, a count and when the MAC was first seen
//! (`{event, reason, count, first_seen}`; the event's `received_at` is when it was last seen).
//! Each holds at most `dhcp.record_limit` MACs: the drain evicts the least recently seen.
//! A file that cannot be read never stops a listing: it is skipped and counted.
//!
//! This module owns the layout (the paths above), opening the spool, and what the drains share
//! (counters, the lock, the log); `pending` is the queue of events and `corrupt/`; `ignored` the
//! per-MAC lists, their listing and requeueing for `racklift dhcp-spool`; `files` how one record
//! is written, read, listed and trimmed on disk.

mod files;
mod ignored;
mod pending;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use files::Listing;
pub use ignored::{Ignored, IgnoredLease};
pub use pending::{Pending, PendingFile};

use files::{read_json, write_atomically};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "cannot {doing} {path}: check that the spool directory (dhcp.spool_dir) exists and is writable by the DHCP server's user"
    )]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a spool file racklift can read")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.to_owned();
    move |source| SpoolError::Io {
        doing,
        path,
        source,
    }
}

/// What the drains did, summed over their runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events that changed NetBox.
    pub applied: u64,
    /// Events NetBox already matched (a renewal with nothing new).
    pub unchanged: u64,
    /// Events dropped because a later event for the same MAC was spooled.
    pub superseded: u64,
    /// Events from MACs on no BMC interface in NetBox.
    pub unknown: u64,
    /// Events from BMCs of devices racklift does not manage (not enrolled, or out of scope).
    #[serde(default)]
    pub unmanaged: u64,
    /// Events NetBox refused for good.
    pub rejected: u64,
    /// Addresses NetBox holds on another interface (journaled, nothing else written).
    pub conflicts: u64,
}

impl Counters {
    pub fn add(&mut self, other: &Self) {
        self.applied += other.applied;
        self.unchanged += other.unchanged;
        self.superseded += other.superseded;
        self.unknown += other.unknown;
        self.unmanaged += other.unmanaged;
        self.rejected += other.rejected;
        self.conflicts += other.conflicts;
    }
}

#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// Opens the spool at `root`, creating its directories (mode 0700) if needed.
    pub fn open(root: &Path) -> Result<Self, SpoolError> {
        let spool = Self {
            root: root.to_owned(),
        };
        let ignored = Ignored::ALL.map(|kind| spool.ignored_dir(kind));
        for dir in [spool.pending_dir(), spool.corrupt_dir()]
            .into_iter()
            .chain(ignored)
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io("create", &dir))?;
        }
        Ok(spool)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    fn pending_dir(&self) -> PathBuf {
        self.root.join("pending")
    }
    pub fn corrupt_dir(&self) -> PathBuf {
        self.root.join("corrupt")
    }
    fn ignored_dir(&self, kind: Ignored) -> PathBuf {
        self.root.join(kind.dir_name())
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("drain.lock")
    }
    pub fn log_path(&self) -> PathBuf {
        self.root.join("drain.log")
    }

    pub fn counters(&self) -> Result<Counters, SpoolError> {
        Ok(read_json(&self.root.join("counters.json"))?.unwrap_or_default())
    }

    /// Adds `delta` to the counters. Only the drain holding the lock calls this.
    pub fn add_counters(&self, delta: &Counters) -> Result<(), SpoolError> {
        let mut total = self.counters()?;
        total.add(delta);
        write_atomically(&self.root.join("counters.json"), &total)
    }

    /// The drain lock, if no other drain holds it.
    pub fn try_lock(&self) -> Result<Option<File>, SpoolError> {
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io("lock", &path)(e)),
        }
    }

    /// Moves `drain.log` to `drain.log.1` (replacing it) once it is past `limit` bytes, so the
    /// drains' output on a DHCP host never grows past twice that. Returns whether it rotated.
    /// A drain still writing to the old file goes on writing to `drain.log.1`.
    pub fn rotate_log(&self, limit: u64) -> Result<bool, SpoolError> {
        let log = self.log_path();
        match fs::metadata(&log) {
            Ok(meta) if meta.len() > limit => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("inspect", &log)(e)),
        }
        match fs::rename(&log, self.root.join("drain.log.1")) {
            Ok(()) => Ok(true),
            // Another hook run rotated it a moment ago.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("rotate", &log)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::{LeaseEvent, LeaseEventKind};

    pub(super) fn event(mac: &str, at: &str) -> LeaseEvent {
        LeaseEvent {
            kind: LeaseEventKind::Commit,
            mac: mac.parse().expect("mac"),
            ip: "10.0.0.5".parse().expect("ip"),
            hostname: None,
            subnet: None,
            server: "test".into(),
            received_at: at.parse().expect("time"),
        }
    }

    pub(super) fn pending(spool: &Spool) -> Vec<Pending> {
        spool
            .pending_files()
            .expect("list")
            .iter()
            .filter_map(|path| match spool.read_pending(path).expect("read") {
                PendingFile::Event(pending) => Some(pending),
                PendingFile::Gone | PendingFile::SetAside => None,
            })
            .collect()
    }

    /// Pushes one event and returns it as the drain would find it.
    pub(super) fn spooled(spool: &Spool, mac: &str, at: &str) -> Pending {
        let path = spool.push(&event(mac, at)).expect("push");
        match spool.read_pending(&path).expect("read") {
            PendingFile::Event(pending) => pending,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unreadable_files_are_skipped_counted_and_set_aside_never_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let good = spooled(&spool, "02:00:00:00:00:0b", "2026-11-25T10:00:00Z");
        spool
            .record_ignored(Ignored::Rejected, &good, "no prefix")
            .expect("reject");
        fs::write(dir.path().join("rejected/garbage.json"), b"{\"event\": 1").expect("write");
        fs::write(dir.path().join("unknown/empty.json"), b"").expect("write");
        fs::write(
            dir.path().join("pending/00000000000000000001-1-0.json"),
            b"\xff\xfe",
        )
        .expect("write");

        let rejected = spool.ignored(Ignored::Rejected).expect("listing");
        assert_eq!((rejected.items.len(), rejected.unreadable), (1, 1));
        assert_eq!(rejected.dir, dir.path().join("rejected"));
        let unknown = spool.ignored(Ignored::Unknown).expect("listing");
        assert_eq!((unknown.items.len(), unknown.unreadable), (0, 1));

        assert!(
            pending(&spool).is_empty(),
            "the unreadable event is set aside"
        );
        assert!(!spool.has_pending().expect("look"));
        assert_eq!(spool.corrupt_count().expect("count"), 1);

        let requeued = spool.requeue_rejected().expect("requeue");
        assert_eq!((requeued.items.len(), requeued.unreadable), (1, 1));
        assert!(dir.path().join("rejected/garbage.json").exists());
    }

    #[test]
    fn the_drain_log_is_rotated_past_its_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        assert!(!spool.rotate_log(10).expect("no log yet"));
        fs::write(spool.log_path(), "0123456789").expect("write");
        assert!(!spool.rotate_log(10).expect("at the limit"));
        fs::write(spool.log_path(), "0123456789a").expect("write");
        assert!(spool.rotate_log(10).expect("past it"));
        assert!(!spool.log_path().exists());
        assert_eq!(
            fs::read_to_string(dir.path().join("drain.log.1")).expect("rotated"),
            "0123456789a"
        );
    }

    #[test]
    fn a_second_drain_cannot_take_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let held = spool.try_lock().expect("lock").expect("free");
        assert!(spool.try_lock().expect("lock").is_none());
        drop(held);
        assert!(spool.try_lock().expect("lock").is_some());
    }
}
