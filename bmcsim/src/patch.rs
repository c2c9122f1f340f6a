//! PATCH semantics: validate the body against the resource's `@Redfish.AllowableValues`
//! annotations, then deep-merge it into the resource.

use serde_json::{Map, Value};

use crate::error::RedfishError;

/// What a ComputerSystem accepts for `Boot.BootSourceOverrideEnabled` when the capture lists no
/// allowable values for it (the enum of ComputerSystem.v1's BootSourceOverrideEnabled).
const OVERRIDE_ENABLED_DEFAULT: &[&str] = &["Once", "Continuous", "Disabled"];

/// Checks every property of `patch` that the current resource annotates with
/// `<name>@Redfish.AllowableValues`: the new value must be one of them. On a ComputerSystem,
/// `Boot/BootSourceOverrideEnabled` is checked against Once/Continuous/Disabled when unannotated.
/// Properties without an annotation are accepted as they are.
pub fn check_allowable(
    current: &Value,
    patch: &Value,
    is_system: bool,
) -> Result<(), RedfishError> {
    match (current.as_object(), patch.as_object()) {
        (Some(current), Some(patch)) => check_object(current, patch, "", is_system),
        _ => Ok(()),
    }
}

fn check_object(
    current: &Map<String, Value>,
    patch: &Map<String, Value>,
    prefix: &str,
    is_system: bool,
) -> Result<(), RedfishError> {
    for (key, value) in patch {
        if key.contains('@') {
            continue;
        }
        let property = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}/{key}")
        };
        if let (Value::Object(sub_patch), Some(Value::Object(sub_current))) =
            (value, current.get(key))
        {
            check_object(sub_current, sub_patch, &property, is_system)?;
            continue;
        }
        let annotated = current
            .get(&format!("{key}@Redfish.AllowableValues"))
            .and_then(Value::as_array);
        let allowed = match annotated {
            Some(list) => list.contains(value),
            None if is_system && property == "Boot/BootSourceOverrideEnabled" => value
                .as_str()
                .is_some_and(|v| OVERRIDE_ENABLED_DEFAULT.contains(&v)),
            None => true,
        };
        if !allowed {
            return Err(RedfishError::value_not_in_list(&property, value));
        }
    }
    Ok(())
}

/// Deep-merges `patch` into `target`: objects merge key by key, anything else (arrays, scalars,
/// `null`) replaces. Unlike JSON Merge Patch, `null` is stored rather than deleting, because
/// Redfish clients PATCH `null` to clear a value (e.g. `BootNext`). OData control properties
/// (`@odata.id`, `@odata.etag`, …) are the service's, and are not taken from a client.
pub fn merge(target: &mut Value, patch: &Value) {
    let (Value::Object(target), Value::Object(patch)) = (target, patch) else {
        return;
    };
    for (key, value) in patch {
        if key.starts_with("@odata.") {
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, value),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::mockup;
    use serde_json::json;

    #[test]
    fn merge_is_deep_and_replaces_arrays() {
        let mut doc = json!({
            "@odata.id": "/x",
            "Boot": {"BootSourceOverrideTarget": "None", "BootOrder": ["a", "b"], "Mode": "UEFI"},
            "AssetTag": "old"
        });
        merge(
            &mut doc,
            &json!({
                "@odata.id": "/evil",
                "Boot": {"BootSourceOverrideTarget": "Pxe", "BootOrder": ["b"]},
                "AssetTag": null,
                "New": {"A": 1}
            }),
        );
        assert_eq!(
            doc,
            json!({
                "@odata.id": "/x",
                "Boot": {"BootSourceOverrideTarget": "Pxe", "BootOrder": ["b"], "Mode": "UEFI"},
                "AssetTag": null,
                "New": {"A": 1}
            })
        );
    }

    #[test]
    fn boot_values_are_checked_against_the_capture() {
        let tree = mockup("hpe-ilo5-dl360-gen10plus");
        let system = tree.value("/redfish/v1/Systems/1").expect("system");
        let ok = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
        assert_eq!(check_allowable(&system, &ok, true), Ok(()));

        let bad = json!({"Boot": {"BootSourceOverrideTarget": "Banana"}});
        let err = check_allowable(&system, &bad, true).expect_err("Banana is not a target");
        assert_eq!(err.status, 400);
        assert_eq!(err.message_id, "PropertyValueNotInList");
        assert_eq!(
            err.args,
            vec![
                "Banana".to_owned(),
                "Boot/BootSourceOverrideTarget".to_owned()
            ]
        );

        // iLO lists no allowable values for BootSourceOverrideEnabled: the schema enum applies.
        let bad = json!({"Boot": {"BootSourceOverrideEnabled": "Twice"}});
        let err = check_allowable(&system, &bad, true).expect_err("Twice is not an enabled value");
        assert!(err.message.contains("Twice"));
        assert!(err.message.contains("Boot/BootSourceOverrideEnabled"));
        // …but only on a ComputerSystem.
        assert_eq!(check_allowable(&system, &bad, false), Ok(()));
    }

    #[test]
    fn enabled_list_from_the_capture_wins_over_the_default() {
        // XCC lists only Once and Disabled: Continuous is refused.
        let tree = mockup("lenovo-xcc-sr670v2");
        let system = tree.value("/redfish/v1/Systems/1").expect("system");
        let continuous = json!({"Boot": {"BootSourceOverrideEnabled": "Continuous"}});
        assert!(check_allowable(&system, &continuous, true).is_err());
        let once = json!({"Boot": {"BootSourceOverrideEnabled": "Once"}});
        assert_eq!(check_allowable(&system, &once, true), Ok(()));
    }
}
