//! Validation: the booted server's report (validation/SCHEMA.md) checked against NetBox — the
//! device type's interfaces, what NetBox already records, the switches LLDP sees, and the
//! hardware the operator expects — and, only when everything matches, NetBox made to match:
//! interfaces, MAC addresses, cables, then `validated`. Any difference: nothing is created or
//! changed, the device is `failed` with the list of differences.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::dhcp::Mac;
use crate::lifecycle::{JournalKind, Lifecycle, Stamp};
use crate::netbox::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxClient, NetBoxError};

/// The report, version 1. Unknown fields are tolerated.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Report {
    pub version: u32,
    pub serial: String,
    #[serde(default)]
    pub system: Option<Value>,
    pub cpus: Cpus,
    pub memory_bytes: u64,
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
    pub lldp: Vec<Neighbour>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Cpus {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Nic {
    pub name: String,
    pub mac: Mac,
    #[serde(default)]
    pub speed_mbps: Option<u64>,
    #[serde(default)]
    pub operstate: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Disk {
    pub name: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    pub size_bytes: u64,
    #[serde(default)]
    pub rotational: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Neighbour {
    pub interface: String,
    #[serde(default)]
    pub chassis_name: Option<String>,
    #[serde(default)]
    pub chassis_id: Option<String>,
    pub port_id: String,
    #[serde(default)]
    pub port_description: Option<String>,
}

/// Parses a report; the error names the field (`cpus.cores: invalid type…`).
pub fn parse(body: &[u8]) -> Result<Report, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let report: Report = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    if report.version != 1 {
        return Err(format!(
            "version: {} is not a report version racklift reads (1)",
            report.version
        ));
    }
    Ok(report)
}

/// What the operator expects of the hardware, from the device's config context under
/// `racklift.expect` (set per device type, role or site in NetBox).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Expectations {
    pub cpu_sockets: Option<u32>,
    pub cpu_cores_min: Option<u32>,
    pub memory_gb_min: Option<u64>,
    pub disks_min: Option<usize>,
    pub disk_gb_min: Option<u64>,
}

/// A NetBox interface of the device, as the check needs it.
#[derive(Debug, Clone)]
pub struct Iface {
    pub id: u64,
    pub name: String,
    pub mgmt_only: bool,
    pub primary_mac: Option<String>,
    /// MAC address objects assigned to it: (id, address).
    pub macs: Vec<(u64, String)>,
    /// `(device name, interface name, interface id)` at the other end of its cable.
    pub peer: Option<(String, String, u64)>,
}

/// A switch port found for an LLDP neighbour, with what is cabled to it.
#[derive(Debug, Clone)]
pub struct SwitchPort {
    pub id: u64,
    pub device: String,
    pub name: String,
    /// `(device name, interface name)` at the other end of its cable.
    pub peer: Option<(String, String)>,
}

/// What the check found: the facts read from NetBox.
#[derive(Debug, Clone)]
pub struct Facts {
    pub device_id: DeviceId,
    pub device: String,
    /// Interface names the device type promises (management-only ones left out).
    pub templates: BTreeMap<String, Option<String>>,
    pub interfaces: Vec<Iface>,
    /// Per LLDP neighbour (same order as the report): the switch port, or why none.
    pub ports: Vec<Result<SwitchPort, String>>,
    pub expect: Expectations,
}

/// The writes a matching report calls for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Interfaces to create: (name, NetBox type).
    pub create_interfaces: Vec<(String, String)>,
    /// MACs to record as interfaces' primary MACs.
    pub macs: Vec<MacPlan>,
    /// (local interface name, switch port id) to cable.
    pub cables: Vec<(String, u64)>,
}

/// A MAC to make an interface's primary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPlan {
    pub interface: String,
    pub mac: String,
    /// The MAC address object already assigned to the interface (a report applied halfway
    /// before, say): made primary, not created again.
    pub existing: Option<u64>,
}

/// A NetBox interface type for a speed in Mb/s (the fallback when the device type says none).
fn interface_type(speed: Option<u64>) -> &'static str {
    match speed {
        Some(s) if s >= 100_000 => "100gbase-x-qsfp28",
        Some(s) if s >= 25_000 => "25gbase-x-sfp28",
        Some(s) if s >= 10_000 => "10gbase-t",
        Some(s) if s >= 1_000 => "1000base-t",
        Some(_) => "100base-tx",
        None => "other",
    }
}

