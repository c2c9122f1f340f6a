//! The per-MAC lists of leases that wrote nothing to NetBox (`unknown/`, `unmanaged/`,
//! `rejected/`): recorded and trimmed by the drain, listed and requeued by `racklift dhcp-spool`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files::{
    Listing, json_files, read_json, read_listing, remove_if_there, trim_dir, write_atomically,
};
use super::{Pending, Spool, SpoolError};
use crate::dhcp::{LeaseEvent, Mac};

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

    pub(super) fn dir_name(self) -> &'static str {
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

impl Spool {
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
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::time::SystemTime;

    use super::super::tests::{event, pending, spooled};
    use super::{Ignored, Spool};

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
}
