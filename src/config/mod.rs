//! The one configuration file every subcommand reads: typed, loaded once, secrets resolved from
//! the environment or from files it names (never from the file itself).
//!
//! This module owns the file as a whole: [`Config`], loading it, and the checks that span
//! sections (every duration's bounds, limits named together). Each section is its own module,
//! owning its raw (as written) and resolved forms, its defaults and its own checks: `netbox`,
//! `webhook`, `scope`, `reconciler`, `dhcp`, `bmc`, `validation`, `http`; `secret` is how any
//! of them holds a secret. Everything is re-exported here: callers name `config::X` only.

mod bmc;
mod dhcp;
mod http;
mod netbox;
mod reconciler;
mod scope;
mod secret;
mod validation;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use bmc::{BmcConfig, BmcProfile};
pub use dhcp::DhcpConfig;
pub use http::HttpConfig;
pub use netbox::NetBoxConfig;
pub use reconciler::ReconcilerConfig;
pub use scope::Scope;
pub use secret::{Secret, SecretSource};
pub use validation::{ReportBounds, ValidationConfig};
pub use webhook::WebhookConfig;

use bmc::RawBmc;
use netbox::RawNetBox;
use validation::RawValidation;
use webhook::RawWebhook;

/// Where racklift looks when neither `--config` nor `RACKLIFT_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/racklift/racklift.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error(
        "{what} is not configured: set `{file_key}` in the configuration file or the environment variable {env}"
    )]
    MissingSecret {
        what: &'static str,
        file_key: &'static str,
        env: String,
    },
    #[error("cannot read {what} from {path}")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} in {path} is empty")]
    EmptySecret { what: &'static str, path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The file as written; [`Config::load`] turns it into [`Config`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    netbox: RawNetBox,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    webhook: RawWebhook,
    #[serde(default)]
    scope: Scope,
    #[serde(default)]
    reconciler: ReconcilerConfig,
    #[serde(default)]
    dhcp: DhcpConfig,
    #[serde(default)]
    bmc: RawBmc,
    #[serde(default)]
    validation: RawValidation,
    #[serde(default)]
    http: HttpConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub netbox: NetBoxConfig,
    pub listen: SocketAddr,
    pub webhook: WebhookConfig,
    pub scope: Scope,
    pub reconciler: ReconcilerConfig,
    pub dhcp: DhcpConfig,
    pub bmc: BmcConfig,
    pub validation: ValidationConfig,
    pub http: HttpConfig,
    webhook_secret_env: String,
}

impl Config {
    pub fn webhook_secret(&self) -> Result<&Secret, ConfigError> {
        self.webhook.secret(&self.webhook_secret_env)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        raw.netbox.check()?;
        raw.webhook.check()?;
        raw.reconciler.check()?;
        check_durations(&raw)?;
        raw.bmc.check()?;
        raw.dhcp.check()?;
        if raw.validation.max_concurrent_applies == 0 || raw.http.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "validation.max_concurrent_applies and http.max_connections must be at least 1"
                    .into(),
            ));
        }
        // Secrets are read only once the file is known to be valid.
        let netbox = NetBoxConfig::resolve(raw.netbox)?;
        let webhook_secret_env = raw.webhook.secret_env();
        let webhook = WebhookConfig::resolve(raw.webhook)?;
        let bmc = BmcConfig::resolve(&raw.bmc)?;
        let validation = ValidationConfig::resolve(raw.validation)?;
        Ok(Self {
            netbox,
            listen: raw.listen,
            webhook,
            scope: raw.scope,
            reconciler: raw.reconciler,
            dhcp: raw.dhcp,
            bmc,
            validation,
            http: raw.http,
            webhook_secret_env,
        })
    }
}

/// The longest duration racklift takes: beyond it a typo (`300d` for `300s`) is more likely
/// than intent, and every deadline racklift computes stays far from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration as a section's `durations()` hands it to [`check_durations`].
#[derive(Debug, Clone, Copy)]
struct DurationSetting {
    key: &'static str,
    value: Duration,
    may_be_zero: bool,
}

impl DurationSetting {
    /// A zero resync interval or poll interval would spin, a zero timeout fails every call.
    fn positive(key: &'static str, value: Duration) -> Self {
        Self {
            key,
            value,
            may_be_zero: false,
        }
    }

    fn may_be_zero(key: &'static str, value: Duration) -> Self {
        Self {
            key,
            value,
            may_be_zero: true,
        }
    }

    fn check(self) -> Result<(), ConfigError> {
        let Self {
            key,
            value,
            may_be_zero,
        } = self;
        if value.is_zero() && !may_be_zero {
            return Err(ConfigError::Invalid(format!("{key} must be more than 0s")));
        }
        if value > MAX_DURATION {
            return Err(ConfigError::Invalid(format!(
                "{key} is {}; racklift takes at most {}",
                humantime::format_duration(value),
                humantime::format_duration(MAX_DURATION)
            )));
        }
        Ok(())
    }
}

