//! The integration-test harness: the lab's real NetBox (started by `scripts/lab up`), a site of
//! its own per test, a real `racklift serve` process per test with its own webhook and event
//! rule (applied by `racklift netbox apply`, scoped to the test's site), a TCP proxy a test can
//! cut, and waits on conditions with a deadline.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod bmc;
pub mod dhcp;
pub mod lldp;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

/// How long any one wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

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

pub fn unique(prefix: &str) -> String {
    format!(
        "rltest-{prefix}-{}-{:04x}",
        std::process::id(),
        fastrand::u16(..)
    )
}

/// A plain NetBox REST client for the tests: what an operator or the UI would do.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    pub fn new() -> Self {
        let lab = lab();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: format!("{}/api/", lab.url.trim_end_matches('/')),
            auth: format!("Token {}", lab.token),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.send(reqwest::Method::POST, path, Some(&body)).await;
        assert_eq!(status, 201, "POST {path} {body}: {answer}");
        answer
    }

    pub async fn patch(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.send(reqwest::Method::PATCH, path, Some(&body)).await;
        assert_eq!(status, 200, "PATCH {path} {body}: {answer}");
        answer
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }

    pub async fn results(&self, path: &str) -> Vec<Value> {
        self.get(path).await["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The object with this slug at `endpoint`, created with `body` if missing.
    pub async fn get_or_create(&self, endpoint: &str, slug: &str, body: Value) -> Value {
        let found = self.results(&format!("{endpoint}?slug={slug}")).await;
        match found.into_iter().next() {
            Some(object) => object,
            None => {
                let (status, answer) = self
                    .send(reqwest::Method::POST, endpoint, Some(&body))
                    .await;
                match status {
                    201 => answer,
                    // Another test created it meanwhile.
                    _ => self
                        .results(&format!("{endpoint}?slug={slug}"))
                        .await
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| panic!("cannot create {endpoint} {slug}: {answer}")),
                }
            }
        }
    }

    pub async fn device(&self, id: u64) -> Value {
        self.get(&format!("dcim/devices/{id}/")).await
    }

    pub async fn set_lifecycle(&self, id: u64, state: &str) {
        self.patch(
            &format!("dcim/devices/{id}/"),
            json!({"custom_fields": {"lifecycle": state}}),
        )
        .await;
    }

    pub async fn journal(&self, id: u64) -> Vec<Value> {
        self.results(&format!(
            "extras/journal-entries/?assigned_object_type=dcim.device&assigned_object_id={id}&ordering=created&limit=1000"
        ))
        .await
    }

    /// Every change NetBox recorded on the device, oldest first.
    pub async fn changes(&self, id: u64) -> Vec<Value> {
        self.results(&format!(
            "core/object-changes/?changed_object_type=dcim.device&changed_object_id={id}&ordering=time&limit=1000"
        ))
        .await
    }

    /// How many recorded changes moved the device's lifecycle from `from` to `to`.
    pub async fn moves(&self, id: u64, from: &str, to: &str) -> usize {
        self.changes(id)
            .await
            .iter()
            .filter(|c| {
                lifecycle_of(&c["prechange_data"]) == Some(from)
                    && lifecycle_of(&c["postchange_data"]) == Some(to)
            })
            .count()
    }
}

/// Waits until NetBox recorded the device moving `from` → `to`; returns the device as that
/// change left it (the state may have moved on since: provisioning runs right after its claim).
pub async fn wait_moved(api: &Api, id: u64, from: &str, to: &str) -> Value {
    wait_for(&format!("device {id} to move {from} → {to}"), || async {
        api.changes(id).await.into_iter().find_map(|c| {
            (lifecycle_of(&c["prechange_data"]) == Some(from)
                && lifecycle_of(&c["postchange_data"]) == Some(to))
            .then(|| c["postchange_data"].clone())
        })
    })
    .await
}

fn lifecycle_of(data: &Value) -> Option<&str> {
    let v = &data["custom_fields"]["lifecycle"];
    v.get("value").unwrap_or(v).as_str()
}

