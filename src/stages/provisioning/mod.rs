//! Provisioning: the BMC is reachable and takes racklift's credentials, the server boots from
//! the network once, and its power is switched on (or it is restarted if already on); then the
//! device waits in `validating` for the booted image's report.
//!
//! Each reconcile takes the BMC's session (kept between the device's reconciles: one login per
//! provisioning, see `redfish::Sessions`), reads the system and takes one step:
//!
//! ```text
//!  no step           one-time PXE boot (If-Match), read back; choose the reset from what the
//!                    BMC allows; record "reset requested" with the BMC's state; send the reset;
//!                    record "reset sent" (2xx) or "reset refused" (an error answer)
//!  a reset step      compare the BMC with the record (evidence.rs): booted → validating;
//!                    no sign of the reset → send it again; else wait, up to power_timeout
//! ```
//!
//! The reset is recorded *before* it is sent, so a crash never sends a second one blindly:
//! the next reconcile decides from what the BMC shows.
//!
//! The session is kept while the device waits (polls) or a transient error is retried, and
//! deleted as soon as the provisioning is over for now: done, failed, or an error that fails
//! the device.

mod evidence;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use evidence::{Limits, Next, Observed, ResetRecord, Sent};

use super::{Ctx, Outcome, StageError};
use crate::config::BmcConfig;
use crate::lifecycle::{JournalKind, Stamp};
use crate::netbox::{Device, DeviceStore, DeviceUpdate};
use crate::redfish::{BmcEndpoint, RedfishError, Session, System};

/// Where the device's BMC is and how to log in, or why racklift cannot know.
pub fn endpoint(config: &BmcConfig, device: &Device) -> Result<BmcEndpoint, String> {
    let Some(ip) = &device.oob_address else {
        return Err(format!(
            "provisioning: {} has no OOB IP in NetBox, so racklift cannot find its BMC. The DHCP hook sets it when the BMC takes a lease; set it by hand if the BMC has a static address, then set the lifecycle to provisioning.",
            device.name
        ));
    };
    let profile = config.profile(&device.name, device.site.as_deref());
    let (Some(username), Some(password)) = (profile.username, profile.password) else {
        return Err(format!(
            "provisioning: no BMC credentials are configured for {} (bmc.devices.{}, bmc.sites.{}, or bmc.username/password in racklift's configuration). Add them, then set the lifecycle to provisioning.",
            device.name,
            device.name,
            device.site.as_deref().unwrap_or("<site>")
        ));
    };
    let port = profile.port.unwrap_or(443);
    let url = url::Url::parse(&format!("https://{ip}:{port}/")).map_err(|e| {
        format!(
            "provisioning: the OOB IP {ip} of {} is not usable: {e}",
            device.name
        )
    })?;
    let tls_verify = profile.tls_verify.unwrap_or(true);
    if !tls_verify {
        // Logged as a warning once at start (BmcConfig::warn_unverified); here only in debug.
        tracing::debug!(device = %device.name, bmc = %url, "TLS verification of this BMC is off");
    }
    Ok(BmcEndpoint {
        url,
        username,
        password,
        tls_verify,
        ca_file: profile.ca_file,
        timeout: config.timeout,
    })
}

/// One provisioning step for `device` (the stage contract, `stages::run`).
pub async fn run<S: DeviceStore>(device: &Device, ctx: &Ctx<'_, S>) -> Result<Outcome, StageError> {
    let &Ctx {
        store,
        bmc: config,
        sessions,
        stamp,
        now,
    } = ctx;
    let endpoint = match endpoint(config, device) {
        Ok(endpoint) => endpoint,
        Err(reason) => return Ok(Outcome::Fail(reason)),
    };
    let session = sessions.session(&endpoint).await?;
    let step = Step {
        store,
        session: &session,
        config,
        device,
        stamp,
        now,
    };
    let result = step.run().await;
    if !keeps_session(&result) {
        sessions.close(&session).await;
    }
    result
}

/// Whether the next reconcile of the device will use the BMC again soon: it waits for the BMC,
/// or retries a step that may pass (the BMC busy or away, NetBox away). Done, failed, or an
/// error that fails the device (credentials refused, a 4xx): the session is deleted now.
fn keeps_session(result: &Result<Outcome, StageError>) -> bool {
    match result {
        Ok(Outcome::Wait(_)) | Err(StageError::NetBox(_)) => true,
        Err(StageError::Bmc(e)) => e.is_transient(),
        Ok(Outcome::Done(_) | Outcome::Fail(_)) => false,
    }
}

