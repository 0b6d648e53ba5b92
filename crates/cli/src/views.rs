//! The API's answers as the CLI shows them: one serde struct per answer for
//! `--json` (stable field names, hex for bytes, base units for amounts) and
//! its human rendering.

use std::fmt::{self, Write as _};

use serde::Serialize;

use neuroshard_governance::Receipt;
use neuroshard_node::api_proto as api;
use neuroshard_node::transport::api_convert::{
    nep_type_from_proto, stage_from_proto, value_from_proto,
};

use crate::amount::show;

/// `in 3.2 s`, `in 2 d 4 h`, `5 s ago`.
pub fn relative(ms: i128) -> String {
    let (prefix, suffix, ms) = if ms >= 0 {
        ("in ", "", ms as u128)
    } else {
        ("", " ago", (-ms) as u128)
    };
    let body = if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else if ms < 86_400_000 {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    } else {
        format!("{} d {} h", ms / 86_400_000, (ms % 86_400_000) / 3_600_000)
    };
    format!("{prefix}{body}{suffix}")
}

/// `part / whole` as a percentage with one decimal (`-` for an empty whole).
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

fn stage_name(stage: i32) -> String {
    stage_from_proto(stage).map_or_else(|| "UNKNOWN".to_owned(), |s| s.name().to_owned())
}

fn type_name(t: i32) -> String {
    nep_type_from_proto(t).map_or_else(|| "UNKNOWN".to_owned(), |t| t.name().to_owned())
}

fn value_text(v: &Option<neuroshard_certificate::proto::ParameterValue>) -> String {
    v.as_ref()
        .and_then(value_from_proto)
        .map_or_else(|| "?".to_owned(), |v| v.to_string())
}

fn micro(v: i64) -> String {
    neuroshard_governance::Micro(v).to_string()
}

#[derive(Clone, Debug, Serialize)]
pub struct AccountOut {
    pub account: String,
    pub exists: bool,
    pub balance: u64,
    pub staked: u64,
    pub locked: u64,
    pub next_nonce: u64,
    pub validator: Option<u32>,
    pub deposited: u64,
    pub open_drafts: u32,
    pub max_open_drafts: u32,
}

impl From<&api::Account> for AccountOut {
    fn from(a: &api::Account) -> Self {
        Self {
            account: a.account.clone(),
            exists: a.exists,
            balance: a.balance,
            staked: a.staked,
            locked: a.locked,
            next_nonce: a.next_nonce,
            validator: a.validator,
            deposited: a.deposited,
            open_drafts: a.open_drafts,
            max_open_drafts: a.max_open_drafts,
        }
    }
}

