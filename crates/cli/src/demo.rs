//! `neuroshard demo`: the whole system on one machine in well under two
//! minutes. A genesis ceremony for 4 validators with a short governance
//! day, the validators as real child processes on loopback, stakers funded
//! from the treasury, the multi-token-prediction NEP taken from DRAFT to
//! ACTIVE (votes from several stakers, one re-vote), an emergency NEP
//! approved by the committee whose ratification fails (REVOCATION), every
//! certificate verified by a light node that pinned only the committee
//! info, and a timeline of it all. Every step goes through the same library
//! functions the CLI commands run.
//!
//! Output directory: `committee/` (keygen, node configs, data, node.log),
//! `accounts/` (staker keys), `neps/` (the proposal files),
//! `committee.json`, `certificates/<seq>.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use ed25519_dalek::SigningKey;

use neuroshard_governance::{NepId, Stage, VoteChoice};

use crate::amount::show;
use crate::cert::{follow, read_committee};
use crate::cluster::LocalCluster;
use crate::keyfile::{account_of, create_key_file, read_key_file};
use crate::keygen::{self, KeygenOptions};
use crate::light_node::{LightGenesis, LightNode};
use crate::session::Session;
use crate::views::{ProposalOut, TallyOut};
use crate::{account, emergency, nep};

/// The example NEP the demo takes through its lifecycle.
pub const EXAMPLE_NEP: &str = include_str!("../../../examples/neps/multi-token-prediction.toml");
/// The emergency NEP whose ratification fails.
pub const EMERGENCY_NEP: &str = include_str!("../../../examples/neps/emergency-message-cap.toml");

pub const VALIDATORS: u32 = 4;
/// How often the demo looks at the committee.
pub const POLL: Duration = Duration::from_millis(100);
/// Longest the committee may take to elect its first leader.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack on top of the governance time the scenario needs.
pub const SLACK: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Directory for the committee, keys, certificates and logs (default: a
    /// fresh temporary directory, printed).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Length of one governance day in ms (the NEP's 7 + 7 + 14 days); at
    /// least `gov.day_ms`'s floor of 1 000.
    #[arg(long, default_value_t = 1_000)]
    pub day_ms: u64,
    /// First of the 8 loopback ports (default: a free range is searched).
    #[arg(long)]
    pub base_port: Option<u16>,
}

/// A range of `count` consecutive free loopback ports.
fn free_base_port(count: u16) -> anyhow::Result<u16> {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
    let mut candidate = 20_000 + (seed.wrapping_mul(2_654_435_761) % 30_000) as u16;
    for _ in 0..200 {
        if (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", candidate + i)).is_ok()) {
            return Ok(candidate);
        }
        candidate = 20_000 + (candidate - 20_000 + 97 * count) % 30_000;
    }
    anyhow::bail!("no {count} consecutive free loopback ports found; pass --base-port")
}

