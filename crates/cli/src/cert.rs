//! `neuroshard cert get|verify|follow`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;

use neuroshard_certificate::{CommitteeInfo, Envelope, Verifier};
use neuroshard_governance::{Genesis, ProtocolVersion};
use neuroshard_node::api_proto as api;
use neuroshard_node::node::MAX_GENESIS_FILE_BYTES;

use crate::light_node::{ActiveOut, CertificateOut, GenesisSource, LightGenesis, LightNode};
use crate::session::Session;

/// Consecutive failed stream attempts before `cert follow` gives up.
pub const MAX_FOLLOW_RECONNECTS: usize = 30;
/// Pause between stream attempts.
pub const FOLLOW_RECONNECT_PAUSE: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, Subcommand)]
pub enum CertCmd {
    /// One certificate by sequence (or the newest of --nep); writes the
    /// envelope JSON with --out.
    Get {
        sequence: Option<u64>,
        #[arg(long)]
        nep: Option<u64>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verifies a certificate file against a pinned committee info (no
    /// validator is asked).
    Verify {
        file: PathBuf,
        #[arg(long)]
        committee: PathBuf,
    },
    /// A light node: streams certificates from any validator, verifies each
    /// with the pinned committee info, prints the active parameters.
    Follow {
        #[arg(long)]
        committee: PathBuf,
        /// Pinned genesis (default: asked from the validator and checked
        /// against every certificate's parameters hash).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Stop after this many certificates (default: follow forever).
        #[arg(long)]
        count: Option<u64>,
    },
}

pub fn read_committee(path: &Path) -> anyhow::Result<CommitteeInfo> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    CommitteeInfo::from_json(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn read_envelope(path: &Path) -> anyhow::Result<Envelope> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Envelope::from_json(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A certificate as a validator answered it.
#[derive(Clone, Debug, Serialize)]
pub struct FetchedOut {
    pub issued: bool,
    pub signers: Vec<u32>,
    pub observed_latency_ms: Option<u64>,
    pub written_to: Option<String>,
    /// The payload as decoded, not yet verified (use `cert verify`).
    pub payload: Option<CertificateOut>,
    pub envelope: Option<serde_json::Value>,
}

impl fmt::Display for FetchedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.payload {
            write!(f, "{p}")?;
        }
        if self.issued {
            writeln!(f, "  signed by validators {:?}", self.signers)?;
        } else {
            writeln!(
                f,
                "  not issued yet: validators' shares are being collected"
            )?;
        }
        if let Some(ms) = self.observed_latency_ms {
            writeln!(
                f,
                "  issued {ms} ms after it was decided (as this validator saw it)"
            )?;
        }
        if let Some(path) = &self.written_to {
            writeln!(f, "  envelope written to {path}; check it with `neuroshard cert verify {path} --committee committee.json`")?;
        }
        Ok(())
    }
}

pub async fn get(
    session: &mut Session,
    by: api::get_certificate_request::By,
    out: Option<&Path>,
) -> anyhow::Result<FetchedOut> {
    let stale = session.stale;
    let c = session.call(|c| Box::pin(c.certificate(by, stale))).await?;
    let payload = neuroshard_certificate::decode_payload(&c.payload).ok();
    let written_to = match (out, c.issued) {
        (Some(path), true) => {
            crate::write_public(path, c.envelope_json.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(path.display().to_string())
        }
        (Some(_), false) => anyhow::bail!(
            "certificate {} is not issued yet (shares are being collected); try again shortly",
            c.sequence
        ),
        (None, _) => None,
    };
    Ok(FetchedOut {
        issued: c.issued,
        signers: c.signers.clone(),
        observed_latency_ms: c.observed_latency_ms,
        written_to,
        payload: payload.as_ref().map(CertificateOut::from),
        envelope: (!c.envelope_json.is_empty())
            .then(|| serde_json::from_str(&c.envelope_json).ok())
            .flatten(),
    })
}

/// Verifies `file` against the pinned committee info alone.
pub fn verify(file: &Path, committee: &Path) -> anyhow::Result<CertificateOut> {
    let info = read_committee(committee)?;
    let envelope = read_envelope(file)?;
    let verified = Verifier::new(info)?
        .verify(&envelope)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(CertificateOut::from(&verified.payload))
}

/// The genesis a light node starts from: the pinned file, or the
/// validator's answer (checked later against every certificate).
pub async fn light_genesis(
    session: &mut Session,
    pinned: &CommitteeInfo,
    genesis_file: Option<&Path>,
) -> anyhow::Result<LightGenesis> {
    if let Some(path) = genesis_file {
        let meta =
            std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if meta.len() > MAX_GENESIS_FILE_BYTES {
            anyhow::bail!("{}: more than MAX_GENESIS_FILE_BYTES", path.display());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let genesis =
            Genesis::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(LightGenesis::from_genesis(&genesis, pinned)?);
    }
    let c = session.call(|c| Box::pin(c.committee())).await?;
    let parameters: BTreeMap<_, _> = c
        .genesis_parameters
        .iter()
        .filter_map(|p| p.value.clone().map(|v| (p.key.clone(), v)))
        .collect();
    let version = c.genesis_version.unwrap_or_default();
    Ok(LightGenesis {
        parameters,
        version: ProtocolVersion {
            major: version.major,
            minor: version.minor,
        },
        genesis_time_ms: pinned.genesis_time_ms,
        block_interval_ms: c.block_interval_ms,
        source: GenesisSource::Validator,
    })
}

/// One followed certificate and the state after it.
#[derive(Clone, Debug, Serialize)]
pub struct FollowedOut {
    pub certificate: CertificateOut,
    pub from_validator: String,
    pub active_now: ActiveOut,
}

impl fmt::Display for FollowedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "verified {}", self.certificate)?;
        write!(f, "{}", self.active_now)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Follows the certificate stream from `node.next_sequence()`, calling
/// `each` for every verified certificate, until `count` were accepted (or
/// forever). Reconnects to the next validator when a stream breaks.
pub async fn follow(
    session: &mut Session,
    node: &mut LightNode,
    count: Option<u64>,
    mut each: impl FnMut(&FollowedOut) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut accepted = 0u64;
    let mut failures = 0usize;
    while count.is_none_or(|c| accepted < c) {
        let from = node.next_sequence();
        let stream = session
            .call(|c| Box::pin(c.stream_certificates(from)))
            .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                failures += 1;
                if failures >= MAX_FOLLOW_RECONNECTS {
                    return Err(e.into());
                }
                tokio::time::sleep(FOLLOW_RECONNECT_PAUSE).await;
                continue;
            }
        };
        loop {
            if count.is_some_and(|c| accepted >= c) {
                return Ok(accepted);
            }
            match stream.message().await {
                Ok(Some(c)) => {
                    failures = 0;
                    let wire = c.envelope.ok_or_else(|| {
                        anyhow::anyhow!(
                            "validator sent certificate {} without an envelope",
                            c.sequence
                        )
                    })?;
                    let envelope = Envelope::from_proto(wire)?;
                    // A refusal here is a validator sending something the
                    // pinned committee did not sign: stop, never skip.
                    let payload = node.accept(&envelope)?;
                    accepted += 1;
                    let out = FollowedOut {
                        certificate: CertificateOut::from(&payload),
                        from_validator: session.endpoint().to_owned(),
                        active_now: node.active_at(node.height_at(now_ms())),
                    };
                    each(&out)?;
                }
                Ok(None) | Err(_) => {
                    failures += 1;
                    if failures >= MAX_FOLLOW_RECONNECTS {
                        anyhow::bail!("the certificate stream broke {failures} times in a row");
                    }
                    session.rotate();
                    tokio::time::sleep(FOLLOW_RECONNECT_PAUSE).await;
                    break;
                }
            }
        }
    }
    Ok(accepted)
}
