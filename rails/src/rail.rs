//! The [`Rail`] abstraction: how a price becomes money moved.
//!
//! ```text
//! challenge(terms) ─▶ PaymentRequirements   (in the 402's PAYMENT-REQUIRED accepts[])
//! verify(payload, requirements) ─▶ Verified (off chain, plus read-only chain calls)
//! settle(verified) ─▶ Settlement            (direct: the transfer; escrow: funds the task;
//!                                            channel: accepts the voucher for the next claim)
//! finalize(release) ─▶ Settlement           (escrow: pays the split; channel: batch claim;
//!                                            direct: pays the worker, or the buyer back,
//!                                            out of the payee's wallet)
//! refund(task) ─▶ Settlement                (escrow: after the deadline, to the buyer)
//! ```
//!
//! Around those steps a rail owns its whole lifecycle, so that a gateway asks and never
//! branches on what kind of rail it holds: whether a challenge is bound to one task
//! ([`Rail::challenge_per_task`]), what happens once a result is accepted ([`Rail::deliver`]),
//! how a failed task is refunded ([`Rail::refund_buyer`]) and where a settlement stands
//! ([`Rail::settlement_state`]).
//!
//! Rails are object safe (`Box<dyn Rail>`), so a gateway can hold the rails it was configured
//! with in one list whatever chain they run on.

use async_trait::async_trait;

pub use crate::payment::*;

use crate::delivery::{Accepted, Delivery};
use crate::error::RailError;
use crate::outbox::{SettlementRecord, SettlementState};
use crate::refund::{PaidTask, Refund};
use crate::split::{GatewayFee, Split};

/// A payment rail. See the module docs for the flow.
#[async_trait]
pub trait Rail: Send + Sync {
    /// The rail's name as the gateway advertises it: `base-x402-direct`, `base-task-escrow`,
    /// `base-channel`, `solana-direct`, …
    fn name(&self) -> &'static str;

    /// What kind of rail, for describing it (see [`RailKind`]).
    fn kind(&self) -> RailKind;

    /// The network workers and creators are paid on: the rail's own, except on a rail that takes
    /// the payment on one chain and pays the split on another (`base-x402-solana-channel`). The
    /// gateway picks payout wallets for this network.
    fn payout_network(&self) -> ChainId {
        self.network()
    }

    /// The x402 scheme its requirements carry (`exact`, `d402-task-escrow`, …).
    fn scheme(&self) -> &'static str;

    /// The CAIP-2 network, e.g. `eip155:31337`.
    fn network(&self) -> ChainId;

    /// The payment requirements for `terms`, after the safety caps and the commission policy
    /// have been checked. A direct rail refuses commission-bearing terms
    /// ([`RailError::CommissionOnDirectRail`]).
    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError>;

    /// Whether each challenge is bound to one task (its terms, deadline and input), so that the
    /// gateway must record it and accept only payments answering a recorded one. A direct rail
    /// asks the same of every task of a capability and says no: its requirements are issued
    /// afresh and checked field by field, and a stock x402 v1 `X-PAYMENT` can answer them.
    fn challenge_per_task(&self) -> bool {
        true
    }

    /// Whether this rail can carry a creator's commission (split settlement). A direct rail
    /// pays one payee and refuses commission-bearing terms, so the gateway lists no such
    /// capability on it.
    fn splits_commission(&self) -> bool {
        true
    }

    /// The split fixed when a payment is verified, for a rail that divides it later itself (a
    /// direct rail pays the worker net out of `payTo`): fixed now so that a restart pays the
    /// same net whatever the policy says by then. `None` when the split is in the payment's own
    /// terms (escrow) or not the rail's to make.
    fn split_at_payment(
        &self,
        verified: &Verified,
        gateway_fee: GatewayFee,
    ) -> Result<Option<Split>, RailError> {
        let _ = (verified, gateway_fee);
        Ok(None)
    }

