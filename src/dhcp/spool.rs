//! The spool on the DHCP host: one file per lease event, written atomically (temp file, fsync,
//! rename, fsync of the directory) so the hook can return to the DHCP server at once and a
//! crash or NetBox outage loses nothing.
//!
//! ```text
//! <spool>/pending/<nanos>-<pid>-<rand>.json   waiting for NetBox, oldest first by name
//! <spool>/rejected/<same name>.json           NetBox refused it for good: {event, reason, at}
//! <spool>/unknown/<MAC>.json                  leases from MACs NetBox has on no BMC interface
//! <spool>/unmanaged/<MAC>.json                leases from BMCs of devices racklift does not manage
//! <spool>/counters.json                       what the drains did, summed
//! <spool>/drain.lock                          held by the one drain at work
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
    #[error("{path} is not a spooled event racklift can read")]
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

/// Why a lease wrote nothing to NetBox, kept per MAC (the latest event and a count) so the
/// operator can see it with `racklift dhcp-spool unknown|unmanaged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// NetBox has the MAC on no BMC interface.
    Unknown,
    /// The MAC is a BMC's, but racklift does not manage its device.
    Unmanaged,
}

impl Ignored {
    const ALL: [Self; 2] = [Self::Unknown, Self::Unmanaged];

    fn dir_name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Unmanaged => "unmanaged",
        }
    }
}

/// A lease that wrote nothing, per MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredLease {
    pub event: LeaseEvent,
    pub reason: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
}

