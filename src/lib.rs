//! racklift: NetBox as the control plane for bare-metal server bring-up.
//!
//! # Layout
//! - [`config`]: the one configuration file, secrets from env or files.
//! - [`lifecycle`]: the states, the table of what racklift does in each, the pure `decide`.
//! - [`netbox`]: the REST client, the device as racklift reads it, `netbox apply`.
//! - [`controller`]: the coalescing queue, the workers, resync and the retry policy.
//! - [`http`]: the webhook receiver, the validation callback, the health endpoint, and the
//!   accept loop that serves them (connection cap, header timeout).
//! - [`dhcp`]: the DHCP hook's lease events, spool and drain.
//! - [`stages`]: each stage's work: discovery (a lease made true in NetBox), provisioning
//!   (Redfish), validation (a report checked, then NetBox made to match).
//! - [`serve`]: wires the above into `racklift serve`; [`serve::run`] serves on a listener the
//!   caller bound, until a future it passes completes (the integration tests run it in-process).
//!
//! Deciding (in `lifecycle`) is kept apart from doing (in `controller`, through `netbox`): a
//! webhook only says "look at device N"; the controller reads N from NetBox and acts on that.

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
