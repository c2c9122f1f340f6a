//! `lifecycle_stamp`: racklift's own record of when a device entered its state and how far the
//! stage got, so deadlines survive edits of other fields and a crash does not repeat a step.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Lifecycle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    #[serde(with = "state_value")]
    pub state: Lifecycle,
    pub since: DateTime<Utc>,
    /// How many times the stage has been retried in this state.
    pub attempt: u32,
    /// Progress inside a stage (e.g. "reset requested"), for stages that take several steps.
    pub step: Option<String>,
    /// When `step` was reached; deadlines inside a stage count from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_since: Option<DateTime<Utc>>,
    /// What the stage saw when it took `step`, in the stage's own format (provisioning: the
    /// reset it asked for and the BMC's state before it), so that after a crash it decides from
    /// what changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

impl Stamp {
    pub fn entered(state: Lifecycle, now: DateTime<Utc>) -> Self {
        Self {
            state,
            since: now,
            attempt: 0,
            step: None,
            step_since: None,
            evidence: None,
        }
    }

    /// This stamp with `step` reached at `now`, with what the stage saw (the stage's retries
    /// start over).
    pub fn at_step(
        &self,
        step: &str,
        evidence: Option<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            step: Some(step.to_owned()),
            step_since: Some(now),
            attempt: 0,
            evidence,
            ..self.clone()
        }
    }

    /// This stamp with `step` renamed (the step's outcome became known), its time and
    /// evidence kept.
    pub fn step_now(&self, step: &str) -> Self {
        Self {
            step: Some(step.to_owned()),
            ..self.clone()
        }
    }

    /// This stamp with one more failed attempt. A hand-edited count at `u32::MAX` stays there.
    pub fn retried(&self) -> Self {
        Self {
            attempt: self.attempt.saturating_add(1),
            ..self.clone()
        }
    }

    /// Reads the custom field's JSON. Anything racklift did not write (hand-edited, an old
    /// format) counts as no stamp: the device is then restamped, never trusted.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

mod state_value {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Lifecycle;

    pub fn serialize<S: Serializer>(state: &Lifecycle, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Lifecycle, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let stamp = Stamp::entered(
            Lifecycle::Validating,
            "2026-11-25T10:00:00Z".parse().expect("time"),
        );
        let json = serde_json::to_value(&stamp).expect("json");
        assert_eq!(json["state"], "validating");
        assert_eq!(Stamp::from_json(&json), Some(stamp));
    }

    #[test]
    fn anything_else_is_no_stamp() {
        for junk in [
            serde_json::json!(null),
            serde_json::json!("validating"),
            serde_json::json!({"state": "bogus", "since": "2026-11-25T10:00:00Z", "attempt": 0, "step": null}),
            serde_json::json!({"state": "racked"}),
        ] {
            assert_eq!(Stamp::from_json(&junk), None, "{junk}");
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use crate::lifecycle::{Lifecycle, Policy, Stamp, decide};
        use crate::testing::{any_json, object_with};

        /// Times across chrono's whole range, and text that is not a time.
        fn times() -> impl Strategy<Value = Value> + Clone {
            prop_oneof![
                (-8_000_000_000_000i64..8_000_000_000_000i64).prop_map(|s| {
                    json!(
                        chrono::DateTime::from_timestamp(s, 0)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    )
                }),
                ".*".prop_map(Value::from),
            ]
        }

        /// Stamps as NetBox may hold them: racklift's, hand-edited, or junk.
        fn stamps() -> impl Strategy<Value = Value> {
            prop_oneof![
                any_json(),
                object_with(
                    &[
                        "state",
                        "since",
                        "attempt",
                        "step",
                        "step_since",
                        "evidence"
                    ],
                    prop_oneof![
                        prop::sample::select(Lifecycle::ALL.map(|s| s.as_str()).to_vec())
                            .prop_map(Value::from),
                        times(),
                        any::<u64>().prop_map(Value::from),
                        Just(json!(u32::MAX)),
                    ],
                ),
            ]
        }

        proptest! {
            // Run longer by hand: PROPTEST_CASES=200000 cargo test --lib stamp_from_netbox
            #[test]
            fn stamp_from_netbox_never_panics_the_decision(
                stamp in stamps(),
                now in -8_000_000_000_000i64..8_000_000_000_000i64,
                deadline in 0u64..=365 * 24 * 3600,
            ) {
                let parsed = Stamp::from_json(&stamp);
                let now = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
                let policy = Policy { validating_deadline: std::time::Duration::from_secs(deadline) };
                for state in Lifecycle::ALL {
                    let _ = decide(state, parsed.as_ref(), now, &policy);
                }
                if let Some(parsed) = parsed {
                    let _ = parsed.retried().at_step("x", None, now).step_now("y");
                }
            }
        }
    }
}
