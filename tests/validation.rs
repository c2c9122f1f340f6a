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
    lab_with(api, site, state, &["eth0", "eth1"]).await
}

/// [`lab`] with these NICs (at most four: the switch has four ports).
async fn lab_with(api: &Api, site: &Site, state: &str, nics: &[&str]) -> Lab {
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
    let ports = nics.iter().map(|n| (*n, false)).chain([("bmc", true)]);
    for (name, mgmt) in ports {
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

/// Posts a report as racklift-validate does: a `503` with `Retry-After` (the device changed
/// while the report was applied, say) is posted again after the delay, a few times.
async fn post(racklift: &Racklift, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    post_as_script(racklift.port, token, body).await
}

/// [`post`] to racklift on `port`.
async fn post_as_script(port: u16, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut tries = 0;
    loop {
        let (status, retry_after, answer) = post_to(port, token, body.clone()).await;
        let delay = retry_after.and_then(|s| s.parse::<u64>().ok());
        match delay {
            Some(secs) if status == 503 && tries < 3 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            }
            _ => return (status, answer),
        }
    }
}

/// Posts a report to racklift on `port`; the answer's status, `Retry-After` and body. No
/// answer within the harness's wait fails the test.
async fn post_to(port: u16, token: Option<&str>, body: Vec<u8>) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/validation"))
        .timeout(common::WAIT)
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn json_body(report: &Value) -> Vec<u8> {
    serde_json::to_vec(report).expect("json")
}

fn error_of(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or("")
}

fn options() -> Options {
    Options {
        validation_token: Some(TOKEN.into()),
        ..Options::default()
    }
}

/// Waits until racklift's resync at start has stamped `devices` (it finds them validating with
/// no stamp of its own) and nothing runs. A report applied meanwhile may read a device before
/// that stamp's write and then see its verdict's conditional PATCH refused (412, answered 503:
/// the script posts again); a test that watches one apply starts after the stamps.
async fn wait_stamped(api: &Api, racklift: &Racklift, devices: &[u64]) {
    wait_for(
        "racklift to stamp the devices validating and be idle",
        || async {
            for id in devices {
                let device = api.device(*id).await;
                if device["custom_fields"]["lifecycle_stamp"]["state"] != "validating" {
                    return None;
                }
            }
            (racklift.health().await["queue"]["running"] == 0).then_some(())
        },
    )
    .await;
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

/// The journal entries of a device that refuse a report.
async fn refusals(api: &Api, device: u64) -> Vec<String> {
    api.journal(device)
        .await
        .iter()
        .filter_map(|e| e["comments"].as_str())
        .filter(|c| c.contains("was refused") || c.contains("it was refused"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_report_is_checked_again_once_the_device_is_validating_again() {
    let api = Api::new();
    let site = Site::new(&api, "valre").await;
    let lab = lab(&api, &site, "validating").await;
    let racklift = Racklift::start(&site, options()).await;
    // eth1 is cabled to swp5, a port the operator has not recorded in NetBox yet.
    let mut report = report(&lab);
    report["lldp"][1]["port_id"] = json!("swp5");
    let body = json_body(&report);
    let (status, answer) = post(&racklift, Some(TOKEN), body.clone()).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("failed")),
        "{answer}"
    );
    wait_lifecycle(&api, lab.device, "failed").await;

    // The same report while the device is failed: refused, not "already applied".
    let (status, answer) = post(&racklift, Some(TOKEN), body.clone()).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        error_of(&answer).contains("is failed, not validating"),
        "{answer}"
    );

    // The operator fixes NetBox and sends the device through provisioning again; the server
    // boots the validation image again and sends the very same report.
    api.post(
        "dcim/interfaces/",
        json!({"device": lab.switch_id, "name": "swp5", "type": "10gbase-t"}),
    )
    .await;
    api.set_lifecycle(lab.device, "validating").await;
    let (status, answer) = post(&racklift, Some(TOKEN), body.clone()).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("validated")),
        "{answer}"
    );
    let eth1 = api
        .results(&format!(
            "dcim/interfaces/?device_id={}&name=eth1",
            lab.device
        ))
        .await;
    assert_eq!(eth1[0]["link_peers"][0]["name"], "swp5", "{eth1:?}");
    wait_lifecycle(&api, lab.device, "hardening").await;
    // Now it is applied, and the device has moved on.
    let (status, answer) = post(&racklift, Some(TOKEN), body).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("already applied")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_for_one_device_are_applied_one_at_a_time() {
    let api = Api::new();
    let site = Site::new(&api, "valone").await;
    let lab = lab(&api, &site, "validating").await;
    // A switch of the same name in another site: names are unique per site only. The one in
    // the server's site is the switch.
    let elsewhere = Site::new(&api, "valone2").await;
    api.post(
        "dcim/devices/",
        json!({"name": lab.switch, "site": elsewhere.id, "device_type": elsewhere.device_type,
               "role": elsewhere.role, "status": "active"}),
    )
    .await;
    let racklift = Racklift::start(&site, options()).await;
    let body = json_body(&report(&lab));
    // The script's retry while the first post is still being applied, and one more.
    let (a, b, c) = tokio::join!(
        post(&racklift, Some(TOKEN), body.clone()),
        post(&racklift, Some(TOKEN), body.clone()),
        post(&racklift, Some(TOKEN), body),
    );
    let mut results: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|(status, answer)| {
            assert_eq!(*status, 200, "{answer}");
            answer["result"].as_str().unwrap_or("?").to_owned()
        })
        .collect();
    results.sort();
    assert_eq!(
        results,
        ["already applied", "already applied", "validated"],
        "{a:?} {b:?} {c:?}"
    );
    assert_made_to_match(&api, &lab).await;
    let macs = api
        .get(&format!("dcim/mac-addresses/?device_id={}", lab.device))
        .await;
    assert_eq!(macs["count"], 2, "one MAC object per NIC: {macs}");
    assert_eq!(api.moves(lab.device, "validating", "validated").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_or_ambiguous_names_are_refused_or_differences_never_guesses() {
    let api = Api::new();
    let site = Site::new(&api, "valamb").await;
    let lab = lab(&api, &site, "validating").await;
    let racklift = Racklift::start(&site, options()).await;
    let before = snapshot(&api, &lab).await;

    // NetBox would ignore an empty serial filter and answer every device.
    for serial in ["", "  "] {
        let mut blank = report(&lab);
        blank["serial"] = json!(serial);
        let (status, answer) = post(&racklift, Some(TOKEN), json_body(&blank)).await;
        assert_eq!(status, 422, "{answer}");
        assert!(error_of(&answer).contains("serial: empty"), "{answer}");
    }

    // Two ports of the switch share a description; two devices in two other sites are named
    // like the switch one neighbour announces.
    for port in ["swp3", "swp4"] {
        let id = api
            .results(&format!(
                "dcim/interfaces/?device_id={}&name={port}",
                lab.switch_id
            ))
            .await[0]["id"]
            .clone();
        api.patch(
            &format!("dcim/interfaces/{id}/"),
            json!({"description": "uplink"}),
        )
        .await;
    }
    let twin = unique("twin");
    for name in ["valamb-a", "valamb-b"] {
        let other = Site::new(&api, name).await;
        api.post(
            "dcim/devices/",
            json!({"name": twin, "site": other.id, "device_type": other.device_type,
                   "role": other.role, "status": "active"}),
        )
        .await;
    }
    let mut ambiguous = report(&lab);
    ambiguous["lldp"] = json!([
        {"interface": "eth0", "chassis_name": "", "port_id": "swp1"},
        {"interface": "eth0", "chassis_name": lab.switch, "port_id": "", "port_description": "uplink"},
        {"interface": "eth1", "chassis_name": twin, "port_id": "swp2"},
        {"interface": "eth1", "chassis_name": lab.switch, "port_id": " ", "port_description": ""},
    ]);
    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&ambiguous)).await;
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
    for expected in [
        "LLDP on eth0: the neighbour on port \"swp1\" sends no system name".to_owned(),
        format!(
            "LLDP on eth0: 2 ports of the switch {} in NetBox have the description \"uplink\"",
            lab.switch
        ),
        format!("LLDP on eth1: 2 devices in NetBox are named \"{twin}\" (0 in the server's site)"),
        format!(
            "LLDP on eth1: the neighbour on the switch {} sends neither a port id nor a port description",
            lab.switch
        ),
    ] {
        assert!(error.contains(&expected), "{expected}\nnot in:\n{error}");
    }
    assert_eq!(snapshot(&api, &lab).await, before, "nothing cabled or made");
}

