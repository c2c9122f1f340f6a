//! NetBox's interfaces and IPAM as the DHCP drain reads them, in one GraphQL request per lease
//! event: the interfaces that carry the MAC (with their device and addresses), the prefixes
//! that contain the address, and every record of the address. Typed reads only; what to make
//! of them is `dhcp::discovery`'s.
//!
//! One request instead of five REST reads: NetBox is the bottleneck and a renewal that changes
//! nothing is decided from this read alone. The device comes with `last_updated`, which is
//! what NetBox 4.7's ETag is made of (`W/"<isoformat>"`), so a write after it stays
//! conditional.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Device, DeviceId, NetBoxClient, NetBoxError};

/// The BMC interface a MAC belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcInterface {
    pub id: u64,
    pub name: String,
    pub device: DeviceId,
}

/// An IP address record as NetBox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRecord {
    pub id: u64,
    pub host: Ipv4Addr,
    pub len: u8,
    pub status: String,
    pub vrf: Option<u64>,
    /// `(object type, id, what NetBox displays for it)`.
    pub assigned: Option<(String, u64, String)>,
}

impl IpRecord {
    pub fn is_on(&self, iface: &BmcInterface) -> bool {
        matches!(&self.assigned, Some((kind, id, _)) if kind == "dcim.interface" && *id == iface.id)
    }

    /// A record racklift manages: one DHCP gave (or gave and took back).
    pub fn is_lease(&self) -> bool {
        matches!(self.status.as_str(), "dhcp" | "deprecated")
    }
}

/// A NetBox prefix that contains the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub prefix: String,
    pub len: u8,
    pub vrf: Option<u64>,
    /// `Some(site id)` for a prefix scoped to a site; other scopes count as unscoped.
    pub site: Option<u64>,
}

/// An interface carrying the lease's MAC, as the view found it.
#[derive(Debug, Clone)]
pub struct Carrier {
    pub iface: BmcInterface,
    pub mgmt_only: bool,
    pub device_name: String,
    /// The device, with the ETag of this read.
    pub device: Option<Device>,
    /// The address records on the interface.
    pub addresses: Vec<IpRecord>,
}

/// Everything one lease event needs from NetBox.
#[derive(Debug, Clone)]
pub struct LeaseView {
    pub carriers: Vec<Carrier>,
    pub prefixes: Vec<Prefix>,
    /// Every record of the address, in any VRF and with any mask.
    pub records: Vec<IpRecord>,
}

const LEASE_QUERY: &str = "query Lease($mac: String!, $host: String!) {
  interface_list(filters: {mac_addresses: {mac_address: {exact: $mac}}}) {
    id name mgmt_only
    device { id name last_updated custom_fields site { id slug } role { slug } tags { slug } oob_ip { id address } }
    ip_addresses { id address status vrf { id } }
  }
  prefix_list(filters: {contains: [$host]}) { prefix vrf { id } scope { __typename ... on SiteType { id } } }
  ip_address_list(filters: {parent: [$host]}) {
    id address status vrf { id }
    assigned_object {
      __typename
      ... on InterfaceType { id name device { name } }
      ... on VMInterfaceType { id name virtual_machine { name } }
    }
  }
}";

/// Reads what a lease of `ip` by `mac` needs, in one request.
pub async fn lease_view(
    client: &NetBoxClient,
    mac: &str,
    ip: Ipv4Addr,
) -> Result<LeaseView, NetBoxError> {
    let data = client
        .graphql(
            LEASE_QUERY,
            &json!({ "mac": mac, "host": format!("{ip}/32") }),
        )
        .await?;
    LeaseView::from_graphql(&data).ok_or_else(|| NetBoxError::Unexpected {
        method: "POST",
        path: "/graphql/".into(),
        detail: "the lease query's answer is not what racklift asked for".into(),
    })
}

