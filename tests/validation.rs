//! Validation against the lab's real NetBox and a real `racklift serve`: reports posted to
//! `POST /v1/validation` — by the validation script running in a namespace whose lldpd sees a
//! "switch" namespace, and as JSON for each mismatch and each kind of bad input.

mod common;

use common::lldp::Fabric;
use common::{Api, Options, Racklift, Site, lifecycle, unique, wait_for, wait_lifecycle};
use serde_json::{Value, json};

const TOKEN: &str = "validation-token-for-tests";

/// A server model with two NICs (eth0, eth1) and a BMC port in its device type, a device of it
/// in `state` with its own serial, and a switch with ports swp1..swp4.
struct Lab {
    device: u64,
    serial: String,
    switch: String,
    switch_id: u64,
}

async fn lab(api: &Api, site: &Site, state: &str) -> Lab {
    let manufacturer = api.results("dcim/manufacturers/?slug=rltest-vendor").await[0]["id"].clone();
    let slug = unique("vt");
    let device_type = api
        .post(
            "dcim/device-types/",
            json!({"manufacturer": manufacturer, "model": slug, "slug": slug}),
        )
        .await["id"]
        .as_u64()
        .expect("type id");
    for (name, mgmt) in [("eth0", false), ("eth1", false), ("bmc", true)] {
        api.post(
            "dcim/interface-templates/",
            json!({"device_type": device_type, "name": name, "type": "10gbase-t", "mgmt_only": mgmt}),
        )
        .await;
    }
    let role = api.results("dcim/device-roles/?slug=rltest-server").await[0]["id"].clone();
    let serial = format!("SN-{}", unique("s"));
    let device = api
        .post(
            "dcim/devices/",
            json!({"name": format!("{}-srv", site.slug), "site": site.id, "device_type": device_type, "role": role,
                   "serial": serial, "status": "planned", "custom_fields": {"lifecycle": state}}),
        )
        .await["id"]
        .as_u64()
        .expect("device id");
    let switch = format!("{}-sw", site.slug);
    let switch_id = api
        .post(
            "dcim/devices/",
            json!({"name": switch, "site": site.id, "device_type": device_type, "role": role, "status": "active"}),
        )
        .await["id"]
        .as_u64()
        .expect("switch id");
    for port in ["swp1", "swp2", "swp3", "swp4"] {
        api.post(
            "dcim/interfaces/",
            json!({"device": switch_id, "name": port, "type": "10gbase-t"}),
        )
        .await;
    }
    Lab {
        device,
        serial,
        switch,
        switch_id,
    }
}

/// One way a report differs from what NetBox expects.
type Change = Box<dyn Fn(&mut Value, &Lab)>;

fn report(lab: &Lab) -> Value {
    json!({
        "version": 1, "serial": lab.serial,
        "system": {"manufacturer": "Acme Corp", "product": "LabServer 1000", "uuid": null},
        "cpus": {"sockets": 1, "cores": 16, "threads": 32, "model": "Lab CPU"},
        "memory_bytes": 17179869184u64,
        "nics": [{"name": "eth0", "mac": "02:00:00:00:01:00", "speed_mbps": 10000, "operstate": "UP"},
                 {"name": "eth1", "mac": "02:00:00:00:01:01", "speed_mbps": 10000, "operstate": "UP"}],
        "disks": [{"name": "vda", "model": null, "serial": null, "size_bytes": 274877906944u64, "rotational": true}],
        "lldp": [{"interface": "eth0", "chassis_name": lab.switch, "chassis_id": "02:00:00:00:00:01", "port_id": "swp1", "port_id_type": "ifname", "port_description": null},
                 {"interface": "eth1", "chassis_name": lab.switch, "chassis_id": "02:00:00:00:00:01", "port_id": "swp2", "port_id_type": "ifname", "port_description": null}],
    })
}

