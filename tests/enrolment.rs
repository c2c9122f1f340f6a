//! racklift on a NetBox that already runs a fleet: servers that were in NetBox before
//! `racklift netbox apply` (a fresh install, and an install upgraded from the racklift whose
//! `lifecycle` field defaulted to `racked`) are never touched, even when their BMCs take real
//! DHCP leases through a real Kea and the repository's hook; `racklift dhcp-spool` lists those
//! leases as not managed. Only devices someone enrolled move.
//!
//! This test deletes racklift's custom fields from the lab NetBox to build those installations,
//! so it holds the lab's custom fields for itself (tests/common: `own_custom_fields`).

mod common;

use std::path::Path;

use common::dhcp::{Lan, SUBNET, Server};
use common::proxy::Proxy;
use common::{
    Api, Options, Racklift, Site, fresh_mac, lab_addr, racklift, wait_for, write_hook_config,
};
use serde_json::{Value, json};

/// The custom fields and choice set `racklift netbox apply` creates.
const FIELDS: [&str; 4] = [
    "lifecycle",
    "lifecycle_error",
    "validation_results",
    "lifecycle_stamp",
];

/// NetBox as it was before racklift: none of its custom fields.
async fn remove_racklift_fields(api: &Api) {
    for name in FIELDS {
        for field in api
            .results(&format!("extras/custom-fields/?name={name}"))
            .await
        {
            api.delete(&format!("extras/custom-fields/{}/", field["id"]))
                .await;
        }
    }
    for set in api
        .results("extras/custom-field-choice-sets/?name=lifecycle_states")
        .await
    {
        api.delete(&format!("extras/custom-field-choice-sets/{}/", set["id"]))
            .await;
    }
}

/// A running production server as NetBox had it before racklift: status active, a BMC
/// interface with its MAC, no racklift field set.
async fn production_server(api: &Api, site: &Site, name: &str, bmc_mac: &str) -> (u64, u64) {
    let device = api
        .post(
            "dcim/devices/",
            json!({"name": format!("{}-{name}", site.slug), "site": site.id,
                   "device_type": site.device_type, "role": site.role, "status": "active"}),
        )
        .await["id"]
        .as_u64()
        .expect("device id");
    let iface = api
        .post(
            "dcim/interfaces/",
            json!({"device": device, "name": "bmc", "type": "1000base-t", "mgmt_only": true}),
        )
        .await["id"]
        .as_u64()
        .expect("interface id");
    let mac = api
        .post(
            "dcim/mac-addresses/",
            json!({"mac_address": bmc_mac, "assigned_object_type": "dcim.interface", "assigned_object_id": iface}),
        )
        .await;
    api.patch(
        &format!("dcim/interfaces/{iface}/"),
        json!({"primary_mac_address": mac["id"]}),
    )
    .await;
    (device, iface)
}

/// What a racklift write would change on a device: its fields, journal, changelog, addresses.
async fn fingerprint(api: &Api, device: u64, iface: u64) -> Value {
    let d = api.device(device).await;
    json!({
        "lifecycle": d["custom_fields"]["lifecycle"],
        "status": d["status"]["value"],
        "oob_ip": d["oob_ip"],
        "last_updated": d["last_updated"],
        "journal": api.journal(device).await.len(),
        "changes": api.changes(device).await.len(),
        "addresses": api.results(&format!("ipam/ip-addresses/?interface_id={iface}")).await.len(),
    })
}

