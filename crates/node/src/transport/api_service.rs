//! The operator surface on the API listener (`ReplicaAdmin`): status and
//! submitting one signed command. The public governance API (issue 5,
//! `proto/governance.proto`) is added beside it on the same listener and
//! calls the same [`NodeCore`].

use std::net::IpAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::{GovError, SignedCommand};

use crate::codec;
use crate::error::NodeError;
use crate::node::NodeCore;
use crate::proto;
use crate::proto::replica_admin_server::ReplicaAdmin;
use crate::submit::result_to_wire;
use crate::transport::net::PeerIdentity;

/// Largest response on the API listener (a page of proposals or
/// certificates, bounded by bytes as well; see `MAX_LIST_RESPONSE_BYTES`).
pub const MAX_API_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest request the API listener decodes, derived from the one number
/// `MAX_COMMAND_BYTES`: a `Submit` carries one command, whose postcard form
/// is at most `MAX_COMMAND_BYTES` plus a few bytes of protobuf framing, and
/// whose JSON form is larger (32-byte keys and the 64-byte signature in hex,
/// strings escaped): twice `MAX_COMMAND_BYTES` plus 4 KiB holds the JSON of
/// every valid command whose texts need no more than one escape character
/// per byte (send the postcard form otherwise). A larger request is refused
/// by the transport (`OUT_OF_RANGE`) before it is decoded; a command that
/// fits the request but not `MAX_COMMAND_BYTES` is refused by admission
/// (`command_too_large`). Neither reaches the log.
pub const MAX_API_REQUEST_BYTES: usize = 2 * MAX_COMMAND_BYTES + 4 * 1024;

const _: () = assert!(MAX_API_REQUEST_BYTES <= MAX_API_MESSAGE_BYTES);

/// The IP address of the client's connection. The API listener's TLS
/// connections carry their address in `PeerIdentity` (`transport/net.rs`),
/// tonic's connect info for custom incoming streams; tonic's own
/// `Request::remote_addr()` knows only its TCP/TLS types and answers None
/// here. None in process (no connection).
pub fn source_ip<T>(req: &Request<T>) -> Option<IpAddr> {
    req.extensions()
        .get::<PeerIdentity>()
        .map(|p| p.remote.ip())
        .or_else(|| req.remote_addr().map(|a| a.ip()))
}

/// Decodes a postcard command, refusing one above `MAX_COMMAND_BYTES` by
/// its size alone (`command_too_large`, an admission refusal) without
/// decoding it.
pub fn decode_command(bytes: &[u8]) -> Result<SignedCommand, NodeError> {
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(NodeError::Admission(GovError::CommandTooLarge {
            bytes: bytes.len(),
            max: MAX_COMMAND_BYTES,
        }));
    }
    codec::decode::<SignedCommand>("signed command", bytes)
        .map_err(|e| NodeError::Malformed(e.to_string()))
}

pub struct AdminService {
    core: Arc<NodeCore>,
}

impl AdminService {
    pub fn new(core: Arc<NodeCore>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl ReplicaAdmin for AdminService {
    async fn status(
        &self,
        _req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        Ok(Response::new((&self.core.status().await).into()))
    }

    async fn submit(
        &self,
        req: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        crate::hoptrace::mark("S_recv", 0);
        let source = source_ip(&req);
        let bytes = req.into_inner().command;
        let result = match decode_command(&bytes) {
            Ok(command) => {
                let len = bytes.len();
                self.core
                    .submit_from(command, len, source, Some(bytes))
                    .await
            }
            Err(e) => Err(e),
        };
        crate::hoptrace::mark("S_done", 0);
        Ok(Response::new(proto::SubmitResponse {
            result: Some(result_to_wire(&result)),
        }))
    }

    async fn account(
        &self,
        req: Request<proto::AccountRequest>,
    ) -> Result<Response<proto::AccountResponse>, Status> {
        let bytes: [u8; 32] = req
            .into_inner()
            .account
            .as_slice()
            .try_into()
            .map_err(|_| {
                Status::invalid_argument("account must be a 32-byte ed25519 public key")
            })?;
        let machine = self.core.machine.read();
        let view = machine
            .state
            .account(&neuroshard_governance::AccountId(bytes));
        let applied_index = machine.last_applied.map(|l| l.index);
        Ok(Response::new(match view {
            Some(v) => proto::AccountResponse {
                exists: true,
                balance: v.balance.0,
                staked: v.staked.0,
                next_nonce: v.next_nonce,
                applied_index,
            },
            None => proto::AccountResponse {
                exists: false,
                next_nonce: 1,
                applied_index,
                ..Default::default()
            },
        }))
    }
}
