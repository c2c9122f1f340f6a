//! Waits on conditions, each failing the test after [`WAIT`]: the harness never sleeps a
//! fixed time in place of a condition.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::api::{Api, lifecycle, lifecycle_of};

/// How long any one wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, or fails the test after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the device's lifecycle is `state`; returns the device.
pub async fn wait_lifecycle(api: &Api, id: u64, state: &str) -> Value {
    wait_for(&format!("device {id} to be {state}"), || async {
        let device = api.device(id).await;
        (lifecycle(&device).as_deref() == Some(state)).then_some(device)
    })
    .await
}

/// Waits until NetBox recorded the device moving `from` → `to`; returns the device as that
/// change left it (the state may have moved on since: provisioning runs right after its claim).
pub async fn wait_moved(api: &Api, id: u64, from: &str, to: &str) -> Value {
    wait_for(&format!("device {id} to move {from} → {to}"), || async {
        api.changes(id).await.into_iter().find_map(|c| {
            (lifecycle_of(&c["prechange_data"]) == Some(from)
                && lifecycle_of(&c["postchange_data"]) == Some(to))
            .then(|| c["postchange_data"].clone())
        })
    })
    .await
}

/// A file in `dir` exists (a pause point's `paused-…` file, say).
pub fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}
