//! One simulated BMC: its shared read-only tree, and its own mutable state (the overlay of
//! changed resources, credentials, sessions, faults and counters).
//!
//! All of a BMC's state sits behind one mutex. A request holds it only while it computes its
//! answer (never across an await), so BMCs never wait on each other and one BMC's requests are
//! serialised the way a BMC's single web server mostly serialises them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::RedfishError;
use crate::etag::{Rendered, if_match_allows, render};
use crate::patch::{check_allowable, merge};
use crate::tree::{ResetAction, Tree, is_computer_system};

/// Every ResetType of the ResetType enum (Resource.v1), accepted when a capture lists none.
const STANDARD_RESET_TYPES: &[&str] = &[
    "On",
    "ForceOff",
    "GracefulShutdown",
    "GracefulRestart",
    "ForceRestart",
    "Nmi",
    "ForceOn",
    "PushPowerButton",
    "PowerCycle",
    "Suspend",
    "Pause",
    "Resume",
    "FullPowerCycle",
];

#[derive(Debug)]
pub struct Bmc {
    pub name: String,
    pub addr: SocketAddr,
    pub tls: bool,
    pub tree: Arc<Tree>,
    pub max_sessions: usize,
    pub session_timeout: Option<Duration>,
    state: Mutex<BmcState>,
}

/// The faults an admin can inject (`PUT /bmcs/{name}/faults`); the whole set is replaced at
/// once, and `{}` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay every Redfish request by this much before answering (or failing, or dropping).
    pub latency_ms: u64,
    /// Answer the next N requests with 503 and a Redfish error.
    pub fail_next: u32,
    /// Answer every request with this status and a Redfish error, until cleared.
    pub status: Option<u16>,
    /// Close every connection without an answer.
    pub drop: bool,
    /// Refuse every authenticated request (and every login) with 401, as after a lockout.
    pub unauthorized: bool,
    /// Reset actions answer 204 but PowerState never changes.
    pub power_stuck: bool,
}

/// A write (PATCH or POST) as received.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// The canonical path of the resource (PATCH) or the request path (POST).
    pub path: String,
    pub body: Value,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Redfish requests received, whatever their answer (including injected failures and
    /// dropped connections), so a test can assert that a client made no further calls.
    pub requests: u64,
    pub sessions_created: u64,
    pub sessions_deleted: u64,
    /// Every accepted ResetType, in order.
    pub resets: Vec<String>,
    /// ForceRestart / GracefulRestart / PowerCycle resets applied.
    pub restarts: u64,
    /// One entry per simulated boot (power-on or restart): the boot override in effect.
    pub boots: Vec<Value>,
    pub patches: Vec<Recorded>,
    pub posts: Vec<Recorded>,
}

#[derive(Debug)]
struct Session {
    token: String,
    user: String,
    last_used: Instant,
}

/// What the listener does with a request before the Redfish handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prelude {
    Proceed,
    Drop,
    Fail(StatusCode),
}

#[derive(Debug)]
pub struct BmcState {
    /// Canonical path → the resource as changed on this BMC (the tree's copy is untouched).
    overlay: HashMap<String, (Value, Rendered)>,
    /// User name → password. Starts with the configured login; account PATCHes change it.
    accounts: HashMap<String, String>,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    pub faults: Faults,
    pub counters: Counters,
}

