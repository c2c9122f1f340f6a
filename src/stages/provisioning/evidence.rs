//! Deciding, from what the BMC shows, what became of a reset racklift asked for — pure, so
//! every crash point is a unit test.
//!
//! Before it sends a reset, racklift records in `lifecycle_stamp` the reset and what the BMC
//! showed just before it ([`ResetRecord`]); the step says how far it got:
//!
//! ```text
//!  reset requested   recorded, then racklift crashed: unknown, most likely never sent
//!  reset unanswered  sent, but no answer came (a timeout, a cut connection): the BMC may act
//!  reset refused     the BMC answered the reset with an error, or could not be reached
//!  reset sent        the BMC accepted the reset (2xx)
//! ```
//!
//! Afterwards racklift compares the BMC now with the record. A server counts as booted only on
//! evidence: the one-time override the BMC read back as `Once` is spent (the firmware took the
//! network boot), or — on a BMC that does not report `Once` — the BMC accepted the reset, or
//! the power went from Off to On. A reset is sent again only when the BMC shows no sign of the
//! last one (the override still pending, the power and the reset marks as before) and the last
//! one cannot still be on its way (an unanswered reset gets `power_timeout` to show itself), so
//! a server is not restarted twice for one request; when the evidence cannot tell, the device
//! fails with what racklift saw instead of guessing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::redfish::{BootMarks, BootOverride, Power};

pub const RESET_REQUESTED: &str = "reset requested";
pub const RESET_UNANSWERED: &str = "reset unanswered";
pub const RESET_REFUSED: &str = "reset refused";
pub const RESET_SENT: &str = "reset sent";

/// Resets racklift sends again, for one provisioning, after a reset the BMC took without
/// answering showed no effect. (A refused reset is bounded by the stage's retries; a reset
/// recorded but never sent, by racklift's crashes.)
pub const MAX_RESENDS: u32 = 2;

/// How far the reset got, from the stamp's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Recorded, then racklift stopped: the reset most likely never left.
    Unknown,
    /// Sent, no answer: the BMC may have acted, or may still.
    Unanswered,
    /// The BMC answered with an error, or the connection was refused: not done.
    Refused,
    /// The BMC answered 2xx.
    Accepted,
}

impl Sent {
    pub fn from_step(step: &str) -> Option<Self> {
        match step {
            RESET_REQUESTED => Some(Self::Unknown),
            RESET_UNANSWERED => Some(Self::Unanswered),
            RESET_REFUSED => Some(Self::Refused),
            RESET_SENT => Some(Self::Accepted),
            _ => None,
        }
    }

    pub fn step(self) -> &'static str {
        match self {
            Self::Unknown => RESET_REQUESTED,
            Self::Unanswered => RESET_UNANSWERED,
            Self::Refused => RESET_REFUSED,
            Self::Accepted => RESET_SENT,
        }
    }
}

/// What racklift saw when it asked for a reset, kept in the stamp's `evidence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRecord {
    /// The reset type asked for (`On`, `ForceRestart`…).
    pub reset: String,
    pub power_before: Power,
    /// The BMC read the override back as `Once`: it then reports the boot by spending it.
    pub once: bool,
    pub marks_before: BootMarks,
    /// Unanswered resets before this one in this provisioning that showed no effect.
    #[serde(default)]
    pub resends: u32,
}

impl ResetRecord {
    /// The record in a stamp; a stamp from an older racklift, or hand-edited, has none: racklift
    /// then knows nothing of the state before the reset and assumes the least.
    pub fn from_stamp(evidence: Option<&serde_json::Value>, fallback_reset: &str) -> Self {
        evidence
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(|| Self {
                reset: fallback_reset.to_owned(),
                power_before: Power::Other(String::new()),
                once: false,
                marks_before: BootMarks::default(),
                resends: 0,
            })
    }
}

/// The BMC now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub power: Power,
    pub boot: BootOverride,
    pub marks: BootMarks,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The server booted since the override was set; the text says on what evidence.
    Booted(String),
    /// Look again later.
    Wait,
    /// Set the override and reset again: the BMC shows no sign of the last reset. The text
    /// says what racklift saw, for the journal.
    Resend(String),
    /// Give up, with what racklift saw and what to do.
    Fail(String),
}

