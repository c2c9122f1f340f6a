//! Discovery's decisions, pure: which prefix an address belongs to, what the address record
//! and the device need for a lease, and how the journal names a lease.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::dhcp::LeaseEvent;
use crate::lifecycle::Lifecycle;
use crate::netbox::Device;
use crate::netbox::ipam::{BmcInterface, IpRecord, Prefix};

/// The prefix an address belongs to for a device in `site`: a prefix scoped to that site beats
/// an unscoped one, a longer one beats a shorter one; prefixes of other sites do not count.
/// Two equally good prefixes in different VRFs are ambiguous.
pub fn choose_prefix(prefixes: &[Prefix], site: Option<u64>) -> Result<&Prefix, String> {
    let rank = |p: &Prefix| (p.site.is_some(), p.len);
    let candidates: Vec<&Prefix> = prefixes
        .iter()
        .filter(|p| p.site.is_none() || p.site == site)
        .collect();
    let Some(best) = candidates.iter().copied().max_by_key(|p| rank(p)) else {
        return Err("no NetBox prefix contains it".to_owned());
    };
    let rivals: Vec<&str> = candidates
        .iter()
        .filter(|p| rank(p) == rank(best) && p.vrf != best.vrf)
        .map(|p| p.prefix.as_str())
        .collect();
    if rivals.is_empty() {
        Ok(best)
    } else {
        Err(format!(
            "it is in {} in more than one VRF ({} and {}): scope the prefix to the device's site",
            best.prefix,
            best.prefix,
            rivals.join(", ")
        ))
    }
}

/// What to do with the address record for a lease the client holds.
#[derive(Debug, Clone, PartialEq)]
pub enum IpPlan {
    /// NetBox already records it on the interface as a DHCP address.
    Keep {
        id: u64,
    },
    Create {
        body: Value,
    },
    Update {
        id: u64,
        body: Value,
        note: String,
    },
    /// Someone else holds the address: write nothing.
    Conflict {
        holder: String,
    },
}

pub fn plan_held_ip(
    ip: Ipv4Addr,
    prefix: &Prefix,
    iface: &BmcInterface,
    holder: Option<&IpRecord>,
    on_iface: &[IpRecord],
) -> IpPlan {
    let address = format!("{ip}/{}", prefix.len);
    match holder {
        Some(record) if record.is_on(iface) => {
            let mut body = serde_json::Map::new();
            let mut notes = Vec::new();
            if record.len != prefix.len {
                body.insert("address".into(), json!(address));
                notes.push(format!("prefix length /{} → /{}", record.len, prefix.len));
            }
            if record.status != "dhcp" {
                body.insert("status".into(), json!("dhcp"));
                notes.push(format!(
                    "the lease was taken again (status {} → dhcp)",
                    record.status
                ));
            }
            if body.is_empty() {
                IpPlan::Keep { id: record.id }
            } else {
                IpPlan::Update {
                    id: record.id,
                    body: Value::Object(body),
                    note: notes.join(", "),
                }
            }
        }
        Some(record) => match &record.assigned {
            Some((_, _, name)) => IpPlan::Conflict {
                holder: name.clone(),
            },
            // An unassigned record of the address: take it over.
            None => IpPlan::Update {
                id: record.id,
                body: json!({
                    "address": address, "status": "dhcp",
                    "assigned_object_type": "dcim.interface", "assigned_object_id": iface.id,
                }),
                note: "an unassigned NetBox record of the address was assigned to the BMC".into(),
            },
        },
        None => match on_iface.iter().find(|r| r.is_lease()) {
            // The BMC got a new address: move the record, so its history stays in one place.
            Some(old) => IpPlan::Update {
                id: old.id,
                body: json!({ "address": address, "status": "dhcp" }),
                note: format!("address changed {}/{} → {address}", old.host, old.len),
            },
            None => IpPlan::Create {
                body: json!({
                    "address": address,
                    "vrf": prefix.vrf,
                    "status": "dhcp",
                    "assigned_object_type": "dcim.interface",
                    "assigned_object_id": iface.id,
                    "description": "BMC DHCP lease (racklift)",
                }),
            },
        },
    }
}

