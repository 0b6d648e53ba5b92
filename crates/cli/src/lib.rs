//! The `neuroshard` binary's commands as a library, so the end-to-end tests
//! and the demo drive the same code the binary runs.

pub mod bench;
pub mod cluster;
pub mod keygen;
pub mod run_node;
mod secret;
pub mod workload;

pub use secret::{write_public, write_secret};
