//! Property tests: no input panics the report's parser or the check. 256 cases each by default;
//! run them longer by hand with, e.g.,
//! `PROPTEST_CASES=100000 cargo test --all-features --lib stages::validation::no_panic`.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::binding::{admit, bound};
use super::check::{Expectations, Facts, Iface, Peer, SwitchPort, check};
use super::report::{Cpus, Disk, Neighbour, Nic, Report, parse};
use crate::config::ReportBounds;
use crate::dhcp::Mac;
use crate::netbox::DeviceId;
use crate::testing::any_json;

fn bounds() -> impl Strategy<Value = ReportBounds> {
    (0usize..8, 0usize..8, 0usize..8).prop_map(|(nics, disks, lldp_neighbours)| ReportBounds {
        nics,
        disks,
        lldp_neighbours,
    })
}

fn or_any(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![4 => right, 1 => any_json()].boxed()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("eth0".to_owned()),
        Just("eth1".to_owned()),
        Just("bmc".to_owned()),
        Just(String::new()),
        Just(" ".to_owned()),
        ".{0,8}",
    ]
}

/// MAC-looking strings, including multi-byte characters where hex digits belong.
fn mac_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-9a-fA-F]{2}[:.-]?){6}",
        "[0-9a-fA-Fé€:.-]{0,18}",
        ".{0,20}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

fn nic_json() -> BoxedStrategy<Value> {
    or_any(
        (
            name(),
            mac_text(),
            or_any(number()),
            or_any(".{0,4}".prop_map(Value::from)),
        )
            .prop_map(|(n, m, s, o)| json!({"name": n, "mac": m, "speed_mbps": s, "operstate": o})),
    )
}

fn disk_json() -> BoxedStrategy<Value> {
    or_any(
        (
            name(),
            or_any(number()),
            or_any(any::<bool>().prop_map(Value::from)),
        )
            .prop_map(|(n, s, r)| json!({"name": n, "size_bytes": s, "rotational": r})),
    )
}

fn neighbour_json() -> BoxedStrategy<Value> {
    or_any(
        (name(), option::of(name()), name(), option::of(name())).prop_map(|(i, c, p, d)| {
            json!({"interface": i, "chassis_name": c, "port_id": p, "port_description": d})
        }),
    )
}

/// An object with the report's fields, each of the right type or not.
fn report_json() -> impl Strategy<Value = Value> {
    (
        or_any(prop_oneof![Just(json!(1)), number()]),
        or_any(name().prop_map(Value::from)),
        or_any(
            (number(), number(), number())
                .prop_map(|(s, c, t)| json!({"sockets": s, "cores": c, "threads": t})),
        ),
        or_any(number()),
        or_any(vec(nic_json(), 0..6).prop_map(Value::Array)),
        or_any(vec(disk_json(), 0..6).prop_map(Value::Array)),
        or_any(vec(neighbour_json(), 0..6).prop_map(Value::Array)),
        any_json(),
    )
        .prop_map(
            |(version, serial, cpus, memory, nics, disks, lldp, system)| {
                json!({"version": version, "serial": serial, "cpus": cpus, "memory_bytes": memory,
                   "nics": nics, "disks": disks, "lldp": lldp, "system": system})
            },
        )
}

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(|o| {
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
        .parse()
        .expect("six octets are a MAC")
    })
}

