//! A client of a validator's API listener (server TLS, verified against the
//! committee CA): what `neuroshard status` and the tests use.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use neuroshard_governance::SignedCommand;

use crate::codec;
use crate::error::NodeError;
use crate::proto;
use crate::proto::replica_admin_client::ReplicaAdminClient;
use crate::status::NodeStatus;
use crate::submit::{result_from_wire, Submitted};
use crate::transport::api_service::MAX_API_MESSAGE_BYTES;
use crate::transport::net::{tls_connector, TcpNetwork};
use crate::transport::tls::{api_client_config, server_name_for};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint:?}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("{code}: {message}")]
    Rpc { code: tonic::Code, message: String },
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Rpc {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

#[derive(Clone)]
pub struct ApiClient {
    inner: ReplicaAdminClient<Channel>,
}

/// A channel to a validator's API listener: `endpoint` is
/// `https://host:port`; the server certificate must be issued by the CA in
/// `ca_pem` and name `host`. Every call is bounded by `timeout` (for a
/// server stream: until its response headers arrive).
pub async fn connect_channel(
    endpoint: &str,
    ca_pem: &std::path::Path,
    timeout: Duration,
) -> Result<Channel, ClientError> {
    let bad = |message: String| ClientError::Endpoint {
        endpoint: endpoint.to_owned(),
        message,
    };
    let rest = endpoint
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://".into()))?;
    let authority = rest.trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => return Err(bad("must name a port".into())),
    };
    let config: Arc<rustls::ClientConfig> = api_client_config(ca_pem)?;
    let connector = tls_connector(
        Arc::new(TcpNetwork),
        authority.to_owned(),
        server_name_for(host)?,
        config,
    );
    Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(connector)
        .await
        .map_err(|e| bad(format!("cannot connect: {e}")))
}

impl ApiClient {
    /// `endpoint` is `https://host:port`; the server certificate must be
    /// issued by the CA in `ca_pem` and name `host`.
    pub async fn connect(
        endpoint: &str,
        ca_pem: &std::path::Path,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let channel = connect_channel(endpoint, ca_pem, timeout).await?;
        Ok(Self {
            inner: ReplicaAdminClient::new(channel)
                .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_API_MESSAGE_BYTES),
        })
    }

    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        Ok(self
            .inner
            .status(proto::StatusRequest {})
            .await?
            .into_inner()
            .into())
    }

    /// One account as the answering replica has applied it.
    pub async fn account(
        &mut self,
        account: &neuroshard_governance::AccountId,
    ) -> Result<proto::AccountResponse, ClientError> {
        Ok(self
            .inner
            .account(proto::AccountRequest {
                account: account.0.to_vec(),
            })
            .await?
            .into_inner())
    }

    /// Submits a signed command and waits until it is applied.
    pub async fn submit(&mut self, command: &SignedCommand) -> Result<Submitted, ClientError> {
        let bytes = codec::encode("signed command", command)
            .map_err(|e| NodeError::Malformed(e.to_string()))?;
        let resp = self
            .inner
            .submit(proto::SubmitRequest { command: bytes })
            .await?
            .into_inner();
        let result = resp
            .result
            .ok_or_else(|| NodeError::Internal("empty submit response".into()))?;
        Ok(result_from_wire(result)?)
    }
}