#[tokio::test(flavor = "multi_thread")]
async fn lldp_on_a_nic_the_report_does_not_list_is_a_difference_and_writes_nothing() {
    let api = Api::new();
    let site = Site::new(&api, "valnic").await;
    let lab = lab(&api, &site, "validating").await;
    let racklift = Racklift::start(&site, options()).await;
    let before = snapshot(&api, &lab).await;
    let mut body = report(&lab);
    body["lldp"][1]["interface"] = json!("eth9");
    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&body)).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("failed")),
        "{answer}"
    );
    assert_eq!(
        answer["differences"],
        json!(["LLDP on \"eth9\": the server reports no NIC of that name"])
    );
    wait_lifecycle(&api, lab.device, "failed").await;
    assert_eq!(snapshot(&api, &lab).await, before, "no MAC, no cable");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_must_carry_a_mac_netbox_records_and_come_from_the_provisioning_network() {
    let api = Api::new();
    let site = Site::new(&api, "valbind").await;
    let lab = lab(&api, &site, "validating").await;
    let mut racklift = Racklift::start(&site, options()).await;
    // The operator recorded eth0's MAC (from the purchase order, say): 02:00:00:00:0a:00.
    let eth0 = api
        .results(&format!(
            "dcim/interfaces/?device_id={}&name=eth0",
            lab.device
        ))
        .await[0]["id"]
        .clone();
    let mac = api
        .post(
            "dcim/mac-addresses/",
            json!({"mac_address": "02:00:00:00:0a:00", "assigned_object_type": "dcim.interface",
                   "assigned_object_id": eth0}),
        )
        .await["id"]
        .clone();
    api.patch(
        &format!("dcim/interfaces/{eth0}/"),
        json!({"primary_mac_address": mac}),
    )
    .await;
    let before = snapshot(&api, &lab).await;

    // A report naming the serial but none of the recorded MACs: another server's, or made up.
    let stranger = json_body(&report(&lab));
    for _ in 0..2 {
        let (status, answer) = post(&racklift, Some(TOKEN), stranger.clone()).await;
        assert_eq!(status, 403, "{answer}");
        assert!(
            error_of(&answer).contains("NetBox records the MAC addresses 02:00:00:00:0A:00"),
            "{answer}"
        );
    }
    assert_eq!(
        lifecycle(&api.device(lab.device).await).as_deref(),
        Some("validating")
    );
    assert_eq!(snapshot(&api, &lab).await, before);
    // Other made-up MACs: refused, and still one journal entry (it names none of them).
    let mut other = report(&lab);
    other["nics"][1]["mac"] = json!("02:00:00:00:0e:0e");
    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&other)).await;
    assert_eq!(status, 403, "{answer}");
    let refused = refusals(&api, lab.device).await;
    assert_eq!(refused.len(), 1, "journaled once: {refused:?}");

    // Only from the provisioning network: this test's requests come from 127.0.0.1.
    racklift
        .restart(Options {
            validation: "  sources: [10.213.0.0/16, 'fd00:213::/48']\n".into(),
            ..options()
        })
        .await;
    let mut own = report(&lab);
    own["nics"][0]["mac"] = json!("02:00:00:00:0a:00");
    let own = json_body(&own);
    for _ in 0..2 {
        let (status, answer) = post(&racklift, Some(TOKEN), own.clone()).await;
        assert_eq!(status, 403, "{answer}");
        assert!(
            error_of(&answer).contains(
                "it was sent from outside validation.sources: 10.213.0.0/16, fd00:213::/48 (it came from 127.0.0.1)"
            ),
            "{answer}"
        );
    }
    assert_eq!(refusals(&api, lab.device).await.len(), 2);
    assert_eq!(snapshot(&api, &lab).await, before);
    assert!(racklift.log().contains("(it came from 127.0.0.1)"));

    racklift
        .restart(Options {
            validation: "  sources: [127.0.0.0/8]\n".into(),
            ..options()
        })
        .await;
    let (status, answer) = post(&racklift, Some(TOKEN), own).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("validated")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_for_a_device_racklift_does_not_manage_writes_nothing() {
    let api = Api::new();
    let site = Site::new(&api, "valunm").await;
    let racklift = Racklift::start(&site, options()).await;
    let other = Site::new(&api, "valunm2").await;
    let not_enrolled = lab(&api, &site, "validating").await;
    api.patch(
        &format!("dcim/devices/{}/", not_enrolled.device),
        json!({"custom_fields": {"lifecycle": null}}),
    )
    .await;
    let out_of_scope = lab(&api, &other, "validating").await;
    let failed_elsewhere = lab(
        &api,
        &Site {
            slug: format!("{}-f", other.slug),
            ..other.clone()
        },
        "failed",
    )
    .await;
    for (lab, reason) in [
        (&out_of_scope, "outside this racklift's scope"),
        (&failed_elsewhere, "outside this racklift's scope"),
        (&not_enrolled, "not managed: its lifecycle is empty"),
    ] {
        let before = snapshot(&api, lab).await;
        let (status, answer) = post(&racklift, Some(TOKEN), json_body(&report(lab))).await;
        assert_eq!(status, 409, "{answer}");
        assert!(error_of(&answer).contains(reason), "{answer}");
        assert_eq!(snapshot(&api, lab).await, before);
        assert!(api.journal(lab.device).await.is_empty(), "no journal entry");
    }
    assert_eq!(
        lifecycle(&api.device(out_of_scope.device).await).as_deref(),
        Some("validating")
    );
}

