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

use std::fmt;

use alloy::primitives::{B256, keccak256};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::delivery::{Accepted, Delivery};
use crate::error::RailError;
use crate::outbox::{SettlementRecord, SettlementState};
use crate::refund::{PaidTask, Refund};
use crate::split::{GatewayFee, Split, SplitTerms};

/// x402 v2 payment requirements, one entry of a 402's `accepts` (from the `x402-types` crate, with
/// string fields so that every rail and chain shares one type).
pub type PaymentRequirements = x402_types::proto::v2::PaymentRequirements;
/// x402 v2 payment payload (the decoded `PAYMENT-SIGNATURE` header); `payload` is scheme specific
/// and each rail parses it.
pub type PaymentPayload =
    x402_types::proto::v2::PaymentPayload<PaymentRequirements, serde_json::Value>;
/// The body of a 402 (`PAYMENT-REQUIRED`, base64 JSON).
pub type PaymentRequired = x402_types::proto::v2::PaymentRequired;
pub use x402_types::chain::ChainId;
pub use x402_types::proto::v2::{ResourceInfo, X402Version2};

/// A task's identity on chain: 32 bytes. Escrow contracts and vouchers are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub B256);

impl TaskId {
    /// The task id for a d402 task label (e.g. its intent CID): keccak256 of the label's bytes.
    pub fn from_label(label: &str) -> TaskId {
        TaskId(keccak256(label.as_bytes()))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What kind of rail, as a gateway describes it to buyers (`kind` in its well-known document).
/// Behaviour is asked of the rail's own methods; nothing outside this crate branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RailKind {
    /// The buyer pays one payee directly (`exact`). Refuses commission-bearing terms.
    Direct,
    /// Funds are held per task and released as a split or refunded.
    TaskEscrow,
    /// A buyer-funded channel; vouchers are claimed in batches.
    Channel,
}

/// The creator's cut of a commission-bearing capability, from its signed registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commission {
    /// The creator's wallet on this rail's chain.
    pub wallet: String,
    pub bps: u16,
}

/// What the gateway sells one task for: server-owned policy, never taken from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terms {
    pub task_id: TaskId,
    /// Gross price in the asset's atomic units.
    pub price: Atomic,
    /// Direct rails: who is paid. Escrow and channel rails: the worker expected to be paid
    /// (the validator names the actual worker when the split is released).
    pub pay_to: String,
    /// `Some` for a commission-bearing capability.
    pub commission: Option<Commission>,
    pub gateway_fee: GatewayFee,
    /// How long the buyer's signed payment stays valid.
    pub max_timeout_seconds: u64,
    /// Unix time after which an unfinished task may be refunded (escrow rails).
    pub deadline_unix: u64,
}

impl Terms {
    /// The split these terms imply.
    pub fn split(&self) -> Result<Split, RailError> {
        let terms = SplitTerms {
            creator_bps: self.commission.as_ref().map_or(0, |c| c.bps),
            gateway_fee: self.gateway_fee,
        };
        Ok(Split::compute(self.price, &terms)?)
    }

    /// What a direct rail checks before it issues requirements: one payee, so no commission,
    /// and the task's price within the safety caps.
    pub fn check_direct(&self, rail: &'static str, caps: &SafetyCaps) -> Result<(), RailError> {
        if let Some(c) = &self.commission
            && c.bps > 0
        {
            return Err(RailError::CommissionOnDirectRail { rail, bps: c.bps });
        }
        caps.check(&Exposure {
            task_budget: self.price,
            ..Exposure::default()
        })?;
        Ok(())
    }

    /// Whether the terms owe a creator anything.
    pub fn bears_commission(&self) -> bool {
        self.commission.as_ref().is_some_and(|c| c.bps > 0)
    }
}

/// A payment that passed verification: ready to settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub rail: String,
    pub network: String,
    /// Who paid.
    pub payer: String,
    pub amount: Atomic,
    /// The deterministic settlement identity (outbox key), e.g. the EIP-3009 nonce.
    pub settlement_id: String,
    pub requirements: PaymentRequirements,
    /// The scheme payload, as verified, to settle with.
    pub payload: serde_json::Value,
}

/// One transfer a settlement made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub to: String,
    pub amount: Atomic,
}

/// Money moved (or locked) on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settlement {
    pub rail: String,
    pub network: String,
    pub settlement_id: String,
    /// Transactions sent for this settlement; empty when nothing had to be sent (a voucher
    /// accepted into a channel, an outbox entry already confirmed). Direct payouts list the
    /// transaction of every payout, including one an earlier attempt sent, so that a retried
    /// release still names where the money went.
    pub tx_hashes: Vec<String>,
    pub payer: Option<String>,
    pub payouts: Vec<Payout>,
    /// Gas or fee paid by the settling party, in the chain's native atomic units (wei).
    pub fee_native: u128,
}

/// What [`Rail::finalize`] releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Task escrow: pay the task's split to `workers`, approved by the validator role's signature.
    Task {
        task_id: TaskId,
        /// Who shares the worker amount: a quorum's agreeing workers, in the order the
        /// validator signed them.
        workers: Vec<String>,
        validator_signature: Vec<u8>,
    },
    /// Channel: claim every voucher accepted so far, in as few transactions as possible.
    PendingVouchers,
    /// Direct rails: pay out of the wallet the buyer paid (`from`, the gateway's `payTo`) after
    /// settlement: the worker's net when a task is delivered, the whole price back to the buyer
    /// when it fails. Each payout is recorded in the outbox before it is sent and is idempotent
    /// per (task, recipient): a retry or a restart pays each recipient of a task at most once.
    Payouts {
        task_id: TaskId,
        /// The wallet paid out of; the rail must hold its key (on `base-x402-direct`, the
        /// facilitator key), or it refuses with [`RailError::PayoutSource`].
        from: String,
        payouts: Vec<Payout>,
    },
}

impl Release {
    /// A direct rail's payouts: (task, wallet paid out of, payouts); the escrow and channel
    /// forms are not something `rail` does.
    pub fn payouts(&self, rail: &'static str) -> Result<(&TaskId, &str, &[Payout]), RailError> {
        match self {
            Release::Payouts {
                task_id,
                from,
                payouts,
            } => Ok((task_id, from, payouts)),
            _ => Err(RailError::Unsupported {
                rail,
                operation: "release escrows or vouchers",
            }),
        }
    }
}

/// What a restart's reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// In flight and found executed on chain: now confirmed.
    pub confirmed: Vec<String>,
    /// In flight and not on chain but still valid: sent again.
    pub resent: Vec<String>,
    /// In flight and no longer possible: marked failed.
    pub failed: Vec<String>,
    /// In flight, still possible, but could not be finished now (e.g. a payout the wallet
    /// cannot cover yet): left in flight for the next attempt, which the gateway makes when it
    /// resumes the task.
    pub pending: Vec<String>,
}

/// A payment rail. See the module docs for the flow.
#[async_trait]
pub trait Rail: Send + Sync {
    /// The rail's name as the gateway advertises it: `base-x402-direct`, `base-task-escrow`,
    /// `base-channel`, `solana-direct`, …
    fn name(&self) -> &'static str;

    /// What kind of rail, for describing it (see [`RailKind`]).
    fn kind(&self) -> RailKind;

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
}
