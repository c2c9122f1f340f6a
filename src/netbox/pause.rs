//! Test-only (feature `test-hooks`): pause points where a test can hold racklift — before a
//! device write (a [`DeviceStore`] wrapper), or at a named point in a stage — so integration
//! tests can force the races a real deployment meets rarely: an operator's edit landing while
//! racklift decides, a crash with a write or a BMC reset in flight.
//!
//! Protocol, in the directory named by `RACKLIFT_TEST_PAUSE_DIR`:
//! - before a device write: a file `arm-<id>` (or `arm-all`) arms it; racklift then creates
//!   `paused-<id>` and waits until the test deletes it;
//! - at a named point (`before-reset`, `after-reset`): `arm-<point>-<id>` (or
//!   `arm-<point>-all`) arms it; racklift creates `paused-<point>-<id>` and waits likewise.
//!
//! A pause lasts at most [`MAX_PAUSE`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxError};
use crate::config::Scope;
use crate::lifecycle::{JournalKind, Lifecycle};

const MAX_PAUSE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(20);
const DIR_VAR: &str = "RACKLIFT_TEST_PAUSE_DIR";

/// Holds here while `dir/<arm>` or `dir/<arm_all>` exists, announcing it with `dir/<paused>`.
async fn hold(dir: &Path, arm: &str, arm_all: &str, paused: &str, id: DeviceId) {
    if !dir.join(arm).exists() && !dir.join(arm_all).exists() {
        return;
    }
    let paused = dir.join(paused);
    if let Err(e) = std::fs::write(&paused, b"") {
        tracing::warn!(error = %e, "test pause point: cannot create {}", paused.display());
        return;
    }
    tracing::info!(device = %id, point = %paused.display(), "test pause point: holding");
    let deadline = tokio::time::Instant::now() + MAX_PAUSE;
    while paused.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(device = %id, "test pause point: released");
}

/// A named pause point in a stage, armed by the test through `RACKLIFT_TEST_PAUSE_DIR`.
pub async fn point(name: &str, id: DeviceId) {
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        hold(
            Path::new(&dir),
            &format!("arm-{name}-{id}"),
            &format!("arm-{name}-all"),
            &format!("paused-{name}-{id}"),
            id,
        )
        .await;
    }
}

#[derive(Debug)]
pub struct PausingStore<S> {
    inner: S,
    dir: PathBuf,
}

impl<S> PausingStore<S> {
    pub fn new(inner: S, dir: PathBuf) -> Self {
        Self { inner, dir }
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
    ) -> Result<String, NetBoxError> {
        let id = device.id;
        hold(
            &self.dir,
            &format!("arm-{id}"),
            "arm-all",
            &format!("paused-{id}"),
            id,
        )
        .await;
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
