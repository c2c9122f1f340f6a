//! The `bmc:` section: how to reach a BMC (user, password, port, TLS), as defaults overridden
//! per site and per device, and the Redfish timeouts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DurationSetting, Secret, SecretSource};

/// How to reach a BMC: the defaults, overridden per site (by slug) and per device (by name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBmc {
    #[serde(flatten)]
    defaults: RawBmcProfile,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    power_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    poll_interval: Option<Duration>,
    #[serde(default)]
    sites: BTreeMap<String, RawBmcProfile>,
    #[serde(default)]
    devices: BTreeMap<String, RawBmcProfile>,
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

impl RawBmc {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.defaults.tls_verify == Some(false) {
            return Err(ConfigError::Invalid(
                "bmc.tls_verify: false would turn TLS verification off for every BMC: set it per site (bmc.sites.<slug>.tls_verify) or per device (bmc.devices.<name>.tls_verify), or give the BMCs' CA in bmc.ca_file".into(),
            ));
        }
        Ok(())
    }

    /// Only those set: the others take defaults that pass.
    pub(super) fn durations(&self) -> Vec<DurationSetting> {
        [
            ("bmc.timeout", self.timeout),
            ("bmc.power_timeout", self.power_timeout),
            ("bmc.poll_interval", self.poll_interval),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some(DurationSetting::positive(key, value?)))
        .collect()
    }
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
    pub sites: BTreeMap<String, BmcProfile>,
    pub devices: BTreeMap<String, BmcProfile>,
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
            sites: BTreeMap::new(),
            devices: BTreeMap::new(),
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

    pub(super) fn resolve(raw: &RawBmc) -> Result<Self, ConfigError> {
        let resolve_all = |map: &BTreeMap<String, RawBmcProfile>, key| {
            map.iter()
                .map(|(name, p)| Ok((name.clone(), BmcProfile::resolve(p, key)?)))
                .collect::<Result<BTreeMap<_, _>, ConfigError>>()
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::tests::minimal;
    use super::super::{Config, Secret};

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
}
