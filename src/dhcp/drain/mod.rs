//! The drain: the one process at a time that pushes spooled lease events to NetBox, in rounds.
//! A round lists `pending/` once, reads only the files it has not read before, drops every
//! event a later one for the same MAC supersedes, and sends each MAC's latest event, oldest
//! first; then it looks again for arrivals. An event whose call fails for that event (a 5xx
//! for one device) waits with its own backoff while the other MACs go on; NetBox being away
//! stops the round and the whole drain waits (capped, jittered backoff), up to
//! `dhcp.drain_timeout`, after which the events stay spooled for the next drain. This is the
//! hook side's only retry layer; the decisions are in [`super::schedule`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::LeaseEvent;
use super::discovery::{self, DiscoveryError, LeaseOutcome};
use super::schedule::{Failure, Schedule, superseded};
use super::spool::{Counters, Ignored, Pending, PendingFile, Spool, SpoolError};
use crate::config::{DhcpConfig, Scope};
use crate::netbox::NetBoxClient;

/// While events wait on their own backoff, how often the drain looks for new arrivals: a lease
/// spooled meanwhile must not wait behind another MAC's retry.
const ARRIVAL_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The token or NetBox's configuration is wrong for every event: stop, keep them spooled.
    #[error("the drain stopped; the events stay spooled")]
    NetBox(#[source] DiscoveryError),
}

/// Where the drain takes a lease event: NetBox (through `discovery`) in racklift, a
/// stand-in in the drain's tests.
pub trait LeaseSink {
    fn apply(
        &self,
        event: &LeaseEvent,
    ) -> impl Future<Output = Result<LeaseOutcome, DiscoveryError>>;
}

/// NetBox, with the scope that says which devices racklift manages.
#[derive(Debug, Clone, Copy)]
pub struct NetBoxSink<'a> {
    pub client: &'a NetBoxClient,
    pub scope: &'a Scope,
}

impl LeaseSink for NetBoxSink<'_> {
    fn apply(
        &self,
        event: &LeaseEvent,
    ) -> impl Future<Output = Result<LeaseOutcome, DiscoveryError>> {
        discovery::apply_lease(self.client, self.scope, event)
    }
}

/// What one drain run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// `false`: another drain held the lock; it sees the events.
    pub ran: bool,
    /// What this run did.
    pub counters: Counters,
    /// Events still pending when the run ended (NetBox away, or an event still failing, past
    /// the timeout).
    pub left: usize,
    /// How many times the run listed `pending/`.
    pub rounds: u64,
}

/// Runs one drain: takes the lock (or leaves the work to the drain that has it) and pushes
/// every pending event to NetBox.
pub async fn drain(
    sink: &impl LeaseSink,
    spool: &Spool,
    config: &DhcpConfig,
) -> Result<DrainReport, DrainError> {
    let mut report = DrainReport::default();
    let deadline = Instant::now() + config.drain_timeout;
    loop {
        let Some(lock) = spool.try_lock()? else {
            return Ok(report);
        };
        report.ran = true;
        let mut run = Run {
            sink,
            spool,
            config,
            deadline,
            unsaved: Counters::default(),
            report: &mut report,
            known: BTreeMap::new(),
            schedule: Schedule::new(config),
            grew: Vec::new(),
            set_aside_corrupt: false,
        };
        let result = run.drain_locked().await;
        run.save_counters()?;
        run.report.left = run.known.len();
        drop(lock);
        result?;
        // An event spooled after our last look, whose own drain found the lock taken, is
        // seen here: look once more after letting go.
        if report.left > 0 || !spool.has_pending()? || Instant::now() >= deadline {
            return Ok(report);
        }
    }
}

/// One drain's hold of the lock.
struct Run<'a, S> {
    sink: &'a S,
    spool: &'a Spool,
    config: &'a DhcpConfig,
    deadline: Instant,
    /// What was done since the counters were last saved.
    unsaved: Counters,
    report: &'a mut DrainReport,
    /// The pending events read so far, by file name (arrival order); each MAC's latest only.
    known: BTreeMap<PathBuf, Pending>,
    schedule: Schedule,
    /// The lists that got a new MAC this round (trimmed to `dhcp.record_limit` after it).
    grew: Vec<Ignored>,
    /// Whether this round set an unreadable pending file aside in `corrupt/`.
    set_aside_corrupt: bool,
}

