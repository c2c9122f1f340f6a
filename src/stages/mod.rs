//! The stages' work on NetBox and the outside world, one module per stage. The lifecycle table
//! (`lifecycle`) says when a stage runs; a stage here says what it does.

pub mod discovery;
pub mod provisioning;
pub mod validation;
