//! The certificate payload and envelope as generated from
//! `proto/certificate.proto` (package `neuroshard.certificate.v1`).
//!
//! Field numbers are frozen: fields may be added, never renumbered or removed.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

include!(concat!(env!("OUT_DIR"), "/neuroshard.certificate.v1.rs"));