/// The device write a held lease calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceWrite {
    /// The device is as the lease says.
    Nothing,
    /// The OOB IP follows the lease; the state stays.
    OobIp,
    /// `racked → discovered` (through the one writer), with the OOB IP.
    Discover,
}

/// `ip_id` is `None` for an address record still to be created.
pub fn plan_device(device: &Device, ip_id: Option<u64>) -> DeviceWrite {
    if matches!(device.lifecycle, Some(Ok(Lifecycle::Racked))) {
        DeviceWrite::Discover
    } else if ip_id.is_none() || device.oob_ip != ip_id {
        DeviceWrite::OobIp
    } else {
        DeviceWrite::Nothing
    }
}

pub fn describe(event: &LeaseEvent, iface: &BmcInterface) -> String {
    let hostname = event
        .hostname
        .as_deref()
        .map(|h| format!(", hostname {h}"))
        .unwrap_or_default();
    format!(
        "BMC interface {} ({}), {} lease from {}{hostname}",
        iface.name,
        event.mac,
        event.kind.as_str(),
        event.server
    )
}

/// How a warning that is journaled once names the lease: by address, interface and MAC, never
/// by the event kind, server or hostname. The next event of the same lease (a renewal, Kea's
/// second report of it, dnsmasq's replay without a hostname) then finds the same text as the
/// device's latest entry and journals nothing new.
pub fn lease_subject(event: &LeaseEvent, iface: &BmcInterface) -> String {
    format!(
        "DHCP lease {} (BMC interface {} ({}))",
        event.ip, iface.name, event.mac
    )
}

