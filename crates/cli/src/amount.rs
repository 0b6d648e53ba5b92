//! Amounts as people type them: NEURO with up to six decimals
//! (`150`, `0.5`), converted exactly to base units (1 NEURO = 1_000_000).

use neuroshard_governance::{Amount, Micro, NEURO};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("amount {text:?}: {reason}")]
    Invalid { text: String, reason: String },
}

/// Parses a positive NEURO amount.
pub fn parse_neuro(text: &str) -> Result<Amount, AmountError> {
    let bad = |reason: String| AmountError::Invalid {
        text: text.to_owned(),
        reason,
    };
    // Micro-units of a decimal are exactly base units of NEURO.
    debug_assert_eq!(Micro::ONE.0 as u64, NEURO);
    let units = Micro::parse_decimal(text).map_err(bad)?.0;
    if units <= 0 {
        return Err(bad("must be more than zero".into()));
    }
    Ok(Amount(units as u64))
}

/// `1234.5 NEURO` style, trailing zeros of the fraction dropped.
pub fn show(units: u64) -> String {
    let whole = units / NEURO;
    let frac = units % NEURO;
    if frac == 0 {
        format!("{whole} NEURO")
    } else {
        let digits = format!("{frac:06}");
        format!("{whole}.{} NEURO", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_print_shortly() {
        assert_eq!(parse_neuro("150"), Ok(Amount(150 * NEURO)));
        assert_eq!(parse_neuro("0.5"), Ok(Amount(NEURO / 2)));
        assert_eq!(parse_neuro("0.000001"), Ok(Amount(1)));
        for bad in ["0", "-1", "1.0000001", "abc", ""] {
            assert!(parse_neuro(bad).is_err(), "{bad:?}");
        }
        assert_eq!(show(150 * NEURO), "150 NEURO");
        assert_eq!(show(1_500_000), "1.5 NEURO");
        assert_eq!(show(1), "0.000001 NEURO");
    }
}
