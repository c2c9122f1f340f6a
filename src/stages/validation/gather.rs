//! Reading what the check compares a report with: the device (by serial), its interfaces, its
//! device type's interface templates, the switch ports its LLDP neighbours name, and the
//! config context's expectations. Read-only. A lookup that could answer several objects is
//! never settled by taking the first: several is a difference the operator resolves.
//!
//! However many NICs and neighbours a report lists, this is at most seven calls: the serial,
//! the device (once, with its ETag), its interfaces, the device type's interface templates and
//! the switches the neighbours name (these two remembered for a while, see [`super::lookups`]),
//! and the switch ports: one call for every neighbour's port id, one more only for neighbours
//! whose port is found by its description.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::check::{Expectations, Facts, Iface, Peer, SwitchPort};
use super::lookups::{Lookups, SwitchKey, Templates, Used};
use super::report::{Neighbour, Report};
use crate::netbox::{Device, DeviceId, NetBoxClient, NetBoxError};

/// What the port lookups ask NetBox for: enough to match a port to its neighbour and to see
/// its cable.
const PORT_FIELDS: &str = "id,name,description,device,link_peers,link_peers_type";

/// The devices NetBox has with a serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BySerial {
    One(DeviceId),
    None,
    Several(usize),
}

/// `serial` must not be blank (`report::parse` refuses one): NetBox would ignore the filter.
pub async fn device_by_serial(
    client: &NetBoxClient,
    serial: &str,
) -> Result<BySerial, NetBoxError> {
    let found = client
        .list(
            "dcim/devices/",
            &[("serial", serial.to_owned()), ("fields", "id".into())],
        )
        .await?;
    Ok(match found.as_slice() {
        [] => BySerial::None,
        [one] => match one["id"].as_u64() {
            Some(id) => BySerial::One(DeviceId(id)),
            None => {
                return Err(NetBoxError::Unexpected {
                    method: "GET",
                    path: "dcim/devices/".into(),
                    detail: "a device without an id".into(),
                });
            }
        },
        many => BySerial::Several(many.len()),
    })
}

/// The device's full record (device type, config context, `validation_results`) and the
/// device as the rest of racklift reads it (lifecycle, scope, ETag), from one read; `None`
/// when it is gone.
pub async fn device(
    client: &NetBoxClient,
    id: DeviceId,
) -> Result<Option<(Value, Device)>, NetBoxError> {
    client.device_record(id).await
}

