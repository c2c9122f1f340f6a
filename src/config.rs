//! The one configuration file every subcommand reads: typed, loaded once, secrets resolved from
//! the environment or from files it names (never from the file itself).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

/// A secret value: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from: a file (preferred: it never shows up in `ps` or `/proc/*/environ`
/// of children) or an environment variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

impl SecretSource {
    /// The secret, or `None` when neither a file nor the variable is set.
    fn resolve_optional(
        &self,
        what: &'static str,
        file_key: &'static str,
        default_env: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match self.resolve(what, file_key, default_env) {
            Ok(secret) => Ok(Some(secret)),
            Err(ConfigError::MissingSecret { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn resolve(
        &self,
        what: &'static str,
        file_key: &'static str,
        default_env: &str,
    ) -> Result<Secret, ConfigError> {
        if let Some(path) = &self.file {
            let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                what,
                path: path.clone(),
                source,
            })?;
            let value = raw.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(ConfigError::EmptySecret {
                    what,
                    path: path.clone(),
                });
            }
            return Ok(Secret::new(value));
        }
        let env = self.env.as_deref().unwrap_or(default_env);
        match std::env::var(env) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            _ => Err(ConfigError::MissingSecret {
                what,
                file_key,
                env: env.to_owned(),
            }),
        }
    }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidation {
    #[serde(default)]
    token: SecretSource,
    #[serde(default = "default_report_limit")]
    body_limit_bytes: usize,
    #[serde(default = "default_report_timeout", with = "humantime_serde")]
    body_timeout: Duration,
    #[serde(default = "default_max_concurrent_applies")]
    max_concurrent_applies: usize,
    #[serde(default = "default_apply_wait", with = "humantime_serde")]
    apply_wait: Duration,
    #[serde(default)]
    max: ReportBounds,
    #[serde(default)]
    sources: Vec<ipnet::IpNet>,
}

impl Default for RawValidation {
    fn default() -> Self {
        Self {
            token: SecretSource::default(),
            body_limit_bytes: default_report_limit(),
            body_timeout: default_report_timeout(),
            max_concurrent_applies: default_max_concurrent_applies(),
            apply_wait: default_apply_wait(),
            max: ReportBounds::default(),
            sources: Vec::new(),
        }
    }
}

fn default_report_limit() -> usize {
    4 * 1024 * 1024
}
fn default_report_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_concurrent_applies() -> usize {
    4
}
fn default_apply_wait() -> Duration {
    Duration::from_secs(30)
}

/// The validation callback (`POST /v1/validation`).
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// The bearer token the validation image sends; without one the callback refuses reports.
    pub token: Option<Secret>,
    pub body_limit_bytes: usize,
    /// How long a report's body may take to arrive once its headers have (a slow body: 408).
    pub body_timeout: Duration,
    /// Reports checked and applied at once, over all devices; one more is answered 503.
    pub max_concurrent_applies: usize,
    /// How long a report waits for another report of the same device to be applied.
    pub apply_wait: Duration,
    pub max: ReportBounds,
    /// The networks reports may come from (the provisioning networks); empty: any.
    pub sources: Vec<ipnet::IpNet>,
}

/// How many entries a report's lists may hold: every LLDP neighbour costs NetBox lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportBounds {
    pub nics: usize,
    pub disks: usize,
    pub lldp_neighbours: usize,
}

impl Default for ReportBounds {
    fn default() -> Self {
        Self {
            nics: 64,
            disks: 512,
            lldp_neighbours: 64,
        }
    }
}

/// `racklift serve`'s HTTP server: how many connections it holds open at once, and how long a
/// client may take to send a request's headers (also the idle time of a kept-alive connection).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
        }
    }
}

fn default_max_connections() -> usize {
    512
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetBox {
    url: url::Url,
    #[serde(default)]
    token: SecretSource,
    #[serde(default = "yes")]
    tls_verify: bool,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_netbox_timeout", with = "humantime_serde")]
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<url::Url>,
    #[serde(default)]
    secret: SecretSource,
    #[serde(default = "default_webhook_path")]
    path: String,
    #[serde(default = "default_body_limit")]
    body_limit_bytes: usize,
}

impl Default for RawWebhook {
    fn default() -> Self {
        Self {
            url: None,
            secret: SecretSource::default(),
            path: default_webhook_path(),
            body_limit_bytes: default_body_limit(),
        }
    }
}

/// Which devices this racklift manages, and how its NetBox objects are named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Names the webhook and event rule `racklift netbox apply` writes, so several racklift
    /// instances (one per site, or a test's own) can share one NetBox.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Site slugs; empty means every site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Device role slugs; empty means every role.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tag slugs: a device must carry at least one of them; empty means no tag is needed.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            instance: default_instance(),
            sites: Vec::new(),
            roles: Vec::new(),
            tags: Vec::new(),
        }
    }
}

