//! Table-driven rule tests through the public API, one module per rule.

mod support;

mod activation;
mod admission;
mod budget;
mod certificates;
mod drafting;
mod emergency;
mod nonces;
mod proposal_file;
mod snapshots;
mod staking;
mod voting;
