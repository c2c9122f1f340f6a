//! Discovery: one DHCP lease event made true in NetBox. The lease's MAC leads to a BMC
//! (management-only) interface and its device; the address is recorded on that interface
//! (status `dhcp`, prefix length from the NetBox prefix that contains it), becomes the device's
//! OOB IP, and a `racked` device moves to `discovered` (through the one writer,
//! `netbox::transition`), which starts the rest of the bring-up.
//!
//! Releases and expiries keep the address record and the OOB IP (the BMC normally comes back
//! for the same address, and monitoring needs it) but mark the record `deprecated` until the
//! lease is taken again. Reading is `netbox::ipam`, deciding `plan` (pure), writing here.

mod plan;

use std::net::Ipv4Addr;

use serde_json::{Value, json};

pub use plan::{DeviceWrite, IpPlan, choose_prefix, plan_device, plan_held_ip};

use plan::{describe, lease_subject, refusal};

use crate::config::Scope;
use crate::dhcp::{LeaseEvent, Subnet};
use crate::lifecycle::{JournalKind, Lifecycle, Transition};
use crate::netbox::ipam::{self, BmcInterface, IpRecord};
use crate::netbox::transition::{self, Carry};
use crate::netbox::{Device, DeviceStore, DeviceUpdate, NetBoxClient, NetBoxError};

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
    let mac = event.mac.to_string();
    let view = ipam::lease_view(client, &mac, event.ip)
        .await
        .map_err(fail(
            "reading the MAC's interface, the prefixes and the address records",
        ))?;
    let carrier = match view.bmc(&mac) {
        Ok(carrier) => carrier,
        Err(reason) => return Ok(LeaseOutcome::Unknown(reason)),
    };
    let iface = carrier.iface.clone();
    let Some(device) = carrier.device.clone() else {
        return Ok(LeaseOutcome::Unknown(format!(
            "NetBox's answer for the device of interface {} is not a device racklift can read",
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
        return release(client, event, &iface, &carrier.addresses, &device, &about)
            .await
            .map_err(fail("recording the release"));
    }

    let prefix = match choose_prefix(&view.prefixes, device.site_id) {
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

    let in_vrf: Vec<&IpRecord> = view
        .records
        .iter()
        .filter(|r| r.host == event.ip && r.vrf == prefix.vrf)
        .collect();
    let holder = in_vrf
        .iter()
        .find(|r| r.is_on(&iface))
        .or(in_vrf.first())
        .copied();
    let on_iface = &carrier.addresses;

    let ip_plan = plan_held_ip(event.ip, &prefix, &iface, holder, on_iface);
    // The address record's write, with what it changes for the journal; a conflict writes
    // nothing but its warning.
    let (ip_write, known_id, mut changes) = match ip_plan {
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
        IpPlan::Keep { id } => (IpWrite::None, Some(id), Vec::new()),
        IpPlan::Create { body } => (
            IpWrite::Create(body),
            None,
            vec![format!(
                "recorded {}/{} on {}",
                event.ip, prefix.len, iface.name
            )],
        ),
        IpPlan::Update { id, body, note } => (IpWrite::Update(id, body), Some(id), vec![note]),
    };
    let device_write = plan_device(&device, known_id);
    if changes.is_empty() && device_write == DeviceWrite::Nothing {
        return Ok(LeaseOutcome::Unchanged);
    }
    if device.oob_ip != known_id || known_id.is_none() {
        changes.push(format!("OOB IP set to {}/{}", event.ip, prefix.len));
    }
    let message = format!("{about}: {}{mismatch}", changes.join("; "));
    let discover = Transition::to(Lifecycle::Racked, Lifecycle::Discovered, message.clone());
    // Journal first, then write: if a write fails and the event is retried, NetBox may show
    // the entry twice, but never a change without its entry.
    let (journaled, text) = if device_write == DeviceWrite::Discover {
        let journaled = transition::journal(client, &device, &discover)
            .await
            .map_err(fail("journaling"))?;
        (Some(journaled), discover.journal_text())
    } else {
        let text = format!("racklift: {message}");
        client
            .journal(device.id, JournalKind::Info, &text)
            .await
            .map_err(fail("journaling"))?;
        (None, text)
    };
    let ip_id = match ip_write {
        IpWrite::None => known_id,
        IpWrite::Update(id, body) => {
            client
                .patch(&format!("ipam/ip-addresses/{id}/"), &body)
                .await
                .map_err(fail("updating the address"))?;
            Some(id)
        }
        IpWrite::Create(body) => {
            let created = client
                .post("ipam/ip-addresses/", &body)
                .await
                .map_err(fail("creating the address"))?;
            Some(created.get("id").and_then(Value::as_u64).ok_or_else(|| {
                fail("creating the address")(NetBoxError::Unexpected {
                    method: "POST",
                    path: "ipam/ip-addresses/".into(),
                    detail: "no id in the answer".into(),
                })
            })?)
        }
    };
    // A 412 (an edit meanwhile) goes back to the drain, which retries the event with backoff
    // and decides again on the device as it is then.
    match journaled {
        Some(journaled) => {
            journaled
                .commit(
                    client,
                    Carry {
                        oob_ip: ip_id,
                        ..Carry::default()
                    },
                )
                .await
                .map_err(fail("moving the device to discovered"))?;
        }
        None => {
            if let Some(ip) = ip_id.filter(|ip| device.oob_ip != Some(*ip)) {
                client
                    .update_device(&device, &DeviceUpdate::oob_ip(ip))
                    .await
                    .map_err(fail("setting the OOB IP"))?;
            }
        }
    }
    Ok(LeaseOutcome::Applied(text))
}

/// The address record's write for a held lease.
enum IpWrite {
    None,
    Create(Value),
    Update(u64, Value),
}

async fn release(
    client: &NetBoxClient,
    event: &LeaseEvent,
    iface: &BmcInterface,
    on_iface: &[IpRecord],
    device: &Device,
    about: &str,
) -> Result<LeaseOutcome, NetBoxError> {
    let records: Vec<&IpRecord> = on_iface.iter().filter(|r| r.host == event.ip).collect();
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
    let text = format!(
        "racklift: {about}: {}/{} marked deprecated until the lease is taken again; the OOB IP is kept",
        record.host, record.len
    );
    // Journal first, as every write racklift makes.
    client.journal(device.id, JournalKind::Info, &text).await?;
    client
        .patch(
            &format!("ipam/ip-addresses/{}/", record.id),
            &json!({"status": "deprecated"}),
        )
        .await?;
    Ok(LeaseOutcome::Applied(text))
}
