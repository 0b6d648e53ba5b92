//! Generated code of `proto/governance.proto` (package
//! `neuroshard.governance.v1`), the public API. Its certificate messages are
//! the certificate crate's own types (`neuroshard_certificate::proto`).
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("neuroshard.governance.v1");

/// The encoded file descriptor set of `governance.proto` and
/// `certificate.proto`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/governance_descriptor.bin"));
