//! The subcommands, one module each.

pub mod demo;
pub mod job;
pub mod runs;
pub mod status;
pub mod worker;
