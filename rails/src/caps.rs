//! Safety caps (seed 000, "Balance caps"): limits that bound what a beta gateway can lose or hold,
//! checked before a challenge is issued, because a challenge is an offer the buyer may pay at
//! once; refusing afterwards would strand the buyer's money.
//!
//! | variable | unit | default |
//! |---|---|---|
//! | `D402_SAFETY_MAX_TASK_BUDGET` | a price in the asset's whole units (`$0.50`, `0.5`) | no cap |
//! | `D402_SAFETY_MAX_OPEN_TASK_ESCROW_BUDGET` | a price, summed over open escrows | no cap |
//! | `D402_SAFETY_MAX_CHANNEL_INITIAL_FUNDING_ATOMIC_UNITS` | atomic units | no cap |
//! | `D402_SAFETY_MAX_CHANNEL_BALANCE_ATOMIC_UNITS` | atomic units | no cap |
//! | `D402_MAX_CREATOR_COMMISSION_BPS` | basis points | 2000 |
//!
//! The two budgets are written like prices, as the gateway's prices are (`'$0.01'`), and converted
//! with the asset's decimals; the channel caps say `ATOMIC_UNITS` in their names and are integers.
//! An unset cap is not enforced; seed 000 asks every public gateway to set them. A cap is a
//! maximum: an amount equal to the cap is allowed.

use crate::amount::{AmountError, Atomic};
use crate::split::BPS_DENOMINATOR;

pub const MAX_TASK_BUDGET: &str = "D402_SAFETY_MAX_TASK_BUDGET";
pub const MAX_OPEN_TASK_ESCROW_BUDGET: &str = "D402_SAFETY_MAX_OPEN_TASK_ESCROW_BUDGET";
pub const MAX_CHANNEL_INITIAL_FUNDING: &str =
    "D402_SAFETY_MAX_CHANNEL_INITIAL_FUNDING_ATOMIC_UNITS";
pub const MAX_CHANNEL_BALANCE: &str = "D402_SAFETY_MAX_CHANNEL_BALANCE_ATOMIC_UNITS";
pub const MAX_CREATOR_COMMISSION_BPS: &str = "D402_MAX_CREATOR_COMMISSION_BPS";
/// Seed 000: "The default cap is 2000 basis points."
pub const DEFAULT_MAX_CREATOR_COMMISSION_BPS: u16 = 2_000;

/// A cap variable that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsConfigError {
    #[error("{var}: {source}")]
    Amount {
        var: &'static str,
        #[source]
        source: AmountError,
    },
    #[error("{var}={value:?} is not a whole number of basis points between 0 and 10000")]
    Bps { var: &'static str, value: String },
}

/// A challenge refused because it would exceed a cap. Each cap is its own variant so that
/// operators can alert on them separately.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    #[error("task budget {requested} exceeds {MAX_TASK_BUDGET} ({cap} atomic units)")]
    TaskBudget { requested: Atomic, cap: Atomic },
    #[error(
        "open task escrows would hold {open_after} atomic units, over {MAX_OPEN_TASK_ESCROW_BUDGET} ({cap})"
    )]
    OpenTaskEscrowBudget { open_after: Atomic, cap: Atomic },
    #[error("channel initial funding {requested} exceeds {MAX_CHANNEL_INITIAL_FUNDING} ({cap})")]
    ChannelInitialFunding { requested: Atomic, cap: Atomic },
    #[error("channel balance would be {balance_after}, over {MAX_CHANNEL_BALANCE} ({cap})")]
    ChannelBalance { balance_after: Atomic, cap: Atomic },
    #[error("creator commission {bps} bps exceeds {MAX_CREATOR_COMMISSION_BPS} ({cap} bps)")]
    CreatorCommission { bps: u16, cap: u16 },
}

/// The caps a gateway enforces. Build with [`SafetyCaps::from_env`] in a node and with
/// [`SafetyCaps::default`] plus field updates in tests (tests never touch the process
/// environment, which other tests read concurrently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyCaps {
    pub max_task_budget: Option<Atomic>,
    pub max_open_task_escrow_budget: Option<Atomic>,
    pub max_channel_initial_funding: Option<Atomic>,
    pub max_channel_balance: Option<Atomic>,
    pub max_creator_commission_bps: u16,
}

