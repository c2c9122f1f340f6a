//! Provisioning under crashes and lost answers, against the lab's real NetBox, a `racklift
//! serve` process and bmcsim: each crash point around the reset is forced with the test-only
//! pause points (feature `test-hooks`, src/netbox/pause.rs), racklift is SIGKILLed there and
//! started again, and the BMC's own record says what happened. A device is right when it is
//! `validating` and its BMC booted exactly once, with the one-time PXE override.
//! The last test kills racklift at random moments while many servers provision (a chaos run;
//! `CHAOS_SERVERS` and `CHAOS_KILLS` make it bigger by hand).

mod common;

use std::path::Path;

use common::bmc::{BmcSim, SimBmc, device_with_bmc, sim_config};
use common::{Api, Options, Racklift, Site, journal_texts, wait_for, wait_lifecycle};
use serde_json::json;

/// One server on bmcsim and its device in NetBox.
struct Server {
    id: u64,
    bmc: String,
    power: &'static str,
}

/// BMCs over the captured trees (iLO 5, iDRAC 9, XCC, Supermicro, DMTF), alternating between
/// switched off and running; their devices in NetBox, `racked`.
async fn servers(
    api: &Api,
    site: &Site,
    dir: &Path,
    count: usize,
) -> (BmcSim, Vec<Server>, String) {
    const TREES: [&str; 5] = [
        "hpe-ilo5-dl360-gen10plus",
        "dell-idrac9-r750",
        "lenovo-xcc-sr670v2",
        "supermicro-sys821ge-tnhr",
        "dmtf-public-rackmount1",
    ];
    let bmcs: Vec<SimBmc> = (0..count)
        .map(|i| SimBmc {
            name: format!("s{i}"),
            tree: TREES[i % TREES.len()].to_owned(),
            power: if i % 2 == 0 { "On" } else { "Off" },
        })
        .collect();
    let sim = BmcSim::start(dir, &bmcs);
    let mut servers = Vec::new();
    let mut config = Vec::new();
    for bmc in &bmcs {
        let id = device_with_bmc(api, site, &bmc.name, "127.0.0.1", "racked").await;
        config.push((
            format!("{}-{}", site.slug, bmc.name),
            sim.port(&bmc.name),
            sim.password.clone(),
        ));
        servers.push(Server {
            id,
            bmc: bmc.name.clone(),
            power: bmc.power,
        });
    }
    let yaml = sim_config(dir, &sim.ca, &config);
    (sim, servers, yaml)
}

fn options(pause: &Path, bmc: &str, sim: &BmcSim) -> Options {
    Options {
        pause_dir: Some(pause.to_owned()),
        bmc: bmc.to_owned(),
        secrets: vec![sim.password.clone()],
        resync: "2s",
        ..Options::default()
    }
}

fn arm(pause: &Path, point: &str) {
    std::fs::write(pause.join(format!("arm-{point}-all")), b"").expect("arm");
}

fn disarm(pause: &Path, point: &str) {
    let _ = std::fs::remove_file(pause.join(format!("arm-{point}-all")));
}

async fn wait_paused(pause: &Path, point: &str, id: u64) {
    wait_for(&format!("device {id} held at {point}"), || async {
        common::exists(pause, &format!("paused-{point}-{id}")).then_some(())
    })
    .await;
}

fn release(pause: &Path, point: &str, id: u64) {
    std::fs::remove_file(pause.join(format!("paused-{point}-{id}"))).expect("release");
}

/// What is wrong with a server once provisioning is over, if anything: it must be
/// `validating`, and its BMC must have booted it exactly once, with the one-time PXE override.
async fn wrong(api: &Api, sim: &BmcSim, server: &Server) -> Option<String> {
    let device = api.device(server.id).await;
    let state = common::lifecycle(&device).unwrap_or_default();
    let bmc = sim.state(&server.bmc).await;
    let once = json!([{"target": "Pxe", "enabled": "Once"}]);
    (state != "validating" || bmc["boots"] != once || bmc["power_state"] != "On").then(|| {
        format!(
            "{} ({}, was {}): {state}, {:?}; boots {}, resets {}",
            server.bmc,
            bmc["tree"]
                .as_str()
                .unwrap_or("?")
                .rsplit('/')
                .next()
                .unwrap_or("?"),
            server.power,
            device["custom_fields"]["lifecycle_error"],
            bmc["boots"],
            bmc["resets"]
        )
    })
}

