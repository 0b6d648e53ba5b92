//! `neuroshard nep watch NEP`: follows a NEP live. Every stage change is
//! printed as it happens (one JSON object per line with `--json`); between
//! changes a progress bar on the terminal runs from the start of the current
//! stage to the time it ends, with the live tally while a vote is open.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use neuroshard_governance::{NepId, Stage};
use neuroshard_node::transport::api_convert::stage_from_proto;

use crate::nep::proposal;
use crate::session::Session;
use crate::views::{relative, ProposalOut, TallyOut};

/// How often the NEP is read again.
pub const WATCH_POLL: Duration = Duration::from_millis(250);

#[derive(Serialize)]
struct StageEvent<'a> {
    nep: u64,
    stage: &'a str,
    committed_ms: u64,
    next: Option<&'a crate::views::NextOut>,
    tally: Option<&'a TallyOut>,
    certificates: &'a [u64],
}

fn bar_for(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len.max(1));
    let style = ProgressStyle::with_template("{msg}\n  [{bar:50.cyan/blue}] {percent:>3}%")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Watches `nep` until it reaches `until` or a final stage; returns the
/// last view.
pub async fn watch(
    session: &mut Session,
    nep: NepId,
    until: Option<Stage>,
    json: bool,
) -> anyhow::Result<ProposalOut> {
    let mut last: Option<Stage> = None;
    let mut bar: Option<ProgressBar> = None;
    loop {
        let p = proposal(session, nep).await?;
        let out = ProposalOut::from(&p);
        let stage = stage_from_proto(p.stage)
            .ok_or_else(|| anyhow::anyhow!("the validator reports an unknown stage {}", p.stage))?;
        let emergency = out.nep_type == "EMERG";
        if last != Some(stage) {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if json {
                let event = StageEvent {
                    nep: out.nep,
                    stage: &out.stage,
                    committed_ms: out.committed_ms,
                    next: out.next.as_ref(),
                    tally: out.vote.as_ref(),
                    certificates: &out.certificates,
                };
                println!("{}", serde_json::to_string(&event)?);
            } else {
                let mut line = format!("NEP-{} is {}", out.nep, out.stage);
                if let Some(n) = &out.next {
                    line.push_str(&format!(
                        "; next: {} {}",
                        n.to,
                        relative(n.at_ms as i128 - out.committed_ms as i128)
                    ));
                }
                if let Some(r) = &out.rejection {
                    line.push_str(&format!(" ({r})"));
                }
                println!("{line}");
                let decided = matches!(
                    stage,
                    Stage::Scheduled | Stage::Rejected | Stage::Ratified | Stage::Revoked
                );
                if let Some(t) = out.vote.as_ref().filter(|_| decided) {
                    println!("  final tally: {}", t.line());
                }
                if !out.certificates.is_empty() {
                    println!("  certificates: {:?}", out.certificates);
                }
            }
            last = Some(stage);
        }
        if until == Some(stage) || stage.is_final(emergency) {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            return Ok(out);
        }
        if !json {
            match &out.next {
                Some(n) => {
                    let len = n.at_ms.saturating_sub(n.since_ms);
                    let b = bar.get_or_insert_with(|| bar_for(len));
                    b.set_length(len.max(1));
                    b.set_position(out.committed_ms.saturating_sub(n.since_ms).min(len));
                    let mut msg = format!(
                        "  {} -> {} {}",
                        out.stage,
                        n.to,
                        relative(n.at_ms as i128 - out.committed_ms as i128)
                    );
                    if let Some(t) = out.vote.as_ref().filter(|t| !t.closed) {
                        msg.push_str(&format!("\n  live tally: {}", t.line()));
                    }
                    b.set_message(msg);
                }
                None => {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                }
            }
        }
        tokio::time::sleep(WATCH_POLL).await;
    }
}
