//! A captured Redfish tree ("tall" mockup: `<dir>/redfish/v1/<path>/index.json`), loaded once,
//! read-only, and shared by every BMC that uses it. Per-BMC changes live in `state::Overlay`.
//!
//! Each resource is rendered (ETag computed, body serialised) at load time, so serving an
//! unmodified resource costs a map lookup and a reference-counted clone, whatever the number of
//! BMCs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::etag::{Rendered, render};

pub const SERVICE_ROOT: &str = "/redfish/v1";
const DEFAULT_SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
const RESET_ACTION: &str = "#ComputerSystem.Reset";

#[derive(Debug)]
pub struct Tree {
    pub dir: PathBuf,
    /// Canonical path (`/redfish/v1/Systems/1`, no trailing slash) → resource.
    docs: HashMap<String, Rendered>,
    /// Lower-cased path → canonical path, for the case-insensitive fallback.
    lower: HashMap<String, String>,
    /// The session collection the service root links to.
    pub sessions_path: String,
    /// Canonical paths of the ComputerSystem resources, Systems collection order first.
    pub systems: Vec<String>,
    pub reset_actions: Vec<ResetAction>,
}

/// A system's `#ComputerSystem.Reset` action.
#[derive(Debug, Clone)]
pub struct ResetAction {
    /// The action's `target`, normalised.
    pub target: String,
    /// The ComputerSystem it acts on.
    pub system: String,
    /// The ResetType values the BMC accepts: the inline `ResetType@Redfish.AllowableValues`, else
    /// the `@Redfish.ActionInfo` resource's `Parameters[ResetType].AllowableValues`; `None` when
    /// the tree lists neither (then every standard ResetType is accepted).
    pub allowable: Option<Vec<String>>,
}

impl Tree {
    /// Loads every `index.json` under `<dir>/redfish`. `dir` may also be the `redfish/v1`
    /// directory itself.
    pub fn load(dir: &Path) -> anyhow::Result<Tree> {
        let dir = if dir.join("redfish/v1/index.json").is_file() {
            dir.to_path_buf()
        } else if dir.join("index.json").is_file() && dir.ends_with("redfish/v1") {
            dir.join("../..")
        } else {
            bail!("{}: no redfish/v1/index.json under it", dir.display());
        };
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let mut docs = HashMap::new();
        let mut values = HashMap::new();
        walk(&dir.join("redfish"), "/redfish", &mut values)?;
        // Every Redfish service answers /redfish with its versions; a few captures lack it.
        values
            .entry("/redfish".to_owned())
            .or_insert_with(|| json!({"v1": "/redfish/v1/"}));

        let mut keys: Vec<&String> = values.keys().collect();
        keys.sort();
        let mut lower = HashMap::new();
        for key in keys {
            // Sorted, so when two paths differ only in case the choice is stable.
            lower
                .entry(key.to_lowercase())
                .or_insert_with(|| key.clone());
        }
        let mut tree = Tree {
            dir,
            docs: HashMap::new(),
            lower,
            sessions_path: DEFAULT_SESSIONS.to_owned(),
            systems: Vec::new(),
            reset_actions: Vec::new(),
        };
        tree.sessions_path = tree.find_sessions_path(&values);
        tree.systems = find_systems(&values);
        tree.reset_actions = tree.find_reset_actions(&values);
        for (key, value) in values {
            docs.insert(key, render(value));
        }
        tree.docs = docs;
        Ok(tree)
    }

    /// The canonical path of `path` (normalised already): an exact match, else one that
    /// differs only in case (real iLO firmware treats paths case-insensitively, and the DL360
    /// capture links `/redfish/v1/systems/1/bios` while storing `Systems/1/bios`).
    pub fn resolve(&self, path: &str) -> Option<&str> {
        if let Some((key, _)) = self.docs.get_key_value(path) {
            return Some(key);
        }
        self.lower.get(&path.to_lowercase()).map(String::as_str)
    }

