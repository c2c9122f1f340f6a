//! Discovery: one DHCP lease event made true in NetBox. The lease's MAC leads to a BMC
//! (management-only) interface and its device; the address is recorded on that interface
//! (status `dhcp`, prefix length from the NetBox prefix that contains it), becomes the device's
//! OOB IP, and a `racked` device moves to `discovered`, which starts the rest of the bring-up.
//!
//! Releases and expiries keep the address record and the OOB IP (the BMC normally comes back
//! for the same address, and monitoring needs it) but mark the record `deprecated` until the
//! lease is taken again. Deciding (`plan_*`, pure) is apart from doing (`apply_lease`).

use std::net::Ipv4Addr;

use chrono::Utc;
use serde_json::{Value, json};

use crate::config::Scope;
use crate::dhcp::{LeaseEvent, Subnet};
use crate::lifecycle::{JournalKind, Lifecycle, Stamp};
use crate::netbox::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxClient, NetBoxError};

/// Conditional device writes retried after a 412 before the event goes back to the spool.
const MAX_CHANGED_RETRIES: u32 = 3;

/// What one lease event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// NetBox was changed; the text says how.
    Applied(String),
    /// NetBox already matched (a renewal with nothing new): nothing written.
    Unchanged,
    /// No BMC interface has this MAC: nothing written.
    Unknown(String),
    /// The MAC is a BMC's, but racklift does not manage its device (not enrolled, or out of
    /// scope): nothing written, not even a journal entry.
    NotManaged(String),
    /// Another interface holds the address: journaled on the device, nothing else written.
    Conflict(String),
    /// NetBox cannot record it as it stands (e.g. no prefix holds the address); journaled on
    /// the device. Kept aside by the drain until the operator requeues it.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
