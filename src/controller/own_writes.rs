//! racklift's own device writes, remembered briefly: NetBox's webhook for a change racklift
//! made itself carries exactly what racklift wrote, so it needs no re-read. The controller
//! writes through [`Remembering`], which records the ETag each write answers with; the
//! webhook receiver asks [`OwnWrites::is_echo`] with the event's `last_updated`.
//!
//! Safe because the controller requeues a device itself whenever its own write leaves it
//! work (a move into a state it acts on, a stamp while it waits). Writes made elsewhere (an
//! operator, the validation callback) are never recorded, so their webhooks wake it as ever.
//! NetBox 4.7's ETag is `W/"<last_updated, isoformat>"`, the same instant the event carries.

use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::config::Scope;
use crate::lifecycle::{JournalKind, Lifecycle};
use crate::netbox::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxError};

/// Long enough for NetBox's webhook worker to deliver under load; an echo arriving later
/// only costs the re-read it would have cost anyway.
const REMEMBER_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct OwnWrites(moka::sync::Cache<DeviceId, DateTime<FixedOffset>>);

impl Default for OwnWrites {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REMEMBER_FOR)
                .build(),
        )
    }
}

impl OwnWrites {
    /// Records that racklift's last write of `id` answered with `etag`.
    pub fn record(&self, id: DeviceId, etag: &str) {
        match etag_time(etag) {
            Some(at) => self.0.insert(id, at),
            // An ETag racklift cannot read: forget the device, so its webhooks are read.
            None => self.0.invalidate(&id),
        }
    }

    /// Whether a webhook for `id` whose object was last updated at `last_updated` reports
    /// racklift's own latest write of it.
    pub fn is_echo(&self, id: DeviceId, last_updated: &str) -> bool {
        let Ok(at) = DateTime::parse_from_rfc3339(last_updated) else {
            return false;
        };
        self.0.get(&id).is_some_and(|written| written == at)
    }
}

/// The instant in a NetBox ETag (`W/"2026-12-07T20:41:02.123456+00:00"`).
fn etag_time(etag: &str) -> Option<DateTime<FixedOffset>> {
    let quoted = etag.strip_prefix("W/").unwrap_or(etag);
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    DateTime::parse_from_rfc3339(inner).ok()
}

/// A store whose device writes are recorded in [`OwnWrites`].
#[derive(Debug)]
pub struct Remembering<S> {
    inner: S,
    own: OwnWrites,
}

impl<S> Remembering<S> {
    pub fn new(inner: S, own: OwnWrites) -> Self {
        Self { inner, own }
    }
}

/// The controller's tests look at the store they built.
impl<S> Deref for Remembering<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S: DeviceStore> DeviceStore for Remembering<S> {
    async fn device(&self, id: DeviceId) -> Result<Option<Device>, NetBoxError> {
        self.inner.device(id).await
    }

    async fn update_device(
        &self,
        device: &Device,
        update: &DeviceUpdate,
    ) -> Result<String, NetBoxError> {
        let etag = self.inner.update_device(device, update).await?;
        self.own.record(device.id, &etag);
        Ok(etag)
    }

    async fn journal(
        &self,
        id: DeviceId,
        kind: JournalKind,
        text: &str,
    ) -> Result<(), NetBoxError> {
        self.inner.journal(id, kind, text).await
    }

    async fn devices_in(
        &self,
        states: &[Lifecycle],
        scope: &Scope,
    ) -> Result<Vec<DeviceId>, NetBoxError> {
        self.inner.devices_in(states, scope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_carrying_the_written_instant_is_an_echo_in_either_spelling() {
        let own = OwnWrites::default();
        let id = DeviceId(7);
        assert!(
            !own.is_echo(id, "2026-12-07T20:41:02.123456Z"),
            "nothing written yet"
        );
        own.record(id, "W/\"2026-12-07T20:41:02.123456+00:00\"");
        assert!(own.is_echo(id, "2026-12-07T20:41:02.123456Z"));
        assert!(own.is_echo(id, "2026-12-07T20:41:02.123456+00:00"));
        assert!(
            !own.is_echo(id, "2026-12-07T20:41:02.123457Z"),
            "a later edit"
        );
        assert!(!own.is_echo(DeviceId(8), "2026-12-07T20:41:02.123456Z"));
        assert!(!own.is_echo(id, "not a time"));
    }

    #[test]
    fn an_unreadable_etag_forgets_the_device() {
        let own = OwnWrites::default();
        let id = DeviceId(7);
        own.record(id, "W/\"2026-12-07T20:41:02+00:00\"");
        assert!(own.is_echo(id, "2026-12-07T20:41:02Z"));
        own.record(id, "\"opaque\"");
        assert!(!own.is_echo(id, "2026-12-07T20:41:02Z"));
    }
}
