//! The integration-test harness: the lab's real NetBox (started by `scripts/lab up`), a site of
//! its own per test, a racklift per test with its own webhook and event rule (applied by
//! `racklift netbox apply`, scoped to the test's site) — served in-process on a listener the
//! harness bound, or as a process for the tests that kill it — a TCP proxy a test can cut, and
//! waits on conditions with a deadline.
//!
//! - [`api`]: a plain NetBox REST client, as an operator or the UI would use it;
//! - [`lab`]: the lab's NetBox, the test's site and devices, names and MACs no run used;
//! - [`fields`]: racklift's custom fields in the lab, shared by every test binary;
//! - [`instance`]: racklift for one test: its configuration, start, restart, kill and log;
//! - [`wait`]: waits on conditions;
//! - [`bmc`], [`dhcp`], [`lldp`], [`proxy`]: the BMCs, DHCP servers, LLDP fabric and TCP proxy.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod api;
pub mod bmc;
pub mod dhcp;
pub mod fields;
pub mod instance;
pub mod lab;
pub mod lldp;
pub mod proxy;
pub mod wait;

// The tests name these as `common::…`; each binary uses some of them.
#[allow(unused_imports)]
pub use self::{
    api::{Api, journal_texts, lifecycle},
    fields::{apply_custom_fields, custom_fields_yaml, own_custom_fields},
    instance::{Options, Racklift, racklift, racklift_bin, write_hook_config},
    lab::{Lab, Site, free_port, fresh_mac, lab, lab_addr, run_ok, unique},
    wait::{WAIT, exists, wait_for, wait_lifecycle, wait_moved},
};
