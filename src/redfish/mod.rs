//! Redfish: a narrow client for the few things racklift asks of a BMC (find the system, set a
//! one-time boot, reset), with the vendor detected once from the service root and its quirks
//! behind [`Quirks`], and the sessions kept between a device's reconciles ([`Sessions`]).
//!
//! Why our own client and not `nv-redfish`: racklift needs six requests, and needs them on its
//! own terms — every request bounded in time, TLS verified with a per-BMC CA, sessions always
//! deleted (BMCs cap them), passwords never in `Debug` — while a schema-generated client covering
//! all of Redfish costs minutes of compile time on a 2-core builder for code racklift never calls.

mod client;
#[cfg(test)]
mod fake;
mod sessions;
mod system;
mod vendor;

pub use client::{BmcEndpoint, Session};
pub use sessions::Sessions;
pub use system::{BootMarks, BootOverride, Power, ResetAction, System};
pub use vendor::{Quirks, Vendor};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error(
        "the BMC at {url} is unreachable ({method} {path}): check its network and that the device's OOB IP in NetBox is right"
    )]
    Unreachable {
        url: String,
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the BMC at {url} refused racklift's credentials (HTTP {status}): check the BMC user and password configured for this device (bmc.* in racklift's configuration)"
    )]
    Credentials { url: String, status: u16 },
    #[error("the BMC at {url} answered {method} {path} with HTTP {status}: {message}")]
    Status {
        url: String,
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("the BMC at {url} gave an answer racklift cannot use ({path}): {detail}")]
    Unexpected {
        url: String,
        path: String,
        detail: String,
    },
    #[error("cannot set up TLS for the BMC at {url}: {detail}")]
    Tls { url: String, detail: String },
}

impl RedfishError {
    /// Worth trying again (bounded): the BMC may come back or stop being busy. Refused
    /// credentials are not retried: retrying them locks the BMC account.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Credentials { .. } | Self::Unexpected { .. } | Self::Tls { .. } => false,
        }
    }
}

/// The message of a Redfish error body (`error.@Message.ExtendedInfo[0].Message`, or
/// `error.message`), or the start of the body.
pub fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        let error = v.get("error")?;
        error
            .get("@Message.ExtendedInfo")
            .and_then(|info| info.get(0))
            .and_then(|first| first.get("Message"))
            .or_else(|| error.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    from_json.unwrap_or_else(|| body.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redfish_error_bodies_are_read_for_their_message() {
        let body = r#"{"error":{"code":"Base.1.8.GeneralError","message":"general","@Message.ExtendedInfo":[{"Message":"The value 'Banana' for the property BootSourceOverrideTarget is not in the list of acceptable values."}]}}"#;
        assert!(error_message(body).starts_with("The value 'Banana'"));
        assert_eq!(error_message("plain text"), "plain text");
    }
}