/// Checks the report against the facts: the differences (empty when all match), and what to
/// write when they do.
pub fn check(report: &Report, facts: &Facts) -> (Vec<String>, Plan) {
    let mut diffs = Vec::new();
    let mut plan = Plan::default();
    let nics: BTreeMap<&str, &Nic> = report.nics.iter().map(|n| (n.name.as_str(), n)).collect();
    let netbox: BTreeMap<&str, &Iface> = facts
        .interfaces
        .iter()
        .filter(|i| !i.mgmt_only)
        .map(|i| (i.name.as_str(), i))
        .collect();
    for name in facts.templates.keys() {
        if !nics.contains_key(name.as_str()) {
            diffs.push(format!(
                "NIC {name}: the device type has it, the server does not report it"
            ));
        }
    }
    for name in netbox.keys() {
        if !nics.contains_key(name) && !facts.templates.contains_key(*name) {
            diffs.push(format!(
                "NIC {name}: NetBox records it, the server does not report it"
            ));
        }
    }
    for (name, nic) in &nics {
        if !facts.templates.contains_key(*name) && !netbox.contains_key(name) {
            diffs.push(format!(
                "NIC {name} ({}): the server has it, the device type does not",
                nic.mac
            ));
            continue;
        }
        match netbox.get(name) {
            None => {
                let kind = facts.templates.get(*name).cloned().flatten();
                plan.create_interfaces.push((
                    (*name).to_owned(),
                    kind.unwrap_or_else(|| interface_type(nic.speed_mbps).to_owned()),
                ));
                plan.macs.push(MacPlan {
                    interface: (*name).to_owned(),
                    mac: nic.mac.to_string(),
                    existing: None,
                });
            }
            Some(iface) => match &iface.primary_mac {
                Some(mac) if !mac.eq_ignore_ascii_case(&nic.mac.to_string()) => {
                    diffs.push(format!(
                        "NIC {name}: NetBox records MAC {mac}, the server reports {}",
                        nic.mac
                    ))
                }
                Some(_) => {}
                None => plan.macs.push(MacPlan {
                    interface: (*name).to_owned(),
                    mac: nic.mac.to_string(),
                    existing: iface
                        .macs
                        .iter()
                        .find(|(_, m)| m.eq_ignore_ascii_case(&nic.mac.to_string()))
                        .map(|(id, _)| *id),
                }),
            },
        }
    }
    for (neighbour, port) in report.lldp.iter().zip(&facts.ports) {
        let local = &neighbour.interface;
        let port = match port {
            Ok(port) => port,
            Err(why) => {
                diffs.push(format!("LLDP on {local}: {why}"));
                continue;
            }
        };
        let here = netbox.get(local.as_str()).and_then(|i| i.peer.as_ref());
        match here {
            Some((dev, name, id)) if *id != port.id => diffs.push(format!(
                "cable on {local}: NetBox connects it to {dev} {name}, LLDP sees {} {}",
                port.device, port.name
            )),
            Some(_) => {}
            None => match &port.peer {
                Some((dev, name)) if !(dev == &facts.device && name == local) => {
                    diffs.push(format!(
                        "cable on {local}: LLDP sees {} {}, which NetBox connects to {dev} {name}",
                        port.device, port.name
                    ))
                }
                _ => plan.cables.push((local.clone(), port.id)),
            },
        }
    }
    let e = &facts.expect;
    if let Some(want) = e.cpu_sockets
        && report.cpus.sockets != want
    {
        diffs.push(format!(
            "CPUs: {} sockets, expected {want}",
            report.cpus.sockets
        ));
    }
    if let Some(min) = e.cpu_cores_min
        && report.cpus.cores < min
    {
        diffs.push(format!(
            "CPUs: {} cores, expected at least {min}",
            report.cpus.cores
        ));
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if let Some(min) = e.memory_gb_min
        && report.memory_bytes < min << 30
    {
        diffs.push(format!(
            "memory: {:.1} GiB, expected at least {min} GiB",
            gib(report.memory_bytes)
        ));
    }
    let big_enough: Vec<&Disk> = report
        .disks
        .iter()
        .filter(|d| e.disk_gb_min.is_none_or(|min| d.size_bytes >= min << 30))
        .collect();
    if let Some(min) = e.disks_min
        && big_enough.len() < min
    {
        let size = e
            .disk_gb_min
            .map(|g| format!(" of at least {g} GiB"))
            .unwrap_or_default();
        diffs.push(format!(
            "disks: {} disks{size}, expected at least {min}",
            big_enough.len()
        ));
    }
    (diffs, plan)
}

/// How the callback answered, for the HTTP layer.
#[derive(Debug)]
pub enum Verdict {
    Validated {
        summary: Value,
    },
    Failed {
        differences: Vec<String>,
    },
    AlreadyApplied,
    /// 404: no device has the serial.
    NoDevice(String),
    /// 409: the device is not waiting for a report.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
#[error("validation of serial {serial}: {doing}")]
pub struct ValidationError {
    pub serial: String,
    pub doing: String,
    #[source]
    pub source: NetBoxError,
}

fn digest(report: &Report) -> String {
    let canonical = serde_json::to_vec(report).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&canonical))
}

