//! The `reconciler:` section: how many devices are reconciled at once, how often every device
//! is looked at again, how long the queue may grow, and the retry policy.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DurationSetting};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// Devices reconciled at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How often every device in a racklift-owned state is queued again.
    #[serde(default = "default_resync", with = "humantime_serde")]
    pub resync_interval: Duration,
    /// How long a device may stay `validating` before it is `failed`.
    #[serde(default = "default_validating_deadline", with = "humantime_serde")]
    pub validating_deadline: Duration,
    /// Distinct devices the queue holds before webhooks are answered 503.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// First retry delay; doubles per attempt up to `backoff_max`, with jitter.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Retries of an error that is the device's (not NetBox being down) before it is `failed`.
    #[serde(default = "default_stage_retries")]
    pub stage_retries: u32,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            resync_interval: default_resync(),
            validating_deadline: default_validating_deadline(),
            queue_capacity: default_queue_capacity(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            stage_retries: default_stage_retries(),
        }
    }
}

fn default_concurrency() -> usize {
    8
}
fn default_resync() -> Duration {
    Duration::from_secs(60)
}
fn default_validating_deadline() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_queue_capacity() -> usize {
    100_000
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_stage_retries() -> u32 {
    5
}

impl ReconcilerConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 || self.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "reconciler.concurrency and reconciler.queue_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn durations(&self) -> Vec<DurationSetting> {
        vec![
            DurationSetting::positive("reconciler.resync_interval", self.resync_interval),
            DurationSetting::positive("reconciler.validating_deadline", self.validating_deadline),
            DurationSetting::positive("reconciler.backoff_base", self.backoff_base),
            DurationSetting::positive("reconciler.backoff_max", self.backoff_max),
        ]
    }
}