/// GraphQL spells ids as strings.
fn id(v: &Value) -> Option<u64> {
    match v.get("id")? {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

fn vrf(v: &Value) -> Option<u64> {
    v.get("vrf").and_then(id)
}

/// The REST shape `Device::from_api` reads: GraphQL's string ids made numbers.
fn rest_ids(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("id", Value::String(s)) => s.parse::<u64>().map_or(v.clone(), Value::from),
                        _ => rest_ids(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(rest_ids).collect()),
        other => other.clone(),
    }
}

fn address(v: &Value) -> Option<(Ipv4Addr, u8)> {
    let (host, len) = v.get("address")?.as_str()?.split_once('/')?;
    Some((host.parse().ok()?, len.parse().ok()?))
}

fn status(v: &Value) -> Option<String> {
    let status = v.get("status")?;
    // GraphQL answers the enum's name; compare as REST's value.
    Some(
        status
            .get("value")
            .unwrap_or(status)
            .as_str()?
            .to_ascii_lowercase(),
    )
}

impl LeaseView {
    pub fn from_graphql(data: &Value) -> Option<Self> {
        let carriers = data
            .get("interface_list")?
            .as_array()?
            .iter()
            .filter_map(Carrier::from_graphql)
            .collect();
        let prefixes = data
            .get("prefix_list")?
            .as_array()?
            .iter()
            .filter_map(|p| {
                let prefix = p.get("prefix")?.as_str()?.to_owned();
                let len = prefix.split_once('/')?.1.parse().ok()?;
                let scope = p.get("scope").filter(|s| !s.is_null());
                let site = scope
                    .filter(|s| s.get("__typename").and_then(Value::as_str) == Some("SiteType"))
                    .and_then(id);
                Some(Prefix {
                    prefix,
                    len,
                    vrf: vrf(p),
                    site,
                })
            })
            .collect();
        let records = data
            .get("ip_address_list")?
            .as_array()?
            .iter()
            .filter_map(|r| {
                let (host, len) = address(r)?;
                let object = r.get("assigned_object").filter(|o| !o.is_null());
                let assigned = object.and_then(|o| {
                    let kind = match o.get("__typename")?.as_str()? {
                        "InterfaceType" => "dcim.interface",
                        "VMInterfaceType" => "virtualization.vminterface",
                        other => other,
                    };
                    let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
                    let owner = o
                        .get("device")
                        .or_else(|| o.get("virtual_machine"))
                        .and_then(|d| d.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    Some((kind.to_owned(), id(o)?, format!("{owner} {name}")))
                });
                Some(IpRecord {
                    id: id(r)?,
                    host,
                    len,
                    status: status(r)?,
                    vrf: vrf(r),
                    assigned,
                })
            })
            .collect();
        Some(Self {
            carriers,
            prefixes,
            records,
        })
    }

    /// The one management-only interface with the MAC, or why there is none.
    pub fn bmc(&self, mac: &str) -> Result<&Carrier, String> {
        match self.carriers.as_slice() {
            [] => Err(format!("no device interface in NetBox has MAC {mac}")),
            [one] if one.mgmt_only => Ok(one),
            [one] => Err(format!(
                "MAC {mac} is on {} {}, which is not a management-only (BMC) interface",
                one.device_name, one.iface.name
            )),
            many => Err(format!(
                "MAC {mac} is on {} interfaces in NetBox; racklift needs exactly one",
                many.len()
            )),
        }
    }
}

impl Carrier {
    fn from_graphql(v: &Value) -> Option<Self> {
        let device = v.get("device")?;
        let iface = BmcInterface {
            id: id(v)?,
            name: v.get("name")?.as_str()?.to_owned(),
            device: DeviceId(id(device)?),
        };
        let etag = device
            .get("last_updated")
            .and_then(Value::as_str)
            .map(|at| format!("W/\"{at}\""))
            .unwrap_or_default();
        let addresses = v
            .get("ip_addresses")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|r| {
                        let (host, len) = address(r)?;
                        Some(IpRecord {
                            id: id(r)?,
                            host,
                            len,
                            status: status(r)?,
                            vrf: vrf(r),
                            assigned: Some(("dcim.interface".into(), iface.id, iface.name.clone())),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            mgmt_only: v.get("mgmt_only").and_then(Value::as_bool).unwrap_or(false),
            device_name: device
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            device: Device::from_api(&rest_ids(device), etag),
            iface,
            addresses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Lifecycle;

    fn answer() -> Value {
        json!({
            "interface_list": [{
                "id": "86", "name": "bmc", "mgmt_only": true,
                "device": {"id": "31", "name": "srv-1", "last_updated": "2026-12-07T18:53:38.820556+00:00",
                           "custom_fields": {"lifecycle": {"value": "racked", "label": "Racked"}},
                           "site": {"id": "16", "slug": "dc1"}, "role": {"slug": "server"},
                           "tags": [{"slug": "racklift"}], "oob_ip": {"id": "21", "address": "10.0.0.5/24"}},
                "ip_addresses": [{"id": "21", "address": "10.0.0.5/24", "status": "DHCP", "vrf": {"id": "20"}}]
            }],
            "prefix_list": [
                {"prefix": "10.0.0.0/24", "vrf": {"id": "20"}, "scope": {"__typename": "SiteType", "id": "16"}},
                {"prefix": "10.0.0.0/16", "vrf": null, "scope": null}
            ],
            "ip_address_list": [
                {"id": "21", "address": "10.0.0.5/24", "status": "dhcp", "vrf": {"id": "20"},
                 "assigned_object": {"__typename": "InterfaceType", "id": "86", "name": "bmc", "device": {"name": "srv-1"}}},
                {"id": "22", "address": "10.0.0.5/16", "status": "active", "vrf": null, "assigned_object": null}
            ]
        })
    }

    #[test]
    fn the_lease_view_reads_the_device_with_its_etag_the_prefixes_and_the_records() {
        let view = LeaseView::from_graphql(&answer()).expect("a view");
        let carrier = view.bmc("02:00:00:00:00:01").expect("one BMC interface");
        assert_eq!(
            carrier.iface,
            BmcInterface {
                id: 86,
                name: "bmc".into(),
                device: DeviceId(31)
            }
        );
        let device = carrier.device.as_ref().expect("the device");
        assert_eq!(device.etag, "W/\"2026-12-07T18:53:38.820556+00:00\"");
        assert_eq!(device.lifecycle, Some(Ok(Lifecycle::Racked)));
        assert_eq!(
            (device.site_id, device.oob_ip, device.oob_address.as_deref()),
            (Some(16), Some(21), Some("10.0.0.5"))
        );
        assert_eq!(device.tags, ["racklift"]);
        assert_eq!(carrier.addresses[0].status, "dhcp");
        assert!(carrier.addresses[0].is_on(&carrier.iface));
        assert_eq!(
            view.prefixes,
            [
                Prefix {
                    prefix: "10.0.0.0/24".into(),
                    len: 24,
                    vrf: Some(20),
                    site: Some(16)
                },
                Prefix {
                    prefix: "10.0.0.0/16".into(),
                    len: 16,
                    vrf: None,
                    site: None
                }
            ]
        );
        assert!(view.records[0].is_on(&carrier.iface));
        assert_eq!(view.records[1].assigned, None);
        assert_eq!(view.records[1].vrf, None);
    }

    #[test]
    fn only_exactly_one_management_interface_is_a_bmc() {
        let mut data = answer();
        data["interface_list"][0]["mgmt_only"] = json!(false);
        let view = LeaseView::from_graphql(&data).expect("a view");
        let why = view.bmc("02:00:00:00:00:01").expect_err("not mgmt-only");
        assert!(
            why.contains("srv-1 bmc, which is not a management-only"),
            "{why}"
        );
        data["interface_list"] = json!([]);
        let view = LeaseView::from_graphql(&data).expect("a view");
        assert!(
            view.bmc("m")
                .expect_err("none")
                .contains("no device interface")
        );
        let one = answer()["interface_list"][0].clone();
        data["interface_list"] = json!([one.clone(), one]);
        let view = LeaseView::from_graphql(&data).expect("a view");
        assert!(view.bmc("m").expect_err("two").contains("on 2 interfaces"));
    }
}
