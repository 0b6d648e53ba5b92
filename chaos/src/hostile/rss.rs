//! Peak resident memory of a validator process: `VmHWM` of
//! /proc/<pid>/status, reset before each phase by writing 5 to
//! /proc/<pid>/clear_refs (Linux ≥ 4.0), so each row shows the peak of its
//! own phase. Where the reset is refused, the peak is since the start, and
//! the table says so.

/// Resets the peak RSS of `pid`; false when the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// `VmHWM` of `pid` in KiB.
pub fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&status, "VmHWM:")
}

fn field_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_vmhwm() {
        let s = "Name:\tneuroshard\nVmPeak:\t  100 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(super::field_kib(s, "VmHWM:"), Some(51_234));
        assert!(super::peak_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
