//! What a rail does once a paid task's result is accepted ([`Rail::deliver`]).
//!
//! Each rail settles the work its own way: a task escrow releases the split on chain, a direct
//! rail leaves the payment in `payTo` and owes the workers their net (paid later in batches,
//! [`Rail::finalize`] with [`Release::Payouts`]), a channel has nothing to move until its next
//! claim. The gateway hands over what it knows ([`Accepted`]) and commits what comes back
//! ([`Delivery`]); it never asks which kind of rail it holds.
//!
//! [`Rail::deliver`]: crate::Rail::deliver
//! [`Rail::finalize`]: crate::Rail::finalize
//! [`Release::Payouts`]: crate::Release::Payouts

use crate::amount::Atomic;
use crate::error::RailError;
use crate::payment::{ChainId, PaymentRequirements, Payout, Settlement, TaskId, Verified};
use crate::split::{GatewayFee, Split, SplitTerms};

/// The release a validator signed inside its verdict (seed 000: the validator's key stays out
/// of the process serving public HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorRelease {
    /// The workers paid, in the order the validator signed them.
    pub workers: Vec<String>,
    pub signature: Vec<u8>,
}

/// A paid task whose result the network accepted.
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    /// The gateway's label of the task (the rail's [`TaskId`] is derived from it).
    pub label: &'a str,
    pub requirements: &'a PaymentRequirements,
    pub verified: &'a Verified,
    /// The split fixed when the payment was verified ([`Rail::split_at_payment`]), if any.
    pub split: Option<Split>,
    /// The agreeing workers' payout wallets on this rail's chain, in the validator's order.
    pub workers: &'a [String],
    /// The release the validator signed, if it signed one.
    pub validator_release: Option<&'a ValidatorRelease>,
}

impl Accepted<'_> {
    pub fn task_id(&self) -> TaskId {
        TaskId::from_label(self.label)
    }
}

/// What became of an accepted task's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Released on chain now (a task escrow's split).
    Released(Settlement),
    /// The payment stays with the payee, which owes these payouts out of `from`; the gateway
    /// commits them with the delivery and pays them in batches.
    Owed { from: String, payouts: Vec<Payout> },
    /// Nothing moves now: the payment already rests where it belongs, or a later claim takes it.
    Kept,
    /// This rail cannot pay for the work (no signed release, no payable worker): the buyer is
    /// refunded instead. The reason is recorded on the task.
    Refused(String),
}

/// A direct rail's delivery: the worker net (gross less the gateway's fee) shared by the agreeing
/// workers the rail can pay, owed out of `payTo`.
/// `accepts` is the rail's check of a payout wallet on `network`.
pub(crate) fn owe_workers(
    network: &ChainId,
    accepts: impl Fn(&str) -> bool,
    accepted: &Accepted<'_>,
) -> Delivery {
    let workers: Vec<String> = accepted
        .workers
        .iter()
        .filter(|w| accepts(w))
        .cloned()
        .collect();
    if workers.is_empty() {
        return Delivery::Refused(format!(
            "no worker has a valid payout wallet on {network}: the buyer is refunded"
        ));
    }
    let net = match accepted.split {
        Some(s) => s.worker,
        // Records from before the split was fixed at payment: the whole payment, less nothing.
        None => accepted.verified.amount,
    };
    Delivery::Owed {
        from: accepted.requirements.pay_to.clone(),
        payouts: shares(net, &workers),
    }
}

/// A direct rail's split: no commission (refused at the challenge), the gateway's fee kept in
/// `payTo`, the rest the workers'.
pub(crate) fn direct_split(amount: Atomic, fee: GatewayFee) -> Result<Split, RailError> {
    Ok(Split::compute(
        amount,
        &SplitTerms {
            creator_bps: 0,
            gateway_fee: fee,
        },
    )?)
}

/// The synchronous half of a direct rail's lifecycle, the same for every direct rail: the x402
/// `exact` scheme (the module's `SCHEME`), the same requirements for every task, no commission,
/// the split fixed at payment, refunds out of `payTo`. Expands inside `impl Rail for …`; each
/// direct rail still writes its `deliver` ([`owe_workers`]) and `refund_buyer`
/// ([`crate::refund::PaidTask`]'s payout back), which `async_trait` must see.
macro_rules! direct_lifecycle {
    () => {
        direct_lifecycle!(Direct);
    };
    ($kind:ident) => {
        fn kind(&self) -> $crate::payment::RailKind {
            $crate::payment::RailKind::$kind
        }

        fn scheme(&self) -> &'static str {
            SCHEME
        }

        fn challenge_per_task(&self) -> bool {
            false
        }

        fn splits_commission(&self) -> bool {
            false
        }

        fn split_at_payment(
            &self,
            verified: &$crate::payment::Verified,
            gateway_fee: $crate::split::GatewayFee,
        ) -> Result<Option<$crate::split::Split>, $crate::error::RailError> {
            $crate::delivery::direct_split(verified.amount, gateway_fee).map(Some)
        }

        fn refunds(&self) -> bool {
            true
        }
    };
}
pub(crate) use direct_lifecycle;

/// An amount shared equally among `wallets` (the remainder to the first; a wallet named twice
/// gets both shares, in one payout). Shares of nothing are left out, so the payouts sum to
/// `amount` exactly. A quorum's agreeing workers share a task's worker net this way.
pub fn shares(amount: Atomic, wallets: &[String]) -> Vec<Payout> {
    let n = wallets.len().max(1) as u128;
    let (each, rest) = (amount.get() / n, amount.get() % n);
    let mut payouts: Vec<Payout> = Vec::new();
    for (i, w) in wallets.iter().enumerate() {
        let share = each + if i == 0 { rest } else { 0 };
        match payouts.iter_mut().find(|p| p.to == *w) {
            Some(p) => p.amount = Atomic::new(p.amount.get() + share),
            None => payouts.push(Payout {
                to: w.clone(),
                amount: Atomic::new(share),
            }),
        }
    }
    payouts.retain(|p| p.amount.get() > 0);
    payouts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_shares_the_worker_net() {
        let w = |s: &str| s.to_string();
        let amounts = |p: &[Payout]| {
            p.iter()
                .map(|o| (o.to.clone(), o.amount.get()))
                .collect::<Vec<_>>()
        };
        // Equal shares, the remainder to the first worker, nothing lost or added.
        let p = shares(Atomic::new(10), &[w("a"), w("b"), w("c")]);
        assert_eq!(amounts(&p), [(w("a"), 4), (w("b"), 3), (w("c"), 3)]);
        // One wallet behind two workers gets both shares, in one entry.
        let p = shares(Atomic::new(9), &[w("a"), w("b"), w("a")]);
        assert_eq!(amounts(&p), [(w("a"), 6), (w("b"), 3)]);
        // Shares of nothing are not owed.
        let p = shares(Atomic::new(1), &[w("a"), w("b")]);
        assert_eq!(amounts(&p), [(w("a"), 1)]);
    }
}
