//! Writing: the [`Plan`] of a matching report made true in NetBox (interfaces, MAC addresses,
//! cables), in at most three requests whatever the number of NICs: NetBox's list endpoints take
//! a JSON list and create (POST) or update (PATCH) every object in it in one transaction, all or
//! none. The verdict goes through the one writer (`netbox::transition`).
//!
//! The order holds within the requests: an interface is created with its MAC (NetBox's
//! `mac_address` field: the MAC object is created on the interface, then made its primary MAC,
//! in one transaction), an existing interface's MAC is made primary (the object a report applied
//! halfway left is reused, never created again), and only then are the cables created, to
//! interfaces that exist.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::check::{IfacePlan, MacPlan, Plan, Target};
use crate::netbox::{DeviceId, NetBoxClient, NetBoxError};

/// The plan as NetBox's bulk requests, in the order they are sent. Pure: built from the plan
/// alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batches {
    /// `POST dcim/interfaces/`: the interfaces to create, each with its primary MAC.
    pub create: Vec<Value>,
    /// `PATCH dcim/interfaces/`: existing interfaces made to carry their primary MAC.
    pub primary: Vec<Value>,
    /// `POST dcim/cables/`: the local interface and the switch port of each cable.
    pub cables: Vec<(Local, u64)>,
}

/// A cable's local end: an interface NetBox has, or one the first request creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Existing(u64),
    Created(String),
}

/// Groups `plan` by request. Each interface appears once in the plan, so a request never names
/// an object twice (NetBox refuses a bulk PATCH that does).
pub fn batches(device: DeviceId, plan: &Plan) -> Batches {
    let mut batches = Batches::default();
    for IfacePlan {
        name,
        target,
        mac,
        cable,
    } in &plan.interfaces
    {
        let local = match target {
            Target::Existing(id) => {
                match mac {
                    Some(MacPlan {
                        existing: Some(object),
                        ..
                    }) => batches
                        .primary
                        .push(json!({"id": id, "primary_mac_address": object})),
                    Some(MacPlan {
                        mac,
                        existing: None,
                    }) => batches.primary.push(json!({"id": id, "mac_address": mac})),
                    None => {}
                }
                Local::Existing(*id)
            }
            Target::Create { kind } => {
                let mut new = json!({"device": device.0, "name": name, "type": kind});
                if let Some(MacPlan { mac, .. }) = mac {
                    new["mac_address"] = json!(mac);
                }
                batches.create.push(new);
                Local::Created(name.clone())
            }
        };
        if let Some(port) = cable {
            batches.cables.push((local, *port));
        }
    }
    batches
}

/// The cables' bodies, once `created` (name → id) holds the interfaces the first request made;
/// the name of a created interface missing from it is the error.
pub fn cable_bodies(
    cables: &[(Local, u64)],
    created: &BTreeMap<String, u64>,
) -> Result<Vec<Value>, String> {
    cables
        .iter()
        .map(|(local, port)| {
            let iface = match local {
                Local::Existing(id) => *id,
                Local::Created(name) => *created.get(name).ok_or_else(|| name.clone())?,
            };
            Ok(json!({
                "a_terminations": [{"object_type": "dcim.interface", "object_id": iface}],
                "b_terminations": [{"object_type": "dcim.interface", "object_id": port}],
                "status": "connected",
            }))
        })
        .collect()
}

/// Carries out `plan` (the journal names its changes from [`Plan::changes`] before). A report
/// applied halfway before (the apply was cut off between two requests) leaves objects the check
/// found and planned around, so running this again creates nothing twice.
pub async fn make_netbox_match(
    client: &NetBoxClient,
    device: DeviceId,
    plan: &Plan,
) -> Result<(), NetBoxError> {
    let Batches {
        create,
        primary,
        cables,
    } = batches(device, plan);
    let created = if create.is_empty() {
        BTreeMap::new()
    } else {
        ids_by_name(
            &client
                .post("dcim/interfaces/", &Value::Array(create))
                .await?,
        )?
    };
    if !primary.is_empty() {
        client
            .patch("dcim/interfaces/", &Value::Array(primary))
            .await?;
    }
    let cables = cable_bodies(&cables, &created).map_err(|name| NetBoxError::Unexpected {
        method: "POST",
        path: "dcim/interfaces/".into(),
        detail: format!("the answer does not list the interface {name} racklift created"),
    })?;
    if !cables.is_empty() {
        client.post("dcim/cables/", &Value::Array(cables)).await?;
    }
    Ok(())
}