#[error("lease of {ip} for {mac}: {doing}")]
pub struct DiscoveryError {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub doing: String,
    #[source]
    pub source: NetBoxError,
}

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
    fn from_api(v: &Value) -> Option<Self> {
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

    fn is_on(&self, iface: &BmcInterface) -> bool {
        matches!(&self.assigned, Some((kind, id, _)) if kind == "dcim.interface" && *id == iface.id)
    }

    /// A record racklift manages: one DHCP gave (or gave and took back).
    fn is_lease(&self) -> bool {
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
    fn from_api(v: &Value) -> Option<Self> {
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

/// The device write a held lease calls for: the OOB IP, and `racked → discovered`.
/// `ip_id` is `None` for an address record still to be created.
pub fn plan_device(device: &Device, ip_id: Option<u64>) -> Option<DeviceUpdate> {
    let discover = matches!(device.lifecycle, Some(Ok(Lifecycle::Racked)));
    if ip_id.is_some() && device.oob_ip == ip_id && !discover {
        return None;
    }
    let mut update = if discover {
        DeviceUpdate::transition(
            Lifecycle::Discovered,
            None,
            Stamp::entered(Lifecycle::Discovered, Utc::now()),
        )
    } else {
        DeviceUpdate::default()
    };
    update.oob_ip = ip_id;
    Some(update)
}

fn describe(event: &LeaseEvent, iface: &BmcInterface) -> String {
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
fn lease_subject(event: &LeaseEvent, iface: &BmcInterface) -> String {
    format!(
        "DHCP lease {} (BMC interface {} ({}))",
        event.ip, iface.name, event.mac
    )
}

/// The journal entry for a lease NetBox cannot record.
fn refusal(event: &LeaseEvent, iface: &BmcInterface, why: &str) -> String {
    format!(
        "racklift: {} not recorded: {why}. Add the prefix in NetBox IPAM, then run `racklift dhcp-spool requeue` on the DHCP host.",
        lease_subject(event, iface)
    )
}

/// Makes NetBox match one lease event.
pub async fn apply_lease(
    client: &NetBoxClient,
    scope: &Scope,
    event: &LeaseEvent,
) -> Result<LeaseOutcome, DiscoveryError> {
    let fail = |doing: &str| {
        let doing = doing.to_owned();
        move |source| DiscoveryError {
            mac: event.mac.to_string(),
            ip: event.ip,
            doing,
            source,
        }
    };
    let iface = match find_bmc_interface(client, event)
        .await
        .map_err(fail("looking up the MAC's interface"))?
    {
        Ok(iface) => iface,
        Err(reason) => return Ok(LeaseOutcome::Unknown(reason)),
    };
    let Some(mut device) = client
        .device(iface.device)
        .await
        .map_err(fail("reading the device"))?
    else {
        return Ok(LeaseOutcome::Unknown(format!(
            "the device of interface {} is gone from NetBox",
            iface.name
        )));
    };
    // Before anything is written: a server racklift does not manage is never touched, however
    // its BMC's DHCP leases come and go.
    if let Err(why) = device.managed(scope) {
        return Ok(LeaseOutcome::NotManaged(format!(
            "device {} (BMC interface {}): {why}",
            device.name, iface.name
        )));
    }
    let about = describe(event, &iface);

    if !event.kind.holds() {
        return release(client, event, &iface, &device, &about)
            .await
            .map_err(fail("recording the release"));
    }

    let prefixes: Vec<Prefix> = client
        .list(
            "ipam/prefixes/",
            &[
                ("contains", event.ip.to_string()),
                ("fields", "id,prefix,vrf,scope_type,scope_id".into()),
            ],
        )
        .await
        .map_err(fail("looking up the prefix"))?
        .iter()
        .filter_map(Prefix::from_api)
        .collect();
    let prefix = match choose_prefix(&prefixes, device.site_id) {
        Ok(prefix) => prefix.clone(),
        Err(why) => {
            let text = refusal(event, &iface, &why);
            client
                .journal_once(device.id, JournalKind::Warning, &text)
                .await
                .map_err(fail("journaling"))?;
            return Ok(LeaseOutcome::Refused(text));
        }
    };
    let mismatch = event
        .subnet
        .filter(|s: &Subnet| s.len != prefix.len)
        .map(|s| {
            format!(
                " (the DHCP server says {s}; NetBox's prefix {} wins)",
                prefix.prefix
            )
        })
        .unwrap_or_default();

    let holder = ip_records(client, event.ip, prefix.vrf)
        .await
        .map_err(fail("looking up the address"))?;
    let holder = holder.iter().find(|r| r.is_on(&iface)).or(holder.first());
    let on_iface = if holder.is_some() {
        Vec::new()
    } else {
        client
            .list(
                "ipam/ip-addresses/",
                &[("interface_id", iface.id.to_string())],
            )
            .await
            .map_err(fail("listing the interface's addresses"))?
            .iter()
            .filter_map(IpRecord::from_api)
            .collect()
    };

    let ip_plan = plan_held_ip(event.ip, &prefix, &iface, holder, &on_iface);
    let mut changes = Vec::new();
    let known_id = match &ip_plan {
        IpPlan::Conflict { holder } => {
            let text = format!(
                "racklift: {} conflicts: NetBox holds the address on {holder}. Nothing was changed: free or move the address in NetBox, or fix the DHCP server's reservation.",
                lease_subject(event, &iface)
            );
            client
                .journal_once(device.id, JournalKind::Warning, &text)
                .await
                .map_err(fail("journaling the conflict"))?;
            return Ok(LeaseOutcome::Conflict(text));
        }
        IpPlan::Keep { id } => Some(*id),
        IpPlan::Create { .. } => {
            changes.push(format!(
                "recorded {}/{} on {}",
                event.ip, prefix.len, iface.name
            ));
            None
        }
        IpPlan::Update { id, note, .. } => {
            changes.push(note.clone());
            Some(*id)
        }
    };
    let planned = plan_device(&device, known_id);
    if changes.is_empty() && planned.is_none() {
        return Ok(LeaseOutcome::Unchanged);
    }
    if planned
        .as_ref()
        .is_some_and(|u| u.oob_ip != device.oob_ip || known_id.is_none())
    {
        changes.push(format!("OOB IP set to {}/{}", event.ip, prefix.len));
    }
    let text = match planned.as_ref().and_then(|u| u.lifecycle) {
        Some(to) => format!(
            "racklift: racked → {to}: {about}: {}{mismatch}",
            changes.join("; ")
        ),
        None => format!("racklift: {about}: {}{mismatch}", changes.join("; ")),
    };
    // Journal first, then write: if a write fails and the event is retried, NetBox may show
    // the entry twice, but never a change without its entry.
    client
        .journal(device.id, JournalKind::Info, &text)
        .await
        .map_err(fail("journaling"))?;
    let ip_id = match ip_plan {
        IpPlan::Keep { id } => id,
        IpPlan::Update { id, body, .. } => {
            client
                .patch(&format!("ipam/ip-addresses/{id}/"), &body)
                .await
                .map_err(fail("updating the address"))?;
            id
        }
        IpPlan::Create { body } => {
            let created = client
                .post("ipam/ip-addresses/", &body)
                .await
                .map_err(fail("creating the address"))?;
            created.get("id").and_then(Value::as_u64).ok_or_else(|| {
                fail("creating the address")(NetBoxError::Unexpected {
                    method: "POST",
                    path: "ipam/ip-addresses/".into(),
                    detail: "no id in the answer".into(),
                })
            })?
        }
        IpPlan::Conflict { .. } => unreachable!("returned above"),
    };
    for attempt in 0..=MAX_CHANGED_RETRIES {
        let Some(update) = plan_device(&device, Some(ip_id)) else {
            break;
        };
        match client.update_device(&device, &update).await {
            Ok(_) => break,
            // An edit meanwhile (an operator, racklift serve): decide again on the fresh device.
            Err(NetBoxError::Changed { .. }) if attempt < MAX_CHANGED_RETRIES => {
                let Some(fresh) = client
                    .device(device.id)
                    .await
                    .map_err(fail("reading the device again"))?
                else {
                    return Ok(LeaseOutcome::Unknown(
                        "the device is gone from NetBox".into(),
                    ));
                };
                device = fresh;
            }
            Err(e) => return Err(fail("updating the device")(e)),
        }
    }
    Ok(LeaseOutcome::Applied(text))
}

async fn release(
    client: &NetBoxClient,
    event: &LeaseEvent,
    iface: &BmcInterface,
    device: &Device,
    about: &str,
) -> Result<LeaseOutcome, NetBoxError> {
    let records: Vec<IpRecord> = client
        .list(
            "ipam/ip-addresses/",
            &[("interface_id", iface.id.to_string())],
        )
        .await?
        .iter()
        .filter_map(IpRecord::from_api)
        .filter(|r| r.host == event.ip)
        .collect();
    let Some(record) = records.first() else {
        let text = format!(
            "racklift: {about}: NetBox records no address {} on {}; nothing to mark",
            event.ip, iface.name
        );
        client
            .journal_once(device.id, JournalKind::Warning, &text)
            .await?;
        return Ok(LeaseOutcome::Applied(text));
    };
    if record.status != "dhcp" {
        return Ok(LeaseOutcome::Unchanged);
    }
    client
        .patch(
            &format!("ipam/ip-addresses/{}/", record.id),
            &json!({"status": "deprecated"}),
        )
        .await?;
    let text = format!(
        "racklift: {about}: {}/{} marked deprecated until the lease is taken again; the OOB IP is kept",
        record.host, record.len
    );
    client.journal(device.id, JournalKind::Info, &text).await?;
    Ok(LeaseOutcome::Applied(text))
}

/// The management-only interface with this MAC, or why there is none.
async fn find_bmc_interface(
    client: &NetBoxClient,
    event: &LeaseEvent,
) -> Result<Result<BmcInterface, String>, NetBoxError> {
    let found = client
        .list(
            "dcim/interfaces/",
            &[
                ("mac_address", event.mac.to_string()),
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
        [] => Err(format!(
            "no device interface in NetBox has MAC {}",
            event.mac
        )),
        [(iface, true, _)] => Ok(iface.clone()),
        [(iface, false, device)] => Err(format!(
            "MAC {} is on {device} {}, which is not a management-only (BMC) interface",
            event.mac, iface.name
        )),
        many => Err(format!(
            "MAC {} is on {} interfaces in NetBox; racklift needs exactly one",
            event.mac,
            many.len()
        )),
    })
}

/// Records of `ip` (any mask) in the VRF.
async fn ip_records(
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let update = plan_device(&device("racked", None), Some(11)).expect("a write");
        assert_eq!(update.lifecycle, Some(Lifecycle::Discovered));
        assert_eq!(update.oob_ip, Some(11));
        assert_eq!(update.to_json()["status"], "staged");
        let further = plan_device(&device("provisioning", Some(10)), Some(11)).expect("a write");
        assert_eq!((further.lifecycle, further.oob_ip), (None, Some(11)));
        assert!(
            further.to_json()["custom_fields"]
                .get("lifecycle")
                .is_none()
        );
        assert_eq!(plan_device(&device("ready", Some(11)), Some(11)), None);
        assert!(
            plan_device(&device("ready", Some(11)), None).is_some(),
            "a new record"
        );
    }
}
