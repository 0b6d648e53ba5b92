//! `neuroshard account new|show`, `stake`, `unstake`, `transfer`.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use ed25519_dalek::SigningKey;
use serde::Serialize;

use neuroshard_governance::{AccountId, Command};

use crate::amount::parse_neuro;
use crate::keyfile::{account_of, create_key_file};
use crate::session::Session;
use crate::views::{AccountOut, SubmitOut};

#[derive(Clone, Debug, Subcommand)]
pub enum AccountCmd {
    /// Creates a new account key in FILE (mode 0600) and prints the account.
    New {
        /// Where to write the key (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Balance, stake, stake locked by open votes, next nonce.
    Show {
        /// Account (64 hex digits); default: the signing key's account.
        account: Option<String>,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct NewAccountOut {
    pub account: String,
    pub key_file: String,
}

impl fmt::Display for NewAccountOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "account  {}", self.account)?;
        writeln!(f, "key      {} (mode 0600; keep it secret)", self.key_file)?;
        writeln!(
            f,
            "The committee knows the account once someone transfers NEURO to it."
        )
    }
}

pub fn new_account(out: &Path) -> anyhow::Result<NewAccountOut> {
    let (_, account) = create_key_file(out)?;
    Ok(NewAccountOut {
        account: account.to_hex(),
        key_file: out.display().to_string(),
    })
}

pub async fn show(session: &mut Session, account: &AccountId) -> anyhow::Result<AccountOut> {
    let hex = account.to_hex();
    let stale = session.stale;
    let a = session
        .call(|c| {
            let hex = hex.clone();
            Box::pin(async move { c.account(&hex, stale).await })
        })
        .await?;
    Ok(AccountOut::from(&a))
}

pub async fn stake(
    session: &mut Session,
    key: &SigningKey,
    amount: &str,
) -> anyhow::Result<SubmitOut> {
    let amount = parse_neuro(amount)?;
    let r = session.submit(key, Command::Stake { amount }).await?;
    Ok(SubmitOut::from(&r))
}

pub async fn unstake(
    session: &mut Session,
    key: &SigningKey,
    amount: &str,
) -> anyhow::Result<SubmitOut> {
    let amount = parse_neuro(amount)?;
    let r = session.submit(key, Command::Unstake { amount }).await?;
    Ok(SubmitOut::from(&r))
}

pub async fn transfer(
    session: &mut Session,
    key: &SigningKey,
    to: &str,
    amount: &str,
) -> anyhow::Result<SubmitOut> {
    let to = AccountId::from_hex(to.trim())
        .map_err(|e| anyhow::anyhow!("receiver {to:?} is not 64 hex digits: {e}"))?;
    if to == account_of(key) {
        anyhow::bail!("cannot transfer to the signing account itself");
    }
    let amount = parse_neuro(amount)?;
    let r = session
        .submit(key, Command::Transfer { to, amount })
        .await?;
    Ok(SubmitOut::from(&r))
}
