//! The work queue: each device at most once, never handed to two workers at once, and a device
//! that changes while it is being reconciled is reconciled again afterwards (kube-rs's
//! scheduler, for device ids).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::netbox::DeviceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the work queue is full ({capacity} devices waiting)")]
pub struct QueueFull {
    pub capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Devices waiting, by the time they are due.
    due: BTreeSet<(Instant, DeviceId)>,
    when: HashMap<DeviceId, Instant>,
    running: HashSet<DeviceId>,
    /// Devices queued while they ran: queued again when their reconcile finishes.
    again: HashMap<DeviceId, Instant>,
}

#[derive(Debug)]
pub struct WorkQueue {
    // A std mutex: it is never held across an await, and every critical section is a few map
    // operations.
    state: Mutex<State>,
    changed: Notify,
    capacity: usize,
}

/// Counts for `/healthz` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub waiting: usize,
    pub running: usize,
}

impl WorkQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in a critical section leaves consistent maps behind (each step is one
        // insert or remove), so a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `id` to run at `at`, or earlier if it is already queued for earlier.
    pub fn enqueue(&self, id: DeviceId, at: Instant) -> Result<(), QueueFull> {
        {
            let mut state = self.lock();
            if state.running.contains(&id) {
                let slot = state.again.entry(id).or_insert(at);
                *slot = (*slot).min(at);
                return Ok(());
            }
            match state.when.get(&id).copied() {
                Some(existing) if existing <= at => return Ok(()),
                Some(existing) => {
                    state.due.remove(&(existing, id));
                }
                None if state.when.len() + state.again.len() >= self.capacity => {
                    return Err(QueueFull {
                        capacity: self.capacity,
                    });
                }
                None => {}
            }
            state.when.insert(id, at);
            state.due.insert((at, id));
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Waits for the next device that is due and not running, and marks it running. The
    /// caller must call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> DeviceId {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so an enqueue between the look and the wait wakes us.
            changed.as_mut().enable();
            let wake_at = {
                let mut state = self.lock();
                match state.due.first().copied() {
                    Some((at, id)) if at <= Instant::now() => {
                        state.due.remove(&(at, id));
                        state.when.remove(&id);
                        state.running.insert(id);
                        return id;
                    }
                    Some((at, _)) => Some(at),
                    None => None,
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Marks `id` finished; if it was queued meanwhile, it is queued again now.
    pub fn done(&self, id: DeviceId) {
        let requeued = {
            let mut state = self.lock();
            state.running.remove(&id);
            match state.again.remove(&id) {
                Some(at) => {
                    let at = state.when.get(&id).map_or(at, |&w| w.min(at));
                    if let Some(old) = state.when.insert(id, at) {
                        state.due.remove(&(old, id));
                    }
                    state.due.insert((at, id));
                    true
                }
                None => false,
            }
        };
        if requeued {
            self.changed.notify_waiters();
        }
    }

    pub fn stats(&self) -> QueueStats {
        let state = self.lock();
        QueueStats {
            waiting: state.when.len() + state.again.len(),
            running: state.running.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_device_queued_many_times_runs_once() {
        let queue = WorkQueue::new(10);
        let now = Instant::now();
        for _ in 0..5 {
            queue.enqueue(DeviceId(7), now).expect("room");
        }
        assert_eq!(queue.stats().waiting, 1);
        assert_eq!(queue.next().await, DeviceId(7));
        assert_eq!(
            queue.stats(),
            QueueStats {
                waiting: 0,
                running: 1
            }
        );
    }

    #[tokio::test]
    async fn a_device_queued_while_running_runs_again_after_and_never_twice_at_once() {
        let queue = WorkQueue::new(10);
        queue.enqueue(DeviceId(1), Instant::now()).expect("room");
        assert_eq!(queue.next().await, DeviceId(1));
        queue.enqueue(DeviceId(1), Instant::now()).expect("room");
        queue.enqueue(DeviceId(2), Instant::now()).expect("room");
        // Device 1 is running, so the next free one is 2 even though 1 was queued again.
        assert_eq!(queue.next().await, DeviceId(2));
        queue.done(DeviceId(1));
        assert_eq!(queue.next().await, DeviceId(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_schedule_does_not_delay_an_earlier_one() {
        let queue = WorkQueue::new(10);
        let now = Instant::now();
        queue
            .enqueue(DeviceId(1), now + Duration::from_secs(60))
            .expect("room");
        queue
            .enqueue(DeviceId(1), now + Duration::from_secs(5))
            .expect("room");
        queue
            .enqueue(DeviceId(1), now + Duration::from_secs(90))
            .expect("room");
        let id = queue.next().await;
        assert_eq!(id, DeviceId(1));
        assert_eq!(Instant::now(), now + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_new_work() {
        let queue = std::sync::Arc::new(WorkQueue::new(10));
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.enqueue(DeviceId(3), Instant::now()).expect("room");
        assert_eq!(worker.await.expect("worker"), DeviceId(3));
    }

    #[test]
    fn a_full_queue_refuses_new_devices_but_not_queued_ones() {
        let queue = WorkQueue::new(2);
        let now = Instant::now();
        queue.enqueue(DeviceId(1), now).expect("room");
        queue.enqueue(DeviceId(2), now).expect("room");
        assert_eq!(
            queue.enqueue(DeviceId(3), now),
            Err(QueueFull { capacity: 2 })
        );
        assert_eq!(queue.enqueue(DeviceId(2), now), Ok(()));
    }
}
