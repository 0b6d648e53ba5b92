//! The scenarios: each a fault schedule around the first NEP's deadline
//! `D` (its vote's deadline in committed time, which on one machine is the
//! harness clock). Every fault is recorded when injected and healed when
//! removed; every schedule ends with everything healed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use neuroshard_node::api_proto as api;

use super::api::Endpoints;
use super::error::RealError;
use super::journal::{now_ms, Journal};
use super::netns::{Netns, Partition};
use super::processes::Validators;
use super::sampler::Watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// No fault: the control run.
    Baseline,
    /// The leader cut off from the other validators from D-1.5 s to D+2.5 s
    /// (clients still reach it, so their commands to it time out).
    LeaderIsolated,
    /// One follower and all clients on the minority side, the leader and
    /// two followers on the majority side, from D-1.5 s to D+2.5 s.
    MajorityMinority,
    /// Two against two: no side has a majority, nothing commits from
    /// D-1.5 s until the heal at D+2.5 s, after the deadline.
    NoMajority,
    /// `kill -9` of the leader right after it applied the closing tick,
    /// while the activation certificate collects shares; restarted 2 s later.
    LeaderKilledSigning,
    /// SIGSTOP of the leader from D-1 s, SIGCONT at D+2 s.
    LeaderPaused,
    /// A follower restarted with its clock behind by more than
    /// `gov.max_clock_skew_ms` (it refuses to sign the certificate) from
    /// D-2.5 s, restarted with a correct clock at D+4 s.
    ClockSkew,
    /// The leader's link delayed and lossy (tc netem) from D-2 s to D+2 s.
    LossyLink,
}

impl Scenario {
    pub fn all() -> Vec<Scenario> {
        Scenario::value_variants().to_vec()
    }

    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Scenarios that need network namespaces (packet filters, qdiscs).
    pub fn needs_network(self) -> bool {
        matches!(
            self,
            Scenario::LeaderIsolated
                | Scenario::MajorityMinority
                | Scenario::NoMajority
                | Scenario::LossyLink
        )
    }
}

/// What a schedule found beyond the history: `findings` break a
/// scenario-specific expectation (they count as violations), `notes` say
/// how the fault met the system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub findings: Vec<String>,
    pub notes: Vec<String>,
    /// The run must end in this term: the heal must not force an election.
    pub stable_term: Option<u64>,
}

/// What a schedule acts on.
pub struct Faults<'a> {
    pub validators: Arc<Mutex<Validators>>,
    pub net: Option<&'a Netns>,
    pub journal: &'a Journal,
    pub watch: &'a Watch,
    pub endpoints: &'a Endpoints,
    /// The first NEP's deadline.
    pub deadline_ms: u64,
    pub max_clock_skew_ms: u64,
}

/// Longest a schedule waits for a leader to act on.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How closely the closing tick is watched for the kill.
pub const CLOSE_POLL: Duration = Duration::from_millis(5);
/// Beyond the skew bound by this much, so the skewed validator refuses.
pub const SKEW_MARGIN_MS: u64 = 15_000;

