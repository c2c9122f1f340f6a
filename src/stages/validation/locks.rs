//! One report applied per device at a time. The script posts again when its attempt times out
//! while racklift is still applying the first post (on a task of its own); two applies side by
//! side would both create the device's MAC addresses and cables. The second waits for the
//! first, for a bounded time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use crate::netbox::DeviceId;

/// The devices whose reports are being applied (or waited for).
#[derive(Debug, Default)]
pub struct DeviceLocks {
    // A std mutex: held only to look an entry up, never across an await.
    held: Mutex<HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>>,
}

/// The device's lock, held until dropped.
#[derive(Debug)]
pub struct Held<'a> {
    locks: &'a DeviceLocks,
    id: DeviceId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl DeviceLocks {
    /// The device's lock, or `None` when another apply kept it for all of `wait`.
    pub async fn lock(&self, id: DeviceId, wait: Duration) -> Option<Held<'_>> {
        let mutex = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_default()
            .clone();
        let guard = tokio::time::timeout(wait, mutex.lock_owned()).await.ok();
        let held = Held {
            locks: self,
            id,
            guard,
        };
        // Dropped on a timeout: the entry is removed if nobody else uses it.
        held.guard.is_some().then_some(held)
    }

    /// Devices with an entry: for tests (the map must not grow with every device seen).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self
            .locks
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map's own reference left: nobody holds or waits for this device.
        if held
            .get(&self.id)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_apply_waits_for_the_first_for_a_bounded_time() {
        let locks = DeviceLocks::default();
        let first = locks
            .lock(DeviceId(1), Duration::from_secs(1))
            .await
            .expect("free");
        // Another device is not held up.
        assert!(
            locks
                .lock(DeviceId(2), Duration::from_secs(1))
                .await
                .is_some()
        );
        assert!(
            locks
                .lock(DeviceId(1), Duration::from_secs(5))
                .await
                .is_none(),
            "held by the first"
        );
        let waiting = locks.lock(DeviceId(1), Duration::from_secs(5));
        let release = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(first);
        };
        let (second, ()) = tokio::join!(waiting, release);
        assert!(second.is_some(), "taken once the first let go");
        drop(second);
        assert_eq!(locks.len(), 0);
    }
}
