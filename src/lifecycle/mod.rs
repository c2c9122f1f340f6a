//! The bare-metal lifecycle: its states, the one table of what racklift does in each, and the
//! pure decision "given this device as NetBox shows it now, what next?".
//!
//! ```text
//!   racked ──DHCP hook──► discovered ──claim──► provisioning ──Redfish──► validating
//!                                                                           │ report / deadline
//!   monitored ◄──health── ready ◄──playbook── hardening ◄──claim── validated ◄┘
//!
//!   any state ──(racklift: the step failed, with the reason)──► failed
//!   failed ──(operator: sets the state to retry from)──► any state
//! ```
//!
//! Who owns each transition is the `owner` column of [`TABLE`]; a state racklift does not act
//! on is simply absent from it. Nothing here does I/O: [`decide`] is unit-tested on its own and
//! the controller carries out what it returns.

mod stamp;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use stamp::Stamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lifecycle {
    Racked,
    Discovered,
    Provisioning,
    Validating,
    Validated,
    Hardening,
    Ready,
    Monitored,
    Failed,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 9] = [
        Self::Racked,
        Self::Discovered,
        Self::Provisioning,
        Self::Validating,
        Self::Validated,
        Self::Hardening,
        Self::Ready,
        Self::Monitored,
        Self::Failed,
    ];

    /// The value stored in NetBox's `lifecycle` custom field (choice set `lifecycle_states`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Racked => "racked",
            Self::Discovered => "discovered",
            Self::Provisioning => "provisioning",
            Self::Validating => "validating",
            Self::Validated => "validated",
            Self::Hardening => "hardening",
            Self::Ready => "ready",
            Self::Monitored => "monitored",
            Self::Failed => "failed",
        }
    }

    /// The NetBox device `status` racklift mirrors with its own transitions, so NetBox's
    /// standard views and filters show the bring-up too.
    pub const fn netbox_status(self) -> &'static str {
        match self {
            Self::Racked
            | Self::Discovered
            | Self::Provisioning
            | Self::Validating
            | Self::Validated
            | Self::Hardening => "staged",
            Self::Ready | Self::Monitored => "active",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a lifecycle state racklift knows (expected one of racked, discovered, provisioning, validating, validated, hardening, ready, monitored, failed)"
)]
pub struct UnknownState(pub String);

impl FromStr for Lifecycle {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Who writes a transition. racklift's three entry points, each through the one writer
/// (`netbox::transition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The reconciler (`controller`), woken by NetBox's webhook or the resync.
    Reconciler,
    /// The DHCP drain (`dhcp`), when the BMC of a racked device takes a lease.
    DhcpHook,
    /// The validation callback (`http::validation`), when the booted image reports.
    ValidationReport,
}

/// A stage whose work reaches outside NetBox: one module in `stages/` each, run by the
/// reconciler through `stages::run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Redfish: one-time PXE boot and power on; then `validating`.
    Provision,
}

/// What moves a device from a row's `from` to its `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A lease of the device's BMC (the DHCP hook). Never `failed`: a lease NetBox cannot
    /// record is journaled and the device waits.
    Lease,
    /// Taking the device into the next stage: a write, no outside work.
    Claim,
    /// The stage's work; it says when it is done or failed.
    Run(Stage),
    /// A report from the booted image; its verdict may be `failed`, and past
    /// `validating_deadline` without one the reconciler writes `failed`.
    Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub from: Lifecycle,
    pub to: Lifecycle,
    pub owner: Owner,
    pub work: Work,
}

impl Row {
    /// Whether this step may end in `failed` instead of `to` (with the reason).
    pub const fn may_fail(&self) -> bool {
        !matches!(self.work, Work::Lease)
    }
}

/// Every transition racklift writes, with its owner; `failed` is reachable from every row that
/// [`Row::may_fail`]. The operator's moves (enrolling a device at `racked`, retrying a
/// `failed` one from the state it names) are the operator's and absent. `hardening`, `ready`
/// and `monitored` have no row until their stages are built, so a device there waits
/// untouched. Adding a stage is one module in `stages/` and one row here.
pub const TABLE: &[Row] = &[
    Row {
        from: Lifecycle::Racked,
        to: Lifecycle::Discovered,
        owner: Owner::DhcpHook,
        work: Work::Lease,
    },
    Row {
        from: Lifecycle::Discovered,
        to: Lifecycle::Provisioning,
        owner: Owner::Reconciler,
        work: Work::Claim,
    },
    Row {
        from: Lifecycle::Provisioning,
        to: Lifecycle::Validating,
        owner: Owner::Reconciler,
        work: Work::Run(Stage::Provision),
    },
    Row {
        from: Lifecycle::Validating,
        to: Lifecycle::Validated,
        owner: Owner::ValidationReport,
        work: Work::Report,
    },
    Row {
        from: Lifecycle::Validated,
        to: Lifecycle::Hardening,
        owner: Owner::Reconciler,
        work: Work::Claim,
    },
];

