//! What the fuzz targets share: a deterministic chain in interesting
//! stages (built once per process from the governance testkit's fixed
//! keys), the committees of the committed certificate vectors, and the
//! generators of NEP content and signed commands from fuzz input.
//!
//! Nothing here is used outside `fuzz/` (the keys are the testkit's fixed
//! test keys).

use std::sync::OnceLock;

use arbitrary::{Result as ArbResult, Unstructured};
use ed25519_dalek::SigningKey;

use neuroshard_certificate::scheme::{DealtKeys, SchemeId};
use neuroshard_certificate::{CommitteeInfo, Envelope, ShareIndex};
use neuroshard_governance::certificate::CertificateShare;
use neuroshard_governance::params::{ParamKind, SCHEMA};
use neuroshard_governance::testkit::{self, TestChain, TestConfig};
use neuroshard_governance::{
    Command, EconomicImpact, Entry, GovernanceState, IssuedCertificate, Micro, NepContent, NepId,
    NepType, ParamValue, ParameterChange, PendingCertificate, UpgradePath, VoteChoice, NEURO,
};

/// Test users with genesis balance and stake (`TestConfig::default`).
pub const USERS: usize = 4;
/// Validators of the test committee.
pub const VALIDATORS: u32 = 4;

/// One chain, kept at several points of a NEP's life.
pub struct Fixture {
    pub genesis: neuroshard_governance::Genesis,
    pub dealt: DealtKeys,
    pub chain_id: String,
    /// The state at genesis.
    pub fresh: GovernanceState,
    /// NEP 1 SCHEDULED with its activation certificate pending (sequence 1),
    /// NEP 2 in VOTING with ballots, NEP 3 a DRAFT, NEP 4 in REVIEW.
    pub pending: GovernanceState,
    /// The certificate awaited by `pending`.
    pub pending_certificate: PendingCertificate,
    /// `pending_certificate` issued with t+1 honest shares.
    pub issued: IssuedCertificate,
    /// `pending` after the certificate is recorded, NEP 1 ACTIVE, NEP 2
    /// decided, an emergency NEP submitted.
    pub certified: GovernanceState,
}

impl Fixture {
    /// The next log index after `state`'s last applied one.
    pub fn next_index(state: &GovernanceState) -> u64 {
        state.last_applied_index().map_or(1, |i| i + 1)
    }
}

pub fn impact() -> EconomicImpact {
    EconomicImpact {
        training_efficiency_multiplier: Micro::ONE,
        training_reward_multiplier: Micro::ONE,
        net_earnings_change_percent: Micro(0),
        summary: "no economic change".to_owned(),
    }
}

/// A valid NEP of `nep_type` changing integer `key` from `old` to `new`.
pub fn content(nep_type: NepType, key: &str, old: i64, new: i64) -> NepContent {
    NepContent {
        title: format!("{nep_type} change of {key}"),
        nep_type,
        motivation: "because".to_owned(),
        specification: "do it".to_owned(),
        parameter_changes: vec![ParameterChange {
            key: key.to_owned(),
            expected_old: ParamValue::Integer(old),
            new: ParamValue::Integer(new),
        }],
        economic_impact: impact(),
        upgrade_path: UpgradePath {
            grace_period_days: 7,
            backward_compatible: true,
        },
    }
}

fn nep_of(outcome: &neuroshard_governance::Outcome) -> NepId {
    use neuroshard_governance::Effect;
    match outcome {
        Ok(r) => match &r.effect {
            Effect::DraftCreated { nep, .. } => *nep,
            other => panic!("fixture: expected a draft, got {other:?}"),
        },
        Err(e) => panic!("fixture: expected a draft, got {e:?}"),
    }
}

fn must(outcome: neuroshard_governance::Outcome) {
    if let Err(e) = outcome {
        panic!("fixture step refused: {e:?}");
    }
}

/// Builds a `CertificateIssued` for `pending` with the shares of
/// validators `0..=t`, as the leader does. Remembered per payload (BLS
/// signing is most of a fuzz run's time otherwise).
pub fn issue(dealt: &DealtKeys, pending: &PendingCertificate) -> IssuedCertificate {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static ISSUED: RefCell<HashMap<(u64, Vec<u8>), IssuedCertificate>> =
            RefCell::new(HashMap::new());
    }
    let key = (pending.sequence, pending.payload.clone());
    if let Some(issued) = ISSUED.with(|m| m.borrow().get(&key).cloned()) {
        return issued;
    }
    let issued = issue_now(dealt, pending);
    ISSUED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(key, issued.clone());
    });
    issued
}

