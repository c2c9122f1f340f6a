//! Secrets: the type whose `Debug` and `Display` never show the value, and where a secret is
//! read from (a file the configuration names, or an environment variable; never the file itself).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

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
    pub(super) fn resolve_optional(
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

    pub(super) fn resolve(
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

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
}
