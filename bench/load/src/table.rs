//! The printed tables: every configuration's median round, and the ratios
//! neuroshard / etcd at the same number of outstanding operations.

use std::fmt::Write;

use crate::Summary;

/// What the table says when the servers expose no signature counter.
pub const NO_SIGNATURE_COUNTER: &str = "n/a (needs a counter in the node)";

/// The counter name the signature column reads.
pub const SIGNATURE_COUNTER: &str = "signature_verifications";
/// The counter name the fsync column reads.
pub const FSYNC_COUNTER: &str = "fsyncs";

fn per_server(s: &Summary, name: &str) -> Option<String> {
    let col = s.counter_names.iter().position(|n| n == name)?;
    let values: Vec<String> = s
        .median
        .counters_per_op
        .iter()
        .map(|c| c.get(col).map_or("?".to_owned(), |v| format!("{v:.2}")))
        .collect();
    Some(values.join(" / "))
}

/// One line per configuration (its median round).
pub fn render(summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>3} {:<9} {:>4} {:>5} {:>9} {:>8} {:>8} {:>10} {:>10}  {:<27}  sig verifs/cmd per server",
        "system", "n", "workload", "out", "conns", "cmds/s", "p50 ms", "p99 ms", "srv µs/cmd", "cli µs/cmd", "fsyncs/cmd per server"
    );
    for s in summaries {
        let m = &s.median;
        let fsyncs = per_server(s, FSYNC_COUNTER).unwrap_or_else(|| "-".to_owned());
        let sigs = per_server(s, SIGNATURE_COUNTER).unwrap_or_else(|| {
            if s.system == "neuroshard" {
                NO_SIGNATURE_COUNTER.to_owned()
            } else {
                "-".to_owned()
            }
        });
        let _ = writeln!(
            out,
            "{:<10} {:>3} {:<9} {:>4} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>10.0} {:>10.0}  {:<27}  {}",
            s.system,
            s.servers,
            s.workload,
            s.outstanding,
            s.connections,
            m.ops_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.server_cpu_us_per_op,
            m.client_cpu_us_per_op,
            fsyncs,
            sigs
        );
    }
    out
}

/// neuroshard / etcd for every neuroshard configuration that has an etcd
/// run with the same number of outstanding operations.
pub fn render_ratios(summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<3} {:<9} {:>4} {:>8} {:>8} {:>8} {:>11} {:>11}   (neuroshard / etcd; etcd: 3 members, puts)",
        "n", "workload", "out", "cmds/s", "p50", "p99", "server CPU", "client CPU"
    );
    for s in summaries.iter().filter(|s| s.system == "neuroshard") {
        let Some(e) = summaries
            .iter()
            .find(|e| e.system == "etcd" && e.outstanding == s.outstanding)
        else {
            continue;
        };
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let (a, b) = (&s.median, &e.median);
        let _ = writeln!(
            out,
            "{:<3} {:<9} {:>4} {:>7.2}x {:>7.2}x {:>7.2}x {:>10.2}x {:>10.2}x",
            s.servers,
            s.workload,
            s.outstanding,
            r(a.ops_per_sec, b.ops_per_sec),
            r(a.p50_ms, b.p50_ms),
            r(a.p99_ms, b.p99_ms),
            r(a.server_cpu_us_per_op, b.server_cpu_us_per_op),
            r(a.client_cpu_us_per_op, b.client_cpu_us_per_op),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Round;

    fn summary(system: &str, ops: f64, counters: Vec<String>, values: Vec<Vec<f64>>) -> Summary {
        let round = Round {
            ops: 10,
            secs: 1.0,
            ops_per_sec: ops,
            p50_ms: 2.0,
            p99_ms: 4.0,
            server_cpu_us_per_op: 100.0,
            client_cpu_us_per_op: 50.0,
            counters_per_op: values,
        };
        Summary::new(system, 3, "transfer", 64, 3, counters, vec![round]).expect("summary")
    }

    #[test]
    fn tables_show_counters_and_ratios() {
        let ns = summary(
            "neuroshard",
            500.0,
            vec![FSYNC_COUNTER.to_owned()],
            vec![vec![1.0], vec![0.5], vec![0.25]],
        );
        let etcd = summary("etcd", 1000.0, Vec::new(), Vec::new());
        let t = render(&[etcd.clone(), ns.clone()]);
        assert!(t.contains("1.00 / 0.50 / 0.25"), "{t}");
        assert!(t.contains(NO_SIGNATURE_COUNTER), "{t}");
        let r = render_ratios(&[etcd, ns]);
        assert!(r.contains("0.50x"), "{r}");
    }
}