fn issue_now(dealt: &DealtKeys, pending: &PendingCertificate) -> IssuedCertificate {
    let scheme = SchemeId::G2Rfc9380.scheme();
    let keys = &dealt.public_key_set;
    let message = neuroshard_certificate::signing_message(&pending.payload);
    let needed = keys.threshold() as usize + 1;
    let shares: Vec<(ShareIndex, _)> = (0..needed)
        .map(|i| {
            let share = scheme
                .sign_share(&dealt.secret_key_shares[i], &message)
                .expect("test share signs");
            (ShareIndex(i as u32), share)
        })
        .collect();
    let envelope =
        Envelope::combine(keys, &shares, pending.payload.clone(), 1).expect("test shares combine");
    IssuedCertificate {
        sequence: pending.sequence,
        envelope,
        shares: shares
            .iter()
            .map(|(i, s)| CertificateShare {
                validator: i.0,
                share: s.to_bytes().to_vec(),
            })
            .collect(),
    }
}

fn build() -> Fixture {
    let mut c = TestChain::new(&TestConfig::default());
    let fresh = c.state.clone();
    let user = testkit::user_key;
    let review = c.state.params().gov().review_days;

    let n1 = nep_of(&c.exec(
        &user(0),
        Command::CreateDraft {
            content: content(NepType::Train, "train.prediction_heads", 1, 4),
        },
    ));
    must(c.exec(&user(0), Command::Submit { nep: n1 }));
    must(c.advance_days(1));
    let n2 = nep_of(&c.exec(
        &user(1),
        Command::CreateDraft {
            content: content(NepType::Arch, "arch.num_layers", 32, 48),
        },
    ));
    must(c.exec(&user(1), Command::Submit { nep: n2 }));
    must(c.advance_days(review - 1));
    for (u, choice) in [(1, VoteChoice::Yes), (2, VoteChoice::Yes)] {
        must(c.exec(&user(u), Command::Vote { nep: n1, choice }));
    }
    let deadline = c
        .state
        .proposal(n1)
        .and_then(|p| p.vote.as_ref())
        .expect("NEP 1 is voting")
        .deadline_ms
        .0;
    must(c.tick_at(deadline));
    // NEP 2's vote opened a day later: it stays open, with a ballot.
    must(c.exec(
        &user(3),
        Command::Vote {
            nep: n2,
            choice: VoteChoice::No,
        },
    ));
    let n3 = nep_of(&c.exec(
        &user(2),
        Command::CreateDraft {
            content: content(NepType::Net, "net.gossip_fanout", 8, 16),
        },
    ));
    let n4 = nep_of(&c.exec(
        &user(3),
        Command::CreateDraft {
            content: content(
                NepType::Econ,
                "econ.account_creation_fee",
                NEURO as i64,
                2 * NEURO as i64,
            ),
        },
    ));
    let _ = n3;
    let _ = c.exec(&user(3), Command::Submit { nep: n4 });
    let pending = c.state.clone();
    let pending_certificate = pending
        .pending_certificates()
        .into_iter()
        .next()
        .expect("NEP 1's activation certificate is pending");
    let issued = issue(&c.dealt, &pending_certificate);
    must(c.apply(Entry::CertificateIssued(issued.clone())));
    // An emergency NEP by validator 0, approved by validator 1.
    let emergency = NepContent {
        title: "halt".to_owned(),
        nep_type: NepType::Emerg,
        ..content(NepType::Emerg, "net.gossip_fanout", 8, 4)
    };
    let _ = c.exec(
        &testkit::validator_key(0),
        Command::SubmitEmergency { content: emergency },
    );
    let _ = c.exec(
        &testkit::validator_key(1),
        Command::EmergencyApprove {
            nep: NepId(n4.0 + 1),
        },
    );
    let _ = c.advance_days(30);
    let _ = c.issue_pending();
    Fixture {
        chain_id: c.genesis.chain_id.clone(),
        genesis: c.genesis.clone(),
        dealt: c.dealt.clone(),
        fresh,
        pending,
        pending_certificate,
        issued,
        certified: c.state.clone(),
    }
}

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

/// Committee and envelope of a committed certificate vector.
pub struct Vector {
    pub committee: CommitteeInfo,
    pub envelope: Envelope,
}

