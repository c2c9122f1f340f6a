//! Validation: the booted server's report (validation/SCHEMA.md) checked against NetBox — the
//! device type's interfaces, what NetBox already records, the switches LLDP sees, and the
//! hardware the operator expects — and, only when everything matches, NetBox made to match:
//! interfaces, MAC addresses, cables, then `validated`. Any difference: nothing is created or
//! changed, the device is `failed` with the list of differences.
//!
//! [`Validator::apply`] reads ([`gather`], with the switches and device types it remembers in
//! [`lookups`]), decides ([`binding`], [`check`]: pure) and only then writes ([`write`]), one
//! report per device at a time ([`locks`]).

mod binding;
mod check;
mod gather;
mod locks;
mod lookups;
mod report;
mod write;

#[cfg(test)]
mod no_panic;

use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use ipnet::IpNet;
use serde_json::{Value, json};

pub use check::{Expectations, Facts, IfacePlan, MacPlan, Plan, check};
pub use report::{Report, parse};

use crate::config::{Scope, ValidationConfig};
use crate::lifecycle::{JournalKind, Lifecycle, Transition};
use crate::netbox::transition::{self, Carry};
use crate::netbox::{Device, NetBoxClient, NetBoxError};
use check::Iface;
use gather::BySerial;
use locks::DeviceLocks;
use lookups::{Lookups, Used};

/// How the callback answered, for the HTTP layer.
#[derive(Debug)]
pub enum Verdict {
    Validated {
        summary: Value,
    },
    Failed {
        differences: Vec<String>,
    },
    /// The device left `validating` after this very report passed.
    AlreadyApplied,
    /// 404: no device has the serial.
    NoDevice(String),
    /// 409: the device is not racklift's, or not waiting for a report.
    Refused(String),
    /// 403: the report is not bound to the device (its source address, its MACs).
    Forbidden(String),
    /// 503: another report for the device is still being applied.
    Busy(String),
}

#[derive(Debug, thiserror::Error)]
#[error("validation of serial {serial}: {doing}")]
pub struct ValidationError {
    pub serial: String,
    pub doing: &'static str,
    #[source]
    pub source: NetBoxError,
}

/// Applies reports; one per `racklift serve`, shared by its requests.
#[derive(Debug)]
pub struct Validator {
    client: NetBoxClient,
    scope: Scope,
    sources: Vec<IpNet>,
    apply_wait: Duration,
    locks: DeviceLocks,
    lookups: Lookups,
}

impl Validator {
    pub fn new(client: NetBoxClient, scope: Scope, config: &ValidationConfig) -> Self {
        Self {
            client,
            scope,
            sources: config.sources.clone(),
            apply_wait: config.apply_wait,
            locks: DeviceLocks::default(),
            lookups: Lookups::default(),
        }
    }

    /// Checks `report` (sent from `source`) and, when it matches, makes NetBox match it.
    /// Writes nothing to a device racklift does not manage; a refused report of a managed
    /// device is journaled on it (once, however often it is sent again) and nothing else.
    pub async fn apply(&self, report: &Report, source: IpAddr) -> Result<Verdict, ValidationError> {
        let client = &self.client;
        let fail = |doing: &'static str| {
            let serial = report.serial.clone();
            move |source| ValidationError {
                serial,
                doing,
                source,
            }
        };
        let id = match gather::device_by_serial(client, &report.serial)
            .await
            .map_err(fail("finding the device"))?
        {
            BySerial::One(id) => id,
            BySerial::None => {
                return Ok(Verdict::NoDevice(format!(
                    "no device in NetBox has the serial {:?}",
                    report.serial
                )));
            }
            BySerial::Several(n) => {
                return Ok(Verdict::Refused(format!(
                    "{n} devices in NetBox have the serial {:?}; racklift cannot tell which server this is",
                    report.serial
                )));
            }
        };
        let Some(_held) = self.locks.lock(id, self.apply_wait).await else {
            return Ok(Verdict::Busy(format!(
                "another report for the device with the serial {:?} has been applied for over {}; try again later",
                report.serial,
                humantime::format_duration(self.apply_wait)
            )));
        };
        // Read after the lock: an apply that just finished has changed the device.
        let Some((full, device)) = gather::device(client, id)
            .await
            .map_err(fail("reading the device"))?
        else {
            return Ok(Verdict::NoDevice(format!(
                "device {id} is gone from NetBox"
            )));
        };
        let state = match device.managed(&self.scope) {
            Ok(state) => state,
            Err(why) => {
                return Ok(Verdict::Refused(format!(
                    "{} is {why}; the report was not applied",
                    device.name
                )));
            }
        };
        if let Err(why) = binding::admit(&self.sources, source) {
            return self
                .unbound(&device, report, &why, &format!("it came from {source}"))
                .await
                .map_err(fail("journaling the refusal"));
        }
        let digest = report.digest();
        if state != Lifecycle::Validating {
            if passed_with(&full, &digest) {
                return Ok(Verdict::AlreadyApplied);
            }
            let why = format!(
                "{} is {state}, not validating: the report was not applied. To validate again, set the lifecycle to provisioning.",
                device.name
            );
            let text = format!(
                "racklift: a validation report for serial {} arrived while the device is {state}; it was refused. {why}",
                report.serial
            );
            self.refused(&device, &text, &format!("from {source}"))
                .await
                .map_err(fail("journaling the refusal"))?;
            return Ok(Verdict::Refused(why));
        }

