//! The NeuroShard validator replica: openraft with the governance state
//! machine on sled, gRPC between validators over mutual TLS, ticks, client
//! writes through any validator.
//!
//! Start one with [`Node::start`] (from a [`NodeConfig`]) and talk to it
//! with [`Node::submit`] / [`Node::status`] in process, or with
//! [`ApiClient`] over its API listener.

// openraft's storage and RPC traits fix their error types (`StorageError`,
// `RaftError`, ~200 bytes); helpers that produce them return them as is.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod api_proto;
pub mod blocking;
pub mod boot;
pub mod checkpoint;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod governance_client;
pub mod hoptrace;
pub mod issuance;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod reads;
pub mod safety;
pub mod status;
pub mod store;
pub mod submit;
pub mod ticker;
pub mod transport;
pub mod types;

pub use client::{ApiClient, ClientError};
pub use config::NodeConfig;
pub use error::{NodeError, Quota, QuotaRefusal};
pub use governance_client::{ApiError, GovernanceClient, Refusal};
pub use node::{Environment, Node, NodeCore};
pub use status::NodeStatus;
pub use submit::Submitted;