/// Checks `report` and, when it matches, makes NetBox match it.
pub async fn apply(client: &NetBoxClient, report: &Report) -> Result<Verdict, ValidationError> {
    let serial = report.serial.clone();
    let fail = |doing: &str| {
        let (serial, doing) = (serial.clone(), doing.to_owned());
        move |source| ValidationError {
            serial,
            doing,
            source,
        }
    };
    let found = client
        .list(
            "dcim/devices/",
            &[
                ("serial", report.serial.clone()),
                ("fields", "id,name".into()),
            ],
        )
        .await
        .map_err(fail("finding the device"))?;
    let id = match found.as_slice() {
        [one] => DeviceId(one["id"].as_u64().unwrap_or_default()),
        [] => {
            return Ok(Verdict::NoDevice(format!(
                "no device in NetBox has the serial {:?}",
                report.serial
            )));
        }
        many => {
            return Ok(Verdict::Refused(format!(
                "{} devices in NetBox have the serial {:?}; racklift cannot tell which server this is",
                many.len(),
                report.serial
            )));
        }
    };
    let full = client
        .get(&format!("dcim/devices/{id}/"), &[])
        .await
        .map_err(fail("reading the device"))?;
    let Some(device) = client
        .device(id)
        .await
        .map_err(fail("reading the device"))?
    else {
        return Ok(Verdict::NoDevice(format!(
            "device {id} is gone from NetBox"
        )));
    };
    let report_digest = digest(report);
    if full
        .pointer("/custom_fields/validation_results/report_sha256")
        .and_then(Value::as_str)
        == Some(report_digest.as_str())
    {
        return Ok(Verdict::AlreadyApplied);
    }
    let state = device.lifecycle.clone().and_then(Result::ok);
    if state != Some(Lifecycle::Validating) {
        let state = state.map_or_else(|| "not managed by racklift".to_owned(), |s| s.to_string());
        let why = format!(
            "{} is {state}, not validating: the report was not applied. To validate again, set the lifecycle to provisioning.",
            device.name
        );
        if state == Lifecycle::Failed.as_str() {
            let text = format!(
                "racklift: a validation report for serial {} arrived while the device is failed; it was refused. {why}",
                report.serial
            );
            client
                .journal(id, JournalKind::Warning, &text)
                .await
                .map_err(fail("journaling"))?;
        }
        return Ok(Verdict::Refused(why));
    }

    let facts = gather(client, &full, &device, report)
        .await
        .map_err(fail("reading what NetBox records"))?;
    let (differences, plan) = check(report, &facts);
    let summary = json!({
        "report_sha256": report_digest,
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
        finish(
            client,
            &device,
            Lifecycle::Failed,
            Some(reason.clone()),
            results,
            JournalKind::Danger,
            &format!("racklift: validating → failed: {reason}"),
        )
        .await
        .map_err(fail("recording the verdict"))?;
        return Ok(Verdict::Failed { differences });
    }
    let made = make_netbox_match(client, &facts, &plan)
        .await
        .map_err(fail("updating NetBox"))?;
    let mut results = summary;
    results["verdict"] = json!("passed");
    results["changes"] = json!(made);
    let text = format!(
        "racklift: validating → validated: the server matches NetBox ({} NICs, {} disks, {} LLDP neighbours){}",
        report.nics.len(),
        report.disks.len(),
        report.lldp.len(),
        if made.is_empty() {
            String::new()
        } else {
            format!("; {}", made.join("; "))
        }
    );
    finish(
        client,
        &device,
        Lifecycle::Validated,
        None,
        results.clone(),
        JournalKind::Success,
        &text,
    )
    .await
    .map_err(fail("recording the verdict"))?;
    Ok(Verdict::Validated { summary: results })
}

/// Journal first, then the conditional state write (as every transition racklift makes). The
/// device is read again for its current ETag: creating its interfaces and cables has changed
/// it, and the reconciler may have stamped it meanwhile. Only a device still `validating` is
/// moved.
async fn finish(
    client: &NetBoxClient,
    device: &Device,
    to: Lifecycle,
    error: Option<String>,
    results: Value,
    kind: JournalKind,
    text: &str,
) -> Result<(), NetBoxError> {
    client.journal(device.id, kind, text).await?;
    let update = DeviceUpdate {
        validation_results: Some(results),
        ..DeviceUpdate::transition(to, error, Stamp::entered(to, Utc::now()))
    };
    let mut attempts = 0;
    loop {
        let Some(current) = client.device(device.id).await? else {
            return Ok(());
        };
        if current.lifecycle != Some(Ok(Lifecycle::Validating)) {
            tracing::warn!(device = %device.name, "the device left validating while its report was applied; its verdict is in the journal only");
            return Ok(());
        }
        match client.update_device(&current, &update).await {
            Err(NetBoxError::Changed { .. }) if attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

async fn gather(
    client: &NetBoxClient,
    full: &Value,
    device: &Device,
    report: &Report,
) -> Result<Facts, NetBoxError> {
    let type_id = full
        .pointer("/device_type/id")
        .and_then(Value::as_u64)
        .unwrap_or_default();
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
    let interfaces = client
        .list("dcim/interfaces/", &[("device_id", device.id.to_string())])
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
                peer: peer(i),
            })
        })
        .collect();
    let mut switches: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut ports = Vec::new();
    for n in &report.lldp {
        let Some(name) = &n.chassis_name else {
            ports.push(Err(format!(
                "the neighbour on port {:?} sends no system name; racklift finds switches by name",
                n.port_id
            )));
            continue;
        };
        if !switches.contains_key(name) {
            let found = client
                .list(
                    "dcim/devices/",
                    &[("name", name.clone()), ("fields", "id".into())],
                )
                .await?;
            switches.insert(name.clone(), found.first().and_then(|d| d["id"].as_u64()));
        }
        let Some(switch) = switches[name] else {
            ports.push(Err(format!(
                "the switch {name:?} is not a device in NetBox"
            )));
            continue;
        };
        let mut found = client
            .list(
                "dcim/interfaces/",
                &[
                    ("device_id", switch.to_string()),
                    ("name", n.port_id.clone()),
                ],
            )
            .await?;
        if found.is_empty()
            && let Some(descr) = &n.port_description
        {
            found = client
                .list(
                    "dcim/interfaces/",
                    &[
                        ("device_id", switch.to_string()),
                        ("description", descr.clone()),
                    ],
                )
                .await?;
        }
        ports.push(match found.first() {
            Some(i) => Ok(SwitchPort {
                id: i["id"].as_u64().unwrap_or_default(),
                device: name.clone(),
                name: i["name"].as_str().unwrap_or_default().to_owned(),
                peer: peer(i).map(|(d, n, _)| (d, n)),
            }),
            None => Err(format!(
                "the switch {name} has no port {:?} in NetBox",
                n.port_id
            )),
        });
    }
    let expect = full
        .pointer("/config_context/racklift/expect")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    Ok(Facts {
        device_id: device.id,
        device: device.name.clone(),
        templates,
        interfaces,
        ports,
        expect,
    })
}

