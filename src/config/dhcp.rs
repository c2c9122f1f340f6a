//! The `dhcp:` section, the DHCP hook's side: where the spool is, how long one drain keeps
//! trying, and how much the spool's lists and log may hold.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DurationSetting};

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
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
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
            backoff_max: default_backoff_max(),
            record_limit: default_record_limit(),
            log_limit_bytes: default_log_limit_bytes(),
        }
    }
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/spool/racklift/dhcp")
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_record_limit() -> usize {
    10_000
}
fn default_log_limit_bytes() -> u64 {
    1024 * 1024
}

impl DhcpConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.record_limit == 0 {
            return Err(ConfigError::Invalid(
                "dhcp.record_limit must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn durations(&self) -> Vec<DurationSetting> {
        vec![
            DurationSetting::positive("dhcp.backoff_base", self.backoff_base),
            DurationSetting::positive("dhcp.backoff_max", self.backoff_max),
            // A drain that does not wait for NetBox at all is a choice.
            DurationSetting::may_be_zero("dhcp.drain_timeout", self.drain_timeout),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::DhcpConfig;

    #[test]
    fn the_examples_dhcp_section_uncommented_parses_to_the_defaults() {
        let example = include_str!("../../racklift.example.yaml");
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
}
