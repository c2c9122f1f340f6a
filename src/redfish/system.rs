//! The one ComputerSystem a BMC manages, as racklift reads it: power state, the boot override,
//! the reset action, and the marks a BMC leaves when the server resets or boots. Parsed once
//! here from the BMC's JSON, so stages work with types, not JSON pointers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Quirks, RedfishError, Session};

/// `PowerState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Power {
    On,
    Off,
    PoweringOn,
    PoweringOff,
    /// Another value (`Paused`), or none at all.
    Other(String),
}

impl Power {
    fn parse(value: Option<&str>) -> Self {
        match value {
            Some("On") => Self::On,
            Some("Off") => Self::Off,
            Some("PoweringOn") => Self::PoweringOn,
            Some("PoweringOff") => Self::PoweringOff,
            other => Self::Other(other.unwrap_or("").to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::On => "On",
            Self::Off => "Off",
            Self::PoweringOn => "PoweringOn",
            Self::PoweringOff => "PoweringOff",
            Self::Other(value) => value,
        }
    }
}

/// `Boot`: the override and what the BMC allows for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootOverride {
    pub target: Option<String>,
    pub enabled: Option<String>,
    /// `BootSourceOverrideTarget@Redfish.AllowableValues`; `None` when the BMC does not say.
    pub allowed_targets: Option<Vec<String>>,
}

impl BootOverride {
    /// A one-time network boot is set and not yet taken by the firmware.
    pub fn pxe_once_pending(&self) -> bool {
        self.target.as_deref() == Some("Pxe") && self.enabled.as_deref() == Some("Once")
    }
}

/// What a BMC shows of the server's last reset or boot, beyond the power state: each changes
/// when the server resets. Compared before and after a reset, never with racklift's clock (a
/// BMC's clock is often wrong before it is hardened).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMarks {
    /// `LastResetTime` (iDRAC 9, DMTF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<String>,
    /// `BootProgress.LastState` and `LastStateTime` (DMTF; Supermicro without the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_at: Option<String>,
    /// The vendor's POST state (iLO's `Oem.Hpe.PostState`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_state: Option<String>,
}

/// `Actions.#ComputerSystem.Reset`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetAction {
    pub target: Option<String>,
    /// Inline `ResetType@Redfish.AllowableValues`.
    pub allowed: Option<Vec<String>>,
    /// `@Redfish.ActionInfo`, where the allowed values live on Supermicro.
    pub info: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    pub path: String,
    /// The tag to send as `If-Match` when patching it (the vendor's quirk decides which).
    pub etag: Option<String>,
    pub power: Power,
    pub boot: BootOverride,
    pub marks: BootMarks,
    pub reset: ResetAction,
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

