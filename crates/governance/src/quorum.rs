//! How many validators a committee of `n` needs to act: the one formula the
//! genesis ceremony (the certificate threshold t + 1), genesis validation
//! and the emergency approvals count use.
//!
//! A committee of `n` tolerates f = ⌊(n − 1)/3⌋ Byzantine validators. Two
//! quorums of q validators share at least 2q − n of them; for that overlap
//! to hold an honest validator whatever f validators lie (so two different
//! certificates for one NEP, or two conflicting emergency decisions, can
//! never both gather a quorum), 2q − n ≥ f + 1, so the smallest quorum is
//! q = ⌊(n + f)/2⌋ + 1 (= 2f + 1 when n = 3f + 1).
//!
//! | n | q = t + 1 | f (safety) | n − q (crash faults, liveness) |
//! |---|---|---|---|
//! | 1 | 1 | 0 | 0 |
//! | 2 | 2 | 0 | 0 |
//! | 3 | 2 | 0 | 1 |
//! | 4 | 3 | 1 | 1 |
//! | 5 | 4 | 1 | 1 |
//! | 6 | 4 | 1 | 2 |
//! | 7 | 5 | 2 | 2 |

/// Byzantine validators a committee of `n` tolerates: f = ⌊(n − 1)/3⌋
/// (0 for n ≤ 3).
pub fn max_faulty(n: u32) -> u32 {
    n.saturating_sub(1) / 3
}

/// The smallest Byzantine quorum of a committee of `n`: ⌊(n + f)/2⌋ + 1
/// with f = [`max_faulty`]`(n)`, so that any two quorums share at least
/// f + 1 validators (one of them honest). Never more than `n` for n ≥ 1.
///
/// The certificate threshold is t = `byzantine_quorum(n) - 1` (t + 1 shares
/// sign); an emergency NEP needs this many approvals.
pub fn byzantine_quorum(n: u32) -> u32 {
    (n + max_faulty(n)) / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_for_one_to_ten_validators() {
        // (n, f, quorum)
        let expected = [
            (1, 0, 1),
            (2, 0, 2),
            (3, 0, 2),
            (4, 1, 3),
            (5, 1, 4),
            (6, 1, 4),
            (7, 2, 5),
            (8, 2, 6),
            (9, 2, 6),
            (10, 3, 7),
        ];
        for (n, f, q) in expected {
            assert_eq!(max_faulty(n), f, "f for n = {n}");
            assert_eq!(byzantine_quorum(n), q, "quorum for n = {n}");
        }
    }

    #[test]
    fn two_quorums_share_an_honest_validator_and_fit_the_committee() {
        for n in 1..=crate::limits::MAX_VALIDATORS as u32 {
            let (f, q) = (max_faulty(n), byzantine_quorum(n));
            assert!(q <= n, "n = {n}: quorum {q} larger than the committee");
            assert!(2 * q > n + f, "n = {n}: overlap below f + 1");
            // And it is the smallest such quorum.
            assert!(2 * (q - 1) <= n + f, "n = {n}: {q} is not the smallest");
            if n % 3 == 1 {
                assert_eq!(q, 2 * f + 1, "n = 3f + 1 = {n}");
            }
        }
    }
}
