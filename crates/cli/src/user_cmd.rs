//! The commands of stakers, proposal authors, validators' emergency track
//! and light nodes, and the demo: `account`, `stake`, `unstake`,
//! `transfer`, `nep`, `emergency`, `params`, `cert`, `demo`.

use clap::{Args, Subcommand};

use neuroshard_governance::Stage;
use neuroshard_node::api_proto as api;

use crate::account::{self, AccountCmd};
use crate::cert::{self, CertCmd};
use crate::emergency::{self, EmergencyCmd};
use crate::keyfile::{account_of, KeyArgs};
use crate::nep::{self, NepCmd};
use crate::output::{emit, emit_list};
use crate::session::{ConnArgs, Session};
use crate::views::ParametersOut;

/// Flags every command takes (also after the subcommand).
#[derive(Clone, Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Clone, Debug, Subcommand)]
pub enum UserCmd {
    /// Account keys and balances.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
        #[command(flatten)]
        common: Common,
    },
    /// Moves balance into stake (voting power in votes opened from now on).
    Stake {
        /// NEURO, up to 6 decimals.
        amount: String,
        #[command(flatten)]
        common: Common,
    },
    /// Moves stake back to balance (stake that voted in an open vote is
    /// locked until that vote ends).
    Unstake {
        amount: String,
        #[command(flatten)]
        common: Common,
    },
    /// Sends NEURO to another account (creating it).
    Transfer {
        /// Receiving account (64 hex digits).
        to: String,
        amount: String,
        #[command(flatten)]
        common: Common,
    },
    /// NEPs: draft, amend, submit, withdraw, vote, show, list, watch, receipt.
    Nep {
        #[command(subcommand)]
        cmd: NepCmd,
        #[command(flatten)]
        common: Common,
    },
    /// The committee's emergency track (validator identity keys).
    Emergency {
        #[command(subcommand)]
        cmd: EmergencyCmd,
        #[command(flatten)]
        common: Common,
    },
    /// The active protocol parameters and version.
    Params {
        #[command(flatten)]
        common: Common,
    },
    /// Certificates: get one, verify a file, follow the chain as a light node.
    Cert {
        #[command(subcommand)]
        cmd: CertCmd,
        #[command(flatten)]
        common: Common,
    },
    /// A local 4-validator committee on loopback taking a NEP through its
    /// whole lifecycle and an emergency NEP through a failed ratification,
    /// every certificate verified as a light node.
    Demo(crate::demo::DemoArgs),
}

pub async fn run(cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Account { cmd, common } => match cmd {
            AccountCmd::New { out } => emit(common.json, &account::new_account(&out)?),
            AccountCmd::Show { account: who } => {
                let who = match who {
                    Some(hex) => neuroshard_governance::AccountId::from_hex(hex.trim())
                        .map_err(|e| anyhow::anyhow!("account {hex:?}: {e}"))?,
                    None => account_of(&common.key.load()?),
                };
                let mut s = Session::connect(&common.conn).await?;
                emit(common.json, &account::show(&mut s, &who).await?)
            }
        },
        UserCmd::Stake { amount, common } => {
            let key = common.key.load()?;
            let mut s = Session::connect(&common.conn).await?;
            emit(common.json, &account::stake(&mut s, &key, &amount).await?)
        }
        UserCmd::Unstake { amount, common } => {
            let key = common.key.load()?;
            let mut s = Session::connect(&common.conn).await?;
            emit(common.json, &account::unstake(&mut s, &key, &amount).await?)
        }
        UserCmd::Transfer { to, amount, common } => {
            let key = common.key.load()?;
            let mut s = Session::connect(&common.conn).await?;
            emit(
                common.json,
                &account::transfer(&mut s, &key, &to, &amount).await?,
            )
        }
        UserCmd::Nep { cmd, common } => run_nep(cmd, common).await,
        UserCmd::Emergency { cmd, common } => {
            let key = common.key.load()?;
            let mut s = Session::connect(&common.conn).await?;
            let out = match cmd {
                EmergencyCmd::Propose { file } => emergency::propose(&mut s, &key, &file).await?,
                EmergencyCmd::Approve { nep } => emergency::approve(&mut s, &key, nep).await?,
            };
            emit(common.json, &out)
        }
        UserCmd::Params { common } => {
            let mut s = Session::connect(&common.conn).await?;
            let stale = s.stale;
            let p = s.call(|c| Box::pin(c.parameters(stale))).await?;
            emit(common.json, &ParametersOut::from(&p))
        }
        UserCmd::Cert { cmd, common } => run_cert(cmd, common).await,
        UserCmd::Demo(args) => crate::demo::run(args).await,
    }
}

