//! Domain types: the values the rules are written in, so that an amount can
//! never be passed where a time or an id is expected.

use std::fmt;

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

/// One NEURO in base units.
pub const NEURO: u64 = 1_000_000;

/// Scale of every fixed-point number: micro-units (value × 1_000_000).
pub const MICRO: i64 = 1_000_000;

/// Basis points in one whole (100%).
pub const BPS_ONE: u32 = 10_000;

/// An account: the 32 bytes of an ed25519 public key. Hex in human-readable
/// formats (TOML, JSON), raw bytes in binary ones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<&ed25519_dalek::VerifyingKey> for AccountId {
    fn from(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.to_hex())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Self::from_hex(&s).map_err(|e| D::Error::custom(format!("account id {s:?}: {e}")))
        } else {
            Ok(Self(<[u8; 32]>::deserialize(d)?))
        }
    }
}

/// An amount of NEURO in base units (1 NEURO = 1_000_000 units).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06} NEURO", self.0 / NEURO, self.0 % NEURO)
    }
}

/// A NEP number; displayed as `NEP-<n>`. Ids start at 1.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NepId(pub u64);

impl fmt::Display for NepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NEP-{}", self.0)
    }
}

impl std::str::FromStr for NepId {
    type Err = String;

    /// Accepts `NEP-7`, `nep-7` or `7`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix("NEP-")
            .or_else(|| s.strip_prefix("nep-"))
            .unwrap_or(s);
        digits
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(NepId)
            .ok_or_else(|| format!("{s:?} is not a NEP id (expected NEP-<n> with n >= 1)"))
    }
}

/// Milliseconds since the Unix epoch, as committed by `Tick` entries.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `self + ms`, saturating: a deadline past the end of time never arrives.
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Parts per ten thousand (100% = 10_000).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BasisPoints(pub u32);

impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}%", self.0 / 100, self.0 % 100)
    }
}

/// A fixed-point number in micro-units (1.0 = 1_000_000).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micro(pub i64);

impl Micro {
    pub const ONE: Micro = Micro(MICRO);

    /// Parses a decimal such as `-1.25`, `2`, `0.000001` exactly; more than
    /// six fractional digits are refused rather than rounded.
    pub fn parse_decimal(s: &str) -> Result<Micro, String> {
        let t = s.trim();
        let (neg, body) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !digits_ok(int_part)
            || !digits_ok(frac_part)
        {
            return Err(format!("{s:?} is not a decimal number"));
        }
        if frac_part.len() > 6 {
            return Err(format!("{s:?} has more than 6 decimal places"));
        }
        let int: i64 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| format!("{s:?} is out of range"))?
        };
        let mut frac: i64 = 0;
        for (i, b) in frac_part.bytes().enumerate() {
            frac += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
        }
        let magnitude = int
            .checked_mul(MICRO)
            .and_then(|v| v.checked_add(frac))
            .ok_or_else(|| format!("{s:?} is out of range"))?;
        Ok(Micro(if neg { -magnitude } else { magnitude }))
    }

    /// Converts a float exactly through its shortest round-trip decimal form,
    /// so `2.0` is exactly 2_000_000 and `0.1` exactly 100_000.
    pub fn from_f64(v: f64) -> Result<Micro, String> {
        if !v.is_finite() {
            return Err(format!("{v} is not a finite number"));
        }
        let text = format!("{v}");
        if text.contains('e') || text.contains('E') {
            return Err(format!(
                "{v} is out of the fixed-point range or too precise"
            ));
        }
        Micro::parse_decimal(&text)
    }
}

impl fmt::Display for Micro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let int = abs / MICRO as u64;
        let frac = abs % MICRO as u64;
        if frac == 0 {
            write!(f, "{sign}{int}.0")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// The protocol version `major.minor`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
pub struct ProtocolVersion {
    pub major: u32,
    pub minor: u32,
}

impl ProtocolVersion {
    /// The version after a change: a major bump (minor reset) when the change
    /// is not backward compatible, a minor bump otherwise.
    pub fn bump(self, backward_compatible: bool) -> ProtocolVersion {
        if backward_compatible {
            ProtocolVersion {
                major: self.major,
                minor: self.minor.saturating_add(1),
            }
        } else {
            ProtocolVersion {
                major: self.major.saturating_add(1),
                minor: 0,
            }
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            ("2.0", Ok(2_000_000)),
            ("2", Ok(2_000_000)),
            ("0.000001", Ok(1)),
            ("-1.5", Ok(-1_500_000)),
            (".5", Ok(500_000)),
            ("0.0000001", Err(())),
            ("1e3", Err(())),
            ("", Err(())),
            ("-", Err(())),
            ("99999999999999", Err(())),
        ];
        for (text, want) in cases {
            let got = Micro::parse_decimal(text).map(|m| m.0).map_err(|_| ());
            assert_eq!(&got, want, "parsing {text:?}");
        }
    }

    #[test]
    fn floats_convert_through_their_decimal_form() {
        assert_eq!(Micro::from_f64(2.0), Ok(Micro(2_000_000)));
        assert_eq!(Micro::from_f64(0.1), Ok(Micro(100_000)));
        assert_eq!(Micro::from_f64(-0.25), Ok(Micro(-250_000)));
        assert!(Micro::from_f64(1e-7).is_err());
        assert!(Micro::from_f64(f64::NAN).is_err());
        assert_eq!(Micro(2_000_000).to_string(), "2.0");
        assert_eq!(Micro(-1_250_000).to_string(), "-1.25");
    }

    #[test]
    fn versions_bump_major_or_minor() {
        let v = ProtocolVersion { major: 1, minor: 4 };
        assert_eq!(v.bump(true), ProtocolVersion { major: 1, minor: 5 });
        assert_eq!(v.bump(false), ProtocolVersion { major: 2, minor: 0 });
    }

    #[test]
    fn nep_ids_parse_and_print() {
        assert_eq!("NEP-7".parse::<NepId>(), Ok(NepId(7)));
        assert_eq!("7".parse::<NepId>(), Ok(NepId(7)));
        assert!("NEP-0".parse::<NepId>().is_err());
        assert_eq!(NepId(12).to_string(), "NEP-12");
    }
}
