//! A CLI session with the committee: which validators to ask (any of them;
//! the next one when one is unreachable), the committee CA, and signing and
//! submitting commands with the account's next nonce.
//!
//! A submitted command is signed once and retried as the same bytes, so a
//! retry after a timeout or a leader change is answered with the original
//! receipt and never applied twice.
//!
//! Nonces: every `submit` signs with the account's `next_nonce` as a
//! linearizable read returns it. A command refused before ordering
//! (admission: size, fields, signature, a consumed nonce, a pending quota)
//! did not consume its nonce, so the next `submit` signs the fixed command
//! with the same nonce; one refused when applied consumed it at its log
//! index, and the next read returns the following nonce. Only answers that
//! are no verdict (unreachable, no leader, timeout, overload, a pending
//! quota) are retried, always with the same bytes; a request the
//! validator's transport refused for its size is not.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use neuroshard_governance::{AccountId, Command, SignedCommand};
use neuroshard_node::api_proto as api;
use neuroshard_node::config::NodeConfig;
use neuroshard_node::{ApiError, GovernanceClient};

/// Deadline of connecting and of each call (a submit waits for the apply).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of one call across validators before giving up.
pub const MAX_CALL_ATTEMPTS: usize = 8;
/// Pause between attempts (times the attempt number).
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Most validators one session lists.
pub const MAX_ENDPOINTS: usize = 64;

/// How to reach the committee, as the CLI flags give it.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnArgs {
    /// A validator's API endpoint, https://host:port (repeat or separate
    /// with commas: the next one is used when one is unreachable).
    #[arg(
        long,
        env = "NEUROSHARD_ENDPOINT",
        value_delimiter = ',',
        global = true
    )]
    pub endpoint: Vec<String>,
    /// The committee CA certificate (ca.pem from keygen).
    #[arg(long, env = "NEUROSHARD_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// A keygen output directory: its ca.pem and every validator's API
    /// endpoint (instead of --ca and --endpoint).
    #[arg(long, env = "NEUROSHARD_COMMITTEE_DIR", global = true)]
    pub committee_dir: Option<PathBuf>,
    /// Answer from the validator's replica without confirming it is current.
    #[arg(long, global = true)]
    pub stale: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no validator endpoint: pass --endpoint https://host:port (or NEUROSHARD_ENDPOINT), or --committee-dir")]
    NoEndpoint,
    #[error("no committee CA: pass --ca ca.pem (or NEUROSHARD_CA), or --committee-dir")]
    NoCa,
    #[error("{count} endpoints given, at most {MAX_ENDPOINTS}")]
    TooManyEndpoints { count: usize },
    #[error("{path}: {message}")]
    CommitteeDir { path: String, message: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ConnArgs {
    /// The endpoints and CA to use.
    pub fn resolve(&self) -> Result<(Vec<String>, PathBuf), SessionError> {
        let mut endpoints = self.endpoint.clone();
        let mut ca = self.ca.clone();
        if let Some(dir) = &self.committee_dir {
            if endpoints.is_empty() {
                endpoints = committee_endpoints(dir)?;
            }
            ca.get_or_insert_with(|| dir.join("ca.pem"));
        }
        if endpoints.is_empty() {
            return Err(SessionError::NoEndpoint);
        }
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(SessionError::TooManyEndpoints {
                count: endpoints.len(),
            });
        }
        Ok((endpoints, ca.ok_or(SessionError::NoCa)?))
    }
}

/// Every validator's API endpoint in a keygen output directory.
pub fn committee_endpoints(dir: &Path) -> Result<Vec<String>, SessionError> {
    let err = |message: String| SessionError::CommitteeDir {
        path: dir.display().to_string(),
        message,
    };
    let mut out = Vec::new();
    for i in 0..MAX_ENDPOINTS {
        let config = dir.join(format!("validator-{i}")).join("node.toml");
        if !config.exists() {
            break;
        }
        let c = NodeConfig::load(&config).map_err(|e| err(e.to_string()))?;
        out.push(format!("https://{}", c.api_listen));
    }
    if out.is_empty() {
        return Err(err("no validator-<i>/node.toml found".into()));
    }
    Ok(out)
}

type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

pub struct Session {
    endpoints: Vec<String>,
    ca: PathBuf,
    current: usize,
    client: Option<GovernanceClient>,
    chain_id: Option<String>,
    pub stale: bool,
}

impl Session {
    /// Connects to the first reachable validator.
    pub async fn connect(args: &ConnArgs) -> Result<Self, SessionError> {
        let (endpoints, ca) = args.resolve()?;
        let mut s = Self::new(endpoints, ca);
        s.stale = args.stale;
        s.ensure_client().await?;
        Ok(s)
    }

