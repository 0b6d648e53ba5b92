//! When each validator built a snapshot (and purged its log), from its
//! node.log: a row during which that happened carries the cost of it
//! (RSS, a pause of apply), and its notes say so.

use std::path::Path;

/// Unix milliseconds of an RFC 3339 UTC timestamp as the validators log
/// it (`2026-12-05T15:51:53.773080Z`).
pub fn parse_utc_ms(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut ms = 0i64;
    if b[19] == b'.' {
        let frac: String = t[20..].chars().take_while(char::is_ascii_digit).collect();
        let three: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = three.parse().ok()?;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1_000 + ms).ok()
}

/// Times (Unix ms) at which the validator whose log is `log` finished a
/// snapshot.
pub fn built(log: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| l.contains("snapshot built"))
        .filter_map(|l| parse_utc_ms(l.split_whitespace().next()?))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_log_timestamps() {
        assert_eq!(super::parse_utc_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::parse_utc_ms("2026-12-05T15:51:53.773080Z"),
            Some(1_796_485_913_773)
        );
        assert_eq!(
            super::parse_utc_ms("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500)
        );
        assert_eq!(super::parse_utc_ms("garbage"), None);
    }
}
