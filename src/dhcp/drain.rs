//! The drain: the one process at a time that pushes spooled lease events to NetBox, oldest
//! first. A later event for the same MAC supersedes an earlier one; NetBox being away is waited
//! out with capped, jittered backoff up to `dhcp.drain_timeout`, after which the events stay
//! spooled for the next drain. This is the hook side's only retry layer.

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

use super::spool::{Counters, Ignored, Pending, Spool, SpoolError};
use crate::config::{DhcpConfig, Scope};
use crate::netbox::{NetBoxClient, NetBoxError};
use crate::stages::discovery::{self, DiscoveryError, LeaseOutcome};

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The token or NetBox's configuration is wrong for every event: stop, keep them spooled.
    #[error("the drain stopped; the events stay spooled")]
    NetBox(#[source] DiscoveryError),
}

/// What one drain run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// `false`: another drain held the lock; it sees the events.
    pub ran: bool,
    /// What this run did.
    pub counters: Counters,
    /// Events still pending when the run ended (NetBox away past the timeout).
    pub left: usize,
}

/// Drops every event but the newest for each MAC; returns what is left, oldest first.
fn supersede(
    spool: &Spool,
    pending: Vec<Pending>,
    counters: &mut Counters,
) -> Result<Vec<Pending>, SpoolError> {
    let mut newest: HashMap<_, usize> = HashMap::new();
    for (i, p) in pending.iter().enumerate() {
        newest.insert(p.event.mac, i);
    }
    let mut keep = Vec::with_capacity(newest.len());
    for (i, p) in pending.into_iter().enumerate() {
        if newest.get(&p.event.mac) == Some(&i) {
            keep.push(p);
        } else {
            tracing::info!(mac = %p.event.mac, ip = %p.event.ip, kind = p.event.kind.as_str(), "superseded by a later event for the same MAC");
            spool.remove(&p)?;
            counters.superseded += 1;
        }
    }
    Ok(keep)
}

/// How a failed event is handled.
enum Failure {
    /// NetBox away (or the device changed under us): wait and try again.
    Retry,
    /// NetBox refused this event: keep it aside with the reason.
    Reject,
    /// Nothing will work until the operator fixes the token: stop.
    Stop,
}

fn classify(error: &NetBoxError) -> Failure {
    match error {
        NetBoxError::Unreachable { .. }
        | NetBoxError::Server { .. }
        | NetBoxError::Changed { .. } => Failure::Retry,
        NetBoxError::Rejected { .. }
        | NetBoxError::EmptyFilter { .. }
        | NetBoxError::Unexpected { .. } => Failure::Reject,
        NetBoxError::TokenRefused { .. } => Failure::Stop,
    }
}

/// Runs one drain: takes the lock (or leaves the work to the drain that has it) and pushes
/// every pending event to NetBox.
pub async fn drain(
    client: &NetBoxClient,
    spool: &Spool,
    config: &DhcpConfig,
    scope: &Scope,
) -> Result<DrainReport, DrainError> {
    let mut report = DrainReport::default();
    let deadline = Instant::now() + config.drain_timeout;
    loop {
        let Some(lock) = spool.try_lock()? else {
            return Ok(report);
        };
        report.ran = true;
        let mut counters = Counters::default();
        let result = drain_locked(
            client,
            spool,
            config,
            scope,
            deadline,
            &mut counters,
            &mut report.left,
        )
        .await;
        spool.add_counters(&counters)?;
        report.counters.add(&counters);
        drop(lock);
        result?;
        // An event spooled while we held the lock, whose own drain found the lock taken, is
        // seen here: look once more after letting go.
        if report.left > 0 || spool.pending()?.is_empty() || Instant::now() >= deadline {
            return Ok(report);
        }
    }
}

async fn drain_locked(
    client: &NetBoxClient,
    spool: &Spool,
    config: &DhcpConfig,
    scope: &Scope,
    deadline: Instant,
    counters: &mut Counters,
    left: &mut usize,
) -> Result<(), DrainError> {
    let mut backoff = new_backoff(config);
    loop {
        let pending = supersede(spool, spool.pending()?, counters)?;
        let Some(oldest) = pending.first() else {
            *left = 0;
            return Ok(());
        };
        let event = &oldest.event;
        match discovery::apply_lease(client, scope, event).await {
            Ok(outcome) => {
                backoff = new_backoff(config);
                match &outcome {
                    LeaseOutcome::Applied(text) => {
                        tracing::info!(mac = %event.mac, ip = %event.ip, "{text}");
                        counters.applied += 1;
                    }
                    LeaseOutcome::Unchanged => {
                        tracing::info!(mac = %event.mac, ip = %event.ip, kind = event.kind.as_str(), "NetBox already matches the lease");
                        counters.unchanged += 1;
                    }
                    LeaseOutcome::Conflict(text) => {
                        tracing::warn!(mac = %event.mac, ip = %event.ip, "{text}");
                        counters.conflicts += 1;
                    }
                    LeaseOutcome::Unknown(reason) => {
                        tracing::warn!(mac = %event.mac, ip = %event.ip, "lease from an unknown MAC, kept in the spool's unknown/: {reason}");
                        counters.unknown += 1;
                        spool.record_ignored(Ignored::Unknown, oldest, reason)?;
                        continue;
                    }
                    LeaseOutcome::NotManaged(reason) => {
                        tracing::info!(mac = %event.mac, ip = %event.ip, "lease left alone, kept in the spool's unmanaged/: {reason}");
                        counters.unmanaged += 1;
                        spool.record_ignored(Ignored::Unmanaged, oldest, reason)?;
                        continue;
                    }
                    LeaseOutcome::Refused(text) => {
                        tracing::warn!(mac = %event.mac, ip = %event.ip, "{text}");
                        counters.rejected += 1;
                        spool.reject(oldest, text)?;
                        continue;
                    }
                }
                spool.forget_ignored(&event.mac)?;
                spool.remove(oldest)?;
            }
            Err(error) => match classify(&error.source) {
                Failure::Reject => {
                    let reason = crate::error_chain(&error);
                    tracing::error!(mac = %event.mac, ip = %event.ip, "NetBox refused the lease for good, kept in the spool's rejected/: {reason}");
                    counters.rejected += 1;
                    spool.reject(oldest, &reason)?;
                }
                Failure::Stop => return Err(DrainError::NetBox(error)),
                Failure::Retry => {
                    let wait = backoff.next().unwrap_or(config.backoff_max);
                    if Instant::now() + wait >= deadline {
                        *left = pending.len();
                        tracing::warn!(
                            left = *left,
                            "{}; giving up for this run, the events stay spooled",
                            crate::error_chain(&error)
                        );
                        return Ok(());
                    }
                    tracing::warn!(retry_in = ?wait, "{}", crate::error_chain(&error));
                    tokio::time::sleep(wait).await;
                }
            },
        }
    }
}

fn new_backoff(config: &DhcpConfig) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(config.backoff_base)
        .with_max_delay(config.backoff_max)
        .with_jitter()
        .without_max_times()
        .build()
}
