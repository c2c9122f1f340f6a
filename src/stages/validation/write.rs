//! Writing: the [`Plan`] of a matching report made true in NetBox (interfaces, MAC addresses,
//! cables), and the verdict recorded on the device.

use chrono::Utc;
use serde_json::{Value, json};

use super::check::{IfacePlan, MacPlan, Plan, Target};
use crate::lifecycle::{JournalKind, Lifecycle, Stamp};
use crate::netbox::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxClient, NetBoxError};

/// Carries out `plan` interface by interface (created, MAC made primary, cabled); returns what
/// was done, for the journal. A report applied halfway before (the apply was cut off) leaves
/// objects the check found and planned around, so running this again creates nothing twice.
pub async fn make_netbox_match(
    client: &NetBoxClient,
    device: DeviceId,
    plan: &Plan,
) -> Result<Vec<String>, NetBoxError> {
    let mut made = Vec::new();
    for IfacePlan {
        name,
        target,
        mac,
        cable,
    } in &plan.interfaces
    {
        let iface = match target {
            Target::Existing(id) => *id,
            Target::Create { kind } => {
                let created = client
                    .post(
                        "dcim/interfaces/",
                        &json!({"device": device.0, "name": name, "type": kind}),
                    )
                    .await?;
                made.push(format!("created interface {name}"));
                id_of(&created, "dcim/interfaces/")?
            }
        };
        if let Some(MacPlan { mac, existing }) = mac {
            let object = match existing {
                Some(id) => *id,
                None => id_of(
                    &client
                        .post(
                            "dcim/mac-addresses/",
                            &json!({"mac_address": mac, "assigned_object_type": "dcim.interface", "assigned_object_id": iface}),
                        )
                        .await?,
                    "dcim/mac-addresses/",
                )?,
            };
            client
                .patch(
                    &format!("dcim/interfaces/{iface}/"),
                    &json!({"primary_mac_address": object}),
                )
                .await?;
            made.push(format!("MAC {mac} on {name}"));
        }
        if let Some(port) = cable {
            client
                .post(
                    "dcim/cables/",
                    &json!({
                        "a_terminations": [{"object_type": "dcim.interface", "object_id": iface}],
                        "b_terminations": [{"object_type": "dcim.interface", "object_id": port}],
                        "status": "connected",
                    }),
                )
                .await?;
            made.push(format!("cabled {name}"));
        }
    }
    Ok(made)
}

/// The id of an object NetBox just created.
fn id_of(created: &Value, path: &str) -> Result<u64, NetBoxError> {
    created["id"]
        .as_u64()
        .ok_or_else(|| NetBoxError::Unexpected {
            method: "POST",
            path: path.to_owned(),
            detail: "the created object has no id".into(),
        })
}

/// Journal first, then the conditional state write (as every transition racklift makes). The
/// device is read again for its current ETag: creating its interfaces and cables has changed
/// it, and the reconciler may have stamped it meanwhile. Only a device still `validating` is
/// moved.
pub async fn finish(
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
    // Not a retry of a failure: a 412 means the reconciler re-stamped the device between the
    // read and the write; read it again and decide again.
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
            other => return other.map(drop),
        }
    }
}