/// The device's lifecycle as the API shows it.
pub fn lifecycle(device: &Value) -> Option<String> {
    lifecycle_of(device).map(str::to_owned)
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

/// A device's journal as `kind: text` lines, oldest first.
pub fn journal_texts(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["kind"]["value"].as_str().unwrap_or("?"),
                e["comments"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Waits until the device's lifecycle is `state`; returns the device.
pub async fn wait_lifecycle(api: &Api, id: u64, state: &str) -> Value {
    wait_for(&format!("device {id} to be {state}"), || async {
        let device = api.device(id).await;
        (lifecycle(&device).as_deref() == Some(state)).then_some(device)
    })
    .await
}

/// Polls `check` until it returns `Some`, or fails the test after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// The lab's custom fields are shared by every test binary: a binary holds this lock shared
/// for as long as it runs, and the one test that deletes and recreates racklift's fields
/// (tests/enrolment.rs) holds it exclusively, so it never pulls the fields from under another
/// binary's tests (cargo runs test binaries one after another; people and helpers may not).
static LAB_LOCK: OnceLock<std::fs::File> = OnceLock::new();

fn lab_lock_file() -> std::fs::File {
    let home =
        std::env::var("RACKLIFT_LAB_HOME").unwrap_or_else(|_| "/var/lib/racklift-lab".into());
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(&home).join("custom-fields.lock"))
        .expect("the lab's lock file")
}

/// Locks the lab's custom fields, waiting at most half an hour for the other side.
fn lock_lab(shared: bool) -> std::fs::File {
    let file = lab_lock_file();
    let deadline = std::time::Instant::now() + Duration::from_secs(1800);
    loop {
        let attempt = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match attempt {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the lab's custom fields stayed locked for 30 minutes"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(std::fs::TryLockError::Error(e)) => panic!("locking the lab: {e}"),
        }
    }
}

/// Takes the lab's custom fields for this test binary alone (before any `Site::new`).
pub fn own_custom_fields() {
    assert!(
        LAB_LOCK.set(lock_lab(false)).is_ok(),
        "own_custom_fields runs before anything else touches the lab"
    );
}

/// `racklift netbox apply --from DIR` with `DIR/custom_fields.yaml` alone (no webhook: there
/// is no racklift to call): what an operator's first apply does to the custom fields.
pub fn apply_custom_fields(custom_fields_yaml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let defs = dir.path().join("netbox");
    std::fs::create_dir_all(defs.join("webhooks")).expect("defs dir");
    std::fs::write(defs.join("custom_fields.yaml"), custom_fields_yaml)
        .expect("custom_fields.yaml");
    let token = dir.path().join("token");
    std::fs::write(&token, &lab().token).expect("token");
    let config = dir.path().join("fields.yaml");
    std::fs::write(
        &config,
        format!(
            "netbox: {{url: {}, token: {{file: {}}}}}\nwebhook: {{secret: {{file: {}}}}}\n",
            lab().url,
            token.display(),
            token.display()
        ),
    )
    .expect("config");
    racklift(
        &config,
        &["netbox", "apply", "--from", defs.to_str().expect("utf-8")],
    )
}

/// The repository's `netbox/custom_fields.yaml`.
pub fn custom_fields_yaml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("netbox/custom_fields.yaml"))
        .expect("netbox/custom_fields.yaml")
}