        let interfaces = gather::interfaces(client, id)
            .await
            .map_err(fail("reading the device's interfaces"))?;
        if let Err(why) = binding::bound(report, &interfaces) {
            let macs: Vec<String> = report.nics.iter().map(|n| n.mac.to_string()).collect();
            let detail = format!("the report lists {}", macs.join(", "));
            return self
                .unbound(&device, report, &why, &detail)
                .await
                .map_err(fail("journaling the refusal"));
        }
        let (differences, plan, used) = self
            .check_against_netbox(&full, &device, interfaces, report)
            .await
            .map_err(fail("reading what NetBox records"))?;
        let summary = json!({
            "report_sha256": digest,
            "at": Utc::now(),
            "serial": report.serial,
            "cpus": report.cpus,
            "memory_bytes": report.memory_bytes,
            "nics": report.nics.len(),
            "disks": report.disks.len(),
            "lldp": report.lldp.iter().map(|n| json!({"local": n.interface, "switch": n.chassis_name, "port": n.port_id})).collect::<Vec<_>>(),
        });
        if !differences.is_empty() {
            let mut results = summary;
            results["verdict"] = json!("failed");
            results["differences"] = json!(differences);
            let reason = format!(
                "validation: the server does not match NetBox; nothing was changed:\n- {}\nFix the hardware, the cabling or NetBox, then set the lifecycle to provisioning.",
                differences.join("\n- ")
            );
            let verdict = Transition::failed(Lifecycle::Validating, reason);
            transition::write(
                client,
                &device,
                &verdict,
                Carry {
                    validation_results: Some(results),
                    ..Carry::default()
                },
            )
            .await
            .map_err(fail("recording the verdict"))?;
            return Ok(Verdict::Failed { differences });
        }
        let made = plan.changes();
        let mut results = summary;
        results["verdict"] = json!("passed");
        results["changes"] = json!(made);
        let message = format!(
            "the server matches NetBox ({} NICs, {} disks, {} LLDP neighbours){}",
            report.nics.len(),
            report.disks.len(),
            report.lldp.len(),
            if made.is_empty() {
                String::new()
            } else {
                format!("; {}", made.join("; "))
            }
        );
        let verdict = Transition {
            journal: JournalKind::Success,
            ..Transition::to(Lifecycle::Validating, Lifecycle::Validated, message)
        };
        // Journal, changes, then the state on the device as read (If-Match): a device edited
        // meanwhile answers 412, the script posts again, and the check finds what this apply
        // made and creates nothing twice.
        let journaled = transition::journal(client, &device, &verdict)
            .await
            .map_err(fail("journaling the verdict"))?;
        if let Err(e) = write::make_netbox_match(client, device.id, &plan).await {
            // A switch or device type remembered from an earlier report may be what NetBox
            // refused: the script's re-post reads them afresh.
            if refused(&e) {
                self.lookups.forget(&used);
            }
            return Err(fail("updating NetBox")(e));
        }
        journaled
            .commit(
                client,
                Carry {
                    validation_results: Some(results.clone()),
                    ..Carry::default()
                },
            )
            .await
            .map_err(fail("recording the verdict"))?;
        Ok(Verdict::Validated { summary: results })
    }

    /// Reads what NetBox records (see [`gather::facts`]) and checks the report against it.
    /// Remembered switches and device types only shorten the way to a match: when one was used
    /// and the check finds differences, a remembered switch turns out renamed, or NetBox refuses
    /// a read one fed (a switch deleted since), they are forgotten and everything is read and
    /// checked again, once. Differences always stand on what NetBox holds now.
    async fn check_against_netbox(
        &self,
        full: &Value,
        device: &Device,
        interfaces: Vec<Iface>,
        report: &Report,
    ) -> Result<(Vec<String>, Plan, Used), NetBoxError> {
        let (client, lookups) = (&self.client, &self.lookups);
        let mut used = Used::default();
        match gather::facts(
            client,
            lookups,
            full,
            device,
            interfaces.clone(),
            report,
            &mut used,
        )
        .await
        {
            Ok(facts) => {
                let (differences, plan) = check(report, &facts);
                if !used.read_again(!differences.is_empty()) {
                    return Ok((differences, plan, used));
                }
            }
            Err(e) if used.hits > 0 && refused(&e) => {}
            Err(e) => return Err(e),
        }
        lookups.forget(&used);
        let mut again = Used::default();
        let facts = gather::facts(
            client, lookups, full, device, interfaces, report, &mut again,
        )
        .await?;
        let (differences, plan) = check(report, &facts);
        Ok((differences, plan, again))
    }

    /// A report not bound to the device (see [`binding`]): 403, and journaled as refused.
    async fn unbound(
        &self,
        device: &Device,
        report: &Report,
        why: &str,
        detail: &str,
    ) -> Result<Verdict, NetBoxError> {
        let text = format!(
            "racklift: a validation report for serial {} was refused: {why}",
            report.serial
        );
        self.refused(device, &text, detail).await?;
        Ok(Verdict::Forbidden(format!(
            "the report was refused: {why} ({detail})"
        )))
    }

    /// A refused report of a managed device: logged (with `detail`, what the sender chose), and
    /// journaled (`text`, without it) unless the device's latest entry says so already: the
    /// script posts again and again.
    async fn refused(&self, device: &Device, text: &str, detail: &str) -> Result<(), NetBoxError> {
        tracing::warn!(device = %device.name, "{text} ({detail})");
        self.client
            .journal_once(device.id, JournalKind::Warning, text)
            .await
    }
}