/// The journal entry for a lease NetBox cannot record.
pub fn refusal(event: &LeaseEvent, iface: &BmcInterface, why: &str) -> String {
    format!(
        "racklift: {} not recorded: {why}. Add the prefix in NetBox IPAM, then run `racklift dhcp-spool requeue` on the DHCP host.",
        lease_subject(event, iface)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netbox::DeviceId;
    use chrono::Utc;

    fn iface() -> BmcInterface {
        BmcInterface {
            id: 7,
            name: "bmc".into(),
            device: DeviceId(3),
        }
    }

    fn prefix(p: &str, vrf: Option<u64>, site: Option<u64>) -> Prefix {
        Prefix {
            prefix: p.into(),
            len: p.split_once('/').expect("len").1.parse().expect("len"),
            vrf,
            site,
        }
    }

    fn record(id: u64, addr: &str, status: &str, on: Option<u64>) -> IpRecord {
        let (host, len) = addr.split_once('/').expect("addr");
        IpRecord {
            id,
            host: host.parse().expect("ip"),
            len: len.parse().expect("len"),
            status: status.into(),
            vrf: None,
            assigned: on.map(|id| ("dcim.interface".to_owned(), id, format!("srv if{id}"))),
        }
    }

    #[test]
    fn a_refusal_reads_the_same_for_every_event_of_the_lease() {
        use crate::dhcp::LeaseEventKind;
        let event = |kind, server: &str, hostname: Option<&str>| LeaseEvent {
            kind,
            mac: "02:00:00:aa:bb:01".parse().expect("mac"),
            ip: "10.213.9.5".parse().expect("ip"),
            hostname: hostname.map(str::to_owned),
            subnet: None,
            server: server.into(),
            received_at: Utc::now(),
        };
        let why = "no NetBox prefix contains it";
        let commit = refusal(
            &event(LeaseEventKind::Commit, "kea", Some("bmc-01")),
            &iface(),
            why,
        );
        let renew = refusal(
            &event(LeaseEventKind::Renew, "dnsmasq", None),
            &iface(),
            why,
        );
        assert_eq!(commit, renew);
        assert!(
            commit.contains("10.213.9.5") && commit.contains("02:00:00:AA:BB:01"),
            "{commit}"
        );
    }

    #[test]
    fn the_site_scoped_and_longest_prefix_wins_and_other_sites_do_not_count() {
        let all = [
            prefix("10.0.0.0/16", None, None),
            prefix("10.0.1.0/24", None, None),
            prefix("10.0.1.0/25", Some(4), Some(99)),
            prefix("10.0.0.0/20", Some(2), Some(5)),
        ];
        assert_eq!(
            choose_prefix(&all, Some(5)).expect("one").prefix,
            "10.0.0.0/20"
        );
        assert_eq!(
            choose_prefix(&all, Some(6)).expect("one").prefix,
            "10.0.1.0/24"
        );
        assert!(
            choose_prefix(&[], Some(5))
                .expect_err("none")
                .contains("no NetBox prefix")
        );
        let twins = [
            prefix("10.0.1.0/24", Some(1), None),
            prefix("10.0.1.0/24", Some(2), None),
        ];
        assert!(
            choose_prefix(&twins, None)
                .expect_err("ambiguous")
                .contains("more than one VRF")
        );
    }

    #[test]
    fn a_new_lease_creates_the_record_with_the_prefix_length() {
        let p = prefix("10.213.0.0/24", Some(3), None);
        let plan = plan_held_ip("10.213.0.100".parse().expect("ip"), &p, &iface(), None, &[]);
        let IpPlan::Create { body } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(body["address"], "10.213.0.100/24");
        assert_eq!(body["status"], "dhcp");
        assert_eq!(body["vrf"], 3);
        assert_eq!(body["assigned_object_id"], 7);
    }

    #[test]
    fn a_renewal_with_nothing_new_keeps_the_record() {
        let p = prefix("10.213.0.0/24", None, None);
        let held = record(11, "10.213.0.100/24", "dhcp", Some(7));
        let plan = plan_held_ip(
            "10.213.0.100".parse().expect("ip"),
            &p,
            &iface(),
            Some(&held),
            &[],
        );
        assert_eq!(plan, IpPlan::Keep { id: 11 });
    }

    #[test]
    fn a_lease_taken_again_after_a_release_is_back_to_dhcp() {
        let p = prefix("10.213.0.0/24", None, None);
        let held = record(11, "10.213.0.100/24", "deprecated", Some(7));
        let plan = plan_held_ip(
            "10.213.0.100".parse().expect("ip"),
            &p,
            &iface(),
            Some(&held),
            &[],
        );
        let IpPlan::Update { id, body, .. } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!((id, body), (11, json!({"status": "dhcp"})));
    }

    #[test]
    fn a_changed_address_moves_the_bmcs_record_but_never_a_static_one() {
        let p = prefix("10.213.0.0/24", None, None);
        let on_iface = [
            record(5, "10.213.0.9/24", "active", Some(7)),
            record(6, "10.213.0.50/24", "dhcp", Some(7)),
        ];
        let plan = plan_held_ip(
            "10.213.0.101".parse().expect("ip"),
            &p,
            &iface(),
            None,
            &on_iface,
        );
        let IpPlan::Update { id, body, note } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(id, 6);
        assert_eq!(body["address"], "10.213.0.101/24");
        assert!(note.contains("10.213.0.50/24 → 10.213.0.101/24"), "{note}");
    }

    #[test]
    fn an_address_held_by_another_interface_is_a_conflict() {
        let p = prefix("10.213.0.0/24", None, None);
        let held = record(11, "10.213.0.100/24", "active", Some(99));
        let plan = plan_held_ip(
            "10.213.0.100".parse().expect("ip"),
            &p,
            &iface(),
            Some(&held),
            &[],
        );
        assert_eq!(
            plan,
            IpPlan::Conflict {
                holder: "srv if99".into()
            }
        );
    }

    fn device(lifecycle: &str, oob: Option<u64>) -> Device {
        Device {
            id: DeviceId(3),
            name: "srv".into(),
            oob_ip: oob,
            lifecycle: Some(lifecycle.parse()),
            ..Device::default()
        }
    }

    #[test]
    fn only_a_racked_device_is_discovered_and_the_oob_ip_follows_the_lease() {
        assert_eq!(
            plan_device(&device("racked", None), Some(11)),
            DeviceWrite::Discover
        );
        assert_eq!(
            plan_device(&device("racked", Some(11)), Some(11)),
            DeviceWrite::Discover
        );
        assert_eq!(
            plan_device(&device("provisioning", Some(10)), Some(11)),
            DeviceWrite::OobIp
        );
        assert_eq!(
            plan_device(&device("ready", Some(11)), Some(11)),
            DeviceWrite::Nothing
        );
        assert_eq!(
            plan_device(&device("ready", Some(11)), None),
            DeviceWrite::OobIp,
            "a new record"
        );
    }
}