fn prepare_out(out: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match out {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "neuroshard-demo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        )),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!("{} is not empty; choose a new directory", dir.display());
    }
    for sub in ["accounts", "neps", "certificates"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(dir)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let min_day_ms = neuroshard_governance::params::MIN_DAY_MS as u64;
    if args.day_ms < min_day_ms {
        anyhow::bail!(
            "--day-ms {}: at least {min_day_ms} ms (the floor of gov.day_ms), so votes fit in a voting period",
            args.day_ms
        );
    }
    let out = prepare_out(args.out)?;
    let base_port = match args.base_port {
        Some(p) => p,
        None => free_base_port(2 * VALIDATORS as u16)?,
    };
    println!("NeuroShard governance demo: {VALIDATORS} validators on loopback, one governance day = {} ms", args.day_ms);
    println!("output directory: {}\n", out.display());
    let start = Instant::now();
    let mut opts = KeygenOptions::new(VALIDATORS, out.join("committee"));
    opts.chain_id = "neuroshard-demo".to_owned();
    opts.day_ms = Some(args.day_ms);
    opts.base_port = base_port;
    // Ticks well below a governance day, so deadlines are met closely.
    // (At most 500 ms, the bound node.toml accepts.)
    opts.ticks.tick_interval_ms = (args.day_ms / 10).clamp(20, 500);
    let ceremony = keygen::run(&opts)?;
    let binary = std::env::current_exe()?;
    let mut cluster = LocalCluster::start(&binary, ceremony)?;
    let outcome = tokio::select! {
        r = scenario(&mut cluster, &out, args.day_ms, start) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // Graceful stop (SIGTERM, then SIGKILL after a grace period), also after
    // an error or Ctrl-C; dropping the cluster would SIGKILL them.
    let forced = tokio::task::block_in_place(|| cluster.stop_all());
    println!(
        "\nstopped the {VALIDATORS} validators (logs: {}/committee/validator-*/node.log)",
        out.display()
    );
    if !forced.is_empty() {
        println!("validators {forced:?} did not stop on SIGTERM and were killed");
    }
    if let Err(e) = &outcome {
        println!(
            "demo failed after {:.1} s: {e:#}",
            start.elapsed().as_secs_f64()
        );
    }
    outcome
}

/// Prints timeline lines with wall-clock and governance time.
struct Timeline {
    start: Instant,
    genesis_ms: u64,
    day_ms: u64,
    committed_ms: u64,
}

impl Timeline {
    fn say(&self, text: impl AsRef<str>) {
        let day = self.committed_ms.saturating_sub(self.genesis_ms) as f64 / self.day_ms as f64;
        let mut lines = text.as_ref().lines();
        if let Some(first) = lines.next() {
            println!(
                "[{:>6.1} s | day {:>5.1}] {first}",
                self.start.elapsed().as_secs_f64(),
                day
            );
        }
        for l in lines {
            println!("{:>25}{l}", "");
        }
    }

    fn day_of(&self, ms: u64) -> f64 {
        ms.saturating_sub(self.genesis_ms) as f64 / self.day_ms as f64
    }
}

/// What the demo watches between its own actions.
struct Watcher {
    stages: BTreeMap<u64, Stage>,
    next_certificate: u64,
    latencies: Vec<(u64, u64, u64)>,
}

impl Watcher {
    /// Reads every NEP and certificate once; prints what changed.
    async fn poll(
        &mut self,
        s: &mut Session,
        t: &mut Timeline,
    ) -> anyhow::Result<BTreeMap<u64, ProposalOut>> {
        let list = nep::list(s, None, None, None, 100).await?;
        let mut out = BTreeMap::new();
        for p in list {
            t.committed_ms = t.committed_ms.max(p.committed_ms);
            let stage = Stage::parse(&p.stage).unwrap_or(Stage::Draft);
            if self.stages.get(&p.nep) != Some(&stage) {
                self.stages.insert(p.nep, stage);
                t.say(describe(&p, stage, t));
            }
            out.insert(p.nep, p);
        }
        let from = self.next_certificate;
        let certs = s
            .call(|c| Box::pin(c.certificates(from, 16, false)))
            .await?;
        for c in certs.certificates {
            if !c.issued || c.sequence != self.next_certificate {
                break;
            }
            self.next_certificate += 1;
            let kind = match neuroshard_certificate::proto::CertificateKind::try_from(c.kind) {
                Ok(k) => format!("{k:?}").to_uppercase(),
                Err(_) => "?".into(),
            };
            let node = certs.read_point.map_or(0, |r| r.node_id);
            let latency = match c.observed_latency_ms {
                Some(ms) => {
                    self.latencies.push((c.sequence, ms, node));
                    format!(
                        "{ms} ms after the deciding entry was applied (as validator {node} saw it)"
                    )
                }
                None => "(latency not observed)".to_owned(),
            };
            t.say(format!(
                "certificate #{} {kind} for NEP-{} issued {latency}, combined from the shares of validators {:?}",
                c.sequence, c.nep, c.signers
            ));
        }
        Ok(out)
    }
}

fn describe(p: &ProposalOut, stage: Stage, t: &Timeline) -> String {
    let name = format!("NEP-{} ({})", p.nep, p.nep_type);
    let until = |what: &str| {
        p.next
            .as_ref()
            .map(|n| format!("; {what} at day {:.1}", t.day_of(n.at_ms)))
            .unwrap_or_default()
    };
    match stage {
        Stage::Draft => format!("{name} DRAFT \"{}\"", p.title),
        Stage::Review => format!("{name} REVIEW: content frozen{}", until("voting opens")),
        Stage::Voting => format!(
            "{name} VOTING: voting power snapshot of {} staked{}",
            p.vote
                .as_ref()
                .map_or_else(String::new, |v| show(v.total_power)),
            until("the vote closes")
        ),
        Stage::AwaitingApproval => format!(
            "{name} AWAITING_APPROVAL: needs {} validator approvals{}",
            p.approvals_needed,
            until("the window closes")
        ),
        Stage::Scheduled => {
            let mut text = format!("{name} SCHEDULED{}", until("it activates"));
            if let Some(v) = &p.vote {
                text.push_str(&format!("\n  tally: {}", v.line()));
            } else {
                text.push_str(&format!("\n  approved by validators {:?}", p.approvals));
            }
            text
        }
        Stage::Active => {
            let changes: Vec<String> = p
                .parameter_changes
                .iter()
                .map(|c| format!("{} = {}", c.key, c.new))
                .collect();
            let mut text = format!(
                "{name} ACTIVE: {}; protocol {}",
                changes.join(", "),
                p.version_after.clone().unwrap_or_default()
            );
            if p.nep_type == "EMERG" {
                text.push_str(&until("its ratification vote closes"));
            }
            text
        }
        Stage::Revoked => format!(
            "{name} REVOKED: ratification failed ({}); {} restored",
            p.vote
                .as_ref()
                .map_or_else(|| "no vote".into(), TallyOut::line),
            p.parameter_changes
                .iter()
                .map(|c| format!("{} = {}", c.key, c.expected_old))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!(
            "{name} {}{}",
            other.name(),
            p.rejection
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    }
}

struct Staker {
    name: &'static str,
    key: SigningKey,
    fund: &'static str,
    stake: &'static str,
}

async fn wait_until(
    s: &mut Session,
    t: &mut Timeline,
    w: &mut Watcher,
    what: &str,
    timeout: Duration,
    done: impl Fn(&BTreeMap<u64, ProposalOut>, &Watcher) -> bool,
) -> anyhow::Result<BTreeMap<u64, ProposalOut>> {
    let deadline = Instant::now() + timeout;
    loop {
        let neps = w.poll(s, t).await?;
        if done(&neps, w) {
            return Ok(neps);
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn stage_of(neps: &BTreeMap<u64, ProposalOut>, nep: NepId) -> Option<Stage> {
    neps.get(&nep.0).and_then(|p| Stage::parse(&p.stage))
}

async fn scenario(
    cluster: &mut LocalCluster,
    out: &Path,
    day_ms: u64,
    start: Instant,
) -> anyhow::Result<()> {
    let ceremony = cluster.ceremony.clone();
    let dir = &ceremony.dir;
    let mut t = Timeline {
        start,
        genesis_ms: ceremony.genesis.genesis_time_ms,
        day_ms,
        committed_ms: ceremony.genesis.genesis_time_ms,
    };
    let info = &ceremony.genesis.committee.info;
    t.say(format!(
        "keygen: chain {}, {} validators, certificates need t+1 = {} BLS shares (group key {}…)",
        info.chain_id,
        info.n,
        info.t + 1,
        &hex::encode(info.group_public_key)[..16]
    ));
    let (leader, term) = cluster.wait_for_leader(STARTUP_TIMEOUT).await?;
    t.say(format!(
        "{VALIDATORS} validator processes up; validator {leader} leads (term {term}); API endpoints {}",
        ceremony.api_endpoints.join(", ")
    ));
    std::fs::copy(dir.join("committee.json"), out.join("committee.json"))?;

    let mut s = Session::new(ceremony.api_endpoints.clone(), dir.join("ca.pem"));
    let treasury = read_key_file(
        ceremony
            .treasury_key
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("keygen wrote no treasury key"))?,
    )?;
    let validator_key = |i: u32| read_key_file(&dir.join(format!("validator-{i}/identity.key")));

    // Stakers: keys in files, funded by the treasury, then staking.
    let mut stakers = Vec::new();
    for (name, fund, stake) in [
        ("alice", "1000", "500"),
        ("bob", "5000", "4000"),
        ("carol", "3000", "2000"),
        ("dave", "2000", "1500"),
    ] {
        let (key, _) = create_key_file(&out.join("accounts").join(format!("{name}.key")))?;
        stakers.push(Staker {
            name,
            key,
            fund,
            stake,
        });
    }
    for st in &stakers {
        account::transfer(&mut s, &treasury, &account_of(&st.key).to_hex(), st.fund).await?;
        account::stake(&mut s, &st.key, st.stake).await?;
    }
    t.say(format!(
        "treasury funded {}; they staked {}",
        stakers
            .iter()
            .map(|st| format!("{} {} NEURO", st.name, st.fund))
            .collect::<Vec<_>>()
            .join(", "),
        stakers
            .iter()
            .map(|st| format!("{} {}", st.name, st.stake))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let by_name = |name: &str| -> &Staker {
        stakers
            .iter()
            .find(|st| st.name == name)
            .expect("staker names are fixed above")
    };

    // The normal NEP: draft and submit.
    let nep_file = out.join("neps/multi-token-prediction.toml");
    std::fs::write(&nep_file, EXAMPLE_NEP)?;
    let emerg_file = out.join("neps/emergency-message-cap.toml");
    std::fs::write(&emerg_file, EMERGENCY_NEP)?;
    let alice = &by_name("alice").key;
    let drafted = nep::draft(&mut s, alice, &nep_file).await?;
    let nep1 = NepId(
        drafted
            .nep
            .ok_or_else(|| anyhow::anyhow!("draft receipt names no NEP"))?,
    );
    t.say(format!(
        "alice: neuroshard nep draft {} -> {drafted}",
        nep_file.display()
    ));
    let mut w = Watcher {
        stages: BTreeMap::new(),
        next_certificate: 1,
        latencies: Vec::new(),
    };
    w.poll(&mut s, &mut t).await?;
    let submitted = nep::submit(&mut s, alice, nep1).await?;
    t.say(format!(
        "alice: neuroshard nep submit {nep1} -> {submitted}"
    ));

    // The emergency NEP, while NEP-1 is in review.
    let proposed = emergency::propose(&mut s, &validator_key(0)?, &emerg_file).await?;
    let nep2 = NepId(
        proposed
            .nep
            .ok_or_else(|| anyhow::anyhow!("emergency receipt names no NEP"))?,
    );
    t.say(format!(
        "validator 0: neuroshard emergency propose -> {proposed}"
    ));
    w.poll(&mut s, &mut t).await?;
    // The approval window is one governance day: the three validators
    // approve at the same time, each through its own connection.
    let approvals = (0..3u32).map(|v| {
        let endpoints = ceremony.api_endpoints.clone();
        let ca = dir.join("ca.pem");
        let key = validator_key(v);
        async move {
            let mut own = Session::new(endpoints, ca);
            let approved = emergency::approve(&mut own, &key?, nep2).await?;
            anyhow::Ok((v, approved))
        }
    });
    for result in futures::future::join_all(approvals).await {
        let (v, approved) = result?;
        t.say(format!(
            "validator {v}: neuroshard emergency approve {nep2} -> {approved}"
        ));
    }

    // Votes on NEP-1 once it opens; carol changes her mind.
    let days = |d: u64| Duration::from_millis(d * day_ms);
    wait_until(
        &mut s,
        &mut t,
        &mut w,
        "NEP-1 voting",
        days(7) + SLACK,
        |n, _| stage_of(n, nep1) == Some(Stage::Voting),
    )
    .await?;
    for (name, choice) in [
        ("bob", VoteChoice::Yes),
        ("carol", VoteChoice::Yes),
        ("dave", VoteChoice::Abstain),
        ("alice", VoteChoice::Yes),
        ("carol", VoteChoice::No),
    ] {
        let r = nep::vote(&mut s, &by_name(name).key, nep1, choice).await?;
        t.say(format!(
            "{name}: neuroshard nep vote {nep1} {} -> {r}",
            format!("{choice:?}").to_lowercase()
        ));
    }
    let tally = s.call(|c| Box::pin(c.tally(nep1.0, false))).await?;
    t.say(format!(
        "live tally of {nep1}: {}",
        TallyOut::from(&tally).line()
    ));

    // Until NEP-1 is ACTIVE and the emergency's ratification has failed.
    wait_until(
        &mut s,
        &mut t,
        &mut w,
        "NEP-1 ACTIVE and NEP-2 REVOKED",
        days(7 + 14) + SLACK,
        |n, w| {
            stage_of(n, nep1) == Some(Stage::Active)
                && stage_of(n, nep2) == Some(Stage::Revoked)
                && w.next_certificate > 3
        },
    )
    .await?;

    // Certificates to files.
    let certs = s.call(|c| Box::pin(c.certificates(1, 100, false))).await?;
    for c in &certs.certificates {
        let path = out
            .join("certificates")
            .join(format!("{}.json", c.sequence));
        std::fs::write(&path, &c.envelope_json)?;
    }
    t.say(format!(
        "wrote {} certificates to {}/certificates/<seq>.json and the committee info to {}/committee.json",
        certs.certificates.len(),
        out.display(),
        out.display()
    ));

    // A light node that pinned committee.json and genesis.toml verifies the
    // whole chain, streamed from the last validator.
    let pinned = read_committee(&out.join("committee.json"))?;
    let genesis = LightGenesis::from_genesis(&ceremony.genesis, &pinned)?;
    let mut light = LightNode::new(pinned, genesis)?;
    let last = ceremony.api_endpoints.len() - 1;
    let mut from_last = Session::new(
        vec![ceremony.api_endpoints[last].clone()],
        dir.join("ca.pem"),
    );
    let count = certs.certificates.len() as u64;
    let mut lines = Vec::new();
    follow(&mut from_last, &mut light, Some(count), |f| {
        let changes: Vec<String> = f
            .certificate
            .changes
            .iter()
            .map(|c| format!("{}: {} -> {}", c.key, c.old, c.new))
            .collect();
        lines.push(format!(
            "  #{} {} NEP-{} verified (signature, chain, committee, sequence, link, parameters hash): {}, height {}, protocol {} -> {}",
            f.certificate.sequence,
            f.certificate.kind,
            f.certificate.nep,
            changes.join(", "),
            f.certificate.activation_height,
            f.certificate.version_before,
            f.certificate.version_after
        ));
        Ok(())
    })
    .await?;
    let active = light.active_at(u64::MAX);
    t.say(format!(
        "light node (pinned committee.json, streaming from validator {last}) verified {count} certificates:\n{}\n  active now: protocol {}; changed from genesis: {}",
        lines.join("\n"),
        active.version,
        active
            .changed
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // Carol proves her (changed) vote was counted as cast.
    let carol = account_of(&by_name("carol").key);
    let receipt = nep::receipt(&mut s, nep1, &carol, Some(&out.join("committee.json"))).await?;
    if !receipt.path_verified || !receipt.certificate_verified {
        anyhow::bail!("carol's vote receipt does not verify: {receipt:?}");
    }
    t.say(format!(
        "carol: neuroshard nep receipt {nep1} -> ballot {} with {} is leaf {} of {} under ballots root {}…, carried by certificate #{}: counted as cast",
        receipt.choice,
        show(receipt.power),
        receipt.leaf_index,
        receipt.tree_size,
        &receipt.ballots_root[..16],
        receipt.certificate.unwrap_or(0)
    ));

    let final_neps = w.poll(&mut s, &mut t).await?;
    summary(&final_neps, &w, out, start);
    Ok(())
}

fn summary(neps: &BTreeMap<u64, ProposalOut>, w: &Watcher, out: &Path, start: Instant) {
    println!("\nSummary after {:.1} s", start.elapsed().as_secs_f64());
    for p in neps.values() {
        println!(
            "  NEP-{} {:<5} {:<9} {}",
            p.nep, p.nep_type, p.stage, p.title
        );
        if let Some(v) = &p.vote {
            println!("      tally: {}", v.line());
        }
    }
    if !w.latencies.is_empty() {
        let ms: Vec<u64> = w.latencies.iter().map(|(_, ms, _)| *ms).collect();
        println!(
            "  certificate latency (deciding entry applied -> CertificateIssued applied): {} (min {} ms, max {} ms)",
            w.latencies
                .iter()
                .map(|(seq, ms, node)| format!("#{seq} {ms} ms @v{node}"))
                .collect::<Vec<_>>()
                .join(", "),
            ms.iter().min().copied().unwrap_or(0),
            ms.iter().max().copied().unwrap_or(0)
        );
    }
    println!(
        "  files: {0}/committee.json, {0}/certificates/, {0}/accounts/, {0}/committee/",
        out.display()
    );
    println!(
        "  check a certificate yourself: neuroshard cert verify {}/certificates/1.json --committee {}/committee.json",
        out.display(),
        out.display()
    );
}
