//! NetBox's IPAM and interfaces as the DHCP drain reads them: the BMC interface a MAC is on,
//! the prefixes that contain an address, the records of an address. Typed reads only; what to
//! make of them is `dhcp::discovery`'s.

use std::net::Ipv4Addr;

use serde_json::Value;

use super::{DeviceId, NetBoxClient, NetBoxError};

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
    /// `(object type, id, what NetBox displays for it)`.
    pub assigned: Option<(String, u64, String)>,
}

impl IpRecord {
    pub fn from_api(v: &Value) -> Option<Self> {
        let (host, len) = v.get("address")?.as_str()?.split_once('/')?;
        let status = v.get("status")?;
        let assigned = match (
            v.get("assigned_object_type").and_then(Value::as_str),
            v.get("assigned_object_id").and_then(Value::as_u64),
        ) {
            (Some(kind), Some(id)) => {
                let object = v.get("assigned_object");
                let name = object
                    .and_then(|o| o.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let device = object
                    .and_then(|o| o.get("device").or_else(|| o.get("virtual_machine")))
                    .and_then(|d| d.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                Some((kind.to_owned(), id, format!("{device} {name}")))
            }
            _ => None,
        };
        Some(Self {
            id: v.get("id")?.as_u64()?,
            host: host.parse().ok()?,
            len: len.parse().ok()?,
            status: status.get("value").unwrap_or(status).as_str()?.to_owned(),
            assigned,
        })
    }

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

impl Prefix {
    pub fn from_api(v: &Value) -> Option<Self> {
        let prefix = v.get("prefix")?.as_str()?.to_owned();
        let len = prefix.split_once('/')?.1.parse().ok()?;
        let vrf = v
            .get("vrf")
            .and_then(|vrf| vrf.get("id"))
            .and_then(Value::as_u64);
        let site = (v.get("scope_type").and_then(Value::as_str) == Some("dcim.site"))
            .then(|| v.get("scope_id").and_then(Value::as_u64))
            .flatten();
        Some(Self {
            prefix,
            len,
            vrf,
            site,
        })
    }
}

/// The management-only interface with this MAC, or why there is none.
pub async fn find_bmc_interface(
    client: &NetBoxClient,
    mac: &str,
) -> Result<Result<BmcInterface, String>, NetBoxError> {
    let found = client
        .list(
            "dcim/interfaces/",
            &[
                ("mac_address", mac.to_owned()),
                ("fields", "id,name,mgmt_only,device".into()),
            ],
        )
        .await?;
    // Each interface with what the answer says of it; the device's name only for the message
    // (the one found is named, never an index into NetBox's answer).
    let parse = |v: &Value| -> Option<(BmcInterface, bool, String)> {
        Some((
            BmcInterface {
                id: v.get("id")?.as_u64()?,
                name: v.get("name")?.as_str()?.to_owned(),
                device: DeviceId(v.get("device")?.get("id")?.as_u64()?),
            },
            v.get("mgmt_only").and_then(Value::as_bool).unwrap_or(false),
            v["device"]["name"].as_str().unwrap_or("?").to_owned(),
        ))
    };
    let interfaces: Vec<(BmcInterface, bool, String)> = found.iter().filter_map(parse).collect();
    Ok(match interfaces.as_slice() {
        [] => Err(format!("no device interface in NetBox has MAC {}", mac)),
        [(iface, true, _)] => Ok(iface.clone()),
        [(iface, false, device)] => Err(format!(
            "MAC {} is on {device} {}, which is not a management-only (BMC) interface",
            mac, iface.name
        )),
        many => Err(format!(
            "MAC {} is on {} interfaces in NetBox; racklift needs exactly one",
            mac,
            many.len()
        )),
    })
}

/// Records of `ip` (any mask) in the VRF.
pub async fn ip_records(
    client: &NetBoxClient,
    ip: Ipv4Addr,
    vrf: Option<u64>,
) -> Result<Vec<IpRecord>, NetBoxError> {
    let vrf = vrf.map_or_else(|| "null".to_owned(), |id| id.to_string());
    Ok(client
        .list(
            "ipam/ip-addresses/",
            &[("address", ip.to_string()), ("vrf_id", vrf)],
        )
        .await?
        .iter()
        .filter_map(IpRecord::from_api)
        .collect())
}

/// The prefixes that contain `ip`.
pub async fn prefixes_containing(
    client: &NetBoxClient,
    ip: Ipv4Addr,
) -> Result<Vec<Prefix>, NetBoxError> {
    Ok(client
        .list(
            "ipam/prefixes/",
            &[
                ("contains", ip.to_string()),
                ("fields", "id,prefix,vrf,scope_type,scope_id".into()),
            ],
        )
        .await?
        .iter()
        .filter_map(Prefix::from_api)
        .collect())
}

/// The address records on an interface.
pub async fn addresses_on(client: &NetBoxClient, iface: u64) -> Result<Vec<IpRecord>, NetBoxError> {
    Ok(client
        .list("ipam/ip-addresses/", &[("interface_id", iface.to_string())])
        .await?
        .iter()
        .filter_map(IpRecord::from_api)
        .collect())
}
