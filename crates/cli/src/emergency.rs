//! `neuroshard emergency propose FILE` and `emergency approve NEP`: the
//! committee's fast track, signed with a validator's identity key
//! (validator-<i>/identity.key from keygen).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ed25519_dalek::SigningKey;

use neuroshard_governance::{Command, NepId, NepType};

use crate::nep::load_content;
use crate::session::Session;
use crate::views::SubmitOut;

#[derive(Clone, Debug, Subcommand)]
pub enum EmergencyCmd {
    /// Submits an EMERG NEP (nep_type = "EMERG"); it skips REVIEW and needs
    /// approvals from a Byzantine quorum of validators (t + 1: 3 of 4) within
    /// gov.emergency_window_days.
    Propose { file: PathBuf },
    /// Approves an emergency NEP awaiting approval.
    Approve { nep: NepId },
}

pub async fn propose(
    session: &mut Session,
    key: &SigningKey,
    file: &Path,
) -> anyhow::Result<SubmitOut> {
    let content = load_content(session, file).await?;
    if content.nep_type != NepType::Emerg {
        anyhow::bail!(
            "{}: nep_type is {}; `emergency propose` takes EMERG NEPs (others start with `nep draft`)",
            file.display(),
            content.nep_type
        );
    }
    let r = session
        .submit(key, Command::SubmitEmergency { content })
        .await?;
    Ok(SubmitOut::from(&r))
}

pub async fn approve(
    session: &mut Session,
    key: &SigningKey,
    nep: NepId,
) -> anyhow::Result<SubmitOut> {
    let r = session
        .submit(key, Command::EmergencyApprove { nep })
        .await?;
    Ok(SubmitOut::from(&r))
}
