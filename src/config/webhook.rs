//! The `webhook:` section: the URL NetBox calls, the path racklift serves it on, the body
//! limit, and the HMAC secret (needed by `serve` and `netbox apply`, not by the DHCP hook).

use serde::Deserialize;

use super::{ConfigError, Secret, SecretSource};

/// Where the webhook secret is read from when the file names no variable.
const DEFAULT_SECRET_ENV: &str = "RACKLIFT_WEBHOOK_SECRET";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
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

fn default_webhook_path() -> String {
    "/hooks/netbox".to_owned()
}
fn default_body_limit() -> usize {
    1024 * 1024
}

impl RawWebhook {
    /// The variable the secret is read from, named in the error when it is missing.
    pub(super) fn secret_env(&self) -> String {
        self.secret
            .env
            .clone()
            .unwrap_or_else(|| DEFAULT_SECRET_ENV.to_owned())
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "webhook.path must start with '/', got {:?}",
                self.path
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The URL NetBox calls; only `netbox apply` needs it.
    pub url: Option<url::Url>,
    /// Needed by `serve` and `netbox apply`, not by the DHCP hook: see
    /// [`Config::webhook_secret`](super::Config::webhook_secret).
    secret: Option<Secret>,
    pub path: String,
    pub body_limit_bytes: usize,
}

impl WebhookConfig {
    /// A missing secret is not an error here: only the subcommands that need it ask for it.
    pub(super) fn resolve(raw: RawWebhook) -> Result<Self, ConfigError> {
        let secret = raw.secret.resolve_optional(
            "the webhook secret",
            "webhook.secret.file",
            DEFAULT_SECRET_ENV,
        )?;
        Ok(Self {
            url: raw.url,
            secret,
            path: raw.path,
            body_limit_bytes: raw.body_limit_bytes,
        })
    }

    /// The secret; `env` is [`RawWebhook::secret_env`], named in the error when it is missing.
    pub(super) fn secret(&self, env: &str) -> Result<&Secret, ConfigError> {
        self.secret
            .as_ref()
            .ok_or_else(|| ConfigError::MissingSecret {
                what: "the webhook secret",
                file_key: "webhook.secret.file",
                env: env.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

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
}
