//! The level-triggered controller: a coalescing queue of device ids fed by webhooks and a
//! periodic resync, workers that re-read each device from NetBox and carry out what the
//! lifecycle table decides, and the error policy that schedules retries.

mod own_writes;
mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::Utc;
use tokio::time::Instant;

pub use own_writes::OwnWrites;
pub use queue::{QueueFull, QueueStats, WorkQueue};

use own_writes::Remembering;

use crate::config::{BmcConfig, ReconcilerConfig, Scope};
use crate::lifecycle::{self, Decision, Lifecycle, Policy, Stage, Stamp, Transition};
use crate::netbox::transition::{self, Carry};
use crate::netbox::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxError, Unmanaged};
use crate::redfish::Sessions;
use crate::stages::{self, Ctx, StageError};

/// 412s in a row answered by an immediate re-read; more are retried with backoff.
const IMMEDIATE_REREADS: u32 = 3;

/// What one reconcile did; logged, and asserted on by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NetBox has no such device (deleted, or a webhook for an id it never had).
    Gone,
    /// Not racklift's: the lifecycle is empty (not enrolled) or unknown, or the device is
    /// outside this racklift's scope. Nothing is written.
    Unmanaged,
    /// Nothing to do in this state.
    Idle(Lifecycle),
    /// Waiting (e.g. for a validation report); looked at again after the duration.
    Waiting(Lifecycle, Duration),
    /// Wrote the next state.
    Moved(Transition),
}

#[derive(Debug, thiserror::Error)]
#[error("device {device}: {doing}")]
pub struct ReconcileError {
    pub device: DeviceId,
    pub doing: &'static str,
    #[source]
    pub source: NetBoxError,
}

/// How an error is retried: the decision is one exhaustive match in [`ReconcileError::retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The device changed under us: read it again at once.
    Now,
    /// Not the device's fault (NetBox away): back off, for as long as it lasts.
    WhileItLasts,
    /// An answer that asking again is unlikely to change: back off, up to a bound.
    Bounded,
}

impl ReconcileError {
    pub fn retry(&self) -> Retry {
        match &self.source {
            NetBoxError::Changed { .. } => Retry::Now,
            e if e.is_transient() => Retry::WhileItLasts,
            _ => Retry::Bounded,
        }
    }
}

fn netbox(device: DeviceId, doing: &'static str) -> impl FnOnce(NetBoxError) -> ReconcileError {
    move |source| ReconcileError {
        device,
        doing,
        source,
    }
}

/// Per-device retry state, dropped when a reconcile succeeds.
#[derive(Debug)]
struct Failing {
    attempts: u32,
    backoff: ExponentialBackoff,
}

#[derive(Debug)]
pub struct Controller<S> {
    store: Remembering<S>,
    own_writes: OwnWrites,
    queue: Arc<WorkQueue>,
    policy: Policy,
    config: ReconcilerConfig,
    bmc: BmcConfig,
    /// BMC sessions kept between a device's reconciles (the stages' `Ctx`).
    sessions: Sessions,
    scope: Scope,
    failing: Mutex<HashMap<DeviceId, Failing>>,
}

impl<S: DeviceStore> Controller<S> {
    pub fn new(store: S, config: ReconcilerConfig, scope: &Scope, bmc: BmcConfig) -> Self {
        let own_writes = OwnWrites::default();
        Self {
            store: Remembering::new(store, own_writes.clone()),
            own_writes,
            bmc,
            sessions: Sessions::new(),
            queue: Arc::new(WorkQueue::new(config.queue_capacity)),
            policy: Policy {
                validating_deadline: config.validating_deadline,
            },
            scope: scope.clone(),
            config,
            failing: Mutex::new(HashMap::new()),
        }
    }

    pub fn queue(&self) -> &Arc<WorkQueue> {
        &self.queue
    }

    /// The controller's own writes, for the webhook receiver to recognise their echoes.
    pub fn own_writes(&self) -> &OwnWrites {
        &self.own_writes
    }

