//! `POST /hooks/netbox`: checks NetBox's HMAC-SHA512 signature over the raw body in constant
//! time, reads only the device id from the event, and queues it. The body is a hint: the
//! reconciler reads the device itself.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::AppState;
use crate::config::Secret;
use crate::netbox::DeviceId;

pub const SIGNATURE_HEADER: &str = "x-hook-signature";

type HmacSha512 = hmac::Hmac<sha2::Sha512>;

/// hex(HMAC-SHA512(secret, body)), as NetBox signs a webhook.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn mac(secret: &Secret) -> HmacSha512 {
    // HMAC takes a key of any length; this cannot fail.
    <HmacSha512 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    object_type: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    id: u64,
}

type Reply = (StatusCode, Json<serde_json::Value>);

fn reply(status: StatusCode, message: &str) -> Reply {
    let key = if status.is_success() {
        "status"
    } else {
        "error"
    };
    (status, Json(json!({ key: message })))
}

pub(super) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let Some(signature) = headers.get(SIGNATURE_HEADER) else {
        return reply(
            StatusCode::UNAUTHORIZED,
            "missing X-Hook-Signature: set the webhook's secret in NetBox (racklift netbox apply does)",
        );
    };
    let Some(claimed) = signature
        .to_str()
        .ok()
        .and_then(|s| hex::decode(s.trim()).ok())
    else {
        return reply(StatusCode::UNAUTHORIZED, "X-Hook-Signature is not hex");
    };
    let mut mac = mac(&state.webhook_secret);
    mac.update(&body);
    if mac.verify_slice(&claimed).is_err() {
        return reply(
            StatusCode::UNAUTHORIZED,
            "X-Hook-Signature does not match the body: the webhook secret in NetBox differs from racklift's",
        );
    }
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a NetBox event: {e}"),
            );
        }
    };
    if event.object_type != "dcim.device" {
        return reply(
            StatusCode::BAD_REQUEST,
            &format!(
                "not a device event (object_type {:?}): racklift's event rule covers dcim.device only",
                event.object_type
            ),
        );
    }
    let id = DeviceId(event.data.id);
    let key = hex::encode(&claimed);
    if state.seen.contains_key(&key) {
        tracing::debug!(device = %id, "webhook delivered again: already queued");
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "duplicate delivery", "device": id.0 })),
        );
    }
    match state.queue.enqueue(id, Instant::now()) {
        Ok(()) => {
            state.seen.insert(key, ());
            tracing::debug!(device = %id, event = %event.event, "webhook queued");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": "queued", "device": id.0 })),
            )
        }
        Err(full) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{full}; NetBox's next change or racklift's resync will bring the device back"
            ),
        ),
    }
}
