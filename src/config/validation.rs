//! The `validation:` section, the callback the validation image posts its report to: the
//! token it sends, the networks it may come from, and the bounds on a report and its apply.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DurationSetting, Secret, SecretSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValidation {
    #[serde(default)]
    token: SecretSource,
    #[serde(default = "default_report_limit")]
    body_limit_bytes: usize,
    #[serde(default = "default_report_timeout", with = "humantime_serde")]
    body_timeout: Duration,
    #[serde(default = "default_max_concurrent_applies")]
    pub(super) max_concurrent_applies: usize,
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

impl RawValidation {
    pub(super) fn durations(&self) -> Vec<DurationSetting> {
        vec![
            DurationSetting::positive("validation.body_timeout", self.body_timeout),
            DurationSetting::positive("validation.apply_wait", self.apply_wait),
        ]
    }
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

impl ValidationConfig {
    pub(super) fn resolve(raw: RawValidation) -> Result<Self, ConfigError> {
        Ok(Self {
            token: raw.token.resolve_optional(
                "the validation token",
                "validation.token.file",
                "RACKLIFT_VALIDATION_TOKEN",
            )?,
            body_limit_bytes: raw.body_limit_bytes,
            body_timeout: raw.body_timeout,
            max_concurrent_applies: raw.max_concurrent_applies,
            apply_wait: raw.apply_wait,
            max: raw.max,
            sources: raw.sources,
        })
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

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
}