async fn run_nep(cmd: NepCmd, common: Common) -> anyhow::Result<()> {
    let json = common.json;
    let mut s = Session::connect(&common.conn).await?;
    match cmd {
        NepCmd::Draft { file } => {
            let key = common.key.load()?;
            emit(json, &nep::draft(&mut s, &key, &file).await?)
        }
        NepCmd::Amend { nep: id, file } => {
            let key = common.key.load()?;
            emit(json, &nep::amend(&mut s, &key, id, &file).await?)
        }
        NepCmd::Submit { nep: id } => {
            let key = common.key.load()?;
            emit(json, &nep::submit(&mut s, &key, id).await?)
        }
        NepCmd::Withdraw { nep: id } => {
            let key = common.key.load()?;
            emit(json, &nep::withdraw(&mut s, &key, id).await?)
        }
        NepCmd::Vote { nep: id, choice } => {
            let key = common.key.load()?;
            let choice = nep::parse_choice(&choice)?;
            emit(json, &nep::vote(&mut s, &key, id, choice).await?)
        }
        NepCmd::Show { nep: id } => emit(json, &nep::show(&mut s, id).await?),
        NepCmd::List {
            stage,
            nep_type,
            after,
            limit,
        } => {
            let list =
                nep::list(&mut s, stage.as_deref(), nep_type.as_deref(), after, limit).await?;
            emit_list(json, &list, |p| p.summary())
        }
        NepCmd::Watch { nep: id, until } => {
            let until = match until {
                Some(u) => Some(
                    Stage::parse(&u)
                        .ok_or_else(|| anyhow::anyhow!("--until {u:?} is not a stage"))?,
                ),
                None => None,
            };
            let last = crate::watch::watch(&mut s, id, until, json).await?;
            if !json {
                println!("{}", last.to_string().trim_end());
            }
            Ok(())
        }
        NepCmd::Receipt {
            nep: id,
            account: who,
            committee,
        } => {
            let who = match who {
                Some(hex) => neuroshard_governance::AccountId::from_hex(hex.trim())
                    .map_err(|e| anyhow::anyhow!("account {hex:?}: {e}"))?,
                None => account_of(&common.key.load()?),
            };
            let r = nep::receipt(&mut s, id, &who, committee.as_deref()).await?;
            emit(json, &r)?;
            if !r.path_verified || (r.certificate.is_some() && !r.certificate_verified) {
                anyhow::bail!("the receipt does not verify");
            }
            Ok(())
        }
    }
}

async fn run_cert(cmd: CertCmd, common: Common) -> anyhow::Result<()> {
    let json = common.json;
    match cmd {
        CertCmd::Get { sequence, nep, out } => {
            let by = match (sequence, nep) {
                (Some(s), None) => api::get_certificate_request::By::Sequence(s),
                (None, Some(n)) => api::get_certificate_request::By::Nep(n),
                _ => anyhow::bail!("give either a sequence number or --nep NEP"),
            };
            let mut s = Session::connect(&common.conn).await?;
            emit(json, &cert::get(&mut s, by, out.as_deref()).await?)
        }
        CertCmd::Verify { file, committee } => {
            let out = cert::verify(&file, &committee)?;
            if json {
                emit(json, &out)
            } else {
                println!("VALID: signed by the committee in {}", committee.display());
                emit(json, &out)
            }
        }
        CertCmd::Follow {
            committee,
            genesis,
            count,
        } => {
            let pinned = cert::read_committee(&committee)?;
            let mut s = Session::connect(&common.conn).await?;
            let start = cert::light_genesis(&mut s, &pinned, genesis.as_deref()).await?;
            let source = start.source;
            let mut node = crate::light_node::LightNode::new(pinned, start)?;
            if !json {
                println!(
                    "light node pinned to {} (genesis parameters {}); following {}",
                    committee.display(),
                    match source {
                        crate::light_node::GenesisSource::Pinned => "pinned",
                        crate::light_node::GenesisSource::Validator =>
                            "from the validator, checked against every certificate",
                    },
                    s.endpoint()
                );
            }
            cert::follow(&mut s, &mut node, count, |out| {
                if json {
                    println!("{}", serde_json::to_string(out)?);
                } else {
                    println!("{}", out.to_string().trim_end());
                }
                Ok(())
            })
            .await?;
            Ok(())
        }
    }
}
