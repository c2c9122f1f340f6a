//! Writing: the [`Plan`] of a matching report made true in NetBox (interfaces, MAC addresses,
//! cables). The verdict goes through the one writer (`netbox::transition`).

use serde_json::{Value, json};

use super::check::{IfacePlan, MacPlan, Plan, Target};
use crate::netbox::{DeviceId, NetBoxClient, NetBoxError};

/// Carries out `plan` interface by interface (created, MAC made primary, cabled; the journal
/// names them from [`Plan::changes`] before). A report applied halfway before (the apply was
/// cut off) leaves objects the check found and planned around, so running this again creates
/// nothing twice.
pub async fn make_netbox_match(
    client: &NetBoxClient,
    device: DeviceId,
    plan: &Plan,
) -> Result<(), NetBoxError> {
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
        }
    }
    Ok(())
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
