//! Money in atomic units: the smallest unit of the asset (for a 6-decimal USDC-like token,
//! `1_000_000` atomic units are one dollar). Floats never touch an amount: a price written as
//! `'$0.01'` is parsed digit by digit into atomic units, and a price with more decimals than the
//! asset has is refused rather than rounded, because rounding a price silently changes what a
//! buyer is charged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an amount or a price could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not a price: expected digits with an optional `$` and one decimal point")]
    Malformed(String),
    #[error("{price:?} has {given} decimals; the asset has only {decimals}")]
    TooManyDecimals {
        price: String,
        given: usize,
        decimals: u8,
    },
    #[error("{0:?} does not fit in 128 bits of atomic units")]
    Overflow(String),
    #[error("an asset with {0} decimals is not supported (at most 38)")]
    Decimals(u8),
}

/// An amount in the asset's atomic units. Arithmetic is checked: an overflow is an error, never a
/// wrap.
///
/// ```
/// use d402_rails::Atomic;
/// let price = Atomic::parse_price("$0.01", 6).unwrap();
/// assert_eq!(price, Atomic::new(10_000));
/// assert_eq!(price.to_decimal_string(6), "0.010000");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Atomic(u128);

impl Atomic {
    pub const ZERO: Atomic = Atomic(0);

    pub const fn new(units: u128) -> Self {
        Atomic(units)
    }

    /// The amount in atomic units.
    pub const fn get(self) -> u128 {
        self.0
    }

    pub fn checked_add(self, other: Atomic) -> Option<Atomic> {
        self.0.checked_add(other.0).map(Atomic)
    }

    pub fn checked_sub(self, other: Atomic) -> Option<Atomic> {
        self.0.checked_sub(other.0).map(Atomic)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a human price (`"$0.01"`, `"0.01"`, `"3"`) into atomic units of an asset with
    /// `decimals` decimals, exactly.
    pub fn parse_price(price: &str, decimals: u8) -> Result<Atomic, AmountError> {
        if decimals > 38 {
            return Err(AmountError::Decimals(decimals));
        }
        let malformed = || AmountError::Malformed(price.to_string());
        let body = price.trim();
        let body = body.strip_prefix('$').unwrap_or(body);
        let (whole, frac) = match body.split_once('.') {
            Some((w, f)) => (w, f),
            None => (body, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(malformed());
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(frac) || (body.contains('.') && frac.is_empty()) {
            return Err(malformed());
        }
        if frac.len() > decimals as usize {
            // Trailing zeros add no value: "0.010000000" is still one cent of a 6-decimal asset.
            let significant = frac.trim_end_matches('0');
            if significant.len() > decimals as usize {
                return Err(AmountError::TooManyDecimals {
                    price: price.to_string(),
                    given: significant.len(),
                    decimals,
                });
            }
        }
        let frac = &frac[..frac.len().min(decimals as usize)];
        let overflow = || AmountError::Overflow(price.to_string());
        let scale = 10u128.checked_pow(decimals as u32).ok_or_else(overflow)?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let mut frac_units: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| overflow())?
        };
        for _ in frac.len()..decimals as usize {
            frac_units = frac_units.checked_mul(10).ok_or_else(overflow)?;
        }
        whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_units))
            .map(Atomic)
            .ok_or_else(overflow)
    }

    /// The amount as a decimal string with exactly `decimals` decimals (`10000` at 6 decimals is
    /// `"0.010000"`).
    pub fn to_decimal_string(self, decimals: u8) -> String {
        let s = self.0.to_string();
        let d = decimals as usize;
        if d == 0 {
            return s;
        }
        let padded = format!("{s:0>width$}", width = d + 1);
        let (w, f) = padded.split_at(padded.len() - d);
        format!("{w}.{f}")
    }
}

impl fmt::Display for Atomic {
    /// Atomic units as a plain integer, the form x402 puts on the wire (`"amount": "10000"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Atomic {
    type Err = AmountError;
    /// Parses an integer count of atomic units (the wire form), not a human price.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Malformed(s.to_string()));
        }
        s.parse::<u128>()
            .map(Atomic)
            .map_err(|_| AmountError::Overflow(s.to_string()))
    }
}

impl Serialize for Atomic {
    /// A decimal string: JSON numbers lose precision above 2^53 in most clients.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Atomic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<u128> for Atomic {
    fn from(v: u128) -> Self {
        Atomic(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(Atomic::parse_price("$0.01", 6), Ok(Atomic(10_000)));
        assert_eq!(Atomic::parse_price("0.01", 6), Ok(Atomic(10_000)));
        assert_eq!(Atomic::parse_price("3", 6), Ok(Atomic(3_000_000)));
        assert_eq!(Atomic::parse_price("$1.5", 6), Ok(Atomic(1_500_000)));
        assert_eq!(Atomic::parse_price(".5", 6), Ok(Atomic(500_000)));
        assert_eq!(Atomic::parse_price("0.000001", 6), Ok(Atomic(1)));
        assert_eq!(Atomic::parse_price("0.0100000", 6), Ok(Atomic(10_000)));
        assert_eq!(Atomic::parse_price("7", 0), Ok(Atomic(7)));
    }

    #[test]
    fn prices_refuse_what_they_cannot_hold() {
        assert!(matches!(
            Atomic::parse_price("0.0000001", 6),
            Err(AmountError::TooManyDecimals { given: 7, .. })
        ));
        for bad in [
            "", "$", "abc", "1.", "-1", "1e3", "1.2.3", "$$1", "0x10", " 1 2",
        ] {
            assert!(
                matches!(Atomic::parse_price(bad, 6), Err(AmountError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Atomic::parse_price("999999999999999999999999999999999999999", 6),
            Err(AmountError::Overflow(_))
        ));
        assert_eq!(Atomic::parse_price("1", 39), Err(AmountError::Decimals(39)));
    }

    #[test]
    fn display_and_wire_form() {
        assert_eq!(Atomic(10_000).to_decimal_string(6), "0.010000");
        assert_eq!(Atomic(3_000_000).to_decimal_string(6), "3.000000");
        assert_eq!(Atomic(5).to_decimal_string(0), "5");
        assert_eq!(Atomic(10_000).to_string(), "10000");
        assert_eq!("10000".parse::<Atomic>(), Ok(Atomic(10_000)));
        assert!("1.0".parse::<Atomic>().is_err());
        let json = serde_json::to_string(&Atomic(u128::MAX)).unwrap();
        assert_eq!(
            serde_json::from_str::<Atomic>(&json).unwrap(),
            Atomic(u128::MAX)
        );
    }
}
