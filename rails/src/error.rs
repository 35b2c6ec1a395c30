//! The crate's errors: [`RailError`] at the boundary, [`VerifyError`] for a payment refused by
//! verification, carrying the reason string a 402 response or a facilitator reply puts in its
//! `invalidReason`.

use crate::amount::{AmountError, Atomic};
use crate::caps::CapExceeded;
use crate::outbox::OutboxError;
use crate::split::SplitError;

/// Why a payment was refused. [`VerifyError::reason`] gives the machine-readable reason: the x402
/// spec's string where the spec defines one (`invalid_exact_evm_payload_*`, `insufficient_funds`,
/// `invalid_network`, …), otherwise the `x402-types` crate's (`asset_mismatch`,
/// `transaction_simulation`), otherwise a d402 string (channels, escrows, replays), documented on
/// the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `unsupported_scheme`
    #[error("scheme {got:?} is not this rail's ({expected})")]
    Scheme { expected: String, got: String },
    /// `invalid_network`
    #[error("network {got} is not this rail's ({expected})")]
    Network { expected: String, got: String },
    /// `invalid_payload`
    #[error("payload is malformed: {0}")]
    Payload(String),
    /// `invalid_payment_requirements`: the `accepted` requirements are not the ones issued.
    #[error("the accepted requirements differ from the ones issued: {0}")]
    Requirements(String),
    /// `invalid_exact_evm_payload_signature`
    #[error("signature does not recover to {expected}")]
    Signature { expected: String },
    /// `invalid_exact_evm_payload_authorization_value`
    #[error("authorized {got} atomic units, the price is {expected}")]
    Value { expected: Atomic, got: Atomic },
    /// `invalid_exact_evm_payload_authorization_valid_before`: expired, or expiring before it can
    /// be settled.
    #[error("authorization expired (validBefore {valid_before}, now {now})")]
    Expired { valid_before: u64, now: u64 },
    /// `invalid_exact_evm_payload_authorization_valid_after`
    #[error("authorization not valid yet (validAfter {valid_after}, now {now})")]
    NotYetValid { valid_after: u64, now: u64 },
    /// `invalid_exact_evm_payload_recipient_mismatch`
    #[error("authorization pays {got}, the payee is {expected}")]
    Recipient { expected: String, got: String },
    /// `asset_mismatch`
    #[error("asset {got} is not this rail's ({expected})")]
    Asset { expected: String, got: String },
    /// `invalid_exact_evm_payload_nonce_mismatch`: an escrow authorization whose nonce is not the
    /// hash of the task's terms (the money would not be bound to the task).
    #[error("nonce is not bound to the task's terms")]
    Nonce,
    /// `insufficient_funds`
    #[error("payer holds {balance}, needs {needed}")]
    InsufficientFunds { balance: Atomic, needed: Atomic },
    /// `authorization_already_used` (d402): the EIP-3009 nonce is used on chain or recorded in
    /// the outbox.
    #[error("authorization {nonce} was already used")]
    AuthorizationUsed { nonce: String },
    /// `transaction_simulation`
    #[error("simulation failed: {0}")]
    Simulation(String),
    /// `channel_unknown` (d402)
    #[error("channel {0} is not open")]
    ChannelUnknown(String),
    /// `channel_closing` (d402): a close was requested; no new vouchers.
    #[error("channel {0} is closing")]
    ChannelClosing(String),
    /// `voucher_not_increasing` (d402): a cumulative voucher that does not add to the last one,
    /// i.e. a replay.
    #[error("voucher total {got} does not exceed the last accepted {last}")]
    VoucherNotIncreasing { last: Atomic, got: Atomic },
    /// `channel_insufficient_balance` (d402)
    #[error("channel holds {deposit}; vouchers would owe {owed}")]
    ChannelBalance { deposit: Atomic, owed: Atomic },
    /// A Solana `exact` refusal, carrying its own reason: the x402 SVM strings
    /// (`invalid_exact_svm_payload_*`, `duplicate_settlement`, …; see
    /// `solana::direct::VerifyError::reason`).
    #[error("{detail}")]
    Svm {
        reason: &'static str,
        detail: String,
    },
    /// A `batch-settlement` refusal with the scheme's own reason
    /// (`invalid_batch_settlement_evm_*`). `corrective` holds the fields the scheme's corrective
    /// 402 adds to the requirements' `extra` (`channelState`, `voucherState`) when the client's
    /// cumulative amount is out of step with the server's.
    #[error("{detail}")]
    Batch {
        reason: &'static str,
        detail: String,
        corrective: Option<Box<serde_json::Value>>,
    },
}