/// The row for leaving `state`: at most one per state (a unit test holds the table to it).
pub fn row(state: Lifecycle) -> Option<&'static Row> {
    TABLE.iter().find(|row| row.from == state)
}

/// Whether the table lists `from → to` (the writer refuses any other move).
pub fn listed(from: Lifecycle, to: Lifecycle) -> bool {
    row(from).is_some_and(|row| row.to == to || (to == Lifecycle::Failed && row.may_fail()))
}

/// The states the resync lists: those the reconciler acts on (its own rows, and the report it
/// waits for with a deadline).
pub fn acted_on() -> impl Iterator<Item = Lifecycle> {
    TABLE
        .iter()
        .filter(|row| !matches!(row.work, Work::Lease))
        .map(|row| row.from)
}

/// The limits [`decide`] applies, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub validating_deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKind {
    Info,
    Success,
    Warning,
    Danger,
}

impl JournalKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Danger => "danger",
        }
    }
}

/// A write of the next state, with what the journal says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Lifecycle,
    pub to: Lifecycle,
    pub journal: JournalKind,
    pub message: String,
    /// `lifecycle_error`: set when `to` is `failed`, cleared otherwise.
    pub error: Option<String>,
}

impl Transition {
    pub fn to(from: Lifecycle, to: Lifecycle, message: impl Into<String>) -> Self {
        Self {
            from,
            to,
            journal: JournalKind::Info,
            message: message.into(),
            error: None,
        }
    }

