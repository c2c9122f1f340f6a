//! `POST /hooks/netbox` against a real `racklift serve`: bad input is refused with the right
//! status and a clear message and queues nothing; events for devices NetBox does not have are
//! accepted and dropped by the reconcile, with nothing written.

mod common;

use common::{Api, Options, Racklift, Site, wait_for};
use serde_json::{Value, json};

fn device_event(id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": "updated", "timestamp": "2026-11-25T10:00:00+00:00", "object_type": "dcim.device",
        "username": "admin", "request_id": "t", "data": {"id": id},
    }))
    .expect("json")
}

async fn post(racklift: &Racklift, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(racklift.hook_url())
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("X-Hook-Signature", signature);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn queue_is_empty(racklift: &Racklift) -> bool {
    let health = racklift.health().await;
    health["queue"]["waiting"] == 0 && health["queue"]["running"] == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_webhooks_are_refused_with_a_reason_and_queue_nothing() {
    let api = Api::new();
    let site = Site::new(&api, "badinput").await;
    let racklift = Racklift::start(
        &site,
        Options {
            body_limit: 64 * 1024,
            ..Options::default()
        },
    )
    .await;
    let sign = |body: &[u8]| {
        racklift::http::sign(
            &racklift::config::Secret::new(racklift.secret.clone()),
            body,
        )
    };

    let (status, answer) = post(&racklift, device_event(1), None).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("missing X-Hook-Signature")
    );

    let forged = racklift::http::sign(
        &racklift::config::Secret::new("not-the-secret"),
        &device_event(1),
    );
    let (status, answer) = post(&racklift, device_event(1), Some(forged)).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("does not match"),
        "{answer}"
    );

    // A signature for another body (a replayed header on a tampered body).
    let (status, _) = post(&racklift, device_event(2), Some(sign(&device_event(1)))).await;
    assert_eq!(status, 401);

    let (status, answer) = post(&racklift, device_event(1), Some("zz-not-hex".into())).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().expect("error").contains("not hex"));

    let huge = vec![b' '; 65 * 1024];
    let (status, _) = post(&racklift, huge.clone(), Some(sign(&huge))).await;
    assert_eq!(status, 413);

    let malformed = b"{\"event\": \"updated\", \"data\": ".to_vec();
    let (status, answer) = post(&racklift, malformed.clone(), Some(sign(&malformed))).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("not a NetBox event"),
        "{answer}"
    );

    let site_event = serde_json::to_vec(&json!({
        "event": "updated", "object_type": "dcim.site", "data": {"id": site.id},
    }))
    .expect("json");
    let (status, answer) = post(&racklift, site_event.clone(), Some(sign(&site_event))).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("not a device event"),
        "{answer}"
    );

    let no_id =
        serde_json::to_vec(&json!({"event": "updated", "object_type": "dcim.device", "data": {}}))
            .expect("json");
    let (status, _) = post(&racklift, no_id.clone(), Some(sign(&no_id))).await;
    assert_eq!(status, 400);

    assert!(
        queue_is_empty(&racklift).await,
        "{}",
        racklift.health().await
    );
    assert!(
        !racklift.log().contains("webhook queued"),
        "nothing was queued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_for_unknown_or_deleted_devices_are_accepted_then_dropped_without_writes() {
    let api = Api::new();
    let site = Site::new(&api, "gone").await;
    let deleted = site.device(&api, "deleted", "racked").await;
    assert_eq!(api.delete(&format!("dcim/devices/{deleted}/")).await, 204);
    let racklift = Racklift::start(&site, Options::default()).await;
    let journal_before = api.get("extras/journal-entries/?limit=1").await["count"].clone();

    for id in [deleted, 4_000_000_000] {
        let (status, answer) = racklift.deliver(&device_event(id)).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["device"], id);
        wait_for(&format!("device {id} to be dropped"), || async {
            racklift
                .log()
                .lines()
                .any(|l| l.contains("device not in NetBox") && l.contains(&format!("device={id}")))
                .then_some(())
        })
        .await;
    }
    assert!(queue_is_empty(&racklift).await);
    assert_eq!(
        api.get("extras/journal-entries/?limit=1").await["count"],
        journal_before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_outside_the_configured_sites_is_left_alone() {
    let api = Api::new();
    let mine = Site::new(&api, "mine").await;
    let other = Site::new(&api, "other").await;
    let stranger = other.device(&api, "stranger", "discovered").await;
    let racklift = Racklift::start(&mine, Options::default()).await;

    let (status, _) = racklift.deliver(&device_event(stranger)).await;
    assert_eq!(status, 202);
    wait_for("the reconcile of the other site's device", || async {
        queue_is_empty(&racklift).await.then_some(())
    })
    .await;
    let device = api.device(stranger).await;
    assert_eq!(common::lifecycle(&device).as_deref(), Some("discovered"));
    assert!(api.journal(stranger).await.is_empty());
}
