//! The one writer of a device's lifecycle. Every move racklift makes (the reconciler's claims
//! and stage results, the DHCP hook's `racked → discovered`, a validation report's verdict)
//! ends here: the journal entry first, then one conditional PATCH (`If-Match` on the ETag the
//! caller read) of the state, its error, the status mirror and a fresh stamp.
//!
//! Journal first: a crash between the two repeats the entry on the next attempt rather than
//! leaving a change without one. A 412 (the device changed since it was read) is journaled as
//! "not applied" and returned: the caller's one retry layer (the reconciler's per-device
//! backoff, the drain's per-lease backoff, the validation script's re-post) reads again and
//! decides again. Nothing here loops.

use chrono::Utc;

use super::{Device, DeviceStore, DeviceUpdate, NetBoxError};
use crate::lifecycle::{self, JournalKind, Stamp, Transition};

/// What else the transition's PATCH carries: fields that belong to the same decision and must
/// not be seen without it (the lease's OOB IP, the report's results).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carry {
    pub oob_ip: Option<u64>,
    pub validation_results: Option<serde_json::Value>,
}

/// A transition whose journal entry is written; [`Journaled::commit`] writes the state. Other
/// writes of the same decision (the lease's address record) go in between, so they too are
/// never seen without their entry.
#[must_use = "the journal entry is written but the device has not moved: commit it"]
#[derive(Debug)]
pub struct Journaled<'a> {
    device: &'a Device,
    transition: &'a Transition,
}

/// Journals `transition` on `device`. The transition must be one the lifecycle table lists.
pub async fn journal<'a, S: DeviceStore + ?Sized>(
    store: &S,
    device: &'a Device,
    transition: &'a Transition,
) -> Result<Journaled<'a>, NetBoxError> {
    if !lifecycle::listed(transition.from, transition.to) {
        return Err(NetBoxError::Unlisted {
            device: device.name.clone(),
            from: transition.from,
            to: transition.to,
        });
    }
    store
        .journal(device.id, transition.journal, &transition.journal_text())
        .await?;
    Ok(Journaled { device, transition })
}

impl Journaled<'_> {
    /// The conditional PATCH; returns the device's new ETag.
    pub async fn commit<S: DeviceStore + ?Sized>(
        self,
        store: &S,
        carry: Carry,
    ) -> Result<String, NetBoxError> {
        let Self { device, transition } = self;
        let update = DeviceUpdate {
            oob_ip: carry.oob_ip,
            validation_results: carry.validation_results,
            ..DeviceUpdate::transition(
                transition.to,
                transition.error.clone(),
                Stamp::entered(transition.to, Utc::now()),
            )
        };
        match store.update_device(device, &update).await {
            Err(changed @ NetBoxError::Changed { .. }) => {
                let note = format!(
                    "racklift: not applied ({} → {}): the device was edited while racklift decided; the edit wins and racklift decides again",
                    transition.from, transition.to
                );
                if let Err(e) = store.journal(device.id, JournalKind::Warning, &note).await {
                    tracing::warn!(device = %device.name, error = %e, "could not journal the dropped transition");
                }
                Err(changed)
            }
            other => other,
        }
    }
}

/// Journals and writes `transition` on `device` (as read, with its ETag).
pub async fn write<S: DeviceStore + ?Sized>(
    store: &S,
    device: &Device,
    transition: &Transition,
    carry: Carry,
) -> Result<String, NetBoxError> {
    journal(store, device, transition)
        .await?
        .commit(store, carry)
        .await
}