/// Every section's durations: none over [`MAX_DURATION`], and none zero unless its section
/// says zero is a choice.
fn check_durations(raw: &RawConfig) -> Result<(), ConfigError> {
    let mut settings = [
        raw.netbox.durations(),
        raw.reconciler.durations(),
        raw.dhcp.durations(),
        raw.bmc.durations(),
        raw.validation.durations(),
        raw.http.durations(),
    ]
    .concat();
    // Those that may be zero after the others: the order racklift has always reported them in.
    settings.sort_by_key(|setting| setting.may_be_zero);
    settings.into_iter().try_for_each(DurationSetting::check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_the_repo_parses_with_its_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        let secret = dir.path().join("secret");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef01234567\n").expect("write");
        std::fs::write(&secret, "webhook-secret").expect("write");
        let example = include_str!("../../racklift.example.yaml")
            .replace("/etc/racklift/netbox-token", token.to_str().expect("utf-8"))
            .replace(
                "/etc/racklift/webhook-secret",
                secret.to_str().expect("utf-8"),
            );
        let config = Config::parse(&example, Path::new("racklift.example.yaml")).expect("parses");
        assert_eq!(
            config.netbox.token.expose(),
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(
            config.webhook_secret().expect("secret").expose(),
            "webhook-secret"
        );
        assert_eq!(
            config.dhcp.spool_dir,
            PathBuf::from("/var/spool/racklift/dhcp")
        );
        assert_eq!(config.dhcp.record_limit, 10_000);
        assert_eq!(config.dhcp.log_limit_bytes, 1024 * 1024);
        assert!(config.netbox.tls_verify);
        assert_eq!(config.webhook.path, "/hooks/netbox");
        assert_eq!(config.webhook.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.reconciler.resync_interval, Duration::from_secs(60));
        assert_eq!(
            config.reconciler.validating_deadline,
            Duration::from_secs(1800)
        );
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.validation.body_limit_bytes, 4 * 1024 * 1024);
        assert_eq!(config.validation.max_concurrent_applies, 4);
        assert!(config.validation.sources.is_empty());
        assert_eq!(config.http.max_connections, 512);
    }

    /// The `http:` and `validation:` blocks of the example, commented out there, say what
    /// racklift does without them: uncommented, they change nothing.
    #[test]
    fn the_examples_documented_limits_are_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t").expect("write");
        let example = include_str!("../../racklift.example.yaml");
        let mut uncommented = String::new();
        let mut inside = false;
        for line in example.lines() {
            if line == "# http:" || line == "# validation:" {
                inside = true;
            } else if !line.starts_with("#  ") {
                inside = false;
            }
            uncommented.push_str(match line.strip_prefix("# ") {
                Some(yaml) if inside => yaml,
                _ => line,
            });
            uncommented.push('\n');
        }
        let path = token.to_str().expect("utf-8");
        let yaml = ["netbox-token", "webhook-secret", "validation-token"]
            .iter()
            .fold(uncommented, |yaml, file| {
                yaml.replace(&format!("/etc/racklift/{file}"), path)
            });
        assert!(yaml.contains("\nvalidation:\n") && yaml.contains("\nhttp:\n"));
        let documented = Config::parse(&yaml, Path::new("example")).expect("parses");
        let bare = Config::parse(
            &format!(
                "netbox: {{url: 'https://nb.example', token: {{file: {}}}}}\n",
                token.display()
            ),
            Path::new("bare"),
        )
        .expect("parses");
        let limits = |c: &Config| {
            let v = &c.validation;
            format!(
                "{} {:?} {} {:?} {:?} {:?} {:?}",
                v.body_limit_bytes,
                v.body_timeout,
                v.max_concurrent_applies,
                v.apply_wait,
                v.max,
                v.sources,
                c.http
            )
        };
        assert_eq!(limits(&documented), limits(&bare));
        assert!(documented.validation.token.is_some());
    }

    /// A file with a NetBox section and `extra`; the token is read from `PATH`, set everywhere.
    pub(super) fn minimal(extra: &str) -> Result<Config, ConfigError> {
        let yaml = format!("netbox: {{url: 'https://nb.example', token: {{env: PATH}}}}\n{extra}");
        Config::parse(&yaml, Path::new("x.yaml"))
    }

    #[test]
    fn zero_or_absurd_durations_are_refused_with_the_key() {
        for (extra, key) in [
            (
                "reconciler: {resync_interval: 0s}\n",
                "reconciler.resync_interval",
            ),
            ("bmc: {poll_interval: 0s}\n", "bmc.poll_interval"),
            (
                "netbox: {url: 'https://nb.example', token: {env: PATH}, timeout: 0s}\n",
                "netbox.timeout",
            ),
            (
                "reconciler: {validating_deadline: 400d}\n",
                "reconciler.validating_deadline",
            ),
        ] {
            // The netbox line replaces the minimal one when a test sets it.
            let result = if extra.starts_with("netbox") {
                Config::parse(extra, Path::new("x.yaml"))
            } else {
                minimal(extra)
            };
            let err = result.expect_err(extra).to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        assert!(
            minimal("dhcp: {drain_timeout: 0s}\n").is_ok(),
            "a drain may not wait"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_so_typos_do_not_pass_silently() {
        let yaml = "netbox: {url: 'https://nb.example', tokn: {file: /x}}\n";
        let err = Config::parse(yaml, Path::new("x.yaml")).expect_err("typo");
        assert!(format!("{:?}", err).contains("tokn"));
    }
}