async fn post(racklift: &Racklift, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/validation", racklift.port))
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn options() -> Options {
    Options {
        validation_token: Some(TOKEN.into()),
        ..Options::default()
    }
}

/// eth0 and eth1 carry the reported MACs as primary and are cabled to swp1 and swp2.
async fn assert_made_to_match(api: &Api, lab: &Lab) {
    let interfaces = api
        .results(&format!("dcim/interfaces/?device_id={}", lab.device))
        .await;
    for (name, mac, port) in [
        ("eth0", "02:00:00:00:01:00", "swp1"),
        ("eth1", "02:00:00:00:01:01", "swp2"),
    ] {
        let iface = interfaces.iter().find(|i| i["name"] == name).expect(name);
        assert_eq!(
            iface["primary_mac_address"]["mac_address"],
            mac.to_uppercase(),
            "{iface}"
        );
        assert_eq!(iface["link_peers"][0]["name"], port, "{iface}");
        assert_eq!(
            iface["link_peers"][0]["device"]["name"], lab.switch,
            "{iface}"
        );
    }
}

/// Everything a failed validation must leave untouched.
async fn snapshot(api: &Api, lab: &Lab) -> Value {
    json!({
        "interfaces": api.results(&format!("dcim/interfaces/?device_id={}", lab.device)).await.iter().map(|i| json!([i["name"], i["primary_mac_address"], i["cable"]])).collect::<Vec<_>>(),
        "switch": api.results(&format!("dcim/interfaces/?device_id={}", lab.switch_id)).await.iter().map(|i| json!([i["name"], i["cable"]])).collect::<Vec<_>>(),
        "macs": api.get(&format!("dcim/mac-addresses/?device_id={}", lab.device)).await["count"],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_matching_report_makes_netbox_match_and_validates_once() {
    let api = Api::new();
    let site = Site::new(&api, "valok").await;
    let lab = lab(&api, &site, "validating").await;
    let racklift = Racklift::start(&site, options()).await;

    let body = serde_json::to_vec(&report(&lab)).expect("json");
    let (status, answer) = post(&racklift, Some(TOKEN), body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "validated", "{answer}");
    let device = wait_lifecycle(&api, lab.device, "validated").await;
    assert_eq!(
        device["custom_fields"]["validation_results"]["verdict"],
        "passed"
    );
    assert!(device["custom_fields"]["lifecycle_error"].is_null());
    assert_made_to_match(&api, &lab).await;
    // racklift's own claim moves it on: validated → hardening.
    wait_lifecycle(&api, lab.device, "hardening").await;
    let journal = api.journal(lab.device).await;
    let verdict = journal
        .iter()
        .find(|e| {
            e["comments"]
                .as_str()
                .unwrap_or("")
                .starts_with("racklift: validating → validated: the server matches NetBox")
        })
        .expect("the verdict's journal entry");
    assert_eq!(verdict["kind"]["value"], "success");

    // The same report again: nothing changes.
    let before = snapshot(&api, &lab).await;
    let (status, answer) = post(&racklift, Some(TOKEN), body).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("already applied")),
        "{answer}"
    );
    assert_eq!(snapshot(&api, &lab).await, before);
    assert_eq!(api.journal(lab.device).await.len(), journal.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mismatch_fails_the_device_and_rewires_nothing() {
    let api = Api::new();
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "missing",
            Box::new(|r, _| {
                r["nics"].as_array_mut().expect("nics").remove(1);
                r["lldp"].as_array_mut().expect("lldp").remove(1);
            }),
            "NIC eth1: the device type has it, the server does not report it",
        ),
        (
            "extra",
            Box::new(|r, _| {
                r["nics"]
                    .as_array_mut()
                    .expect("nics")
                    .push(json!({"name": "eth7", "mac": "02:00:00:00:01:07"}))
            }),
            "NIC eth7 (02:00:00:00:01:07): the server has it, the device type does not",
        ),
        (
            "switch",
            Box::new(|r, _| r["lldp"][0]["chassis_name"] = json!("no-such-switch")),
            "LLDP on eth0: the switch \"no-such-switch\" is not a device in NetBox",
        ),
        (
            "port",
            Box::new(|r, _| r["lldp"][0]["port_id"] = json!("Ethernet99")),
            "has no port \"Ethernet99\" in NetBox",
        ),
        (
            "memory",
            Box::new(|r, _| r["memory_bytes"] = json!(8u64 << 30)),
            "memory: 8.0 GiB, expected at least 16 GiB",
        ),
    ];
    let site = Site::new(&api, "valbad").await;
    let racklift = Racklift::start(&site, options()).await;
    // A config context states what the operator expects of this site's servers.
    api.post(
        "extras/config-contexts/",
        json!({"name": format!("{}-expect", site.slug), "weight": 1000, "sites": [site.id],
               "data": {"racklift": {"expect": {"memory_gb_min": 16, "cpu_sockets": 1}}}}),
    )
    .await;
    for (name, change, reason) in cases {
        let sub = Site {
            id: site.id,
            slug: format!("{}-{name}", site.slug),
            ..site.clone()
        };
        let lab = lab(&api, &sub, "validating").await;
        let mut body = report(&lab);
        change(&mut body, &lab);
        let before = snapshot(&api, &lab).await;
        let (status, answer) = post(
            &racklift,
            Some(TOKEN),
            serde_json::to_vec(&body).expect("json"),
        )
        .await;
        assert_eq!(
            (status, answer["result"].as_str()),
            (200, Some("failed")),
            "{name}: {answer}"
        );
        let device = wait_lifecycle(&api, lab.device, "failed").await;
        let error = device["custom_fields"]["lifecycle_error"]
            .as_str()
            .unwrap_or("");
        assert!(error.contains(reason), "{name}: {error}");
        assert!(error.contains("nothing was changed"), "{name}: {error}");
        assert_eq!(
            device["custom_fields"]["validation_results"]["verdict"],
            "failed"
        );
        assert_eq!(
            snapshot(&api, &lab).await,
            before,
            "{name}: nothing rewired or created"
        );
        let journal = api.journal(lab.device).await;
        assert_eq!(
            journal.last().expect("entry")["kind"]["value"],
            "danger",
            "{name}"
        );
    }

    // A cable NetBox already has to another port: reported, never rewired.
    let sub = Site {
        id: site.id,
        slug: format!("{}-cable", site.slug),
        ..site.clone()
    };
    let lab = lab(&api, &sub, "validating").await;
    let eth0 = api
        .results(&format!(
            "dcim/interfaces/?device_id={}&name=eth0",
            lab.device
        ))
        .await[0]["id"]
        .clone();
    let swp3 = api
        .results(&format!(
            "dcim/interfaces/?device_id={}&name=swp3",
            lab.switch_id
        ))
        .await[0]["id"]
        .clone();
    api.post("dcim/cables/", json!({"a_terminations": [{"object_type": "dcim.interface", "object_id": eth0}],
                                    "b_terminations": [{"object_type": "dcim.interface", "object_id": swp3}]})).await;
    let before = snapshot(&api, &lab).await;
    let (status, answer) = post(
        &racklift,
        Some(TOKEN),
        serde_json::to_vec(&report(&lab)).expect("json"),
    )
    .await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("failed")),
        "{answer}"
    );
    let error =
        wait_lifecycle(&api, lab.device, "failed").await["custom_fields"]["lifecycle_error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
    assert!(
        error.contains(&format!(
            "cable on eth0: NetBox connects it to {} swp3, LLDP sees {} swp1",
            lab.switch, lab.switch
        )),
        "{error}"
    );
    assert_eq!(snapshot(&api, &lab).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_reports_are_refused_with_a_reason_and_write_nothing() {
    let api = Api::new();
    let site = Site::new(&api, "valin").await;
    let lab = lab(&api, &site, "validating").await;
    let racklift = Racklift::start(
        &site,
        Options {
            body_limit: 1024 * 1024,
            ..options()
        },
    )
    .await;
    let good = serde_json::to_vec(&report(&lab)).expect("json");
    let before = snapshot(&api, &lab).await;

    let (status, answer) = post(&racklift, None, good.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("missing `Authorization: Bearer")
    );
    let (status, _) = post(&racklift, Some("not-the-token"), good.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(&racklift, Some(TOKEN), vec![b' '; 5 * 1024 * 1024]).await;
    assert_eq!(status, 413);
    let (status, answer) = post(&racklift, Some(TOKEN), b"{\"version\": 1,".to_vec()).await;
    assert_eq!(status, 400, "{answer}");
    let mut no_serial = report(&lab);
    no_serial.as_object_mut().expect("object").remove("serial");
    let (status, answer) = post(
        &racklift,
        Some(TOKEN),
        serde_json::to_vec(&no_serial).expect("json"),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("missing field `serial`"),
        "{answer}"
    );
    let mut bad_type = report(&lab);
    bad_type["nics"][0]["mac"] = json!("not-a-mac");
    let (status, answer) = post(
        &racklift,
        Some(TOKEN),
        serde_json::to_vec(&bad_type).expect("json"),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("nics[0].mac"),
        "{answer}"
    );
    let mut stranger = report(&lab);
    stranger["serial"] = json!("SN-NOBODY-HAS-THIS");
    let (status, answer) = post(
        &racklift,
        Some(TOKEN),
        serde_json::to_vec(&stranger).expect("json"),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("no device in NetBox has the serial"),
        "{answer}"
    );
    assert_eq!(snapshot(&api, &lab).await, before);
    assert!(
        api.journal(lab.device)
            .await
            .iter()
            .all(|e| !e["comments"].as_str().unwrap_or("").contains("validated"))
    );

    // Not validating (here: racked): 409 and nothing written.
    api.set_lifecycle(lab.device, "racked").await;
    let (status, answer) = post(&racklift, Some(TOKEN), good.clone()).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("is racked, not validating"),
        "{answer}"
    );
    assert_eq!(snapshot(&api, &lab).await, before);

    // After the deadline moved it to failed: 409, and journaled for the operator.
    api.set_lifecycle(lab.device, "failed").await;
    let (status, answer) = post(&racklift, Some(TOKEN), good).await;
    assert_eq!(status, 409, "{answer}");
    let journal = api.journal(lab.device).await;
    assert!(
        journal.last().expect("entry")["comments"]
            .as_str()
            .unwrap_or("")
            .contains("arrived while the device is failed")
    );
    assert_eq!(snapshot(&api, &lab).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_validation_script_reports_what_lldp_sees_and_netbox_is_made_to_match() {
    let api = Api::new();
    let site = Site::new(&api, "valnet").await;
    let lab = lab(&api, &site, "validating").await;
    // The SMBIOS dump the script reads says SN-LAB-0001: this test's device takes that serial
    // (from any device an earlier run left with it).
    for stale in api.results("dcim/devices/?serial=SN-LAB-0001").await {
        api.patch(
            &format!("dcim/devices/{}/", stale["id"]),
            json!({"serial": ""}),
        )
        .await;
    }
    api.patch(
        &format!("dcim/devices/{}/", lab.device),
        json!({"serial": "SN-LAB-0001"}),
    )
    .await;
    let racklift = Racklift::start(&site, options()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut fabric = Fabric::new("val", dir.path());
    fabric.link("eth0", "swp1", "02:00:00:00:01:00");
    fabric.link("eth1", "swp2", "02:00:00:00:01:01");
    fabric
        .start(
            &lab.switch,
            &[("swp1", "to srv eth0"), ("swp2", "to srv eth1")],
        )
        .await;
    fabric.wait_neighbours(2).await;
    fabric.connect_racklift(racklift.port);
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token file");
    let out = fabric
        .run_validation(&["--token-file", token.to_str().expect("utf-8")])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the script never prints the token"
    );
    let sent: Value = serde_json::from_str(&stdout).expect("the script prints the report it sent");
    assert_eq!(sent["serial"], "SN-LAB-0001");
    assert_eq!(sent["lldp"].as_array().map(Vec::len), Some(2), "{sent}");

    let device = wait_for("validated (or claimed for hardening)", || async {
        let device = api.device(lab.device).await;
        matches!(
            lifecycle(&device).as_deref(),
            Some("validated" | "hardening")
        )
        .then_some(device)
    })
    .await;
    assert_eq!(api.moves(lab.device, "validating", "validated").await, 1);
    let results = &device["custom_fields"]["validation_results"];
    assert_eq!(results["verdict"], "passed", "{results}");
    assert_eq!(results["memory_bytes"], 17179869184u64);
    assert_made_to_match(&api, &lab).await;
    let journal = api.journal(lab.device).await;
    assert!(journal.iter().any(|e| {
        e["kind"]["value"] == "success"
            && e["comments"]
                .as_str()
                .unwrap_or("")
                .starts_with("racklift: validating → validated: the server matches NetBox (2 NICs")
    }));
}