    /// The captured resource at a canonical path.
    pub fn rendered(&self, key: &str) -> Option<&Rendered> {
        self.docs.get(key)
    }

    /// The captured resource at a canonical path, as JSON (the base a PATCH merges into).
    pub fn value(&self, key: &str) -> Option<Value> {
        self.docs
            .get(key)
            .and_then(|r| serde_json::from_slice(&r.body).ok())
    }

    /// The reset action whose target is `path` (compared case-insensitively, like paths).
    pub fn reset_action(&self, path: &str) -> Option<&ResetAction> {
        self.reset_actions
            .iter()
            .find(|a| a.target.eq_ignore_ascii_case(path))
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    fn find_sessions_path(&self, values: &HashMap<String, Value>) -> String {
        let root = values.get(SERVICE_ROOT);
        let linked = root
            .and_then(|r| r.pointer("/Links/Sessions/@odata.id"))
            .and_then(Value::as_str)
            .or_else(|| {
                let service = root?.pointer("/SessionService/@odata.id")?.as_str()?;
                let key = self.resolve_in(values, &normalize_path(service))?;
                values.get(&key)?.pointer("/Sessions/@odata.id")?.as_str()
            });
        linked.map_or_else(|| DEFAULT_SESSIONS.to_owned(), normalize_path)
    }

    fn find_reset_actions(&self, values: &HashMap<String, Value>) -> Vec<ResetAction> {
        let mut actions = Vec::new();
        for system in &self.systems {
            let Some(action) = values
                .get(system)
                .and_then(|s| s.pointer("/Actions"))
                .and_then(|a| a.get(RESET_ACTION))
            else {
                continue;
            };
            let Some(target) = action.get("target").and_then(Value::as_str) else {
                continue;
            };
            let inline = action.get("ResetType@Redfish.AllowableValues");
            let from_info = || {
                let info = action.get("@Redfish.ActionInfo")?.as_str()?;
                let key = self.resolve_in(values, &normalize_path(info))?;
                values
                    .get(&key)?
                    .get("Parameters")?
                    .as_array()?
                    .iter()
                    .find(|p| p.get("Name").and_then(Value::as_str) == Some("ResetType"))?
                    .get("AllowableValues")
                    .cloned()
            };
            let allowable = inline
                .cloned()
                .or_else(from_info)
                .and_then(|v| string_list(&v));
            actions.push(ResetAction {
                target: normalize_path(target),
                system: system.clone(),
                allowable,
            });
        }
        actions
    }

    /// `resolve` during loading, before `docs` is filled.
    fn resolve_in(&self, values: &HashMap<String, Value>, path: &str) -> Option<String> {
        if values.contains_key(path) {
            return Some(path.to_owned());
        }
        self.lower.get(&path.to_lowercase()).cloned()
    }
}

/// Recursively collects `<dir>/**/index.json` as `prefix/<relative dir>` → JSON.
fn walk(dir: &Path, prefix: &str, out: &mut HashMap<String, Value>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "skipping a non-UTF-8 name");
                continue;
            };
            walk(&path, &format!("{prefix}/{name}"), out)?;
        } else if entry.file_name() == "index.json" {
            let text =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let value: Value = serde_json::from_slice(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            out.insert(prefix.to_owned(), value);
        }
    }
    Ok(())
}

