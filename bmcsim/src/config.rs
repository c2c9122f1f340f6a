//! The YAML config: where the CA goes, where the admin API listens, and one entry per BMC.
//!
//! Relative paths (`ca_dir`, `tree`) are taken relative to the working directory, as the
//! examples in the README are written from the repository root.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// bmcsim writes `ca.pem` (the test CA that signs every BMC's certificate) here at start.
    pub ca_dir: PathBuf,
    /// The control API (plain HTTP).
    pub admin_listen: SocketAddr,
    pub bmcs: Vec<BmcConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// The directory holding `redfish/v1/` (a DMTF "tall" mockup). Pointing at the `redfish/v1`
    /// directory itself is accepted too.
    pub tree: PathBuf,
    pub username: String,
    pub password: String,
    #[serde(default = "default_tls")]
    pub tls: bool,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Initial `PowerState` of every ComputerSystem in the tree; absent: as captured.
    #[serde(default)]
    pub power_state: Option<String>,
    /// Idle sessions expire after this many seconds (real BMCs use SessionService's
    /// `SessionTimeout`, often 1800). Absent: sessions never expire, so a test that leaks a
    /// session sees it stay open.
    #[serde(default)]
    pub session_timeout_s: Option<u64>,
}

fn default_tls() -> bool {
    true
}

fn default_max_sessions() -> usize {
    8
}

/// The values of Redfish's `PowerState` enum (Resource.v1 schema).
const POWER_STATES: &[&str] = &["On", "Off", "PoweringOn", "PoweringOff", "Paused"];

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let config: Config = serde_yaml::from_str(&text)
            .with_context(|| format!("parsing config {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut names = HashSet::new();
        for bmc in &self.bmcs {
            if bmc.name.is_empty() || bmc.name.contains('/') {
                bail!(
                    "bmc name {:?} must be non-empty and contain no '/'",
                    bmc.name
                );
            }
            if !names.insert(bmc.name.as_str()) {
                bail!("bmc name {:?} appears twice", bmc.name);
            }
            if bmc.max_sessions == 0 {
                bail!("bmc {:?}: max_sessions must be at least 1", bmc.name);
            }
            if let Some(state) = &bmc.power_state
                && !POWER_STATES.contains(&state.as_str())
            {
                bail!(
                    "bmc {:?}: power_state {state:?} is not one of {POWER_STATES:?}",
                    bmc.name
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_rejects_duplicates() {
        let yaml = r#"
ca_dir: /tmp/ca
admin_listen: 127.0.0.1:0
bmcs:
  - name: a
    listen: 127.0.0.1:0
    tree: t
    username: u
    password: p
"#;
        let config: Config = serde_yaml::from_str(yaml).expect("parses");
        config.validate().expect("valid");
        let bmc = &config.bmcs[0];
        assert!(bmc.tls);
        assert_eq!(bmc.max_sessions, 8);
        assert_eq!(bmc.power_state, None);

        let twice = format!(
            "{yaml}  - {{name: a, listen: '127.0.0.1:0', tree: t, username: u, password: p}}\n"
        );
        let config: Config = serde_yaml::from_str(&twice).expect("parses");
        assert!(config.validate().is_err());

        let bad_power = yaml.replace("password: p", "password: p\n    power_state: Sideways");
        let config: Config = serde_yaml::from_str(&bad_power).expect("parses");
        assert!(config.validate().is_err());
    }
}
