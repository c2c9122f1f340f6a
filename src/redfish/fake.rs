//! An in-process BMC for the unit tests of the Redfish client and its session cache: plain
//! HTTP on 127.0.0.1, a service root, a session service (login, `X-Auth-Token`, DELETE), one
//! authenticated collection, counters, and the BMC's side of a session's life (it expires them,
//! its passwords change). bmcsim is the real simulator; this only serves the sessions' tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::{Value, json};

const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";

#[derive(Debug, Default)]
struct Inner {
    passwords: HashMap<String, String>,
    /// Open sessions: id → token.
    open: HashMap<u64, String>,
    next: u64,
    root_reads: u64,
    login_attempts: u64,
    logins: u64,
    deletes: u64,
}

#[derive(Debug, Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fake BMC; it stops when the test's runtime does.
#[derive(Debug)]
pub struct FakeBmc {
    addr: std::net::SocketAddr,
    state: Shared,
}

impl FakeBmc {
    /// A BMC with these users (name, password).
    pub async fn start(users: &[(&str, &str)]) -> Self {
        let state = Shared::default();
        state.lock().passwords = users
            .iter()
            .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
            .collect();
        let app = axum::Router::new()
            .route("/redfish/v1/", get(root))
            .route(SESSIONS, axum::routing::post(login))
            .route(&format!("{SESSIONS}/{{id}}"), delete(logout))
            .route("/redfish/v1/Systems", get(systems))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn url(&self) -> url::Url {
        format!("http://{}/", self.addr).parse().expect("url")
    }

    /// The BMC forgets every session (its timeout, a BMC reboot).
    pub fn expire_sessions(&self) {
        self.state.lock().open.clear();
    }

    pub fn set_password(&self, user: &str, password: &str) {
        self.state
            .lock()
            .passwords
            .insert(user.to_owned(), password.to_owned());
    }

    pub fn logins(&self) -> u64 {
        self.state.lock().logins
    }

    pub fn login_attempts(&self) -> u64 {
        self.state.lock().login_attempts
    }

    pub fn deletes(&self) -> u64 {
        self.state.lock().deletes
    }

    pub fn open_sessions(&self) -> usize {
        self.state.lock().open.len()
    }

    pub fn service_root_reads(&self) -> u64 {
        self.state.lock().root_reads
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"message": "no valid session"}})),
    )
        .into_response()
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers.get("X-Auth-Token").and_then(|v| v.to_str().ok())
}

async fn root(State(state): State<Shared>) -> Json<Value> {
    state.lock().root_reads += 1;
    Json(json!({
        "Vendor": "HPE",
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "Links": {"Sessions": {"@odata.id": SESSIONS}},
    }))
}

async fn login(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut inner = state.lock();
    inner.login_attempts += 1;
    let user = body["UserName"].as_str().unwrap_or("");
    let password = body["Password"].as_str().unwrap_or("");
    if inner.passwords.get(user).map(String::as_str) != Some(password) {
        return unauthorized();
    }
    inner.logins += 1;
    inner.next += 1;
    let id = inner.next;
    let token = format!("token-{id}-{}", fastrand::u64(..));
    inner.open.insert(id, token.clone());
    let location = format!("{SESSIONS}/{id}");
    (
        StatusCode::CREATED,
        [
            ("X-Auth-Token", token),
            (header::LOCATION.as_str(), location.clone()),
        ],
        Json(json!({"@odata.id": location})),
    )
        .into_response()
}

async fn logout(State(state): State<Shared>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    let mut inner = state.lock();
    let valid = token(&headers).is_some_and(|t| inner.open.values().any(|open| open == t));
    if !valid {
        return unauthorized();
    }
    if inner.open.remove(&id).is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    inner.deletes += 1;
    StatusCode::NO_CONTENT.into_response()
}

async fn systems(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let inner = state.lock();
    if !token(&headers).is_some_and(|t| inner.open.values().any(|open| open == t)) {
        return unauthorized();
    }
    Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]})).into_response()
}
