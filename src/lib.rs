//! racklift: NetBox as the control plane for bare-metal server bring-up.
//!
//! # Layout
//! - [`config`]: the one configuration file, secrets from env or files. `config/mod.rs` is the
//!   file as a whole (loading, checks that span sections); one file per section owns its raw and
//!   resolved forms, defaults and checks: `netbox`, `webhook`, `scope`, `reconciler`, `dhcp`,
//!   `bmc`, `validation`, `http`; `secret` is the `Secret` type and where secrets are read from.
//! - [`lifecycle`]: the states, the table of every transition racklift writes and its owner,
//!   the pure `decide`.
//! - [`netbox`]: the REST and GraphQL client, the device as racklift reads it, the lease's
//!   reads (`netbox::ipam`, one GraphQL request), the one lifecycle writer
//!   (`netbox::transition`), `netbox apply`.
//! - [`controller`]: the coalescing queue, the workers, resync and the retry policy, and the
//!   controller's own writes (their webhooks need no re-read).
//! - [`http`]: the webhook receiver, the validation callback, the health endpoint, and the
//!   accept loop that serves them (connection cap, header timeout).
//! - [`dhcp`]: the DHCP hook's lease events, spool and drain, and discovery (a lease made true
//!   in NetBox: `racked → discovered`; `discovery/plan.rs` decides, pure). `dhcp/spool/mod.rs`
//!   is the spool's layout on disk, its counters, lock and log; `pending.rs` the queue of events
//!   and `corrupt/`; `ignored.rs` the per-MAC lists (`racklift dhcp-spool`); `files.rs` one
//!   record on disk (atomic write, tolerant read and listing, trimming).
//! - [`stages`]: the stage contract (`stages::run`) and each stage's work: provisioning
//!   (Redfish), validation (a report checked, then NetBox made to match).
//! - [`serve`]: wires the above into `racklift serve`; [`serve::run`] serves on a listener the
//!   caller bound, until a future it passes completes (the integration tests run it in-process).
//!
//! Deciding (in `lifecycle`) is kept apart from doing (in `controller`, through `netbox`): a
//! webhook only says "look at device N"; the controller reads N from NetBox and acts on that.
//! Three entry points move devices (the controller, the DHCP drain, the validation callback)
//! and all three write the move through `netbox::transition`, the only code that sets
//! `lifecycle`; a 412 goes back to the caller's one retry layer.

pub mod cli;
pub mod config;
pub mod controller;
pub mod dhcp;
pub mod http;
pub mod lifecycle;
pub mod netbox;
pub mod redfish;
pub mod serve;
pub mod stages;
#[cfg(test)]
mod testing;

/// An error and its causes on one line (`what failed: why: why`), for logs and the CLI.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
