//! The drain's decisions, kept apart from its file and NetBox work so they can be tested alone:
//! which spooled events a later one supersedes, when a MAC whose event failed is tried again,
//! and when a failure is NetBox's rather than the event's, so the whole round waits instead of
//! every pending event failing in turn.
//!
//! ```text
//!   NetBox answered (any outcome, a 4xx too) ─► the MAC's wait, the streak, the outage: cleared
//!   5xx / 412 for one event ─► that MAC waits (capped, jittered backoff); the round goes on
//!   OUTAGE_AFTER of those in a row, or NetBox unreachable ─► the round stops and waits
//!                                                            (its own capped, jittered backoff)
//! ```

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use super::Mac;
use crate::config::DhcpConfig;
use crate::netbox::NetBoxError;

/// Server errors for this many different events in a row, with no answer in between, are
/// taken as NetBox (or the proxy in front of it) failing, not the events: one bad device must
/// not stop the others, and a broken NetBox must not be sent every pending event in turn.
pub const OUTAGE_AFTER: usize = 5;

/// What a NetBox error means for the event that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// NetBox cannot be reached at all: nothing will get through now.
    Away,
    /// This event's call failed in a way that may pass (5xx, the device changed under us).
    EventFailed,
    /// NetBox refused this event: asking again gets the same answer.
    Refused,
    /// Nothing will work until the operator fixes the token.
    Stop,
}

/// The one place that decides whether a NetBox error is transient, and for whom.
fn kind(error: &NetBoxError) -> Kind {
    match error {
        NetBoxError::Unreachable { .. } => Kind::Away,
        NetBoxError::Server { .. } | NetBoxError::Changed { .. } => Kind::EventFailed,
        NetBoxError::Rejected { .. }
        | NetBoxError::EmptyFilter { .. }
        | NetBoxError::Unlisted { .. }
        | NetBoxError::Unexpected { .. } => Kind::Refused,
        NetBoxError::TokenRefused { .. } => Kind::Stop,
    }
}

/// What the drain does after a failed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The event stays pending; its MAC is tried again after `after`, the round goes on.
    RetryEvent { after: Duration },
    /// NetBox is away: stop the round, wait `after`, then look again.
    Outage { after: Duration },
    /// Keep the event aside in `rejected/` with the reason.
    Reject,
    /// Stop the drain; the events stay spooled.
    Stop,
}

#[derive(Debug)]
struct Waiting {
    until: Instant,
    backoff: ExponentialBackoff,
}

/// Per-MAC retry times and the outage state of one drain run.
#[derive(Debug)]
pub struct Schedule {
    base: Duration,
    max: Duration,
    waiting: HashMap<Mac, Waiting>,
    /// The MACs whose events failed in a row in this round, with no answer in between.
    streak: Vec<Mac>,
    /// Set while NetBox is away; its next value is the next round's wait.
    outage: Option<ExponentialBackoff>,
}