    pub fn failed(from: Lifecycle, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            from,
            to: Lifecycle::Failed,
            journal: JournalKind::Danger,
            message: reason.clone(),
            error: Some(reason),
        }
    }

    pub fn journal_text(&self) -> String {
        format!("racklift: {} → {}: {}", self.from, self.to, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing for racklift to do in this state.
    Nothing,
    /// Write the next state.
    Transition(Transition),
    /// Run the stage; on success the device moves to `next`.
    Run { stage: Stage, next: Lifecycle },
    /// Wait; look again after `recheck_after`. `restamp`: the stamp does not describe the
    /// current state (an operator or the DHCP hook set it), so write a fresh one first: the
    /// deadline counts from when racklift first saw the state.
    Wait {
        restamp: bool,
        recheck_after: Duration,
    },
}

/// What racklift should do with a device in `state` whose stamp is `stamp`, at `now`.
pub fn decide(
    state: Lifecycle,
    stamp: Option<&Stamp>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Decision {
    let Some(row) = row(state) else {
        return Decision::Nothing;
    };
    match row.work {
        // Not the reconciler's: a racked device waits for its BMC's lease.
        Work::Lease => Decision::Nothing,
        Work::Claim => Decision::Transition(Transition::to(
            state,
            row.to,
            format!("claimed for {}", row.to),
        )),
        Work::Run(stage) => Decision::Run {
            stage,
            next: row.to,
        },
        Work::Report => {
            let current = stamp.filter(|stamp| stamp.state == state);
            let since = current.map_or(now, |stamp| stamp.since);
            let waited = (now - since).to_std().unwrap_or_default();
            match policy.validating_deadline.checked_sub(waited) {
                Some(left) if !left.is_zero() => Decision::Wait {
                    restamp: current.is_none(),
                    recheck_after: left,
                },
                _ => Decision::Transition(Transition::failed(
                    state,
                    format!(
                        "validation: no report within {} (since {}). Check that the server PXE-booted the validation image and that it can reach racklift's callback, then set the lifecycle to provisioning to retry.",
                        humantime::format_duration(policy.validating_deadline),
                        since.format("%Y-%m-%d %H:%M:%S UTC"),
                    ),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            validating_deadline: Duration::from_secs(1800),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn every_state_round_trips_through_its_netbox_value() {
        for state in Lifecycle::ALL {
            assert_eq!(state.as_str().parse::<Lifecycle>(), Ok(state));
        }
        assert!("Discovered".parse::<Lifecycle>().is_err());
    }

    #[test]
    fn claims_move_to_the_next_stage() {
        let now = t("2026-11-25T10:00:00Z");
        let decision = decide(Lifecycle::Discovered, None, now, &policy());
        let Decision::Transition(tr) = decision else {
            panic!("expected a transition, got {decision:?}")
        };
        assert_eq!(
            (tr.from, tr.to, tr.error),
            (Lifecycle::Discovered, Lifecycle::Provisioning, None)
        );
        let Decision::Transition(tr) = decide(Lifecycle::Validated, None, now, &policy()) else {
            panic!("expected a transition")
        };
        assert_eq!(tr.to, Lifecycle::Hardening);
    }

    #[test]
    fn states_owned_by_others_or_not_built_are_left_alone() {
        let now = t("2026-11-25T10:00:00Z");
        for state in [
            Lifecycle::Racked,
            Lifecycle::Hardening,
            Lifecycle::Ready,
            Lifecycle::Monitored,
            Lifecycle::Failed,
        ] {
            assert_eq!(
                decide(state, None, now, &policy()),
                Decision::Nothing,
                "{state}"
            );
        }
    }

    #[test]
    fn provisioning_runs_its_stage_towards_validating() {
        let now = t("2026-11-25T10:00:00Z");
        assert_eq!(
            decide(Lifecycle::Provisioning, None, now, &policy()),
            Decision::Run {
                stage: Stage::Provision,
                next: Lifecycle::Validating
            }
        );
    }

    #[test]
    fn validating_waits_for_the_rest_of_the_deadline_from_the_stamp() {
        let stamp = Stamp::entered(Lifecycle::Validating, t("2026-11-25T10:00:00Z"));
        let decision = decide(
            Lifecycle::Validating,
            Some(&stamp),
            t("2026-11-25T10:10:00Z"),
            &policy(),
        );
        assert_eq!(
            decision,
            Decision::Wait {
                restamp: false,
                recheck_after: Duration::from_secs(20 * 60)
            }
        );
    }

    #[test]
    fn validating_set_by_someone_else_is_restamped_and_gets_the_whole_deadline() {
        let stale = Stamp::entered(Lifecycle::Provisioning, t("2026-11-20T10:00:00Z"));
        let decision = decide(
            Lifecycle::Validating,
            Some(&stale),
            t("2026-11-25T10:00:00Z"),
            &policy(),
        );
        assert_eq!(
            decision,
            Decision::Wait {
                restamp: true,
                recheck_after: Duration::from_secs(1800)
            }
        );
    }

    #[test]
    fn validating_past_the_deadline_fails_with_what_to_do() {
        let stamp = Stamp::entered(Lifecycle::Validating, t("2026-11-25T10:00:00Z"));
        let decision = decide(
            Lifecycle::Validating,
            Some(&stamp),
            t("2026-11-25T10:30:00Z"),
            &policy(),
        );
        let Decision::Transition(tr) = decision else {
            panic!("expected failed, got {decision:?}")
        };
        assert_eq!(tr.to, Lifecycle::Failed);
        assert_eq!(tr.journal, JournalKind::Danger);
        let error = tr.error.expect("lifecycle_error is set");
        assert!(error.contains("no report within 30m"), "{error}");
        assert!(
            error.contains("set the lifecycle to provisioning"),
            "{error}"
        );
    }

    #[test]
    fn the_table_has_one_row_per_state_and_lists_what_racklift_writes() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|b| b.from != a.from),
                "two rows leave {}",
                a.from
            );
        }
        assert!(listed(Lifecycle::Racked, Lifecycle::Discovered));
        assert!(
            !listed(Lifecycle::Racked, Lifecycle::Failed),
            "a lease never fails a device"
        );
        assert!(listed(Lifecycle::Validating, Lifecycle::Validated));
        assert!(listed(Lifecycle::Validating, Lifecycle::Failed));
        assert!(!listed(Lifecycle::Validating, Lifecycle::Provisioning));
        assert!(
            !listed(Lifecycle::Failed, Lifecycle::Provisioning),
            "the operator's move"
        );
        assert!(
            !listed(Lifecycle::Ready, Lifecycle::Failed),
            "no stage is built there yet"
        );
    }

    #[test]
    fn every_transition_decide_returns_is_in_the_table() {
        let now = t("2026-11-25T10:00:00Z");
        let old = Stamp::entered(Lifecycle::Validating, t("2026-11-20T10:00:00Z"));
        for state in Lifecycle::ALL {
            for stamp in [None, Some(&old)] {
                match decide(state, stamp, now, &policy()) {
                    Decision::Transition(tr) => {
                        assert!(listed(tr.from, tr.to), "{} → {}", tr.from, tr.to)
                    }
                    Decision::Run { next, .. } => assert!(listed(state, next)),
                    Decision::Nothing | Decision::Wait { .. } => {}
                }
            }
        }
    }

    #[test]
    fn the_resync_lists_the_reconcilers_states_and_validating_but_not_racked() {
        let states: Vec<Lifecycle> = acted_on().collect();
        assert_eq!(
            states,
            [
                Lifecycle::Discovered,
                Lifecycle::Provisioning,
                Lifecycle::Validating,
                Lifecycle::Validated
            ]
        );
    }

    #[test]
    fn the_status_mirror_follows_the_bring_up() {
        assert_eq!(Lifecycle::Provisioning.netbox_status(), "staged");
        assert_eq!(Lifecycle::Monitored.netbox_status(), "active");
        assert_eq!(Lifecycle::Failed.netbox_status(), "failed");
    }

    #[test]
    fn the_choice_set_in_the_repo_lists_exactly_these_states_in_order() {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../netbox/custom_fields.yaml")).expect("yaml");
        let choices: Vec<String> = yaml["choice_sets"][0]["extra_choices"]
            .as_sequence()
            .expect("extra_choices")
            .iter()
            .map(|pair| pair[0].as_str().expect("value").to_owned())
            .collect();
        let states: Vec<String> = Lifecycle::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(choices, states);
    }
}
