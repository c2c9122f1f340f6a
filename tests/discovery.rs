//! Discovery end to end: real Kea, ISC dhcpd and dnsmasq in network namespaces with a real DHCP
//! client (udhcpc) on a veth whose MAC NetBox knows as a BMC interface; the repository's hook
//! scripts; `racklift dhcp-lease` spooling and its detached drain writing NetBox; and a real
//! `racklift serve` picking the discovered device up through NetBox's webhook.

mod common;

use std::path::Path;

use common::dhcp::{Lan, SUBNET, Server};
use common::proxy::Proxy;
use common::{
    Api, Options, Racklift, Site, fresh_mac, journal_texts, lab_addr, lifecycle, racklift,
    wait_for, wait_lifecycle, write_hook_config,
};
use serde_json::{Value, json};

/// A device with a BMC interface (management-only) and a data interface, each with its MAC.
struct Server1 {
    device: u64,
    bmc: u64,
    data_mac: String,
}

async fn server_with_bmc(api: &Api, site: &Site, name: &str, bmc_mac: &str) -> Server1 {
    let device = site.device(api, name, "racked").await;
    let mut ids = Vec::new();
    let data_mac = format!("{}:ff", &bmc_mac[..14]);
    for (iface, mgmt, mac) in [("bmc", true, bmc_mac), ("eth0", false, data_mac.as_str())] {
        let created = api
            .post(
                "dcim/interfaces/",
                json!({"device": device, "name": iface, "type": "1000base-t", "mgmt_only": mgmt}),
            )
            .await;
        let id = created["id"].as_u64().expect("interface id");
        let mac_object = api
            .post(
                "dcim/mac-addresses/",
                json!({"mac_address": mac, "assigned_object_type": "dcim.interface", "assigned_object_id": id}),
            )
            .await;
        api.patch(
            &format!("dcim/interfaces/{id}/"),
            json!({"primary_mac_address": mac_object["id"]}),
        )
        .await;
        ids.push(id);
    }
    Server1 {
        device,
        bmc: ids[0],
        data_mac,
    }
}

/// The test's own VRF with the lease subnet as a prefix scoped to its site: addresses stay
/// unique per test and per run.
async fn lease_prefix(api: &Api, site: &Site) -> u64 {
    let vrf = api
        .post(
            "ipam/vrfs/",
            json!({"name": site.slug, "enforce_unique": true}),
        )
        .await;
    let vrf = vrf["id"].as_u64().expect("vrf id");
    api.post(
        "ipam/prefixes/",
        json!({"prefix": SUBNET, "vrf": vrf, "status": "active", "scope_type": "dcim.site", "scope_id": site.id}),
    )
    .await;
    vrf
}

