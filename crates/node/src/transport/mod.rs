//! Everything that crosses the network: TLS, the network seam, the wire
//! conversions, the peer client and both gRPC services.

pub mod api_service;
pub mod convert;
pub mod net;
pub mod peer_client;
pub mod peer_service;
pub mod tls;
