//! What ties a report to its device beyond its serial (which anyone on the provisioning network
//! may learn) until reports carry per-boot tokens: the address it came from, and the MACs NetBox
//! already records on the device. Pure: the callback asks, and journals a refusal. A reason
//! names nothing the sender chose (its address, its MACs): it is journaled once per device, and
//! a reason that changed with every report would be journaled every time.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::check::Iface;
use super::report::Report;
use crate::dhcp::Mac;

/// Whether a report from `source` may be applied: any address when `sources` is empty, else
/// one inside one of them (`validation.sources`, the provisioning networks).
pub fn admit(sources: &[IpNet], source: IpAddr) -> Result<(), String> {
    // An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d.
    let source = source.to_canonical();
    if sources.is_empty() || sources.iter().any(|net| net.contains(&source)) {
        return Ok(());
    }
    Err(format!(
        "it was sent from outside validation.sources: {}",
        sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// When NetBox records MACs on the device's interfaces (the management interface aside: the
/// host OS does not see the BMC), at least one of them must be among the report's NICs;
/// otherwise the report describes another server, or a made-up one.
pub fn bound(report: &Report, interfaces: &[Iface]) -> Result<(), String> {
    let recorded: BTreeSet<Mac> = interfaces
        .iter()
        .filter(|i| !i.mgmt_only)
        .flat_map(|i| i.macs.iter().map(|(_, mac)| mac).chain(&i.primary_mac))
        .filter_map(|mac| mac.parse().ok())
        .collect();
    if recorded.is_empty() || report.nics.iter().any(|n| recorded.contains(&n.mac)) {
        return Ok(());
    }
    Err(format!(
        "NetBox records the MAC addresses {} on the device's interfaces and the report lists none of them: it may come from another server. If the NICs were replaced, correct the MAC addresses in NetBox.",
        recorded
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReportBounds;
    use crate::stages::validation::report::parse;

    fn report() -> Report {
        parse(
            br#"{"version": 1, "serial": "SN-1", "cpus": {"sockets": 1, "cores": 1, "threads": 2},
                "memory_bytes": 1, "disks": [], "lldp": [],
                "nics": [{"name": "eth0", "mac": "02:00:00:00:01:00"}, {"name": "eth1", "mac": "02:00:00:00:01:01"}]}"#,
            &ReportBounds::default(),
        )
        .expect("report")
    }

    fn iface(name: &str, mgmt_only: bool, primary: Option<&str>, macs: &[&str]) -> Iface {
        Iface {
            id: 1,
            name: name.into(),
            mgmt_only,
            primary_mac: primary.map(str::to_owned),
            macs: macs.iter().map(|m| (7, (*m).to_owned())).collect(),
            peers: Vec::new(),
        }
    }

    #[test]
    fn any_source_without_a_list_and_only_listed_networks_with_one() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(admit(&[], ip("192.0.2.9")).is_ok());
        let nets: Vec<IpNet> = vec![
            "10.20.0.0/16".parse().expect("net"),
            "2001:db8::/32".parse().expect("net"),
        ];
        assert!(admit(&nets, ip("10.20.3.4")).is_ok());
        assert!(admit(&nets, ip("::ffff:10.20.3.4")).is_ok(), "v4-mapped");
        assert!(admit(&nets, ip("2001:db8::5")).is_ok());
        let err = admit(&nets, ip("10.21.0.1")).expect_err("outside");
        assert_eq!(
            err,
            "it was sent from outside validation.sources: 10.20.0.0/16, 2001:db8::/32"
        );
    }

    #[test]
    fn one_recorded_mac_among_the_nics_binds_the_report() {
        let r = report();
        // Nothing recorded yet (a new server), or only the BMC's: nothing to compare.
        assert!(bound(&r, &[]).is_ok());
        assert!(bound(&r, &[iface("bmc", true, Some("AA:AA:AA:AA:AA:AA"), &[])]).is_ok());
        // One NIC replaced: the other still binds it (check() reports the changed one).
        assert!(
            bound(
                &r,
                &[
                    iface("eth0", false, Some("02:00:00:00:0f:00"), &[]),
                    iface("eth1", false, None, &["02:00:00:00:01:01"]),
                ]
            )
            .is_ok()
        );
        let err = bound(
            &r,
            &[iface(
                "eth0",
                false,
                Some("02:00:00:00:0F:00"),
                &["02:00:00:00:0F:00"],
            )],
        )
        .expect_err("none of them");
        assert!(
            err.starts_with("NetBox records the MAC addresses 02:00:00:00:0F:00 on the device's interfaces and the report lists none of them:"),
            "{err}"
        );
    }
}
