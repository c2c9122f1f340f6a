//! racklift's HTTP surface: NetBox's webhook (`POST /hooks/netbox`), the validation callback
//! (`POST /v1/validation`), `GET /healthz`, and the server loop that serves them. The webhook
//! handler verifies and queues, never calling NetBox; the validation callback is the one
//! handler that does, because the script waits for its verdict.

mod server;
mod validation;
mod webhook;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use serde_json::json;

pub use server::serve;
pub use validation::ValidationCallback;
pub use webhook::{SIGNATURE_HEADER, sign};

use crate::config::Secret;
use crate::controller::{OwnWrites, WorkQueue};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub queue: Arc<WorkQueue>,
    pub webhook_secret: Secret,
    /// Deliveries already queued, by signature: NetBox re-delivers a requeued job verbatim,
    /// and one read per delivery is enough.
    pub seen: moka::sync::Cache<String, ()>,
    pub validation: Option<Arc<ValidationCallback>>,
    /// The controller's own device writes: their webhooks need no re-read.
    pub own_writes: OwnWrites,
}

impl AppState {
    pub fn new(
        queue: Arc<WorkQueue>,
        webhook_secret: Secret,
        validation: Option<ValidationCallback>,
        own_writes: OwnWrites,
    ) -> Self {
        Self {
            queue,
            own_writes,
            webhook_secret,
            validation: validation.map(Arc::new),
            seen: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
        }
    }
}

/// Paths and body limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub webhook_path: String,
    pub webhook_body: usize,
    pub report_body: usize,
}

pub fn router(state: AppState, limits: &Limits) -> Router {
    Router::new()
        .route(
            &limits.webhook_path,
            post(webhook::receive).layer(DefaultBodyLimit::max(limits.webhook_body)),
        )
        .route(
            "/v1/validation",
            post(validation::receive).layer(DefaultBodyLimit::max(limits.report_body)),
        )
        .route("/healthz", get(healthz))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "queue": state.queue.stats() }))
}
