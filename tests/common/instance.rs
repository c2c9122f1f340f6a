//! racklift for one test: its configuration, its webhook and event rule in NetBox (`racklift
//! netbox apply`, scoped to the test's site), and `racklift serve` — in-process by default,
//! as a process for the tests that SIGKILL it or hold it at the pause points.
//!
//! The port: the harness binds `127.0.0.1:0` once per test and keeps that listener until the
//! test ends; every start serves on a copy of it. So the port is known before racklift starts
//! (the webhook NetBox calls names it), it is the same after a restart, and no other process
//! can take it in between (binding a "free" port and letting it go leaves that window open).
//! In-process, [`racklift::serve::run`] takes the copy; a process gets it as its stdin (feature
//! `test-hooks`: `RACKLIFT_TEST_LISTENER_ON_STDIN`, src/serve.rs).

mod in_process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use super::lab::{Site, lab};
use super::wait::WAIT;

/// What racklift logs in the tests, in-process and as a process alike.
const LOG_FILTER: &str = "racklift=debug,info";

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
    /// `RACKLIFT_TEST_PAUSE_DIR` (src/netbox/pause.rs): only for [`Racklift::start_process`].
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

/// How this test's racklift runs now.
#[derive(Debug)]
enum Running {
    InProcess(in_process::Serving),
    Process(Child),
}

/// racklift for one test, with its own webhook and event rule in NetBox.
#[derive(Debug)]
pub struct Racklift {
    pub dir: tempfile::TempDir,
    pub instance: String,
    pub port: u16,
    pub secret: String,
    pub options: Options,
    /// Bound once, kept until the test ends; every start serves on a copy (see the module doc).
    listener: std::net::TcpListener,
    /// A `racklift serve` process rather than in-process.
    process: bool,
    running: Option<Running>,
    restarts: u32,
}

impl Racklift {
    /// racklift served in-process ([`racklift::serve::run`] on a runtime of its own), its log
    /// in [`Racklift::log_path`]. It cannot be killed (`restart` stops it and starts it again)
    /// and has no pause points: those tests use [`Racklift::start_process`].
    pub async fn start(site: &Site, options: Options) -> Self {
        Self::launch(site, options, false).await
    }

    /// A `racklift serve` process (built with the feature `test-hooks`, as the tests that
    /// use this require): for tests that SIGKILL racklift ([`Racklift::kill`]) or hold it at
    /// the pause points (`Options::pause_dir`).
    #[cfg(feature = "test-hooks")]
    pub async fn start_process(site: &Site, options: Options) -> Self {
        Self::launch(site, options, true).await
    }

    async fn launch(site: &Site, options: Options, process: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind racklift's port");
        let port = listener.local_addr().expect("racklift's address").port();
        let mut me = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            instance: site.slug.clone(),
            port,
            secret: format!("whsec-{}", fastrand::u64(..)),
            options,
            listener,
            process,
            running: None,
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

    /// The log of racklift's current run (one file per start).
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

    /// A copy of racklift's listener, for one start.
    fn listener(&self) -> std::net::TcpListener {
        self.listener
            .try_clone()
            .expect("a copy of racklift's listener")
    }

    /// Starts racklift and waits until it answers `/healthz`.
    async fn spawn(&mut self) {
        let running = if self.process {
            self.spawn_process()
        } else {
            assert!(
                self.options.pause_dir.is_none(),
                "the pause points are switched on in a racklift process's environment: use Racklift::start_process"
            );
            Running::InProcess(in_process::Serving::start(
                self.listener(),
                &self.config_path(),
                &self.log_path(),
                LOG_FILTER,
                &self.instance,
            ))
        };
        self.running = Some(running);
        // Requests wait in the listener's backlog until racklift accepts them, and for ever if
        // it ended: each try has a timeout, and an ended racklift fails the test at once.
        let health = format!("http://127.0.0.1:{}/healthz", self.port);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(ended) = self.ended() {
                panic!(
                    "racklift ended before it answered {health}: {ended}\n--- log ({}) ---\n{}",
                    self.log_path().display(),
                    self.log()
                );
            }
            if let Ok(response) = client.get(&health).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for racklift to answer {health} (log {})",
                self.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[cfg(feature = "test-hooks")]
    fn spawn_process(&self) -> Running {
        use std::os::fd::OwnedFd;
        use std::process::Stdio;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut command = Command::new(racklift_bin());
        command
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env("RUST_LOG", LOG_FILTER)
            .env(racklift::serve::INHERIT_LISTENER_VAR, "1")
            .stdin(Stdio::from(OwnedFd::from(self.listener())))
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(dir) = &self.options.pause_dir {
            command.env("RACKLIFT_TEST_PAUSE_DIR", dir);
        }
        Running::Process(command.spawn().expect("start racklift serve"))
    }

    #[cfg(not(feature = "test-hooks"))]
    fn spawn_process(&self) -> Running {
        unreachable!("Racklift::start_process needs the feature test-hooks")
    }

    /// Why racklift is no longer running, if it is not.
    fn ended(&mut self) -> Option<String> {
        match self.running.as_mut()? {
            Running::InProcess(serving) => {
                if !serving.is_finished() {
                    return None;
                }
                let Some(Running::InProcess(serving)) = self.running.take() else {
                    unreachable!("matched above")
                };
                Some(serving.stop().err().unwrap_or_else(|| "it stopped".into()))
            }
            Running::Process(child) => child
                .try_wait()
                .expect("racklift's status")
                .map(|status| status.to_string()),
        }
    }

    /// Stops racklift: a process is SIGKILLed, an in-process one shut down (the listener stays).
    fn stop(&mut self) {
        match self.running.take() {
            None => {}
            Some(Running::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::InProcess(serving)) => {
                if let Err(e) = serving.stop() {
                    assert!(
                        std::thread::panicking(),
                        "in-process racklift: {e}\n--- log ({}) ---\n{}",
                        self.log_path().display(),
                        self.log()
                    );
                }
            }
        }
    }

    /// SIGKILL: no shutdown, no flushing, as a crash. Only a process can be killed so.
    pub fn kill(&mut self) {
        assert!(
            self.process,
            "only a racklift process can be killed: start it with Racklift::start_process"
        );
        self.stop();
    }

    /// Stops racklift (a process is SIGKILLed) and starts it again with `options`, on the
    /// same port and with a new log.
    pub async fn restart(&mut self, options: Options) {
        self.stop();
        self.options = options;
        self.restarts += 1;
        self.write_config(&self.instance.clone());
        self.spawn().await;
    }

    /// The log of racklift's current run.
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
        self.stop();
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
