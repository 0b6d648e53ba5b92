//! Everything that crosses the network: TLS, the network seam, the wire
//! conversions, the peer client and both gRPC services.

pub mod api_convert;
pub mod api_errors;
pub mod api_service;
pub mod conn;
pub mod convert;
pub mod governance_service;
pub mod net;
pub mod peer_client;
pub mod peer_service;
pub mod tls;