/// An event NetBox refused for good, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub event: LeaseEvent,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// One pending event and the file that holds it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub path: PathBuf,
    pub event: LeaseEvent,
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
        for dir in [spool.pending_dir(), spool.rejected_dir()]
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
    fn rejected_dir(&self) -> PathBuf {
        self.root.join("rejected")
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

    /// Pending events, oldest first. A file another drain removed meanwhile is skipped; one
    /// that cannot be read is moved to `rejected/`.
    pub fn pending(&self) -> Result<Vec<Pending>, SpoolError> {
        let dir = self.pending_dir();
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io("list", &dir))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        let mut pending = Vec::with_capacity(names.len());
        for path in names {
            match read_json::<LeaseEvent>(&path) {
                Ok(Some(event)) => pending.push(Pending { path, event }),
                Ok(None) => {}
                Err(SpoolError::Corrupt { path, source }) => {
                    tracing::error!(path = %path.display(), error = %source, "unreadable spool file moved to rejected/");
                    let target = self
                        .rejected_dir()
                        .join(path.file_name().unwrap_or_default());
                    fs::rename(&path, &target).map_err(io("move", &path))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pending)
    }

    pub fn remove(&self, pending: &Pending) -> Result<(), SpoolError> {
        remove_if_there(&pending.path)
    }

    pub fn reject(&self, pending: &Pending, reason: &str) -> Result<(), SpoolError> {
        let target = self
            .rejected_dir()
            .join(pending.path.file_name().unwrap_or_default());
        write_atomically(
            &target,
            &Rejected {
                event: pending.event.clone(),
                reason: reason.to_owned(),
                at: Utc::now(),
            },
        )?;
        self.remove(pending)
    }

    /// Records a lease that wrote nothing (latest event and a count per MAC) and takes it out
    /// of pending. A MAC is listed under one kind at a time: the latest lease says which.
    pub fn record_ignored(
        &self,
        kind: Ignored,
        pending: &Pending,
        reason: &str,
    ) -> Result<(), SpoolError> {
        let path = self.ignored_path(kind, &pending.event.mac);
        let previous = read_json::<IgnoredLease>(&path).ok().flatten();
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
        self.remove(pending)
    }

    /// A MAC whose lease NetBox took is no longer unknown or unmanaged.
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

    /// The leases of one kind, newest first.
    pub fn ignored(&self, kind: Ignored) -> Result<Vec<IgnoredLease>, SpoolError> {
        let mut all: Vec<IgnoredLease> = self.read_all(&self.ignored_dir(kind))?;
        all.sort_by_key(|u| std::cmp::Reverse(u.event.received_at));
        Ok(all)
    }

    pub fn rejected(&self) -> Result<Vec<Rejected>, SpoolError> {
        let mut all: Vec<Rejected> = self.read_all(&self.rejected_dir())?;
        all.sort_by_key(|r| r.at);
        Ok(all)
    }

    /// Moves every rejected event back to pending (after the operator fixed the cause).
    pub fn requeue_rejected(&self) -> Result<usize, SpoolError> {
        let dir = self.rejected_dir();
        let mut moved = 0;
        for entry in fs::read_dir(&dir)
            .map_err(io("list", &dir))?
            .filter_map(Result::ok)
        {
            let path = entry.path();
            if let Some(rejected) = read_json::<Rejected>(&path)? {
                self.push(&rejected.event)?;
                fs::remove_file(&path).map_err(io("remove", &path))?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    fn read_all<T: DeserializeOwned>(&self, dir: &Path) -> Result<Vec<T>, SpoolError> {
        let mut all = Vec::new();
        for entry in fs::read_dir(dir)
            .map_err(io("list", dir))?
            .filter_map(Result::ok)
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                all.extend(read_json(&path)?);
            }
        }
        Ok(all)
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
        let pending = spool.pending().expect("list");
        let macs: Vec<String> = pending.iter().map(|p| p.event.mac.to_string()).collect();
        assert_eq!(macs, ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        let stray = fs::read_dir(dir.path().join("pending"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(stray, 0);
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
        assert_eq!(spool.pending().expect("list").len(), 16 * 25);
    }

    #[test]
    fn a_mac_is_listed_under_the_kind_its_latest_lease_had() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let mac = "02:00:00:00:00:07";
        spool
            .push(&event(mac, "2026-11-25T10:00:00Z"))
            .expect("push");
        let pending = spool.pending().expect("list").remove(0);
        spool
            .record_ignored(Ignored::Unknown, &pending, "no interface")
            .expect("unknown");
        spool
            .push(&event(mac, "2026-11-25T10:01:00Z"))
            .expect("push");
        let pending = spool.pending().expect("list").remove(0);
        spool
            .record_ignored(Ignored::Unmanaged, &pending, "not managed: not enrolled")
            .expect("unmanaged");
        assert!(spool.ignored(Ignored::Unknown).expect("list").is_empty());
        let unmanaged = spool.ignored(Ignored::Unmanaged).expect("list");
        assert_eq!(unmanaged.len(), 1);
        assert_eq!(unmanaged[0].reason, "not managed: not enrolled");
        spool
            .forget_ignored(&mac.parse().expect("mac"))
            .expect("forget");
        assert!(spool.ignored(Ignored::Unmanaged).expect("list").is_empty());
    }

    #[test]
    fn unknown_macs_are_counted_per_mac_and_rejects_keep_their_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        for at in ["2026-11-25T10:00:00Z", "2026-11-25T10:05:00Z"] {
            spool.push(&event("02:00:00:00:00:09", at)).expect("push");
            let pending = spool.pending().expect("list").remove(0);
            spool
                .record_ignored(Ignored::Unknown, &pending, "no interface has this MAC")
                .expect("unknown");
        }
        let unknown = spool.ignored(Ignored::Unknown).expect("unknown");
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].count, 2);
        assert_eq!(
            unknown[0].first_seen,
            "2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().expect("t")
        );

        spool
            .push(&event("02:00:00:00:00:08", "2026-11-25T10:00:00Z"))
            .expect("push");
        let pending = spool.pending().expect("list").remove(0);
        spool.reject(&pending, "HTTP 400: bad").expect("reject");
        assert!(spool.pending().expect("list").is_empty());
        assert_eq!(
            spool.rejected().expect("rejected")[0].reason,
            "HTTP 400: bad"
        );
        assert_eq!(spool.requeue_rejected().expect("requeue"), 1);
        assert_eq!(spool.pending().expect("list").len(), 1);
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
