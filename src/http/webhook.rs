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
    /// Absent from a deletion's data; when it is racklift's own last write, nothing to read.
    #[serde(default)]
    last_updated: Option<String>,
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
    if event
        .data
        .last_updated
        .as_deref()
        .is_some_and(|at| state.own_writes.is_echo(id, at))
    {
        tracing::debug!(device = %id, "webhook for racklift's own write: nothing to read");
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "racklift's own write", "device": id.0 })),
        );
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::{OwnWrites, WorkQueue};
    use crate::testing::{any_json, object_with};

    fn state() -> AppState {
        AppState::new(
            Arc::new(WorkQueue::new(16)),
            Secret::new("s3cret"),
            None,
            OwnWrites::default(),
        )
    }

    fn headers(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(signature) {
            headers.insert(SIGNATURE_HEADER, value);
        }
        headers
    }

    /// NetBox-shaped events with every field possibly wrong.
    fn events() -> impl Strategy<Value = Value> {
        object_with(
            &["event", "object_type", "data", "timestamp", "username"],
            prop_oneof![
                Just(json!("dcim.device")),
                Just(json!("updated")),
                object_with(&["id", "name"], any::<u64>().prop_map(Value::from)),
            ],
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    proptest! {
        // Run longer by hand: PROPTEST_CASES=200000 cargo test --lib webhook_bodies
        #[test]
        fn webhook_bodies_signed_or_not_get_an_answer_never_a_panic(
            event in prop_oneof![events(), any_json()],
            raw in prop::collection::vec(any::<u8>(), 0..256),
            use_raw in any::<bool>(),
            forged in ".{0,140}",
        ) {
            let body = if use_raw { raw } else { serde_json::to_vec(&event).expect("json") };
            let state = state();
            let signed = sign(&state.webhook_secret, &body);
            let rt = runtime();
            let (status, _) = rt.block_on(receive(
                State(state.clone()),
                headers(&signed),
                Bytes::from(body.clone()),
            ));
            prop_assert!(
                [StatusCode::ACCEPTED, StatusCode::BAD_REQUEST].contains(&status),
                "signed: {status}"
            );
            let (status, _) = rt.block_on(receive(State(state), headers(&forged), Bytes::from(body)));
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn a_device_event_is_queued_once_per_delivery() {
        let state = state();
        let body = serde_json::to_vec(
            &json!({"event": "updated", "object_type": "dcim.device", "data": {"id": 7}}),
        )
        .expect("json");
        let signed = sign(&state.webhook_secret, &body);
        let rt = runtime();
        for expected in ["queued", "duplicate delivery"] {
            let (status, Json(answer)) = rt.block_on(receive(
                State(state.clone()),
                headers(&signed),
                Bytes::from(body.clone()),
            ));
            assert_eq!(
                (status, answer["status"].as_str()),
                (StatusCode::ACCEPTED, Some(expected))
            );
        }
        assert_eq!(state.queue.stats().waiting, 1);
    }

    #[test]
    fn the_webhook_for_racklifts_own_write_is_not_queued_and_a_later_edit_is() {
        let state = state();
        state
            .own_writes
            .record(DeviceId(7), "W/\"2026-12-07T20:41:02.123456+00:00\"");
        let rt = runtime();
        let deliver = |last_updated: &str| {
            let body =
                serde_json::to_vec(&json!({"event": "updated", "object_type": "dcim.device",
                "data": {"id": 7, "last_updated": last_updated}}))
                .expect("json");
            let signed = sign(&state.webhook_secret, &body);
            let (status, Json(answer)) = rt.block_on(receive(
                State(state.clone()),
                headers(&signed),
                Bytes::from(body),
            ));
            (status, answer["status"].as_str().map(str::to_owned))
        };
        assert_eq!(
            deliver("2026-12-07T20:41:02.123456Z"),
            (StatusCode::ACCEPTED, Some("racklift's own write".into()))
        );
        assert_eq!(state.queue.stats().waiting, 0);
        assert_eq!(
            deliver("2026-12-07T20:41:05.000001Z"),
            (StatusCode::ACCEPTED, Some("queued".into()))
        );
        assert_eq!(state.queue.stats().waiting, 1);
    }
}