fn text(body: &Value, pointer: &str) -> Option<String> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl System {
    /// Reads a system resource's body (`etag`: the `ETag` header).
    pub fn from_json(path: &str, body: &Value, etag: Option<&str>, quirks: &dyn Quirks) -> Self {
        let action = body.pointer("/Actions/#ComputerSystem.Reset");
        Self {
            path: path.to_owned(),
            etag: quirks.etag(etag, body),
            power: Power::parse(body.get("PowerState").and_then(Value::as_str)),
            boot: BootOverride {
                target: text(body, "/Boot/BootSourceOverrideTarget"),
                enabled: text(body, "/Boot/BootSourceOverrideEnabled"),
                allowed_targets: strings(
                    body.pointer("/Boot/BootSourceOverrideTarget@Redfish.AllowableValues"),
                ),
            },
            marks: BootMarks {
                last_reset: text(body, "/LastResetTime"),
                progress: text(body, "/BootProgress/LastState"),
                progress_at: text(body, "/BootProgress/LastStateTime"),
                post_state: quirks.post_state(body),
            },
            reset: ResetAction {
                target: action
                    .and_then(|a| a.get("target"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                allowed: strings(action.and_then(|a| a.get("ResetType@Redfish.AllowableValues"))),
                info: action
                    .and_then(|a| a.get("@Redfish.ActionInfo"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
        }
    }

    /// Finds the one system this BMC manages (from the service root, never `Systems/1`) and
    /// reads it.
    pub async fn find(session: &Session) -> Result<Self, RedfishError> {
        let collection = session
            .root
            .pointer("/Systems/@odata.id")
            .and_then(Value::as_str)
            .ok_or_else(|| session.unexpected("/redfish/v1/", "the service root links no Systems"))?
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
        match links.as_slice() {
            [one] => Self::read(session, one).await,
            [] => Err(session.unexpected(&collection, "the BMC lists no system")),
            many => Err(session.unexpected(
                &collection,
                &format!(
                    "the BMC lists {} systems; racklift expects a BMC per server",
                    many.len()
                ),
            )),
        }
    }

    /// Reads the system at `path` (again).
    pub async fn read(session: &Session, path: &str) -> Result<Self, RedfishError> {
        let resource = session.get(path).await?;
        Ok(Self::from_json(
            path,
            &resource.body,
            resource.etag.as_deref(),
            session.vendor.quirks(),
        ))
    }

    /// The reset action's target and allowed types: inline, else from its
    /// `@Redfish.ActionInfo`, else the standard's.
    pub async fn reset_types(
        &self,
        session: &Session,
    ) -> Result<(String, Vec<String>), RedfishError> {
        let target = self.reset.target.clone().ok_or_else(|| {
            session.unexpected(&self.path, "the system has no ComputerSystem.Reset action")
        })?;
        if let Some(allowed) = &self.reset.allowed {
            return Ok((target, allowed.clone()));
        }
        let Some(info) = &self.reset.info else {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redfish::Vendor;

    fn captured(tree: &str, system: &str) -> (Value, Vendor) {
        let dir = format!(
            "{}/tests/redfish-mockups/{tree}/redfish/v1",
            env!("CARGO_MANIFEST_DIR")
        );
        let read = |p: &str| -> Value {
            let path = format!("{dir}/{p}/index.json");
            serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("json")
        };
        (read(system), Vendor::detect(&read("")))
    }

    #[test]
    fn each_vendor_shows_its_boot_marks() {
        let (body, vendor) = captured("dell-idrac9-r750", "Systems/System.Embedded.1");
        let idrac = System::from_json("/s", &body, None, vendor.quirks());
        assert_eq!(
            idrac.marks.last_reset.as_deref(),
            Some("2024-06-11T00:14:47-05:00")
        );
        assert_eq!(idrac.power, Power::On);
        assert!(
            idrac
                .boot
                .allowed_targets
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t == "Pxe"))
        );

        let (body, vendor) = captured("hpe-ilo5-dl360-gen10plus", "Systems/1");
        let ilo = System::from_json("/s", &body, None, vendor.quirks());
        assert_eq!(ilo.marks.post_state.as_deref(), Some("FinishedPost"));
        assert_eq!(ilo.boot.enabled.as_deref(), Some("Disabled"));

        let (body, vendor) = captured("dmtf-public-rackmount1", "Systems/437XR1138R2");
        let dmtf = System::from_json("/s", &body, None, vendor.quirks());
        assert_eq!(dmtf.marks.progress.as_deref(), Some("OSRunning"));
        assert!(dmtf.marks.progress_at.is_some());
        assert!(dmtf.boot.pxe_once_pending());

        let (body, vendor) = captured("supermicro-sys821ge-tnhr", "Systems/1");
        let smc = System::from_json("/s", &body, None, vendor.quirks());
        assert!(smc.reset.allowed.is_none());
        assert!(smc.reset.info.is_some(), "Supermicro names an ActionInfo");
        assert_eq!(smc.marks.post_state, None, "PostState is iLO's alone");
    }

    #[test]
    fn a_body_without_the_usual_properties_reads_as_unknown_not_as_a_guess() {
        let bare = System::from_json(
            "/s",
            &serde_json::json!({"PowerState": 7}),
            None,
            Vendor::Generic.quirks(),
        );
        assert_eq!(bare.power, Power::Other(String::new()));
        assert_eq!(bare.boot, BootOverride::default());
        assert_eq!(bare.marks, BootMarks::default());
        assert!(!bare.boot.pxe_once_pending());
    }
}
