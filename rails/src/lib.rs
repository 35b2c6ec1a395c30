//! d402-rails: payment rails. A rail turns a price into money moved:
//! `challenge → verify → settle → (finalize | refund)` (see [`rail`]), with split settlement
//! between worker, creator and gateway ([`split`]), the safety caps of seed 000 ([`caps`]) and a
//! crash-safe settlement outbox ([`outbox`]).
//!
//! - [`amount`]: [`Atomic`] amounts; `'$0.01'` prices converted exactly.
//! - [`split`]: worker net, creator commission, gateway fee.
//! - [`caps`]: `D402_SAFETY_*` caps, checked before any challenge.
//! - [`rail`]: the [`Rail`] trait and the x402 wire types.
//! - [`delivery`]: what a rail does once a task's result is accepted.
//! - [`refund`]: how a failed task's payment goes back.
//! - [`outbox`]: settlement intents in redb, written before a transaction is sent.
//! - [`evm`]: Base/EVM rails on alloy: `base-x402-direct`, `base-task-escrow`, `base-channel`.
//!
//! - `solana` (cargo feature `solana`): `solana-direct` and `solana-task-escrow` on SPL Token,
//!   `solana-channel` on d402's program, and [`hybrid`] (`base-x402-solana-channel`: paid on
//!   Base, split on Solana).
//!
//! # Wire types: the `x402-types` crate
//!
//! The x402 v2 wire types (`PaymentRequirements`, `PaymentPayload`, `PaymentRequired`, CAIP-2
//! `ChainId`) come from `x402-types` 2.x, and the EIP-3009 `exact` payload from
//! `x402-chain-eip155` 2.x with its default features off. Both depend only on
//! `alloy-primitives`/`alloy-sol-types` 1.x, the same line alloy 2.x uses, so they add no second
//! copy of alloy. The schemes themselves (verification, settlement) are d402's own: the crates'
//! facilitator needs its own provider stack (`alloy-transport` with throttling, `tower`,
//! `dashmap`), speaks only `exact`, and reports `x402-types` reasons (`invalid_signature`)
//! rather than the x402 spec's (`invalid_exact_evm_payload_signature`), which d402 returns
//! (see [`VerifyError::reason`]); escrow and channel schemes are not x402 schemes at all.
#![deny(unsafe_code)]

pub mod amount;
pub mod caps;
pub mod delivery;
pub mod error;
pub mod evm;
#[cfg(feature = "solana")]
pub mod hybrid;
pub mod open_escrows;
pub mod outbox;
pub mod payment;
pub mod rail;
pub mod refund;
#[cfg(feature = "solana")]
pub mod solana;
pub mod split;

pub use amount::Atomic;
pub use caps::{CapExceeded, Exposure, SafetyCaps};
pub use delivery::{Accepted, Delivery, ValidatorRelease, shares};
pub use error::{RailError, VerifyError};
pub use outbox::{Outbox, SettlementRecord, SettlementState};
pub use payment::{ChannelBook, UnpublishedRoot, WithdrawalClock};
pub use rail::{
    Commission, PaymentPayload, PaymentRequired, PaymentRequirements, Payout, Rail, RailKind,
    ReconcileReport, Release, Settlement, TaskId, Terms, Verified,
};
pub use refund::{PaidTask, Refund};
pub use split::{GatewayFee, Split, SplitTerms};
