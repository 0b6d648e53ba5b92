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

/// Which kind of refusal a failed call was (`ErrorDetail.refusal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Refused before ordering: not in the log, nonce not consumed; fix the
    /// command and send it again with the same nonce (a quota refusal:
    /// resend the same bytes later).
    Admission,
    /// Refused when applied at this log index: the nonce is consumed.
    Apply { log_index: u64 },
}

/// Whether a refusal with `rule` leaves the command's nonce free.
fn nonce_free(rule: &str, at_admission: bool) -> bool {
    rule != "nonce_replay"
        && (at_admission
            || neuroshard_governance::error::RULES_LEAVING_THE_NONCE_FREE.contains(&rule))
}

fn show_status(code: Code, message: &str, detail: Option<&api::ErrorDetail>) -> String {
    match detail {
        Some(d) => match refusal_of(d) {
            Some(Refusal::Admission) if !nonce_free(&d.rule, true) => format!(
                "refused before ordering (not in the log; this nonce is already used: read the account before signing again): {} [{}]",
                d.message, d.rule
            ),
            Some(Refusal::Admission) => format!(
                "refused before ordering (not in the log, nonce not consumed; fix and resend): {} [{}]",
                d.message, d.rule
            ),
            Some(Refusal::Apply { log_index }) if nonce_free(&d.rule, false) => format!(
                "refused at log index {log_index} before its nonce was used (fix and resend with the same nonce): {} [{}]",
                d.message, d.rule
            ),
            Some(Refusal::Apply { log_index }) => format!(
                "refused at log index {log_index} (nonce consumed): {} [{}]",
                d.message, d.rule
            ),
            None => format!("{} [{}]", d.message, d.rule),
        },
        None if is_transport_limit(code, message) => format!(
            "refused before ordering by the validator's transport (the request is larger than it accepts; not in the log, nonce not consumed): {code:?}: {message}"
        ),
        None => format!("{code:?}: {message}"),
    }
}

/// tonic refuses a message above the receiver's decoding limit (or the
/// sender's encoding limit) before any handler runs, without a detail.
fn is_transport_limit(code: Code, message: &str) -> bool {
    matches!(code, Code::OutOfRange | Code::ResourceExhausted)
        && message.contains("message length too large")
}

