//! `racklift netbox apply`: makes NetBox match `netbox/custom_fields.yaml` and
//! `netbox/webhooks/*.yaml`. Objects are matched by name; what is missing is created, fields
//! that differ are updated, and nothing else in NetBox is touched.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{NetBoxClient, NetBoxError};
use crate::config::{Scope, Secret};

const BUILTIN_CUSTOM_FIELDS: &str = include_str!("../../netbox/custom_fields.yaml");
const BUILTIN_WEBHOOKS: &[(&str, &str)] = &[(
    "racklift.yaml",
    include_str!("../../netbox/webhooks/racklift.yaml"),
)];

/// Fields whose value is never printed.
const SECRET_FIELDS: &[&str] = &["secret"];

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid NetBox definition file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{0}")]
    Definition(String),
    #[error(
        "webhook.url is not configured: `netbox apply` needs the URL NetBox should call racklift at"
    )]
    NoWebhookUrl,
    #[error("{doing}")]
    NetBox {
        doing: String,
        #[source]
        source: NetBoxError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomFieldsFile {
    #[serde(default)]
    choice_sets: Vec<Map<String, Value>>,
    #[serde(default)]
    custom_fields: Vec<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    webhook: Map<String, Value>,
    event_rule: Map<String, Value>,
}

/// racklift's NetBox objects, as the repository defines them.
#[derive(Debug)]
pub struct Definitions {
    custom_fields: CustomFieldsFile,
    webhooks: Vec<WebhookFile>,
}

impl Definitions {
    /// The definitions compiled into this binary (the repository's `netbox/`).
    pub fn builtin() -> Result<Self, ApplyError> {
        Ok(Self {
            custom_fields: parse_builtin("custom_fields.yaml", BUILTIN_CUSTOM_FIELDS)?,
            webhooks: BUILTIN_WEBHOOKS
                .iter()
                .map(|(name, text)| parse_builtin(&format!("webhooks/{name}"), text))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Reads `dir/custom_fields.yaml` and every `dir/webhooks/*.yaml`.
    pub fn from_dir(dir: &Path) -> Result<Self, ApplyError> {
        let custom_fields = read_yaml(&dir.join("custom_fields.yaml"))?;
        let hooks_dir = dir.join("webhooks");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&hooks_dir)
            .map_err(|source| ApplyError::Read {
                path: hooks_dir.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        paths.sort();
        let webhooks = paths
            .iter()
            .map(|p| read_yaml(p))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            custom_fields,
            webhooks,
        })
    }
}

fn read_yaml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ApplyError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApplyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(path, &text)
}

fn parse_yaml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, ApplyError> {
    serde_yaml::from_str(text).map_err(|source| ApplyError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn parse_builtin<T: for<'de> Deserialize<'de>>(name: &str, text: &str) -> Result<T, ApplyError> {
    parse_yaml(&Path::new("netbox").join(name), text)
}

/// The values the placeholders in the webhook files stand for.
#[derive(Debug)]
pub struct Vars<'a> {
    pub instance: &'a str,
    pub webhook_url: Option<&'a url::Url>,
    pub webhook_secret: &'a Secret,
    pub scope: &'a Scope,
}

impl Vars<'_> {
    fn fill(&self, value: &mut Value) -> Result<(), ApplyError> {
        match value {
            Value::String(text) if text.contains('{') => {
                let mut filled = text.replace("{instance}", self.instance);
                if filled.contains("{webhook_url}") {
                    let url = self.webhook_url.ok_or(ApplyError::NoWebhookUrl)?;
                    filled = filled.replace("{webhook_url}", url.as_str());
                }
                filled = filled.replace("{webhook_secret}", self.webhook_secret.expose());
                *text = filled;
            }
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.fill(v))?,
            Value::Object(map) => map.values_mut().try_for_each(|v| self.fill(v))?,
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ChoiceSet,
    CustomField,
    Webhook,
    EventRule,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Self::ChoiceSet => "extras/custom-field-choice-sets/",
            Self::CustomField => "extras/custom-fields/",
            Self::Webhook => "extras/webhooks/",
            Self::EventRule => "extras/event-rules/",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ChoiceSet => "choice set",
            Self::CustomField => "custom field",
            Self::Webhook => "webhook",
            Self::EventRule => "event rule",
        })
    }
}

