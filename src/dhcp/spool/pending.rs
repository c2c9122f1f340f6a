//! The queue of lease events waiting for NetBox (`pending/`): written as they arrive, listed
//! oldest first, read one by one; a file that cannot be read is set aside in `corrupt/`, which
//! keeps a bounded number of them.

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{is_json, json_files, read_json, remove_if_there, trim_dir, write_atomically};
use super::{Spool, SpoolError, io};
use crate::dhcp::LeaseEvent;

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

impl Spool {
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

    /// Keeps the `limit` most recently set aside unreadable pending files.
    pub fn trim_corrupt(&self, limit: usize) -> Result<usize, SpoolError> {
        trim_dir(&self.corrupt_dir(), limit)
    }

    /// How many unreadable pending files were set aside in `corrupt/`.
    pub fn corrupt_count(&self) -> Result<usize, SpoolError> {
        Ok(json_files(&self.corrupt_dir())?.len())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::Spool;
    use super::super::tests::{event, pending};

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
}
