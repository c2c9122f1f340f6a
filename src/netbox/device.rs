//! A device as racklift reads it from NetBox, and the one write it makes to it.

use std::fmt;

use serde_json::{Value, json};

use crate::lifecycle::{Lifecycle, Stamp, UnknownState};

/// A NetBox device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: DeviceId,
    pub name: String,
    /// The site's slug.
    pub site: Option<String>,
    pub site_id: Option<u64>,
    /// The id of the device's OOB IP address record.
    pub oob_ip: Option<u64>,
    /// The OOB IP's address, without its prefix length: where the BMC answers.
    pub oob_address: Option<String>,
    /// `None`: the field is empty (the device predates racklift's fields) and racklift leaves
    /// it alone. `Some(Err)`: a value racklift does not know.
    pub lifecycle: Option<Result<Lifecycle, UnknownState>>,
    pub stamp: Option<Stamp>,
    /// The weak ETag of this read; every write is conditional on it.
    pub etag: String,
}

impl Device {
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
            oob_ip,
            oob_address,
            lifecycle,
            stamp,
            etag,
        })
    }
}

/// The fields racklift writes on a device: a state change (with its error, stamp and status
/// mirror), a stamp alone, or the OOB IP. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceUpdate {
    pub lifecycle: Option<Lifecycle>,
    pub lifecycle_error: Option<Option<String>>,
    pub stamp: Option<Stamp>,
    pub status: Option<&'static str>,
    /// The id of an IP address record on one of the device's interfaces.
    pub oob_ip: Option<u64>,
    /// `validation_results`: the last report's summary and verdict.
    pub validation_results: Option<Value>,
}

impl DeviceUpdate {
    pub fn transition(to: Lifecycle, error: Option<String>, stamp: Stamp) -> Self {
        Self {
            lifecycle: Some(to),
            lifecycle_error: Some(error),
            stamp: Some(stamp),
            status: Some(to.netbox_status()),
            oob_ip: None,
            validation_results: None,
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