fn vector(json: &str) -> Vector {
    let v: serde_json::Value = serde_json::from_str(json).expect("vector JSON");
    let committee =
        CommitteeInfo::from_json(v["committee"].to_string().as_bytes()).expect("vector committee");
    let envelope =
        Envelope::from_json(v["certificate"].to_string().as_bytes()).expect("vector envelope");
    Vector {
        committee,
        envelope,
    }
}

/// The default-scheme vector (`01-ok-activation.json`) and the tc04 one
/// (`30-tc04-ok-activation.json`).
pub fn vectors() -> &'static [Vector; 2] {
    static VECTORS: OnceLock<[Vector; 2]> = OnceLock::new();
    VECTORS.get_or_init(|| {
        [
            vector(include_str!(
                "../../crates/certificate/tests/vectors/01-ok-activation.json"
            )),
            vector(include_str!(
                "../../crates/certificate/tests/vectors/30-tc04-ok-activation.json"
            )),
        ]
    })
}

// ---- generators -------------------------------------------------------------

/// A string of about `len` bytes, sometimes with multi-byte characters.
fn text(u: &mut Unstructured<'_>, len: usize) -> ArbResult<String> {
    let c = *u.choose(&['a', 'é', '"', '\n', '\\', '\u{10348}'])?;
    let mut s = String::with_capacity(len + 4);
    while s.len() < len {
        s.push(c);
    }
    Ok(s)
}

/// A length: mostly short, sometimes at or just past `limit`.
fn length(u: &mut Unstructured<'_>, limit: usize) -> ArbResult<usize> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => 0,
        1 => limit,
        2 => limit + 1,
        3 => u.int_in_range(0..=limit + 8)?,
        _ => u.int_in_range(1..=24)?,
    })
}

fn value(u: &mut Unstructured<'_>, kind: ParamKind, min: i64, max: i64) -> ArbResult<ParamValue> {
    let number = match u.int_in_range(0u8..=7)? {
        0 => min,
        1 => max,
        2 => min.saturating_sub(1),
        3 => max.saturating_add(1),
        4 => i64::MIN,
        5 => i64::MAX,
        _ => u.int_in_range(min.min(max)..=max.max(min))?,
    };
    // Sometimes the wrong kind on purpose.
    let kind = if u.ratio(1u8, 16)? {
        *u.choose(&[
            ParamKind::Integer,
            ParamKind::FixedPoint,
            ParamKind::Bool,
            ParamKind::String,
        ])?
    } else {
        kind
    };
    Ok(match kind {
        ParamKind::Integer => ParamValue::Integer(number),
        ParamKind::FixedPoint => ParamValue::FixedPoint(Micro(number)),
        ParamKind::Bool => ParamValue::Bool(u.arbitrary()?),
        ParamKind::String => {
            let n = length(u, neuroshard_governance::limits::MAX_TEXT_VALUE_BYTES)?;
            ParamValue::String(text(u, n)?)
        }
    })
}