/// Whether NetBox refused a request for naming an object it does not have (a 404, or the 400 a
/// list filter or a bulk request naming an unknown id gets): what a stale remembered id causes.
fn refused(e: &NetBoxError) -> bool {
    matches!(
        e,
        NetBoxError::Rejected {
            status: 400 | 404,
            ..
        }
    )
}

/// Whether the device's last verdict passed this very report: only then is a report for a
/// device that left `validating` "already applied". A failed verdict is no such thing: after
/// the operator's fix, the same server sends the same report again, and it must be checked.
fn passed_with(full: &Value, digest: &str) -> bool {
    let results = full.pointer("/custom_fields/validation_results");
    let field = |key: &str| results.and_then(|r| r.get(key)).and_then(Value::as_str);
    field("verdict") == Some("passed") && field("report_sha256") == Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_passed_verdict_of_the_same_report_is_already_applied() {
        let device = |verdict: &str, digest: &str| json!({"custom_fields": {"validation_results": {"verdict": verdict, "report_sha256": digest}}});
        assert!(passed_with(&device("passed", "abc"), "abc"));
        assert!(!passed_with(&device("failed", "abc"), "abc"));
        assert!(!passed_with(&device("passed", "abd"), "abc"));
        assert!(!passed_with(
            &json!({"custom_fields": {"validation_results": null}}),
            "abc"
        ));
    }
}