impl Scope {
    /// Whether a device of this site, role and tags (slugs) is this racklift's to manage.
    /// Every filter that is set must match: one of the sites, one of the roles, one of the tags.
    pub fn covers(&self, site: Option<&str>, role: Option<&str>, tags: &[String]) -> bool {
        let one_of = |wanted: &[String], have: Option<&str>| {
            wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
        };
        one_of(&self.sites, site)
            && one_of(&self.roles, role)
            && (self.tags.is_empty() || tags.iter().any(|t| self.tags.contains(t)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// Devices reconciled at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How often every device in a racklift-owned state is queued again.
    #[serde(default = "default_resync", with = "humantime_serde")]
    pub resync_interval: Duration,
    /// How long a device may stay `validating` before it is `failed`.
    #[serde(default = "default_validating_deadline", with = "humantime_serde")]
    pub validating_deadline: Duration,
    /// Distinct devices the queue holds before webhooks are answered 503.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// First retry delay; doubles per attempt up to `backoff_max`, with jitter.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Retries of an error that is the device's (not NetBox being down) before it is `failed`.
    #[serde(default = "default_stage_retries")]
    pub stage_retries: u32,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            resync_interval: default_resync(),
            validating_deadline: default_validating_deadline(),
            queue_capacity: default_queue_capacity(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            stage_retries: default_stage_retries(),
        }
    }
}

/// The DHCP hook's side: where leases wait for NetBox, and how long one drain may keep trying.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// How long one drain run keeps retrying while NetBox is away; the next hook run or the
    /// drain timer picks up what is left.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(default = "default_drain_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// The most MACs each of the spool's lists (unknown/, unmanaged/, rejected/) keeps, and the
    /// most unreadable files kept in corrupt/: past it the least recently seen go. A DHCP host
    /// sees whatever MACs its network has; the spool's disk use must not follow them.
    #[serde(default = "default_record_limit")]
    pub record_limit: usize,
    /// `drain.log` is moved to `drain.log.1` when a hook run finds it past this size.
    #[serde(default = "default_log_limit_bytes")]
    pub log_limit_bytes: u64,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        Self {
            spool_dir: default_spool_dir(),
            drain_timeout: default_drain_timeout(),
            backoff_base: default_backoff_base(),
            backoff_max: default_drain_backoff_max(),
            record_limit: default_record_limit(),
            log_limit_bytes: default_log_limit_bytes(),
        }
    }
}

/// How to reach a BMC: the defaults, overridden per site (by slug) and per device (by name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBmc {
    #[serde(flatten)]
    defaults: RawBmcProfile,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    power_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    poll_interval: Option<Duration>,
    #[serde(default)]
    sites: std::collections::BTreeMap<String, RawBmcProfile>,
    #[serde(default)]
    devices: std::collections::BTreeMap<String, RawBmcProfile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBmcProfile {
    username: Option<String>,
    password: Option<SecretSource>,
    port: Option<u16>,
    tls_verify: Option<bool>,
    ca_file: Option<PathBuf>,
}

/// One level of BMC settings, secrets resolved.
#[derive(Debug, Default, Clone)]
pub struct BmcProfile {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub port: Option<u16>,
    pub tls_verify: Option<bool>,
    pub ca_file: Option<PathBuf>,
}

impl BmcProfile {
    fn resolve(raw: &RawBmcProfile, key: &'static str) -> Result<Self, ConfigError> {
        let password = raw
            .password
            .as_ref()
            .map(|source| source.resolve("a BMC password", key, "RACKLIFT_BMC_PASSWORD"))
            .transpose()?;
        Ok(Self {
            username: raw.username.clone(),
            password,
            port: raw.port,
            tls_verify: raw.tls_verify,
            ca_file: raw.ca_file.clone(),
        })
    }

