//! Split settlement: what a task's gross payment becomes.
//!
//! `worker net = gross − creator commission − gateway fee`, with
//! `commission = floor(gross × creator_bps / 10_000)` and the gateway fee either
//! `floor(gross × fee_bps / 10_000)` or a fixed amount. Every remainder of the floors goes to the
//! worker, so the three parts always sum to the gross exactly: no dust is created or lost.
//!
//! The split is computed once, when the challenge is issued, and the parts are what the escrow
//! and channel contracts are bound to; nobody recomputes it later with different rounding.

use serde::{Deserialize, Serialize};

use crate::amount::Atomic;

/// Basis points in a whole: 10,000 bps is 100 %.
pub const BPS_DENOMINATOR: u16 = 10_000;

/// How the gateway is paid for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GatewayFee {
    /// A share of the gross, in basis points, rounded down.
    Bps(u16),
    /// A fixed amount per task.
    Fixed(Atomic),
}

impl Default for GatewayFee {
    fn default() -> Self {
        GatewayFee::Bps(0)
    }
}

/// The terms a split is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitTerms {
    /// The capability creator's commission, from the signed registration.
    pub creator_bps: u16,
    pub gateway_fee: GatewayFee,
}

/// Why a split could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("{0} basis points is more than 100 %")]
    BpsOverWhole(u16),
    #[error("gross {0} × basis points overflows 128 bits")]
    Overflow(Atomic),
    #[error("commission {commission} plus gateway fee {fee} exceed the gross {gross}")]
    ExceedsGross {
        gross: Atomic,
        commission: Atomic,
        fee: Atomic,
    },
}

/// A gross amount divided among worker, creator and gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    pub worker: Atomic,
    pub creator: Atomic,
    pub gateway: Atomic,
}

impl Split {
    /// Splits `gross` by `terms`.
    ///
    /// ```
    /// use d402_rails::{Atomic, split::{GatewayFee, Split, SplitTerms}};
    /// let terms = SplitTerms { creator_bps: 1_000, gateway_fee: GatewayFee::Bps(250) };
    /// let s = Split::compute(Atomic::new(10_001), &terms).unwrap();
    /// assert_eq!((s.worker.get(), s.creator.get(), s.gateway.get()), (8_751, 1_000, 250));
    /// ```
    pub fn compute(gross: Atomic, terms: &SplitTerms) -> Result<Split, SplitError> {
        let creator = share(gross, terms.creator_bps)?;
        let gateway = match terms.gateway_fee {
            GatewayFee::Bps(bps) => share(gross, bps)?,
            GatewayFee::Fixed(fee) => fee,
        };
        let worker = creator
            .checked_add(gateway)
            .and_then(|taken| gross.checked_sub(taken))
            .ok_or(SplitError::ExceedsGross {
                gross,
                commission: creator,
                fee: gateway,
            })?;
        Ok(Split {
            worker,
            creator,
            gateway,
        })
    }

    /// The parts summed; equal to the gross the split was computed from.
    pub fn total(&self) -> Option<Atomic> {
        self.worker
            .checked_add(self.creator)?
            .checked_add(self.gateway)
    }
}

/// `floor(gross × bps / 10_000)`, refusing an overflow instead of wrapping.
fn share(gross: Atomic, bps: u16) -> Result<Atomic, SplitError> {
    if bps > BPS_DENOMINATOR {
        return Err(SplitError::BpsOverWhole(bps));
    }
    gross
        .get()
        .checked_mul(bps as u128)
        .map(|p| Atomic::new(p / BPS_DENOMINATOR as u128))
        .ok_or(SplitError::Overflow(gross))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn remainders_go_to_the_worker() {
        let terms = SplitTerms {
            creator_bps: 2_000,
            gateway_fee: GatewayFee::Bps(100),
        };
        let s = Split::compute(Atomic::new(99), &terms).unwrap();
        assert_eq!(s.creator, Atomic::new(19));
        assert_eq!(s.gateway, Atomic::new(0));
        assert_eq!(s.worker, Atomic::new(80));
    }

    #[test]
    fn refuses_impossible_terms() {
        let over = SplitTerms {
            creator_bps: 10_001,
            gateway_fee: GatewayFee::Bps(0),
        };
        assert_eq!(
            Split::compute(Atomic::new(1), &over),
            Err(SplitError::BpsOverWhole(10_001))
        );
        let fixed = SplitTerms {
            creator_bps: 5_000,
            gateway_fee: GatewayFee::Fixed(Atomic::new(60)),
        };
        assert!(matches!(
            Split::compute(Atomic::new(100), &fixed),
            Err(SplitError::ExceedsGross { .. })
        ));
        let big = SplitTerms {
            creator_bps: 2,
            gateway_fee: GatewayFee::Bps(0),
        };
        assert_eq!(
            Split::compute(Atomic::new(u128::MAX), &big),
            Err(SplitError::Overflow(Atomic::new(u128::MAX)))
        );
    }

    fn terms() -> impl Strategy<Value = SplitTerms> {
        (
            0u16..=10_000,
            prop_oneof![
                (0u16..=10_000).prop_map(GatewayFee::Bps),
                (0u128..=1_000_000).prop_map(|f| GatewayFee::Fixed(Atomic::new(f))),
            ],
        )
            .prop_map(|(creator_bps, gateway_fee)| SplitTerms {
                creator_bps,
                gateway_fee,
            })
    }

    proptest! {
        #[test]
        fn parts_sum_to_gross_and_none_is_negative(gross in any::<u128>(), terms in terms()) {
            match Split::compute(Atomic::new(gross), &terms) {
                Ok(s) => {
                    // Atomic is unsigned, so "not negative" means the subtraction never wrapped:
                    // the parts sum back to the gross exactly.
                    prop_assert_eq!(s.total(), Some(Atomic::new(gross)));
                    prop_assert_eq!(s.creator.get(), gross * terms.creator_bps as u128 / 10_000);
                    prop_assert!(s.worker.get() <= gross);
                }
                Err(SplitError::Overflow(_)) => {
                    prop_assert!(gross.checked_mul(10_000).is_none());
                }
                Err(SplitError::ExceedsGross { commission, fee, .. }) => {
                    prop_assert!(commission.get().saturating_add(fee.get()) > gross);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn bps_fees_never_exceed_a_modest_gross(gross in 0u128..=u128::MAX / 10_000, c in 0u16..=5_000, g in 0u16..=5_000) {
            let t = SplitTerms { creator_bps: c, gateway_fee: GatewayFee::Bps(g) };
            let s = Split::compute(Atomic::new(gross), &t).unwrap();
            prop_assert_eq!(s.total(), Some(Atomic::new(gross)));
        }
    }
}
