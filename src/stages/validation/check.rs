//! The check (pure): a report against the facts read from NetBox. It gives the differences, and
//! when there are none the [`Plan`]: the writes that make NetBox match the server. Every
//! interface a write touches comes from the plan itself, so writing cannot look up a name the
//! check did not see.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::report::{Nic, Report};
use crate::dhcp::Mac;
use crate::netbox::DeviceId;

/// What the operator expects of the hardware, from the device's config context under
/// `racklift.expect` (set per device type, role or site in NetBox).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// The far ends of its cable (none when it has no cable).
    pub peers: Vec<Peer>,
}

/// One far end of a cable, as NetBox's `link_peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub device: String,
    pub name: String,
    /// The interface's id; `None` when the far end is not an interface (a patch panel's front
    /// port, a circuit termination): ids of different kinds of objects are not comparable.
    pub interface: Option<u64>,
}

/// A switch port found for an LLDP neighbour, with what is cabled to it.
#[derive(Debug, Clone)]
pub struct SwitchPort {
    pub id: u64,
    pub device: String,
    pub name: String,
    pub peers: Vec<Peer>,
}

/// What the check compares the report with: the facts read from NetBox.
#[derive(Debug, Clone)]
pub struct Facts {
    pub device_id: DeviceId,
    pub device: String,
    /// Interface names the device type promises (management-only ones left out), with the
    /// template's type.
    pub templates: BTreeMap<String, Option<String>>,
    pub interfaces: Vec<Iface>,
    /// Per LLDP neighbour (same order as the report): the switch port, or why none.
    pub ports: Vec<Result<SwitchPort, String>>,
    /// The config context's expectations, or why they cannot be read.
    pub expect: Result<Expectations, String>,
}

/// The writes a matching report calls for, one entry per interface that needs any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub interfaces: Vec<IfacePlan>,
}

/// What to do on one of the device's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfacePlan {
    pub name: String,
    pub target: Target,
    /// The MAC to make the interface's primary one.
    pub mac: Option<MacPlan>,
    /// The switch port to cable it to.
    pub cable: Option<u64>,
}

/// The interface a plan entry writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Existing(u64),
    /// To be created, with this NetBox interface type.
    Create {
        kind: String,
    },
}

/// A MAC to make an interface's primary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPlan {
    pub mac: String,
    /// The MAC address object already assigned to the interface (a report applied halfway
    /// before, say): made primary, not created again.
    pub existing: Option<u64>,
}

impl IfacePlan {
    fn is_empty(&self) -> bool {
        matches!(self.target, Target::Existing(_)) && self.mac.is_none() && self.cable.is_none()
    }
}

