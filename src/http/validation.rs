//! `POST /v1/validation`: the booted server's report. The bearer token is compared in constant
//! time; the body is checked against the report schema (422 names the field); the verdict is
//! worked out and written while the script waits, so it can print it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::stages::validation::{self, Verdict};

type Reply = (StatusCode, Json<serde_json::Value>);

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    (status, Json(json!({ "error": message.into() })))
}

pub(super) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let Some(callback) = &state.validation else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the validation callback is not configured: set validation.token in racklift's configuration",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`",
        );
    };
    if !bool::from(
        presented
            .as_bytes()
            .ct_eq(callback.token.expose().as_bytes()),
    ) {
        return error(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not racklift's validation token",
        );
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        );
    }
    let report = match validation::parse(&body) {
        Ok(report) => report,
        Err(why) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the report does not follow schema version 1: {why}"),
            );
        }
    };
    // Applied on a task of its own: a client that hangs up (the script's per-attempt timeout)
    // does not cut NetBox's writes off halfway; its retry then finds them done.
    let applying = {
        let (callback, report) = (callback.clone(), report.clone());
        tokio::spawn(async move { validation::apply(&callback.client, &report).await })
    };
    let Ok(outcome) = applying.await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "applying the report failed unexpectedly; see racklift's log",
        );
    };
    match outcome {
        Ok(Verdict::Validated { summary }) => (
            StatusCode::OK,
            Json(json!({"result": "validated", "summary": summary})),
        ),
        Ok(Verdict::Failed { differences }) => (
            StatusCode::OK,
            Json(json!({"result": "failed", "differences": differences})),
        ),
        Ok(Verdict::AlreadyApplied) => (StatusCode::OK, Json(json!({"result": "already applied"}))),
        Ok(Verdict::NoDevice(why)) => error(StatusCode::NOT_FOUND, why),
        Ok(Verdict::Refused(why)) => error(StatusCode::CONFLICT, why),
        Err(e) => {
            let text = crate::error_chain(&e);
            tracing::warn!(serial = %report.serial, "{text}");
            // NetBox away: the script retries; anything else is not the server's fault either.
            let status = if e.source.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            error(status, text)
        }
    }
}
