//! Test support shared by the unit tests: proptest strategies for the outside input racklift
//! parses (JSON from NetBox, BMCs and the validation image).

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value: scalars of every kind (huge and negative numbers, odd strings) nested in
/// arrays and objects a few levels deep.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with these keys (each maybe missing), each holding a value from `value` or
/// anything at all: the shape racklift expects, with every field wrong in every way.
pub fn object_with(
    keys: &'static [&'static str],
    value: impl Strategy<Value = Value> + Clone,
) -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::option::of(prop_oneof![value, any_json()]), keys.len()).prop_map(
        move |values| {
            Value::Object(
                keys.iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                    .collect(),
            )
        },
    )
}
