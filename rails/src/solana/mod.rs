//! Solana rails on SPL Token: [`direct`] (`solana-direct`, the x402 SVM `exact` scheme with the
//! gateway as fee payer) and [`escrow`] (`solana-task-escrow`, a per-task escrow of d402's program
//! released by the validator's signature or refunded after its deadline), with every money-moving transaction written to the core [`crate::outbox`] before it is sent
//! ([`submit`]).
//!
//! Only the light client crates are used here (`solana-rpc-client`, `solana-sdk`, the SPL
//! `*-interface` crates); the validator lives in the `devnet/solana-chain` crate (the local validator the devnet and the tests start).
//!
//! ## Why not `x402-chain-solana`
//! `x402-chain-solana` 2.0.2 (with `x402-types` 2) was checked against our pins: its
//! `solana-client ^3.1.4` would resolve to our 3.1.12, but its facilitator pulls the full
//! `spl-token` 9 and `spl-token-2022` 11 program crates (and with them the zk-ElGamal SDK) where the
//! `*-interface` crates suffice; it is bound to its own provider and config types (keypair, RPC
//! client, chain registry) rather than our book; and it has no replay or duplicate-settlement
//! protection of its own and no insufficient-balance check before simulation.
//! Wire types are the core's (`x402-types` v2 `PaymentRequirements`). The checks here follow
//! its v1/v2 facilitator and the x402 SVM spec (layout, fee-payer isolation, compute caps), and
//! the error reasons are the x402 SVM strings ([`direct::VerifyError::reason`]).
//!
//! ## Programs
//! `solana-direct` uses only the SPL programs. [`escrow`] and [`channel`] run on d402's own
//! program (`d402-program`, sBPF assembly in `rails/program`), which enforces their bounds on
//! chain: the escrow's deadline and release key, the channel's vouchers and roots.

pub mod channel;
pub mod direct;
pub mod escrow;
pub mod submit;
pub mod wire;

use solana_commitment_config::CommitmentConfig;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::Error as ClientError;
use solana_rpc_client_api::config::RpcSimulateTransactionConfig;
use solana_transaction::versioned::VersionedTransaction;

/// Simulates `tx` exactly as it would be sent (its signatures checked, its own blockhash) against
/// `confirmed` state. `Ok(Some(reason))` when it would fail on chain.
pub(crate) async fn simulate(
    rpc: &RpcClient,
    tx: &VersionedTransaction,
) -> Result<Option<String>, ClientError> {
    let simulation = rpc
        .simulate_transaction_with_config(
            tx,
            RpcSimulateTransactionConfig {
                sig_verify: true,
                replace_recent_blockhash: false,
                commitment: Some(CommitmentConfig::confirmed()),
                ..RpcSimulateTransactionConfig::default()
            },
        )
        .await?
        .value;
    Ok(simulation.err.map(|e| format!("{e:?}")))
}

/// The SPL Token program.
pub const TOKEN_PROGRAM_ID: Pubkey = spl_token_interface::ID;

/// The SPL Memo program (v2), the one extra instruction a payment may carry.
pub const MEMO_PROGRAM_ID: Pubkey =
    Pubkey::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");

/// The x402 / CAIP-2 network id of a cluster: `solana:` and the first 32 characters of the base58
/// genesis hash (mainnet: `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp`).
pub fn caip2(genesis_hash: &solana_hash::Hash) -> String {
    let text = genesis_hash.to_string();
    format!("solana:{}", text.get(..32).unwrap_or(&text))
}