/// Raw HTTP/1.1 on a TCP connection: what a slow or hostile client sends.
async fn connect(port: u16, head: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

/// Everything the server sends until it closes the connection (or until the harness's wait
/// is up: then the test fails).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(common::WAIT, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {:?}; it sent {:?}",
        common::WAIT,
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

fn head(token: &str, length: usize) -> String {
    format!(
        "POST /v1/validation HTTP/1.1\r\nHost: racklift\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_checked_before_the_body_and_bodies_are_bounded_in_size_time_and_entries() {
    let api = Api::new();
    let site = Site::new(&api, "vallim").await;
    let lab = lab(&api, &site, "validating").await;
    let mut racklift = Racklift::start(&site, options()).await;
    let before = snapshot(&api, &lab).await;

    // A wrong token is answered at once: the (announced, never sent) body is not waited for.
    let mut stream = connect(racklift.port, &head("not-the-token", 1_000_000)).await;
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    racklift
        .restart(Options {
            validation: "  body_timeout: 1s\n  max: {nics: 4, disks: 4, lldp_neighbours: 2}\n"
                .into(),
            ..options()
        })
        .await;
    // A body that stops coming: 408 after validation.body_timeout.
    let mut stream = connect(
        racklift.port,
        &format!("{}{{\"version\": 1,", head(TOKEN, 1000)),
    )
    .await;
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("validation.body_timeout"), "{answer}");

    // Every LLDP neighbour costs NetBox lookups: the lists are bounded.
    let mut many = report(&lab);
    let extra = many["lldp"][0].clone();
    many["lldp"].as_array_mut().expect("lldp").push(extra);
    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&many)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        error_of(&answer).contains(
            "lldp: 3 entries, more than racklift takes (validation.max.lldp_neighbours: 2)"
        ),
        "{answer}"
    );
    let mut many = report(&lab);
    many["nics"] = json!(
        (0..5)
            .map(|i| json!({"name": format!("eth{i}"), "mac": format!("02:00:00:00:02:0{i}")}))
            .collect::<Vec<_>>()
    );
    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&many)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        error_of(&answer)
            .starts_with("the report does not follow schema version 1: nics: 5 entries"),
        "{answer}"
    );
    assert_eq!(snapshot(&api, &lab).await, before);
    assert_eq!(
        lifecycle(&api.device(lab.device).await).as_deref(),
        Some("validating")
    );
}

