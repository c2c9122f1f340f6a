//! Test-only (feature `test-hooks`): a [`DeviceStore`] that can hold a device write until a
//! test lets it go, so integration tests can force the races a real deployment meets rarely —
//! an operator's edit landing while racklift decides, a crash with writes in flight.
//!
//! Protocol, in the directory named by `RACKLIFT_TEST_PAUSE_DIR`: a file `arm-<id>` (or
//! `arm-all`) arms the pause; racklift then creates `paused-<id>` before writing device `<id>`
//! and waits until the test deletes `paused-<id>` (at most [`MAX_PAUSE`]).

use std::path::PathBuf;
use std::time::Duration;

use super::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxError};
use crate::config::Scope;
use crate::lifecycle::{JournalKind, Lifecycle};

const MAX_PAUSE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct PausingStore<S> {
    inner: S,
    dir: PathBuf,
}

impl<S> PausingStore<S> {
    pub fn new(inner: S, dir: PathBuf) -> Self {
        Self { inner, dir }
    }

    async fn pause_before_write(&self, id: DeviceId) {
        let armed =
            self.dir.join(format!("arm-{id}")).exists() || self.dir.join("arm-all").exists();
        if !armed {
            return;
        }
        let paused = self.dir.join(format!("paused-{id}"));
        if let Err(e) = std::fs::write(&paused, b"") {
            tracing::warn!(error = %e, "test pause point: cannot create {}", paused.display());
            return;
        }
        tracing::info!(device = %id, "test pause point: holding the write");
        let deadline = tokio::time::Instant::now() + MAX_PAUSE;
        while paused.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        tracing::info!(device = %id, "test pause point: released");
    }
}

impl<S: DeviceStore> DeviceStore for PausingStore<S> {
    async fn device(&self, id: DeviceId) -> Result<Option<Device>, NetBoxError> {
        self.inner.device(id).await
    }

    async fn update_device(
        &self,
        device: &Device,
        update: &DeviceUpdate,
    ) -> Result<(), NetBoxError> {
        self.pause_before_write(device.id).await;
        self.inner.update_device(device, update).await
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