pub async fn interfaces(client: &NetBoxClient, id: DeviceId) -> Result<Vec<Iface>, NetBoxError> {
    Ok(client
        .list("dcim/interfaces/", &[("device_id", id.to_string())])
        .await?
        .iter()
        .filter_map(|i| {
            Some(Iface {
                id: i["id"].as_u64()?,
                name: i["name"].as_str()?.to_owned(),
                mgmt_only: i["mgmt_only"].as_bool().unwrap_or(false),
                primary_mac: i
                    .pointer("/primary_mac_address/mac_address")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                macs: i["mac_addresses"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .filter_map(|m| {
                                Some((m["id"].as_u64()?, m["mac_address"].as_str()?.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                peers: peers(i),
            })
        })
        .collect())
}

/// Everything else the check needs, once the interfaces are read and the report is bound to
/// the device. `used` records what came from (or went into) `lookups`, for the caller to
/// forget when it may be stale; it is filled even when a read fails.
pub async fn facts(
    client: &NetBoxClient,
    lookups: &Lookups,
    full: &Value,
    device: &Device,
    interfaces: Vec<Iface>,
    report: &Report,
    used: &mut Used,
) -> Result<Facts, NetBoxError> {
    let type_id = full
        .pointer("/device_type/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| NetBoxError::Unexpected {
            method: "GET",
            path: format!("dcim/devices/{}/", device.id),
            detail: "the device has no device type id".into(),
        })?;
    let templates = templates(client, lookups, type_id, used).await?;
    let ports = switch_ports(client, lookups, device, &report.lldp, used).await?;
    let expect = match full.pointer("/config_context/racklift/expect") {
        None | Some(Value::Null) => Ok(Expectations::default()),
        Some(v) => Expectations::deserialize(v).map_err(|e| e.to_string()),
    };
    Ok(Facts {
        device_id: device.id,
        device: device.name.clone(),
        templates: Templates::clone(&templates),
        interfaces,
        ports,
        expect,
    })
}

/// The device type's interface templates, management-only ones left out.
async fn templates(
    client: &NetBoxClient,
    lookups: &Lookups,
    type_id: u64,
    used: &mut Used,
) -> Result<Arc<Templates>, NetBoxError> {
    used.device_type = Some(type_id);
    if let Some(known) = lookups.templates(type_id) {
        used.hits += 1;
        return Ok(known);
    }
    let read: Templates = client
        .list(
            "dcim/interface-templates/",
            &[("device_type_id", type_id.to_string())],
        )
        .await?
        .iter()
        .filter(|t| !t["mgmt_only"].as_bool().unwrap_or(false))
        .filter_map(|t| {
            Some((
                t["name"].as_str()?.to_owned(),
                t.pointer("/type/value")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ))
        })
        .collect();
    let read = Arc::new(read);
    lookups.remember_templates(type_id, read.clone());
    Ok(read)
}

/// How a neighbour's port is looked up: by its port id (the interface's name), else by its
/// port description (the interface's description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortBy {
    Name,
    Description,
}

impl PortBy {
    /// NetBox's filter, and the interface's field it matches.
    fn filter(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Description => "description",
        }
    }

    /// What the neighbour sends for it, unless nothing (or blank).
    fn value(self, n: &Neighbour) -> Option<&str> {
        match self {
            Self::Name => n.port(),
            Self::Description => n.port_description(),
        }
    }
}

/// Where one neighbour's lookup stands.
#[derive(Debug)]
enum Lookup<'a> {
    Done(Result<SwitchPort, String>),
    /// The switch is known; its port is still to be found.
    OnSwitch {
        name: &'a str,
        id: u64,
    },
}

/// Per LLDP neighbour, the switch port it names, or why none: the switch is found by its LLDP
/// system name, then the port by its port id, else by its port description. Each step is one
/// call for all the neighbours at once.
async fn switch_ports(
    client: &NetBoxClient,
    lookups: &Lookups,
    device: &Device,
    lldp: &[Neighbour],
    used: &mut Used,
) -> Result<Vec<Result<SwitchPort, String>>, NetBoxError> {
    let switches = switches(client, lookups, device, lldp, used).await?;
    let mut state: Vec<Lookup> = lldp
        .iter()
        .map(|n| match n.switch_name() {
            None => Lookup::Done(Err(format!(
                "the neighbour on port {:?} sends no system name; racklift finds switches by name",
                n.port_id
            ))),
            Some(name) => match switches.get(name) {
                Some(Ok(id)) => Lookup::OnSwitch { name, id: *id },
                Some(Err(why)) => Lookup::Done(Err(why.clone())),
                None => Lookup::Done(Err(format!(
                    "the switch {name:?} was not looked up (a racklift bug; please report it)"
                ))),
            },
        })
        .collect();
    for by in [PortBy::Name, PortBy::Description] {
        let asking: Vec<(usize, &str, u64, &str)> = state
            .iter()
            .zip(lldp)
            .enumerate()
            .filter_map(|(i, (lookup, n))| match lookup {
                Lookup::OnSwitch { name, id } => Some((i, *name, *id, by.value(n)?)),
                Lookup::Done(_) => None,
            })
            .collect();
        if asking.is_empty() {
            continue;
        }
        let found = client
            .list(
                "dcim/interfaces/",
                &port_query(by, asking.iter().map(|&(_, _, id, value)| (id, value))),
            )
            .await?;
        for (i, switch_name, switch, value) in asking {
            if let Some(done) = port(&found, by, switch_name, switch, value, used) {
                state[i] = Lookup::Done(done);
            }
        }
    }
    Ok(state
        .into_iter()
        .zip(lldp)
        .map(|(lookup, n)| match lookup {
            Lookup::Done(done) => done,
            Lookup::OnSwitch { name, .. } => Err(no_port(name, n)),
        })
        .collect())
}

/// Per LLDP system name the neighbours send, the switch it names, or why none: remembered
/// ones from `lookups`, the others in one call.
async fn switches<'a>(
    client: &NetBoxClient,
    lookups: &Lookups,
    device: &Device,
    lldp: &'a [Neighbour],
    used: &mut Used,
) -> Result<BTreeMap<&'a str, Result<u64, String>>, NetBoxError> {
    let key = |name: &str| SwitchKey {
        name: name.to_owned(),
        site: device.site_id,
    };
    let names: BTreeSet<&str> = lldp.iter().filter_map(Neighbour::switch_name).collect();
    let mut switches = BTreeMap::new();
    let mut unknown = Vec::new();
    for name in names {
        used.switches.push(key(name));
        match lookups.switch(&key(name)) {
            Some(id) => {
                used.hits += 1;
                switches.insert(name, Ok(id));
            }
            None => unknown.push(name),
        }
    }
    if unknown.is_empty() {
        return Ok(switches);
    }
    let mut query: Vec<(&str, String)> =
        unknown.iter().map(|n| ("name", (*n).to_owned())).collect();
    query.push(("fields", "id,name,site".into()));
    let found = client.list("dcim/devices/", &query).await?;
    for name in unknown {
        let picked = pick_switch(name, &candidates(&found, name), device.site_id);
        if let Ok(id) = picked {
            lookups.remember_switch(key(name), id);
        }
        switches.insert(name, picked);
    }
    Ok(switches)
}