/// Limits for [`after_reset`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a reset may take to show its effect.
    pub power_timeout: Duration,
}

/// What to do, given how far the reset got, what racklift saw before it, what the BMC shows
/// now, and how long ago the reset was asked for.
pub fn after_reset(
    sent: Sent,
    before: &ResetRecord,
    now: &Observed,
    waited: Duration,
    limits: Limits,
) -> Next {
    let reset = &before.reset;
    // The firmware took the one-time network boot: the BMC spent the override.
    let taken = before.once && !now.boot.pxe_once_pending();
    let power_moved =
        before.power_before != Power::Other(String::new()) && now.power != before.power_before;
    let marks_moved = now.marks != before.marks_before;
    // Any sign that a reset reached the server since racklift recorded it.
    let reset_seen = taken || power_moved || marks_moved;
    let timed_out = waited >= limits.power_timeout;
    let timeout = humantime::format_duration(limits.power_timeout);
    let asked = match sent {
        Sent::Accepted => format!("racklift's {reset} (accepted by the BMC)"),
        Sent::Refused => format!("racklift's {reset} (refused by the BMC)"),
        Sent::Unanswered => format!("racklift's {reset} (the BMC did not answer)"),
        Sent::Unknown => format!("racklift's {reset} (racklift stopped before its answer)"),
    };
    let resend_or_fail = |seen: String| {
        if sent == Sent::Unanswered && before.resends >= MAX_RESENDS {
            Next::Fail(format!(
                "provisioning: racklift sent the BMC a reset {} times without an answer and none showed an effect: {seen}. Check the BMC's event log and the server's power, then set the lifecycle to provisioning.",
                before.resends + 1
            ))
        } else {
            Next::Resend(seen)
        }
    };
    let cannot_tell = || {
        Next::Fail(format!(
            "provisioning: racklift cannot tell whether {asked} reached the server: the power is On as before, and this BMC reports neither a one-time boot override nor a reset mark. Check the server's console: if it did not boot from the network, set the lifecycle to provisioning."
        ))
    };
    // An unanswered reset may still act: it gets the whole power timeout to show itself.
    let unanswered = |seen: String| {
        if timed_out {
            resend_or_fail(seen)
        } else {
            Next::Wait
        }
    };

    match &now.power {
        Power::On if taken => Next::Booted(format!(
            "one-time PXE boot set and taken (the BMC reports the override spent after {asked}), server powered on"
        )),
        Power::On if !before.once => {
            if sent == Sent::Accepted || reset_seen {
                let how = if sent == Sent::Accepted {
                    asked
                } else if power_moved {
                    format!(
                        "the power went from {} to On after {asked}",
                        before.power_before.as_str()
                    )
                } else {
                    format!("the BMC's reset marks changed after {asked}")
                };
                return Next::Booted(format!(
                    "one-time PXE boot set, server powered on: {how}; this BMC does not report whether the one-time boot was taken"
                ));
            }
            match sent {
                Sent::Refused => resend_or_fail(format!("{asked}; the power is On")),
                Sent::Unanswered if !timed_out => Next::Wait,
                _ => cannot_tell(),
            }
        }
        // The override is still pending.
        Power::On => {
            if sent == Sent::Accepted || reset_seen {
                return if timed_out {
                    Next::Fail(format!(
                        "provisioning: the server did not boot from the network: {timeout} after {asked} the BMC still reports the one-time PXE boot pending. Check the server's boot order and network boot settings and its console, then set the lifecycle to provisioning."
                    ))
                } else {
                    Next::Wait
                };
            }
            let seen = format!(
                "{asked}, yet the one-time PXE boot is still pending and the power and reset marks are as before"
            );
            if sent == Sent::Unanswered {
                unanswered(seen)
            } else {
                resend_or_fail(seen)
            }
        }
        Power::Off | Power::PoweringOff if !reset_seen && sent != Sent::Accepted => {
            // Off, and nothing shows the reset: switching a server on is safe to ask again.
            let seen = format!("{asked}; the power is still {}", now.power.as_str());
            if sent == Sent::Unanswered {
                unanswered(seen)
            } else {
                resend_or_fail(seen)
            }
        }
        _ if timed_out => Next::Fail(format!(
            "provisioning: the server's power stayed {:?} for {timeout} after {asked}. Check the server's power feed and the BMC's event log, then set the lifecycle to provisioning.",
            now.power.as_str()
        )),
        _ => Next::Wait,
    }
}