impl Plan {
    /// What carrying out the plan changes in NetBox, one line per change, for the journal
    /// entry written before the changes are made.
    pub fn changes(&self) -> Vec<String> {
        let mut changes = Vec::new();
        for iface in &self.interfaces {
            if matches!(iface.target, Target::Create { .. }) {
                changes.push(format!("created interface {}", iface.name));
            }
            if let Some(MacPlan { mac, .. }) = &iface.mac {
                changes.push(format!("MAC {mac} on {}", iface.name));
            }
            if iface.cable.is_some() {
                changes.push(format!("cabled {}", iface.name));
            }
        }
        changes
    }
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

/// Whether a MAC as NetBox writes it is `mac`.
fn same_mac(netbox: &str, mac: Mac) -> bool {
    netbox.parse::<Mac>().is_ok_and(|m| m == mac)
}

fn describe(peers: &[Peer]) -> String {
    peers
        .iter()
        .map(|p| format!("{} {}", p.device, p.name))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Checks the report against the facts: the differences (empty when all match), and what to
/// write when they do.
pub fn check(report: &Report, facts: &Facts) -> (Vec<String>, Plan) {
    let mut diffs = Vec::new();
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
    // One entry per reported NIC that NetBox has or its device type promises.
    let mut plans: BTreeMap<&str, IfacePlan> = BTreeMap::new();
    for (name, nic) in &nics {
        let plan = match netbox.get(name) {
            None => match facts.templates.get(*name) {
                None => {
                    diffs.push(format!(
                        "NIC {name} ({}): the server has it, the device type does not",
                        nic.mac
                    ));
                    continue;
                }
                Some(kind) => IfacePlan {
                    name: (*name).to_owned(),
                    target: Target::Create {
                        kind: kind
                            .clone()
                            .unwrap_or_else(|| interface_type(nic.speed_mbps).to_owned()),
                    },
                    mac: Some(MacPlan {
                        mac: nic.mac.to_string(),
                        existing: None,
                    }),
                    cable: None,
                },
            },
            Some(iface) => IfacePlan {
                name: (*name).to_owned(),
                target: Target::Existing(iface.id),
                mac: match &iface.primary_mac {
                    Some(mac) if !same_mac(mac, nic.mac) => {
                        diffs.push(format!(
                            "NIC {name}: NetBox records MAC {mac}, the server reports {}",
                            nic.mac
                        ));
                        None
                    }
                    Some(_) => None,
                    None => Some(MacPlan {
                        mac: nic.mac.to_string(),
                        existing: iface
                            .macs
                            .iter()
                            .find(|(_, m)| same_mac(m, nic.mac))
                            .map(|(id, _)| *id),
                    }),
                },
                cable: None,
            },
        };
        plans.insert(name, plan);
    }
    // Which local interface each switch port is planned for: one cable per port.
    let mut ports_taken: BTreeMap<u64, &str> = BTreeMap::new();
    for (neighbour, port) in report.lldp.iter().zip(&facts.ports) {
        let local = neighbour.interface.as_str();
        if !nics.contains_key(local) {
            diffs.push(format!(
                "LLDP on {local:?}: the server reports no NIC of that name"
            ));
            continue;
        }
        let port = match port {
            Ok(port) => port,
            Err(why) => {
                diffs.push(format!("LLDP on {local}: {why}"));
                continue;
            }
        };
        let seen = format!("{} {}", port.device, port.name);
        let here = netbox.get(local).map_or(&[][..], |i| i.peers.as_slice());
        match here {
            [] => {}
            [peer] if peer.interface == Some(port.id) => continue,
            [peer] => {
                diffs.push(format!(
                    "cable on {local}: NetBox connects it to {} {}, LLDP sees {seen}",
                    peer.device, peer.name
                ));
                continue;
            }
            many => {
                diffs.push(format!(
                    "cable on {local}: NetBox's cable ends on {} interfaces ({}), LLDP sees {seen}",
                    many.len(),
                    describe(many)
                ));
                continue;
            }
        }
        match port.peers.as_slice() {
            [] => {}
            // NetBox has the cable already, seen from the switch's side.
            [peer] if peer.device == facts.device && peer.name == local => continue,
            others => {
                diffs.push(format!(
                    "cable on {local}: LLDP sees {seen}, which NetBox connects to {}",
                    describe(others)
                ));
                continue;
            }
        }
        if let Some(other) = ports_taken.insert(port.id, local)
            && other != local
        {
            diffs.push(format!(
                "LLDP sees {seen} on both {other} and {local}; a port takes one cable"
            ));
            continue;
        }
        // An extra NIC has no plan: it is a difference already.
        let Some(plan) = plans.get_mut(local) else {
            continue;
        };
        match plan.cable {
            Some(planned) if planned != port.id => diffs.push(format!(
                "LLDP on {local}: neighbours on two switch ports, the second {seen}; an interface takes one cable"
            )),
            _ => plan.cable = Some(port.id),
        }
    }
    match &facts.expect {
        Ok(expect) => hardware(report, expect, &mut diffs),
        Err(why) => diffs.push(format!(
            "the config context's racklift.expect cannot be read ({why}); fix it in NetBox"
        )),
    }
    let plan = Plan {
        interfaces: plans.into_values().filter(|p| !p.is_empty()).collect(),
    };
    (diffs, plan)
}

/// CPUs, memory and disks against what the operator expects.
fn hardware(report: &Report, e: &Expectations, diffs: &mut Vec<String>) {
    const GIB: u64 = 1 << 30;
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
    // Saturating: a config context may say any number, and no server has 2^64 bytes.
    if let Some(min) = e.memory_gb_min
        && report.memory_bytes < min.saturating_mul(GIB)
    {
        diffs.push(format!(
            "memory: {:.1} GiB, expected at least {min} GiB",
            report.memory_bytes as f64 / GIB as f64
        ));
    }
    let big_enough = report
        .disks
        .iter()
        .filter(|d| {
            e.disk_gb_min
                .is_none_or(|min| d.size_bytes >= min.saturating_mul(GIB))
        })
        .count();
    if let Some(min) = e.disks_min
        && big_enough < min
    {
        let size = e
            .disk_gb_min
            .map(|g| format!(" of at least {g} GiB"))
            .unwrap_or_default();
        diffs.push(format!(
            "disks: {big_enough} disks{size}, expected at least {min}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReportBounds;
    use crate::stages::validation::report::{Neighbour, parse};

    pub(crate) fn report() -> Report {
        parse(
            br#"{"version": 1, "serial": "SN-1", "cpus": {"sockets": 2, "cores": 32, "threads": 64},
                "memory_bytes": 68719476736, "extra": "tolerated",
                "nics": [{"name": "eth0", "mac": "02:00:00:00:01:00", "speed_mbps": 10000},
                         {"name": "eth1", "mac": "02:00:00:00:01:01", "speed_mbps": null}],
                "disks": [{"name": "sda", "size_bytes": 960197124096}, {"name": "sdb", "size_bytes": 960197124096}],
                "lldp": [{"interface": "eth0", "chassis_name": "sw1", "port_id": "swp1"}]}"#,
            &ReportBounds::default(),
        )
        .expect("a valid report")
    }

    fn port(id: u64, name: &str) -> Result<SwitchPort, String> {
        Ok(SwitchPort {
            id,
            device: "sw1".into(),
            name: name.into(),
            peers: Vec::new(),
        })
    }

    fn peer(device: &str, name: &str, interface: Option<u64>) -> Peer {
        Peer {
            device: device.into(),
            name: name.into(),
            interface,
        }
    }

    fn neighbour(local: &str, port: &str) -> Neighbour {
        Neighbour {
            interface: local.into(),
            chassis_name: Some("sw1".into()),
            chassis_id: None,
            port_id: port.into(),
            port_description: None,
        }
    }

    pub(crate) fn facts() -> Facts {
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
                    peers: Vec::new(),
                },
                Iface {
                    id: 12,
                    name: "bmc".into(),
                    mgmt_only: true,
                    primary_mac: Some("AA:AA:AA:AA:AA:AA".into()),
                    macs: vec![(6, "AA:AA:AA:AA:AA:AA".into())],
                    peers: Vec::new(),
                },
            ],
            ports: vec![port(99, "swp1")],
            expect: Ok(Expectations {
                cpu_sockets: Some(2),
                memory_gb_min: Some(64),
                disks_min: Some(2),
                disk_gb_min: Some(800),
                ..Expectations::default()
            }),
        }
    }

    #[test]
    fn a_matching_report_plans_the_missing_interface_macs_and_cable() {
        let (diffs, plan) = check(&report(), &facts());
        assert!(diffs.is_empty(), "{diffs:?}");
        assert_eq!(
            plan.interfaces,
            vec![
                // Left by a report applied halfway: made primary, not created again.
                IfacePlan {
                    name: "eth0".into(),
                    target: Target::Existing(10),
                    mac: Some(MacPlan {
                        mac: "02:00:00:00:01:00".into(),
                        existing: Some(5)
                    }),
                    cable: Some(99),
                },
                IfacePlan {
                    name: "eth1".into(),
                    target: Target::Create {
                        kind: "other".into()
                    },
                    mac: Some(MacPlan {
                        mac: "02:00:00:00:01:01".into(),
                        existing: None
                    }),
                    cable: None,
                },
            ]
        );
    }

    #[test]
    fn what_netbox_has_already_is_not_planned_again() {
        let mut f = facts();
        f.interfaces[0].primary_mac = Some("02:00:00:00:01:00".into());
        f.interfaces[0].peers = vec![peer("sw1", "swp1", Some(99))];
        let (diffs, plan) = check(&report(), &f);
        assert!(diffs.is_empty(), "{diffs:?}");
        assert_eq!(
            plan.interfaces.iter().map(|p| &p.name).collect::<Vec<_>>(),
            ["eth1"]
        );
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
        f.interfaces[0].peers = vec![peer("sw2", "Ethernet4", Some(77))];
        f.interfaces[0].primary_mac = Some("02:00:00:00:0F:0F".into());
        f.ports
            .push(Err("the switch \"sw9\" is not a device in NetBox".into()));
        let mut r = report();
        r.lldp.push(Neighbour {
            chassis_name: Some("sw9".into()),
            ..neighbour("eth1", "x")
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
        assert!(plan.interfaces.iter().all(|p| p.cable.is_none()));
    }

    #[test]
    fn lldp_on_an_unlisted_nic_is_a_difference_not_a_plan() {
        let mut r = report();
        r.lldp = vec![neighbour("eth7", "swp1")];
        let (diffs, plan) = check(&r, &facts());
        assert_eq!(
            diffs,
            ["LLDP on \"eth7\": the server reports no NIC of that name"]
        );
        assert!(plan.interfaces.iter().all(|p| p.cable.is_none()));
    }

    #[test]
    fn a_far_end_that_is_no_interface_or_several_far_ends_are_differences() {
        let mut f = facts();
        // A patch panel's front port with the switch port's id: another kind of object.
        f.interfaces[0].peers = vec![peer("panel1", "1", None)];
        let (diffs, _) = check(&report(), &f);
        assert_eq!(
            diffs,
            ["cable on eth0: NetBox connects it to panel1 1, LLDP sees sw1 swp1"]
        );
        f.interfaces[0].peers = vec![peer("sw1", "swp1", Some(99)), peer("sw1", "swp2", Some(98))];
        let (diffs, _) = check(&report(), &f);
        assert_eq!(
            diffs,
            [
                "cable on eth0: NetBox's cable ends on 2 interfaces (sw1 swp1 and sw1 swp2), LLDP sees sw1 swp1"
            ]
        );
        let mut f = facts();
        f.ports = vec![Ok(SwitchPort {
            peers: vec![peer("other-srv", "eth0", Some(5))],
            ..port(99, "swp1").expect("port")
        })];
        let (diffs, _) = check(&report(), &f);
        assert_eq!(
            diffs,
            ["cable on eth0: LLDP sees sw1 swp1, which NetBox connects to other-srv eth0"]
        );
    }

    #[test]
    fn one_port_for_two_nics_or_two_ports_for_one_nic_are_differences() {
        let mut r = report();
        r.lldp = vec![neighbour("eth0", "swp1"), neighbour("eth1", "swp1")];
        let mut f = facts();
        f.ports = vec![port(99, "swp1"), port(99, "swp1")];
        let (diffs, _) = check(&r, &f);
        assert_eq!(
            diffs,
            ["LLDP sees sw1 swp1 on both eth0 and eth1; a port takes one cable"]
        );
        r.lldp = vec![neighbour("eth0", "swp1"), neighbour("eth0", "swp2")];
        f.ports = vec![port(99, "swp1"), port(98, "swp2")];
        let (diffs, _) = check(&r, &f);
        assert_eq!(
            diffs,
            [
                "LLDP on eth0: neighbours on two switch ports, the second sw1 swp2; an interface takes one cable"
            ]
        );
        // The same port twice (two LLDP agents behind one port) is one cable.
        f.ports = vec![port(99, "swp1"), port(99, "swp1")];
        r.lldp = vec![neighbour("eth0", "swp1"), neighbour("eth0", "swp1")];
        let (diffs, plan) = check(&r, &f);
        assert!(diffs.is_empty(), "{diffs:?}");
        assert_eq!(plan.interfaces[0].cable, Some(99));
    }

    #[test]
    fn too_little_hardware_is_a_difference() {
        let mut r = report();
        r.memory_bytes = 32 << 30;
        r.disks.truncate(1);
        r.cpus.sockets = 1;
        let (diffs, _) = check(&r, &facts());
        assert_eq!(
            diffs,
            [
                "CPUs: 1 sockets, expected 2",
                "memory: 32.0 GiB, expected at least 64 GiB",
                "disks: 1 disks of at least 800 GiB, expected at least 2",
            ]
        );
    }

    #[test]
    fn huge_or_unreadable_expectations_are_differences_not_overflows() {
        let mut f = facts();
        f.expect = Ok(Expectations {
            memory_gb_min: Some(u64::MAX),
            disk_gb_min: Some(u64::MAX),
            disks_min: Some(1),
            ..Expectations::default()
        });
        let (diffs, _) = check(&report(), &f);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        f.expect = Err("memory_gb_min: invalid type: string \"lots\"".into());
        let (diffs, _) = check(&report(), &f);
        assert_eq!(
            diffs,
            [
                "the config context's racklift.expect cannot be read (memory_gb_min: invalid type: string \"lots\"); fix it in NetBox"
            ]
        );
    }
}
