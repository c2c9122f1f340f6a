//! Reading what the check compares a report with: the device (by serial), its interfaces, its
//! device type's interface templates, the switch ports its LLDP neighbours name, and the
//! config context's expectations. Read-only. A lookup that could answer several objects is
//! never settled by taking the first: several is a difference the operator resolves.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::check::{Expectations, Facts, Iface, Peer, SwitchPort};
use super::report::{Neighbour, Report};
use crate::netbox::{Device, DeviceId, DeviceStore, NetBoxClient, NetBoxError};

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
/// device as the rest of racklift reads it (lifecycle, scope, ETag); `None` when it is gone.
pub async fn device(
    client: &NetBoxClient,
    id: DeviceId,
) -> Result<Option<(Value, Device)>, NetBoxError> {
    let Some(device) = client.device(id).await? else {
        return Ok(None);
    };
    let full = client.get(&format!("dcim/devices/{id}/"), &[]).await?;
    Ok(Some((full, device)))
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
/// the device.
pub async fn facts(
    client: &NetBoxClient,
    full: &Value,
    device: &Device,
    interfaces: Vec<Iface>,
    report: &Report,
) -> Result<Facts, NetBoxError> {
    let type_id = full
        .pointer("/device_type/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| NetBoxError::Unexpected {
            method: "GET",
            path: format!("dcim/devices/{}/", device.id),
            detail: "the device has no device type id".into(),
        })?;
    let templates = client
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
    let ports = switch_ports(client, device, &report.lldp).await?;
    let expect = match full.pointer("/config_context/racklift/expect") {
        None | Some(Value::Null) => Ok(Expectations::default()),
        Some(v) => Expectations::deserialize(v).map_err(|e| e.to_string()),
    };
    Ok(Facts {
        device_id: device.id,
        device: device.name.clone(),
        templates,
        interfaces,
        ports,
        expect,
    })
}

/// Per LLDP neighbour, the switch port it names, or why none: the switch is found by its LLDP
/// system name, each name looked up once.
async fn switch_ports(
    client: &NetBoxClient,
    device: &Device,
    lldp: &[Neighbour],
) -> Result<Vec<Result<SwitchPort, String>>, NetBoxError> {
    let mut switches: BTreeMap<&str, Result<u64, String>> = BTreeMap::new();
    let mut ports = Vec::with_capacity(lldp.len());
    for n in lldp {
        let Some(name) = n.switch_name() else {
            ports.push(Err(format!(
                "the neighbour on port {:?} sends no system name; racklift finds switches by name",
                n.port_id
            )));
            continue;
        };
        let switch = match switches.get(name) {
            Some(known) => known.clone(),
            None => {
                let found = client
                    .list(
                        "dcim/devices/",
                        &[("name", name.to_owned()), ("fields", "id,site".into())],
                    )
                    .await?;
                let candidates: Vec<(u64, Option<u64>)> = found
                    .iter()
                    .filter_map(|d| Some((d["id"].as_u64()?, d.pointer("/site/id")?.as_u64())))
                    .collect();
                let picked = pick_switch(name, &candidates, device.site_id);
                switches.insert(name, picked.clone());
                picked
            }
        };
        ports.push(match switch {
            Ok(id) => port(client, name, id, n).await?,
            Err(why) => Err(why),
        });
    }
    Ok(ports)
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

/// The switch's interface the neighbour names: by its port id, else by its port description.
async fn port(
    client: &NetBoxClient,
    switch_name: &str,
    switch: u64,
    n: &Neighbour,
) -> Result<Result<SwitchPort, String>, NetBoxError> {
    for (filter, value) in [("name", n.port()), ("description", n.port_description())] {
        let Some(value) = value else { continue };
        let found = client
            .list(
                "dcim/interfaces/",
                &[
                    ("device_id", switch.to_string()),
                    (filter, value.to_owned()),
                ],
            )
            .await?;
        match found.as_slice() {
            [] => {}
            [one] => {
                return Ok(match (one["id"].as_u64(), one["name"].as_str()) {
                    (Some(id), Some(name)) => Ok(SwitchPort {
                        id,
                        device: switch_name.to_owned(),
                        name: name.to_owned(),
                        peers: peers(one),
                    }),
                    _ => Err(format!(
                        "NetBox's answer for the switch {switch_name}'s port ({filter} {value:?}) has no id or name"
                    )),
                });
            }
            several => {
                return Ok(Err(format!(
                    "{} ports of the switch {switch_name} in NetBox have the {filter} {value:?}; racklift cannot tell which one LLDP sees",
                    several.len()
                )));
            }
        }
    }
    Ok(Err(match (n.port(), n.port_description()) {
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
    }))
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