/// The devices of one name among those NetBox answered for several, as (id, site id). NetBox
/// matches a name exactly once surrounding whitespace is stripped from the filter.
fn candidates(found: &[Value], name: &str) -> Vec<(u64, Option<u64>)> {
    found
        .iter()
        .filter(|d| d["name"].as_str() == Some(name.trim()))
        .filter_map(|d| Some((d["id"].as_u64()?, d.pointer("/site/id")?.as_u64())))
        .collect()
}

/// The query for the ports (by name or description) the neighbours name on
/// their switches: each switch and each value once. NetBox ORs the values of a repeated filter
/// and ANDs the filters: the answer may hold a port of one switch named like a port wanted on
/// another, which [`port`] leaves out.
fn port_query<'a>(
    by: PortBy,
    wanted: impl Iterator<Item = (u64, &'a str)>,
) -> Vec<(&'static str, String)> {
    let (switches, values): (BTreeSet<u64>, BTreeSet<&str>) = wanted.unzip();
    switches
        .into_iter()
        .map(|id| ("device_id", id.to_string()))
        .chain(values.into_iter().map(|v| (by.filter(), v.to_owned())))
        .chain([("fields", PORT_FIELDS.to_owned())])
        .collect()
}

/// The switch named `name`: the one device of that name, or, when several sites have one (NetBox
/// names are unique per site and tenant, not globally), the one in the server's own site.
/// Anything else is for the operator to sort out, never a guess.
fn pick_switch(
    name: &str,
    candidates: &[(u64, Option<u64>)],
    server_site: Option<u64>,
) -> Result<u64, String> {
    match candidates {
        [] => Err(format!("the switch {name:?} is not a device in NetBox")),
        [(id, _)] => Ok(*id),
        several => {
            let here: Vec<u64> = several
                .iter()
                .filter(|(_, site)| server_site.is_some() && *site == server_site)
                .map(|(id, _)| *id)
                .collect();
            match here.as_slice() {
                [id] => Ok(*id),
                _ => Err(format!(
                    "{} devices in NetBox are named {name:?} ({} in the server's site); racklift cannot tell which is the switch",
                    several.len(),
                    here.len()
                )),
            }
        }
    }
}

