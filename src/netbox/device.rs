//! A device as racklift reads it from NetBox, whether it is racklift's to manage, and the one
//! write racklift makes to it.

use std::fmt;

use serde_json::{Value, json};

use crate::config::Scope;
use crate::lifecycle::{Lifecycle, Stamp, UnknownState};

/// A NetBox device id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Device {
    pub id: DeviceId,
    pub name: String,
    /// The site's slug.
    pub site: Option<String>,
    pub site_id: Option<u64>,
    /// The role's slug.
    pub role: Option<String>,
    /// The slugs of the device's tags.
    pub tags: Vec<String>,
    /// The id of the device's OOB IP address record.
    pub oob_ip: Option<u64>,
    /// The OOB IP's address, without its prefix length: where the BMC answers.
    pub oob_address: Option<String>,
    /// `None`: the field is empty: nobody enrolled the device, and racklift leaves it alone.
    /// `Some(Err)`: a value racklift does not know.
    pub lifecycle: Option<Result<Lifecycle, UnknownState>>,
    pub stamp: Option<Stamp>,
    /// The weak ETag of this read; every write is conditional on it.
    pub etag: String,
}

/// Why racklift leaves a device alone. Every path that writes to a device (the reconciler, the
/// DHCP drain, the validation callback) asks [`Device::managed`] first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmanaged {
    /// The lifecycle is empty: nobody enrolled the device.
    NotEnrolled,
    /// The lifecycle holds a value racklift does not know.
    UnknownState(String),
    /// Enrolled, but outside this racklift's `scope` (sites, roles, tags).
    OutOfScope,
}

impl fmt::Display for Unmanaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEnrolled => f.write_str(
                "not managed: its lifecycle is empty (nobody enrolled it; set the lifecycle to racked to enrol it)",
            ),
            Self::UnknownState(value) => write!(
                f,
                "not managed: its lifecycle {value:?} is not a state racklift knows"
            ),
            Self::OutOfScope => f.write_str(
                "not managed: it is outside this racklift's scope (scope.sites, scope.roles, scope.tags)",
            ),
        }
    }
}

impl Device {
    /// The device's state, if racklift manages it: enrolled (a lifecycle racklift knows) and in
    /// `scope`.
    pub fn managed(&self, scope: &Scope) -> Result<Lifecycle, Unmanaged> {
        let state = match &self.lifecycle {
            None => return Err(Unmanaged::NotEnrolled),
            Some(Err(UnknownState(value))) => return Err(Unmanaged::UnknownState(value.clone())),
            Some(Ok(state)) => *state,
        };
        if scope.covers(self.site.as_deref(), self.role.as_deref(), &self.tags) {
            Ok(state)
        } else {
            Err(Unmanaged::OutOfScope)
        }
    }

