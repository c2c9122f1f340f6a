//! `racklift netbox apply` against the lab's real NetBox: creates what is missing, a second run
//! changes nothing, `--check` reports drift (a secret only as "differs") and exits non-zero,
//! and an unreachable NetBox or a refused token is named as such.

mod common;

use std::process::Output;

use common::{Api, Options, Racklift, Site};
use serde_json::json;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_is_idempotent_and_check_reports_drift_without_showing_secrets() {
    let api = Api::new();
    let site = Site::new(&api, "apply").await;
    // Starting racklift applied its objects once already.
    let racklift = Racklift::start(&site, Options::default()).await;
    let webhook = api
        .results(&format!("extras/webhooks/?name={}", racklift.instance))
        .await;
    assert_eq!(webhook.len(), 1);
    let webhook = &webhook[0];
    assert_eq!(webhook["payload_url"], racklift.hook_url());
    assert_eq!(webhook["secret"], racklift.secret);
    assert_eq!(webhook["ssl_verification"], true);
    let rule = &api
        .results(&format!(
            "extras/event-rules/?name={}-lifecycle-changed",
            racklift.instance
        ))
        .await[0];
    assert_eq!(rule["action_object_id"], webhook["id"]);
    assert_eq!(
        rule["conditions"],
        json!({"and": [
            {"attr": "custom_fields.lifecycle", "op": "changed"},
            {"attr": "site.slug", "value": site.slug},
        ]})
    );
    assert_eq!(
        rule["event_types"],
        json!(["object_created", "object_updated"])
    );
    let field = &api.results("extras/custom-fields/?name=lifecycle").await[0];
    assert_eq!(field["choice_set"]["name"], "lifecycle_states");
    assert!(
        field["default"].is_null(),
        "no default: a device is racklift's only once enrolled: {field}"
    );

    let again = racklift.run(&["netbox", "apply"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("0 changed, 7 unchanged"),
        "{}",
        text(&again)
    );
    let check = racklift.run(&["netbox", "apply", "--check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("0 differ"), "{}", text(&check));

    // Someone edits racklift's webhook by hand.
    let hand_secret = "typed-by-hand-in-the-ui";
    api.patch(
        &format!("extras/webhooks/{}/", webhook["id"]),
        json!({"secret": hand_secret, "payload_url": "http://127.0.0.1:9/elsewhere"}),
    )
    .await;
    let check = racklift.run(&["netbox", "apply", "--check"]);
    let shown = text(&check);
    assert_eq!(check.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("would update webhook \"{}\"", racklift.instance)),
        "{shown}"
    );
    assert!(shown.contains("secret: differs"), "{shown}");
    assert!(
        shown.contains("payload_url: \"http://127.0.0.1:9/elsewhere\" → "),
        "{shown}"
    );
    assert!(
        !shown.contains(hand_secret) && !shown.contains(&racklift.secret),
        "{shown}"
    );
    assert!(shown.contains("1 differ, 6 unchanged"), "{shown}");
    // --check wrote nothing.
    let still = api
        .get(&format!("extras/webhooks/{}/", webhook["id"]))
        .await;
    assert_eq!(still["secret"], hand_secret);

    let fix = racklift.run(&["netbox", "apply"]);
    assert!(fix.status.success(), "{}", text(&fix));
    assert!(!text(&fix).contains(hand_secret));
    let fixed = api
        .get(&format!("extras/webhooks/{}/", webhook["id"]))
        .await;
    assert_eq!(fixed["secret"], racklift.secret);
    assert_eq!(fixed["payload_url"], racklift.hook_url());
    // Fields the files do not mention are left alone.
    api.patch(
        &format!("extras/webhooks/{}/", webhook["id"]),
        json!({"additional_headers": "X-Site: a1"}),
    )
    .await;
    let check = racklift.run(&["netbox", "apply", "--check"]);
    assert!(check.status.success(), "{}", text(&check));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_netbox_and_a_refused_token_are_named() {
    let api = Api::new();
    let site = Site::new(&api, "applyerr").await;
    let racklift = Racklift::start(&site, Options::default()).await;
    let config = std::fs::read_to_string(racklift.config_path()).expect("config");

    let dead = format!("http://127.0.0.1:{}", common::free_port());
    std::fs::write(
        racklift.config_path(),
        config.replace(&common::lab().url, &dead),
    )
    .expect("write");
    let out = racklift.run(&["netbox", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("NetBox at {dead}/ is unreachable")),
        "{}",
        text(&out)
    );

    std::fs::write(racklift.config_path(), &config).expect("write");
    std::fs::write(
        racklift.dir.path().join("netbox-token"),
        "0123456789012345678901234567890123456789",
    )
    .expect("token");
    let out = racklift.run(&["netbox", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("NetBox refused racklift's API token (HTTP 403"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("0123456789012345678901234567890123456789"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v2_token_works() {
    let Some(v2) = common::lab().token_v2.clone() else {
        panic!("the lab has no v2 token (NETBOX_TOKEN_V2): run scripts/lab up");
    };
    let api = Api::new();
    let site = Site::new(&api, "v2").await;
    let racklift = Racklift::start(
        &site,
        Options {
            token: v2,
            ..Options::default()
        },
    )
    .await;
    let check = racklift.run(&["netbox", "apply", "--check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("0 differ, 7 unchanged"),
        "{}",
        text(&check)
    );
}
