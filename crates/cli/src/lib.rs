//! The `neuroshard` binary's commands as a library, so the end-to-end tests
//! and the demo drive the same code the binary runs.

pub mod account;
pub mod amount;
pub mod bench;
pub mod bench_run;
pub mod cert;
pub mod cluster;
pub mod demo;
pub mod emergency;
pub mod keyfile;
pub mod keygen;
pub mod light_node;
pub mod logs;
pub mod nep;
pub mod output;
pub mod run_node;
mod secret;
pub mod session;
pub mod user_cmd;
pub mod views;
pub mod watch;
pub mod workload;

pub use secret::{write_public, write_secret};