impl VerifyError {
    /// The machine-readable reason (see the enum docs).
    pub fn reason(&self) -> &'static str {
        use VerifyError::*;
        match self {
            Scheme { .. } => "unsupported_scheme",
            Network { .. } => "invalid_network",
            Payload(_) => "invalid_payload",
            Requirements(_) => "invalid_payment_requirements",
            Signature { .. } => "invalid_exact_evm_payload_signature",
            Value { .. } => "invalid_exact_evm_payload_authorization_value",
            Expired { .. } => "invalid_exact_evm_payload_authorization_valid_before",
            NotYetValid { .. } => "invalid_exact_evm_payload_authorization_valid_after",
            Recipient { .. } => "invalid_exact_evm_payload_recipient_mismatch",
            Asset { .. } => "asset_mismatch",
            Nonce => "invalid_exact_evm_payload_nonce_mismatch",
            InsufficientFunds { .. } => "insufficient_funds",
            AuthorizationUsed { .. } => "authorization_already_used",
            Simulation(_) => "transaction_simulation",
            ChannelUnknown(_) => "channel_unknown",
            ChannelClosing(_) => "channel_closing",
            VoucherNotIncreasing { .. } => "voucher_not_increasing",
            ChannelBalance { .. } => "channel_insufficient_balance",
            Svm { reason, .. } => reason,
            Batch { reason, .. } => reason,
        }
    }

    /// Fields a refusal adds to the `extra` of the fresh requirements answered with it (the
    /// scheme's corrective 402), if any.
    pub fn requirements_extra(&self) -> Option<&serde_json::Value> {
        match self {
            VerifyError::Batch {
                corrective: Some(c),
                ..
            } => Some(c),
            _ => None,
        }
    }
}

/// Everything a rail can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum RailError {
    #[error("payment refused ({reason}): {0}", reason = .0.reason())]
    Verify(#[from] VerifyError),
    #[error("challenge refused by a safety cap: {0}")]
    Cap(#[from] CapExceeded),
    #[error(
        "a commission-bearing capability ({bps} bps) cannot be sold on the direct rail {rail}: use split settlement"
    )]
    CommissionOnDirectRail { rail: &'static str, bps: u16 },
    #[error("split: {0}")]
    Split(#[from] SplitError),
    #[error("amount: {0}")]
    Amount(#[from] AmountError),
    #[error("{what} {value:?} is not a valid address on {rail}")]
    Address {
        rail: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("settlement {0} was already recorded: a replay")]
    Replay(String),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("chain: {0}")]
    Chain(String),
    #[error("transaction {tx} reverted: {reason}")]
    Reverted { tx: String, reason: String },
    /// The chain refused to execute a transaction before it was sent (its simulation reverted,
    /// e.g. an escrow release after the deadline): nothing was sent and no nonce was used.
    #[error("the chain would revert {what}: {reason}")]
    WouldRevert { what: String, reason: String },
    #[error("{rail} does not {operation}")]
    Unsupported {
        rail: &'static str,
        operation: &'static str,
    },
    #[error("{0}")]
    Refused(String),
    /// A payout asked of a wallet whose key the rail does not hold: a direct rail pays out of
    /// `payTo` with the facilitator key, so the two must be the same wallet.
    #[error(
        "{rail} pays out with the facilitator key ({signer}), not {from}'s: the facilitator key must be the payTo wallet"
    )]
    PayoutSource {
        rail: &'static str,
        from: String,
        signer: String,
    },
    /// A payout to a recipient already recorded for the task with another amount: each
    /// (task, recipient) is paid once, so the second amount is refused rather than added.
    #[error("payout {id} was recorded for {recorded} atomic units; {requested} was asked")]
    PayoutConflict {
        id: String,
        recorded: Atomic,
        requested: Atomic,
    },
    /// A payout batch asked of a wallet that has not yet received what pays it (a channel rail
    /// pays workers out of claimed vouchers): nothing was sent; retry after the next claim.
    #[error(
        "the wallet holds {held} atomic units, the payout batch needs {needed}: waiting for the next claim"
    )]
    AwaitingFunds { held: Atomic, needed: Atomic },
    /// A rail that allocates into a channel the gateway funds itself cannot cover this task
    /// until its next top-up: the challenge is refused (with this reason) rather than a payment
    /// taken that could not be allocated.
    #[error(
        "the gateway's Solana channel has {headroom} atomic units left, the task needs {needed}: it is being topped up, try again shortly"
    )]
    ChannelHeadroom { headroom: Atomic, needed: Atomic },
    /// Only from a test hook that stops a settlement after the transaction is sent and before
    /// it is recorded, to exercise crash recovery.
    #[error("stopped after sending {tx} (crash simulation)")]
    StoppedAfterSend { tx: String },
}

impl RailError {
    /// Whether the chain refused this for good (a revert, or a simulation that would revert):
    /// retrying cannot help, so a release refused this way is refunded instead.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RailError::WouldRevert { .. } | RailError::Reverted { .. }
        )
    }

    /// The x402 reason when this is a verification refusal.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            RailError::Verify(v) => Some(v.reason()),
            _ => None,
        }
    }
}