/// The port of `switch` whose name or description (`by`) is `value`, among the ports NetBox
/// answered: `None` when there is none (the next lookup may find it).
fn port(
    found: &[Value],
    by: PortBy,
    switch_name: &str,
    switch: u64,
    value: &str,
    used: &mut Used,
) -> Option<Result<SwitchPort, String>> {
    let filter = by.filter();
    let matching: Vec<&Value> = found
        .iter()
        .filter(|p| p.pointer("/device/id").and_then(Value::as_u64) == Some(switch))
        .filter(|p| p[filter].as_str() == Some(value.trim()))
        .collect();
    Some(match matching.as_slice() {
        [] => return None,
        [one] => match (one["id"].as_u64(), one["name"].as_str()) {
            // A remembered switch renamed since: not the switch LLDP names any more.
            (Some(_), Some(_))
                if one.pointer("/device/name").and_then(Value::as_str)
                    != Some(switch_name.trim()) =>
            {
                used.stale = true;
                Err(format!(
                    "the switch {switch_name} is named {:?} in NetBox now",
                    one.pointer("/device/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ))
            }
            (Some(id), Some(name)) => Ok(SwitchPort {
                id,
                device: switch_name.to_owned(),
                name: name.to_owned(),
                peers: peers(one),
            }),
            _ => Err(format!(
                "NetBox's answer for the switch {switch_name}'s port ({filter} {value:?}) has no id or name"
            )),
        },
        several => Err(format!(
            "{} ports of the switch {switch_name} in NetBox have the {filter} {value:?}; racklift cannot tell which one LLDP sees",
            several.len()
        )),
    })
}

/// Why a neighbour on a known switch has no port.
fn no_port(switch_name: &str, n: &Neighbour) -> String {
    match (n.port(), n.port_description()) {
        (None, None) => format!(
            "the neighbour on the switch {switch_name} sends neither a port id nor a port description"
        ),
        (Some(port), None) => format!("the switch {switch_name} has no port {port:?} in NetBox"),
        (None, Some(descr)) => {
            format!("the switch {switch_name} has no port described {descr:?} in NetBox")
        }
        (Some(port), Some(descr)) => format!(
            "the switch {switch_name} has no port {port:?}, nor one described {descr:?}, in NetBox"
        ),
    }
}

/// The far ends of an interface's cable, from `link_peers` and `link_peers_type`.
fn peers(iface: &Value) -> Vec<Peer> {
    let interface = iface["link_peers_type"].as_str() == Some("dcim.interface");
    iface["link_peers"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|p| Peer {
                    device: p
                        .pointer("/device/name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned(),
                    name: p["name"].as_str().unwrap_or("?").to_owned(),
                    interface: p["id"].as_u64().filter(|_| interface),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iface(id: u64, switch: u64, switch_name: &str, name: &str, description: &str) -> Value {
        json!({"id": id, "name": name, "description": description,
               "device": {"id": switch, "name": switch_name}, "link_peers": [], "link_peers_type": null})
    }

    #[test]
    fn one_query_asks_for_each_switch_and_each_port_once() {
        let query = port_query(
            PortBy::Name,
            [(4, "swp1"), (4, "swp2"), (5, "swp1")].into_iter(),
        );
        assert_eq!(
            query,
            [
                ("device_id", "4".to_owned()),
                ("device_id", "5".to_owned()),
                ("name", "swp1".to_owned()),
                ("name", "swp2".to_owned()),
                ("fields", PORT_FIELDS.to_owned()),
            ]
        );
        assert_eq!(
            port_query(PortBy::Description, [(4, "uplink")].into_iter())[1],
            ("description", "uplink".to_owned())
        );
    }

    #[test]
    fn a_port_is_the_one_of_its_switch_with_its_name_never_another_switchs() {
        // The answer for sw1's swp1 and sw2's swp2 also holds sw1's swp2 and sw2's swp1.
        let found = [
            iface(11, 4, "sw1", "swp1", ""),
            iface(12, 4, "sw1", "swp2", ""),
            iface(21, 5, "sw2", "swp1", ""),
            iface(22, 5, "sw2", "swp2", ""),
        ];
        let mut used = Used::default();
        let got = |value, switch, name, used: &mut Used| {
            port(&found, PortBy::Name, name, switch, value, used).map(|p| p.map(|p| p.id))
        };
        assert_eq!(got("swp1", 4, "sw1", &mut used), Some(Ok(11)));
        assert_eq!(got("swp2", 5, "sw2", &mut used), Some(Ok(22)));
        // NetBox strips the filter's value; so does the match.
        assert_eq!(got(" swp2 ", 4, "sw1", &mut used), Some(Ok(12)));
        assert_eq!(got("swp9", 4, "sw1", &mut used), None);
        assert_eq!(used, Used::default());
    }

    #[test]
    fn several_ports_described_alike_are_a_difference_and_a_renamed_switch_is_stale() {
        let found = [
            iface(13, 4, "sw1", "swp3", "uplink"),
            iface(14, 4, "sw1", "swp4", "uplink"),
            iface(21, 5, "sw2-new", "swp1", ""),
        ];
        let mut used = Used::default();
        assert_eq!(
            port(&found, PortBy::Description, "sw1", 4, "uplink", &mut used).map(|p| p.map(|p| p.id)),
            Some(Err("2 ports of the switch sw1 in NetBox have the description \"uplink\"; racklift cannot tell which one LLDP sees".into()))
        );
        assert!(!used.stale);
        // A switch remembered as sw2 is named otherwise now.
        assert!(matches!(
            port(&found, PortBy::Name, "sw2", 5, "swp1", &mut used),
            Some(Err(_))
        ));
        assert!(used.stale);
    }

    #[test]
    fn devices_are_told_apart_by_name_in_an_answer_for_several_names() {
        let found = [
            json!({"id": 4, "name": "sw1", "site": {"id": 1}}),
            json!({"id": 5, "name": "sw2", "site": {"id": 1}}),
            json!({"id": 6, "name": "sw2", "site": {"id": 2}}),
        ];
        assert_eq!(candidates(&found, "sw1"), [(4, Some(1))]);
        assert_eq!(candidates(&found, " sw2"), [(5, Some(1)), (6, Some(2))]);
        assert!(candidates(&found, "sw3").is_empty());
    }

    #[test]
    fn a_switch_name_is_unique_or_unique_in_the_servers_site_or_a_difference() {
        assert_eq!(pick_switch("sw", &[(4, Some(1))], Some(2)), Ok(4));
        assert_eq!(
            pick_switch("sw", &[(4, Some(1)), (5, Some(2))], Some(2)),
            Ok(5)
        );
        assert_eq!(
            pick_switch("sw", &[(4, Some(1)), (5, Some(2))], Some(3)),
            Err("2 devices in NetBox are named \"sw\" (0 in the server's site); racklift cannot tell which is the switch".into())
        );
        // Same name twice in one site (two tenants): no guess either.
        assert!(pick_switch("sw", &[(4, Some(2)), (5, Some(2))], Some(2)).is_err());
        assert!(pick_switch("sw", &[(4, None), (5, None)], None).is_err());
        assert_eq!(
            pick_switch("sw", &[], Some(2)),
            Err("the switch \"sw\" is not a device in NetBox".into())
        );
    }

    #[test]
    fn peers_say_whether_the_far_end_is_an_interface() {
        let iface = json!({"link_peers_type": "dcim.frontport",
                           "link_peers": [{"id": 9, "name": "1", "device": {"name": "panel"}}]});
        assert_eq!(
            peers(&iface),
            [Peer {
                device: "panel".into(),
                name: "1".into(),
                interface: None
            }]
        );
        let iface = json!({"link_peers_type": "dcim.interface",
                           "link_peers": [{"id": 9, "name": "swp1", "device": {"name": "sw"}}]});
        assert_eq!(peers(&iface)[0].interface, Some(9));
        assert!(peers(&json!({"link_peers": []})).is_empty());
    }
}
