//! The `netbox:` section: where NetBox is, the API token, and how racklift's TLS and requests
//! to it behave.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DurationSetting, Secret, SecretSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetBox {
    url: url::Url,
    #[serde(default)]
    token: SecretSource,
    #[serde(default = "yes")]
    tls_verify: bool,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_netbox_timeout", with = "humantime_serde")]
    timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_netbox_timeout() -> Duration {
    Duration::from_secs(15)
}

impl RawNetBox {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid(format!(
                "netbox.url must be http or https, got {}",
                self.url
            )));
        }
        Ok(())
    }

    pub(super) fn durations(&self) -> Vec<DurationSetting> {
        vec![DurationSetting::positive("netbox.timeout", self.timeout)]
    }
}

#[derive(Debug, Clone)]
pub struct NetBoxConfig {
    pub url: url::Url,
    pub token: Secret,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl NetBoxConfig {
    pub(super) fn resolve(raw: RawNetBox) -> Result<Self, ConfigError> {
        let token = raw.token.resolve(
            "the NetBox API token",
            "netbox.token.file",
            "RACKLIFT_NETBOX_TOKEN",
        )?;
        Ok(Self {
            url: raw.url,
            token,
            tls_verify: raw.tls_verify,
            ca_file: raw.ca_file,
            timeout: raw.timeout,
        })
    }
}
