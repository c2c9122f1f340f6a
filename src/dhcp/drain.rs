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
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use chrono::Utc;

    use super::*;
    use crate::dhcp::schedule::OUTAGE_AFTER;
    use crate::dhcp::{LeaseEventKind, Mac};
    use crate::netbox::NetBoxError;

    type Answer = Result<LeaseOutcome, NetBoxError>;

    /// NetBox as a function of the event, how often its MAC was sent before, and the time
    /// since the drain started (tokio's clock, paused: sleeps take no real time).
    struct StandIn<F> {
        answer: F,
        start: Instant,
        calls: RefCell<Vec<(Mac, Duration, bool)>>,
    }

    impl<F: Fn(&LeaseEvent, usize, Duration) -> Answer> StandIn<F> {
        fn new(answer: F) -> Self {
            Self {
                answer,
                start: Instant::now(),
                calls: RefCell::new(Vec::new()),
            }
        }

        fn calls(&self) -> Vec<(Mac, Duration, bool)> {
            self.calls.borrow().clone()
        }

        fn failures(&self) -> usize {
            self.calls.borrow().iter().filter(|c| !c.2).count()
        }
    }

    impl<F: Fn(&LeaseEvent, usize, Duration) -> Answer> LeaseSink for StandIn<F> {
        fn apply(
            &self,
            event: &LeaseEvent,
        ) -> impl Future<Output = Result<LeaseOutcome, DiscoveryError>> {
            let elapsed = self.start.elapsed();
            let before = self
                .calls
                .borrow()
                .iter()
                .filter(|c| c.0 == event.mac)
                .count();
            let answer = (self.answer)(event, before, elapsed);
            self.calls
                .borrow_mut()
                .push((event.mac, elapsed, answer.is_ok()));
            std::future::ready(answer.map_err(|source| DiscoveryError {
                mac: event.mac.to_string(),
                ip: event.ip,
                doing: "the stand-in".into(),
                source,
            }))
        }
    }

    fn mac(n: u32) -> Mac {
        let [_, a, b, c] = n.to_be_bytes();
        format!("02:00:00:{a:02x}:{b:02x}:{c:02x}")
            .parse()
            .expect("mac")
    }

    fn config(dir: &std::path::Path) -> DhcpConfig {
        DhcpConfig {
            spool_dir: dir.to_owned(),
            drain_timeout: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            ..DhcpConfig::default()
        }
    }

    /// Spools one commit per MAC, in this order.
    fn spool_leases(spool: &Spool, macs: &[Mac]) {
        let start = Utc::now();
        for (i, mac) in macs.iter().enumerate() {
            spool
                .push(&LeaseEvent {
                    kind: LeaseEventKind::Commit,
                    mac: *mac,
                    ip: "10.213.0.100".parse().expect("ip"),
                    hostname: None,
                    subnet: None,
                    server: "test".into(),
                    received_at: start
                        + chrono::Duration::milliseconds(i64::try_from(i).expect("few")),
                })
                .expect("push");
        }
    }

    fn server_error() -> NetBoxError {
        NetBoxError::Server {
            status: 500,
            method: "PATCH",
            path: "dcim/devices/1/".into(),
            body: "Internal Server Error".into(),
        }
    }

    /// A real "cannot reach NetBox" error: a request that could not even be built.
    fn unreachable() -> NetBoxError {
        let source = reqwest::Client::new()
            .get("http://[::1")
            .build()
            .expect_err("an invalid URL");
        NetBoxError::Unreachable {
            url: "http://netbox.invalid/".into(),
            method: "GET",
            path: "dcim/interfaces/".into(),
            source,
        }
    }

    fn applied() -> Answer {
        Ok(LeaseOutcome::Applied(
            "racklift: racked → discovered".into(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn one_event_netbox_fails_for_waits_alone_while_the_other_macs_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        let bad = mac(1);
        let macs: Vec<Mac> = (1..=20).map(mac).collect();
        spool_leases(&spool, &macs);
        // The first device's PATCH fails four times (a bug in NetBox for that one device).
        let netbox = StandIn::new(|event: &LeaseEvent, before, _| {
            if event.mac == bad && before < 4 {
                Err(server_error())
            } else {
                applied()
            }
        });
        let report = drain(&netbox, &spool, &config(dir.path()))
            .await
            .expect("drain");

        assert_eq!((report.counters.applied, report.left), (20, 0));
        let calls = netbox.calls();
        assert_eq!(calls.len(), 24);
        // Every other MAC was sent at once, right after the bad one's first failure.
        assert_eq!(calls[0], (bad, Duration::ZERO, false));
        for (i, call) in calls[1..20].iter().enumerate() {
            assert_eq!(call.0, macs[i + 1]);
            assert_eq!(call.1, Duration::ZERO, "no other MAC waited: {call:?}");
        }
        // The bad one was retried with growing backoff (1 s, 2 s, 4 s, 8 s, jittered).
        let retries: Vec<Duration> = calls[20..].iter().map(|c| c.1).collect();
        assert!(calls[20..].iter().all(|c| c.0 == bad));
        let gaps: Vec<Duration> = std::iter::once(retries[0])
            .chain(retries.windows(2).map(|w| w[1] - w[0]))
            .collect();
        for (gap, base) in gaps.iter().zip([1, 2, 4, 8]) {
            assert!(
                *gap >= Duration::from_secs(base) && *gap <= Duration::from_secs(2 * base + 1),
                "{gaps:?}"
            );
        }
        assert!(!spool.has_pending().expect("look"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_spooled_while_another_mac_waits_is_sent_within_a_poll() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        spool_leases(&spool, &[mac(1)]);
        let late = mac(2);
        let netbox = StandIn::new(|event: &LeaseEvent, _, _| {
            if event.mac == mac(1) {
                Err(server_error())
            } else {
                applied()
            }
        });
        let arrival = {
            let spool = spool.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                spool_leases(&spool, &[late]);
                tokio::time::sleep(Duration::from_secs(5)).await;
                spool.counters().expect("counters")
            }
        };
        let mut config = config(dir.path());
        config.drain_timeout = Duration::from_secs(60);
        let (report, counters_meanwhile) = tokio::join!(drain(&netbox, &spool, &config), arrival);
        let report = report.expect("drain");
        assert_eq!(
            counters_meanwhile.applied, 1,
            "saved while the drain still waits for the other MAC"
        );
        assert_eq!((report.counters.applied, report.left), (1, 1));
        let sent = netbox
            .calls()
            .into_iter()
            .find(|c| c.0 == late)
            .expect("the late lease was sent");
        assert!(
            sent.1 <= Duration::from_secs(10) + ARRIVAL_POLL,
            "sent {:?} after the start, spooled at 10 s",
            sent.1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn netbox_away_costs_one_request_per_wait_not_one_per_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        spool_leases(&spool, &(1..=200).map(mac).collect::<Vec<_>>());
        let netbox = StandIn::new(|_: &LeaseEvent, _, elapsed| {
            if elapsed < Duration::from_secs(120) {
                Err(unreachable())
            } else {
                applied()
            }
        });
        let report = drain(&netbox, &spool, &config(dir.path()))
            .await
            .expect("drain");
        assert_eq!((report.counters.applied, report.left), (200, 0));
        // Waits of 1, 2, 4, 8, 16, 30, 30… s (jittered, up to twice that) until 120 s.
        let failures = netbox.failures();
        assert!((4..=14).contains(&failures), "{failures} failing requests");
        assert_eq!(netbox.calls().len(), 200 + failures);
    }

    #[tokio::test(start_paused = true)]
    async fn a_netbox_failing_every_event_is_an_outage_not_a_request_per_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        spool_leases(&spool, &(1..=200).map(mac).collect::<Vec<_>>());
        // A proxy in front of a stopped NetBox answers 502 to everything.
        let netbox = StandIn::new(|_: &LeaseEvent, _, elapsed| {
            if elapsed < Duration::from_secs(120) {
                Err(NetBoxError::Server {
                    status: 502,
                    method: "GET",
                    path: "dcim/interfaces/".into(),
                    body: "Bad Gateway".into(),
                })
            } else {
                applied()
            }
        });
        let report = drain(&netbox, &spool, &config(dir.path()))
            .await
            .expect("drain");
        assert_eq!((report.counters.applied, report.left), (200, 0));
        let failures = netbox.failures();
        assert!(
            failures <= 14 * OUTAGE_AFTER,
            "{failures} failing requests: at most {OUTAGE_AFTER} per wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_still_fails_at_the_timeout_stays_spooled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        spool_leases(&spool, &[mac(1), mac(2), mac(3)]);
        let netbox = StandIn::new(|event: &LeaseEvent, _, _| {
            if event.mac == mac(2) {
                Err(server_error())
            } else {
                applied()
            }
        });
        let mut config = config(dir.path());
        config.drain_timeout = Duration::from_secs(60);
        let started = Instant::now();
        let report = drain(&netbox, &spool, &config).await.expect("drain");
        assert!(started.elapsed() <= Duration::from_secs(60));
        assert_eq!((report.counters.applied, report.left), (2, 1));
        assert_eq!(spool.pending_files().expect("list").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_spool_is_read_once_and_each_macs_latest_event_sent_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        // 400 MACs, each with three events (the later two a renewal storm).
        let macs: Vec<Mac> = (1..=400).map(mac).collect();
        for _ in 0..3 {
            spool_leases(&spool, &macs);
        }
        let netbox = StandIn::new(|_: &LeaseEvent, _, _| {
            Ok(LeaseOutcome::Unknown(
                "no device interface in NetBox has it".into(),
            ))
        });
        let mut config = config(dir.path());
        config.record_limit = 100;
        let report = drain(&netbox, &spool, &config).await.expect("drain");
        assert_eq!(report.counters.superseded, 800);
        assert_eq!(report.counters.unknown, 400);
        assert_eq!(netbox.calls().len(), 400);
        // One listing and one read of each file send everything.
        assert_eq!(report.rounds, 1);
        let unknown = spool.ignored(Ignored::Unknown).expect("list");
        assert_eq!(unknown.items.len(), 100, "held to dhcp.record_limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_lease_is_one_record_per_mac_whatever_the_renewals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        let (no_prefix, four_xx) = (mac(1), mac(2));
        let netbox = StandIn::new(|event: &LeaseEvent, _, _| {
            if event.mac == no_prefix {
                Ok(LeaseOutcome::Refused(
                    "racklift: DHCP lease 10.213.0.100 not recorded: no NetBox prefix contains it"
                        .into(),
                ))
            } else {
                Err(NetBoxError::Rejected {
                    status: 400,
                    method: "POST",
                    path: "ipam/ip-addresses/".into(),
                    body: "{\"vrf\": [\"bad\"]}".into(),
                })
            }
        });
        for _ in 0..3 {
            spool_leases(&spool, &[no_prefix, four_xx]);
            let report = drain(&netbox, &spool, &config(dir.path()))
                .await
                .expect("drain");
            assert_eq!((report.counters.rejected, report.left), (2, 0));
        }
        let rejected = spool.ignored(Ignored::Rejected).expect("list");
        let counts: HashMap<Mac, u64> = rejected
            .items
            .iter()
            .map(|r| (r.event.mac, r.count))
            .collect();
        assert_eq!(counts, HashMap::from([(no_prefix, 3), (four_xx, 3)]));
        assert_eq!(
            std::fs::read_dir(dir.path().join("rejected"))
                .expect("list")
                .count(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_stops_the_drain_and_keeps_every_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("spool");
        spool_leases(&spool, &[mac(1), mac(2)]);
        let netbox = StandIn::new(|_: &LeaseEvent, _, _| {
            Err(NetBoxError::TokenRefused {
                status: 403,
                method: "GET",
                path: "dcim/interfaces/".into(),
            })
        });
        let error = drain(&netbox, &spool, &config(dir.path()))
            .await
            .expect_err("stops");
        assert!(matches!(error, DrainError::NetBox(_)), "{error:?}");
        assert_eq!(netbox.calls().len(), 1);
        assert_eq!(spool.pending_files().expect("list").len(), 2);
    }
}