/// The reset that leaves the server running: `On` when off, a restart when on.
pub fn choose_reset(power: &Power, allowed: &[String], restart_types: &[&str]) -> Option<String> {
    let wanted: &[&str] = match power {
        Power::Off => &["On", "ForceOn"],
        Power::On => restart_types,
        // Half-way through a power change, or no power state: no reset is safe to choose.
        _ => &[],
    };
    wanted
        .iter()
        .find(|t| allowed.iter().any(|a| a == *t))
        .map(|t| (*t).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        power_timeout: Duration::from_secs(300),
    };
    const EARLY: Duration = Duration::from_secs(5);
    const LATE: Duration = Duration::from_secs(301);

    fn record(reset: &str, power: Power, once: bool) -> ResetRecord {
        ResetRecord {
            reset: reset.into(),
            power_before: power,
            once,
            marks_before: BootMarks::default(),
            resends: 0,
        }
    }

    fn observed(power: Power, pending: bool) -> Observed {
        Observed {
            power,
            boot: BootOverride {
                target: Some("Pxe".into()),
                enabled: Some(if pending { "Once" } else { "Disabled" }.into()),
                allowed_targets: None,
            },
            marks: BootMarks::default(),
        }
    }

    #[test]
    fn a_spent_override_is_the_evidence_of_a_network_boot() {
        for sent in [Sent::Unknown, Sent::Refused, Sent::Accepted] {
            let next = after_reset(
                sent,
                &record("ForceRestart", Power::On, true),
                &observed(Power::On, false),
                EARLY,
                LIMITS,
            );
            assert!(
                matches!(&next, Next::Booted(t) if t.contains("taken")),
                "{sent:?}: {next:?}"
            );
        }
    }

    #[test]
    fn a_crash_before_the_reset_of_a_running_server_resends_it() {
        // The chaos run's first wrong device: On before, On now, the override still pending.
        let next = after_reset(
            Sent::Unknown,
            &record("ForceRestart", Power::On, true),
            &observed(Power::On, true),
            EARLY,
            LIMITS,
        );
        assert!(matches!(next, Next::Resend(_)), "{next:?}");
    }

    #[test]
    fn a_crash_before_the_reset_of_a_switched_off_server_resends_it() {
        // The chaos run's second wrong device: Off before, still Off, nothing sent.
        let next = after_reset(
            Sent::Unknown,
            &record("On", Power::Off, true),
            &observed(Power::Off, true),
            EARLY,
            LIMITS,
        );
        assert!(matches!(next, Next::Resend(_)), "{next:?}");
        // Also past the power timeout: the timeout counts from a reset that was sent.
        let next = after_reset(
            Sent::Unknown,
            &record("On", Power::Off, true),
            &observed(Power::Off, true),
            LATE,
            LIMITS,
        );
        assert!(matches!(next, Next::Resend(_)), "{next:?}");
    }

    #[test]
    fn an_unanswered_reset_gets_the_power_timeout_to_show_itself_before_a_second() {
        let before = record("ForceRestart", Power::On, true);
        let pending = observed(Power::On, true);
        assert_eq!(
            after_reset(Sent::Unanswered, &before, &pending, EARLY, LIMITS),
            Next::Wait
        );
        let late = after_reset(Sent::Unanswered, &before, &pending, LATE, LIMITS);
        assert!(matches!(late, Next::Resend(_)), "{late:?}");
        // It acted late: the override is spent.
        let booted = after_reset(
            Sent::Unanswered,
            &before,
            &observed(Power::On, false),
            EARLY,
            LIMITS,
        );
        assert!(matches!(booted, Next::Booted(_)), "{booted:?}");
        let off = record("On", Power::Off, true);
        assert_eq!(
            after_reset(
                Sent::Unanswered,
                &off,
                &observed(Power::Off, true),
                EARLY,
                LIMITS
            ),
            Next::Wait
        );
    }

    #[test]
    fn every_step_name_reads_back_as_its_outcome() {
        for sent in [
            Sent::Unknown,
            Sent::Unanswered,
            Sent::Refused,
            Sent::Accepted,
        ] {
            assert_eq!(Sent::from_step(sent.step()), Some(sent));
        }
        assert_eq!(Sent::from_step("something else"), None);
    }

    #[test]
    fn a_refused_reset_is_sent_again() {
        let next = after_reset(
            Sent::Refused,
            &record("ForceRestart", Power::On, true),
            &observed(Power::On, true),
            EARLY,
            LIMITS,
        );
        assert!(matches!(next, Next::Resend(_)), "{next:?}");
    }

    #[test]
    fn a_sign_of_the_reset_means_wait_for_the_boot_never_a_second_reset() {
        // The override pending, but the reset marks moved: the server is in POST.
        let mut now = observed(Power::On, true);
        now.marks.last_reset = Some("2026-12-07T10:00:00Z".into());
        let before = record("ForceRestart", Power::On, true);
        assert_eq!(
            after_reset(Sent::Unknown, &before, &now, EARLY, LIMITS),
            Next::Wait
        );
        // An accepted reset with the override pending: booting, then a timeout.
        let pending = observed(Power::On, true);
        assert_eq!(
            after_reset(Sent::Accepted, &before, &pending, EARLY, LIMITS),
            Next::Wait
        );
        let late = after_reset(Sent::Accepted, &before, &pending, LATE, LIMITS);
        assert!(
            matches!(&late, Next::Fail(t) if t.contains("still reports the one-time PXE boot pending")),
            "{late:?}"
        );
        // Off → On after an On whose answer was lost: it went through; wait for the boot.
        let on = record("On", Power::Off, true);
        assert_eq!(
            after_reset(
                Sent::Unknown,
                &on,
                &observed(Power::On, true),
                EARLY,
                LIMITS
            ),
            Next::Wait
        );
    }

    #[test]
    fn power_that_stays_off_after_an_accepted_reset_fails_at_the_timeout() {
        let before = record("On", Power::Off, true);
        let off = observed(Power::Off, true);
        assert_eq!(
            after_reset(Sent::Accepted, &before, &off, EARLY, LIMITS),
            Next::Wait
        );
        let late = after_reset(Sent::Accepted, &before, &off, LATE, LIMITS);
        assert!(
            matches!(&late, Next::Fail(t) if t.contains("power stayed \"Off\" for 5m 1s")
                || t.contains("power stayed \"Off\" for 5m")),
            "{late:?}"
        );
    }

    #[test]
    fn a_bmc_without_once_counts_an_accepted_reset_and_never_guesses_a_lost_one() {
        let before = record("ForceRestart", Power::On, false);
        let continuous = Observed {
            boot: BootOverride {
                target: Some("Pxe".into()),
                enabled: Some("Continuous".into()),
                allowed_targets: None,
            },
            ..observed(Power::On, false)
        };
        let ok = after_reset(Sent::Accepted, &before, &continuous, EARLY, LIMITS);
        assert!(
            matches!(&ok, Next::Booted(t) if t.contains("does not report whether")),
            "{ok:?}"
        );
        let unknown = after_reset(Sent::Unknown, &before, &continuous, EARLY, LIMITS);
        assert!(
            matches!(&unknown, Next::Fail(t) if t.contains("cannot tell")),
            "{unknown:?}"
        );
        // Off → On is a boot, whatever the BMC says of the override.
        let from_off = record("On", Power::Off, false);
        let booted = after_reset(Sent::Unknown, &from_off, &continuous, EARLY, LIMITS);
        assert!(matches!(booted, Next::Booted(_)), "{booted:?}");
    }

    #[test]
    fn unanswered_resets_without_effect_are_bounded() {
        let mut before = record("ForceRestart", Power::On, true);
        before.resends = MAX_RESENDS;
        let pending = observed(Power::On, true);
        let next = after_reset(Sent::Unanswered, &before, &pending, LATE, LIMITS);
        assert!(
            matches!(&next, Next::Fail(t) if t.contains("3 times")),
            "{next:?}"
        );
        // A reset recorded but never sent (racklift stopped, or NetBox timed out the record)
        // counts for nothing: it is sent, however often racklift was interrupted before.
        let next = after_reset(Sent::Unknown, &before, &pending, EARLY, LIMITS);
        assert!(matches!(next, Next::Resend(_)), "{next:?}");
    }

    #[test]
    fn a_record_from_an_older_racklift_assumes_the_least() {
        let old = ResetRecord::from_stamp(None, "ForceRestart");
        assert!(!old.once);
        // Power On, nothing known of before, outcome unknown: fail with what was seen.
        let next = after_reset(
            Sent::Unknown,
            &old,
            &observed(Power::On, true),
            EARLY,
            LIMITS,
        );
        assert!(
            matches!(&next, Next::Fail(t) if t.contains("cannot tell")),
            "{next:?}"
        );
    }

    fn allowed(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn an_off_server_is_switched_on_and_a_running_one_restarted() {
        let all = allowed(&[
            "On",
            "ForceOff",
            "GracefulRestart",
            "ForceRestart",
            "PowerCycle",
        ]);
        let prefs = ["ForceRestart", "GracefulRestart", "PowerCycle"];
        assert_eq!(
            choose_reset(&Power::Off, &all, &prefs).as_deref(),
            Some("On")
        );
        assert_eq!(
            choose_reset(&Power::On, &all, &prefs).as_deref(),
            Some("ForceRestart")
        );
        let graceful_only = allowed(&["On", "GracefulRestart"]);
        assert_eq!(
            choose_reset(&Power::On, &graceful_only, &prefs).as_deref(),
            Some("GracefulRestart")
        );
        assert_eq!(
            choose_reset(&Power::Off, &allowed(&["ForceOn"]), &prefs).as_deref(),
            Some("ForceOn")
        );
        assert_eq!(choose_reset(&Power::On, &allowed(&["Nmi"]), &prefs), None);
        assert_eq!(choose_reset(&Power::PoweringOn, &all, &prefs), None);
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::*;
        use crate::redfish::{System, Vendor};
        use crate::testing::{any_json, object_with};

        fn systems() -> impl Strategy<Value = Value> {
            object_with(
                &[
                    "PowerState",
                    "Boot",
                    "LastResetTime",
                    "BootProgress",
                    "Oem",
                    "Actions",
                ],
                prop_oneof![
                    prop::sample::select(vec!["On", "Off", "PoweringOn", "Paused", ""])
                        .prop_map(Value::from),
                    object_with(
                        &[
                            "BootSourceOverrideTarget",
                            "BootSourceOverrideEnabled",
                            "LastState"
                        ],
                        prop::sample::select(vec!["Pxe", "Once", "Disabled", "OSRunning"])
                            .prop_map(Value::from),
                    ),
                ],
            )
        }

        proptest! {
            // Run longer by hand: PROPTEST_CASES=200000 cargo test --lib bmc_answers
            #[test]
            fn bmc_answers_and_stamps_never_panic_the_decision(
                evidence in any_json(),
                system in systems(),
                step in prop::sample::select(vec![RESET_REQUESTED, RESET_UNANSWERED, RESET_REFUSED, RESET_SENT]),
                waited in any::<u64>(),
                vendor in prop::sample::select(vec![Vendor::Ilo5, Vendor::Idrac9, Vendor::Generic]),
            ) {
                let system = System::from_json("/s", &system, None, vendor.quirks());
                let before = ResetRecord::from_stamp(Some(&evidence), "ForceRestart");
                let now = Observed { power: system.power, boot: system.boot, marks: system.marks };
                let sent = Sent::from_step(step).expect("a reset step");
                let limits = Limits { power_timeout: Duration::from_secs(300) };
                let _ = after_reset(sent, &before, &now, Duration::from_secs(waited), limits);
            }
        }
    }
}