    /// Builds the device from `GET /api/dcim/devices/{id}/` and its `ETag` header.
    pub fn from_api(body: &Value, etag: String) -> Option<Self> {
        let id = DeviceId(body.get("id")?.as_u64()?);
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("device {id}"), str::to_owned);
        let site = body
            .get("site")
            .and_then(|site| site.get("slug"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let site_id = body
            .get("site")
            .and_then(|site| site.get("id"))
            .and_then(Value::as_u64);
        let role = body
            .get("role")
            .and_then(|role| role.get("slug"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let tags = body
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.get("slug").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let oob_ip = body
            .get("oob_ip")
            .and_then(|ip| ip.get("id"))
            .and_then(Value::as_u64);
        let oob_address = body
            .get("oob_ip")
            .and_then(|ip| ip.get("address"))
            .and_then(Value::as_str)
            .map(|a| a.split('/').next().unwrap_or(a).to_owned());
        let fields = body.get("custom_fields");
        let field = |key: &str| fields.and_then(|f| f.get(key)).filter(|v| !v.is_null());
        // A select field reads as {"value", "label"}; accept a bare string as well.
        let lifecycle = field("lifecycle")
            .and_then(|v| v.get("value").unwrap_or(v).as_str())
            .filter(|s| !s.is_empty())
            .map(str::parse);
        let stamp = field("lifecycle_stamp").and_then(Stamp::from_json);
        Some(Self {
            id,
            name,
            site,
            site_id,
            role,
            tags,
            oob_ip,
            oob_address,
            lifecycle,
            stamp,
            etag,
        })
    }
}

/// The fields racklift writes on a device: a state change (with its error, stamp and status
/// mirror), a stamp alone, or the OOB IP. `None` leaves a field as it is. The state, its error
/// and the status mirror are private to `netbox`: only the one writer (`transition`) sets them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceUpdate {
    pub(super) lifecycle: Option<Lifecycle>,
    pub(super) lifecycle_error: Option<Option<String>>,
    pub stamp: Option<Stamp>,
    pub(super) status: Option<&'static str>,
    /// The id of an IP address record on one of the device's interfaces.
    pub oob_ip: Option<u64>,
    /// `validation_results`: the last report's summary and verdict.
    pub validation_results: Option<Value>,
}

impl DeviceUpdate {
    pub(super) fn transition(to: Lifecycle, error: Option<String>, stamp: Stamp) -> Self {
        Self {
            lifecycle: Some(to),
            lifecycle_error: Some(error),
            stamp: Some(stamp),
            status: Some(to.netbox_status()),
            oob_ip: None,
            validation_results: None,
        }
    }

    /// The state this update writes, if it is a transition.
    pub fn lifecycle(&self) -> Option<Lifecycle> {
        self.lifecycle
    }

    /// The OOB IP alone (a lease's new address on a device past `racked`).
    pub fn oob_ip(ip: u64) -> Self {
        Self {
            oob_ip: Some(ip),
            ..Self::default()
        }
    }

    pub fn restamp(stamp: Stamp) -> Self {
        Self {
            stamp: Some(stamp),
            ..Self::default()
        }
    }

    pub fn to_json(&self) -> Value {
        let mut fields = serde_json::Map::new();
        if let Some(state) = self.lifecycle {
            fields.insert("lifecycle".into(), json!(state.as_str()));
        }
        if let Some(error) = &self.lifecycle_error {
            fields.insert("lifecycle_error".into(), json!(error));
        }
        if let Some(stamp) = &self.stamp {
            fields.insert("lifecycle_stamp".into(), json!(stamp));
        }
        if let Some(results) = &self.validation_results {
            fields.insert("validation_results".into(), results.clone());
        }
        let mut body = json!({});
        if !fields.is_empty() {
            body["custom_fields"] = Value::Object(fields);
        }
        if let Some(status) = self.status {
            body["status"] = json!(status);
        }
        if let Some(ip) = self.oob_ip {
            body["oob_ip"] = json!(ip);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recorded_device_answer() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/api-device-get.json"))
                .expect("fixture");
        let device = Device::from_api(&fixture["response"], "W/\"x\"".into()).expect("a device");
        assert_eq!(device.id, DeviceId(1));
        assert_eq!(device.name, "lab-srv-001");
        assert_eq!(device.site.as_deref(), Some("lab-site"));
        assert_eq!(device.lifecycle, Some(Ok(Lifecycle::Ready)));
        assert_eq!(device.stamp, None);
    }

    #[test]
    fn an_empty_lifecycle_is_unmanaged_and_an_unknown_one_is_an_error() {
        let empty = json!({"id": 3, "custom_fields": {"lifecycle": null}});
        assert!(
            Device::from_api(&empty, String::new())
                .expect("device")
                .lifecycle
                .is_none()
        );
        let odd = json!({"id": 3, "custom_fields": {"lifecycle": "installing"}});
        assert!(matches!(
            Device::from_api(&odd, String::new())
                .expect("device")
                .lifecycle,
            Some(Err(_))
        ));
    }

    #[test]
    fn only_an_enrolled_device_in_scope_is_managed() {
        let body = json!({"id": 3, "site": {"slug": "dc1"}, "role": {"slug": "server"},
                          "tags": [{"slug": "racklift"}], "custom_fields": {"lifecycle": "racked"}});
        let device = Device::from_api(&body, String::new()).expect("device");
        let scope = |sites: &[&str], roles: &[&str], tags: &[&str]| Scope {
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            tags: tags.iter().map(|s| (*s).to_owned()).collect(),
            ..Scope::default()
        };
        assert_eq!(device.managed(&Scope::default()), Ok(Lifecycle::Racked));
        assert_eq!(
            device.managed(&scope(&["dc1"], &["server"], &["other", "racklift"])),
            Ok(Lifecycle::Racked)
        );
        for out in [
            scope(&["dc2"], &[], &[]),
            scope(&[], &["switch"], &[]),
            scope(&[], &[], &["other"]),
        ] {
            assert_eq!(device.managed(&out), Err(Unmanaged::OutOfScope), "{out:?}");
        }
        let blank = json!({"id": 4, "custom_fields": {"lifecycle": null}});
        assert_eq!(
            Device::from_api(&blank, String::new())
                .expect("device")
                .managed(&Scope::default()),
            Err(Unmanaged::NotEnrolled)
        );
        let untagged = json!({"id": 5, "custom_fields": {"lifecycle": "racked"}});
        assert_eq!(
            Device::from_api(&untagged, String::new())
                .expect("device")
                .managed(&scope(&[], &[], &["racklift"])),
            Err(Unmanaged::OutOfScope)
        );
    }

    #[test]
    fn a_transition_writes_state_error_stamp_and_status_together() {
        let stamp = Stamp::entered(
            Lifecycle::Failed,
            "2026-11-25T10:00:00Z".parse().expect("t"),
        );
        let body = DeviceUpdate::transition(Lifecycle::Failed, Some("why".into()), stamp).to_json();
        assert_eq!(body["custom_fields"]["lifecycle"], "failed");
        assert_eq!(body["custom_fields"]["lifecycle_error"], "why");
        assert_eq!(body["custom_fields"]["lifecycle_stamp"]["state"], "failed");
        assert_eq!(body["status"], "failed");
        let cleared = DeviceUpdate::transition(
            Lifecycle::Provisioning,
            None,
            Stamp::entered(
                Lifecycle::Provisioning,
                "2026-11-25T10:00:00Z".parse().expect("t"),
            ),
        )
        .to_json();
        assert!(cleared["custom_fields"]["lifecycle_error"].is_null());
        assert!(cleared["custom_fields"].get("lifecycle_error").is_some());
    }
}