/// The ComputerSystem resources: the Systems collection's members, in its order; when a capture
/// has no such collection, every resource typed `#ComputerSystem.*`. (Not always the latter:
/// XCC's `Systems/1/Pending` settings object is typed ComputerSystem too.)
fn find_systems(values: &HashMap<String, Value>) -> Vec<String> {
    let is_system = |key: &String| values.get(key).is_some_and(is_computer_system);
    let members: Vec<String> = values
        .get("/redfish/v1/Systems")
        .and_then(|c| c.get("Members"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
        .map(normalize_path)
        .filter(is_system)
        .collect();
    if !members.is_empty() {
        return members;
    }
    let mut systems: Vec<String> = values.keys().filter(|k| is_system(k)).cloned().collect();
    systems.sort();
    systems
}

pub fn is_computer_system(value: &Value) -> bool {
    value
        .get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("#ComputerSystem."))
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// A request path in the form the tree is keyed by: percent-decoded, no repeated or trailing
/// slashes, no fragment (`@odata.id`s such as `…/Power#/PowerSupplies/0` point into a resource).
pub fn normalize_path(raw: &str) -> String {
    let raw = raw.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(raw);
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A mockup shipped in tests/redfish-mockups/.
    pub fn mockup(name: &str) -> Tree {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/redfish-mockups")
            .join(name);
        Tree::load(&dir).expect("mockup loads")
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_path("/redfish/v1/"), "/redfish/v1");
        assert_eq!(normalize_path("/redfish/v1"), "/redfish/v1");
        assert_eq!(
            normalize_path("/redfish/v1/Systems/1/?$expand=."),
            "/redfish/v1/Systems/1"
        );
        assert_eq!(
            normalize_path("/redfish/v1/Chassis/1/Power#/PowerSupplies/0"),
            "/redfish/v1/Chassis/1/Power"
        );
        assert_eq!(normalize_path("//redfish//v1/a%3Ab"), "/redfish/v1/a:b");
        assert_eq!(normalize_path("/"), "/");
    }

    #[test]
    fn looks_up_exactly_then_case_insensitively() {
        let tree = mockup("hpe-ilo5-dl360-gen10plus");
        assert_eq!(tree.resolve("/redfish/v1"), Some("/redfish/v1"));
        assert_eq!(tree.resolve("/redfish"), Some("/redfish"));
        // The capture links the BIOS in lower case but stores it as Systems/1/bios.
        assert_eq!(
            tree.resolve(&normalize_path("/redfish/v1/systems/1/bios/settings/")),
            Some("/redfish/v1/Systems/1/bios/settings")
        );
        assert_eq!(
            tree.resolve("/redfish/v1/Systems/1"),
            Some("/redfish/v1/Systems/1")
        );
        assert_eq!(tree.resolve("/redfish/v1/Systems/2"), None);
        assert_eq!(tree.systems, vec!["/redfish/v1/Systems/1".to_owned()]);
        assert_eq!(tree.sessions_path, "/redfish/v1/SessionService/Sessions");
    }

    #[test]
    fn reset_allowable_values_inline_and_from_action_info() {
        let ilo = mockup("hpe-ilo5-dl360-gen10plus");
        let action = ilo
            .reset_action("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
            .expect("reset action");
        assert_eq!(action.system, "/redfish/v1/Systems/1");
        let allowed = action.allowable.as_deref().expect("inline list");
        assert!(allowed.contains(&"PushPowerButton".to_owned()));
        assert!(!allowed.contains(&"PowerCycle".to_owned()));

        // Supermicro lists ResetType only in Systems/1/ResetActionInfo.
        let smc = mockup("supermicro-sys821ge-tnhr");
        let action = smc
            .reset_action("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
            .expect("reset action");
        let allowed = action.allowable.as_deref().expect("ActionInfo list");
        assert!(allowed.contains(&"PowerCycle".to_owned()));
        assert!(!allowed.contains(&"PushPowerButton".to_owned()));
    }

    #[test]
    fn every_mockup_loads_with_a_system_and_a_reset_action() {
        for name in [
            "dmtf-public-rackmount1",
            "hpe-ilo5-dl360-gen10plus",
            "hpe-ilo5-dl385-gen10plus-v2",
            "dell-idrac9-r750",
            "lenovo-xcc-sr670v2",
            "supermicro-sys821ge-tnhr",
        ] {
            let tree = mockup(name);
            assert!(tree.len() > 200, "{name}: {} resources", tree.len());
            assert_eq!(tree.systems.len(), 1, "{name}");
            assert_eq!(tree.reset_actions.len(), 1, "{name}");
            assert!(tree.reset_actions[0].allowable.is_some(), "{name}");
            assert!(tree.resolve(&tree.sessions_path).is_some(), "{name}");
        }
    }
}