fn report() -> impl Strategy<Value = Report> {
    let nic = (name(), mac(), option::of(any::<u64>())).prop_map(|(name, mac, speed_mbps)| Nic {
        name,
        mac,
        speed_mbps,
        operstate: None,
    });
    let disk = (name(), any::<u64>()).prop_map(|(name, size_bytes)| Disk {
        name,
        model: None,
        serial: None,
        size_bytes,
        rotational: None,
    });
    let neighbour = (name(), option::of(name()), name(), option::of(name())).prop_map(
        |(interface, chassis_name, port_id, port_description)| Neighbour {
            interface,
            chassis_name,
            chassis_id: None,
            port_id,
            port_description,
        },
    );
    (
        any::<(u32, u32, u32)>(),
        any::<u64>(),
        vec(nic, 0..6),
        vec(disk, 0..6),
        vec(neighbour, 0..6),
    )
        .prop_map(
            |((sockets, cores, threads), memory_bytes, nics, disks, lldp)| Report {
                version: 1,
                serial: "SN".into(),
                system: None,
                cpus: Cpus {
                    sockets,
                    cores,
                    threads,
                    model: None,
                },
                memory_bytes,
                nics,
                disks,
                lldp,
            },
        )
}

fn peers() -> impl Strategy<Value = Vec<Peer>> {
    vec(
        (name(), name(), option::of(0u64..4)).prop_map(|(device, name, interface)| Peer {
            device,
            name,
            interface,
        }),
        0..3,
    )
}

fn facts() -> impl Strategy<Value = Facts> {
    let iface = (
        0u64..4,
        name(),
        any::<bool>(),
        option::of(mac_text()),
        vec((0u64..4, mac_text()), 0..3),
        peers(),
    )
        .prop_map(|(id, name, mgmt_only, primary_mac, macs, peers)| Iface {
            id,
            name,
            mgmt_only,
            primary_mac,
            macs,
            peers,
        });
    let port = prop_oneof![
        (0u64..4, name(), name(), peers()).prop_map(|(id, device, name, peers)| Ok(SwitchPort {
            id,
            device,
            name,
            peers
        })),
        ".{0,8}".prop_map(Err),
    ];
    let expect = prop_oneof![
        (
            option::of(any::<u32>()),
            option::of(any::<u32>()),
            option::of(any::<u64>()),
            option::of(any::<usize>()),
            option::of(any::<u64>()),
        )
            .prop_map(|(a, b, c, d, e)| Ok(Expectations {
                cpu_sockets: a,
                cpu_cores_min: b,
                memory_gb_min: c,
                disks_min: d,
                disk_gb_min: e,
            })),
        ".{0,8}".prop_map(Err),
    ];
    (
        name(),
        btree_map(name(), option::of(".{0,6}"), 0..4),
        vec(iface, 0..5),
        vec(port, 0..7),
        expect,
    )
        .prop_map(|(device, templates, interfaces, ports, expect)| Facts {
            device_id: DeviceId(1),
            device,
            templates,
            interfaces,
            ports,
            expect,
        })
}

proptest! {
    #[test]
    fn parse_takes_any_bytes(body in vec(any::<u8>(), 0..1024), bounds in bounds()) {
        let _ = parse(&body, &bounds);
    }

    #[test]
    fn parse_takes_any_report_shaped_json(report in report_json(), bounds in bounds()) {
        let body = serde_json::to_vec(&report).unwrap_or_default();
        if let Ok(parsed) = parse(&body, &bounds) {
            prop_assert!(!parsed.serial.trim().is_empty());
            prop_assert!(parsed.lldp.len() <= bounds.lldp_neighbours);
        }
    }

    #[test]
    fn check_takes_any_report_and_facts(report in report(), facts in facts(), source in any::<std::net::IpAddr>()) {
        let _ = bound(&report, &facts.interfaces);
        let _ = admit(&["10.0.0.0/8".parse().expect("a network")], source);
        let (diffs, plan) = check(&report, &facts);
        // Writing touches only the server's own NICs, and cables a switch port once.
        for entry in &plan.interfaces {
            prop_assert!(report.nics.iter().any(|n| n.name == entry.name), "{entry:?}");
        }
        if diffs.is_empty() {
            let mut cabled: Vec<u64> = plan.interfaces.iter().filter_map(|p| p.cable).collect();
            let all = cabled.len();
            cabled.sort_unstable();
            cabled.dedup();
            prop_assert_eq!(all, cabled.len());
        }
    }
}
