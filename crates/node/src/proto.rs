//! Generated code of `proto/raft.proto` (package `neuroshard.raft.v1`).
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("neuroshard.raft.v1");