impl Faults<'_> {
    /// Sleeps until `D + offset_ms`.
    async fn at(&self, offset_ms: i64) {
        let target = self.deadline_ms.saturating_add_signed(offset_ms);
        let now = now_ms();
        if target > now {
            tokio::time::sleep(Duration::from_millis(target - now)).await;
        }
    }

    fn net(&self) -> Result<&Netns, RealError> {
        self.net.ok_or_else(|| {
            RealError::invalid(
                "scenario",
                "needs network namespaces, which are unavailable",
            )
        })
    }

    fn validators(&self) -> std::sync::MutexGuard<'_, Validators> {
        self.validators.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn leader(&self) -> Result<u32, RealError> {
        let start = now_ms();
        loop {
            if let Some(l) = self.watch.leader() {
                return Ok(l);
            }
            if now_ms().saturating_sub(start) > LEADER_WAIT.as_millis() as u64 {
                return Err(RealError::Timeout {
                    what: "a leader to inject the fault on".into(),
                    waited_ms: now_ms().saturating_sub(start),
                    last: self.watch.describe(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn followers(&self, leader: u32) -> Vec<u32> {
        (0..self.validators().len() as u32)
            .filter(|v| *v != leader)
            .collect()
    }

    async fn partition(&self, p: Partition, from: i64, until: i64) -> Result<(), RealError> {
        self.at(from).await;
        let net = self.net()?;
        net.partition(&p)?;
        let targets = p.sides.get(1).cloned().unwrap_or_default();
        let id = self.journal.fault("partition", targets, p.describe());
        self.at(until).await;
        net.heal_partition()?;
        self.journal.heal(id, "partition removed".into());
        Ok(())
    }

    /// Runs `scenario`'s schedule; returns once everything is healed.
    pub async fn run(&self, scenario: Scenario) -> Result<Verdict, RealError> {
        match scenario {
            Scenario::ClockSkew => self.clock_skew().await,
            Scenario::LeaderKilledSigning => self.kill_while_signing().await,
            Scenario::LeaderIsolated => self.leader_isolated().await,
            other => self.plain(other).await.map(|()| Verdict::default()),
        }
    }

    /// The schedules judged by the history alone.
    async fn plain(&self, scenario: Scenario) -> Result<(), RealError> {
        match scenario {
            Scenario::Baseline
            | Scenario::ClockSkew
            | Scenario::LeaderKilledSigning
            | Scenario::LeaderIsolated => Ok(()),
            Scenario::MajorityMinority => {
                self.at(-1_500).await;
                let leader = self.leader().await?;
                let followers = self.followers(leader);
                let minority = followers[followers.len() - 1];
                let majority: Vec<u32> = (0..self.validators().len() as u32)
                    .filter(|v| *v != minority)
                    .collect();
                let p = Partition {
                    sides: vec![majority, vec![minority]],
                    client_side: Some(1),
                };
                self.partition(p, -1_500, 2_500).await
            }
            Scenario::NoMajority => {
                self.at(-1_500).await;
                let leader = self.leader().await?;
                let followers = self.followers(leader);
                let p = Partition {
                    sides: vec![vec![leader, followers[0]], followers[1..].to_vec()],
                    client_side: None,
                };
                self.partition(p, -1_500, 2_500).await
            }
            Scenario::LeaderPaused => {
                self.at(-1_000).await;
                let leader = self.leader().await?;
                self.validators().pause(leader as usize)?;
                let id = self.journal.fault(
                    "pause",
                    vec![leader],
                    format!("SIGSTOP v{leader} (leader)"),
                );
                self.at(2_000).await;
                self.validators().resume(leader as usize)?;
                self.journal.heal(id, format!("SIGCONT v{leader}"));
                Ok(())
            }
            Scenario::LossyLink => {
                self.at(-2_000).await;
                let leader = self.leader().await?;
                let net = self.net()?;
                let detail = net.degrade_link(leader, 120, 40, 15)?;
                let id = self.journal.fault("delay", vec![leader], detail);
                self.at(2_000).await;
                net.restore_link(leader)?;
                self.journal.heal(id, format!("v{leader}'s link restored"));
                Ok(())
            }
        }
    }

    /// The leader cut off from the other validators. A leader alone never
    /// campaigns (it does not know it lost its quorum), so once the
    /// network heals it must simply follow the leader the majority elected
    /// meanwhile: the heal must not cause another election. (It did, until
    /// the peer transport redialled connections a partition had left
    /// stuck: the new leader's heartbeats never reached the old one, which
    /// campaigned and unseated it about 1.7 s after the heal.)
    async fn leader_isolated(&self) -> Result<Verdict, RealError> {
        self.at(-1_500).await;
        let leader = self.leader().await?;
        let p = Partition {
            sides: vec![self.followers(leader), vec![leader]],
            client_side: None,
        };
        self.at(-1_500).await;
        let net = self.net()?;
        net.partition(&p)?;
        let id = self.journal.fault("partition", vec![leader], p.describe());
        self.at(2_500).await;
        let (term, led) = self.watch.top_term(leader);
        net.heal_partition()?;
        self.journal.heal(id, "partition removed".into());
        let mut verdict = Verdict::default();
        if led {
            verdict.stable_term = Some(term);
        } else {
            verdict.notes.push(format!(
                "the majority had no leader in term {term} when the partition healed: the no-election-after-heal check was skipped"
            ));
        }
        Ok(verdict)
    }

    /// A follower restarted with its clock far behind: it must refuse to
    /// sign, so every certificate issued meanwhile is combined from the
    /// other validators' shares.
    async fn clock_skew(&self) -> Result<Verdict, RealError> {
        self.at(-2_500).await;
        let leader = self.leader().await?;
        let target = self.followers(leader)[0];
        let offset = -(i64::try_from(self.max_clock_skew_ms + SKEW_MARGIN_MS).unwrap_or(i64::MAX));
        let from_ms = now_ms();
        {
            let mut v = self.validators();
            v.kill9(target as usize)?;
            v.set_clock_offset(target as usize, offset)?;
            v.spawn(target as usize)?;
        }
        let id = self.journal.fault(
            "clock_skew",
            vec![target],
            format!(
                "v{target} restarted with ticks.clock_offset_ms = {offset} (gov.max_clock_skew_ms = {}): it must refuse to sign",
                self.max_clock_skew_ms
            ),
        );
        self.at(4_000).await;
        // Certificates first seen before the restart below were combined
        // while the clock was skewed.
        let until_ms = now_ms();
        let issued: Vec<(u64, Vec<u32>)> = self
            .watch
            .lock()
            .certificates
            .iter()
            .filter(|(_, s)| (from_ms..until_ms).contains(&s.first_issued_ms))
            .map(|(seq, s)| (*seq, s.signers.clone()))
            .collect();
        {
            let mut v = self.validators();
            v.kill9(target as usize)?;
            v.set_clock_offset(target as usize, 0)?;
            v.spawn(target as usize)?;
        }
        self.journal
            .heal(id, format!("v{target} restarted with a correct clock"));
        let mut verdict = Verdict::default();
        for (seq, signers) in &issued {
            if signers.contains(&target) {
                verdict.findings.push(format!(
                    "certificate {seq} carries a share of v{target}, whose clock was {} ms behind: it signed a decision more than gov.max_clock_skew_ms ahead of its clock",
                    -offset
                ));
            }
        }
        verdict.notes.push(if issued.is_empty() {
            format!("no certificate was issued while v{target} was skewed: the refusal was not exercised")
        } else {
            format!(
                "issued while v{target} was skewed: {}",
                issued
                    .iter()
                    .map(|(seq, s)| format!("#{seq} signed by {s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        Ok(verdict)
    }

    /// Watches the leader from just before D; as soon as it has decided the
    /// first certificate (it applied the closing tick), `kill -9`.
    async fn kill_while_signing(&self) -> Result<Verdict, RealError> {
        self.at(-400).await;
        let leader = self.leader().await?;
        let give_up = self.deadline_ms + 5_000;
        let mut seen = None;
        while now_ms() < give_up {
            let status = self
                .endpoints
                .call(
                    leader as usize,
                    Duration::from_millis(200),
                    |mut c| async move { c.get_status(api::GetStatusRequest {}).await },
                )
                .await;
            if let Ok(s) = status {
                if s.certificates >= 1 {
                    seen = Some(s);
                    break;
                }
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
        self.validators().kill9(leader as usize)?;
        let detail = match &seen {
            Some(s) => format!(
                "kill -9 v{leader} (leader) at applied index {:?}: certificate 1 decided, {} still collecting shares",
                s.applied_index, s.pending_certificates
            ),
            None => format!("kill -9 v{leader} (leader): the closing tick was not seen within 5 s of D"),
        };
        let id = self
            .journal
            .fault("replica_crash", vec![leader], detail.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.validators().spawn(leader as usize)?;
        self.journal
            .heal(id, format!("v{leader} restarted from its data directory"));
        let mut verdict = Verdict::default();
        let signing = seen.as_ref().is_some_and(|s| s.pending_certificates > 0);
        verdict.notes.push(if signing {
            detail
        } else {
            format!("{detail}; the certificate was not caught collecting shares: the kill-while-signing case was not exercised this time")
        });
        Ok(verdict)
    }
}
