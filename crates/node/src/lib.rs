//! The NeuroShard validator replica: openraft with the governance state
//! machine on sled, gRPC between validators over mutual TLS, ticks, client
//! writes through any validator.

// openraft's storage and RPC traits fix their error types (`StorageError`,
// `RaftError`, ~200 bytes); helpers that produce them return them as is.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod store;
pub mod types;