fn counters(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("spool/counters.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}))
}

fn count(dir: &Path, key: &str) -> u64 {
    counters(dir)[key].as_u64().unwrap_or(0)
}

fn pending(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("spool/pending"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

async fn ip_on(api: &Api, iface: u64) -> Vec<Value> {
    api.results(&format!("ipam/ip-addresses/?interface_id={iface}"))
        .await
}

/// A lease from a real DHCP server through its hook: NetBox records it and racklift starts the
/// bring-up; a renewal writes nothing; a release marks the address and keeps the OOB IP.
async fn lease_renew_release(server: Server, tag: &str) {
    let bmc_mac = fresh_mac();
    let bmc_mac = bmc_mac.as_str();
    let api = Api::new();
    let site = Site::new(&api, tag).await;
    let srv = server_with_bmc(&api, &site, "srv", bmc_mac).await;
    let vrf = lease_prefix(&api, &site).await;
    let _racklift = Racklift::start(&site, Options::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = Lan::new(tag, dir.path());
    let proxy = Proxy::start_on(&lan.uplink_ip, lab_addr()).await;
    let hook = write_hook_config(dir.path(), &proxy.url());
    lan.start_server(server, &hook).await;

    let client = lan.client(bmc_mac, "bmc-01");
    let ip = client.bound().await;
    common::wait_moved(&api, srv.device, "discovered", "provisioning").await;
    // Provisioning follows; with no BMC credentials configured here it fails, saying so.
    let device = wait_for("provisioning to run after discovery", || async {
        let device = api.device(srv.device).await;
        (lifecycle(&device).as_deref() == Some("failed")).then_some(device)
    })
    .await;
    let error = device["custom_fields"]["lifecycle_error"]
        .as_str()
        .unwrap_or("");
    assert!(
        error.contains("no BMC credentials are configured"),
        "{error}"
    );
    let records = ip_on(&api, srv.bmc).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["address"], format!("{ip}/24"));
    assert_eq!(record["status"]["value"], "dhcp");
    assert_eq!(record["vrf"]["id"], vrf);
    assert_eq!(device["oob_ip"]["id"], record["id"]);
    let journal = journal_texts(&api.journal(srv.device).await);
    let server_name = match server {
        Server::Kea => "kea",
        Server::IscDhcpd => "isc-dhcpd",
        Server::Dnsmasq => "dnsmasq",
    };
    let expected = format!(
        "info: racklift: racked → discovered: BMC interface bmc ({}), commit lease from {server_name}, hostname bmc-01: recorded {ip}/24 on bmc; OOB IP set to {ip}/24",
        bmc_mac.to_uppercase()
    );
    assert_eq!(journal[0], expected, "{journal:?}");
    assert_eq!(
        journal[1],
        "info: racklift: discovered → provisioning: claimed for provisioning"
    );
    assert!(
        journal[2].starts_with("danger: racklift: provisioning → failed"),
        "{journal:?}"
    );
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert_eq!(api.moves(srv.device, "racked", "discovered").await, 1);

    // A renewal: the hook runs, the drain finds nothing new and writes nothing. (The first
    // lease counts as unchanged instead of applied when a loaded NetBox made its last write
    // but the answer missed the client's timeout: its retry found nothing left to do.)
    let applied = count(dir.path(), "applied");
    let handled = count(dir.path(), "applied")
        + count(dir.path(), "unchanged")
        + count(dir.path(), "superseded");
    let changes_before = api.changes(srv.device).await.len();
    client.renew();
    wait_for("the renewal to reach the drain", || async {
        client
            .events()
            .iter()
            .any(|e| e.starts_with("renew "))
            .then_some(())
    })
    .await;
    wait_for("the renewal's events to be drained", || async {
        let now = count(dir.path(), "unchanged")
            + count(dir.path(), "superseded")
            + count(dir.path(), "applied");
        (now > handled && count(dir.path(), "unchanged") >= 1 && pending(dir.path()) == 0)
            .then_some(())
    })
    .await;
    assert_eq!(
        count(dir.path(), "applied"),
        applied,
        "{}",
        counters(dir.path())
    );
    assert_eq!(api.journal(srv.device).await.len(), 3);
    assert_eq!(api.changes(srv.device).await.len(), changes_before);
    assert_eq!(
        ip_on(&api, srv.bmc).await[0]["last_updated"],
        record["last_updated"]
    );

    // A release: the address is marked, the OOB IP and the lifecycle stay.
    client.release();
    let released = wait_for("the release to mark the address", || async {
        let records = ip_on(&api, srv.bmc).await;
        (records[0]["status"]["value"] == "deprecated" && pending(dir.path()) == 0)
            .then(|| records[0].clone())
    })
    .await;
    assert_eq!(released["id"], record["id"]);
    let device = api.device(srv.device).await;
    assert_eq!(device["oob_ip"]["id"], record["id"]);
    assert_eq!(lifecycle(&device).as_deref(), Some("failed"));
    let journal = journal_texts(&api.journal(srv.device).await);
    assert_eq!(journal.len(), 4, "{journal:?}");
    assert!(
        journal[3].starts_with(&format!(
            "info: racklift: BMC interface bmc ({}), release lease from {server_name}",
            bmc_mac.to_uppercase()
        )) && journal[3].ends_with(&format!(
            "{ip}/24 marked deprecated until the lease is taken again; the OOB IP is kept"
        )),
        "{journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kea_lease_renewal_and_release_reach_netbox() {
    lease_renew_release(Server::Kea, "k").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn isc_dhcpd_lease_renewal_and_release_reach_netbox() {
    lease_renew_release(Server::IscDhcpd, "i").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dnsmasq_lease_renewal_and_release_reach_netbox() {
    lease_renew_release(Server::Dnsmasq, "d").await;
}

/// A configuration for hook runs that never reach NetBox (bad input is refused before
/// anything is spooled, or the test serves its own stand-in).
fn offline_hook_config(dir: &Path, netbox_url: &str, extra: &str) -> std::path::PathBuf {
    common::dhcp::hook_config(
        dir,
        netbox_url,
        "0123456789abcdef0123456789abcdef01234567",
        extra,
    )
}

#[test]
fn bad_hook_input_exits_2_with_one_line_and_spools_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 9: no drain may start, and none is needed.
    let hook = offline_hook_config(dir.path(), "http://127.0.0.1:9", "");
    let mac = fresh_mac();
    let lease = |args: &[&str]| {
        let mut all = vec!["dhcp-lease", "--server", "test"];
        all.extend_from_slice(args);
        racklift(&hook, &all)
    };
    let huge = "a".repeat(100_000);
    for (args, message) in [
        (
            vec![
                "--event",
                "commit",
                "--mac",
                "zz:00:00:b1:00:01",
                "--ip",
                "10.213.0.50",
            ],
            "is not an Ethernet MAC address",
        ),
        // A multi-byte character where a byte-sliced parse would cut it (it panicked: exit 101).
        (
            vec![
                "--event",
                "commit",
                "--mac",
                "0é000000000",
                "--ip",
                "10.213.0.50",
            ],
            "is not an Ethernet MAC address",
        ),
        (
            vec!["--event", "commit", "--mac", &mac, "--ip", "10.213.0.300"],
            "is not an IPv4 address",
        ),
        (vec!["--event", "commit", "--mac", &mac], "--ip <IP>"),
        (
            vec!["--event", "lease", "--mac", &mac, "--ip", "10.213.0.50"],
            "invalid value 'lease'",
        ),
        (
            vec!["--event", "commit", "--mac", &huge, "--ip", "10.213.0.50"],
            "at most 4096 are allowed",
        ),
        (
            vec![
                "--event",
                "commit",
                "--mac",
                &mac,
                "--ip",
                "10.213.0.50",
                "--hostname",
                &huge,
            ],
            "at most 4096 are allowed",
        ),
        (
            vec![
                "--event",
                "commit",
                "--mac",
                &mac,
                "--ip",
                "10.213.0.50",
                "--hostname",
                &huge[..300],
            ],
            "at most 253",
        ),
        (
            vec![
                "--event",
                "commit",
                "--mac",
                &huge[..40],
                "--ip",
                "10.213.0.50",
            ],
            "is not an Ethernet MAC address",
        ),
        (
            vec![
                "--event",
                "commit",
                "--mac",
                &mac,
                "--ip",
                "10.213.0.50",
                "--hostname",
                "a;b",
            ],
            "only letters",
        ),
    ] {
        let out = lease(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{:?}: {stderr}", &args[..2]);
        assert!(stderr.len() < 2000, "the message stays readable");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one line in the DHCP server's log: {stderr}"
        );
        assert!(stderr.starts_with("racklift: error: "), "{stderr}");
        assert_eq!(pending(dir.path()), 0);
    }
}

/// Spools `n` commits from distinct fresh MACs, as many hook runs would have.
fn spool_commits(spool_dir: &Path, n: usize) {
    let spool = racklift::dhcp::Spool::open(spool_dir).expect("spool");
    let start = chrono::Utc::now();
    for i in 0..n {
        spool
            .push(&racklift::dhcp::LeaseEvent {
                kind: racklift::dhcp::LeaseEventKind::Commit,
                mac: fresh_mac().parse().expect("mac"),
                ip: "10.213.0.100".parse().expect("ip"),
                hostname: None,
                subnet: None,
                server: "test".into(),
                received_at: start + chrono::Duration::microseconds(i64::try_from(i).expect("n")),
            })
            .expect("push");
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_spool_is_drained_in_one_round_into_a_bounded_list() {
    let netbox = common::dhcp::NoMacsNetBox::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = offline_hook_config(dir.path(), &netbox.url, "  record_limit: 100\n");
    spool_commits(&dir.path().join("spool"), 300);

    let drained = racklift(&hook, &["dhcp-drain"]);
    let log = String::from_utf8_lossy(&drained.stderr);
    assert!(drained.status.success(), "{log}");
    assert!(
        log.contains("unknown=300") && log.contains("rounds=1"),
        "{log}"
    );
    assert_eq!(netbox.lookups(), 300, "one NetBox call per MAC");
    assert_eq!(pending(dir.path()), 0);
    assert_eq!(
        files_in(&dir.path().join("spool/unknown")),
        100,
        "dhcp.record_limit holds"
    );
    let status = racklift(&hook, &["dhcp-spool"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("unknown MACs 100"), "{status}");
    assert!(status.contains("unknown 300"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_spool_files_never_break_dhcp_spool() {
    let netbox = common::dhcp::NoMacsNetBox::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = offline_hook_config(dir.path(), &netbox.url, "");
    let spool = dir.path().join("spool");
    racklift::dhcp::Spool::open(&spool).expect("spool");
    std::fs::write(
        spool.join("pending/00000000000000000001-1-0.json"),
        b"{\"kind\": ",
    )
    .expect("write");
    std::fs::write(spool.join("rejected/02-00-00-00-00-01.json"), b"\xff").expect("write");
    std::fs::write(spool.join("unknown/02-00-00-00-00-02.json"), b"").expect("write");

    let drained = racklift(&hook, &["dhcp-drain"]);
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    assert_eq!(pending(dir.path()), 0, "the unreadable event is set aside");
    for (args, says) in [
        (vec!["dhcp-spool"], "unreadable"),
        (vec!["dhcp-spool", "rejected"], "1 unreadable files in"),
        (vec!["dhcp-spool", "unknown"], "1 unreadable files in"),
        (vec!["dhcp-spool", "requeue"], "0 leases back to pending"),
    ] {
        let out = racklift(&hook, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(says), "{args:?}: {stdout}");
    }
    let status = racklift(&hook, &["dhcp-spool"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!(
            "1 pending set aside in {}",
            spool.join("corrupt").display()
        )),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_log_is_rotated_before_it_grows_past_its_limit() {
    let netbox = common::dhcp::NoMacsNetBox::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = offline_hook_config(dir.path(), &netbox.url, "");
    let log = dir.path().join("spool/drain.log");
    std::fs::create_dir_all(dir.path().join("spool")).expect("spool");
    // Past the default dhcp.log_limit_bytes (1 MiB).
    std::fs::write(&log, vec![b'x'; 1024 * 1024 + 1]).expect("log");

    let out = racklift(
        &hook,
        &[
            "dhcp-lease",
            "--event",
            "commit",
            "--mac",
            &fresh_mac(),
            "--ip",
            "10.213.0.100",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the hook's drain to finish", || async {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("drain finished"))
            .then_some(())
    })
    .await;
    let rotated = std::fs::metadata(dir.path().join("spool/drain.log.1")).expect("rotated");
    assert_eq!(rotated.len(), 1024 * 1024 + 1);
    assert!(std::fs::metadata(&log).expect("new log").len() < 64 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_netbox_unreachable_leases_are_spooled_and_the_latest_of_each_mac_lands_once() {
    let api = Api::new();
    let site = Site::new(&api, "down").await;
    let (mac_a, mac_b) = (fresh_mac(), fresh_mac());
    let a = server_with_bmc(&api, &site, "a", &mac_a).await;
    let b = server_with_bmc(&api, &site, "b", &mac_b).await;
    lease_prefix(&api, &site).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lan = Lan::new("n", dir.path());
    let proxy = Proxy::start_on(&lan.uplink_ip, lab_addr()).await;
    let hook = write_hook_config(dir.path(), &proxy.url());
    lan.start_server(Server::Kea, &hook).await;

    proxy.cut().await;
    let client_a = lan.client(&mac_a, "bmc-a");
    client_a.bound().await;
    let client_b = lan.client(&mac_b, "bmc-b");
    let ip_b = client_b.bound().await;
    // Both clients hold leases while NetBox is away; A renews twice more.
    client_a.renew();
    wait_for("A's first renewal", || async {
        (client_a
            .events()
            .iter()
            .filter(|e| e.starts_with("renew "))
            .count()
            >= 1)
            .then_some(())
    })
    .await;
    client_a.renew();
    wait_for("A's second renewal", || async {
        (client_a
            .events()
            .iter()
            .filter(|e| e.starts_with("renew "))
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    // Kea hands over each renewal twice (lease4_renew and leases4_committed): six events at
    // least. The drain already drops superseded ones while it waits; each MAC's latest waits.
    wait_for("the events to be spooled", || async {
        (lan.events_handed_over() >= 6 && pending(dir.path()) >= 2).then_some(())
    })
    .await;
    assert!(
        ip_on(&api, a.bmc).await.is_empty(),
        "nothing reached NetBox while it was away"
    );

    proxy.restore();
    wait_for("both devices discovered", || async {
        let da = api.device(a.device).await;
        let db = api.device(b.device).await;
        (lifecycle(&da).as_deref() == Some("discovered")
            && lifecycle(&db).as_deref() == Some("discovered"))
        .then_some(())
    })
    .await;
    wait_for("the spool to empty", || async {
        (pending(dir.path()) == 0).then_some(())
    })
    .await;
    let c = counters(dir.path());
    let handled = ["applied", "unchanged", "superseded"]
        .iter()
        .map(|k| c[k].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(
        handled as usize,
        lan.events_handed_over(),
        "every event the hook handed over is accounted for: {c}"
    );
    assert!(
        c["superseded"].as_u64().unwrap_or(0) >= 2,
        "A's older events were superseded: {c}"
    );
    for srv in [&a, &b] {
        assert_eq!(ip_on(&api, srv.bmc).await.len(), 1);
        assert_eq!(api.moves(srv.device, "racked", "discovered").await, 1);
        let journal = journal_texts(&api.journal(srv.device).await);
        assert_eq!(journal.len(), 1, "{journal:?}");
    }
    // Oldest first, by each MAC's latest event: A's latest is a renewal made after B's lease,
    // so B's address record was created first.
    let ra = &ip_on(&api, a.bmc).await[0];
    let rb = &ip_on(&api, b.bmc).await[0];
    assert_eq!(rb["address"], format!("{ip_b}/24"));
    assert!(rb["id"].as_u64() < ra["id"].as_u64(), "{ra} {rb}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_or_data_macs_write_nothing_and_refusals_are_journaled_once() {
    let api = Api::new();
    let site = Site::new(&api, "hookin").await;
    let mac = fresh_mac();
    let srv = server_with_bmc(&api, &site, "srv", &mac).await;
    let other = server_with_bmc(&api, &site, "other", &fresh_mac()).await;
    let unknown = fresh_mac();
    let vrf = lease_prefix(&api, &site).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = write_hook_config(dir.path(), &common::lab().url);
    let lease = |args: &[&str]| {
        let mut all = vec!["dhcp-lease", "--server", "test"];
        all.extend_from_slice(args);
        racklift(&hook, &all)
    };
    // A MAC NetBox does not have, and one on a data interface: spooled, then kept aside.
    for (mac, ip) in [
        (unknown.as_str(), "10.213.0.60"),
        (srv.data_mac.as_str(), "10.213.0.61"),
    ] {
        let out = lease(&["--event", "commit", "--mac", mac, "--ip", ip]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for("both unknown leases to be drained", || async {
        (count(dir.path(), "unknown") == 2 && pending(dir.path()) == 0).then_some(())
    })
    .await;
    let listed = racklift(&hook, &["dhcp-spool", "unknown"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&unknown.to_uppercase())
            && listed.contains("no device interface in NetBox has MAC"),
        "{listed}"
    );
    assert!(
        listed.contains(&srv.data_mac.to_uppercase())
            && listed.contains("which is not a management-only (BMC) interface"),
        "{listed}"
    );
    assert!(
        api.results(&format!("ipam/ip-addresses/?vrf_id={vrf}"))
            .await
            .is_empty()
    );
    assert!(api.journal(srv.device).await.is_empty());
    assert_eq!(
        lifecycle(&api.device(srv.device).await).as_deref(),
        Some("racked")
    );

    // An address NetBox holds on another device's BMC: only a journal entry.
    let held = api
        .post(
            "ipam/ip-addresses/",
            json!({"address": "10.213.0.70/24", "vrf": vrf, "status": "active",
                   "assigned_object_type": "dcim.interface", "assigned_object_id": other.bmc}),
        )
        .await;
    let out = lease(&["--event", "commit", "--mac", &mac, "--ip", "10.213.0.70"]);
    assert!(out.status.success());
    wait_for("the conflict to be drained", || async {
        (count(dir.path(), "conflicts") == 1 && pending(dir.path()) == 0).then_some(())
    })
    .await;
    let journal = journal_texts(&api.journal(srv.device).await);
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(
        journal[0].starts_with(&format!(
            "warning: racklift: DHCP lease 10.213.0.70 (BMC interface bmc ({})) conflicts",
            mac.to_uppercase()
        )),
        "{journal:?}"
    );
    assert!(
        journal[0].contains("NetBox holds the address on"),
        "{journal:?}"
    );
    let after = api.get(&format!("ipam/ip-addresses/{}/", held["id"])).await;
    assert_eq!(after["assigned_object_id"], other.bmc);
    assert_eq!(after["last_updated"], held["last_updated"]);
    let device = api.device(srv.device).await;
    assert_eq!(lifecycle(&device).as_deref(), Some("racked"));
    assert!(device["oob_ip"].is_null());

    // An address no prefix holds: kept aside with the reason, and the operator told.
    let out = lease(&["--event", "commit", "--mac", &mac, "--ip", "10.213.9.5"]);
    assert!(out.status.success());
    wait_for("the unrecordable lease to be set aside", || async {
        (count(dir.path(), "rejected") == 1 && pending(dir.path()) == 0).then_some(())
    })
    .await;
    let rejected = racklift(&hook, &["dhcp-spool", "rejected"]);
    assert!(String::from_utf8_lossy(&rejected.stdout).contains("no NetBox prefix contains it"));
    let journal = journal_texts(&api.journal(srv.device).await);
    assert!(
        journal
            .last()
            .expect("entry")
            .contains("Add the prefix in NetBox IPAM"),
        "{journal:?}"
    );

    // Its renewals, as Kea reports them (renew and commit, from another server name too), and
    // the operator's requeue before the prefix exists: one journal entry and one record, counted.
    for (n, (kind, server)) in [("renew", "kea"), ("commit", "kea"), ("renew", "other")]
        .into_iter()
        .enumerate()
    {
        let out = racklift(
            &hook,
            &[
                "dhcp-lease",
                "--server",
                server,
                "--event",
                kind,
                "--mac",
                &mac,
                "--ip",
                "10.213.9.5",
            ],
        );
        assert!(out.status.success());
        wait_for("the renewal to be set aside", || async {
            (count(dir.path(), "rejected") == 2 + n as u64 && pending(dir.path()) == 0)
                .then_some(())
        })
        .await;
    }
    let rejected_line = || {
        let listed = racklift(&hook, &["dhcp-spool", "rejected"]);
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        listed
            .lines()
            .find(|l| l.starts_with(&mac.to_uppercase()))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{listed}"))
    };
    assert!(
        rejected_line().contains(" 4  racklift: DHCP lease 10.213.9.5"),
        "counted: {}",
        rejected_line()
    );
    let requeued = racklift(&hook, &["dhcp-spool", "requeue"]);
    assert!(String::from_utf8_lossy(&requeued.stdout).contains("1 leases back to pending"));
    racklift(&hook, &["dhcp-drain"]);
    wait_for("the requeued lease to be set aside again", || async {
        (count(dir.path(), "rejected") == 5 && pending(dir.path()) == 0).then_some(())
    })
    .await;
    let refusals: Vec<String> = journal_texts(&api.journal(srv.device).await)
        .into_iter()
        .filter(|j| j.contains("not recorded"))
        .collect();
    assert_eq!(refusals.len(), 1, "journaled once: {refusals:?}");
    assert_eq!(
        files_in(&dir.path().join("spool/rejected")),
        1,
        "one record per MAC"
    );
    // The requeued lease starts a new record: its count is its own.
    let line = rejected_line();
    assert!(
        line.contains(" 1  racklift: DHCP lease 10.213.9.5"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_hook_runs_for_one_lease_write_netbox_once() {
    let api = Api::new();
    let site = Site::new(&api, "burst").await;
    let mac = fresh_mac();
    let srv = server_with_bmc(&api, &site, "srv", &mac).await;
    lease_prefix(&api, &site).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = write_hook_config(dir.path(), &common::lab().url);

    // As Kea does: many hook processes at once, each spooling and starting a drain.
    let runs: Vec<_> = (0..24)
        .map(|n| {
            let hook = hook.clone();
            let mac = mac.clone();
            let kind = if n % 2 == 0 { "commit" } else { "renew" };
            std::thread::spawn(move || {
                racklift(
                    &hook,
                    &[
                        "dhcp-lease",
                        "--server",
                        "burst",
                        "--event",
                        kind,
                        "--mac",
                        &mac,
                        "--ip",
                        "10.213.0.42",
                    ],
                )
            })
        })
        .collect();
    for run in runs {
        let out = run.join().expect("hook run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for("every event to be accounted for", || async {
        let handled = ["applied", "unchanged", "superseded"]
            .iter()
            .map(|k| count(dir.path(), k))
            .sum::<u64>();
        (handled == 24 && pending(dir.path()) == 0).then_some(())
    })
    .await;
    // One event did the work. (A write whose answer NetBox lost to a timeout is retried and
    // then finds nothing new: it counts as unchanged, and NetBox still shows one of everything.)
    assert_eq!(
        count(dir.path(), "applied") + count(dir.path(), "unchanged"),
        1,
        "{}",
        counters(dir.path())
    );
    assert_eq!(ip_on(&api, srv.bmc).await.len(), 1);
    assert_eq!(api.journal(srv.device).await.len(), 1);
    assert_eq!(api.moves(srv.device, "racked", "discovered").await, 1);
    let stray: Vec<_> = std::fs::read_dir(dir.path().join("spool/pending"))
        .expect("pending dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        stray.is_empty(),
        "no temp or half-written files left: {stray:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_netbox_answers_5xx_for_does_not_hold_up_the_other_macs() {
    let api = Api::new();
    let site = Site::new(&api, "hol").await;
    let (bad_mac, mac_a, mac_b) = (fresh_mac(), fresh_mac(), fresh_mac());
    let bad = server_with_bmc(&api, &site, "bad", &bad_mac).await;
    let a = server_with_bmc(&api, &site, "a", &mac_a).await;
    let b = server_with_bmc(&api, &site, "b", &mac_b).await;
    lease_prefix(&api, &site).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(lab_addr()).await;
    let hook = write_hook_config(dir.path(), &proxy.url());
    let lease = |mac: &str, ip: &str| {
        let out = racklift(
            &hook,
            &[
                "dhcp-lease",
                "--server",
                "test",
                "--event",
                "commit",
                "--mac",
                mac,
                "--ip",
                ip,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // NetBox fails every lookup of the bad device's MAC (racklift sends it upper-case, in
    // the lease query's variables), and nothing else.
    proxy.refuse_requests_with(&format!("\"mac\":\"{}\"", bad_mac.to_uppercase()));
    lease(&bad_mac, "10.213.0.50");
    wait_for("the drain to meet the 503", || async {
        (proxy.refused() >= 1).then_some(())
    })
    .await;
    // Later leases of other MACs, each starting a drain that finds the first at work.
    lease(&mac_a, "10.213.0.51");
    lease(&mac_b, "10.213.0.52");
    for srv in [&a, &b] {
        wait_lifecycle(&api, srv.device, "discovered").await;
    }
    // The bad device's lease waits, spooled (A's and B's leave once NetBox has them).
    wait_for("A's and B's events to leave the spool", || async {
        (pending(dir.path()) == 1).then_some(())
    })
    .await;
    assert_eq!(
        lifecycle(&api.device(bad.device).await).as_deref(),
        Some("racked")
    );
    let tries = proxy.refused();
    wait_for("the bad lease to be retried", || async {
        (proxy.refused() > tries).then_some(())
    })
    .await;

    // NetBox recovers for it: the same drain's next retry takes it.
    proxy.stop_refusing();
    wait_lifecycle(&api, bad.device, "discovered").await;
    // (A write whose answer a loaded NetBox lost to the client's timeout is retried and then
    // finds nothing new: it counts as unchanged.)
    wait_for("the spool to empty", || async {
        let done = count(dir.path(), "applied") + count(dir.path(), "unchanged");
        (pending(dir.path()) == 0 && done == 3).then_some(())
    })
    .await;
    for srv in [&bad, &a, &b] {
        assert_eq!(ip_on(&api, srv.bmc).await.len(), 1);
    }
}