/// racklift's custom fields, as `racklift netbox apply` makes them, once per test binary:
/// tests create devices with a lifecycle before their racklift applies its webhook.
fn ensure_custom_fields() {
    static APPLIED: OnceLock<()> = OnceLock::new();
    APPLIED.get_or_init(|| {
        LAB_LOCK.get_or_init(|| lock_lab(true));
        let out = apply_custom_fields(&custom_fields_yaml());
        assert!(
            out.status.success(),
            "racklift netbox apply (custom fields): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
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

/// The `racklift` binary cargo built for this test run.
pub fn racklift_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_racklift"))
}

/// What a test may change in racklift's configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub netbox_url: String,
    pub token: String,
    pub resync: &'static str,
    pub validating_deadline: &'static str,
    pub body_limit: usize,
    pub pause_dir: Option<PathBuf>,
    /// YAML for the `bmc:` section (indented by two spaces), if the test has BMCs.
    pub bmc: String,
    /// Secrets the test gave racklift beyond the token and webhook secret (BMC passwords):
    /// none may appear in its log.
    pub secrets: Vec<String>,
    /// The validation callback's bearer token.
    pub validation_token: Option<String>,
    /// racklift's `netbox.timeout` (per request).
    pub netbox_timeout: &'static str,
    /// More of the `validation:` section (with the token), as YAML lines indented by two spaces.
    pub validation: String,
    /// More top-level sections (e.g. `http:`), as YAML.
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        let lab = lab();
        Self {
            netbox_url: lab.url.clone(),
            token: lab.token.clone(),
            resync: "60s",
            validating_deadline: "30m",
            body_limit: 1024 * 1024,
            pause_dir: None,
            bmc: String::new(),
            secrets: Vec::new(),
            validation_token: None,
            netbox_timeout: "5s",
            validation: String::new(),
            extra: String::new(),
        }
    }
}

/// A `racklift serve` process for one test, with its own webhook and event rule in NetBox.
#[derive(Debug)]
pub struct Racklift {
    pub dir: tempfile::TempDir,
    pub instance: String,
    pub port: u16,
    pub secret: String,
    pub options: Options,
    child: Option<Child>,
    restarts: u32,
}

impl Racklift {
    pub async fn start(site: &Site, options: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let secret = format!("whsec-{}", fastrand::u64(..));
        let mut me = Self {
            instance: site.slug.clone(),
            dir,
            port,
            secret,
            options,
            child: None,
            restarts: 0,
        };
        me.write_config(&site.slug);
        let apply = me.run(&["netbox", "apply"]);
        assert!(
            apply.status.success(),
            "racklift netbox apply failed:\n{}{}",
            String::from_utf8_lossy(&apply.stdout),
            String::from_utf8_lossy(&apply.stderr)
        );
        me.spawn().await;
        me
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("racklift.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("racklift-{}.log", self.restarts))
    }

    fn write_config(&self, site: &str) {
        let token = self.dir.path().join("netbox-token");
        let secret = self.dir.path().join("webhook-secret");
        std::fs::write(&token, &self.options.token).expect("token file");
        std::fs::write(&secret, &self.secret).expect("secret file");
        let config = format!(
            "netbox:\n  url: {url}\n  token: {{file: {token}}}\n  timeout: {timeout}\n\
             listen: 127.0.0.1:{port}\n\
             webhook:\n  url: http://127.0.0.1:{port}/hooks/netbox\n  secret: {{file: {secret}}}\n  body_limit_bytes: {limit}\n\
             scope:\n  instance: {site}\n  sites: [{site}]\n\
             reconciler:\n  concurrency: 4\n  resync_interval: {resync}\n  validating_deadline: {deadline}\n  backoff_base: 200ms\n  backoff_max: 2s\n  stage_retries: 3\n\
             {bmc}{validation}{extra}",
            url = self.options.netbox_url,
            timeout = self.options.netbox_timeout,
            token = token.display(),
            secret = secret.display(),
            port = self.port,
            limit = self.options.body_limit,
            resync = self.options.resync,
            deadline = self.options.validating_deadline,
            validation = self
                .options
                .validation_token
                .as_ref()
                .map_or_else(String::new, |token| {
                    let file = self.dir.path().join("validation-token");
                    std::fs::write(&file, token).expect("validation token");
                    format!(
                        "validation:\n  token: {{file: {}}}\n{}",
                        file.display(),
                        self.options.validation
                    )
                }),
            extra = self.options.extra,
            bmc = if self.options.bmc.is_empty() {
                String::new()
            } else {
                format!("bmc:\n{}\n", self.options.bmc)
            },
        );
        std::fs::write(self.config_path(), config).expect("config file");
    }

    /// Runs a racklift subcommand with this test's configuration.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(racklift_bin())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run racklift")
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut command = Command::new(racklift_bin());
        command
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env("RUST_LOG", "racklift=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(dir) = &self.options.pause_dir {
            command.env("RACKLIFT_TEST_PAUSE_DIR", dir);
        }
        self.child = Some(command.spawn().expect("start racklift serve"));
        let health = format!("http://127.0.0.1:{}/healthz", self.port);
        let log_path = self.log_path();
        wait_for(
            &format!("racklift to answer {health} (log {})", log_path.display()),
            || {
                let health = health.clone();
                async move {
                    let ok = reqwest::get(&health).await.ok()?.status().is_success();
                    ok.then_some(())
                }
            },
        )
        .await;
    }

    /// SIGKILL: no shutdown, no flushing, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self, options: Options) {
        self.kill();
        self.options = options;
        self.restarts += 1;
        self.write_config(&self.instance.clone());
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn hook_url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/netbox", self.port)
    }

    pub async fn health(&self) -> Value {
        reqwest::get(format!("http://127.0.0.1:{}/healthz", self.port))
            .await
            .expect("healthz")
            .json()
            .await
            .expect("healthz json")
    }

    /// Posts `body` to the webhook as NetBox would, signed with this racklift's secret.
    pub async fn deliver(&self, body: &[u8]) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(self.hook_url())
            .header("Content-Type", "application/json")
            .header(
                "X-Hook-Signature",
                racklift::http::sign(&racklift::config::Secret::new(self.secret.clone()), body),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("deliver");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Racklift {
    /// Every log this racklift wrote, across restarts.
    fn all_logs(&self) -> String {
        (0..=self.restarts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("racklift-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Racklift {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- racklift log ({}) ---\n{}",
                self.log_path().display(),
                self.log()
            );
            return;
        }
        // No secret racklift was given may show in its logs, in any test of the suite.
        let logs = self.all_logs();
        let given = [&self.options.token, &self.secret]
            .into_iter()
            .chain(&self.options.secrets)
            .chain(&self.options.validation_token);
        for secret in given {
            assert!(
                !logs.contains(secret.as_str()),
                "a secret racklift was given appears in its log ({})",
                self.dir.path().display()
            );
        }
    }
}

/// A configuration for the DHCP hook side (`dhcp-lease`, `dhcp-drain`, `dhcp-spool`): the lab's
/// NetBox at `netbox_url` (a proxy, say), the spool in `dir/spool`, quick retries.
pub fn write_hook_config(dir: &Path, netbox_url: &str) -> PathBuf {
    dhcp::hook_config(dir, netbox_url, &lab().token, "")
}

/// Runs a racklift subcommand with `config`.
pub fn racklift(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(racklift_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run racklift")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A file in `dir` exists.
pub fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}