fn stdout(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn counter(dir: &Path, key: &str) -> u64 {
    std::fs::read_to_string(dir.join("spool/counters.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|c| c[key].as_u64())
        .unwrap_or(0)
}

/// A real lease for `mac` from Kea, through the hook; waits until the drain has dealt with it.
async fn lease(lan: &mut Lan, dir: &Path, mac: &str, counted_as: &str) {
    let before = counter(dir, counted_as);
    let client = lan.client(mac, "bmc");
    client.bound().await;
    wait_for(&format!("the lease of {mac} to be drained"), || async {
        (counter(dir, counted_as) > before).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_in_netbox_before_racklift_are_never_touched_by_apply_or_their_bmcs_leases() {
    common::own_custom_fields();
    let api = Api::new();
    let site = Site::new(&api, "enrol").await;
    // --- A fresh install: the fleet is in NetBox, then racklift is applied. ---
    remove_racklift_fields(&api).await;
    let vrf = api
        .post(
            "ipam/vrfs/",
            json!({"name": site.slug, "enforce_unique": true}),
        )
        .await;
    api.post(
        "ipam/prefixes/",
        json!({"prefix": SUBNET, "vrf": vrf["id"], "status": "active", "scope_type": "dcim.site", "scope_id": site.id}),
    )
    .await;
    let old_mac = fresh_mac();
    let (old, old_iface) = production_server(&api, &site, "prod-old", &old_mac).await;
    let old_print = fingerprint(&api, old, old_iface).await;

    // `netbox apply` (through a real racklift serve) gives the devices nothing.
    let racklift_serve = Racklift::start(&site, Options::default()).await;
    let field = api.results("extras/custom-fields/?name=lifecycle").await;
    assert!(field[0]["default"].is_null(), "{}", field[0]);
    assert_eq!(fingerprint(&api, old, old_iface).await, old_print);

    // An enrolled server beside it, to show the same hook does move the servers it should.
    let new_mac = fresh_mac();
    let (enrolled, _) = production_server(&api, &site, "enrolled", &new_mac).await;
    api.set_lifecycle(enrolled, "racked").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = Lan::new("en", dir.path());
    let proxy = Proxy::start_on(&lan.uplink_ip, lab_addr()).await;
    let hook = write_hook_config(dir.path(), &proxy.url());
    // The DHCP host's racklift manages servers only: the role filter is the same scope the
    // reconciler applies.
    let mut config = std::fs::read_to_string(&hook).expect("hook config");
    config.push_str("scope: {roles: [rltest-server]}\n");
    std::fs::write(&hook, config).expect("hook config");
    lan.start_server(Server::Kea, &hook).await;

    // Enrolled, but a switch: outside the DHCP host's scope.
    let switch_role = api
        .get_or_create(
            "dcim/device-roles/",
            "rltest-switch",
            json!({"name": "rltest switch", "slug": "rltest-switch"}),
        )
        .await;
    let switch_mac = fresh_mac();
    let (switch, switch_iface) = production_server(&api, &site, "switch", &switch_mac).await;
    api.patch(
        &format!("dcim/devices/{switch}/"),
        json!({"role": switch_role["id"], "custom_fields": {"lifecycle": "racked"}}),
    )
    .await;
    let switch_print = fingerprint(&api, switch, switch_iface).await;

    lease(&mut lan, dir.path(), &old_mac, "unmanaged").await;
    lease(&mut lan, dir.path(), &switch_mac, "unmanaged").await;
    lease(&mut lan, dir.path(), &new_mac, "applied").await;
    common::wait_moved(&api, enrolled, "racked", "discovered").await;
    assert_eq!(
        fingerprint(&api, old, old_iface).await,
        old_print,
        "a lease from an unenrolled server's BMC changes nothing on it"
    );
    let listed = stdout(&racklift(&hook, &["dhcp-spool", "unmanaged"]));
    let line = listed
        .lines()
        .find(|l| l.starts_with(&old_mac.to_uppercase()))
        .unwrap_or_else(|| panic!("{old_mac} listed: {listed}"));
    assert!(
        line.contains("not managed") && line.contains("lifecycle is empty"),
        "{line}"
    );
    assert!(
        !listed.contains(&new_mac.to_uppercase()),
        "the enrolled server is not listed: {listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&switch_mac.to_uppercase())
                && l.contains("outside this racklift's scope")),
        "{listed}"
    );
    assert_eq!(fingerprint(&api, switch, switch_iface).await, switch_print);
    let status = stdout(&racklift(&hook, &["dhcp-spool"]));
    assert!(status.contains("not managed  2"), "{status}");
    drop(racklift_serve);

    // --- An install upgraded from the racklift whose lifecycle defaulted to `racked`. ---
    remove_racklift_fields(&api).await;
    let current = common::custom_fields_yaml();
    assert!(current.contains("    default: null\n"), "{current}");
    let applied = common::apply_custom_fields(
        &current.replace("    default: null\n", "    default: racked\n"),
    );
    assert!(applied.status.success(), "{}", stdout(&applied));
    // What the old definition did: NetBox gave the default to the server already there.
    let enrolled_by_default = api.device(old).await;
    assert_eq!(
        common::lifecycle(&enrolled_by_default).as_deref(),
        Some("racked"),
        "NetBox copies a new field's default onto existing devices"
    );

    // The upgrade: the default goes, the values stay, and a note says what to review.
    let old_print = fingerprint(&api, old, old_iface).await;
    let applied = common::apply_custom_fields(&current);
    let said = stdout(&applied);
    assert!(applied.status.success(), "{said}");
    assert!(
        said.contains("update custom field \"lifecycle\":\n    default: \"racked\" → null"),
        "{said}"
    );
    assert!(
        said.contains("note: the lifecycle field no longer has a default"),
        "{said}"
    );
    assert_eq!(
        fingerprint(&api, old, old_iface).await,
        old_print,
        "removing the default changes no device"
    );
    let again = stdout(&common::apply_custom_fields(&current));
    assert!(
        again.contains("0 changed"),
        "a second apply changes nothing: {again}"
    );
    let upgrade = Racklift::start(&site, Options::default()).await;
    let field = api.results("extras/custom-fields/?name=lifecycle").await;
    assert!(field[0]["default"].is_null(), "{}", field[0]);
    let later_mac = fresh_mac();
    let (later, later_iface) = production_server(&api, &site, "prod-later", &later_mac).await;
    let later_print = fingerprint(&api, later, later_iface).await;
    assert!(later_print["lifecycle"].is_null(), "{later_print}");
    lease(&mut lan, dir.path(), &later_mac, "unmanaged").await;
    assert_eq!(fingerprint(&api, later, later_iface).await, later_print);
    drop(upgrade);
}