/// One reconcile's step: the device as read, its BMC's session.
struct Step<'a, S> {
    store: &'a S,
    session: &'a Session,
    config: &'a BmcConfig,
    device: &'a Device,
    stamp: &'a Stamp,
    now: DateTime<Utc>,
}

impl<S: DeviceStore> Step<'_, S> {
    async fn run(&self) -> Result<Outcome, StageError> {
        let Self {
            store,
            session,
            config,
            device,
            stamp,
            now,
        } = *self;
        let system = System::find(session).await?;
        let Some(sent) = stamp.step.as_deref().and_then(Sent::from_step) else {
            return self.reset(&system, 0).await;
        };
        let before = ResetRecord::from_stamp(stamp.evidence.as_ref(), "a reset");
        let observed = Observed {
            power: system.power.clone(),
            boot: system.boot.clone(),
            marks: system.marks.clone(),
        };
        let since = stamp.step_since.unwrap_or(stamp.since);
        let waited = (now - since).to_std().unwrap_or_default();
        let limits = Limits {
            power_timeout: config.power_timeout,
        };
        match evidence::after_reset(sent, &before, &observed, waited, limits) {
            Next::Booted(evidence) => {
                let firmware = firmware(session)
                    .await
                    .unwrap_or_else(|| "firmware unknown".into());
                Ok(Outcome::Done(format!(
                    "BMC {} ({}, {firmware}): {evidence}; waiting for the validation report",
                    session.url_text(),
                    session.vendor.quirks().name()
                )))
            }
            Next::Wait => Ok(Outcome::Wait(
                config
                    .poll_interval
                    .min(config.power_timeout.saturating_sub(waited))
                    .max(Duration::from_millis(100)),
            )),
            Next::Fail(reason) => Ok(Outcome::Fail(reason)),
            Next::Resend(seen) => {
                let text = format!(
                    "racklift: provisioning: the BMC at {} shows no sign of the last reset ({seen}): setting the one-time PXE boot and resetting again",
                    session.url_text()
                );
                store
                    .journal(device.id, JournalKind::Warning, &text)
                    .await
                    .map_err(StageError::NetBox)?;
                let resends = if sent == Sent::Unanswered {
                    before.resends + 1
                } else {
                    before.resends
                };
                self.reset(&system, resends).await
            }
        }
    }

    /// Sets the one-time PXE boot, records the reset it is about to send with the BMC's state, and
    /// sends it. `resends`: resets sent before in this provisioning that showed no effect.
    async fn reset(&self, system: &System, resends: u32) -> Result<Outcome, StageError> {
        let Self {
            store,
            session,
            config,
            device,
            stamp,
            now,
        } = *self;
        if let Some(targets) = &system.boot.allowed_targets
            && !targets.iter().any(|t| t == "Pxe")
        {
            return Ok(Outcome::Fail(format!(
                "provisioning: the BMC at {} does not offer a PXE boot (it allows {}). Enable network boot in the server's firmware, then set the lifecycle to provisioning.",
                session.url_text(),
                targets.join(", ")
            )));
        }
        let boot = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
        match session
            .patch(&system.path, &boot, system.etag.as_deref())
            .await
        {
            // The system changed between our read and write (a BMC updating its own state):
            // read again once and write with the new tag.
            Err(RedfishError::Status { status: 412, .. }) => {
                let fresh = System::read(session, &system.path).await?;
                session
                    .patch(&system.path, &boot, fresh.etag.as_deref())
                    .await?;
            }
            other => other?,
        }
        let after = System::read(session, &system.path).await?;
        let target = after.boot.target.as_deref().unwrap_or("");
        if target != "Pxe" {
            return Ok(Outcome::Fail(format!(
                "provisioning: the BMC at {} accepted the one-time PXE boot but reports the boot target {target:?}. Check the BMC's boot settings, then set the lifecycle to provisioning.",
                session.url_text()
            )));
        }
        let once = after.boot.pxe_once_pending();
        if !once {
            let text = format!(
                "racklift: provisioning: the BMC at {} ({}) reports BootSourceOverrideEnabled {:?} after racklift asked for \"Once\": the server may keep booting from the network until the override is cleared.",
                session.url_text(),
                session.vendor.quirks().name(),
                after.boot.enabled.as_deref().unwrap_or("")
            );
            store
                .journal(device.id, JournalKind::Warning, &text)
                .await
                .map_err(StageError::NetBox)?;
        }
        let (reset_target, allowed) = after.reset_types(session).await?;
        let Some(reset) = evidence::choose_reset(
            &after.power,
            &allowed,
            session.vendor.quirks().restart_types(),
        ) else {
            return Ok(Outcome::Fail(format!(
                "provisioning: the BMC at {} offers no reset racklift can use with the power {:?} (it allows {}). Power the server on by hand, then set the lifecycle to provisioning.",
                session.url_text(),
                after.power.as_str(),
                allowed.join(", ")
            )));
        };
        let record = ResetRecord {
            reset: reset.clone(),
            power_before: after.power.clone(),
            once,
            marks_before: after.marks.clone(),
            resends,
        };
        let requested = stamp.at_step(
            Sent::Unknown.step(),
            serde_json::to_value(&record).ok(),
            now,
        );
        // Recorded before it is sent: after a crash, the next reconcile decides from the BMC's
        // evidence, never by resetting blindly.
        let mut current = Device::clone(device);
        current.etag = store
            .update_device(&current, &DeviceUpdate::restamp(requested.clone()))
            .await
            .map_err(StageError::NetBox)?;
        #[cfg(feature = "test-hooks")]
        crate::netbox::pause::point("before-reset", device.id).await;
        let answer = session
            .post(&reset_target, &json!({"ResetType": reset}))
            .await;
        #[cfg(feature = "test-hooks")]
        crate::netbox::pause::point("after-reset", device.id).await;
        let outcome = match &answer {
            Ok(()) => Sent::Accepted,
            // An error answer, a link racklift would not follow, a connection never made: the
            // BMC did not act.
            Err(
                RedfishError::Status { .. }
                | RedfishError::Credentials { .. }
                | RedfishError::Unexpected { .. }
                | RedfishError::Tls { .. },
            ) => Sent::Refused,
            Err(RedfishError::Unreachable { source, .. }) if source.is_connect() => Sent::Refused,
            // Sent, no answer: whether the BMC acted is for the next reconciles to read off it.
            Err(RedfishError::Unreachable { .. }) => Sent::Unanswered,
        };
        store
            .update_device(
                &current,
                &DeviceUpdate::restamp(requested.step_now(outcome.step())),
            )
            .await
            .map_err(StageError::NetBox)?;
        answer?;
        tracing::info!(device = %device.name, bmc = %session.url_text(), %reset, from = %after.power.as_str(), "reset sent");
        Ok(Outcome::Wait(config.poll_interval))
    }
}