/// NEP content from fuzz input: mostly valid (so NEPs get through their
/// whole life), with every field sometimes at, or just past, its limit.
pub fn nep_content(u: &mut Unstructured<'_>, emergency: bool) -> ArbResult<NepContent> {
    use neuroshard_governance::limits::*;
    let nep_type = if u.ratio(1u8, 8)? {
        *u.choose(&[
            NepType::Arch,
            NepType::Econ,
            NepType::Train,
            NepType::Net,
            NepType::Gov,
            NepType::Emerg,
        ])?
    } else if emergency {
        NepType::Emerg
    } else {
        *u.choose(&[
            NepType::Arch,
            NepType::Econ,
            NepType::Train,
            NepType::Net,
            NepType::Gov,
        ])?
    };
    let mut c = content(nep_type, "train.prediction_heads", 1, 4);
    if u.ratio(1u8, 4)? {
        c.parameter_changes.clear();
        let count = match u.int_in_range(0u8..=15)? {
            0 => MAX_PARAMETER_CHANGES + 1,
            1 => MAX_PARAMETER_CHANGES,
            n => usize::from(n % 4),
        };
        for _ in 0..count {
            let spec = u.choose(SCHEMA)?;
            let current = spec.default_value();
            let old = if u.ratio(3u8, 4)? {
                current
            } else {
                value(u, spec.kind, spec.min, spec.max)?
            };
            let key = if u.ratio(1u8, 32)? {
                let n = length(u, MAX_PARAMETER_KEY_BYTES)?;
                text(u, n)?
            } else {
                spec.key.to_owned()
            };
            c.parameter_changes.push(ParameterChange {
                key,
                expected_old: old,
                new: value(u, spec.kind, spec.min, spec.max)?,
            });
        }
        if u.arbitrary()? {
            c.parameter_changes.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }
    if u.ratio(1u8, 8)? {
        let n = length(u, MAX_TITLE_BYTES)?;
        c.title = text(u, n)?;
    }
    if u.ratio(1u8, 16)? {
        let n = length(u, MAX_MOTIVATION_BYTES)?;
        c.motivation = text(u, n)?;
    }
    if u.ratio(1u8, 16)? {
        let n = length(u, MAX_SPEC_BYTES)?;
        c.specification = text(u, n)?;
    }
    if u.ratio(1u8, 16)? {
        let n = length(u, MAX_IMPACT_SUMMARY_BYTES)?;
        c.economic_impact.summary = text(u, n)?;
    }
    if u.ratio(1u8, 8)? {
        c.economic_impact.training_reward_multiplier = Micro(u.arbitrary()?);
        c.economic_impact.training_efficiency_multiplier = Micro(u.arbitrary()?);
        c.economic_impact.net_earnings_change_percent = Micro(u.arbitrary()?);
    }
    if u.ratio(1u8, 4)? {
        c.upgrade_path = UpgradePath {
            grace_period_days: *u.choose(&[0, 1, 7, 14, 30, 31, u32::MAX])?,
            backward_compatible: u.arbitrary()?,
        };
    }
    Ok(c)
}

/// The ed25519 key of signer `i`: the test users (some funded at genesis,
/// some unknown to the state) and the validators' identity keys.
pub fn signer(i: u8) -> SigningKey {
    signers()[usize::from(i) % signers().len()].clone()
}

/// Every `signer`, derived once (deriving a public key is most of the cost
/// of a short command sequence otherwise).
fn signers() -> &'static [SigningKey] {
    static SIGNERS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        (0..USERS + 2)
            .map(testkit::user_key)
            .chain((0..VALIDATORS).map(testkit::validator_key))
            .collect()
    })
}

/// An amount: mostly of the order of the test balances, sometimes extreme.
pub fn amount(u: &mut Unstructured<'_>) -> ArbResult<neuroshard_governance::Amount> {
    Ok(neuroshard_governance::Amount(
        match u.int_in_range(0u8..=9)? {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => u.arbitrary()?,
            4 => 1_000 * NEURO,
            5 => 2_000 * NEURO,
            _ => u64::from(u.int_in_range(1u16..=200)?) * NEURO,
        },
    ))
}

/// A NEP id near the ones that exist.
pub fn nep_id(u: &mut Unstructured<'_>) -> ArbResult<NepId> {
    Ok(NepId(match u.int_in_range(0u8..=15)? {
        0 => 0,
        1 => u64::MAX,
        n => u64::from(n % 8),
    }))
}

/// A command from fuzz input.
pub fn command(u: &mut Unstructured<'_>) -> ArbResult<Command> {
    Ok(match u.int_in_range(0u8..=9)? {
        0 => Command::Transfer {
            to: if u.ratio(1u8, 8)? {
                neuroshard_governance::AccountId(u.arbitrary()?)
            } else {
                testkit::account_of(&signer(u.arbitrary()?))
            },
            amount: amount(u)?,
        },
        1 => Command::Stake { amount: amount(u)? },
        2 => Command::Unstake { amount: amount(u)? },
        3 => Command::CreateDraft {
            content: nep_content(u, false)?,
        },
        4 => Command::AmendDraft {
            nep: nep_id(u)?,
            content: nep_content(u, false)?,
        },
        5 => Command::Submit { nep: nep_id(u)? },
        6 => Command::Withdraw { nep: nep_id(u)? },
        7 => Command::Vote {
            nep: nep_id(u)?,
            choice: *u.choose(&[VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain])?,
        },
        8 => Command::SubmitEmergency {
            content: nep_content(u, true)?,
        },
        _ => Command::EmergencyApprove { nep: nep_id(u)? },
    })
}

/// The accounts of every `signer`.
pub fn testkit_accounts() -> &'static [neuroshard_governance::AccountId] {
    static ACCOUNTS: OnceLock<Vec<neuroshard_governance::AccountId>> = OnceLock::new();
    ACCOUNTS.get_or_init(|| signers().iter().map(testkit::account_of).collect())
}
