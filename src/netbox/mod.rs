//! NetBox: the REST client racklift talks through, the device as racklift reads it, and
//! `netbox apply` (NetBox-as-code for racklift's custom fields, webhook and event rule).

pub mod apply;
mod client;
mod device;
pub mod ipam;
pub mod transition;

#[cfg(feature = "test-hooks")]
pub mod pause;

pub use client::{ClientSetupError, NetBoxClient};
pub use device::{Device, DeviceId, DeviceUpdate, Unmanaged};
#[cfg(feature = "test-hooks")]
pub use pause::PausingStore;

use std::future::Future;

use crate::config::Scope;
use crate::lifecycle::{JournalKind, Lifecycle};

#[derive(Debug, thiserror::Error)]
pub enum NetBoxError {
    #[error(
        "NetBox at {url} is unreachable ({method} {path}): check that it runs and that netbox.url is right"
    )]
    Unreachable {
        url: String,
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "NetBox refused racklift's API token (HTTP {status} to {method} {path}): check netbox.token and that the token is enabled, not expired and has write access"
    )]
    TokenRefused {
        status: u16,
        method: &'static str,
        path: String,
    },
    #[error("NetBox failed {method} {path} with HTTP {status}: {body}")]
    Server {
        status: u16,
        method: &'static str,
        path: String,
        body: String,
    },
    #[error("NetBox rejected {method} {path} with HTTP {status}: {body}")]
    Rejected {
        status: u16,
        method: &'static str,
        path: String,
        body: String,
    },
    #[error("{path} changed since racklift read it (HTTP 412)")]
    Changed { path: String },
    /// NetBox ignores a filter whose value is empty and answers every object: racklift never
    /// sends one (a report with an empty serial must not match an arbitrary device).
    #[error(
        "racklift did not ask NetBox for {path} with an empty `{key}` filter: NetBox would ignore it and answer every object"
    )]
    EmptyFilter { path: String, key: String },
    /// A bug, never an input: a caller asked the writer for a move the lifecycle table does
    /// not list.
    #[error(
        "racklift did not move {device} from {from} to {to}: the lifecycle table lists no such transition (a racklift bug; please report it)"
    )]
    Unlisted {
        device: String,
        from: Lifecycle,
        to: Lifecycle,
    },
    #[error("NetBox's answer to {method} {path} is not what racklift expects: {detail}")]
    Unexpected {
        method: &'static str,
        path: String,
        detail: String,
    },
}

impl NetBoxError {
    /// NetBox being away is nobody's fault: retry as long as it lasts. Everything else is an
    /// answer that will not change by asking again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Server { .. } => true,
            Self::TokenRefused { .. }
            | Self::Rejected { .. }
            | Self::Changed { .. }
            | Self::EmptyFilter { .. }
            | Self::Unlisted { .. }
            | Self::Unexpected { .. } => false,
        }
    }
}

/// What the reconciler needs from NetBox, narrow so tests and the test-only pause point can
/// stand in front of the real client.
pub trait DeviceStore: Send + Sync + 'static {
    /// The device as it is now, or `None` when NetBox has no such device.
    fn device(
        &self,
        id: DeviceId,
    ) -> impl Future<Output = Result<Option<Device>, NetBoxError>> + Send;

    /// Writes `update` only if the device is still at `etag` (`If-Match`); a device changed
    /// meanwhile answers [`NetBoxError::Changed`]. Returns the device's new ETag, for a
    /// further write made on the same decision.
    fn update_device(
        &self,
        device: &Device,
        update: &DeviceUpdate,
    ) -> impl Future<Output = Result<String, NetBoxError>> + Send;

    fn journal(
        &self,
        id: DeviceId,
        kind: JournalKind,
        text: &str,
    ) -> impl Future<Output = Result<(), NetBoxError>> + Send;

    /// Ids of the devices whose lifecycle is one of `states`, narrowed by `scope` as far as
    /// NetBox's filters can (the reconciler checks the whole scope on each device it reads).
    fn devices_in(
        &self,
        states: &[Lifecycle],
        scope: &Scope,
    ) -> impl Future<Output = Result<Vec<DeviceId>, NetBoxError>> + Send;
}