impl Bmc {
    pub fn new(config: &crate::config::BmcConfig, addr: SocketAddr, tree: Arc<Tree>) -> Bmc {
        let mut state = BmcState {
            overlay: HashMap::new(),
            accounts: HashMap::from([(config.username.clone(), config.password.clone())]),
            sessions: BTreeMap::new(),
            next_session: 1,
            faults: Faults::default(),
            counters: Counters::default(),
        };
        if let Some(power) = &config.power_state {
            for system in &tree.systems {
                state.set_power(&tree, system, power);
            }
        }
        Bmc {
            name: config.name.clone(),
            addr,
            tls: config.tls,
            tree,
            max_sessions: config.max_sessions,
            session_timeout: config.session_timeout_s.map(Duration::from_secs),
            state: Mutex::new(state),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, BmcState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request and decides, from the faults, whether it is served, failed or dropped.
    /// Also returns the injected latency.
    pub fn begin_request(&self) -> (Prelude, Duration) {
        let mut state = self.state();
        state.counters.requests += 1;
        let latency = Duration::from_millis(state.faults.latency_ms);
        let faults = &mut state.faults;
        let prelude = if faults.drop {
            Prelude::Drop
        } else if let Some(code) = faults.status {
            Prelude::Fail(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        } else if faults.fail_next > 0 {
            faults.fail_next -= 1;
            Prelude::Fail(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Prelude::Proceed
        };
        (prelude, latency)
    }

    /// The admin API's view of this BMC.
    pub fn snapshot(&self) -> Value {
        let mut state = self.state();
        let now = Instant::now();
        state.expire_sessions(self.session_timeout, now);
        let system = self
            .tree
            .systems
            .first()
            .and_then(|s| state.current_value(&self.tree, s));
        let boot = system.as_ref().and_then(|s| s.get("Boot"));
        let mut users: Vec<&String> = state.accounts.keys().collect();
        users.sort();
        json!({
            "name": self.name,
            "address": self.addr.to_string(),
            "tls": self.tls,
            "tree": self.tree.dir.display().to_string(),
            "system": self.tree.systems.first(),
            "power_state": system.as_ref().and_then(|s| s.get("PowerState")),
            "boot": {
                "target": boot.and_then(|b| b.get("BootSourceOverrideTarget")),
                "enabled": boot.and_then(|b| b.get("BootSourceOverrideEnabled")),
                "mode": boot.and_then(|b| b.get("BootSourceOverrideMode")),
            },
            "users": users,
            "sessions_open": state.sessions.len(),
            "sessions_created": state.counters.sessions_created,
            "sessions_deleted": state.counters.sessions_deleted,
            "requests": state.counters.requests,
            "resets": state.counters.resets,
            "restarts": state.counters.restarts,
            "boots": state.counters.boots,
            "patches": state.counters.patches,
            "posts": state.counters.posts,
            "faults": state.faults,
        })
    }
}

impl BmcState {
    /// The resource at a canonical path as this BMC serves it now.
    pub fn current(&self, tree: &Tree, key: &str) -> Option<Rendered> {
        match self.overlay.get(key) {
            Some((_, rendered)) => Some(rendered.clone()),
            None => tree.rendered(key).cloned(),
        }
    }

    pub fn current_value(&self, tree: &Tree, key: &str) -> Option<Value> {
        match self.overlay.get(key) {
            Some((value, _)) => Some(value.clone()),
            None => tree.value(key),
        }
    }

    fn store(&mut self, key: &str, value: Value) -> Rendered {
        let rendered = render(value.clone());
        self.overlay
            .insert(key.to_owned(), (value, rendered.clone()));
        rendered
    }

    fn set_power(&mut self, tree: &Tree, system: &str, power: &str) {
        if let Some(mut value) = self.current_value(tree, system)
            && value.get("PowerState").and_then(Value::as_str) != Some(power)
        {
            value["PowerState"] = json!(power);
            self.store(system, value);
        }
    }

    // ---- credentials and sessions ----

    pub fn check_password(&self, user: &str, password: &str) -> bool {
        self.accounts.get(user).is_some_and(|p| p == password)
    }

    /// The user a session token belongs to; using a session keeps it alive.
    pub fn session_user(
        &mut self,
        token: &str,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Option<String> {
        self.expire_sessions(timeout, now);
        let session = self.sessions.values_mut().find(|s| s.token == token)?;
        session.last_used = now;
        Some(session.user.clone())
    }

    fn expire_sessions(&mut self, timeout: Option<Duration>, now: Instant) {
        if let Some(timeout) = timeout {
            self.sessions
                .retain(|_, s| now.duration_since(s.last_used) < timeout);
        }
    }

    /// Opens a session: checks the credentials and the session limit. Returns its id and token.
    pub fn create_session(
        &mut self,
        user: &str,
        password: &str,
        max_sessions: usize,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<(u64, String), RedfishError> {
        if self.faults.unauthorized || !self.check_password(user, password) {
            return Err(RedfishError::unauthorized());
        }
        self.expire_sessions(timeout, now);
        if self.sessions.len() >= max_sessions {
            return Err(RedfishError::session_limit());
        }
        let id = self.next_session;
        self.next_session += 1;
        let token = format!("{:032x}", fastrand::u128(..));
        self.sessions.insert(
            id,
            Session {
                token: token.clone(),
                user: user.to_owned(),
                last_used: now,
            },
        );
        self.counters.sessions_created += 1;
        Ok((id, token))
    }

    pub fn delete_session(&mut self, id: u64) -> bool {
        let deleted = self.sessions.remove(&id).is_some();
        if deleted {
            self.counters.sessions_deleted += 1;
        }
        deleted
    }

    /// The session collection: the capture's document with its members replaced by the
    /// sessions open now.
    pub fn session_collection(&self, tree: &Tree) -> Rendered {
        let path = &tree.sessions_path;
        let mut value = tree
            .resolve(path)
            .and_then(|key| tree.value(key))
            .unwrap_or_else(|| {
                json!({
                    "@odata.id": path,
                    "@odata.type": "#SessionCollection.SessionCollection",
                    "Name": "Session Collection",
                })
            });
        let members: Vec<Value> = self
            .sessions
            .keys()
            .map(|id| json!({"@odata.id": format!("{path}/{id}")}))
            .collect();
        value["Members@odata.count"] = json!(members.len());
        value["Members"] = Value::Array(members);
        render(value)
    }

    pub fn session_resource(&self, tree: &Tree, id: u64) -> Option<Rendered> {
        let session = self.sessions.get(&id)?;
        Some(render(json!({
            "@odata.id": format!("{}/{id}", tree.sessions_path),
            "@odata.type": "#Session.v1_3_0.Session",
            "Id": id.to_string(),
            "Name": "User Session",
            "Description": "Manager User Session",
            "UserName": session.user,
            "Password": null,
            "SessionType": "Redfish",
        })))
    }

    // ---- writes ----

    /// PATCH: If-Match, allowable values, then a deep merge into this BMC's copy.
    pub fn patch(
        &mut self,
        tree: &Tree,
        key: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Rendered, RedfishError> {
        let (Some(current), Some(mut value)) =
            (self.current(tree, key), self.current_value(tree, key))
        else {
            return Err(RedfishError::not_found(key));
        };
        if !body.is_object() {
            return Err(RedfishError::malformed_json());
        }
        if let Some(if_match) = if_match
            && !if_match_allows(if_match, &current.etag)
        {
            return Err(RedfishError::precondition_failed());
        }
        check_allowable(&value, body, is_computer_system(&value))?;
        self.counters.patches.push(Recorded {
            path: key.to_owned(),
            body: body.clone(),
        });
        let mut body = body.clone();
        if is_account(&value) {
            self.patch_account(&value, &mut body);
        }
        merge(&mut value, &body);
        Ok(self.store(key, value))
    }

    /// A ManagerAccount PATCH changes who can log in: a new `Password` applies to the account's
    /// user name (the new one, if the PATCH also renames it), and a rename moves the password.
    /// The password itself is not stored in the resource: BMCs show `"Password": null`.
    fn patch_account(&mut self, account: &Value, body: &mut Value) {
        let old_user = account
            .get("UserName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let new_user = body
            .get("UserName")
            .and_then(Value::as_str)
            .unwrap_or(&old_user)
            .to_owned();
        let password = body
            .as_object_mut()
            .and_then(|b| b.remove("Password"))
            .and_then(|p| p.as_str().map(str::to_owned));
        if new_user != old_user
            && let Some(moved) = self.accounts.remove(&old_user)
        {
            self.accounts.insert(new_user.clone(), moved);
        }
        if let Some(password) = password
            && !new_user.is_empty()
        {
            self.accounts.insert(new_user, password);
        }
    }

    /// A POST that creates an account (to a ManagerAccount collection) adds its credentials.
    /// The account resource itself is not created (a guess kept simple: see the README).
    pub fn post_account(&mut self, body: &Value) {
        if let (Some(user), Some(password)) = (
            body.get("UserName").and_then(Value::as_str),
            body.get("Password").and_then(Value::as_str),
        ) {
            self.accounts.insert(user.to_owned(), password.to_owned());
        }
    }

    pub fn record_post(&mut self, path: &str, body: Value) {
        self.counters.posts.push(Recorded {
            path: path.to_owned(),
            body,
        });
    }

    /// `#ComputerSystem.Reset`: validates ResetType, then changes PowerState. A power-on or a
    /// restart is a boot, which uses (and, for `Once`, consumes) the boot override.
    pub fn reset(
        &mut self,
        tree: &Tree,
        action: &ResetAction,
        body: &Value,
    ) -> Result<(), RedfishError> {
        const ACTION: &str = "ComputerSystem.Reset";
        let Some(reset_type) = body.get("ResetType") else {
            return Err(RedfishError::action_parameter_missing("ResetType", ACTION));
        };
        let allowed = match (&action.allowable, reset_type.as_str()) {
            (_, None) => false,
            (Some(list), Some(t)) => list.iter().any(|a| a == t),
            (None, Some(t)) => STANDARD_RESET_TYPES.contains(&t),
        };
        let Some(reset_type) = reset_type.as_str().filter(|_| allowed) else {
            return Err(RedfishError::action_value_not_in_list(
                "ResetType",
                reset_type,
                ACTION,
            ));
        };
        self.counters.resets.push(reset_type.to_owned());
        if self.faults.power_stuck {
            return Ok(());
        }
        let (after, restart) = match reset_type {
            "On" | "ForceOn" => ("On", false),
            "ForceOff" | "GracefulShutdown" => ("Off", false),
            "ForceRestart" | "GracefulRestart" | "PowerCycle" => ("On", true),
            // Nmi, PushPowerButton and the rest leave the power as it is.
            _ => return Ok(()),
        };
        let Some(mut system) = self.current_value(tree, &action.system) else {
            return Ok(());
        };
        let before = system
            .get("PowerState")
            .and_then(Value::as_str)
            .unwrap_or("Off");
        let boots = after == "On" && (restart || before != "On");
        if restart {
            self.counters.restarts += 1;
        }
        system["PowerState"] = json!(after);
        if boots {
            self.boot(&mut system);
        }
        self.store(&action.system, system);
        Ok(())
    }

    /// Records which override a boot used. `Once` is spent by the boot and reads `Disabled`
    /// afterwards, as the ComputerSystem schema specifies; the target is left as it was.
    fn boot(&mut self, system: &mut Value) {
        let boot = system.get("Boot");
        let enabled = boot
            .and_then(|b| b.get("BootSourceOverrideEnabled"))
            .cloned()
            .unwrap_or(Value::Null);
        let target = boot
            .and_then(|b| b.get("BootSourceOverrideTarget"))
            .cloned()
            .unwrap_or(Value::Null);
        self.counters
            .boots
            .push(json!({"target": target, "enabled": enabled}));
        if enabled == "Once" {
            system["Boot"]["BootSourceOverrideEnabled"] = json!("Disabled");
        }
    }
}

fn is_account(value: &Value) -> bool {
    value
        .get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("#ManagerAccount."))
}

/// Whether a POST to `path` creates an account (the path is a ManagerAccount collection).
pub fn is_account_collection(tree: &Tree, state: &BmcState, key: &str) -> bool {
    state
        .current_value(tree, key)
        .and_then(|v| {
            v.get("@odata.type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .is_some_and(|t| t.starts_with("#ManagerAccountCollection."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BmcConfig;
    use crate::tree::tests::mockup;

    const SYSTEM: &str = "/redfish/v1/Systems/1";
    const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

    fn bmc(tree: &str, power: Option<&str>) -> Bmc {
        let config = BmcConfig {
            name: "t".to_owned(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            tree: tree.into(),
            username: "admin".to_owned(),
            password: "secret".to_owned(),
            tls: true,
            max_sessions: 2,
            power_state: power.map(str::to_owned),
            session_timeout_s: None,
        };
        Bmc::new(&config, config.listen, Arc::new(mockup(tree)))
    }

    fn power(bmc: &Bmc) -> Value {
        bmc.snapshot()["power_state"].clone()
    }

    #[test]
    fn initial_power_state_and_overlay_leave_the_tree_alone() {
        let off = bmc("hpe-ilo5-dl360-gen10plus", Some("Off"));
        assert_eq!(power(&off), "Off");
        let captured = off.tree.value(SYSTEM).expect("system");
        assert_eq!(captured["PowerState"], "On");
    }

    #[test]
    fn patch_checks_if_match_then_merges() {
        let bmc = bmc("hpe-ilo5-dl360-gen10plus", None);
        let tree = bmc.tree.clone();
        let mut state = bmc.state();
        let before = state.current(&tree, SYSTEM).expect("system").etag;
        let body = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});

        let stale = state.patch(&tree, SYSTEM, &body, Some("W/\"0BAD\""));
        assert_eq!(stale.expect_err("stale").status, 412);

        let after = state
            .patch(&tree, SYSTEM, &body, Some(&before))
            .expect("patched");
        assert_ne!(after.etag, before);
        let value: Value = serde_json::from_slice(&after.body).expect("json");
        assert_eq!(value["Boot"]["BootSourceOverrideTarget"], "Pxe");
        assert_eq!(
            value["Boot"]["BootOrder"].as_array().map(Vec::len),
            Some(12)
        );
        assert_eq!(value["@odata.etag"], json!(after.etag));
        // The old tag is now stale; `*` always passes.
        assert!(state.patch(&tree, SYSTEM, &body, Some(&before)).is_err());
        assert!(state.patch(&tree, SYSTEM, &body, Some("*")).is_ok());
        assert_eq!(state.counters.patches.len(), 2);
    }

    #[test]
    fn reset_changes_power_and_spends_a_one_time_boot() {
        let bmc = bmc("hpe-ilo5-dl360-gen10plus", Some("Off"));
        let tree = bmc.tree.clone();
        let action = tree.reset_action(RESET).expect("action").clone();
        {
            let mut state = bmc.state();
            let body = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
            state.patch(&tree, SYSTEM, &body, None).expect("patched");
            state
                .reset(&tree, &action, &json!({"ResetType": "On"}))
                .expect("on");
        }
        let snap = bmc.snapshot();
        assert_eq!(snap["power_state"], "On");
        assert_eq!(snap["boots"], json!([{"target": "Pxe", "enabled": "Once"}]));
        assert_eq!(snap["boot"]["enabled"], "Disabled");
        assert_eq!(snap["boot"]["target"], "Pxe");

        let mut state = bmc.state();
        // Already on: no boot. Nmi: no change. Restart: a boot, counted.
        state
            .reset(&tree, &action, &json!({"ResetType": "On"}))
            .expect("on");
        state
            .reset(&tree, &action, &json!({"ResetType": "Nmi"}))
            .expect("nmi");
        state
            .reset(&tree, &action, &json!({"ResetType": "ForceRestart"}))
            .expect("restart");
        state
            .reset(&tree, &action, &json!({"ResetType": "ForceOff"}))
            .expect("off");
        assert_eq!(state.counters.restarts, 1);
        assert_eq!(state.counters.boots.len(), 2);
        assert_eq!(
            state.counters.resets,
            ["On", "On", "Nmi", "ForceRestart", "ForceOff"]
        );
        // iLO does not list PowerCycle.
        let err = state
            .reset(&tree, &action, &json!({"ResetType": "PowerCycle"}))
            .expect_err("not allowed");
        assert_eq!(err.message_id, "ActionParameterValueNotInList");
        assert!(state.reset(&tree, &action, &json!({})).is_err());
    }

    #[test]
    fn supermicro_reset_uses_its_action_info() {
        let bmc = bmc("supermicro-sys821ge-tnhr", Some("Off"));
        let tree = bmc.tree.clone();
        let action = tree.reset_action(RESET).expect("action").clone();
        let mut state = bmc.state();
        state
            .reset(&tree, &action, &json!({"ResetType": "PowerCycle"}))
            .expect("listed");
        let err = state
            .reset(&tree, &action, &json!({"ResetType": "PushPowerButton"}))
            .expect_err("not in ResetActionInfo");
        assert_eq!(err.status, 400);
    }

    #[test]
    fn power_stuck_accepts_resets_without_effect() {
        let bmc = bmc("dell-idrac9-r750", Some("Off"));
        let tree = bmc.tree.clone();
        let action = tree.reset_actions[0].clone();
        bmc.state().faults.power_stuck = true;
        bmc.state()
            .reset(&tree, &action, &json!({"ResetType": "On"}))
            .expect("accepted");
        assert_eq!(power(&bmc), "Off");
        assert_eq!(bmc.snapshot()["resets"], json!(["On"]));
    }

    #[test]
    fn sessions_respect_the_limit_and_credentials() {
        let bmc = bmc("dell-idrac9-r750", None);
        let now = Instant::now();
        let mut state = bmc.state();
        assert!(
            state
                .create_session("admin", "wrong", 2, None, now)
                .is_err()
        );
        let (id, token) = state
            .create_session("admin", "secret", 2, None, now)
            .expect("first");
        state
            .create_session("admin", "secret", 2, None, now)
            .expect("second");
        let full = state
            .create_session("admin", "secret", 2, None, now)
            .expect_err("limit");
        assert_eq!(full.message_id, "SessionLimitExceeded");
        assert_eq!(
            state.session_user(&token, None, now).as_deref(),
            Some("admin")
        );
        assert!(state.delete_session(id));
        assert_eq!(state.session_user(&token, None, now), None);

        // Idle sessions expire when a timeout is set.
        let later = now + Duration::from_secs(61);
        assert_eq!(state.sessions.len(), 1);
        state.expire_sessions(Some(Duration::from_secs(60)), later);
        assert!(state.sessions.is_empty());
    }

    #[test]
    fn account_patch_changes_the_login() {
        let mut config_bmc = bmc("dell-idrac9-r750", None);
        // Log in as the capture's account 2 ("root").
        config_bmc.state.get_mut().expect("lock").accounts =
            HashMap::from([("root".to_owned(), "calvin".to_owned())]);
        let tree = config_bmc.tree.clone();
        let mut state = config_bmc.state();
        let key = "/redfish/v1/AccountService/Accounts/2";
        let account = state.current_value(&tree, key).expect("account");
        assert_eq!(account["UserName"], "root");
        let patched = state
            .patch(&tree, key, &json!({"Password": "n3w"}), None)
            .expect("patched");
        let value: Value = serde_json::from_slice(&patched.body).expect("json");
        assert_eq!(value["Password"], Value::Null);
        assert!(state.check_password("root", "n3w"));
        assert!(!state.check_password("root", "calvin"));
        // A new user in an empty slot.
        state
            .patch(
                &tree,
                "/redfish/v1/AccountService/Accounts/3",
                &json!({"UserName": "racklift", "Password": "pw", "Enabled": true}),
                None,
            )
            .expect("patched");
        assert!(state.check_password("racklift", "pw"));
    }
}
