//! Provisioning: the BMC is reachable and takes racklift's credentials, the server boots from
//! the network once, and its power is switched on (or it is restarted if already on); then the
//! device waits in `validating` for the booted image's report.
//!
//! Two reconciles, the power action between them recorded in `lifecycle_stamp.step` *before*
//! it is sent: a crash right after the reset finds the step and only watches the power state,
//! so a server is never reset twice for one provisioning.
//!
//! ```text
//!  step none              open session; one-time PXE boot (If-Match), read back; choose the
//!                         reset type from what the BMC allows; record "reset requested"; reset
//!  step "reset requested" power On → validating; not yet → look again; past power_timeout → failed
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::BmcConfig;
use crate::lifecycle::{JournalKind, Stamp};
use crate::netbox::{Device, DeviceStore, DeviceUpdate, NetBoxError};
use crate::redfish::{BmcEndpoint, RedfishError, Session};

pub const RESET_REQUESTED: &str = "reset requested";

/// What a provisioning reconcile came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Provisioned: move to `validating` with this journal text.
    Done(String),
    /// Look again after this long.
    Wait(Duration),
    /// Failed for good, with the reason and what to do.
    Fail(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Bmc(#[from] RedfishError),
    #[error("recording the step in NetBox")]
    NetBox(#[source] NetBoxError),
}

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
        tracing::warn!(device = %device.name, bmc = %url, "TLS verification of this BMC is OFF (bmc tls_verify: false)");
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

/// One provisioning step for `device`, whose current stamp is `stamp`.
pub async fn run<S: DeviceStore>(
    store: &S,
    config: &BmcConfig,
    device: &Device,
    stamp: &Stamp,
    now: DateTime<Utc>,
) -> Result<Outcome, StageError> {
    let endpoint = match endpoint(config, device) {
        Ok(endpoint) => endpoint,
        Err(reason) => return Ok(Outcome::Fail(reason)),
    };
    let session = Session::open(&endpoint).await?;
    let result = match stamp.step.as_deref() {
        Some(RESET_REQUESTED) => watch_power(&session, config, stamp, now).await,
        _ => boot_and_reset(store, &session, config, device, stamp, now).await,
    };
    session.close().await;
    result
}

/// The one system this BMC manages.
async fn system(session: &Session) -> Result<(String, Value, Option<String>), RedfishError> {
    let unexpected = |path: &str, detail: &str| RedfishError::Unexpected {
        url: session.url_text(),
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let collection = session
        .root
        .pointer("/Systems/@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| unexpected("/redfish/v1/", "the service root links no Systems"))?
        .to_owned();
    let members = session.get(&collection).await?.body;
    let links: Vec<&str> = members
        .get("Members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| x.get("@odata.id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let path = match links.as_slice() {
        [one] => (*one).to_owned(),
        [] => return Err(unexpected(&collection, "the BMC lists no system")),
        many => {
            return Err(unexpected(
                &collection,
                &format!(
                    "the BMC lists {} systems; racklift expects a BMC per server",
                    many.len()
                ),
            ));
        }
    };
    let resource = session.get(&path).await?;
    let etag = session
        .vendor
        .quirks()
        .etag(resource.etag.as_deref(), &resource.body);
    Ok((path, resource.body, etag))
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// The reset action's target and allowed types: inline, or in its `@Redfish.ActionInfo`.
async fn reset_action(
    session: &Session,
    system: &Value,
) -> Result<(String, Vec<String>), RedfishError> {
    let action = system.pointer("/Actions/#ComputerSystem.Reset");
    let target = action
        .and_then(|a| a.get("target"))
        .and_then(Value::as_str)
        .ok_or_else(|| RedfishError::Unexpected {
            url: session.url_text(),
            path: "Actions".into(),
            detail: "the system has no ComputerSystem.Reset action".into(),
        })?
        .to_owned();
    if let Some(allowed) = strings(action.and_then(|a| a.get("ResetType@Redfish.AllowableValues")))
    {
        return Ok((target, allowed));
    }
    let Some(info) = action
        .and_then(|a| a.get("@Redfish.ActionInfo"))
        .and_then(Value::as_str)
    else {
        // Nothing says what is allowed: the standard's values.
        return Ok((
            target,
            ["On", "ForceOff", "ForceRestart", "GracefulRestart"]
                .map(str::to_owned)
                .to_vec(),
        ));
    };
    let info = session.get(info).await?.body;
    let allowed = info
        .get("Parameters")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("Name").and_then(Value::as_str) == Some("ResetType"))
        })
        .and_then(|p| strings(p.get("AllowableValues")))
        .unwrap_or_default();
    Ok((target, allowed))
}

/// The reset that leaves the server running: `On` when off, a restart when on.
pub fn choose_reset(power: &str, allowed: &[String], restart_types: &[&str]) -> Option<String> {
    let wanted: &[&str] = if power == "Off" {
        &["On", "ForceOn"]
    } else {
        restart_types
    };
    wanted
        .iter()
        .find(|t| allowed.iter().any(|a| a == *t))
        .map(|t| (*t).to_owned())
}

async fn boot_and_reset<S: DeviceStore>(
    store: &S,
    session: &Session,
    config: &BmcConfig,
    device: &Device,
    stamp: &Stamp,
    now: DateTime<Utc>,
) -> Result<Outcome, StageError> {
    let (path, system_body, etag) = system(session).await?;
    let targets =
        strings(system_body.pointer("/Boot/BootSourceOverrideTarget@Redfish.AllowableValues"));
    if let Some(targets) = &targets
        && !targets.iter().any(|t| t == "Pxe")
    {
        return Ok(Outcome::Fail(format!(
            "provisioning: the BMC at {} does not offer a PXE boot (it allows {}). Enable network boot in the server's firmware, then set the lifecycle to provisioning.",
            session.url_text(),
            targets.join(", ")
        )));
    }
    let boot =
        json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
    match session.patch(&path, &boot, etag.as_deref()).await {
        // The system changed between our read and write (a BMC updating its own state):
        // read again once and write with the new tag.
        Err(RedfishError::Status { status: 412, .. }) => {
            let (_, _, etag) = system(session).await?;
            session.patch(&path, &boot, etag.as_deref()).await?;
        }
        other => other?,
    }
    let after = session.get(&path).await?.body;
    let target = after
        .pointer("/Boot/BootSourceOverrideTarget")
        .and_then(Value::as_str)
        .unwrap_or("");
    let enabled = after
        .pointer("/Boot/BootSourceOverrideEnabled")
        .and_then(Value::as_str)
        .unwrap_or("");
    if target != "Pxe" {
        return Ok(Outcome::Fail(format!(
            "provisioning: the BMC at {} accepted the one-time PXE boot but reports the boot target {target:?}. Check the BMC's boot settings, then set the lifecycle to provisioning.",
            session.url_text()
        )));
    }
    if enabled != "Once" {
        let text = format!(
            "racklift: provisioning: the BMC at {} ({}) reports BootSourceOverrideEnabled {enabled:?} after racklift asked for \"Once\": the server may keep booting from the network until the override is cleared.",
            session.url_text(),
            session.vendor.quirks().name()
        );
        store
            .journal(device.id, JournalKind::Warning, &text)
            .await
            .map_err(StageError::NetBox)?;
    }
    let power = after
        .get("PowerState")
        .and_then(Value::as_str)
        .unwrap_or("Off")
        .to_owned();
    let (reset_target, allowed) = reset_action(session, &after).await?;
    let Some(reset) = choose_reset(&power, &allowed, session.vendor.quirks().restart_types())
    else {
        return Ok(Outcome::Fail(format!(
            "provisioning: the BMC at {} offers no reset racklift can use with the power {power} (it allows {}). Power the server on by hand, then set the lifecycle to provisioning.",
            session.url_text(),
            allowed.join(", ")
        )));
    };
    // Recorded before it is sent: after a crash, the next reconcile watches, never resets again.
    store
        .update_device(
            device,
            &DeviceUpdate::restamp(stamp.at_step(RESET_REQUESTED, now)),
        )
        .await
        .map_err(StageError::NetBox)?;
    session
        .post(&reset_target, &json!({"ResetType": reset}))
        .await?;
    tracing::info!(device = %device.name, bmc = %session.url_text(), %reset, from = %power, "reset sent");
    Ok(Outcome::Wait(config.poll_interval))
}

async fn watch_power(
    session: &Session,
    config: &BmcConfig,
    stamp: &Stamp,
    now: DateTime<Utc>,
) -> Result<Outcome, StageError> {
    let (_, system_body, _) = system(session).await?;
    let power = system_body
        .get("PowerState")
        .and_then(Value::as_str)
        .unwrap_or("");
    if power == "On" {
        let firmware = firmware(session)
            .await
            .unwrap_or_else(|| "firmware unknown".into());
        return Ok(Outcome::Done(format!(
            "BMC {} ({}, {firmware}): one-time PXE boot set, server powered on; waiting for the validation report",
            session.url_text(),
            session.vendor.quirks().name()
        )));
    }
    let since = stamp.step_since.unwrap_or(stamp.since);
    let waited = (now - since).to_std().unwrap_or_default();
    if waited >= config.power_timeout {
        return Ok(Outcome::Fail(format!(
            "provisioning: the server's power stayed {power:?} for {} after racklift's reset through the BMC at {}. Check the server's power feed and the BMC's event log, then set the lifecycle to provisioning.",
            humantime::format_duration(config.power_timeout),
            session.url_text()
        )));
    }
    Ok(Outcome::Wait(
        config.poll_interval.min(config.power_timeout - waited),
    ))
}

/// The BMC's firmware, from its first manager.
async fn firmware(session: &Session) -> Option<String> {
    let managers = session.root.pointer("/Managers/@odata.id")?.as_str()?;
    let list = session.get(managers).await.ok()?.body;
    let first = list.pointer("/Members/0/@odata.id")?.as_str()?.to_owned();
    let manager = session.get(&first).await.ok()?.body;
    manager
        .get("FirmwareVersion")
        .and_then(Value::as_str)
        .map(|v| format!("firmware {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(choose_reset("Off", &all, &prefs).as_deref(), Some("On"));
        assert_eq!(
            choose_reset("On", &all, &prefs).as_deref(),
            Some("ForceRestart")
        );
        let graceful_only = allowed(&["On", "GracefulRestart"]);
        assert_eq!(
            choose_reset("On", &graceful_only, &prefs).as_deref(),
            Some("GracefulRestart")
        );
        assert_eq!(
            choose_reset("Off", &allowed(&["ForceOn"]), &prefs).as_deref(),
            Some("ForceOn")
        );
        assert_eq!(choose_reset("On", &allowed(&["Nmi"]), &prefs), None);
    }

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