/// The BMC's firmware, from its first manager.
async fn firmware(session: &Session) -> Option<String> {
    let managers = session.root.pointer("/Managers/@odata.id")?.as_str()?;
    let list = session.get(managers).await.ok()?.body;
    let first = list.pointer("/Members/0/@odata.id")?.as_str()?.to_owned();
    let manager = session.get(&first).await.ok()?.body;
    manager
        .get("FirmwareVersion")
        .and_then(serde_json::Value::as_str)
        .map(|v| format!("firmware {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(oob: Option<&str>) -> Device {
        Device {
            id: crate::netbox::DeviceId(1),
            name: "srv-1".into(),
            site: Some("dc1".into()),
            oob_address: oob.map(str::to_owned),
            ..Device::default()
        }
    }

    #[test]
    fn the_session_is_kept_only_while_the_device_will_be_back_for_its_bmc() {
        let bmc = |status| {
            Err(StageError::Bmc(RedfishError::Status {
                url: "https://10.0.0.5/".into(),
                method: "GET",
                path: "/redfish/v1/Systems".into(),
                status,
                message: String::new(),
            }))
        };
        assert!(keeps_session(&Ok(Outcome::Wait(Duration::from_secs(5)))));
        assert!(
            keeps_session(&bmc(503)),
            "retried: the session serves the retry"
        );
        assert!(keeps_session(&Err(StageError::NetBox(
            crate::netbox::NetBoxError::Server {
                status: 502,
                method: "PATCH",
                path: "/api/dcim/devices/1/".into(),
                body: String::new(),
            }
        ))));
        assert!(!keeps_session(&Ok(Outcome::Done("booted".into()))));
        assert!(!keeps_session(&Ok(Outcome::Fail("no PXE".into()))));
        assert!(!keeps_session(&bmc(400)), "fails the device");
        assert!(!keeps_session(&Err(StageError::Bmc(
            RedfishError::Credentials {
                url: "https://10.0.0.5/".into(),
                status: 401,
            }
        ))));
    }

    #[test]
    fn without_an_oob_ip_or_credentials_the_reason_says_what_to_do() {
        let config = BmcConfig::default();
        let err = endpoint(&config, &device(None)).expect_err("no OOB IP");
        assert!(err.contains("has no OOB IP"), "{err}");
        let err = endpoint(&config, &device(Some("10.0.0.5"))).expect_err("no credentials");
        assert!(
            err.contains("no BMC credentials are configured for srv-1"),
            "{err}"
        );
    }
}