/// One field that differs. A secret's values are never kept.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: String,
    /// `None` for secrets.
    pub values: Option<(Value, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create {
        kind: String,
        name: String,
    },
    Update {
        kind: String,
        name: String,
        fields: Vec<FieldChange>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create { kind, name } => write!(f, "create {kind} {name:?}"),
            Self::Update { kind, name, fields } => {
                write!(f, "update {kind} {name:?}:")?;
                for change in fields {
                    match &change.values {
                        None => write!(f, "\n    {}: differs", change.field)?,
                        Some((before, after)) => {
                            write!(f, "\n    {}: {before} → {after}", change.field)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// What `apply` found and did (or, with `check`, would do).
#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    pub unchanged: usize,
    /// What the operator should know about a change (printed after the changes).
    pub notes: Vec<String>,
}

/// The note for an installation whose `lifecycle` field had a default (racklift before the
/// default was dropped): NetBox gave it to every device, so every device was enrolled.
const OLD_DEFAULT_NOTE: &str = "the lifecycle field no longer has a default: devices created from now on are left alone until someone enrols them. \
Removing the default changed no device: devices the old default enrolled still have their lifecycle. \
In NetBox, filter devices by Lifecycle and clear it (bulk edit) on every device racklift must not manage.";

struct Applier<'a> {
    client: &'a NetBoxClient,
    check: bool,
    report: Report,
}

/// Makes NetBox match `definitions`. With `check`, only reports the differences.
pub async fn apply(
    client: &NetBoxClient,
    definitions: &Definitions,
    vars: &Vars<'_>,
    check: bool,
) -> Result<Report, ApplyError> {
    client.status().await.map_err(|source| ApplyError::NetBox {
        doing: format!("cannot use NetBox at {}", client.base_url()),
        source,
    })?;
    let mut applier = Applier {
        client,
        check,
        report: Report::default(),
    };
    for set in &definitions.custom_fields.choice_sets {
        applier.ensure(Kind::ChoiceSet, set.clone()).await?;
    }
    for field in &definitions.custom_fields.custom_fields {
        let mut field = field.clone();
        if let Some(Value::String(set)) = field.get("choice_set") {
            let by_name = json!({ "name": set });
            field.insert("choice_set".into(), by_name);
        }
        applier.ensure(Kind::CustomField, field).await?;
    }
    let dropped_default = applier.report.changes.iter().any(|change| {
        matches!(change, Change::Update { kind, name, fields }
            if kind == &Kind::CustomField.to_string() && name == "lifecycle"
                && fields.iter().any(|f| f.field == "default"
                    && f.values.as_ref().is_some_and(|(_, want)| want.is_null())))
    });
    if dropped_default {
        applier.report.notes.push(OLD_DEFAULT_NOTE.to_owned());
    }
    for file in &definitions.webhooks {
        let mut webhook = Value::Object(file.webhook.clone());
        vars.fill(&mut webhook)?;
        let Value::Object(webhook) = webhook else {
            unreachable!("filled an object")
        };
        let webhook_name = name_of(Kind::Webhook, &webhook)?.to_owned();
        let webhook_id = applier.ensure(Kind::Webhook, webhook).await?;

        let mut rule = Value::Object(file.event_rule.clone());
        vars.fill(&mut rule)?;
        let Value::Object(mut rule) = rule else {
            unreachable!("filled an object")
        };
        let target = rule.remove("action_object");
        if target.as_ref().and_then(Value::as_str) != Some(webhook_name.as_str()) {
            return Err(ApplyError::Definition(format!(
                "event rule {:?}: action_object must name the webhook in the same file ({webhook_name:?})",
                name_of(Kind::EventRule, &rule)?
            )));
        }
        // In --check mode a webhook still to be created has no id yet.
        rule.insert(
            "action_object_id".into(),
            webhook_id.map_or(Value::Null, Value::from),
        );
        scope_rule(&mut rule, vars.scope)?;
        applier.ensure(Kind::EventRule, rule).await?;
    }
    Ok(applier.report)
}

fn name_of(kind: Kind, object: &Map<String, Value>) -> Result<&str, ApplyError> {
    object
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApplyError::Definition(format!("a {kind} has no name")))
}

/// Adds "and the device is in this racklift's scope" to the rule's conditions: one of the
/// sites, one of the roles, one of the tags (each only when set). racklift checks the scope on
/// every device it reads as well; this only spares NetBox webhooks racklift would drop.
fn scope_rule(rule: &mut Map<String, Value>, scope: &Scope) -> Result<(), ApplyError> {
    let any_of = |values: &[String], condition: &dyn Fn(&String) -> Value| match values {
        [] => None,
        [one] => Some(condition(one)),
        many => Some(json!({ "or": many.iter().map(condition).collect::<Vec<_>>() })),
    };
    let added: Vec<Value> = [
        any_of(
            &scope.sites,
            &|slug| json!({ "attr": "site.slug", "value": slug }),
        ),
        any_of(
            &scope.roles,
            &|slug| json!({ "attr": "role.slug", "value": slug }),
        ),
        // `tags` is a list in the webhook's data: NetBox reads `tags.slug` as the list of
        // slugs, and `contains` asks whether the slug is among them.
        any_of(
            &scope.tags,
            &|slug| json!({ "attr": "tags.slug", "op": "contains", "value": slug }),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if added.is_empty() {
        return Ok(());
    }
    match rule.get_mut("conditions").and_then(|c| c.get_mut("and")) {
        Some(Value::Array(all)) => {
            all.extend(added);
            Ok(())
        }
        _ => Err(ApplyError::Definition(
            "an event rule scoped to sites, roles or tags needs its conditions as {and: [...]}"
                .into(),
        )),
    }
}

impl Applier<'_> {
    /// Creates or updates one object; returns its id (none when `check` skipped a create).
    async fn ensure(
        &mut self,
        kind: Kind,
        desired: Map<String, Value>,
    ) -> Result<Option<u64>, ApplyError> {
        let name = name_of(kind, &desired)?.to_owned();
        let context = |doing: String| move |source| ApplyError::NetBox { doing, source };
        let found = self
            .client
            .get(kind.endpoint(), &[("name", name.clone())])
            .await
            .map_err(context(format!("looking up {kind} {name:?}")))?;
        let existing = found
            .get("results")
            .and_then(Value::as_array)
            .and_then(|all| {
                all.iter()
                    .find(|o| o.get("name").and_then(Value::as_str) == Some(name.as_str()))
            });
        let Some(existing) = existing else {
            self.report.changes.push(Change::Create {
                kind: kind.to_string(),
                name: name.clone(),
            });
            if self.check {
                return Ok(None);
            }
            let created = self
                .client
                .post(kind.endpoint(), &Value::Object(desired))
                .await
                .map_err(context(format!("creating {kind} {name:?}")))?;
            return Ok(created.get("id").and_then(Value::as_u64));
        };
        let id = existing
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| ApplyError::Definition(format!("NetBox's {kind} {name:?} has no id")))?;
        let differing: Map<String, Value> = desired
            .into_iter()
            .filter(|(key, want)| !same(want, existing.get(key).unwrap_or(&Value::Null)))
            .collect();
        if differing.is_empty() {
            self.report.unchanged += 1;
            return Ok(Some(id));
        }
        let fields = differing
            .iter()
            .map(|(key, want)| FieldChange {
                field: key.clone(),
                values: (!SECRET_FIELDS.contains(&key.as_str())).then(|| {
                    (
                        existing.get(key).cloned().unwrap_or(Value::Null),
                        want.clone(),
                    )
                }),
            })
            .collect();
        self.report.changes.push(Change::Update {
            kind: kind.to_string(),
            name: name.clone(),
            fields,
        });
        if !self.check {
            self.client
                .patch(
                    &format!("{}{id}/", kind.endpoint()),
                    &Value::Object(differing),
                )
                .await
                .map_err(context(format!("updating {kind} {name:?}")))?;
        }
        Ok(Some(id))
    }
}

/// Whether NetBox's `actual` value already is the `desired` one written in the files. NetBox
/// answers choices as `{value, label}` and references as nested objects; the files name them.
fn same(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(want), Value::Object(have))
            if want.len() == 1 && want.contains_key("name") =>
        {
            have.get("name") == want.get("name")
        }
        (want, Value::Object(have)) if !want.is_object() && have.contains_key("value") => {
            same(want, &have["value"])
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| same(w, h))
        }
        (Value::Object(want), Value::Object(have)) => {
            want.len() == have.len()
                && want
                    .iter()
                    .all(|(k, w)| have.get(k).is_some_and(|h| same(w, h)))
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        (want, have) => want == have,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_and_references_compare_by_value_and_name() {
        assert!(same(
            &json!("select"),
            &json!({"value": "select", "label": "Selection"})
        ));
        assert!(!same(
            &json!("text"),
            &json!({"value": "select", "label": "Selection"})
        ));
        assert!(same(
            &json!({"name": "lifecycle_states"}),
            &json!({"id": 1, "name": "lifecycle_states", "choices_count": 9})
        ));
        assert!(same(
            &json!({"and": [{"attr": "custom_fields.lifecycle", "op": "changed"}]}),
            &json!({"and": [{"op": "changed", "attr": "custom_fields.lifecycle"}]})
        ));
        assert!(!same(
            &json!({"and": [{"attr": "custom_fields.lifecycle", "op": "changed"}]}),
            &json!({"and": [{"attr": "custom_fields.lifecycle", "op": "changed"}, {"attr": "site.slug", "value": "x"}]})
        ));
        assert!(same(&json!(10), &json!(10.0)));
    }

    #[test]
    fn a_secret_that_differs_is_shown_only_as_differs() {
        let change = Change::Update {
            kind: "webhook".into(),
            name: "racklift".into(),
            fields: vec![
                FieldChange {
                    field: "secret".into(),
                    values: None,
                },
                FieldChange {
                    field: "timeout".into(),
                    values: Some((json!(5), json!(10))),
                },
            ],
        };
        let shown = change.to_string();
        assert!(shown.contains("secret: differs"), "{shown}");
        assert!(shown.contains("timeout: 5 → 10"), "{shown}");
    }

    #[test]
    fn placeholders_are_filled_from_the_configuration() {
        let url: url::Url = "http://127.0.0.1:9/hooks/netbox".parse().expect("url");
        let secret = Secret::new("s3cret");
        let vars = Vars {
            instance: "dc1",
            webhook_url: Some(&url),
            webhook_secret: &secret,
            scope: &Scope::default(),
        };
        let defs = Definitions::builtin().expect("builtin definitions parse");
        let mut hook = Value::Object(defs.webhooks[0].webhook.clone());
        vars.fill(&mut hook).expect("filled");
        assert_eq!(hook["name"], "dc1");
        assert_eq!(hook["payload_url"], "http://127.0.0.1:9/hooks/netbox");
        assert_eq!(hook["secret"], "s3cret");
    }

    #[test]
    fn without_a_webhook_url_apply_says_so() {
        let secret = Secret::new("s");
        let vars = Vars {
            instance: "x",
            webhook_url: None,
            webhook_secret: &secret,
            scope: &Scope::default(),
        };
        let mut v = json!({"payload_url": "{webhook_url}"});
        assert!(matches!(vars.fill(&mut v), Err(ApplyError::NoWebhookUrl)));
    }

    #[test]
    fn the_scope_adds_a_condition_per_filter() {
        let rule = || -> Map<String, Value> {
            serde_json::from_value(json!({
                "name": "r", "conditions": {"and": [{"attr": "custom_fields.lifecycle", "op": "changed"}]}
            }))
            .expect("map")
        };
        let mut unscoped = rule();
        scope_rule(&mut unscoped, &Scope::default()).expect("scoped");
        assert_eq!(unscoped, rule());
        let mut scoped = rule();
        let scope = Scope {
            sites: vec!["dc1".into()],
            roles: vec!["server".into(), "gpu".into()],
            tags: vec!["racklift".into()],
            ..Scope::default()
        };
        scope_rule(&mut scoped, &scope).expect("scoped");
        let all = &scoped["conditions"]["and"];
        assert_eq!(all[1], json!({"attr": "site.slug", "value": "dc1"}));
        assert_eq!(
            all[2]["or"][1],
            json!({"attr": "role.slug", "value": "gpu"})
        );
        assert_eq!(
            all[3],
            json!({"attr": "tags.slug", "op": "contains", "value": "racklift"})
        );
    }

    #[test]
    fn the_repository_files_read_from_disk_match_the_builtin_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netbox");
        let from_disk = Definitions::from_dir(&dir).expect("netbox/ parses");
        let builtin = Definitions::builtin().expect("builtin parses");
        assert_eq!(
            from_disk.custom_fields.custom_fields,
            builtin.custom_fields.custom_fields
        );
        assert_eq!(from_disk.webhooks.len(), builtin.webhooks.len());
    }
}
