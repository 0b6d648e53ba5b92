//! Everything a light node needs to trust a NeuroShard governance certificate,
//! and nothing more: no tokio, no crate of this workspace.

pub mod merkle;