    /// The BMC sessions the stages keep open (closed by `serve` at shutdown).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Runs the workers and the resync until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.config.concurrency {
            let this = self.clone();
            workers.spawn(async move {
                loop {
                    let id = this.queue.next().await;
                    // On a task of its own: a panic in one reconcile (a bug racklift must
                    // survive) neither kills this worker nor leaves the device marked running.
                    let reconcile = tokio::spawn({
                        let this = this.clone();
                        async move { this.reconcile_and_schedule(id).await }
                    });
                    if let Err(e) = reconcile.await {
                        tracing::error!(device = %id, error = %e, "the reconcile of this device panicked; it is retried with backoff");
                        this.retry_after_panic(id);
                    }
                    this.queue.done(id);
                }
            });
        }
        workers.spawn(self.clone().resync_forever());
        let this = self.clone();
        workers.spawn(async move { this.sessions.expire_idle().await });
        while let Some(ended) = workers.join_next().await {
            if let Err(e) = ended {
                tracing::error!(error = %e, "a controller task ended unexpectedly");
            }
        }
    }

    async fn resync_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.resync().await {
                Ok(count) => tracing::debug!(devices = count, "resync queued devices"),
                Err(e) => {
                    tracing::warn!(error = %e, "resync could not list devices; trying again at the next interval")
                }
            }
        }
    }

    /// Queues every device in a state racklift acts on: lost webhooks, and work left by a
    /// crash, are picked up here.
    pub async fn resync(&self) -> Result<usize, NetBoxError> {
        let states: Vec<Lifecycle> = lifecycle::acted_on().collect();
        let ids = self.store.devices_in(&states, &self.scope).await?;
        let now = Instant::now();
        let mut queued = 0;
        for id in ids {
            match self.queue.enqueue(id, now) {
                Ok(()) => queued += 1,
                Err(full) => {
                    tracing::warn!(error = %full, "resync stopped early; the rest waits for the next one");
                    break;
                }
            }
        }
        Ok(queued)
    }

    async fn reconcile_and_schedule(&self, id: DeviceId) {
        match self.reconcile(id).await {
            Ok(outcome) => {
                self.lock_failing().remove(&id);
                match outcome {
                    Outcome::Gone => {
                        tracing::info!(device = %id, "device not in NetBox (deleted, or never there): dropped")
                    }
                    Outcome::Unmanaged => {
                        tracing::debug!(device = %id, "device not managed by racklift: left alone")
                    }
                    Outcome::Idle(state) => tracing::debug!(device = %id, %state, "nothing to do"),
                    Outcome::Waiting(state, after) => {
                        tracing::debug!(device = %id, %state, ?after, "waiting");
                        self.requeue(id, after);
                    }
                    Outcome::Moved(tr) => {
                        tracing::info!(device = %id, from = %tr.from, to = %tr.to, "{}", tr.message);
                        // The webhook for this write is recognised as racklift's own and
                        // skipped: go on at once where the new state has work.
                        if lifecycle::acted_on().any(|state| state == tr.to) {
                            self.requeue(id, Duration::ZERO);
                        }
                    }
                }
            }
            Err(e) => self.error_policy(&e),
        }
    }

    fn lock_failing(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, Failing>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn requeue(&self, id: DeviceId, after: Duration) {
        // The longest wait racklift schedules is bounded by the configuration (a year at most);
        // `checked_add` only guards the arithmetic.
        let now = Instant::now();
        let at = now.checked_add(after).unwrap_or(now);
        if let Err(full) = self.queue.enqueue(id, at) {
            tracing::warn!(device = %id, error = %full, "could not requeue; the resync will pick the device up");
        }
    }

    /// Counts one more failure of the device; returns the count and the delay before the next
    /// try.
    fn failed_once_more(&self, id: DeviceId) -> (u32, Duration) {
        let mut failing = self.lock_failing();
        let entry = failing.entry(id).or_insert_with(|| Failing {
            attempts: 0,
            backoff: self.backoff(),
        });
        entry.attempts = entry.attempts.saturating_add(1);
        (
            entry.attempts,
            entry.backoff.next().unwrap_or(self.config.backoff_max),
        )
    }

    fn retry_after_panic(&self, id: DeviceId) {
        let (_, delay) = self.failed_once_more(id);
        self.requeue(id, delay);
    }

    fn error_policy(&self, error: &ReconcileError) {
        let id = error.device;
        let retry = error.retry();
        let (attempts, delay) = self.failed_once_more(id);
        let err = crate::error_chain(error);
        match retry {
            // Someone is editing the device right now: read it again at once, but a device
            // edited over and over is looked at with backoff rather than in a tight loop.
            Retry::Now if attempts <= IMMEDIATE_REREADS => {
                tracing::info!(device = %id, "device changed while racklift decided; reading it again");
                self.requeue(id, Duration::ZERO);
            }
            Retry::Now | Retry::WhileItLasts => {
                tracing::warn!(device = %id, attempt = attempts, retry_in = ?delay, "{err}");
                self.requeue(id, delay);
            }
            Retry::Bounded if attempts <= self.config.stage_retries => {
                tracing::warn!(device = %id, attempt = attempts, retry_in = ?delay, "{err}");
                self.requeue(id, delay);
            }
            Retry::Bounded => {
                tracing::error!(device = %id, attempts, "{err}; giving up until the next resync");
                self.lock_failing().remove(&id);
            }
        }
    }

    /// Reads the device and does what the lifecycle table says, one step.
    pub async fn reconcile(&self, id: DeviceId) -> Result<Outcome, ReconcileError> {
        let Some(device) = self
            .store
            .device(id)
            .await
            .map_err(netbox(id, "reading the device"))?
        else {
            return Ok(Outcome::Gone);
        };
        let state = match device.managed(&self.scope) {
            Ok(state) => state,
            Err(why) => {
                if matches!(why, Unmanaged::UnknownState(_)) {
                    tracing::warn!(device = %id, name = %device.name, "{why}");
                }
                return Ok(Outcome::Unmanaged);
            }
        };
        let now = Utc::now();
        match lifecycle::decide(state, device.stamp.as_ref(), now, &self.policy) {
            Decision::Nothing => Ok(Outcome::Idle(state)),
            Decision::Wait {
                restamp,
                recheck_after,
            } => {
                if restamp {
                    self.store
                        .update_device(&device, &DeviceUpdate::restamp(Stamp::entered(state, now)))
                        .await
                        .map_err(netbox(id, "stamping the state it found"))?;
                }
                Ok(Outcome::Waiting(state, recheck_after))
            }
            Decision::Transition(transition) => self.transition(&device, transition).await,
            Decision::Run { stage, next } => self.run_stage(&device, state, stage, next).await,
        }
    }

    /// Runs a stage step. Its BMC errors are the device's: retried with backoff up to
    /// `stage_retries` (counted in the stamp, so a crash does not reset the count), or at once
    /// `failed` when asking again cannot help (wrong credentials, a 4xx).
    async fn run_stage(
        &self,
        device: &Device,
        state: Lifecycle,
        stage: Stage,
        next: Lifecycle,
    ) -> Result<Outcome, ReconcileError> {
        let now = Utc::now();
        let stamp = device
            .stamp
            .clone()
            .filter(|s| s.state == state)
            .unwrap_or_else(|| Stamp::entered(state, now));
        let ctx = Ctx {
            store: &self.store,
            bmc: &self.bmc,
            sessions: &self.sessions,
            stamp: &stamp,
            now,
        };
        match stages::run(stage, device, &ctx).await {
            Ok(stages::Outcome::Done(message)) => {
                self.transition(device, Transition::to(state, next, message))
                    .await
            }
            Ok(stages::Outcome::Wait(after)) => Ok(Outcome::Waiting(state, after)),
            Ok(stages::Outcome::Fail(reason)) => {
                self.transition(device, Transition::failed(state, reason))
                    .await
            }
            Err(StageError::NetBox(source)) => {
                Err(netbox(device.id, "recording the stage's step")(source))
            }
            Err(StageError::Bmc(e)) => {
                let what = crate::error_chain(&e);
                // The stage may have recorded a step before the BMC failed it: count the
                // attempt on the device as it is now, not on the copy read before the stage.
                let Some(current) = self
                    .store
                    .device(device.id)
                    .await
                    .map_err(netbox(device.id, "reading the device again"))?
                else {
                    return Ok(Outcome::Gone);
                };
                let stamp = current
                    .stamp
                    .clone()
                    .filter(|s| s.state == state)
                    .unwrap_or(stamp);
                let attempts = stamp.attempt.saturating_add(1);
                if e.is_transient() && attempts < self.config.stage_retries {
                    let delay = self.stage_backoff(stamp.attempt);
                    tracing::warn!(device = %device.name, attempt = attempts, retry_in = ?delay, "{state}: {what}");
                    self.store
                        .update_device(&current, &DeviceUpdate::restamp(stamp.retried()))
                        .await
                        .map_err(netbox(device.id, "counting the stage's attempt"))?;
                    return Ok(Outcome::Waiting(state, delay));
                }
                let tries = if e.is_transient() {
                    format!(" (after {attempts} attempts)")
                } else {
                    String::new()
                };
                let reason =
                    format!("{state}: {what}{tries}. Then set the lifecycle to {state} to retry.");
                self.transition(&current, Transition::failed(state, reason))
                    .await
            }
        }
    }

    /// The delay before retry `attempt` (0-based). Past a few dozen doublings every delay is
    /// `backoff_max`: the count (from the stamp, which anyone can edit) never drives a loop.
    fn stage_backoff(&self, attempt: u32) -> Duration {
        const DOUBLINGS: u32 = 32;
        if attempt >= DOUBLINGS {
            return self.config.backoff_max;
        }
        self.backoff()
            .nth(attempt as usize)
            .unwrap_or(self.config.backoff_max)
    }

    /// The one backoff the controller retries with: capped, exponential, jittered.
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.config.backoff_base)
            .with_max_delay(self.config.backoff_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Writes the move through the one writer (`netbox::transition`); a 412 comes back as
    /// an error this controller's retry layer answers with a fresh read.
    async fn transition(
        &self,
        device: &Device,
        transition: Transition,
    ) -> Result<Outcome, ReconcileError> {
        transition::write(&self.store, device, &transition, Carry::default())
            .await
            .map_err(netbox(device.id, "writing the next state"))?;
        Ok(Outcome::Moved(transition))
    }
}

#[cfg(test)]
mod tests;
