//! A client of the public governance API (what the CLI, the demo and the
//! end-to-end tests use). Errors keep the typed detail the validator sent.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;

use neuroshard_governance::{GovError, SignedCommand};

use crate::api_proto as api;
use crate::api_proto::governance_client::GovernanceClient as Raw;
use crate::client::connect_channel;
use crate::codec;
use crate::transport::api_errors::detail_of;
use crate::transport::api_service::MAX_API_MESSAGE_BYTES;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("{}", show_status(*.code, .message, .detail.as_deref()))]
    Status {
        code: Code,
        message: String,
        /// The typed detail every error of the governance API carries.
        detail: Option<Box<api::ErrorDetail>>,
    },
    #[error("cannot encode the command: {0}")]
    Encode(String),
}

fn show_status(code: Code, message: &str, detail: Option<&api::ErrorDetail>) -> String {
    match detail {
        Some(d) => format!("{} [{}]", d.message, d.rule),
        None => format!("{code:?}: {message}"),
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        ApiError::Status {
            code: s.code(),
            message: s.message().to_owned(),
            detail: detail_of(&s).map(Box::new),
        }
    }
}

impl ApiError {
    /// The rule a refusal names (`voting_closed`, `no_leader`, ...).
    pub fn rule(&self) -> Option<&str> {
        match self {
            ApiError::Status {
                detail: Some(d), ..
            } => Some(d.rule.as_str()),
            _ => None,
        }
    }

    /// The governance error of a refused command, typed.
    pub fn gov_error(&self) -> Option<GovError> {
        match self {
            ApiError::Status {
                detail: Some(d), ..
            } if !d.error_json.is_empty() => serde_json::from_str(&d.error_json).ok(),
            _ => None,
        }
    }

    /// Whether asking again (possibly another validator) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Connect { .. } => true,
            ApiError::Status { code, .. } => {
                matches!(
                    code,
                    Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
                ) && self.gov_error().is_none()
            }
            ApiError::Encode(_) => false,
        }
    }
}

fn read(stale: bool) -> Option<api::ReadOptions> {
    Some(api::ReadOptions { stale })
}

/// One validator's governance API.
#[derive(Clone)]
pub struct GovernanceClient {
    inner: Raw<Channel>,
    endpoint: String,
}

impl GovernanceClient {
    /// Connects to `https://host:port` with the committee CA `ca_pem`;
    /// `timeout` bounds connecting and every unary call.
    pub async fn connect(
        endpoint: &str,
        ca_pem: &std::path::Path,
        timeout: Duration,
    ) -> Result<Self, ApiError> {
        let channel = connect_channel(endpoint, ca_pem, timeout)
            .await
            .map_err(|e| ApiError::Connect {
                endpoint: endpoint.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            inner: Raw::new(channel)
                .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_API_MESSAGE_BYTES),
            endpoint: endpoint.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Submits a signed command; answers once it is applied.
    pub async fn submit(
        &mut self,
        command: &SignedCommand,
    ) -> Result<api::SubmitResponse, ApiError> {
        let bytes = codec::encode("signed command", command)
            .map_err(|e| ApiError::Encode(e.to_string()))?;
        Ok(self
            .inner
            .submit(api::SubmitRequest {
                command: Some(api::submit_request::Command::Postcard(bytes)),
            })
            .await?
            .into_inner())
    }

    pub async fn account(&mut self, account: &str, stale: bool) -> Result<api::Account, ApiError> {
        Ok(self
            .inner
            .get_account(api::GetAccountRequest {
                account: account.to_owned(),
                read: read(stale),
            })
            .await?
            .into_inner())
    }

    pub async fn proposal(&mut self, nep: u64, stale: bool) -> Result<api::Proposal, ApiError> {
        Ok(self
            .inner
            .get_proposal(api::GetProposalRequest {
                nep,
                read: read(stale),
            })
            .await?
            .into_inner())
    }

    pub async fn proposals(
        &mut self,
        request: api::ListProposalsRequest,
    ) -> Result<api::ListProposalsResponse, ApiError> {
        Ok(self.inner.list_proposals(request).await?.into_inner())
    }

    pub async fn tally(&mut self, nep: u64, stale: bool) -> Result<api::TallyView, ApiError> {
        Ok(self
            .inner
            .get_tally(api::GetTallyRequest {
                nep,
                read: read(stale),
            })
            .await?
            .into_inner())
    }

    pub async fn parameters(&mut self, stale: bool) -> Result<api::Parameters, ApiError> {
        Ok(self
            .inner
            .get_parameters(api::GetParametersRequest { read: read(stale) })
            .await?
            .into_inner())
    }

    pub async fn committee(&mut self) -> Result<api::Committee, ApiError> {
        Ok(self
            .inner
            .get_committee(api::GetCommitteeRequest {})
            .await?
            .into_inner())
    }

    pub async fn certificate(
        &mut self,
        by: api::get_certificate_request::By,
        stale: bool,
    ) -> Result<api::Certificate, ApiError> {
        Ok(self
            .inner
            .get_certificate(api::GetCertificateRequest {
                by: Some(by),
                read: read(stale),
            })
            .await?
            .into_inner())
    }

    pub async fn certificates(
        &mut self,
        from_sequence: u64,
        limit: u32,
        stale: bool,
    ) -> Result<api::ListCertificatesResponse, ApiError> {
        Ok(self
            .inner
            .list_certificates(api::ListCertificatesRequest {
                from_sequence,
                limit,
                read: read(stale),
            })
            .await?
            .into_inner())
    }

    /// Every issued certificate from `from_sequence` on, then new ones.
    pub async fn stream_certificates(
        &mut self,
        from_sequence: u64,
    ) -> Result<tonic::Streaming<api::Certificate>, ApiError> {
        Ok(self
            .inner
            .stream_certificates(api::StreamCertificatesRequest { from_sequence })
            .await?
            .into_inner())
    }

    pub async fn vote_receipt(
        &mut self,
        nep: u64,
        account: &str,
        stale: bool,
    ) -> Result<api::VoteReceipt, ApiError> {
        Ok(self
            .inner
            .get_vote_receipt(api::GetVoteReceiptRequest {
                nep,
                account: account.to_owned(),
                read: read(stale),
            })
            .await?
            .into_inner())
    }

    pub async fn status(&mut self) -> Result<api::ClusterStatus, ApiError> {
        Ok(self
            .inner
            .get_status(api::GetStatusRequest {})
            .await?
            .into_inner())
    }
}
