//! racklift's HTTP surface: NetBox's webhook (`POST /hooks/netbox`) and `GET /healthz`.
//! Handlers verify and queue; they never call NetBox.

mod webhook;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use serde_json::json;

pub use webhook::{SIGNATURE_HEADER, sign};

use crate::config::Secret;
use crate::controller::WorkQueue;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub queue: Arc<WorkQueue>,
    pub webhook_secret: Secret,
    /// Deliveries already queued, by signature: NetBox re-delivers a requeued job verbatim,
    /// and one read per delivery is enough.
    pub seen: moka::sync::Cache<String, ()>,
}

impl AppState {
    pub fn new(queue: Arc<WorkQueue>, webhook_secret: Secret) -> Self {
        Self {
            queue,
            webhook_secret,
            seen: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
        }
    }
}

pub fn router(state: AppState, webhook_path: &str, body_limit: usize) -> Router {
    Router::new()
        .route(
            webhook_path,
            post(webhook::receive).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/healthz", get(healthz))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "queue": state.queue.stats() }))
}
