//! Everything a light node needs to trust a NeuroShard governance certificate,
//! and nothing more: no tokio, no crate of this workspace.

pub mod committee;
pub mod merkle;
pub mod proto;
pub mod scheme;

pub use committee::{CommitteeError, CommitteeInfo};
pub use scheme::{scheme_by_id, SchemeError, SchemeId, ShareIndex, ThresholdScheme};