fn refusal_of(d: &api::ErrorDetail) -> Option<Refusal> {
    match api::RefusalKind::try_from(d.refusal).unwrap_or(api::RefusalKind::Unspecified) {
        api::RefusalKind::Admission => Some(Refusal::Admission),
        // An apply refusal always carries its index; one without is not
        // shown as ordered.
        api::RefusalKind::Apply => d.log_index.map(|log_index| Refusal::Apply { log_index }),
        api::RefusalKind::Unspecified => None,
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

    /// Which kind of refusal this is: `Admission` (not ordered, nonce not
    /// consumed), `Apply` (ordered at a log index, nonce consumed), or None
    /// when the error is no verdict on the command (unavailable, timeout, a
    /// read's answer). A request the transport refused for its size counts
    /// as an admission refusal: it was never decoded.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ApiError::Status {
                detail: Some(d), ..
            } => refusal_of(d),
            ApiError::Status {
                code,
                message,
                detail: None,
            } if is_transport_limit(*code, message) => Some(Refusal::Admission),
            _ => None,
        }
    }

    /// Whether the command's nonce is used: `Some(false)` after an
    /// admission refusal or an apply refusal checked before the nonce (sign
    /// the fixed command with the same nonce); `Some(true)` after any other
    /// apply refusal, and after `nonce_replay` (the nonce was used by
    /// another command, or by this one long ago: read the account first);
    /// None when unknown (a timeout: resend the same bytes to find out).
    pub fn nonce_consumed(&self) -> Option<bool> {
        let rule = self.rule().unwrap_or("");
        self.refusal().map(|r| match r {
            Refusal::Admission => !nonce_free(rule, true),
            Refusal::Apply { .. } => !nonce_free(rule, false),
        })
    }

    /// The log index of an apply refusal.
    pub fn log_index(&self) -> Option<u64> {
        match self.refusal() {
            Some(Refusal::Apply { log_index }) => Some(log_index),
            _ => None,
        }
    }

    /// Whether asking again (possibly another validator) can succeed:
    /// unreachable, no leader, timeouts, overload and pending quotas. Never
    /// a verdict on the command itself, nor a request too large for the
    /// transport.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Connect { .. } => true,
            ApiError::Status { code, message, .. } => {
                matches!(
                    code,
                    Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
                ) && self.gov_error().is_none()
                    && !is_transport_limit(*code, message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NodeError;
    use crate::transport::api_errors::{apply_status, node_status};
    use neuroshard_governance::AccountId;
    use tonic::Status;

    #[test]
    fn the_client_tells_the_two_kinds_of_refusal_apart() {
        let admission =
            ApiError::from(node_status(&NodeError::Admission(GovError::BadSignature {
                author: AccountId([9; 32]),
            })));
        assert_eq!(admission.refusal(), Some(Refusal::Admission));
        assert_eq!(admission.nonce_consumed(), Some(false));
        assert_eq!(admission.log_index(), None);
        assert!(!admission.is_retryable());
        let text = admission.to_string();
        assert!(
            text.starts_with(
                "refused before ordering (not in the log, nonce not consumed; fix and resend): "
            ) && text.ends_with("[bad_signature]"),
            "{text}"
        );

        let apply = ApiError::from(apply_status(
            &GovError::ZeroAmount,
            neuroshard_governance::Position::entry(12),
        ));
        assert_eq!(apply.refusal(), Some(Refusal::Apply { log_index: 12 }));
        assert_eq!(apply.nonce_consumed(), Some(true));
        assert!(!apply.is_retryable());
        let text = apply.to_string();
        assert!(
            text.starts_with("refused at log index 12 (nonce consumed): ")
                && text.ends_with("[zero_amount]"),
            "{text}"
        );

        // The nonce follows the rule, not only the kind: an admission
        // nonce_replay means the nonce is used (by another command, or by
        // this one long ago) — never "re-sign with the same nonce"; an
        // apply refusal checked before the nonce leaves it free.
        let replay = ApiError::from(node_status(&NodeError::Admission(GovError::NonceReplay {
            account: AccountId([9; 32]),
            nonce: 3,
            expected: 8,
        })));
        assert_eq!(replay.refusal(), Some(Refusal::Admission));
        assert_eq!(replay.nonce_consumed(), Some(true));
        assert!(
            replay.to_string().contains("this nonce is already used"),
            "{replay}"
        );
        let forged = ApiError::from(apply_status(
            &GovError::BadSignature {
                author: AccountId([9; 32]),
            },
            neuroshard_governance::Position::entry(13),
        ));
        assert_eq!(forged.nonce_consumed(), Some(false));
        assert!(
            forged.to_string().starts_with(
                "refused at log index 13 before its nonce was used (fix and resend with the same nonce): "
            ),
            "{forged}"
        );
        for e in [
            GovError::UnknownAccount {
                account: AccountId([9; 32]),
            },
            GovError::NonceOutOfOrder {
                account: AccountId([9; 32]),
                nonce: 9,
                expected: 4,
            },
            GovError::CommandTooLarge { bytes: 2, max: 1 },
        ] {
            assert_eq!(
                ApiError::from(apply_status(&e, neuroshard_governance::Position::entry(14)))
                    .nonce_consumed(),
                Some(false),
                "{e}"
            );
            assert!(e.leaves_nonce_free(false) && e.leaves_nonce_free(true));
        }
        assert!(!GovError::ZeroAmount.leaves_nonce_free(false));

        // A quota refusal: admission, nonce not consumed, worth resending.
        let quota = ApiError::from(node_status(&NodeError::Quota(crate::QuotaRefusal {
            quota: crate::Quota::Account(AccountId([9; 32])),
            pending: 64,
            limit: 64,
        })));
        assert_eq!(quota.refusal(), Some(Refusal::Admission));
        assert!(quota.is_retryable());

        // Not verdicts: a timeout, and tonic's own size refusal (which is
        // before ordering, but never worth resending as is).
        let timeout = ApiError::from(node_status(&NodeError::Timeout { ms: 10 }));
        assert_eq!(timeout.refusal(), None);
        assert_eq!(timeout.nonce_consumed(), None);
        assert!(timeout.is_retryable());
        let transport = ApiError::from(Status::out_of_range(
            "Error, decoded message length too large: found 4194304 bytes, the limit is: 332800 bytes",
        ));
        assert_eq!(transport.refusal(), Some(Refusal::Admission));
        assert!(!transport.is_retryable());
        assert!(
            transport.to_string().contains("refused before ordering"),
            "{transport}"
        );
    }
}
