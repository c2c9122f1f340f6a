//! racklift for one test: its configuration, its webhook and event rule in NetBox (`racklift
//! netbox apply`, scoped to the test's site), and a `racklift serve` process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::lab::{Site, free_port, lab};
use super::wait::wait_for;

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
    super::dhcp::hook_config(dir, netbox_url, &lab().token, "")
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
