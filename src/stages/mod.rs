//! The stages the reconciler runs, one module each, all with one contract: [`run`] hands a
//! stage the device as read and a [`Ctx`]; the stage does one step of its outside work and
//! answers an [`Outcome`]. The lifecycle table (`lifecycle::TABLE`) says when a stage runs
//! and where it leads; the reconciler writes the move through the one writer
//! (`netbox::transition`). A stage never writes `lifecycle` itself.
//!
//! Adding a stage: a module here with
//! `pub async fn run<S: DeviceStore>(device: &Device, ctx: &Ctx<'_, S>) -> Result<Outcome, StageError>`,
//! a [`Stage`] variant, and one row in the table.

pub mod provisioning;
pub mod validation;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::BmcConfig;
use crate::lifecycle::{Stage, Stamp};
use crate::netbox::{Device, DeviceStore, NetBoxError};
use crate::redfish::{RedfishError, Sessions};

/// What one step of a stage came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: move to the row's next state, with this journal text.
    Done(String),
    /// Look again after this long.
    Wait(Duration),
    /// Failed for good, with the reason and what to do.
    Fail(String),
}

/// A step that could not be taken. The reconciler retries it with backoff, counting attempts
/// in the stamp, or fails the device when asking again cannot help.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Bmc(#[from] RedfishError),
    #[error("recording the step in NetBox")]
    NetBox(#[source] NetBoxError),
}

/// What a stage gets besides the device: where to record its steps, the configuration it
/// needs, the BMC sessions kept between reconciles, the device's current stamp (for this
/// state) and the time the reconcile decided at.
#[derive(Debug)]
pub struct Ctx<'a, S> {
    pub store: &'a S,
    pub bmc: &'a BmcConfig,
    pub sessions: &'a Sessions,
    pub stamp: &'a Stamp,
    pub now: DateTime<Utc>,
}

/// Runs one step of `stage` on `device`.
pub async fn run<S: DeviceStore>(
    stage: Stage,
    device: &Device,
    ctx: &Ctx<'_, S>,
) -> Result<Outcome, StageError> {
    match stage {
        Stage::Provision => provisioning::run(device, ctx).await,
    }
}
