//! The model harness against the checkers: clean seeds pass (and give the
//! checkers something to judge), runs are reproducible byte for byte, and
//! deliberately broken builds fail.

use neuroshard_chaos::invariants::late_votes_refused::LateVote;
use neuroshard_chaos::invariants::{
    acknowledged_votes_counted, certificate_chain, certified_tally, late_votes_refused, liveness,
    replicas_agree,
};
use neuroshard_chaos::lookup::Observer;
use neuroshard_chaos::model::{self, ModelConfig, ModelRun, Sabotage};
use neuroshard_chaos::{check, History, Violation};

/// Seeds `cargo test` runs; CI runs many more through the binary.
const SAMPLE_SEEDS: std::ops::RangeInclusive<u64> = 1..=12;

fn run(config: &ModelConfig) -> ModelRun {
    match model::run(config) {
        Ok(r) => r,
        Err(e) => panic!("model seed {} did not run: {e}", config.seed),
    }
}

#[test]
fn sample_seeds_keep_every_invariant_and_exercise_each_checker() {
    let mut certificates = 0;
    let mut late_refusals = 0;
    let mut unanswered = 0;
    let mut chains_checked = 0;
    let mut retried_across_close = 0;
    for seed in SAMPLE_SEEDS {
        let r = run(&ModelConfig::new(seed));
        retried_across_close += retries_across_the_close(&r.history);
        let report = check(&r.history);
        assert!(report.is_clean(), "seed {seed}:\n{}", report.table());
        for name in [
            replicas_agree::NAME,
            acknowledged_votes_counted::NAME,
            late_votes_refused::NAME,
            certified_tally::NAME,
            liveness::NAME,
        ] {
            let checked = report.section(name).map_or(0, |s| s.checked);
            assert!(checked > 0, "seed {seed}: {name} checked nothing");
        }
        chains_checked += report
            .section(certificate_chain::NAME)
            .map_or(0, |s| s.checked);
        certificates += r.stats.certificates;
        late_refusals += r.stats.votes_refused_closed;
        unanswered += r.stats.unanswered;
    }
    // The sample covers what the checkers are for.
    assert!(certificates > 0, "no sample seed issued a certificate");
    assert!(late_refusals > 0, "no vote landed after a closing tick");
    assert!(
        unanswered > 0,
        "no command went unanswered, so nothing was retried"
    );
    assert_eq!(chains_checked as u64, certificates);
    assert!(
        retried_across_close > 0,
        "no vote counted before a close was retried after it"
    );
}

/// Votes counted before their NEP's closing tick whose identical retry
/// reached the log after it (and got the original receipt): the case the
/// deadline makes hard.
fn retries_across_the_close(h: &History) -> usize {
    h.vote_applications()
        .iter()
        .filter(|a| matches!(a.seen_by, Observer::Replica(0)))
        .filter(|a| {
            let Some(closing) = h.closing_index(a.nep) else {
                return false;
            };
            a.index > closing && a.receipt_index.is_some_and(|r| r < closing)
        })
        .count()
}

#[test]
fn runs_without_faults_keep_every_invariant() {
    for seed in 100..103 {
        let config = ModelConfig {
            faults: false,
            ..ModelConfig::new(seed)
        };
        let r = run(&config);
        assert_eq!(r.stats.faults, 0);
        let report = check(&r.history);
        assert!(report.is_clean(), "seed {seed}:\n{}", report.table());
    }
}

#[test]
fn the_same_seed_gives_the_same_history_bytes() {
    let a = run(&ModelConfig::new(7))
        .history
        .to_jsonl()
        .expect("encodes");
    let b = run(&ModelConfig::new(7))
        .history
        .to_jsonl()
        .expect("encodes");
    assert!(a == b, "seed 7 gave two different histories");
    let c = run(&ModelConfig::new(8))
        .history
        .to_jsonl()
        .expect("encodes");
    assert!(a != c, "seeds 7 and 8 gave the same history");
}

#[test]
fn a_written_history_reads_back_and_checks_the_same() {
    let r = run(&ModelConfig::new(3));
    let bytes = r.history.to_jsonl().expect("encodes");
    let back = History::read(bytes.as_slice()).expect("reads back");
    assert_eq!(back, r.history);
    assert_eq!(check(&back), check(&r.history));
}

/// A broken build that tells clients a late vote was counted.
#[test]
fn checkers_fail_a_build_that_acknowledges_late_votes() {
    let config = ModelConfig {
        sabotage: Sabotage::AcknowledgeLateVotes,
        ..ModelConfig::new(3)
    };
    let r = run(&config);
    assert!(r.stats.sabotaged > 0, "the sabotage never triggered");
    let report = check(&r.history);
    assert!(!report.is_clean());
    assert!(
        report.violations().any(|v| matches!(
            v,
            Violation::LateVotesRefused(LateVote::CountedAfterClose { .. })
        )),
        "{}",
        report.table()
    );
}

/// A broken build that counts votes applied after the closing tick.
#[test]
fn checkers_fail_a_build_that_counts_late_votes() {
    for seed in [3, 5] {
        let config = ModelConfig {
            sabotage: Sabotage::CountLateVotes,
            ..ModelConfig::new(seed)
        };
        let r = run(&config);
        assert!(
            r.stats.sabotaged > 0,
            "seed {seed}: the sabotage never triggered"
        );
        let report = check(&r.history);
        assert!(
            report.violations().any(|v| matches!(
                v,
                Violation::LateVotesRefused(LateVote::LateVoteCounted { .. })
            )),
            "seed {seed}:\n{}",
            report.table()
        );
        // Where a certificate was issued, its tally no longer matches.
        if r.stats.certificates > 0 {
            assert!(
                report
                    .section(certified_tally::NAME)
                    .is_some_and(|s| !s.violations.is_empty()),
                "seed {seed}:\n{}",
                report.table()
            );
        }
    }
}
