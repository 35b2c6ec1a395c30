//! `solana-channel`: payment channels on d402's own program (`d402-program`, in `rails/program`).
//!
//! A buyer funds a channel's vault once and pays each request with a cumulative Ed25519 voucher,
//! checked here without a chain call ([`voucher`]) and committed to redb before the response
//! leaves ([`ledger`]). Each paid task's split (worker net, creator commission, gateway fee) is
//! allocated to its claimants in the ledger, once; the gateway's settlement key (the channel's
//! authority) signs a root over the cumulative allocations, and the gateway or the maintainer
//! publishes it and cranks each claimant's withdrawal ([`roots`]). The program bounds every root by
//! the payer's voucher and the vault, so neither the gateway nor the maintainer can take more than
//! the buyer signed for.

pub mod incident;
pub mod ledger;
pub mod maintainer;
pub mod payer;
pub mod publisher;
pub mod rail;
pub mod roots;
pub mod voucher;

/// The on-chain program the channels run on (account layouts, instruction builders).
pub use d402_program as program;