    /// `self` where it says something, else `below`.
    fn over(&self, below: &Self) -> Self {
        Self {
            username: self.username.clone().or_else(|| below.username.clone()),
            password: self.password.clone().or_else(|| below.password.clone()),
            port: self.port.or(below.port),
            tls_verify: self.tls_verify.or(below.tls_verify),
            ca_file: self.ca_file.clone().or_else(|| below.ca_file.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BmcConfig {
    pub defaults: BmcProfile,
    pub sites: std::collections::BTreeMap<String, BmcProfile>,
    pub devices: std::collections::BTreeMap<String, BmcProfile>,
    /// Per request.
    pub timeout: Duration,
    /// How long a reset may take to show the power state asked for.
    pub power_timeout: Duration,
    /// How often a BMC is asked whether the power state arrived.
    pub poll_interval: Duration,
}

impl Default for BmcConfig {
    fn default() -> Self {
        Self {
            defaults: BmcProfile::default(),
            sites: std::collections::BTreeMap::new(),
            devices: std::collections::BTreeMap::new(),
            timeout: Duration::from_secs(15),
            power_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
        }
    }
}

impl BmcConfig {
    /// Warns, once at start, of every site and device whose BMCs' certificates are not checked.
    pub fn warn_unverified(&self) {
        for (kind, map) in [("site", &self.sites), ("device", &self.devices)] {
            for (name, profile) in map {
                if profile.tls_verify == Some(false) {
                    tracing::warn!(%kind, %name, "TLS verification of this {kind}'s BMCs is OFF (bmc tls_verify: false)");
                }
            }
        }
    }

    /// The settings for a device: its own, else its site's, else the defaults.
    pub fn profile(&self, device: &str, site: Option<&str>) -> BmcProfile {
        let none = BmcProfile::default();
        let site = site.and_then(|s| self.sites.get(s)).unwrap_or(&none);
        let device = self.devices.get(device).unwrap_or(&none);
        device.over(&site.over(&self.defaults))
    }

    fn resolve(raw: &RawBmc) -> Result<Self, ConfigError> {
        let resolve_all = |map: &std::collections::BTreeMap<String, RawBmcProfile>, key| {
            map.iter()
                .map(|(name, p)| Ok((name.clone(), BmcProfile::resolve(p, key)?)))
                .collect::<Result<std::collections::BTreeMap<_, _>, ConfigError>>()
        };
        let defaults = Self::default();
        Ok(Self {
            defaults: BmcProfile::resolve(&raw.defaults, "bmc.password.file")?,
            sites: resolve_all(&raw.sites, "bmc.sites.<slug>.password.file")?,
            devices: resolve_all(&raw.devices, "bmc.devices.<name>.password.file")?,
            timeout: raw.timeout.unwrap_or(defaults.timeout),
            power_timeout: raw.power_timeout.unwrap_or(defaults.power_timeout),
            poll_interval: raw.poll_interval.unwrap_or(defaults.poll_interval),
        })
    }
}

/// The longest duration racklift takes: beyond it a typo (`300d` for `300s`) is more likely
/// than intent, and every deadline racklift computes stays far from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Durations that must be above zero (a zero resync interval or poll interval would spin, a
/// zero timeout fails every call) and none over [`MAX_DURATION`].
fn check_durations(raw: &RawConfig) -> Result<(), ConfigError> {
    let r = &raw.reconciler;
    let d = &raw.dhcp;
    let b = &raw.bmc;
    let positive = [
        ("netbox.timeout", Some(raw.netbox.timeout)),
        ("reconciler.resync_interval", Some(r.resync_interval)),
        (
            "reconciler.validating_deadline",
            Some(r.validating_deadline),
        ),
        ("reconciler.backoff_base", Some(r.backoff_base)),
        ("reconciler.backoff_max", Some(r.backoff_max)),
        ("dhcp.backoff_base", Some(d.backoff_base)),
        ("dhcp.backoff_max", Some(d.backoff_max)),
        ("bmc.timeout", b.timeout),
        ("bmc.power_timeout", b.power_timeout),
        ("bmc.poll_interval", b.poll_interval),
        ("validation.body_timeout", Some(raw.validation.body_timeout)),
        ("validation.apply_wait", Some(raw.validation.apply_wait)),
        (
            "http.header_read_timeout",
            Some(raw.http.header_read_timeout),
        ),
    ];
    let check = |key: &str, value: Duration, may_be_zero: bool| {
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
    };
    for (key, value) in positive {
        if let Some(value) = value {
            check(key, value, false)?;
        }
    }
    // A drain that does not wait for NetBox at all is a choice.
    check("dhcp.drain_timeout", d.drain_timeout, true)
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/spool/racklift/dhcp")
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_drain_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_record_limit() -> usize {
    10_000
}
fn default_log_limit_bytes() -> u64 {
    1024 * 1024
}

fn yes() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_netbox_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_webhook_path() -> String {
    "/hooks/netbox".to_owned()
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_instance() -> String {
    "racklift".to_owned()
}
fn default_concurrency() -> usize {
    8
}
fn default_resync() -> Duration {
    Duration::from_secs(60)
}
fn default_validating_deadline() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_queue_capacity() -> usize {
    100_000
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_stage_retries() -> u32 {
    5
}

#[derive(Debug, Clone)]
pub struct NetBoxConfig {
    pub url: url::Url,
    pub token: Secret,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The URL NetBox calls; only `netbox apply` needs it.
    pub url: Option<url::Url>,
    /// Needed by `serve` and `netbox apply`, not by the DHCP hook: see [`Config::webhook_secret`].
    secret: Option<Secret>,
    pub path: String,
    pub body_limit_bytes: usize,
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
        self.webhook
            .secret
            .as_ref()
            .ok_or_else(|| ConfigError::MissingSecret {
                what: "the webhook secret",
                file_key: "webhook.secret.file",
                env: self.webhook_secret_env.clone(),
            })
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
        if !matches!(raw.netbox.url.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid(format!(
                "netbox.url must be http or https, got {}",
                raw.netbox.url
            )));
        }
        if !raw.webhook.path.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "webhook.path must start with '/', got {:?}",
                raw.webhook.path
            )));
        }
        if raw.reconciler.concurrency == 0 || raw.reconciler.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "reconciler.concurrency and reconciler.queue_capacity must be at least 1".into(),
            ));
        }
        check_durations(&raw)?;
        if raw.bmc.defaults.tls_verify == Some(false) {
            return Err(ConfigError::Invalid(
                "bmc.tls_verify: false would turn TLS verification off for every BMC: set it per site (bmc.sites.<slug>.tls_verify) or per device (bmc.devices.<name>.tls_verify), or give the BMCs' CA in bmc.ca_file".into(),
            ));
        }
        if raw.dhcp.record_limit == 0 {
            return Err(ConfigError::Invalid(
                "dhcp.record_limit must be at least 1".into(),
            ));
        }
        if raw.validation.max_concurrent_applies == 0 || raw.http.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "validation.max_concurrent_applies and http.max_connections must be at least 1"
                    .into(),
            ));
        }
        let token = raw.netbox.token.resolve(
            "the NetBox API token",
            "netbox.token.file",
            "RACKLIFT_NETBOX_TOKEN",
        )?;
        let webhook_secret_env = raw
            .webhook
            .secret
            .env
            .clone()
            .unwrap_or_else(|| "RACKLIFT_WEBHOOK_SECRET".to_owned());
        let secret = raw.webhook.secret.resolve_optional(
            "the webhook secret",
            "webhook.secret.file",
            "RACKLIFT_WEBHOOK_SECRET",
        )?;
        Ok(Self {
            netbox: NetBoxConfig {
                url: raw.netbox.url,
                token,
                tls_verify: raw.netbox.tls_verify,
                ca_file: raw.netbox.ca_file,
                timeout: raw.netbox.timeout,
            },
            listen: raw.listen,
            webhook: WebhookConfig {
                url: raw.webhook.url,
                secret,
                path: raw.webhook.path,
                body_limit_bytes: raw.webhook.body_limit_bytes,
            },
            scope: raw.scope,
            reconciler: raw.reconciler,
            dhcp: raw.dhcp,
            bmc: BmcConfig::resolve(&raw.bmc)?,
            validation: ValidationConfig {
                token: raw.validation.token.resolve_optional(
                    "the validation token",
                    "validation.token.file",
                    "RACKLIFT_VALIDATION_TOKEN",
                )?,
                body_limit_bytes: raw.validation.body_limit_bytes,
                body_timeout: raw.validation.body_timeout,
                max_concurrent_applies: raw.validation.max_concurrent_applies,
                apply_wait: raw.validation.apply_wait,
                max: raw.validation.max,
                sources: raw.validation.sources,
            },
            http: raw.http,
            webhook_secret_env,
        })
    }
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
        let example = include_str!("../racklift.example.yaml")
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
        let example = include_str!("../racklift.example.yaml");
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

    #[test]
    fn validation_sources_are_networks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t").expect("write");
        let yaml = |sources: &str| {
            format!(
                "netbox: {{url: 'https://nb.example', token: {{file: {}}}}}\nvalidation: {{sources: {sources}}}\n",
                token.display()
            )
        };
        let config =
            Config::parse(&yaml("[10.213.0.0/16, 'fd00::/8']"), Path::new("x")).expect("parses");
        assert_eq!(config.validation.sources.len(), 2);
        let err = Config::parse(&yaml("[10.213.0.7]"), Path::new("x")).expect_err("no prefix");
        assert!(
            format!("{err:?}").contains("invalid IP address syntax"),
            "{err:?}"
        );
    }

    #[test]
    fn the_examples_dhcp_section_uncommented_parses_to_the_defaults() {
        let example = include_str!("../racklift.example.yaml");
        let section: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# dhcp:"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        assert!(section.contains("record_limit"), "{section}");
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t").expect("write");
        let yaml = format!(
            "netbox: {{url: 'https://nb.example', token: {{file: {}}}}}\n{section}",
            token.display()
        );
        let dhcp = Config::parse(&yaml, Path::new("x.yaml"))
            .expect("parses")
            .dhcp;
        let defaults = DhcpConfig::default();
        assert_eq!(dhcp.spool_dir, defaults.spool_dir);
        assert_eq!(dhcp.drain_timeout, defaults.drain_timeout);
        assert_eq!(
            (dhcp.backoff_base, dhcp.backoff_max),
            (defaults.backoff_base, defaults.backoff_max)
        );
        assert_eq!(
            (dhcp.record_limit, dhcp.log_limit_bytes),
            (defaults.record_limit, defaults.log_limit_bytes)
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "supersecrettoken").expect("write");
        let yaml = format!(
            "netbox: {{url: 'https://nb.example', token: {{file: {t}}}}}\nwebhook: {{secret: {{file: {t}}}}}\n",
            t = token.display()
        );
        let config = Config::parse(&yaml, Path::new("x.yaml")).expect("parses");
        let shown = format!("{config:?}");
        assert!(!shown.contains("supersecrettoken"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn a_missing_secret_names_the_key_and_the_variable() {
        let yaml = "netbox: {url: 'https://nb.example', token: {env: RACKLIFT_TEST_UNSET_VAR}}\n";
        let err = Config::parse(yaml, Path::new("x.yaml")).expect_err("no token");
        let msg = err.to_string();
        assert!(msg.contains("RACKLIFT_TEST_UNSET_VAR"), "{msg}");
        assert!(msg.contains("netbox.token.file"), "{msg}");
    }

    #[test]
    fn the_dhcp_hook_needs_no_webhook_secret_but_serve_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t").expect("write");
        let yaml = format!(
            "netbox: {{url: 'https://nb.example', token: {{file: {}}}}}\nwebhook: {{secret: {{env: RACKLIFT_TEST_UNSET_SECRET}}}}\n",
            token.display()
        );
        let config = Config::parse(&yaml, Path::new("x.yaml")).expect("parses without a secret");
        let err = config.webhook_secret().expect_err("no secret");
        assert!(
            err.to_string().contains("RACKLIFT_TEST_UNSET_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn bmc_settings_layer_device_over_site_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        let pw = dir.path().join("pw");
        std::fs::write(&token, "t").expect("write");
        std::fs::write(&pw, "site-password\n").expect("write");
        let yaml = format!(
            "netbox: {{url: 'https://nb.example', token: {{file: {t}}}}}\n\
             bmc:\n  username: admin\n  password: {{file: {p}}}\n  power_timeout: 2m\n\
             \x20 sites: {{dc1: {{username: dc1-admin}}}}\n\
             \x20 devices: {{srv-9: {{port: 8443, tls_verify: false}}}}\n",
            t = token.display(),
            p = pw.display()
        );
        let config = Config::parse(&yaml, Path::new("x.yaml")).expect("parses");
        let p = config.bmc.profile("srv-9", Some("dc1"));
        assert_eq!(p.username.as_deref(), Some("dc1-admin"));
        assert_eq!(
            p.password.as_ref().map(Secret::expose),
            Some("site-password")
        );
        assert_eq!((p.port, p.tls_verify), (Some(8443), Some(false)));
        assert_eq!(config.bmc.profile("other", None).port, None);
        assert_eq!(config.bmc.power_timeout, Duration::from_secs(120));
        assert!(!format!("{config:?}").contains("site-password"));
    }

    fn minimal(extra: &str) -> Result<Config, ConfigError> {
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
    fn tls_verification_is_turned_off_only_per_site_or_device() {
        let err = minimal("bmc: {tls_verify: false}\n")
            .expect_err("global off")
            .to_string();
        assert!(err.contains("per site"), "{err}");
        let config = minimal("bmc: {sites: {lab: {tls_verify: false}}}\n").expect("per site");
        assert_eq!(
            config.bmc.profile("srv", Some("lab")).tls_verify,
            Some(false)
        );
        assert_eq!(config.bmc.profile("srv", Some("dc1")).tls_verify, None);
    }

    #[test]
    fn unknown_keys_are_rejected_so_typos_do_not_pass_silently() {
        let yaml = "netbox: {url: 'https://nb.example', tokn: {file: /x}}\n";
        let err = Config::parse(yaml, Path::new("x.yaml")).expect_err("typo");
        assert!(format!("{:?}", err).contains("tokn"));
    }
}
