//! The d402 gateway and buyer client as a library, so that the `d402` binary, the devnet and the
//! end-to-end tests share one implementation. The binary itself is the `d402` crate (`cli/`), the
//! devnet the `d402-devnet` crate.
//!
//! - [`gateway`]: sells the peer network's capabilities over HTTP for x402 payments.
//! - [`client`]: a buyer that answers a 402, pays within a spend cap and waits for the result.
//! - [`ops`]: the operations snapshot a gateway publishes, and when it is an alert.
//! - [`published`]: the folder a published capability lives in (manifest, registration, component).
//! - [`channel_wallet`], [`solana_channel_wallet`]: a buyer's channels on disk (batch-settlement,
//!   solana-channel).
//! - [`release`]: the `base-task-escrow` release key as a validator node holds it.
#![deny(unsafe_code)]

pub mod channel_wallet;
pub mod client;
pub mod gateway;
pub mod ops;
pub mod published;
pub mod purchase_error;
pub mod release;
pub mod solana_channel_wallet;
pub mod worker_gate;
