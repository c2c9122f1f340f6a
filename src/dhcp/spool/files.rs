//! One spool record on disk: written atomically, read back (gone is `None`, unparsable is
//! `Corrupt`), a directory's records listed without one bad file stopping the listing, and a
//! directory trimmed to its most recently written files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Serialize, de::DeserializeOwned};

use super::{SpoolError, io};

/// The readable records of a directory, and how many files in it could not be read.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub unreadable: usize,
    pub dir: PathBuf,
}

pub(super) fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// The `*.json` files of a directory (temp files start with `.` and end in `.tmp`).
pub(super) fn json_files(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    Ok(fs::read_dir(dir)
        .map_err(io("list", dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| is_json(p))
        .collect())
}

/// Every record in `dir` that can be read; the others are counted, never an error, so one bad
/// file cannot hide the rest from the operator.
pub(super) fn read_listing<T: DeserializeOwned>(dir: &Path) -> Result<Listing<T>, SpoolError> {
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
pub(super) fn trim_dir(dir: &Path, limit: usize) -> Result<usize, SpoolError> {
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

pub(super) fn remove_if_there(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, SpoolError> {
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
pub(super) fn write_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), SpoolError> {
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