fn journal_has(journal: &[String], text: &str) -> bool {
    journal.iter().any(|e| e.contains(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_recording_the_reset_and_sending_it_sends_it_once_after_restart() {
    let api = Api::new();
    let site = Site::new(&api, "crashbefore").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pause = tempfile::tempdir().expect("pause");
    // A running and a switched-off server: the chaos run's two wrong devices.
    let (sim, servers, bmc) = servers(&api, &site, dir.path(), 2).await;
    arm(pause.path(), "before-reset");
    let mut racklift = Racklift::start_process(&site, options(pause.path(), &bmc, &sim)).await;
    for s in &servers {
        api.set_lifecycle(s.id, "provisioning").await;
    }
    for s in &servers {
        wait_paused(pause.path(), "before-reset", s.id).await;
    }
    // "reset requested" is in NetBox, the reset not sent; racklift dies here.
    racklift.kill();
    for s in &servers {
        let device = api.device(s.id).await;
        assert_eq!(
            device["custom_fields"]["lifecycle_stamp"]["step"], "reset requested",
            "{device}"
        );
        assert_eq!(sim.state(&s.bmc).await["resets"], json!([]));
    }
    disarm(pause.path(), "before-reset");
    for s in &servers {
        release(pause.path(), "before-reset", s.id);
    }
    racklift.restart(options(pause.path(), &bmc, &sim)).await;
    for s in &servers {
        wait_lifecycle(&api, s.id, "validating").await;
        assert_eq!(wrong(&api, &sim, s).await, None);
        let expected = if s.power == "On" {
            "ForceRestart"
        } else {
            "On"
        };
        assert_eq!(sim.state(&s.bmc).await["resets"], json!([expected]));
        let journal = journal_texts(&api.journal(s.id).await);
        assert!(
            journal_has(&journal, "shows no sign of the last reset"),
            "the second reset is journaled: {journal:?}"
        );
        assert!(
            journal
                .last()
                .is_some_and(|e| e.contains("one-time PXE boot set and taken")),
            "{journal:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_reset_before_its_answer_is_recorded_never_resets_again() {
    let api = Api::new();
    let site = Site::new(&api, "crashafter").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pause = tempfile::tempdir().expect("pause");
    let (sim, servers, bmc) = servers(&api, &site, dir.path(), 2).await;
    arm(pause.path(), "after-reset");
    let mut racklift = Racklift::start_process(&site, options(pause.path(), &bmc, &sim)).await;
    for s in &servers {
        api.set_lifecycle(s.id, "provisioning").await;
    }
    for s in &servers {
        wait_paused(pause.path(), "after-reset", s.id).await;
    }
    racklift.kill();
    disarm(pause.path(), "after-reset");
    for s in &servers {
        release(pause.path(), "after-reset", s.id);
        assert_eq!(
            sim.state(&s.bmc).await["resets"].as_array().map(Vec::len),
            Some(1)
        );
    }
    racklift.restart(options(pause.path(), &bmc, &sim)).await;
    for s in &servers {
        wait_lifecycle(&api, s.id, "validating").await;
        assert_eq!(wrong(&api, &sim, s).await, None);
        // The reset sent before the crash was the only one: the BMC's spent override showed
        // it, so none was sent again.
        assert_eq!(
            sim.state(&s.bmc).await["resets"].as_array().map(Vec::len),
            Some(1)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_the_bmc_refuses_or_leaves_unanswered_ends_in_exactly_one_boot() {
    let api = Api::new();
    let site = Site::new(&api, "resetfail").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pause = tempfile::tempdir().expect("pause");
    let (sim, servers, bmc) = servers(&api, &site, dir.path(), 4).await;
    arm(pause.path(), "before-reset");
    arm(pause.path(), "after-reset");
    let _racklift = Racklift::start_process(&site, options(pause.path(), &bmc, &sim)).await;
    for s in &servers {
        api.set_lifecycle(s.id, "provisioning").await;
    }
    for (i, s) in servers.iter().enumerate() {
        wait_paused(pause.path(), "before-reset", s.id).await;
        // Two servers' BMCs answer the reset 503; the other two answer nothing within
        // racklift's 3 s timeout (bmcsim holds the request 4 s).
        let fault = if i < 2 {
            json!({"fail_next": 1})
        } else {
            json!({"latency_ms": 4000})
        };
        sim.faults(&s.bmc, fault).await;
        release(pause.path(), "before-reset", s.id);
        wait_paused(pause.path(), "after-reset", s.id).await;
        sim.faults(&s.bmc, json!({})).await;
    }
    disarm(pause.path(), "before-reset");
    disarm(pause.path(), "after-reset");
    for s in &servers {
        release(pause.path(), "after-reset", s.id);
    }
    for (i, s) in servers.iter().enumerate() {
        wait_lifecycle(&api, s.id, "validating").await;
        assert_eq!(wrong(&api, &sim, s).await, None);
        let stamp = api.device(s.id).await["custom_fields"]["lifecycle_stamp"].clone();
        assert_eq!(stamp["state"], "validating", "{stamp}");
        let journal = journal_texts(&api.journal(s.id).await);
        if i < 2 {
            assert!(
                journal_has(&journal, "(refused by the BMC)"),
                "a refused reset is sent again: {journal:?}"
            );
        }
    }
}

/// Sum of every BMC's Redfish request count: racklift's progress, as the BMCs see it.
async fn requests(sim: &BmcSim, servers: &[Server]) -> u64 {
    let mut total = 0;
    for s in servers {
        total += sim.state(&s.bmc).await["requests"].as_u64().unwrap_or(0);
    }
    total
}

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
async fn racklift_killed_at_random_while_servers_provision_leaves_no_server_wrong() {
    let count = env_or("CHAOS_SERVERS", 12);
    let kills = env_or("CHAOS_KILLS", 4);
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos: {count} servers, {kills} kills, CHAOS_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let api = Api::new();
    let site = Site::new(&api, "chaos").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pause = tempfile::tempdir().expect("pause");
    let (sim, servers, bmc) = servers(&api, &site, dir.path(), count).await;
    let mut racklift = Racklift::start_process(&site, options(pause.path(), &bmc, &sim)).await;
    for s in &servers {
        api.set_lifecycle(s.id, "provisioning").await;
    }
    // Each kill lands after a random amount of Redfish traffic (a condition, not a timer), so
    // it falls anywhere: mid-login, between the override and the record, around the reset. A
    // provisioning takes about 16 requests; the kills are spread over the whole run.
    let spread = (count as u64 * 12 / kills.max(1) as u64).max(2);
    let mut killed = 0;
    for kill in 0..kills {
        let start = requests(&sim, &servers).await;
        let more = rng.u64(1..=spread);
        let mut polls = 0u32;
        let done = wait_for(
            &format!("kill {kill}: {more} more Redfish requests"),
            || {
                polls += 1;
                let check_netbox = polls.is_multiple_of(5);
                let (sim, servers, api, site) = (&sim, &servers, &api, &site);
                async move {
                    if requests(sim, servers).await >= start + more {
                        return Some(false);
                    }
                    (check_netbox && provisioning_left(api, site).await == 0).then_some(true)
                }
            },
        )
        .await;
        if done {
            break;
        }
        racklift.kill();
        killed += 1;
        racklift.restart(options(pause.path(), &bmc, &sim)).await;
    }
    eprintln!("chaos: racklift was killed {killed} times");
    for s in &servers {
        wait_for(&format!("{} to leave provisioning", s.bmc), || async {
            let device = api.device(s.id).await;
            (common::lifecycle(&device).as_deref() != Some("provisioning")).then_some(())
        })
        .await;
    }
    let mut wrongs = Vec::new();
    for s in &servers {
        wrongs.extend(wrong(&api, &sim, s).await);
    }
    assert!(
        wrongs.is_empty(),
        "{} of {count} servers wrong (CHAOS_SEED={seed}):\n{}",
        wrongs.len(),
        wrongs.join("\n")
    );
}

/// How many of the site's devices are still provisioning (one NetBox call).
async fn provisioning_left(api: &Api, site: &Site) -> u64 {
    api.get(&format!(
        "dcim/devices/?site_id={}&cf_lifecycle=provisioning&brief=1&limit=1",
        site.id
    ))
    .await["count"]
        .as_u64()
        .unwrap_or(0)
}