impl fmt::Display for AccountOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "account    {}", self.account)?;
        if !self.exists {
            return writeln!(f, "            (unknown to the committee: no balance yet)");
        }
        writeln!(f, "balance    {}", show(self.balance))?;
        writeln!(
            f,
            "staked     {} ({} locked by open votes)",
            show(self.staked),
            show(self.locked)
        )?;
        writeln!(
            f,
            "deposits   {} locked by {} of at most {} open drafts",
            show(self.deposited),
            self.open_drafts,
            self.max_open_drafts
        )?;
        writeln!(f, "next nonce {}", self.next_nonce)?;
        if let Some(v) = self.validator {
            writeln!(f, "validator  {v}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TallyOut {
    pub nep: u64,
    pub stage: String,
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    pub total_power: u64,
    pub ballots: u64,
    pub quorum_bps: u32,
    pub approval_bps: u32,
    pub quorum_reached: bool,
    pub approved: bool,
    pub closed: bool,
    pub opened_ms: u64,
    pub deadline_ms: u64,
    pub ballots_root: String,
}

impl From<&api::TallyView> for TallyOut {
    fn from(t: &api::TallyView) -> Self {
        let tally = t.tally.unwrap_or_default();
        Self {
            nep: t.nep,
            stage: stage_name(t.stage),
            yes: tally.yes,
            no: tally.no,
            abstain: tally.abstain,
            total_power: tally.total_power,
            ballots: tally.ballots,
            quorum_bps: tally.quorum_bps,
            approval_bps: tally.approval_bps,
            quorum_reached: t.quorum_reached,
            approved: t.approved,
            closed: t.closed,
            opened_ms: t.opened_ms,
            deadline_ms: t.deadline_ms,
            ballots_root: hex::encode(&t.ballots_root),
        }
    }
}

impl TallyOut {
    /// One line: the sums, participation and approval against the thresholds.
    pub fn line(&self) -> String {
        let participating = self.yes + self.no + self.abstain;
        let mark = |b: bool| if b { "reached" } else { "not reached" };
        format!(
            "yes {} · no {} · abstain {} of {} staked ({} ballot{}) — participation {} (quorum {}% {}), yes {} (approval {}% {})",
            show(self.yes),
            show(self.no),
            show(self.abstain),
            show(self.total_power),
            self.ballots,
            if self.ballots == 1 { "" } else { "s" },
            percent(participating, self.total_power),
            self.quorum_bps / 100,
            mark(self.quorum_reached),
            percent(self.yes, self.yes + self.no),
            self.approval_bps / 100,
            mark(self.approved),
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ChangeOut {
    pub key: String,
    pub expected_old: String,
    pub new: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NextOut {
    pub to: String,
    pub at_ms: u64,
    pub since_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProposalOut {
    pub nep: u64,
    pub title: String,
    pub nep_type: String,
    pub stage: String,
    pub author: String,
    pub content_hash: String,
    pub parameter_changes: Vec<ChangeOut>,
    pub training_efficiency_multiplier: String,
    pub training_reward_multiplier: String,
    pub net_earnings_change_percent: String,
    pub grace_period_days: u32,
    pub backward_compatible: bool,
    pub approvals: Vec<u32>,
    pub approvals_needed: u32,
    pub activation_ms: Option<u64>,
    pub version_after: Option<String>,
    pub rejection: Option<String>,
    pub certificates: Vec<u64>,
    pub vote: Option<TallyOut>,
    pub next: Option<NextOut>,
    /// Committed time of the answer, for relative times.
    pub committed_ms: u64,
}

impl From<&api::Proposal> for ProposalOut {
    fn from(p: &api::Proposal) -> Self {
        let content = p.content.clone().unwrap_or_default();
        let impact = content.economic_impact.clone().unwrap_or_default();
        let upgrade = content.upgrade_path.unwrap_or_default();
        Self {
            nep: p.nep,
            title: content.title.clone(),
            nep_type: type_name(content.nep_type),
            stage: stage_name(p.stage),
            author: p.author.clone(),
            content_hash: hex::encode(&p.content_hash),
            parameter_changes: content
                .parameter_changes
                .iter()
                .map(|c| ChangeOut {
                    key: c.key.clone(),
                    expected_old: value_text(&c.old_value),
                    new: value_text(&c.new_value),
                })
                .collect(),
            training_efficiency_multiplier: micro(impact.training_efficiency_multiplier_micro),
            training_reward_multiplier: micro(impact.training_reward_multiplier_micro),
            net_earnings_change_percent: micro(impact.net_earnings_change_percent_micro),
            grace_period_days: upgrade.grace_period_days,
            backward_compatible: upgrade.backward_compatible,
            approvals: p.approvals.clone(),
            approvals_needed: p.approvals_needed,
            activation_ms: p.activation_ms,
            version_after: p.version_after.map(|v| format!("{}.{}", v.major, v.minor)),
            rejection: (!p.rejection.is_empty()).then(|| p.rejection.clone()),
            certificates: p.certificates.clone(),
            vote: p.vote.as_ref().map(TallyOut::from),
            next: p.next.as_ref().map(|n| NextOut {
                to: n.to.clone(),
                at_ms: n.at_ms,
                since_ms: n.since_ms,
            }),
            committed_ms: p.read_point.map_or(0, |r| r.committed_ms),
        }
    }
}

impl ProposalOut {
    /// One line for lists.
    pub fn summary(&self) -> String {
        format!(
            "NEP-{:<4} {:<6} {:<18} {}",
            self.nep, self.nep_type, self.stage, self.title
        )
    }
}

impl fmt::Display for ProposalOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "NEP-{}  {}", self.nep, self.title)?;
        writeln!(f, "  type      {}", self.nep_type)?;
        writeln!(f, "  stage     {}", self.stage)?;
        writeln!(f, "  author    {}", self.author)?;
        writeln!(f, "  content   sha256:{}", self.content_hash)?;
        for c in &self.parameter_changes {
            writeln!(f, "  change    {}: {} -> {}", c.key, c.expected_old, c.new)?;
        }
        writeln!(
            f,
            "  impact    training efficiency x{}, reward per batch x{}, net earnings {}%",
            self.training_efficiency_multiplier,
            self.training_reward_multiplier,
            self.net_earnings_change_percent
        )?;
        writeln!(
            f,
            "  upgrade   grace {} days, {}",
            self.grace_period_days,
            if self.backward_compatible {
                "backward compatible"
            } else {
                "NOT backward compatible (major version)"
            }
        )?;
        if self.nep_type == "EMERG" {
            writeln!(
                f,
                "  approvals {} of {} validators {:?}",
                self.approvals.len(),
                self.approvals_needed,
                self.approvals
            )?;
        }
        if let Some(v) = &self.vote {
            writeln!(f, "  tally     {}", v.line())?;
        }
        if let Some(n) = &self.next {
            writeln!(
                f,
                "  next      {} {}",
                n.to,
                relative(n.at_ms as i128 - self.committed_ms as i128)
            )?;
        }
        if let Some(v) = &self.version_after {
            writeln!(f, "  version   {v} once active")?;
        }
        if let Some(r) = &self.rejection {
            writeln!(f, "  rejected  {r}")?;
        }
        if !self.certificates.is_empty() {
            let list = self.certificates.iter().fold(String::new(), |mut s, c| {
                let _ = write!(s, "{}#{c}", if s.is_empty() { "" } else { ", " });
                s
            });
            writeln!(f, "  certs     {list}")?;
        }
        Ok(())
    }
}

/// What a submitted command did.
#[derive(Clone, Debug, Serialize)]
pub struct SubmitOut {
    pub log_index: u64,
    pub committed_ms: u64,
    pub effect: String,
    pub nep: Option<u64>,
    pub receipt: serde_json::Value,
}

impl From<&api::SubmitResponse> for SubmitOut {
    fn from(r: &api::SubmitResponse) -> Self {
        Self {
            log_index: r.log_index,
            committed_ms: r.committed_ms,
            effect: r.effect.clone(),
            nep: r.nep,
            receipt: serde_json::from_str(&r.receipt_json).unwrap_or_default(),
        }
    }
}

impl fmt::Display for SubmitOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use neuroshard_governance::Effect as E;
        let receipt: Option<Receipt> = serde_json::from_value(self.receipt.clone()).ok();
        let text = match receipt.map(|r| r.effect) {
            Some(E::Transferred {
                to,
                amount,
                fee_burned,
                ..
            }) => {
                if fee_burned.0 > 0 {
                    format!(
                        "transferred {} to {to} (a new account: creation fee of {} burned)",
                        show(amount.0),
                        show(fee_burned.0)
                    )
                } else {
                    format!("transferred {} to {to}", show(amount.0))
                }
            }
            Some(E::Staked { amount, staked, .. }) => {
                format!("staked {} (now {} staked)", show(amount.0), show(staked.0))
            }
            Some(E::Unstaked { amount, staked, .. }) => {
                format!(
                    "unstaked {} (now {} staked)",
                    show(amount.0),
                    show(staked.0)
                )
            }
            Some(E::DraftCreated {
                nep,
                content_hash,
                deposit,
            }) => {
                format!(
                    "{nep} created as DRAFT (content sha256:{}); deposit of {} locked until its vote closes",
                    hex::encode(content_hash),
                    show(deposit.0)
                )
            }
            Some(E::DraftAmended {
                nep,
                content_hash,
                deposit,
            }) => {
                format!(
                    "{nep} amended (content sha256:{}); deposit now {}",
                    hex::encode(content_hash),
                    show(deposit.0)
                )
            }
            Some(E::Submitted {
                nep, fee_burned, ..
            }) => format!(
                "{nep} submitted: now in REVIEW, fee of {} burned",
                show(fee_burned.0)
            ),
            Some(E::Withdrawn {
                nep,
                deposit_burned,
            }) => format!(
                "{nep} withdrawn; its deposit of {} is burned",
                show(deposit_burned.0)
            ),
            Some(E::Voted {
                nep,
                choice,
                power,
                replaced,
            }) => {
                let choice = format!("{choice:?}").to_lowercase();
                match replaced {
                    Some(old) => format!(
                        "vote on {nep} changed from {} to {choice} with {}",
                        format!("{old:?}").to_lowercase(),
                        show(power.0)
                    ),
                    None => format!("voted {choice} on {nep} with {}", show(power.0)),
                }
            }
            Some(E::EmergencySubmitted { nep, .. }) => {
                format!("emergency {nep} submitted: awaiting committee approval")
            }
            Some(E::EmergencyApproved {
                nep,
                validator,
                approvals,
                threshold,
            }) => format!(
                "validator {validator} approved {nep} ({approvals} of {threshold} approvals)"
            ),
            _ => self.effect.clone(),
        };
        write!(f, "{text} (log index {})", self.log_index)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ParameterOut {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ParametersOut {
    pub version: String,
    pub height: u64,
    pub parameters_hash: String,
    pub parameters: Vec<ParameterOut>,
}

impl From<&api::Parameters> for ParametersOut {
    fn from(p: &api::Parameters) -> Self {
        Self {
            version: p
                .version
                .map_or_else(String::new, |v| format!("{}.{}", v.major, v.minor)),
            height: p.height,
            parameters_hash: hex::encode(&p.parameters_hash),
            parameters: p
                .parameters
                .iter()
                .map(|x| ParameterOut {
                    key: x.key.clone(),
                    value: value_text(&x.value),
                })
                .collect(),
        }
    }
}

impl fmt::Display for ParametersOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "protocol version {} at height {} (parameters sha256:{})",
            self.version, self.height, self.parameters_hash
        )?;
        for p in &self.parameters {
            writeln!(f, "  {:<32} {}", p.key, p.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_percentages_read_naturally() {
        assert_eq!(relative(3_200), "in 3.2 s");
        assert_eq!(relative(-5_000), "5.0 s ago");
        assert_eq!(relative(2 * 86_400_000 + 4 * 3_600_000), "in 2 d 4 h");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "-");
    }
}
