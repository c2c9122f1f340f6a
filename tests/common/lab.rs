//! The lab: its NetBox (started by `scripts/lab up`), a site of the test's own with the shared
//! device type and role, names and MACs no earlier run used, and small process helpers.

use std::process::Command;
use std::sync::OnceLock;

use serde_json::json;

use super::api::Api;
use super::fields::ensure_custom_fields;

/// The lab's NetBox: URL and tokens from `scripts/lab env` (or NETBOX_URL / NETBOX_TOKEN).
#[derive(Debug, Clone)]
pub struct Lab {
    pub url: String,
    pub token: String,
    pub token_v2: Option<String>,
}

pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let from_file = std::fs::read_to_string(
            std::env::var("RACKLIFT_LAB_HOME").unwrap_or_else(|_| "/var/lib/racklift-lab".into())
                + "/env",
        )
        .unwrap_or_default();
        let get = |key: &str| {
            std::env::var(key).ok().or_else(|| {
                from_file
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
            })
        };
        Lab {
            url: get("NETBOX_URL")
                .expect("no NetBox for the tests: run `scripts/lab up` first (or set NETBOX_URL and NETBOX_TOKEN)"),
            token: get("NETBOX_TOKEN").expect("NETBOX_TOKEN"),
            token_v2: get("NETBOX_TOKEN_V2"),
        }
    })
}

/// The lab NetBox's `host:port`, for a proxy in front of it.
pub fn lab_addr() -> String {
    lab()
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A locally administered MAC no earlier run used: NetBox keeps every run's devices.
pub fn fresh_mac() -> String {
    let b: [u8; 5] = std::array::from_fn(|_| fastrand::u8(..));
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4] & 0xf0
    )
}

/// A name of the test's own: `rltest-<prefix>-<pid>-<random>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "rltest-{prefix}-{}-{:04x}",
        std::process::id(),
        fastrand::u16(..)
    )
}

/// The shared device type and role, and a site of the test's own.
#[derive(Debug, Clone)]
pub struct Site {
    pub id: u64,
    pub slug: String,
    pub device_type: u64,
    pub role: u64,
}

/// Deletes webhooks and event rules left by earlier runs' tests (their racklift is gone), once
/// per test binary. Test binaries run one after another, so this never races another's tests.
async fn purge_stale_test_objects(api: &Api) {
    static PURGED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    PURGED
        .get_or_init(|| async {
            for endpoint in ["extras/event-rules/", "extras/webhooks/"] {
                for object in api
                    .results(&format!("{endpoint}?name__isw=rltest-&limit=1000"))
                    .await
                {
                    api.delete(&format!("{endpoint}{}/", object["id"])).await;
                }
            }
        })
        .await;
}

impl Site {
    pub async fn new(api: &Api, name: &str) -> Self {
        purge_stale_test_objects(api).await;
        ensure_custom_fields();
        let manufacturer = api
            .get_or_create(
                "dcim/manufacturers/",
                "rltest-vendor",
                json!({"name": "rltest vendor", "slug": "rltest-vendor"}),
            )
            .await;
        let device_type = api
            .get_or_create(
                "dcim/device-types/",
                "rltest-1u",
                json!({"manufacturer": manufacturer["id"], "model": "rltest 1U", "slug": "rltest-1u"}),
            )
            .await;
        let role = api
            .get_or_create(
                "dcim/device-roles/",
                "rltest-server",
                json!({"name": "rltest server", "slug": "rltest-server"}),
            )
            .await;
        let slug = unique(name);
        let site = api
            .post(
                "dcim/sites/",
                json!({"name": slug, "slug": slug, "status": "active"}),
            )
            .await;
        Self {
            id: site["id"].as_u64().expect("site id"),
            slug,
            device_type: device_type["id"].as_u64().expect("type id"),
            role: role["id"].as_u64().expect("role id"),
        }
    }

    /// A device in this site with the given lifecycle; returns its id.
    pub async fn device(&self, api: &Api, name: &str, lifecycle: &str) -> u64 {
        let device = api
            .post(
                "dcim/devices/",
                json!({
                    "name": format!("{}-{name}", self.slug),
                    "site": self.id,
                    "device_type": self.device_type,
                    "role": self.role,
                    "status": "planned",
                    "custom_fields": {"lifecycle": lifecycle},
                }),
            )
            .await;
        device["id"].as_u64().expect("device id")
    }
}

/// Runs a command that must succeed (namespace and certificate set-up).
pub fn run_ok(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nothing listens on now: for a peer that must bind its own (sushy-tools), or an
/// address to refuse connections. Another process may take it before it is used, so racklift
/// itself never gets one of these: the harness binds racklift's listener and keeps it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