    /// A session that connects on first use.
    pub fn new(endpoints: Vec<String>, ca: PathBuf) -> Self {
        Self {
            endpoints,
            ca,
            current: 0,
            client: None,
            chain_id: None,
            stale: false,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// Moves on to the next validator (after a broken stream).
    pub fn rotate(&mut self) {
        self.client = None;
        self.current = (self.current + 1) % self.endpoints.len();
    }

    async fn ensure_client(&mut self) -> Result<&mut GovernanceClient, ApiError> {
        if self.client.is_none() {
            let mut last = None;
            for step in 0..self.endpoints.len() {
                let i = (self.current + step) % self.endpoints.len();
                match GovernanceClient::connect(&self.endpoints[i], &self.ca, CALL_TIMEOUT).await {
                    Ok(c) => {
                        self.current = i;
                        self.client = Some(c);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if self.client.is_none() {
                return Err(last.unwrap_or(ApiError::Connect {
                    endpoint: String::new(),
                    message: "no endpoint".into(),
                }));
            }
        }
        // Set just above.
        Ok(self.client.as_mut().expect("client connected"))
    }

    /// Runs `op` on a validator, retrying retryable failures (on the next
    /// validator when one is unreachable or has no leader).
    pub async fn call<T>(
        &mut self,
        op: impl for<'a> Fn(&'a mut GovernanceClient) -> CallFuture<'a, T>,
    ) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.ensure_client().await {
                Ok(client) => op(client).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_retryable() && attempt < MAX_CALL_ATTEMPTS => {
                    tracing::debug!(error = %e, endpoint = self.endpoint(), attempt, "retrying");
                    // Another validator may be reachable or know the leader.
                    self.client = None;
                    self.current = (self.current + 1) % self.endpoints.len();
                    tokio::time::sleep(RETRY_PAUSE * attempt as u32).await;
                }
                other => return other,
            }
        }
    }

    pub async fn chain_id(&mut self) -> Result<String, ApiError> {
        if let Some(c) = &self.chain_id {
            return Ok(c.clone());
        }
        let status = self.call(|c| Box::pin(c.status())).await?;
        self.chain_id = Some(status.chain_id.clone());
        Ok(status.chain_id)
    }

    /// The nonce `account`'s next command must carry (a linearizable read,
    /// so a command just applied anywhere is counted).
    pub async fn next_nonce(&mut self, account: &AccountId) -> Result<u64, ApiError> {
        let hex = account.to_hex();
        let a = self
            .call(|c| {
                let hex = hex.clone();
                Box::pin(async move { c.account(&hex, false).await })
            })
            .await?;
        Ok(a.next_nonce)
    }

    /// Signs `command` with `key` and the account's next nonce, submits it
    /// and waits until it is applied. A refusal comes back as the typed
    /// error (`ApiError::gov_error`), of either kind (`ApiError::refusal`):
    /// before ordering, the nonce was not consumed; when applied, it was.
    pub async fn submit(
        &mut self,
        key: &SigningKey,
        command: Command,
    ) -> Result<api::SubmitResponse, ApiError> {
        let chain_id = self.chain_id().await?;
        let account = AccountId(key.verifying_key().to_bytes());
        let nonce = self.next_nonce(&account).await?;
        let signed = SignedCommand::sign(&chain_id, key, nonce, command);
        self.submit_signed(&signed).await
    }

    /// Submits an already signed command, retrying the same bytes.
    pub async fn submit_signed(
        &mut self,
        signed: &SignedCommand,
    ) -> Result<api::SubmitResponse, ApiError> {
        self.call(|c| {
            let signed = signed.clone();
            Box::pin(async move { c.submit(&signed).await })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use neuroshard_governance::{AccountId, GovError};
    use neuroshard_node::transport::api_errors::{apply_status, node_status};
    use neuroshard_node::{ApiError, NodeError, Quota, QuotaRefusal, Refusal};

    /// What `Session::call` does with each answer: retry (same bytes) or
    /// return it, and what it says about the nonce.
    #[test]
    fn admission_refusals_are_returned_with_the_nonce_unconsumed() {
        let admission = ApiError::from(node_status(&NodeError::Admission(
            GovError::CommandTooLarge {
                bytes: 4_194_299,
                max: 160 * 1024,
            },
        )));
        assert!(!admission.is_retryable(), "a verdict: returned at once");
        assert_eq!(admission.nonce_consumed(), Some(false));
        assert_eq!(admission.refusal(), Some(Refusal::Admission));
        let text = admission.to_string();
        assert!(
            text.contains("refused before ordering") && text.ends_with("[command_too_large]"),
            "{text}"
        );

        let apply = ApiError::from(apply_status(
            &GovError::InsufficientStake {
                account: AccountId([1; 32]),
                needed: neuroshard_governance::Amount(2),
                staked: neuroshard_governance::Amount(1),
            },
            neuroshard_governance::Position::entry(40),
        ));
        assert!(!apply.is_retryable());
        assert_eq!(apply.nonce_consumed(), Some(true));
        assert!(apply
            .to_string()
            .starts_with("refused at log index 40 (nonce consumed)"));

        // A quota says "not now": the same bytes are sent again.
        let quota = ApiError::from(node_status(&NodeError::Quota(QuotaRefusal {
            quota: Quota::Account(AccountId([1; 32])),
            pending: 64,
            limit: 64,
        })));
        assert!(quota.is_retryable());
        assert_eq!(quota.nonce_consumed(), Some(false));
    }
}
