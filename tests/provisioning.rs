//! Provisioning end to end: the lab's NetBox, a real `racklift serve`, and real Redfish peers —
//! sushy-tools' emulator (TLS from a test CA, basic auth, random 1–11 s power transitions) and
//! bmcsim serving the captured iLO 5, iDRAC 9, XCC, Supermicro and DMTF trees.

mod common;

use common::bmc::{BmcSim, SimBmc, Sushy, bmc_config, device_with_bmc, sim_config};
use common::{Api, Options, Racklift, Site, journal_texts, wait_for, wait_lifecycle};
use serde_json::{Value, json};

async fn sushy_flow(power: &str, tag: &str) {
    let api = Api::new();
    let site = Site::new(&api, tag).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sushy = Sushy::start(dir.path(), power).await;
    let id = device_with_bmc(&api, &site, "srv", "127.0.0.1", "racked").await;
    let name = format!("{}-srv", site.slug);
    let racklift = Racklift::start(
        &site,
        Options {
            bmc: bmc_config(dir.path(), &name, sushy.port, &sushy.password, &sushy.ca),
            secrets: vec![sushy.password.clone()],
            ..Options::default()
        },
    )
    .await;

    api.set_lifecycle(id, "provisioning").await;
    let device = wait_lifecycle(&api, id, "validating").await;
    let system = sushy.system().await;
    assert_eq!(system["PowerState"], "On", "{system}");
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(device["status"]["value"], "staged");
    assert_eq!(
        device["custom_fields"]["lifecycle_stamp"]["state"],
        "validating"
    );
    let journal = journal_texts(&api.journal(id).await);
    // sushy-tools always reports Continuous: a warning naming it, not a failure.
    assert!(
        journal.iter().any(|e| e
            .starts_with("warning: racklift: provisioning: the BMC at https://127.0.0.1:")
            && e.contains("reports BootSourceOverrideEnabled \"Continuous\"")),
        "{journal:?}"
    );
    let done = journal.last().expect("entries");
    assert!(
        done.starts_with(&format!(
            "info: racklift: provisioning → validating: BMC https://127.0.0.1:{}/ (Redfish",
            sushy.port
        )) && done.contains("one-time PXE boot set, server powered on"),
        "{journal:?}"
    );
    assert_eq!(api.moves(id, "provisioning", "validating").await, 1);
    let log = racklift.log();
    let resets: Vec<&str> = log.lines().filter(|l| l.contains("reset sent")).collect();
    assert_eq!(resets.len(), 1, "one power action: {resets:?}");
    let expected = if power == "Off" {
        "reset=On"
    } else {
        "reset=ForceRestart"
    };
    assert!(resets[0].contains(expected), "{resets:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sushy_tools_switched_off_server_is_pxe_booted_and_powered_on() {
    sushy_flow("Off", "sushyoff").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sushy_tools_running_server_is_pxe_booted_and_restarted() {
    sushy_flow("On", "sushyon").await;
}

const TREES: [(&str, &str, &str); 6] = [
    ("ilo-dl360", "hpe-ilo5-dl360-gen10plus", "HPE iLO 5"),
    ("ilo-dl385", "hpe-ilo5-dl385-gen10plus-v2", "HPE iLO 5"),
    ("idrac", "dell-idrac9-r750", "Dell iDRAC 9"),
    ("xcc", "lenovo-xcc-sr670v2", "Redfish"),
    ("smc", "supermicro-sys821ge-tnhr", "Redfish"),
    ("dmtf", "dmtf-public-rackmount1", "Redfish"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_captured_vendor_tree_is_pxe_booted_once_and_powered_on() {
    let api = Api::new();
    let site = Site::new(&api, "vendors").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Half start switched off (reset On), half running (a restart).
    let bmcs: Vec<SimBmc> = TREES
        .iter()
        .enumerate()
        .map(|(i, (name, tree, _))| SimBmc {
            name: (*name).to_owned(),
            tree: (*tree).to_owned(),
            power: if i % 2 == 0 { "Off" } else { "On" },
        })
        .collect();
    let sim = BmcSim::start(dir.path(), &bmcs);
    let mut devices = Vec::new();
    for (name, _, _) in TREES {
        let id = device_with_bmc(&api, &site, name, "127.0.0.1", "racked").await;
        devices.push((
            id,
            format!("{}-{name}", site.slug),
            sim.port(name),
            sim.password.clone(),
        ));
    }
    let config: Vec<(String, u16, String)> = devices
        .iter()
        .map(|(_, n, p, pw)| (n.clone(), *p, pw.clone()))
        .collect();
    let _racklift = Racklift::start(
        &site,
        Options {
            bmc: sim_config(dir.path(), &sim.ca, &config),
            secrets: vec![sim.password.clone()],
            ..Options::default()
        },
    )
    .await;

    for (id, _, _, _) in &devices {
        api.set_lifecycle(*id, "provisioning").await;
    }
    for (i, ((id, _, port, _), (bmc, _, vendor))) in devices.iter().zip(TREES).enumerate() {
        wait_lifecycle(&api, *id, "validating").await;
        let state = sim.state(bmc).await;
        assert_eq!(state["power_state"], "On", "{bmc}: {state}");
        assert_eq!(
            state["boots"],
            json!([{"target": "Pxe", "enabled": "Once"}]),
            "{bmc}: {state}"
        );
        let expected_reset = if i % 2 == 0 { "On" } else { "ForceRestart" };
        assert_eq!(state["resets"], json!([expected_reset]), "{bmc}: {state}");
        assert_eq!(
            state["sessions_open"], 0,
            "every session closed: {bmc}: {state}"
        );
        assert_eq!(
            state["sessions_created"], state["sessions_deleted"],
            "{bmc}: {state}"
        );
        // One login for the whole provisioning (the session is kept between its
        // reconciles), through the BMC's session service, and deleted when it was done.
        assert_eq!(
            state["sessions_created"], 1,
            "one login per provisioning: {bmc}: {state}"
        );
        let journal = journal_texts(&api.journal(*id).await);
        let done = journal.last().expect("entries");
        assert!(
            done.starts_with(&format!("info: racklift: provisioning → validating: BMC https://127.0.0.1:{port}/ ({vendor}, firmware ")),
            "{bmc}: {journal:?}"
        );
        assert!(
            !journal
                .iter()
                .any(|e| e.contains("BootSourceOverrideEnabled")),
            "{bmc}: one-time boot read back as Once, no warning: {journal:?}"
        );
        assert!(
            done.contains("one-time PXE boot set and taken"),
            "{bmc}: the BMC's spent override is the evidence: {journal:?}"
        );
    }
}

/// A server that takes its time to come up: racklift polls its BMC every second on one login,
/// logs in again (once) when the BMC drops that session, and deletes its session when done.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_slow_to_boot_is_polled_on_one_login() {
    let api = Api::new();
    let site = Site::new(&api, "slowboot").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = BmcSim::start(
        dir.path(),
        &[SimBmc {
            name: "slow".into(),
            tree: "hpe-ilo5-dl360-gen10plus".into(),
            power: "Off",
        }],
    );
    // The BMC takes the reset, but the server stays off until the test lets it come up.
    sim.faults("slow", json!({"power_stuck": true})).await;
    let id = device_with_bmc(&api, &site, "slow", "127.0.0.1", "racked").await;
    let name = format!("{}-slow", site.slug);
    let bmc = sim_config(
        dir.path(),
        &sim.ca,
        &[(name, sim.port("slow"), sim.password.clone())],
    )
    .replace("power_timeout: 5s", "power_timeout: 120s");
    let _racklift = Racklift::start(
        &site,
        Options {
            bmc,
            secrets: vec![sim.password.clone()],
            ..Options::default()
        },
    )
    .await;

    api.set_lifecycle(id, "provisioning").await;
    let requests = || async { sim.state("slow").await["requests"].as_u64().unwrap_or(0) };
    let at_reset = wait_for("the reset", || async {
        let state = sim.state("slow").await;
        (state["resets"] == json!(["On"])).then(|| state["requests"].as_u64().unwrap_or(0))
    })
    .await;
    // Each poll (bmc.poll_interval, 1 s) reads the system collection and the system.
    const POLLS: u64 = 4;
    wait_for("four polls", || async {
        (requests().await >= at_reset + 2 * POLLS).then_some(())
    })
    .await;
    let state = sim.state("slow").await;
    assert_eq!(
        state["sessions_created"], 1,
        "the reset and {POLLS} polls on one login: {state}"
    );
    assert_eq!(state["sessions_open"], 1, "{state}");

    // The BMC drops the session (its timeout, another administrator): the next poll meets a
    // 401 and logs in again, once.
    assert_eq!(sim.drop_sessions("slow").await, 1);
    wait_for("a login again", || async {
        let state = sim.state("slow").await;
        (state["sessions_created"] == 2 && state["sessions_open"] == 1).then_some(())
    })
    .await;
    let after_relogin = requests().await;
    wait_for("two more polls", || async {
        (requests().await >= after_relogin + 4).then_some(())
    })
    .await;

    // The server comes up and its firmware takes the one-time boot.
    sim.faults("slow", json!({})).await;
    sim.patch(
        "slow",
        "/redfish/v1/Systems/1",
        json!({"PowerState": "On", "Boot": {"BootSourceOverrideEnabled": "Disabled"}}),
    )
    .await;
    let device = wait_lifecycle(&api, id, "validating").await;
    assert_eq!(device["status"]["value"], "staged");
    let state = sim.state("slow").await;
    assert_eq!(state["sessions_created"], 2, "{state}");
    assert_eq!(
        state["sessions_open"], 0,
        "deleted when the provisioning was done: {state}"
    );
    assert_eq!(state["resets"], json!(["On"]), "one reset: {state}");
    let journal = journal_texts(&api.journal(id).await);
    assert!(
        journal
            .last()
            .is_some_and(|e| e.contains("one-time PXE boot set and taken")),
        "{journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bmc_failure_fails_the_device_with_what_to_do_and_stops_calling_the_bmc() {
    let api = Api::new();
    let site = Site::new(&api, "bmcfail").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "creds",
            "hpe-ilo5-dl360-gen10plus",
            "Off",
            "refused racklift's credentials (HTTP 401)",
        ),
        (
            "nopxe",
            "dell-idrac9-r750",
            "Off",
            "does not offer a PXE boot",
        ),
        ("down", "lenovo-xcc-sr670v2", "Off", "is unreachable"),
        ("err500", "dmtf-public-rackmount1", "Off", "HTTP 500"),
        ("err400", "hpe-ilo5-dl385-gen10plus-v2", "Off", "HTTP 400"),
        (
            "stuck",
            "supermicro-sys821ge-tnhr",
            "Off",
            "power stayed \"Off\" for 5s",
        ),
    ];
    let bmcs: Vec<SimBmc> = cases
        .iter()
        .map(|(name, tree, power, _)| SimBmc {
            name: (*name).to_owned(),
            tree: (*tree).to_owned(),
            power,
        })
        .collect();
    let sim = BmcSim::start(dir.path(), &bmcs);
    // Prepare each BMC's fault.
    sim.patch(
        "nopxe",
        "/redfish/v1/Systems/System.Embedded.1",
        json!({"Boot": {"BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Hdd", "Cd"]}}),
    )
    .await;
    sim.faults("down", json!({"drop": true})).await;
    sim.faults("err500", json!({"status": 500})).await;
    sim.faults("err400", json!({"status": 400})).await;
    sim.faults("stuck", json!({"power_stuck": true})).await;
    let mut devices = Vec::new();
    let mut config = Vec::new();
    for (name, _, _, _) in cases {
        let id = device_with_bmc(&api, &site, name, "127.0.0.1", "racked").await;
        let password = if name == "creds" {
            "wrong-password".to_owned()
        } else {
            sim.password.clone()
        };
        config.push((format!("{}-{name}", site.slug), sim.port(name), password));
        devices.push(id);
    }
    let racklift = Racklift::start(
        &site,
        Options {
            bmc: sim_config(dir.path(), &sim.ca, &config),
            secrets: vec![sim.password.clone(), "wrong-password".into()],
            resync: "1s",
            ..Options::default()
        },
    )
    .await;

    for id in &devices {
        api.set_lifecycle(*id, "provisioning").await;
    }
    for (id, (name, _, _, reason)) in devices.iter().zip(cases) {
        let device = wait_lifecycle(&api, *id, "failed").await;
        let error = device["custom_fields"]["lifecycle_error"]
            .as_str()
            .expect("lifecycle_error");
        assert!(error.contains(reason), "{name}: {error}");
        assert!(
            error.contains("set the lifecycle to provisioning"),
            "{name}: {error}"
        );
        let journal = journal_texts(&api.journal(*id).await);
        assert!(
            journal
                .last()
                .expect("entry")
                .starts_with("danger: racklift: provisioning → failed: provisioning"),
            "{name}: {journal:?}"
        );
        assert_eq!(device["status"]["value"], "failed");
    }
    // Retried only what could pass by asking again: 5xx and an unreachable BMC.
    for name in ["down", "err500"] {
        let id = devices[cases.iter().position(|c| c.0 == name).expect("case")];
        let error = api.device(id).await["custom_fields"]["lifecycle_error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(error.contains("(after 3 attempts)"), "{name}: {error}");
    }
    for name in ["creds", "err400"] {
        let id = devices[cases.iter().position(|c| c.0 == name).expect("case")];
        let error = api.device(id).await["custom_fields"]["lifecycle_error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(!error.contains("attempts"), "not retried: {name}: {error}");
    }
    let stuck = sim.state("stuck").await;
    assert_eq!(
        stuck["resets"],
        json!(["On"]),
        "one power action, never repeated: {stuck}"
    );
    // Failed is the operator's: no further Redfish calls, however many resyncs pass.
    let before: Vec<Value> = bmc_requests(&sim, &cases.map(|c| c.0)).await;
    let resyncs = racklift.log().matches("resync queued").count();
    wait_for("two more resyncs", || async {
        (racklift.log().matches("resync queued").count() >= resyncs + 2).then_some(())
    })
    .await;
    assert_eq!(bmc_requests(&sim, &cases.map(|c| c.0)).await, before);
}

async fn bmc_requests(sim: &BmcSim, names: &[&str]) -> Vec<Value> {
    let mut all = Vec::new();
    for name in names {
        all.push(sim.state(name).await["requests"].clone());
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bmc_link_to_another_host_is_never_followed() {
    let api = Api::new();
    let site = Site::new(&api, "foreignlink").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bmcs: Vec<SimBmc> = ["victim", "elsewhere"]
        .iter()
        .map(|name| SimBmc {
            name: (*name).to_owned(),
            tree: "hpe-ilo5-dl360-gen10plus".to_owned(),
            power: "Off",
        })
        .collect();
    let sim = BmcSim::start(dir.path(), &bmcs);
    // The BMC's answer names its reset action on another host (here another BMC's port): a
    // hostile or misconfigured BMC steering racklift's credentials and reset elsewhere.
    let elsewhere = format!(
        "https://127.0.0.1:{}/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
        sim.port("elsewhere")
    );
    sim.patch(
        "victim",
        "/redfish/v1/Systems/1",
        json!({"Actions": {"#ComputerSystem.Reset": {"target": elsewhere}}}),
    )
    .await;
    let before = sim.state("elsewhere").await["requests"].clone();
    let id = device_with_bmc(&api, &site, "victim", "127.0.0.1", "racked").await;
    let name = format!("{}-victim", site.slug);
    let _racklift = Racklift::start(
        &site,
        Options {
            bmc: sim_config(
                dir.path(),
                &sim.ca,
                &[(name, sim.port("victim"), sim.password.clone())],
            ),
            secrets: vec![sim.password.clone()],
            ..Options::default()
        },
    )
    .await;
    api.set_lifecycle(id, "provisioning").await;
    let device = wait_lifecycle(&api, id, "failed").await;
    let error = device["custom_fields"]["lifecycle_error"]
        .as_str()
        .unwrap_or("");
    assert!(
        error.contains("racklift follows a BMC's links only on the BMC itself"),
        "{error}"
    );
    assert_eq!(
        sim.state("elsewhere").await["requests"],
        before,
        "not one request reached the other host"
    );
    assert_eq!(sim.state("victim").await["resets"], json!([]));
}