impl Default for SafetyCaps {
    /// No balance caps, the default commission cap.
    fn default() -> Self {
        SafetyCaps {
            max_task_budget: None,
            max_open_task_escrow_budget: None,
            max_channel_initial_funding: None,
            max_channel_balance: None,
            max_creator_commission_bps: DEFAULT_MAX_CREATOR_COMMISSION_BPS,
        }
    }
}

/// What a challenge would commit the gateway to, for [`SafetyCaps::check`]. Fields that do not
/// apply to a rail are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The task's gross price.
    pub task_budget: Atomic,
    /// The creator commission the task carries.
    pub creator_bps: u16,
    /// Task escrow rails: the total held by open escrows if this challenge is paid.
    pub open_task_escrow_after: Option<Atomic>,
    /// Channel rails: the funding of a channel being opened.
    pub channel_initial_funding: Option<Atomic>,
    /// Channel rails: the channel's balance after this funding or top-up.
    pub channel_balance_after: Option<Atomic>,
}

impl SafetyCaps {
    /// Reads the caps from the process environment; budgets are converted with the asset's
    /// `decimals`.
    pub fn from_env(decimals: u8) -> Result<Self, CapsConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok(), decimals)
    }

    /// Reads the caps through `lookup` (the environment, a config file, a test's map).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        decimals: u8,
    ) -> Result<Self, CapsConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let price = |var: &'static str| -> Result<Option<Atomic>, CapsConfigError> {
            get(var)
                .map(|v| Atomic::parse_price(&v, decimals))
                .transpose()
                .map_err(|source| CapsConfigError::Amount { var, source })
        };
        let atomic = |var: &'static str| -> Result<Option<Atomic>, CapsConfigError> {
            get(var)
                .map(|v| v.trim().parse::<Atomic>())
                .transpose()
                .map_err(|source| CapsConfigError::Amount { var, source })
        };
        let bps = match get(MAX_CREATOR_COMMISSION_BPS) {
            None => DEFAULT_MAX_CREATOR_COMMISSION_BPS,
            Some(v) => v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|b| *b <= BPS_DENOMINATOR)
                .ok_or(CapsConfigError::Bps {
                    var: MAX_CREATOR_COMMISSION_BPS,
                    value: v,
                })?,
        };
        Ok(SafetyCaps {
            max_task_budget: price(MAX_TASK_BUDGET)?,
            max_open_task_escrow_budget: price(MAX_OPEN_TASK_ESCROW_BUDGET)?,
            max_channel_initial_funding: atomic(MAX_CHANNEL_INITIAL_FUNDING)?,
            max_channel_balance: atomic(MAX_CHANNEL_BALANCE)?,
            max_creator_commission_bps: bps,
        })
    }

    /// Refuses an exposure that exceeds any cap; the first cap exceeded is reported, in the
    /// order of the table above.
    pub fn check(&self, e: &Exposure) -> Result<(), CapExceeded> {
        if let Some(cap) = self.max_task_budget
            && e.task_budget > cap
        {
            return Err(CapExceeded::TaskBudget {
                requested: e.task_budget,
                cap,
            });
        }
        if let (Some(cap), Some(open_after)) =
            (self.max_open_task_escrow_budget, e.open_task_escrow_after)
            && open_after > cap
        {
            return Err(CapExceeded::OpenTaskEscrowBudget { open_after, cap });
        }
        if let (Some(cap), Some(requested)) =
            (self.max_channel_initial_funding, e.channel_initial_funding)
            && requested > cap
        {
            return Err(CapExceeded::ChannelInitialFunding { requested, cap });
        }
        if let (Some(cap), Some(balance_after)) =
            (self.max_channel_balance, e.channel_balance_after)
            && balance_after > cap
        {
            return Err(CapExceeded::ChannelBalance { balance_after, cap });
        }
        if e.creator_bps > self.max_creator_commission_bps {
            return Err(CapExceeded::CreatorCommission {
                bps: e.creator_bps,
                cap: self.max_creator_commission_bps,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn caps(vars: &[(&str, &str)]) -> Result<SafetyCaps, CapsConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SafetyCaps::from_lookup(|k| map.get(k).cloned(), 6)
    }

    #[test]
    fn reads_every_variable_in_its_unit() {
        let c = caps(&[
            (MAX_TASK_BUDGET, "$0.50"),
            (MAX_OPEN_TASK_ESCROW_BUDGET, "20"),
            (MAX_CHANNEL_INITIAL_FUNDING, "5000000"),
            (MAX_CHANNEL_BALANCE, "10000000"),
            (MAX_CREATOR_COMMISSION_BPS, "1500"),
        ])
        .unwrap();
        assert_eq!(c.max_task_budget, Some(Atomic::new(500_000)));
        assert_eq!(c.max_open_task_escrow_budget, Some(Atomic::new(20_000_000)));
        assert_eq!(c.max_channel_initial_funding, Some(Atomic::new(5_000_000)));
        assert_eq!(c.max_channel_balance, Some(Atomic::new(10_000_000)));
        assert_eq!(c.max_creator_commission_bps, 1500);
        assert_eq!(caps(&[]).unwrap(), SafetyCaps::default());
        assert_eq!(SafetyCaps::default().max_creator_commission_bps, 2000);
    }

    #[test]
    fn refuses_unreadable_caps() {
        assert!(matches!(
            caps(&[(MAX_CREATOR_COMMISSION_BPS, "10001")]),
            Err(CapsConfigError::Bps { .. })
        ));
        assert!(matches!(
            caps(&[(MAX_CHANNEL_BALANCE, "$1")]),
            Err(CapsConfigError::Amount { .. })
        ));
        assert!(matches!(
            caps(&[(MAX_TASK_BUDGET, "0.0000001")]),
            Err(CapsConfigError::Amount { .. })
        ));
    }

    /// Each of the five caps refuses one over, allows one under (and the cap itself).
    #[test]
    fn each_cap_refuses_over_and_allows_under() {
        let cap = Atomic::new(1_000);
        let caps = SafetyCaps {
            max_task_budget: Some(cap),
            max_open_task_escrow_budget: Some(cap),
            max_channel_initial_funding: Some(cap),
            max_channel_balance: Some(cap),
            max_creator_commission_bps: 2_000,
        };
        let base = Exposure {
            task_budget: Atomic::new(1),
            ..Exposure::default()
        };
        let over = Atomic::new(1_001);
        let under = Atomic::new(999);
        type Case = (fn(&mut Exposure, Atomic), fn(&CapExceeded) -> bool);
        let cases: [Case; 4] = [
            (
                |e, a| e.task_budget = a,
                |x| matches!(x, CapExceeded::TaskBudget { .. }),
            ),
            (
                |e, a| e.open_task_escrow_after = Some(a),
                |x| matches!(x, CapExceeded::OpenTaskEscrowBudget { .. }),
            ),
            (
                |e, a| e.channel_initial_funding = Some(a),
                |x| matches!(x, CapExceeded::ChannelInitialFunding { .. }),
            ),
            (
                |e, a| e.channel_balance_after = Some(a),
                |x| matches!(x, CapExceeded::ChannelBalance { .. }),
            ),
        ];
        for (set, is) in cases {
            for (amount, ok) in [(over, false), (under, true), (cap, true)] {
                let mut e = base.clone();
                set(&mut e, amount);
                match caps.check(&e) {
                    Ok(()) => assert!(ok, "{e:?} should be refused"),
                    Err(x) => assert!(!ok && is(&x), "{e:?}: {x}"),
                }
            }
        }
        let mut e = base.clone();
        e.creator_bps = 2_001;
        assert_eq!(
            caps.check(&e),
            Err(CapExceeded::CreatorCommission {
                bps: 2_001,
                cap: 2_000
            })
        );
        e.creator_bps = 1_999;
        assert_eq!(caps.check(&e), Ok(()));
    }
}
