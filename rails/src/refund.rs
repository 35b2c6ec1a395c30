//! Giving a failed task's payment back ([`Rail::refund_buyer`]).
//!
//! A task escrow refunds on chain once the task's deadline has passed; a direct rail pays the
//! whole price back out of `payTo` at once; a rail that can do neither leaves the payment owed to
//! the buyer ([`Rail::refunds`] is false). The gateway commits `RefundPending` before it asks,
//! so a restart asks again; every rail answers a repeated refund from its outbox.
//!
//! [`Rail::refund_buyer`]: crate::Rail::refund_buyer
//! [`Rail::refunds`]: crate::Rail::refunds

use crate::payment::{PaymentRequirements, Payout, Release, Settlement, TaskId, Verified};

/// A paid task that failed.
#[derive(Debug, Clone, Copy)]
pub struct PaidTask<'a> {
    /// The gateway's label of the task (the rail's [`TaskId`] is derived from it).
    pub label: &'a str,
    pub requirements: &'a PaymentRequirements,
    pub verified: &'a Verified,
    /// Unix seconds after which the task may be refunded (escrow rails).
    pub deadline_unix: u64,
}

impl PaidTask<'_> {
    pub fn task_id(&self) -> TaskId {
        TaskId::from_label(self.label)
    }

    /// A direct rail's refund: the whole payment back to the payer, out of `payTo`, idempotent
    /// per task like every payout.
    pub(crate) fn payout_back(&self) -> Release {
        Release::Payouts {
            task_id: self.task_id(),
            from: self.requirements.pay_to.clone(),
            payouts: vec![Payout {
                to: self.verified.payer.clone(),
                amount: self.verified.amount,
            }],
        }
    }
}

/// What a refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// The buyer has the money back.
    Refunded(Settlement),
    /// Not yet: the refund is possible from this Unix second on (an escrow's deadline).
    NotBefore(u64),
}
