//! The control API (plain HTTP): read a BMC's state, inject faults, reset counters.
//!
//! - `GET  /bmcs`                      → `{"<name>": "<addr>", ...}`
//! - `GET  /bmcs/{name}`               → state and counters (see README)
//! - `PUT  /bmcs/{name}/faults`        → replace the fault set (`{}` clears); answers the new set
//! - `POST /bmcs/{name}/reset-counters` → zero the counters and empty the recorded lists

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::{Bmc, Counters, Faults};

pub type Bmcs = Arc<HashMap<String, Arc<Bmc>>>;

pub fn router(bmcs: Bmcs) -> Router {
    Router::new()
        .route("/bmcs", get(list))
        .route("/bmcs/{name}", get(show))
        .route("/bmcs/{name}/faults", put(set_faults))
        .route("/bmcs/{name}/reset-counters", post(reset_counters))
        .with_state(bmcs)
}

fn not_found(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no bmc named {name:?}"))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn list(State(bmcs): State<Bmcs>) -> Json<BTreeMap<String, String>> {
    Json(
        bmcs.iter()
            .map(|(name, bmc)| (name.clone(), bmc.addr.to_string()))
            .collect(),
    )
}

async fn show(State(bmcs): State<Bmcs>, Path(name): Path<String>) -> Response {
    match bmcs.get(&name) {
        Some(bmc) => Json(bmc.snapshot()).into_response(),
        None => not_found(&name),
    }
}

async fn set_faults(State(bmcs): State<Bmcs>, Path(name): Path<String>, body: Bytes) -> Response {
    let Some(bmc) = bmcs.get(&name) else {
        return not_found(&name);
    };
    // Parsed by hand (not the Json extractor) so a typo in a fault name gets a clear 400.
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad fault set: {e}")),
    };
    if let Some(code) = faults.status
        && StatusCode::from_u16(code).is_err()
    {
        return error(StatusCode::BAD_REQUEST, &format!("bad status {code}"));
    }
    tracing::info!(bmc = %name, ?faults, "faults set");
    bmc.state().faults = faults.clone();
    Json(faults).into_response()
}

async fn reset_counters(State(bmcs): State<Bmcs>, Path(name): Path<String>) -> Response {
    let Some(bmc) = bmcs.get(&name) else {
        return not_found(&name);
    };
    bmc.state().counters = Counters::default();
    Json(Value::Object(Default::default())).into_response()
}
