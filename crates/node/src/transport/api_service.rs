//! The operator surface on the API listener (`ReplicaAdmin`): status and
//! submitting one signed command. The public governance API (issue 5,
//! `proto/governance.proto`) is added beside it on the same listener and
//! calls the same [`NodeCore`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use neuroshard_governance::SignedCommand;

use crate::codec;
use crate::error::NodeError;
use crate::node::NodeCore;
use crate::proto;
use crate::proto::replica_admin_server::ReplicaAdmin;
use crate::submit::result_to_wire;

/// Largest message on the API listener (a command carries at most one NEP).
pub const MAX_API_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

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
        let result =
            match codec::decode::<SignedCommand>("signed command", &req.into_inner().command) {
                Ok(command) => self.core.submit(command).await,
                Err(e) => Err(NodeError::Malformed(e.to_string())),
            };
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
