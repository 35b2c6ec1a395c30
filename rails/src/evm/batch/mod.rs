//! x402's `batch-settlement` scheme on EVM: a buyer deposits once into a channel of the
//! settlement contract (`rails/contracts/BatchSettlement.sol`) and pays each request with a
//! cumulative voucher that the gateway checks locally; the gateway claims many channels'
//! vouchers in one transaction and sweeps what it claimed to its wallet.
//!
//! ```text
//! config ─▶ channel id (EIP-712 hash of the immutable ChannelConfig)
//! payload ─▶ deposit (ERC-3009 authorization + first voucher) | voucher | refund
//! ```
//!
//! The scheme fixes the contracts' addresses (the stock client hard-codes them): on a public
//! chain they are CREATE2 deployments; on anvil the runtime code is placed there
//! (`anvil_setCode`), which works because neither contract keeps constructor state.

mod claims;
pub mod config;
pub mod ledger;
pub mod payer;
pub mod payload;
pub mod rail;

use alloy::primitives::{Address, address};

pub use config::{ChannelConfig, channel_id, voucher_digest};
pub use payload::{BatchPayload, DepositPayload, Erc3009Authorization, SignedVoucher};

/// The scheme's name in x402 requirements.
pub const SCHEME: &str = "batch-settlement";
/// The settlement contract's canonical address.
pub const SETTLEMENT_ADDRESS: Address = address!("4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");
/// The ERC-3009 deposit collector's canonical address: the `to` of the payer's authorization.
pub const ERC3009_COLLECTOR_ADDRESS: Address = address!("4020806089470a89826cB9fB1f4059150b550004");
/// The withdraw delay bounds the contract enforces (15 minutes to 30 days).
pub const MIN_WITHDRAW_DELAY: u64 = 900;
pub const MAX_WITHDRAW_DELAY: u64 = 2_592_000;
