//! The drain against a stand-in for NetBox (a function of the event, on tokio's paused clock)
//! and a spool in a temporary directory: rounds, per-MAC backoff, supersession, outages and
//! the drain's bounds. The real DHCP servers and NetBox are tests/discovery.rs.

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
                received_at: start + chrono::Duration::milliseconds(i64::try_from(i).expect("few")),
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
