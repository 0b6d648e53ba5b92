//! Power loss in the simulation (issue 13, item 3): every validator's
//! simulated disk keeps synced and unsynced writes apart, and a power cut
//! drops what was not synced. With the stores' fdatasync, the whole
//! committee's power cut around a closing tick loses nothing acknowledged;
//! with the test-only `unsynced_acks` (the fdatasync removed) the same runs
//! lose acknowledged votes and the checkers say so. `.ci/chaos` runs the
//! same crash points on more seeds.

use neuroshard_chaos::invariants::acknowledged_votes_counted;
use neuroshard_chaos::sim::{self, SimConfig, SimRun};
use neuroshard_chaos::{check, Report};

/// Seeds of the power-cut crash points run here (`sim --power-cut`).
const SEEDS: [u64; 3] = [1, 2, 3];

fn power_cut(seed: u64, unsynced_acks: bool) -> SimConfig {
    let mut config = SimConfig {
        plan: Some(sim::power_cut_faults(seed)),
        ..SimConfig::new(seed)
    };
    config.disk.unsynced_acks = unsynced_acks;
    config
}

fn run(config: &SimConfig) -> (SimRun, Report) {
    let r = match sim::run(config) {
        Ok(r) => r,
        Err(e) => panic!("simulation seed {} did not run: {e}", config.seed),
    };
    let report = check(&r.history);
    (r, report)
}

fn violations(report: &Report, name: &str) -> usize {
    report.section(name).map_or(0, |s| s.violations.len())
}

#[test]
fn a_power_cut_of_the_committee_loses_only_what_nobody_was_told() {
    for seed in SEEDS {
        let config = power_cut(seed, false);
        let (r, report) = run(&config);
        assert!(
            report.is_clean(),
            "seed {seed} ({}):\n{}",
            r.scenario,
            report.table()
        );
        assert!(r.stats.settled, "seed {seed}: the NEPs never settled");
        let d = r.stats.disk;
        assert_eq!(r.stats.crash_points, 1, "seed {seed}");
        assert_eq!(d.power_losses, 4, "seed {seed}: every validator");
        assert!(d.bytes_dropped > 0, "seed {seed}: nothing was unsynced");
        assert_eq!(
            d.acknowledged_entries_dropped, 0,
            "seed {seed}: an acknowledged append was not durable"
        );
        let counted = report
            .section(acknowledged_votes_counted::NAME)
            .map_or(0, |s| s.checked);
        assert!(counted > 0, "seed {seed}: no acknowledged vote to check");
    }
}

#[test]
fn without_the_fdatasync_the_same_power_cuts_lose_acknowledged_votes() {
    for seed in SEEDS {
        let config = power_cut(seed, true);
        let (r, report) = run(&config);
        let d = r.stats.disk;
        assert!(
            d.acknowledged_entries_dropped > 0,
            "seed {seed}: no acknowledged append was dropped"
        );
        assert!(
            violations(&report, acknowledged_votes_counted::NAME) > 0,
            "seed {seed} ({}): the checkers found no lost acknowledged vote:\n{}",
            r.scenario,
            report.table()
        );
    }
}