/// The ids of the interfaces NetBox just created, by name.
fn ids_by_name(created: &Value) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let unexpected = |detail: &str| NetBoxError::Unexpected {
        method: "POST",
        path: "dcim/interfaces/".into(),
        detail: detail.into(),
    };
    created
        .as_array()
        .ok_or_else(|| unexpected("not a list of the created interfaces"))?
        .iter()
        .map(|i| match (i["name"].as_str(), i["id"].as_u64()) {
            (Some(name), Some(id)) => Ok((name.to_owned(), id)),
            _ => Err(unexpected("a created interface without a name or an id")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let entry = |name: &str, target, mac: Option<(&str, Option<u64>)>, cable| IfacePlan {
            name: name.into(),
            target,
            mac: mac.map(|(mac, existing)| MacPlan {
                mac: mac.into(),
                existing,
            }),
            cable,
        };
        Plan {
            interfaces: vec![
                // Left by a report applied halfway: its MAC object is made primary.
                entry(
                    "eth0",
                    Target::Existing(10),
                    Some(("02:00:00:00:01:00", Some(5))),
                    Some(99),
                ),
                entry(
                    "eth1",
                    Target::Existing(11),
                    Some(("02:00:00:00:01:01", None)),
                    None,
                ),
                entry(
                    "eth2",
                    Target::Create {
                        kind: "10gbase-t".into(),
                    },
                    Some(("02:00:00:00:01:02", None)),
                    Some(98),
                ),
                // Its MAC is primary already; only the cable is missing.
                entry("eth3", Target::Existing(13), None, Some(97)),
            ],
        }
    }

    #[test]
    fn a_plan_is_three_requests_whatever_its_size() {
        let b = batches(DeviceId(7), &plan());
        assert_eq!(
            b.create,
            [
                json!({"device": 7, "name": "eth2", "type": "10gbase-t", "mac_address": "02:00:00:00:01:02"})
            ]
        );
        assert_eq!(
            b.primary,
            [
                json!({"id": 10, "primary_mac_address": 5}),
                json!({"id": 11, "mac_address": "02:00:00:00:01:01"}),
            ]
        );
        assert_eq!(
            b.cables,
            [
                (Local::Existing(10), 99),
                (Local::Created("eth2".into()), 98),
                (Local::Existing(13), 97),
            ]
        );
        assert_eq!(batches(DeviceId(7), &Plan::default()), Batches::default());
    }

    #[test]
    fn cables_to_created_interfaces_take_the_ids_netbox_gave_them() {
        let b = batches(DeviceId(7), &plan());
        let created = BTreeMap::from([("eth2".to_owned(), 12)]);
        let ends: Vec<(Value, Value)> = cable_bodies(&b.cables, &created)
            .expect("every local end known")
            .iter()
            .map(|c| {
                (
                    c["a_terminations"][0]["object_id"].clone(),
                    c["b_terminations"][0]["object_id"].clone(),
                )
            })
            .collect();
        assert_eq!(
            ends,
            [
                (json!(10), json!(99)),
                (json!(12), json!(98)),
                (json!(13), json!(97))
            ]
        );
        assert_eq!(
            cable_bodies(&b.cables, &BTreeMap::new()),
            Err("eth2".to_owned())
        );
    }

    #[test]
    fn created_interfaces_are_found_by_name() {
        let answer = json!([{"id": 12, "name": "eth2"}, {"id": 14, "name": "eth4"}]);
        assert_eq!(
            ids_by_name(&answer).expect("ids"),
            BTreeMap::from([("eth2".to_owned(), 12), ("eth4".to_owned(), 14)])
        );
        assert!(ids_by_name(&json!({"id": 12})).is_err());
        assert!(ids_by_name(&json!([{"name": "eth2"}])).is_err());
    }
}