    /// What the validator needs to sign this task's release, sent with the task (a task escrow
    /// whose release key is not in this process); `None` when the rail needs no signature from
    /// the network.
    fn release_context(&self, requirements: &PaymentRequirements) -> Option<serde_json::Value> {
        let _ = requirements;
        None
    }

    /// Checks a buyer's payment against the requirements the gateway issued. Refusals are
    /// [`RailError::Verify`] with an x402 reason string.
    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError>;

    /// Moves (or locks) the verified payment on chain, through the outbox.
    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError>;

    /// Whether [`Rail::finalize`] takes [`Release::Payouts`]: a direct rail that can pay
    /// workers, and refund buyers, out of the payee's wallet. A direct rail without it keeps
    /// the whole payment in `payTo`, and a failed task's payment is recorded as owed.
    fn pays_out(&self) -> bool {
        false
    }

    /// Whether `wallet` is an address this rail can pay (a worker's payout wallet, checked
    /// before a task is released so that an unpayable worker means a refund, not a payout
    /// retried for ever).
    fn accepts_wallet(&self, wallet: &str) -> bool {
        let _ = wallet;
        true
    }

    /// Escrow and channel rails: releases held funds. Direct rails: pays out of the payee's
    /// wallet ([`Release::Payouts`]).
    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        let _ = release;
        Err(RailError::Unsupported {
            rail: self.name(),
            operation: "finalize",
        })
    }

    /// Escrow rails: returns an unfinished task's funds to the buyer after its deadline.
    async fn refund(&self, task_id: &TaskId) -> Result<Settlement, RailError> {
        let _ = task_id;
        Err(RailError::Unsupported {
            rail: self.name(),
            operation: "refund",
        })
    }

    /// Settles an accepted task's work the rail's way (see [`crate::delivery`]). An `Err` is
    /// transient (the chain unreachable, an earlier release still in flight) unless
    /// [`RailError::is_final`]: the gateway retries a transient one and refunds on a final one.
    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        let _ = accepted;
        Ok(Delivery::Kept)
    }

    /// Whether a failed task's payment can be given back ([`Rail::refund_buyer`]); when not, the
    /// gateway records it as owed to the buyer.
    fn refunds(&self) -> bool {
        false
    }

    /// Gives a failed task's payment back (see [`crate::refund`]).
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        let _ = task;
        Err(RailError::Unsupported {
            rail: self.name(),
            operation: "refund",
        })
    }

    /// Where settlement `id` stands in this rail's outbox (`None`: never recorded), so that a
    /// restart knows whether a payment was taken.
    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError>;

    /// Every settlement this rail has in flight, for the operator's view.
    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError>;

    /// Reconciles this rail's in-flight outbox entries against the chain. Call on start.
    async fn reconcile(&self) -> Result<ReconcileReport, RailError>;

    /// Periodic upkeep the gateway runs on its sweep: a channel rail claims the vouchers that
    /// are due and sweeps them to its wallet. Nothing by default.
    async fn maintain(&self) -> Result<(), RailError> {
        Ok(())
    }

    /// [`Rail::maintain`] while the incident switch is on (seed 000): what moves value already
    /// committed (claims, roots) goes on, and nothing new is opened or funded. The same as
    /// `maintain` unless the rail funds something itself.
    async fn maintain_under_incident(&self) -> Result<(), RailError> {
        self.maintain().await
    }

    /// A payment payload that buys nothing but acts on the buyer's channel (x402
    /// `batch-settlement`'s cooperative refund): the rail carries it out and answers with the
    /// settlement for the `PAYMENT-RESPONSE`. Refused by rails without channels.
    async fn channel_operation(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Settlement, RailError> {
        let _ = (payload, requirements);
        Err(RailError::Unsupported {
            rail: self.name(),
            operation: "channel operations",
        })
    }

    /// A channel rail's unclaimed value and running withdrawal clocks (`None`: not a channel).
    fn channel_book(&self) -> Result<Option<ChannelBook>, RailError> {
        Ok(None)
    }
}
