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

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{LeaseEvent, Mac};

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

/// Why a lease wrote nothing to NetBox. Kept per MAC (the latest event and a count) so the
/// operator can see it with `racklift dhcp-spool unknown|unmanaged|rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// NetBox has the MAC on no BMC interface.
    Unknown,
    /// The MAC is a BMC's, but racklift does not manage its device.
    Unmanaged,
    /// NetBox cannot take the lease as it stands (no prefix holds the address, a 4xx): kept
    /// until the operator fixes the cause and runs `racklift dhcp-spool requeue`.
    Rejected,
}

impl Ignored {
    pub const ALL: [Self; 3] = [Self::Unknown, Self::Unmanaged, Self::Rejected];

    fn dir_name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Unmanaged => "unmanaged",
            Self::Rejected => "rejected",
        }
    }
}

/// A lease that wrote nothing, per MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredLease {
    /// The latest event for the MAC; its `received_at` is when the MAC was last seen.
    pub event: LeaseEvent,
    pub reason: String,
    /// How many events for the MAC ended here since it was first seen.
    #[serde(default = "one")]
    pub count: u64,
    /// `at`: a rejected event as racklift before the per-MAC list wrote it, one file per event.
    #[serde(alias = "at")]
    pub first_seen: DateTime<Utc>,
}

const fn one() -> u64 {
    1
}

impl IgnoredLease {
    pub fn last_seen(&self) -> DateTime<Utc> {
        self.event.received_at
    }
}

/// The readable records of a directory, and how many files in it could not be read.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub unreadable: usize,
    pub dir: PathBuf,
}

/// One pending event and the file that holds it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub path: PathBuf,
    pub event: LeaseEvent,
}

/// What reading a pending file found.
#[derive(Debug)]
pub enum PendingFile {
    Event(Pending),
    /// Removed meanwhile (the operator, or a drain before the lock changed hands).
    Gone,
    /// It could not be read and was moved to `corrupt/`: it would fail every drain after this
    /// one too.
    SetAside,
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

