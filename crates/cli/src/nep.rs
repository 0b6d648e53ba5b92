//! `neuroshard nep draft|amend|submit|withdraw|vote|show|list|receipt`
//! (`nep watch` is in `watch.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use ed25519_dalek::SigningKey;
use serde::Serialize;

use neuroshard_certificate::merkle::{BallotLeaf, InclusionProof};
use neuroshard_certificate::{CommitteeInfo, Envelope, Verifier};
use neuroshard_governance::limits::{MAX_PROPOSAL_FILE_BYTES, MAX_QUERY_PAGE};
use neuroshard_governance::params::GovParams;
use neuroshard_governance::{
    proposal_file, AccountId, Command, NepContent, NepId, NepType, ParameterSet, Stage, VoteChoice,
};
use neuroshard_node::api_proto as api;
use neuroshard_node::transport::api_convert::{
    choice_from_proto, nep_type_to_proto, stage_to_proto, value_from_proto,
};

use crate::amount::show as show_amount;
use crate::session::Session;
use crate::views::{ProposalOut, SubmitOut};

#[derive(Clone, Debug, Subcommand)]
pub enum NepCmd {
    /// Creates a DRAFT from a proposal file (TOML, see
    /// examples/neps/multi-token-prediction.toml).
    Draft { file: PathBuf },
    /// Replaces a DRAFT's content (author only).
    Amend { nep: NepId, file: PathBuf },
    /// DRAFT -> REVIEW; burns the proposal fee, freezes the content.
    Submit { nep: NepId },
    /// DRAFT or REVIEW -> WITHDRAWN (author only; no refund).
    Withdraw { nep: NepId },
    /// Casts (or replaces) the signing account's ballot on an open vote.
    Vote {
        nep: NepId,
        #[arg(value_parser = ["yes", "no", "abstain"])]
        choice: String,
    },
    /// One NEP: content, stage, tally, what happens next.
    Show { nep: NepId },
    /// NEPs in id order, optionally of one stage and type.
    List {
        /// DRAFT, REVIEW, VOTING, SCHEDULED, ACTIVE, REJECTED, ...
        #[arg(long)]
        stage: Option<String>,
        /// ARCH, ECON, TRAIN, NET, GOV or EMERG.
        #[arg(long = "type")]
        nep_type: Option<String>,
        /// Only NEPs after this one (pagination).
        #[arg(long)]
        after: Option<NepId>,
        /// At most this many (0 or more than 1000: 1000); pages the server
        /// cut short at its size bound are followed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Follows a NEP live: a progress bar to its next stage and the tally.
    Watch {
        nep: NepId,
        /// Stop once the NEP reaches this stage (default: a final stage).
        #[arg(long)]
        until: Option<String>,
    },
    /// Proves the signing account's (or --account's) vote was counted as
    /// cast: its ballot, the Merkle path, and the certificate carrying the
    /// ballots root.
    Receipt {
        nep: NepId,
        /// Voter (64 hex digits); default: the signing key's account.
        #[arg(long)]
        account: Option<String>,
        /// Pinned committee info to verify the certificate with (default:
        /// the committee info the validator reports, which proves less).
        #[arg(long)]
        committee: Option<PathBuf>,
    },
}

pub fn parse_choice(text: &str) -> anyhow::Result<VoteChoice> {
    match text.to_ascii_lowercase().as_str() {
        "yes" => Ok(VoteChoice::Yes),
        "no" => Ok(VoteChoice::No),
        "abstain" => Ok(VoteChoice::Abstain),
        other => anyhow::bail!("vote {other:?}: choose yes, no or abstain"),
    }
}

/// The live governance parameters, as the committee checks content against.
pub async fn live_gov_params(session: &mut Session) -> anyhow::Result<GovParams> {
    let stale = session.stale;
    let p = session.call(|c| Box::pin(c.parameters(stale))).await?;
    let mut set = ParameterSet::genesis_defaults();
    for param in &p.parameters {
        let value = param
            .value
            .as_ref()
            .and_then(value_from_proto)
            .ok_or_else(|| anyhow::anyhow!("parameter {} has no value", param.key))?;
        set.set(&param.key, value)?;
    }
    Ok(set.gov())
}

/// Reads and checks a proposal file against the live parameters.
pub async fn load_content(session: &mut Session, file: &Path) -> anyhow::Result<NepContent> {
    let meta = std::fs::metadata(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if meta.len() > MAX_PROPOSAL_FILE_BYTES as u64 {
        anyhow::bail!(
            "{}: {} bytes, more than MAX_PROPOSAL_FILE_BYTES = {MAX_PROPOSAL_FILE_BYTES}",
            file.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let gov = live_gov_params(session).await?;
    proposal_file::parse_and_validate(&text, &gov)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

pub async fn draft(
    session: &mut Session,
    key: &SigningKey,
    file: &Path,
) -> anyhow::Result<SubmitOut> {
    let content = load_content(session, file).await?;
    if content.nep_type == NepType::Emerg {
        anyhow::bail!(
            "{}: an EMERG NEP is proposed by a validator with `neuroshard emergency propose`",
            file.display()
        );
    }
    let r = session
        .submit(key, Command::CreateDraft { content })
        .await?;
    Ok(SubmitOut::from(&r))
}

pub async fn amend(
    session: &mut Session,
    key: &SigningKey,
    nep: NepId,
    file: &Path,
) -> anyhow::Result<SubmitOut> {
    let content = load_content(session, file).await?;
    let r = session
        .submit(key, Command::AmendDraft { nep, content })
        .await?;
    Ok(SubmitOut::from(&r))
}

pub async fn submit(
    session: &mut Session,
    key: &SigningKey,
    nep: NepId,
) -> anyhow::Result<SubmitOut> {
    let r = session.submit(key, Command::Submit { nep }).await?;
    Ok(SubmitOut::from(&r))
}

pub async fn withdraw(
    session: &mut Session,
    key: &SigningKey,
    nep: NepId,
) -> anyhow::Result<SubmitOut> {
    let r = session.submit(key, Command::Withdraw { nep }).await?;
    Ok(SubmitOut::from(&r))
}

pub async fn vote(
    session: &mut Session,
    key: &SigningKey,
    nep: NepId,
    choice: VoteChoice,
) -> anyhow::Result<SubmitOut> {
    let r = session.submit(key, Command::Vote { nep, choice }).await?;
    Ok(SubmitOut::from(&r))
}

pub async fn proposal(session: &mut Session, nep: NepId) -> anyhow::Result<api::Proposal> {
    let stale = session.stale;
    Ok(session.call(|c| Box::pin(c.proposal(nep.0, stale))).await?)
}

pub async fn show(session: &mut Session, nep: NepId) -> anyhow::Result<ProposalOut> {
    Ok(ProposalOut::from(&proposal(session, nep).await?))
}

pub async fn list(
    session: &mut Session,
    stage: Option<&str>,
    nep_type: Option<&str>,
    after: Option<NepId>,
    limit: u32,
) -> anyhow::Result<Vec<ProposalOut>> {
    let stage = match stage {
        Some(s) => Some(Stage::parse(s).ok_or_else(|| anyhow::anyhow!("--stage {s:?} is not a stage (DRAFT, REVIEW, VOTING, AWAITING_APPROVAL, SCHEDULED, ACTIVE, RATIFIED, REVOKED, REJECTED, WITHDRAWN, CANCELLED)"))?),
        None => None,
    };
    let nep_type = match nep_type {
        Some(t) => Some(NepType::parse(t).ok_or_else(|| {
            anyhow::anyhow!("--type {t:?} is not ARCH, ECON, TRAIN, NET, GOV or EMERG")
        })?),
        None => None,
    };
    // A server answer stops early at its size bound (`truncated`); the
    // following pages are fetched until `limit` NEPs (0: one server page,
    // `MAX_QUERY_PAGE`) are listed or none are left. Every call returns at
    // least one NEP when it is truncated, so this ends.
    let limit = if limit == 0 {
        MAX_QUERY_PAGE
    } else {
        (limit as usize).min(MAX_QUERY_PAGE)
    };
    let mut start_after = after.map_or(0, |n| n.0);
    let mut out: Vec<ProposalOut> = Vec::new();
    loop {
        let request = api::ListProposalsRequest {
            stage: stage.map_or(0, |s| stage_to_proto(s) as i32),
            nep_type: nep_type.map_or(0, |t| nep_type_to_proto(t) as i32),
            start_after,
            limit: (limit - out.len()) as u32,
            read: Some(api::ReadOptions {
                stale: session.stale,
            }),
        };
        let r = session
            .call(|c| Box::pin(async move { c.proposals(request).await }))
            .await?;
        // Items carry no read point of their own: the list's applies to each.
        let committed_ms = r.read_point.map_or(0, |p| p.committed_ms);
        out.extend(
            r.proposals
                .iter()
                .take(limit - out.len())
                .map(|p| ProposalOut {
                    committed_ms,
                    ..ProposalOut::from(p)
                }),
        );
        match r.proposals.last() {
            Some(last) if r.truncated && out.len() < limit => start_after = last.nep,
            _ => return Ok(out),
        }
    }
}

/// A vote receipt and what was checked about it.
#[derive(Clone, Debug, Serialize)]
pub struct ReceiptOut {
    pub nep: u64,
    pub account: String,
    pub choice: String,
    pub power: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub ballots_root: String,
    pub vote_closed: bool,
    /// The Merkle path leads from the ballot to `ballots_root`.
    pub path_verified: bool,
    /// The certificate whose signed payload carries `ballots_root`.
    pub certificate: Option<u64>,
    /// Its signature verified and its payload names this NEP and root.
    pub certificate_verified: bool,
    /// Verified against a committee info the user pinned (not the one the
    /// validator reported).
    pub committee_pinned: bool,
}

impl fmt::Display for ReceiptOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ballot      {} voted {} with {} on NEP-{}",
            self.account,
            self.choice,
            show_amount(self.power),
            self.nep
        )?;
        writeln!(
            f,
            "merkle      leaf {} of {}, path {} root {}",
            self.leaf_index,
            self.tree_size,
            if self.path_verified {
                "leads to"
            } else {
                "DOES NOT lead to"
            },
            self.ballots_root
        )?;
        match self.certificate {
            Some(seq) if self.certificate_verified => writeln!(
                f,
                "certificate #{seq} is signed by the committee{} and carries this root: the vote was counted as cast",
                if self.committee_pinned { " (pinned committee info)" } else { " (committee info as the validator reports it; pin it with --committee)" }
            ),
            Some(seq) => writeln!(f, "certificate #{seq} does NOT verify or does not carry this root"),
            None if self.vote_closed => writeln!(f, "the vote is closed; no certificate was issued (the NEP was not scheduled)"),
            None => writeln!(f, "the vote is still open: the root is not final and not certified yet"),
        }
    }
}

pub async fn receipt(
    session: &mut Session,
    nep: NepId,
    account: &AccountId,
    committee: Option<&Path>,
) -> anyhow::Result<ReceiptOut> {
    let hex = account.to_hex();
    let stale = session.stale;
    let r = session
        .call(|c| {
            let hex = hex.clone();
            Box::pin(async move { c.vote_receipt(nep.0, &hex, stale).await })
        })
        .await?;
    let choice = choice_from_proto(r.choice)
        .ok_or_else(|| anyhow::anyhow!("receipt carries an unknown choice {}", r.choice))?;
    let account_bytes: [u8; 32] = hex::decode(&r.account)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("receipt names account {:?}", r.account))?;
    if account_bytes != account.0 {
        anyhow::bail!(
            "the validator answered a receipt for another account ({})",
            r.account
        );
    }
    let leaf = BallotLeaf {
        account: account_bytes,
        choice,
        power: r.power,
    };
    let root: [u8; 32] =
        r.ballots_root.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!("ballots root is {} bytes, not 32", r.ballots_root.len())
        })?;
    let path = r
        .path
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| anyhow::anyhow!("a path hash is {} bytes, not 32", h.len()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let proof = InclusionProof {
        leaf_index: r.leaf_index,
        tree_size: r.tree_size,
        path,
    };
    let path_verified = proof.verify(&leaf, &root);

    let mut certificate_verified = false;
    let committee_pinned = committee.is_some();
    if let Some(seq) = r.certificate {
        let info = match committee {
            Some(path) => CommitteeInfo::from_json(
                &std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )?,
            None => {
                let c = session.call(|c| Box::pin(c.committee())).await?;
                CommitteeInfo::from_json(c.committee_json.as_bytes())?
            }
        };
        let cert = session
            .call(|c| {
                Box::pin(c.certificate(api::get_certificate_request::By::Sequence(seq), stale))
            })
            .await?;
        if let Some(wire) = cert.envelope {
            let envelope = Envelope::from_proto(wire)?;
            let verified = Verifier::new(info)?.verify(&envelope)?;
            certificate_verified =
                verified.payload.nep_id == nep.0 && verified.payload.ballots_root == root;
        }
    }
    Ok(ReceiptOut {
        nep: nep.0,
        account: account.to_hex(),
        choice: format!("{choice:?}").to_lowercase(),
        power: r.power,
        leaf_index: r.leaf_index,
        tree_size: r.tree_size,
        ballots_root: hex::encode(root),
        vote_closed: r.closed,
        path_verified,
        certificate: r.certificate,
        certificate_verified,
        committee_pinned,
    })
}