/// How a round ended.
enum RoundEnd {
    /// Every due event was tried.
    Done,
    /// NetBox is away: wait this long before the next round.
    Outage(Duration),
}

impl<S: LeaseSink> Run<'_, S> {
    /// Rounds until nothing is pending, or until what is left cannot be tried before the
    /// deadline; what is left stays in `known` (and on disk).
    async fn drain_locked(&mut self) -> Result<(), DrainError> {
        loop {
            self.gather()?;
            let end = self.round().await;
            self.trim()?;
            // Saved each round, not only at the end: a drain may wait minutes for one MAC, and
            // `dhcp-spool` (and a drain killed meanwhile) should not lose what it did so far.
            self.save_counters()?;
            let end = end?;
            if self.known.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            let (next_try, wake) = match end {
                RoundEnd::Outage(wait) => (now + wait, now + wait),
                // Only MACs in their own backoff are left: sleep until the first is due, but
                // look for arrivals meanwhile.
                RoundEnd::Done => {
                    let due = self.schedule.next_due().unwrap_or(now);
                    (due, due.min(now + ARRIVAL_POLL))
                }
            };
            if next_try >= self.deadline {
                tracing::warn!(
                    left = self.known.len(),
                    "giving up for this run (dhcp.drain_timeout), the events stay spooled"
                );
                return Ok(());
            }
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Lists `pending/` once, reads the files not read before, and removes the events a
    /// later one for the same MAC supersedes.
    fn gather(&mut self) -> Result<(), SpoolError> {
        self.report.rounds += 1;
        let mut before = std::mem::take(&mut self.known);
        let mut listed = BTreeMap::new();
        for path in self.spool.pending_files()? {
            let pending = match before.remove(&path) {
                Some(pending) => pending,
                None => match self.spool.read_pending(&path)? {
                    PendingFile::Event(pending) => pending,
                    PendingFile::Gone => continue,
                    PendingFile::SetAside => {
                        self.set_aside_corrupt = true;
                        continue;
                    }
                },
            };
            listed.insert(path, pending);
        }
        let macs: Vec<_> = listed.values().map(|p| p.event.mac).collect();
        for ((path, pending), stale) in listed.into_iter().zip(superseded(&macs)) {
            if stale {
                let event = &pending.event;
                tracing::info!(mac = %event.mac, ip = %event.ip, kind = event.kind.as_str(), "superseded by a later event for the same MAC");
                self.spool.remove(&pending)?;
                self.unsaved.superseded += 1;
            } else {
                self.known.insert(path, pending);
            }
        }
        Ok(())
    }

    /// Sends each MAC's latest event that is due, oldest first.
    async fn round(&mut self) -> Result<RoundEnd, DrainError> {
        self.schedule.start_round();
        let due: Vec<PathBuf> = {
            let now = Instant::now();
            self.known
                .iter()
                .filter(|(_, p)| self.schedule.is_due(&p.event.mac, now))
                .map(|(path, _)| path.clone())
                .collect()
        };
        for path in due {
            if Instant::now() >= self.deadline {
                break;
            }
            let Some(pending) = self.known.remove(&path) else {
                continue;
            };
            let event = &pending.event;
            match self.sink.apply(event).await {
                Ok(outcome) => {
                    self.schedule.answered(&event.mac);
                    self.settle(&pending, &outcome)?;
                }
                Err(error) => match self
                    .schedule
                    .failed(event.mac, &error.source, Instant::now())
                {
                    Failure::Reject => {
                        let reason = crate::error_chain(&error);
                        tracing::error!(mac = %event.mac, ip = %event.ip, "NetBox refused the lease for good, kept in the spool's rejected/: {reason}");
                        self.unsaved.rejected += 1;
                        self.set_aside(Ignored::Rejected, &pending, &reason)?;
                    }
                    Failure::Stop => {
                        self.known.insert(path, pending);
                        return Err(DrainError::NetBox(error));
                    }
                    Failure::RetryEvent { after } => {
                        tracing::warn!(mac = %event.mac, ip = %event.ip, retry_in = ?after, "{}; the other MACs go on", crate::error_chain(&error));
                        self.known.insert(path, pending);
                    }
                    Failure::Outage { after } => {
                        tracing::warn!(retry_in = ?after, "{}", crate::error_chain(&error));
                        self.known.insert(path, pending);
                        return Ok(RoundEnd::Outage(after));
                    }
                },
            }
        }
        Ok(RoundEnd::Done)
    }

    fn save_counters(&mut self) -> Result<(), SpoolError> {
        if self.unsaved != Counters::default() {
            self.spool.add_counters(&self.unsaved)?;
            self.report.counters.add(&self.unsaved);
            self.unsaved = Counters::default();
        }
        Ok(())
    }

    /// Records what NetBox made of an event and takes it out of pending.
    fn settle(&mut self, pending: &Pending, outcome: &LeaseOutcome) -> Result<(), SpoolError> {
        let event = &pending.event;
        match outcome {
            LeaseOutcome::Applied(text) => {
                tracing::info!(mac = %event.mac, ip = %event.ip, "{text}");
                self.unsaved.applied += 1;
            }
            LeaseOutcome::Unchanged => {
                tracing::info!(mac = %event.mac, ip = %event.ip, kind = event.kind.as_str(), "NetBox already matches the lease");
                self.unsaved.unchanged += 1;
            }
            LeaseOutcome::Conflict(text) => {
                tracing::warn!(mac = %event.mac, ip = %event.ip, "{text}");
                self.unsaved.conflicts += 1;
            }
            LeaseOutcome::Unknown(reason) => {
                tracing::warn!(mac = %event.mac, ip = %event.ip, "lease from an unknown MAC, kept in the spool's unknown/: {reason}");
                self.unsaved.unknown += 1;
                return self.set_aside(Ignored::Unknown, pending, reason);
            }
            LeaseOutcome::NotManaged(reason) => {
                tracing::info!(mac = %event.mac, ip = %event.ip, "lease left alone, kept in the spool's unmanaged/: {reason}");
                self.unsaved.unmanaged += 1;
                return self.set_aside(Ignored::Unmanaged, pending, reason);
            }
            LeaseOutcome::Refused(text) => {
                tracing::warn!(mac = %event.mac, ip = %event.ip, "{text}");
                self.unsaved.rejected += 1;
                return self.set_aside(Ignored::Rejected, pending, text);
            }
        }
        self.spool.forget_ignored(&event.mac)?;
        self.spool.remove(pending)
    }

    fn set_aside(
        &mut self,
        kind: Ignored,
        pending: &Pending,
        reason: &str,
    ) -> Result<(), SpoolError> {
        if self.spool.record_ignored(kind, pending, reason)? && !self.grew.contains(&kind) {
            self.grew.push(kind);
        }
        Ok(())
    }

    /// Holds the lists that grew this round to `dhcp.record_limit`: once per round, so a
    /// round of many new MACs costs one listing, not one per MAC.
    fn trim(&mut self) -> Result<(), SpoolError> {
        let limit = self.config.record_limit;
        for kind in std::mem::take(&mut self.grew) {
            let evicted = self.spool.trim(kind, limit)?;
            if evicted > 0 {
                tracing::info!(
                    list = ?kind,
                    evicted,
                    limit,
                    "the least recently seen MACs left the list (dhcp.record_limit)"
                );
            }
        }
        let evicted = if std::mem::take(&mut self.set_aside_corrupt) {
            self.spool.trim_corrupt(limit)?
        } else {
            0
        };
        if evicted > 0 {
            tracing::info!(
                evicted,
                limit,
                "the oldest unreadable files left corrupt/ (dhcp.record_limit)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