impl Schedule {
    pub fn new(config: &DhcpConfig) -> Self {
        Self {
            base: config.backoff_base,
            max: config.backoff_max,
            waiting: HashMap::new(),
            streak: Vec::new(),
            outage: None,
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// A round starts: failures of the last round do not count towards an outage in this one.
    pub fn start_round(&mut self) {
        self.streak.clear();
    }

    /// Whether the MAC's event may be tried at `now`.
    pub fn is_due(&self, mac: &Mac, now: Instant) -> bool {
        self.waiting.get(mac).is_none_or(|w| w.until <= now)
    }

    /// When the first waiting MAC is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.until).min()
    }

    /// NetBox answered for the MAC (whatever the outcome): it is up, and the MAC's event is done.
    pub fn answered(&mut self, mac: &Mac) {
        self.waiting.remove(mac);
        self.streak.clear();
        self.outage = None;
    }

    /// The MAC's event failed at `now` with `error`: what to do.
    pub fn failed(&mut self, mac: Mac, error: &NetBoxError, now: Instant) -> Failure {
        match kind(error) {
            Kind::Stop => Failure::Stop,
            Kind::Refused => {
                self.answered(&mac);
                Failure::Reject
            }
            Kind::Away => self.outage(),
            Kind::EventFailed => {
                self.streak.push(mac);
                if self.streak.len() >= OUTAGE_AFTER {
                    return self.outage();
                }
                let fresh = self.backoff();
                let waiting = self.waiting.entry(mac).or_insert(Waiting {
                    until: now,
                    backoff: fresh,
                });
                let after = waiting.backoff.next().unwrap_or(self.max);
                waiting.until = now + after;
                Failure::RetryEvent { after }
            }
        }
    }

    fn outage(&mut self) -> Failure {
        // The streak's events were not at fault: they wait for NetBox, not for themselves.
        for mac in self.streak.drain(..) {
            self.waiting.remove(&mac);
        }
        let fresh = self.backoff();
        let after = self.outage.get_or_insert(fresh).next().unwrap_or(self.max);
        Failure::Outage { after }
    }
}

/// Of events in arrival order, tells for each whether a later one for the same MAC supersedes
/// it: only each MAC's latest event is worth sending (it says what the MAC holds now).
pub fn superseded(macs: &[Mac]) -> Vec<bool> {
    let mut latest: HashMap<Mac, usize> = HashMap::with_capacity(macs.len());
    for (i, mac) in macs.iter().enumerate() {
        latest.insert(*mac, i);
    }
    macs.iter()
        .enumerate()
        .map(|(i, mac)| latest.get(mac) != Some(&i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        format!("02:00:00:00:00:{n:02x}").parse().expect("mac")
    }

    fn config() -> DhcpConfig {
        DhcpConfig {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            ..DhcpConfig::default()
        }
    }

    fn server_error() -> NetBoxError {
        NetBoxError::Server {
            status: 503,
            method: "GET",
            path: "dcim/interfaces/".into(),
            body: String::new(),
        }
    }

    #[test]
    fn only_each_macs_latest_event_is_kept() {
        let (a, b, c) = (mac(1), mac(2), mac(3));
        assert_eq!(
            superseded(&[a, b, a, c, a, b]),
            [true, true, true, false, false, false]
        );
        assert!(superseded(&[]).is_empty());
    }

    #[test]
    fn a_failing_event_waits_alone_with_growing_capped_backoff() {
        let mut schedule = Schedule::new(&config());
        let now = Instant::now();
        let (bad, good) = (mac(1), mac(2));
        let mut last = Duration::ZERO;
        for attempt in 0..12 {
            schedule.start_round();
            let Failure::RetryEvent { after } = schedule.failed(bad, &server_error(), now) else {
                panic!("attempt {attempt}: one event's 5xx is that event's");
            };
            // Jitter adds up to the delay itself: the delay doubles from 1 s, capped at 30 s.
            assert!(after >= Duration::from_secs(1) && after < Duration::from_secs(60));
            if attempt == 0 {
                assert!(after < Duration::from_secs(2));
            }
            last = after;
            assert!(!schedule.is_due(&bad, now));
            assert!(schedule.is_due(&good, now), "other MACs go on");
        }
        assert!(
            last >= Duration::from_secs(30),
            "capped at backoff_max: {last:?}"
        );
        assert_eq!(schedule.next_due(), Some(now + last));
        assert!(schedule.is_due(&bad, now + last));
        schedule.answered(&bad);
        assert_eq!(schedule.next_due(), None);
    }

    #[test]
    fn server_errors_for_many_events_in_a_row_are_an_outage_not_theirs() {
        let mut schedule = Schedule::new(&config());
        let now = Instant::now();
        schedule.start_round();
        for n in 0..OUTAGE_AFTER - 1 {
            let n = u8::try_from(n).expect("small");
            assert!(matches!(
                schedule.failed(mac(n), &server_error(), now),
                Failure::RetryEvent { .. }
            ));
        }
        let last = u8::try_from(OUTAGE_AFTER).expect("small");
        assert!(matches!(
            schedule.failed(mac(last), &server_error(), now),
            Failure::Outage { .. }
        ));
        assert_eq!(
            schedule.next_due(),
            None,
            "the events were not at fault: none waits on its own"
        );

        // An answer in between breaks the streak: one bad event among good ones stays its own.
        let mut schedule = Schedule::new(&config());
        schedule.start_round();
        for n in 0..3 * OUTAGE_AFTER {
            let n = u8::try_from(n).expect("small");
            if n % 2 == 0 {
                assert!(matches!(
                    schedule.failed(mac(n), &server_error(), now),
                    Failure::RetryEvent { .. }
                ));
            } else {
                schedule.answered(&mac(n));
            }
        }
        // A new round starts a new streak.
        let mut schedule = Schedule::new(&config());
        for round in 0..3 * OUTAGE_AFTER {
            schedule.start_round();
            let n = u8::try_from(round).expect("small");
            assert!(matches!(
                schedule.failed(mac(n), &server_error(), now),
                Failure::RetryEvent { .. }
            ));
        }
    }

    #[test]
    fn refusals_are_set_aside_and_a_refused_token_stops() {
        let mut schedule = Schedule::new(&config());
        let now = Instant::now();
        schedule.failed(mac(1), &server_error(), now);
        let refused = NetBoxError::Rejected {
            status: 400,
            method: "POST",
            path: "ipam/ip-addresses/".into(),
            body: "bad".into(),
        };
        assert_eq!(schedule.failed(mac(1), &refused, now), Failure::Reject);
        assert!(schedule.is_due(&mac(1), now));
        let token = NetBoxError::TokenRefused {
            status: 403,
            method: "GET",
            path: "dcim/interfaces/".into(),
        };
        assert_eq!(schedule.failed(mac(2), &token, now), Failure::Stop);
    }
}
