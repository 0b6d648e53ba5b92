//! CPU time used during a row, by the driver (the attackers and the honest
//! clients share its process) and by each validator: on a small machine
//! the attacker's own CPU is part of what slows the committee, and a row's
//! notes say how much there was.

/// User + system CPU time of this process, ms.
pub fn self_ms() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1_000 + t.tv_usec as u64 / 1_000;
    ms(u.ru_utime) + ms(u.ru_stime)
}

/// User + system CPU time of process `pid`, ms (from /proc/<pid>/stat).
pub fn process_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ms(&stat, ticks_per_second())
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime (fields 14 and 15; the command name, field 2, may hold
/// spaces and parentheses, so fields are counted after its last `)`).
fn parse_stat_ms(stat: &str, ticks: u64) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000 / ticks.max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_stat() {
        let stat = "123 (neuro shard) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(super::parse_stat_ms(stat, 100), Some(3_000));
        assert!(super::process_ms(std::process::id()).is_some());
        let _ = super::self_ms();
    }
}