/// The interface at the other end of an interface's cable: (device, name, id).
fn peer(iface: &Value) -> Option<(String, String, u64)> {
    let p = iface.get("link_peers")?.as_array()?.first()?;
    Some((
        p.pointer("/device/name")?.as_str()?.to_owned(),
        p.get("name")?.as_str()?.to_owned(),
        p.get("id")?.as_u64()?,
    ))
}

async fn make_netbox_match(
    client: &NetBoxClient,
    facts: &Facts,
    plan: &Plan,
) -> Result<Vec<String>, NetBoxError> {
    let mut made = Vec::new();
    let mut ids: BTreeMap<String, u64> = facts
        .interfaces
        .iter()
        .map(|i| (i.name.clone(), i.id))
        .collect();
    for (name, kind) in &plan.create_interfaces {
        let created = client
            .post(
                "dcim/interfaces/",
                &json!({"device": facts.device_id.0, "name": name, "type": kind}),
            )
            .await?;
        ids.insert(name.clone(), created["id"].as_u64().unwrap_or_default());
        made.push(format!("created interface {name}"));
    }
    for MacPlan {
        interface,
        mac,
        existing,
    } in &plan.macs
    {
        let iface = ids[interface];
        let object = match existing {
            Some(id) => *id,
            None => client
                .post(
                    "dcim/mac-addresses/",
                    &json!({"mac_address": mac, "assigned_object_type": "dcim.interface", "assigned_object_id": iface}),
                )
                .await?["id"]
                .as_u64()
                .unwrap_or_default(),
        };
        client
            .patch(
                &format!("dcim/interfaces/{iface}/"),
                &json!({"primary_mac_address": object}),
            )
            .await?;
        made.push(format!("MAC {mac} on {interface}"));
    }
    for (local, port) in &plan.cables {
        client
            .post(
                "dcim/cables/",
                &json!({
                    "a_terminations": [{"object_type": "dcim.interface", "object_id": ids[local]}],
                    "b_terminations": [{"object_type": "dcim.interface", "object_id": port}],
                    "status": "connected",
                }),
            )
            .await?;
        made.push(format!("cabled {local}"));
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        parse(
            br#"{"version": 1, "serial": "SN-1", "cpus": {"sockets": 2, "cores": 32, "threads": 64},
                "memory_bytes": 68719476736, "extra": "tolerated",
                "nics": [{"name": "eth0", "mac": "02:00:00:00:01:00", "speed_mbps": 10000},
                         {"name": "eth1", "mac": "02:00:00:00:01:01", "speed_mbps": null}],
                "disks": [{"name": "sda", "size_bytes": 960197124096}, {"name": "sdb", "size_bytes": 960197124096}],
                "lldp": [{"interface": "eth0", "chassis_name": "sw1", "port_id": "swp1"}]}"#,
        )
        .expect("a valid report")
    }

    fn facts() -> Facts {
        Facts {
            device_id: DeviceId(1),
            device: "srv".into(),
            templates: [
                ("eth0".to_owned(), Some("10gbase-t".to_owned())),
                ("eth1".to_owned(), None),
            ]
            .into(),
            interfaces: vec![
                Iface {
                    id: 10,
                    name: "eth0".into(),
                    mgmt_only: false,
                    primary_mac: None,
                    macs: vec![(5, "02:00:00:00:01:00".into())],
                    peer: None,
                },
                Iface {
                    id: 12,
                    name: "bmc".into(),
                    mgmt_only: true,
                    primary_mac: Some("AA:AA:AA:AA:AA:AA".into()),
                    macs: vec![(6, "AA:AA:AA:AA:AA:AA".into())],
                    peer: None,
                },
            ],
            ports: vec![Ok(SwitchPort {
                id: 99,
                device: "sw1".into(),
                name: "swp1".into(),
                peer: None,
            })],
            expect: Expectations {
                cpu_sockets: Some(2),
                memory_gb_min: Some(64),
                disks_min: Some(2),
                disk_gb_min: Some(800),
                ..Expectations::default()
            },
        }
    }

    #[test]
    fn a_matching_report_plans_the_missing_interface_macs_and_cable() {
        let (diffs, plan) = check(&report(), &facts());
        assert!(diffs.is_empty(), "{diffs:?}");
        assert_eq!(
            plan.create_interfaces,
            vec![("eth1".to_owned(), "other".to_owned())]
        );
        assert_eq!(
            plan.macs,
            vec![
                // Left by a report applied halfway: made primary, not created again.
                MacPlan {
                    interface: "eth0".into(),
                    mac: "02:00:00:00:01:00".into(),
                    existing: Some(5)
                },
                MacPlan {
                    interface: "eth1".into(),
                    mac: "02:00:00:00:01:01".into(),
                    existing: None
                },
            ]
        );
        assert_eq!(plan.cables, vec![("eth0".to_owned(), 99)]);
    }

    #[test]
    fn missing_and_extra_nics_are_differences() {
        let mut r = report();
        r.nics.remove(1);
        r.nics.push(Nic {
            name: "eth9".into(),
            mac: "02:00:00:00:01:09".parse().expect("mac"),
            speed_mbps: None,
            operstate: None,
        });
        let (diffs, _) = check(&r, &facts());
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with("NIC eth1: the device type has it")),
            "{diffs:?}"
        );
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with("NIC eth9 (02:00:00:00:01:09): the server has it")),
            "{diffs:?}"
        );
    }

    #[test]
    fn a_cable_to_another_peer_an_unknown_switch_and_a_wrong_mac_are_differences() {
        let mut f = facts();
        f.interfaces[0].peer = Some(("sw2".into(), "Ethernet4".into(), 77));
        f.interfaces[0].primary_mac = Some("02:00:00:00:0F:0F".into());
        f.ports
            .push(Err("the switch \"sw9\" is not a device in NetBox".into()));
        let mut r = report();
        r.lldp.push(Neighbour {
            interface: "eth1".into(),
            chassis_name: Some("sw9".into()),
            chassis_id: None,
            port_id: "x".into(),
            port_description: None,
        });
        let (diffs, plan) = check(&r, &f);
        assert!(
            diffs.contains(
                &"cable on eth0: NetBox connects it to sw2 Ethernet4, LLDP sees sw1 swp1"
                    .to_owned()
            ),
            "{diffs:?}"
        );
        assert!(
            diffs
                .iter()
                .any(|d| d.contains("NetBox records MAC 02:00:00:00:0F:0F")),
            "{diffs:?}"
        );
        assert!(diffs.iter().any(|d| d.contains("sw9")), "{diffs:?}");
        assert!(plan.cables.is_empty());
    }

    #[test]
    fn too_little_hardware_is_a_difference() {
        let mut r = report();
        r.memory_bytes = 32 << 30;
        r.disks.truncate(1);
        r.cpus.sockets = 1;
        let (diffs, _) = check(&r, &facts());
        assert!(
            diffs.contains(&"memory: 32.0 GiB, expected at least 64 GiB".to_owned()),
            "{diffs:?}"
        );
        assert!(
            diffs.contains(&"disks: 1 disks of at least 800 GiB, expected at least 2".to_owned()),
            "{diffs:?}"
        );
        assert!(
            diffs.contains(&"CPUs: 1 sockets, expected 2".to_owned()),
            "{diffs:?}"
        );
    }

    #[test]
    fn schema_errors_name_the_field() {
        let err = parse(br#"{"version": 1, "serial": "x", "cpus": {"sockets": 1, "cores": "many", "threads": 2}}"#)
            .expect_err("bad type");
        assert!(err.starts_with("cpus.cores:"), "{err}");
        let err = parse(br#"{"version": 1, "cpus": {"sockets": 1, "cores": 1, "threads": 2}}"#)
            .expect_err("missing");
        assert!(err.contains("missing field `serial`"), "{err}");
        let err = parse(br#"{"version": 2, "serial": "x", "cpus": {"sockets": 1, "cores": 1, "threads": 2}, "memory_bytes": 1, "nics": [], "disks": [], "lldp": []}"#)
            .expect_err("version");
        assert!(err.starts_with("version: 2"), "{err}");
    }
}
