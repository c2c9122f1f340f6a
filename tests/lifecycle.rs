//! The lifecycle end to end against the lab's real NetBox: an operator's PATCH, NetBox's own
//! worker delivering the signed webhook, racklift re-reading the device and writing the next
//! state with its journal entry, status mirror and stamp. Races are forced with the test-only
//! pause point (feature `test-hooks`, see src/netbox/pause.rs): those tests, and the one that
//! kills racklift, run it as a process (`Racklift::start_process`); the others in-process.

mod common;

use common::proxy::Proxy;
use common::{
    Api, Options, Racklift, Site, journal_texts, lifecycle, wait_for, wait_lifecycle, wait_moved,
};
use serde_json::{Value, json};

/// A choice as NetBox stores it in a change record (a string) or shows it (`{value, label}`).
fn value(v: &Value) -> &Value {
    v.get("value").unwrap_or(v)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_setting_discovered_sees_the_device_claimed_for_provisioning() {
    let api = Api::new();
    let site = Site::new(&api, "claim").await;
    let id = site.device(&api, "srv1", "racked").await;
    let racklift = Racklift::start(&site, Options::default()).await;

    // An edit of another field: the event rule does not fire for it.
    api.patch(
        &format!("dcim/devices/{id}/"),
        json!({"description": "rack A1 U12"}),
    )
    .await;
    api.set_lifecycle(id, "discovered").await;
    let claimed = wait_moved(&api, id, "discovered", "provisioning").await;

    assert_eq!(value(&claimed["status"]), "staged");
    assert!(
        claimed["custom_fields"]["lifecycle_error"].is_null(),
        "{claimed}"
    );
    let stamp = &claimed["custom_fields"]["lifecycle_stamp"];
    assert_eq!(stamp["state"], "provisioning", "{stamp}");
    assert_eq!(stamp["attempt"], 0);
    let since: chrono::DateTime<chrono::Utc> = stamp["since"]
        .as_str()
        .expect("since")
        .parse()
        .expect("a time");
    assert!(
        (chrono::Utc::now() - since).num_seconds().abs() < 120,
        "{since}"
    );
    // NetBox recorded exactly one move, made by racklift's token.
    assert_eq!(api.moves(id, "discovered", "provisioning").await, 1);

    // Provisioning runs next; this device has no OOB IP, so it fails and says why.
    let device = wait_lifecycle(&api, id, "failed").await;
    let error = device["custom_fields"]["lifecycle_error"]
        .as_str()
        .expect("lifecycle_error");
    assert!(error.contains("has no OOB IP in NetBox"), "{error}");
    let journal = journal_texts(&api.journal(id).await);
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(
        journal[0],
        "info: racklift: discovered → provisioning: claimed for provisioning"
    );
    assert!(
        journal[1].starts_with("danger: racklift: provisioning → failed: provisioning:"),
        "{journal:?}"
    );
    // NetBox sends three webhooks (the operator's change and racklift's two writes; none for
    // the description): racklift reads the operator's and recognises its own two, which
    // carry exactly what it wrote, without a read.
    let about_device = |line: &&str| {
        line.split_whitespace()
            .any(|word| word == format!("device={id}"))
    };
    wait_for(
        "racklift to recognise its two writes coming back",
        || async {
            let log = racklift.log();
            let echoes = log
                .lines()
                .filter(|l| l.contains("webhook for racklift's own write"))
                .filter(about_device)
                .count();
            (echoes == 2).then_some(())
        },
    )
    .await;
    let queued = racklift
        .log()
        .lines()
        .filter(|l| l.contains("webhook queued"))
        .filter(about_device)
        .count();
    assert_eq!(queued, 1, "{}", racklift.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn validated_is_claimed_for_hardening_and_unbuilt_stages_are_left_alone() {
    let api = Api::new();
    let site = Site::new(&api, "harden").await;
    let validated = site.device(&api, "v", "racked").await;
    let ready = site.device(&api, "r", "racked").await;
    let unmanaged = site.device(&api, "u", "racked").await;
    api.patch(
        &format!("dcim/devices/{unmanaged}/"),
        json!({"custom_fields": {"lifecycle": null}}),
    )
    .await;
    let _racklift = Racklift::start(&site, Options::default()).await;

    api.set_lifecycle(ready, "ready").await;
    api.set_lifecycle(validated, "validated").await;
    let device = wait_lifecycle(&api, validated, "hardening").await;
    assert_eq!(device["status"]["value"], "staged");

    // `ready` belongs to the monitoring stage, not built yet: nothing written.
    let ready_device = api.device(ready).await;
    assert_eq!(lifecycle(&ready_device).as_deref(), Some("ready"));
    assert!(api.journal(ready).await.is_empty());
    assert_eq!(ready_device["status"]["value"], "planned");
    assert!(api.journal(unmanaged).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn validating_past_its_deadline_fails_with_the_reason_and_a_danger_entry() {
    let api = Api::new();
    let site = Site::new(&api, "deadline").await;
    let id = site.device(&api, "srv", "racked").await;
    let _racklift = Racklift::start(
        &site,
        Options {
            validating_deadline: "4s",
            ..Options::default()
        },
    )
    .await;

    api.set_lifecycle(id, "validating").await;
    // racklift stamps the state it did not write, so the deadline counts from then.
    let stamped = wait_for("the validating stamp", || async {
        let device = api.device(id).await;
        (device["custom_fields"]["lifecycle_stamp"]["state"] == "validating").then_some(device)
    })
    .await;
    assert_eq!(lifecycle(&stamped).as_deref(), Some("validating"));

    let device = wait_lifecycle(&api, id, "failed").await;
    assert_eq!(device["status"]["value"], "failed");
    let error = device["custom_fields"]["lifecycle_error"]
        .as_str()
        .expect("lifecycle_error");
    assert!(error.contains("no report within 4s"), "{error}");
    assert!(
        error.contains("set the lifecycle to provisioning to retry"),
        "{error}"
    );
    assert_eq!(
        device["custom_fields"]["lifecycle_stamp"]["state"],
        "failed"
    );
    let journal = journal_texts(&api.journal(id).await);
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(
        journal[0]
            .starts_with("danger: racklift: validating → failed: validation: no report within 4s"),
        "{journal:?}"
    );

    // The operator retries from failed: the error is cleared with racklift's next write.
    api.set_lifecycle(id, "discovered").await;
    let claimed = wait_moved(&api, id, "discovered", "provisioning").await;
    assert!(
        claimed["custom_fields"]["lifecycle_error"].is_null(),
        "{claimed}"
    );
    assert_eq!(value(&claimed["status"]), "staged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_changed_while_netbox_is_unreachable_is_reconciled_once_it_is_back() {
    let api = Api::new();
    let site = Site::new(&api, "outage").await;
    let id = site.device(&api, "srv", "racked").await;
    let proxy = Proxy::start(common::lab_addr()).await;
    let racklift = Racklift::start(
        &site,
        Options {
            netbox_url: proxy.url(),
            ..Options::default()
        },
    )
    .await;

    proxy.cut().await;
    api.set_lifecycle(id, "discovered").await;
    // The webhook arrives (NetBox reaches racklift directly); racklift cannot read NetBox.
    wait_for("racklift to retry while NetBox is unreachable", || async {
        (racklift.log().matches("is unreachable").count() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        lifecycle(&api.device(id).await).as_deref(),
        Some("discovered")
    );

    proxy.restore();
    wait_moved(&api, id, "discovered", "provisioning").await;
    assert_eq!(api.moves(id, "discovered", "provisioning").await, 1);
    assert_eq!(api.journal(id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_edit_made_while_racklift_decides_wins() {
    let api = Api::new();
    let site = Site::new(&api, "race").await;
    let id = site.device(&api, "srv", "racked").await;
    let pause = tempfile::tempdir().expect("pause dir");
    std::fs::write(pause.path().join(format!("arm-{id}")), b"").expect("arm");
    let racklift = Racklift::start_process(
        &site,
        Options {
            pause_dir: Some(pause.path().to_owned()),
            ..Options::default()
        },
    )
    .await;

    api.set_lifecycle(id, "discovered").await;
    // racklift has read the device (ETag taken) and decided to claim it; hold its write.
    wait_for("racklift to pause before its write", || async {
        common::exists(pause.path(), &format!("paused-{id}")).then_some(())
    })
    .await;
    // Meanwhile the operator changes their mind.
    api.set_lifecycle(id, "racked").await;
    std::fs::remove_file(pause.path().join(format!("arm-{id}"))).expect("disarm");
    std::fs::remove_file(pause.path().join(format!("paused-{id}"))).expect("release");

    wait_for(
        "racklift to see its write refused and decide again",
        || async {
            racklift
                .log()
                .contains("device changed while racklift decided")
                .then_some(())
        },
    )
    .await;
    wait_for("the dropped transition in the journal", || async {
        let journal = journal_texts(&api.journal(id).await);
        journal
            .iter()
            .any(|e| e.starts_with("warning: racklift: not applied (discovered → provisioning)"))
            .then_some(())
    })
    .await;
    let device = api.device(id).await;
    assert_eq!(
        lifecycle(&device).as_deref(),
        Some("racked"),
        "the operator's edit must stand"
    );
    assert_eq!(api.moves(id, "discovered", "provisioning").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_resync_alone_finishes_the_work_and_replays_advance_nothing() {
    let api = Api::new();
    let site = Site::new(&api, "crash").await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(site.device(&api, &format!("srv{n}"), "racked").await);
    }
    let pause = tempfile::tempdir().expect("pause dir");
    std::fs::write(pause.path().join("arm-all"), b"").expect("arm");
    let mut racklift = Racklift::start_process(
        &site,
        Options {
            pause_dir: Some(pause.path().to_owned()),
            resync: "2s",
            ..Options::default()
        },
    )
    .await;

    for &id in &ids {
        api.set_lifecycle(id, "discovered").await;
    }
    // Every device is mid-reconcile, its write held; then racklift dies.
    for &id in &ids {
        wait_for(&format!("device {id} held before its write"), || async {
            common::exists(pause.path(), &format!("paused-{id}")).then_some(())
        })
        .await;
    }
    racklift.kill();
    for &id in &ids {
        assert_eq!(
            lifecycle(&api.device(id).await).as_deref(),
            Some("discovered")
        );
    }

    // Start again with no pause and no new webhook: the resync finds the work.
    let options = Options {
        resync: "2s",
        ..Options::default()
    };
    racklift.restart(options).await;
    for &id in &ids {
        wait_moved(&api, id, "discovered", "provisioning").await;
        // Provisioning follows and fails on these BMC-less devices: the table's next state.
        wait_lifecycle(&api, id, "failed").await;
        assert_eq!(
            api.moves(id, "discovered", "provisioning").await,
            1,
            "device {id}"
        );
    }

    // Duplicate and out-of-order deliveries: the old "→ discovered" event again, twice, then
    // an even older "created" one. Each is accepted and none moves a device a second time.
    for &id in &ids {
        for event in ["updated", "updated", "created"] {
            let body = json!({
                "event": event, "timestamp": "2026-01-01T00:00:00+00:00", "object_type": "dcim.device",
                "username": "admin", "request_id": "replayed",
                "data": {"id": id, "custom_fields": {"lifecycle": {"value": "discovered"}}},
            });
            let (status, _) = racklift
                .deliver(&serde_json::to_vec(&body).expect("json"))
                .await;
            assert_eq!(status, 202);
        }
    }
    wait_for("the replayed webhooks to be worked off", || async {
        let health = racklift.health().await;
        (health["queue"]["waiting"] == 0 && health["queue"]["running"] == 0).then_some(())
    })
    .await;
    for &id in &ids {
        let device = api.device(id).await;
        assert_eq!(lifecycle(&device).as_deref(), Some("failed"));
        assert_eq!(
            api.moves(id, "discovered", "provisioning").await,
            1,
            "device {id}"
        );
        assert_eq!(
            api.moves(id, "provisioning", "failed").await,
            1,
            "device {id}"
        );
        let journal = journal_texts(&api.journal(id).await);
        let claims = journal
            .iter()
            .filter(|e| *e == "info: racklift: discovered → provisioning: claimed for provisioning")
            .count();
        // At most one repeat of the claim's entry: the one written before the crash.
        assert!((1..=2).contains(&claims), "device {id}: {journal:?}");
        assert_eq!(journal.len(), claims + 1, "device {id}: {journal:?}");
    }
}