/// A TCP proxy to NetBox that, between [`Gate::hold`] and [`Gate::release`], holds every request
/// whose request line contains one of the given texts: racklift's apply made to wait at a
/// point the test chooses. Other requests pass.
struct Gate {
    port: u16,
    release: tokio::sync::watch::Sender<bool>,
    held: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(hold: Vec<String>) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let netbox = reqwest::Url::parse(&common::lab().url).expect("NetBox URL");
        let target = format!(
            "{}:{}",
            netbox.host_str().expect("host"),
            netbox.port_or_known_default().expect("port")
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (release, released) = tokio::sync::watch::channel(true);
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let held = held.clone();
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        continue;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_netbox, mut to_netbox) = outbound.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_netbox, &mut to_client).await;
                    });
                    let (hold, held, mut released) = (hold.clone(), held.clone(), released.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = from_client.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let text = String::from_utf8_lossy(&buf[..n]);
                            let line = text.lines().next().unwrap_or("").to_owned();
                            if !*released.borrow() && hold.iter().any(|h| line.contains(h.as_str()))
                            {
                                held.lock().expect("held").push(line);
                                let _ = released.wait_for(|r| *r).await;
                            }
                            if to_netbox.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            release,
            held,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a request containing `text` is held.
    async fn holds(&self, text: &str) {
        wait_for(
            &format!("a request for {text} held at the gate"),
            || async {
                self.held
                    .lock()
                    .expect("held")
                    .iter()
                    .any(|l| l.contains(text))
                    .then_some(())
            },
        )
        .await;
    }

    fn hold(&self) {
        self.held.lock().expect("held").clear();
        let _ = self.release.send(false);
    }

    fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_apply_of_a_device_and_applies_beyond_the_cap_are_answered_503() {
    let api = Api::new();
    let site = Site::new(&api, "valcap").await;
    let mut labs = Vec::new();
    for name in ["a", "b", "c"] {
        let sub = Site {
            slug: format!("{}-{name}", site.slug),
            ..site.clone()
        };
        labs.push(lab(&api, &sub, "validating").await);
    }
    let [a, b, c] = &labs[..] else {
        unreachable!("three labs")
    };
    // Where an apply is held: reading its device's interfaces (with the device taken), or
    // looking its serial up (its first NetBox call). racklift's NetBox timeout is longer than
    // any hold (the lab's NetBox, shared, can be slow).
    let interfaces = |lab: &Lab| format!("/api/dcim/interfaces/?device_id={}&", lab.device);
    let serial = |lab: &Lab| format!("/api/dcim/devices/?serial={}&", lab.serial);
    let gate = Gate::start(vec![interfaces(a), serial(b), serial(c)]).await;
    let racklift = Racklift::start(
        &site,
        Options {
            netbox_url: gate.url(),
            netbox_timeout: "45s",
            validation: "  max_concurrent_applies: 2\n  apply_wait: 1s\n".into(),
            ..options()
        },
    )
    .await;
    // The applies held below must not meet the stamps' writes (a 412 answers 503 too).
    wait_stamped(&api, &racklift, &[a.device, b.device, c.device]).await;
    let port = racklift.port;
    let body = |lab: &Lab| json_body(&report(lab));

    // The script's retry while its first post is still applied: it waits for apply_wait, then
    // 503 with Retry-After.
    gate.hold();
    let first = tokio::spawn(post_as_script(port, Some(TOKEN), body(a)));
    gate.holds(&interfaces(a)).await;
    let (status, retry_after, answer) = post_to(port, Some(TOKEN), body(a)).await;
    gate.release();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(
        error_of(&answer).contains("another report for the device with the serial"),
        "{answer}"
    );
    let (status, answer) = first.await.expect("post task");
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("validated")),
        "{answer}"
    );

    // Two applies run (the cap): a third report is answered at once, before any NetBox call.
    gate.hold();
    let running = [
        tokio::spawn(post_as_script(port, Some(TOKEN), body(b))),
        tokio::spawn(post_as_script(port, Some(TOKEN), body(c))),
    ];
    gate.holds(&serial(b)).await;
    gate.holds(&serial(c)).await;
    let (status, retry_after, answer) = post_to(port, Some(TOKEN), body(a)).await;
    gate.release();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(
        error_of(&answer).contains("validation.max_concurrent_applies"),
        "{answer}"
    );
    for (lab, post) in [b, c].into_iter().zip(running) {
        let (status, answer) = post.await.expect("post task");
        assert_eq!(
            (status, answer["result"].as_str()),
            (200, Some("validated")),
            "{answer}"
        );
        assert_made_to_match(&api, lab).await;
    }
    assert_made_to_match(&api, a).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_wait_and_slow_request_headers_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let api = Api::new();
    let site = Site::new(&api, "valconn").await;
    let racklift = Racklift::start(
        &site,
        Options {
            extra: "http:\n  max_connections: 2\n  header_read_timeout: 3s\n".into(),
            ..options()
        },
    )
    .await;
    let health = format!("http://127.0.0.1:{}/healthz", racklift.port);
    let slow = "GET /healthz HTTP/1.1\r\nHost: racklift\r\n";
    let mut first = connect(racklift.port, slow).await;
    let second = connect(racklift.port, slow).await;
    // Two connections are open, none more is served until one closes.
    let third = reqwest::Client::new()
        .get(&health)
        .timeout(std::time::Duration::from_secs(1))
        .send()
        .await;
    assert!(
        third.is_err(),
        "a third connection was served: {:?}",
        third.map(|r| r.status())
    );
    // A client that never finishes its headers is cut off after header_read_timeout, however
    // often it sends a byte more.
    let started = std::time::Instant::now();
    let (mut reading, mut writing) = second.into_split();
    let trickle = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            every.tick().await;
            if writing.write_all(b"X").await.is_err() {
                break;
            }
        }
    });
    read_to_close(&mut first).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        common::WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut reading, &mut rest),
    )
    .await;
    assert!(closed.is_ok(), "the trickling client was never cut off");
    trickle.abort();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    wait_for("racklift to serve again", || async {
        let response = reqwest::get(&health).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

/// A TCP proxy to NetBox that records the request line of every request sent through it
/// (`GET /api/dcim/devices/?serial=… HTTP/1.1`), in order.
struct Recorder {
    port: u16,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let netbox = reqwest::Url::parse(&common::lab().url).expect("NetBox URL");
        let target = format!(
            "{}:{}",
            netbox.host_str().expect("host"),
            netbox.port_or_known_default().expect("port")
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let lines = lines.clone();
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        continue;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_netbox, mut to_netbox) = outbound.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_netbox, &mut to_client).await;
                    });
                    let lines = lines.clone();
                    tokio::spawn(async move {
                        // racklift (reqwest, HTTP/1.1) sends one request at a time and waits
                        // for its answer: a request's head starts a read; a body never starts
                        // with a method and "/api/".
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                            let text = String::from_utf8_lossy(&buf[..n]);
                            let line = text.lines().next().unwrap_or("");
                            if ["GET", "POST", "PATCH", "PUT", "DELETE"]
                                .iter()
                                .any(|m| line.starts_with(&format!("{m} /api/")))
                            {
                                lines.lock().expect("lines").push(line.to_owned());
                            }
                            if to_netbox.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            lines,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The lab's report for eth0..eth3, each cabled by LLDP to swp1..swp4, with 8 disks.
fn report_of_four(lab: &Lab) -> Value {
    let mut report = report(lab);
    for k in 2..4 {
        report["nics"]
            .as_array_mut()
            .expect("nics")
            .push(json!({"name": format!("eth{k}"), "mac": format!("02:00:00:00:01:0{k}"), "speed_mbps": 10000, "operstate": "UP"}));
        report["lldp"].as_array_mut().expect("lldp").push(json!({
            "interface": format!("eth{k}"), "chassis_name": lab.switch, "chassis_id": "02:00:00:00:00:01",
            "port_id": format!("swp{}", k + 1), "port_id_type": "ifname", "port_description": null}));
    }
    report["disks"] = json!(
        (0..8)
            .map(|n| json!({"name": format!("nvme{n}n1"), "model": null, "serial": null, "size_bytes": 274877906944u64, "rotational": false}))
            .collect::<Vec<_>>()
    );
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn a_four_nic_report_costs_at_most_ten_netbox_calls() {
    let api = Api::new();
    let site = Site::new(&api, "valcalls").await;
    let lab = lab_with(&api, &site, "validating", &["eth0", "eth1", "eth2", "eth3"]).await;
    let recorder = Recorder::start().await;
    let racklift = Racklift::start(
        &site,
        Options {
            netbox_url: recorder.url(),
            resync: "1h",
            ..options()
        },
    )
    .await;
    // Once racklift's resync at start has stamped the device and nothing runs, every call
    // racklift makes is the report's (no webhook fires: the stamp leaves the lifecycle as it
    // is, and the next resync is an hour away).
    wait_stamped(&api, &racklift, &[lab.device]).await;
    let before = recorder.lines().len();

    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&report_of_four(&lab))).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("validated")),
        "{answer}"
    );
    // The report's calls end with the verdict's PATCH; NetBox's webhook for it sets off the
    // reconciler's claim (validated → hardening), which is not the report's.
    let verdict = format!("PATCH /api/dcim/devices/{}/ ", lab.device);
    let lines = recorder.lines();
    let end = lines[before..]
        .iter()
        .position(|l| l.starts_with(&verdict))
        .map(|i| before + i + 1)
        .expect("the verdict's PATCH");
    let calls = &lines[before..end];
    assert!(
        calls.len() <= 10,
        "{} NetBox calls for a 4-NIC report:\n{}",
        calls.len(),
        calls.join("\n")
    );
    let device = api.device(lab.device).await;
    assert_eq!(
        device["custom_fields"]["validation_results"]["verdict"],
        "passed"
    );
    let interfaces = api
        .results(&format!("dcim/interfaces/?device_id={}", lab.device))
        .await;
    for k in 0..4 {
        let iface = interfaces
            .iter()
            .find(|i| i["name"] == format!("eth{k}"))
            .expect("interface");
        assert_eq!(
            iface["primary_mac_address"]["mac_address"],
            format!("02:00:00:00:01:0{k}"),
            "{iface}"
        );
        assert_eq!(
            iface["link_peers"][0]["name"],
            format!("swp{}", k + 1),
            "{iface}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_applied_halfway_is_completed_and_nothing_is_made_twice() {
    let api = Api::new();
    let site = Site::new(&api, "valhalf").await;
    let lab = lab(&api, &site, "validating").await;
    let interface = |name: &str| format!("dcim/interfaces/?device_id={}&name={name}", lab.device);
    // An apply cut off after eth0's MAC object was made (not yet primary) and eth0 cabled; and
    // eth1, which the device type promises, not created yet.
    let eth0 = api.results(&interface("eth0")).await[0]["id"].clone();
    let eth1 = api.results(&interface("eth1")).await[0]["id"].clone();
    assert_eq!(api.delete(&format!("dcim/interfaces/{eth1}/")).await, 204);
    let mac = api
        .post(
            "dcim/mac-addresses/",
            json!({"mac_address": "02:00:00:00:01:00", "assigned_object_type": "dcim.interface",
                   "assigned_object_id": eth0}),
        )
        .await["id"]
        .clone();
    let swp1 = api
        .results(&format!(
            "dcim/interfaces/?device_id={}&name=swp1",
            lab.switch_id
        ))
        .await[0]["id"]
        .clone();
    let cable = api
        .post(
            "dcim/cables/",
            json!({"a_terminations": [{"object_type": "dcim.interface", "object_id": eth0}],
                   "b_terminations": [{"object_type": "dcim.interface", "object_id": swp1}]}),
        )
        .await["id"]
        .clone();
    let racklift = Racklift::start(&site, options()).await;
    // The changes below are the first apply's: no stamp may make it post again.
    wait_stamped(&api, &racklift, &[lab.device]).await;

    let (status, answer) = post(&racklift, Some(TOKEN), json_body(&report(&lab))).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("validated")),
        "{answer}"
    );
    assert_eq!(
        answer["summary"]["changes"],
        json!([
            "MAC 02:00:00:00:01:00 on eth0",
            "created interface eth1",
            "MAC 02:00:00:00:01:01 on eth1",
            "cabled eth1"
        ]),
        "{answer}"
    );
    assert_made_to_match(&api, &lab).await;
    let eth0 = &api.results(&interface("eth0")).await[0];
    assert_eq!(eth0["primary_mac_address"]["id"], mac, "{eth0}");
    assert_eq!(eth0["cable"]["id"], cable, "{eth0}");
    let macs = api
        .get(&format!("dcim/mac-addresses/?device_id={}", lab.device))
        .await;
    assert_eq!(macs["count"], 2, "one MAC object per NIC: {macs}");
}