    /// Writes `event` durably; returns its path. Names sort by arrival, and the pid and a
    /// random part keep concurrent hook runs (Kea runs several at once) from colliding.
    pub fn push(&self, event: &LeaseEvent) -> Result<PathBuf, SpoolError> {
        let nanos = event
            .received_at
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0);
        let name = format!(
            "{nanos:020}-{}-{:08x}.json",
            std::process::id(),
            fastrand::u32(..)
        );
        let path = self.pending_dir().join(name);
        write_atomically(&path, event)?;
        Ok(path)
    }

    /// The pending files, oldest first, without reading them: the drain lists once per round
    /// and reads only the files it has not seen yet.
    pub fn pending_files(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut names = json_files(&self.pending_dir())?;
        names.sort();
        Ok(names)
    }

    /// Whether any event is pending (stops at the first one).
    pub fn has_pending(&self) -> Result<bool, SpoolError> {
        let dir = self.pending_dir();
        Ok(fs::read_dir(&dir)
            .map_err(io("list", &dir))?
            .filter_map(Result::ok)
            .any(|entry| is_json(&entry.path())))
    }

    /// Reads one pending file.
    pub fn read_pending(&self, path: &Path) -> Result<PendingFile, SpoolError> {
        match read_json::<LeaseEvent>(path) {
            Ok(Some(event)) => Ok(PendingFile::Event(Pending {
                path: path.to_owned(),
                event,
            })),
            Ok(None) => Ok(PendingFile::Gone),
            Err(SpoolError::Corrupt { path, source }) => {
                let target = self
                    .corrupt_dir()
                    .join(path.file_name().unwrap_or_default());
                tracing::error!(path = %path.display(), moved_to = %target.display(), error = %source, "unreadable pending file set aside");
                fs::rename(&path, &target).map_err(io("move", &path))?;
                Ok(PendingFile::SetAside)
            }
            Err(e) => Err(e),
        }
    }

    pub fn remove(&self, pending: &Pending) -> Result<(), SpoolError> {
        remove_if_there(&pending.path)
    }

    /// Records a lease that wrote nothing (latest event and a count per MAC) and takes it out
    /// of pending. A MAC is listed under one kind at a time: the latest lease says which.
    /// Returns whether the MAC is new to that list (the list grew).
    pub fn record_ignored(
        &self,
        kind: Ignored,
        pending: &Pending,
        reason: &str,
    ) -> Result<bool, SpoolError> {
        let path = self.ignored_path(kind, &pending.event.mac);
        let previous = read_json::<IgnoredLease>(&path);
        let grew = matches!(previous, Ok(None));
        // A record that cannot be read is started afresh rather than stopping the drain.
        let previous = previous.ok().flatten();
        let record = IgnoredLease {
            event: pending.event.clone(),
            reason: reason.to_owned(),
            count: previous.as_ref().map_or(0, |u| u.count) + 1,
            first_seen: previous.map_or(pending.event.received_at, |u| u.first_seen),
        };
        write_atomically(&path, &record)?;
        for other in Ignored::ALL.into_iter().filter(|k| *k != kind) {
            remove_if_there(&self.ignored_path(other, &pending.event.mac))?;
        }
        self.remove(pending)?;
        Ok(grew)
    }

    /// A MAC whose lease NetBox took is no longer unknown, unmanaged or rejected.
    pub fn forget_ignored(&self, mac: &Mac) -> Result<(), SpoolError> {
        for kind in Ignored::ALL {
            remove_if_there(&self.ignored_path(kind, mac))?;
        }
        Ok(())
    }

    fn ignored_path(&self, kind: Ignored, mac: &Mac) -> PathBuf {
        self.ignored_dir(kind)
            .join(format!("{}.json", mac.to_string().replace(':', "-")))
    }

    /// The leases of one kind, most recently seen first.
    pub fn ignored(&self, kind: Ignored) -> Result<Listing<IgnoredLease>, SpoolError> {
        let mut listing: Listing<IgnoredLease> = read_listing(&self.ignored_dir(kind))?;
        listing
            .items
            .sort_by_key(|u| std::cmp::Reverse(u.last_seen()));
        Ok(listing)
    }

    /// Keeps the `limit` most recently seen MACs of a list (by the time their record was last
    /// written) and removes the rest; returns how many were removed.
    pub fn trim(&self, kind: Ignored, limit: usize) -> Result<usize, SpoolError> {
        trim_dir(&self.ignored_dir(kind), limit)
    }

    /// Keeps the `limit` most recently set aside unreadable pending files.
    pub fn trim_corrupt(&self, limit: usize) -> Result<usize, SpoolError> {
        trim_dir(&self.corrupt_dir(), limit)
    }

    /// How many unreadable pending files were set aside in `corrupt/`.
    pub fn corrupt_count(&self) -> Result<usize, SpoolError> {
        Ok(json_files(&self.corrupt_dir())?.len())
    }

    /// Moves every rejected lease back to pending (after the operator fixed the cause);
    /// returns the events moved. Unreadable records stay where they are, counted.
    pub fn requeue_rejected(&self) -> Result<Listing<LeaseEvent>, SpoolError> {
        let dir = self.ignored_dir(Ignored::Rejected);
        let mut requeued = Listing {
            items: Vec::new(),
            unreadable: 0,
            dir: dir.clone(),
        };
        for path in json_files(&dir)? {
            match read_json::<IgnoredLease>(&path) {
                Ok(Some(rejected)) => {
                    self.push(&rejected.event)?;
                    remove_if_there(&path)?;
                    requeued.items.push(rejected.event);
                }
                Ok(None) => {}
                Err(_) => requeued.unreadable += 1,
            }
        }
        Ok(requeued)
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

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// The `*.json` files of a directory (temp files start with `.` and end in `.tmp`).
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    Ok(fs::read_dir(dir)
        .map_err(io("list", dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| is_json(p))
        .collect())
}

/// Every record in `dir` that can be read; the others are counted, never an error, so one bad
/// file cannot hide the rest from the operator.
fn read_listing<T: DeserializeOwned>(dir: &Path) -> Result<Listing<T>, SpoolError> {
    let mut listing = Listing {
        items: Vec::new(),
        unreadable: 0,
        dir: dir.to_owned(),
    };
    for path in json_files(dir)? {
        match read_json(&path) {
            Ok(item) => listing.items.extend(item),
            Err(error) => {
                tracing::debug!(error = %crate::error_chain(&error), "unreadable spool file skipped");
                listing.unreadable += 1;
            }
        }
    }
    Ok(listing)
}

/// Removes the least recently written `*.json` files of `dir` beyond `limit`.
fn trim_dir(dir: &Path, limit: usize) -> Result<usize, SpoolError> {
    let files = json_files(dir)?;
    if files.len() <= limit {
        return Ok(0);
    }
    let mut aged: Vec<(SystemTime, PathBuf)> = files
        .into_iter()
        .map(|path| {
            // A file gone meanwhile sorts first and its removal is a no-op.
            let written = fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (written, path)
        })
        .collect();
    let excess = aged.len() - limit;
    aged.select_nth_unstable(excess - 1);
    for (_, path) in aged.iter().take(excess) {
        remove_if_there(path)?;
    }
    Ok(excess)
}

fn remove_if_there(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, SpoolError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| SpoolError::Corrupt {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Temp file in the same directory, fsync, rename over the target, fsync the directory: a
/// reader sees the whole file or none of it, and it survives a power cut once this returns.
fn write_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), SpoolError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.{:08x}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        fastrand::u32(..)
    ));
    let bytes = serde_json::to_vec(value).map_err(|source| SpoolError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(&bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::LeaseEventKind;

    fn event(mac: &str, at: &str) -> LeaseEvent {
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

    fn pending(spool: &Spool) -> Vec<Pending> {
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
    fn spooled(spool: &Spool, mac: &str, at: &str) -> Pending {
        let path = spool.push(&event(mac, at)).expect("push");
        match spool.read_pending(&path).expect("read") {
            PendingFile::Event(pending) => pending,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_come_back_oldest_first_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        spool
            .push(&event("02:00:00:00:00:02", "2026-11-25T10:00:02Z"))
            .expect("push");
        spool
            .push(&event("02:00:00:00:00:01", "2026-11-25T10:00:01Z"))
            .expect("push");
        let macs: Vec<String> = pending(&spool)
            .iter()
            .map(|p| p.event.mac.to_string())
            .collect();
        assert_eq!(macs, ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        let stray = fs::read_dir(dir.path().join("pending"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(stray, 0);
        assert!(spool.has_pending().expect("look"));
    }

    #[test]
    fn concurrent_pushes_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        std::thread::scope(|s| {
            for n in 0..16u8 {
                let spool = spool.clone();
                s.spawn(move || {
                    for _ in 0..25 {
                        let mac = format!("02:00:00:00:00:{n:02x}");
                        spool
                            .push(&event(&mac, "2026-11-25T10:00:00Z"))
                            .expect("push");
                    }
                });
            }
        });
        assert_eq!(spool.pending_files().expect("list").len(), 16 * 25);
    }

    #[test]
    fn a_mac_is_listed_under_the_kind_its_latest_lease_had() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let mac = "02:00:00:00:00:07";
        let first = spooled(&spool, mac, "2026-11-25T10:00:00Z");
        spool
            .record_ignored(Ignored::Unknown, &first, "no interface")
            .expect("unknown");
        let second = spooled(&spool, mac, "2026-11-25T10:01:00Z");
        spool
            .record_ignored(Ignored::Unmanaged, &second, "not managed: not enrolled")
            .expect("unmanaged");
        assert!(
            spool
                .ignored(Ignored::Unknown)
                .expect("list")
                .items
                .is_empty()
        );
        let unmanaged = spool.ignored(Ignored::Unmanaged).expect("list").items;
        assert_eq!(unmanaged.len(), 1);
        assert_eq!(unmanaged[0].reason, "not managed: not enrolled");
        spool
            .forget_ignored(&mac.parse().expect("mac"))
            .expect("forget");
        assert!(
            spool
                .ignored(Ignored::Unmanaged)
                .expect("list")
                .items
                .is_empty()
        );
    }

    #[test]
    fn a_mac_refused_again_and_again_is_one_record_with_a_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let mac = "02:00:00:00:00:08";
        for (at, grows) in [
            ("2026-11-25T10:00:00Z", true),
            ("2026-11-25T10:05:00Z", false),
            ("2026-11-25T10:10:00Z", false),
        ] {
            let lease = spooled(&spool, mac, at);
            let grew = spool
                .record_ignored(Ignored::Rejected, &lease, "no NetBox prefix contains it")
                .expect("reject");
            assert_eq!(grew, grows, "{at}");
        }
        assert!(!spool.has_pending().expect("look"));
        let rejected = spool.ignored(Ignored::Rejected).expect("rejected").items;
        assert_eq!(rejected.len(), 1, "one record per MAC, not per event");
        let r = &rejected[0];
        assert_eq!(r.count, 3);
        assert_eq!(r.reason, "no NetBox prefix contains it");
        assert_eq!(r.first_seen.to_rfc3339(), "2026-11-25T10:00:00+00:00");
        assert_eq!(r.last_seen().to_rfc3339(), "2026-11-25T10:10:00+00:00");

        let requeued = spool.requeue_rejected().expect("requeue");
        assert_eq!((requeued.items.len(), requeued.unreadable), (1, 0));
        let back = pending(&spool);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].event, r.event);
        assert!(
            spool
                .ignored(Ignored::Rejected)
                .expect("rejected")
                .items
                .is_empty()
        );
    }

    #[test]
    fn a_rejected_event_in_the_older_one_file_per_event_form_is_still_listed_and_requeued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let old = serde_json::json!({
            "event": event("02:00:00:00:00:0a", "2026-11-25T10:00:00Z"),
            "reason": "HTTP 400: bad",
            "at": "2026-11-25T10:00:01Z",
        });
        fs::write(
            dir.path()
                .join("rejected/00000000000000000001-1-00000000.json"),
            old.to_string(),
        )
        .expect("write");
        let listed = spool.ignored(Ignored::Rejected).expect("list");
        assert_eq!((listed.items.len(), listed.unreadable), (1, 0));
        assert_eq!(listed.items[0].count, 1);
        assert_eq!(spool.requeue_rejected().expect("requeue").items.len(), 1);
        assert_eq!(pending(&spool).len(), 1);
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
    fn a_list_past_its_limit_keeps_the_most_recently_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        for n in 0..5u8 {
            let lease = spooled(
                &spool,
                &format!("02:00:00:00:01:{n:02x}"),
                "2026-11-25T10:00:00Z",
            );
            spool
                .record_ignored(Ignored::Unknown, &lease, "no interface")
                .expect("unknown");
            // The age is the record's write time: make each one distinct.
            let path = spool.ignored_path(Ignored::Unknown, &lease.event.mac);
            File::options()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_modified(
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(n) + 1),
                    )
                })
                .expect("age");
        }
        assert_eq!(spool.trim(Ignored::Unknown, 10).expect("trim"), 0);
        assert_eq!(spool.trim(Ignored::Unknown, 3).expect("trim"), 2);
        let mut kept: Vec<String> = spool
            .ignored(Ignored::Unknown)
            .expect("list")
            .items
            .iter()
            .map(|u| u.event.mac.to_string())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "02:00:00:00:01:02",
                "02:00:00:00:01:03",
                "02:00:00:00:01:04"
            ]
        );
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
