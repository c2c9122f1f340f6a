//! The `http:` section: how many connections `racklift serve` holds open and how long a client
//! may take to send a request's headers.

use std::time::Duration;

use serde::Deserialize;

use super::DurationSetting;

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

impl HttpConfig {
    pub(super) fn durations(&self) -> Vec<DurationSetting> {
        vec![DurationSetting::positive(
            "http.header_read_timeout",
            self.header_read_timeout,
        )]
    }
}
