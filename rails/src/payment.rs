//! What a payment is made of: the x402 v2 wire types, a task's terms and id, a verified payment,
//! the money a settlement moved and what a release pays. Apart from the [`crate::Rail`] trait
//! so that the lifecycle types ([`crate::delivery`], [`crate::refund`]) and the trait can all
//! name them without naming each other.

use std::fmt;

use alloy::primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};

use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::error::RailError;
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
    /// Scheme-specific fields of the x402 `PAYMENT-RESPONSE`'s `extra` (on `batch-settlement`:
    /// `chargedAmount` and `channelState`, from which the stock client keeps its running total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
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

/// What a channel rail holds that is not yet on chain, for `/metrics` and `ops-status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelBook {
    pub channels: usize,
    /// Accepted vouchers' value not yet claimed on chain.
    pub unclaimed: Atomic,
    /// Channels whose payer started a withdrawal while something is unclaimed: each must be
    /// claimed before its clock runs out.
    pub withdrawals: Vec<WithdrawalClock>,
    /// Channels whose allocations grew past their last published root (`solana-channel`): a
    /// root that stays unpublished leaves claimants unable to withdraw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpublished: Vec<UnpublishedRoot>,
    /// A channel the gateway funds itself (`base-x402-solana-channel`): what it can still
    /// allocate before a top-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<Atomic>,
}

/// Allocations of a channel that no published root carries yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnpublishedRoot {
    pub channel: String,
    pub amount: Atomic,
    /// Since when (unix ms; as far as this gateway process has seen).
    pub since_ms: u64,
}

/// A payer's timed withdrawal running on a channel that still owes a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawalClock {
    pub channel: String,
    /// When the payer may take the unclaimed balance (what is left is derived from it when read).
    pub ends_unix: u64,
    pub unclaimed: Atomic,
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
