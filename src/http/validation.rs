//! `POST /v1/validation`: the booted server's report. In this order, each step before any
//! more work is done: the bearer token (compared in constant time, from the headers alone:
//! nothing of the body is read for a client without it), the body (within its size limit and
//! its time limit), the report schema (422 names the field), a free apply slot (503 with
//! `Retry-After` when `validation.max_concurrent_applies` are running). The verdict is worked
//! out and written while the script waits, so it can print it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::AppState;
use crate::config::{ReportBounds, Scope, Secret, ValidationConfig};
use crate::netbox::{NetBoxClient, NetBoxError};
use crate::stages::validation::{self, Validator, Verdict};

/// What a busy racklift asks the script to wait before it posts again.
const RETRY_AFTER_SECS: u64 = 5;

/// What the validation callback needs: it is the one handler that talks to NetBox, because the
/// script waits for its verdict.
#[derive(Debug)]
pub struct ValidationCallback {
    validator: Validator,
    token: Secret,
    /// Only for the 413's message: the route's `DefaultBodyLimit` applies it.
    body_limit: usize,
    body_timeout: Duration,
    bounds: ReportBounds,
    /// One permit per report being applied.
    applying: Arc<Semaphore>,
}

impl ValidationCallback {
    pub fn new(
        client: NetBoxClient,
        scope: Scope,
        token: Secret,
        config: &ValidationConfig,
    ) -> Self {
        Self {
            validator: Validator::new(client, scope, config),
            token,
            body_limit: config.body_limit_bytes,
            body_timeout: config.body_timeout,
            bounds: config.max,
            applying: Arc::new(Semaphore::new(config.max_concurrent_applies)),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn busy(message: impl Into<String>) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Whether the request carries the validation token; if not, why.
fn authorized(headers: &HeaderMap, token: &Secret) -> Result<(), &'static str> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("missing `Authorization: Bearer <token>`")?;
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err("the bearer token is not racklift's validation token")
    }
}

pub(super) async fn receive(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let Some(callback) = state.validation.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the validation callback is not configured: set validation.token in racklift's configuration",
        );
    };
    if let Err(why) = authorized(request.headers(), &callback.token) {
        return error(StatusCode::UNAUTHORIZED, why);
    }
    // The route's `DefaultBodyLimit` bounds the read; the timeout bounds a client that sends
    // it slowly. A body over the limit is read up to it before the 413, not refused from its
    // `Content-Length`: a client that sends its body without waiting for `100 Continue` would
    // meet a connection closed under its writes, and never read the answer.
    let body =
        match tokio::time::timeout(callback.body_timeout, Bytes::from_request(request, &state))
            .await
        {
            Err(_elapsed) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the report did not arrive within validation.body_timeout ({})",
                        humantime::format_duration(callback.body_timeout)
                    ),
                );
            }
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the report is over validation.body_limit_bytes ({} bytes)",
                        callback.body_limit
                    ),
                );
            }
            Ok(Err(rejection)) => return error(rejection.status(), rejection.body_text()),
            Ok(Ok(body)) => body,
        };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        );
    }
    let report = match validation::parse(&body, &callback.bounds) {
        Ok(report) => report,
        Err(why) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the report does not follow schema version 1: {why}"),
            );
        }
    };
    let Ok(permit) = callback.applying.clone().try_acquire_owned() else {
        return busy(
            "racklift is applying as many reports as validation.max_concurrent_applies allows; try again shortly",
        );
    };
    // Applied on a task of its own, which holds the apply slot: a client that hangs up (the
    // script's per-attempt timeout) does not cut NetBox's writes off halfway; its retry then
    // finds them done.
    let applying = {
        let (callback, report) = (callback.clone(), report.clone());
        tokio::spawn(async move {
            let verdict = callback.validator.apply(&report, peer.ip()).await;
            drop(permit);
            verdict
        })
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
        )
            .into_response(),
        Ok(Verdict::Failed { differences }) => (
            StatusCode::OK,
            Json(json!({"result": "failed", "differences": differences})),
        )
            .into_response(),
        Ok(Verdict::AlreadyApplied) => {
            (StatusCode::OK, Json(json!({"result": "already applied"}))).into_response()
        }
        Ok(Verdict::NoDevice(why)) => error(StatusCode::NOT_FOUND, why),
        Ok(Verdict::Refused(why)) => error(StatusCode::CONFLICT, why),
        Ok(Verdict::Forbidden(why)) => error(StatusCode::FORBIDDEN, why),
        Ok(Verdict::Busy(why)) => busy(why),
        Err(e) => {
            let text = crate::error_chain(&e);
            tracing::warn!(serial = %report.serial, "{text}");
            match &e.source {
                // The device changed while the report was applied (the reconciler stamping
                // it, an operator): nothing was moved; the script posts again after
                // Retry-After and the check finds what this apply made, creating nothing
                // twice. This is the verdict's one retry layer.
                NetBoxError::Changed { .. } => busy(text),
                // NetBox away: the script retries.
                source if source.is_transient() => error(StatusCode::SERVICE_UNAVAILABLE, text),
                // Anything else is not the server's fault either.
                _ => error(StatusCode::BAD_GATEWAY, text),
            }
        }
    }
}
