//! Base/EVM rails, on alloy 2.x:
//!
//! - [`direct::BaseDirect`] (`base-x402-direct`): the x402 `exact` scheme, an EIP-3009
//!   `transferWithAuthorization` of a USDC-like token straight to the payee.
//! - [`escrow::BaseTaskEscrow`] (`base-task-escrow`): the `TaskEscrow` contract, funded by an
//!   EIP-3009 authorization bound to the task's terms, released as a split with the validator's
//!   signature, refunded by anyone after the deadline.
//! - [`channel::BaseChannel`] (`base-channel`): the `PaymentChannel` contract, cumulative EIP-712
//!   vouchers checked off chain, claimed in batches.
//!
//! The contracts are in `rails/contracts/*.sol`, compiled by the pinned solcjs into
//! `rails/contracts/artifacts/*.json` (checked in, so building needs no node); [`contracts`] binds
//! them with `sol!`. [`buyer`] has what a paying client signs.

pub mod batch;
pub mod bond;
pub mod buyer;
pub mod channel;
pub mod direct;
pub mod eip712;
pub mod escrow;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;

use crate::amount::Atomic;
use crate::error::{RailError, VerifyError};
use crate::rail::{ChainId, PaymentPayload, PaymentRequirements};

/// The contracts, bound from their checked-in artifacts.
// EIP-3009's functions take seven arguments plus the signature; the bindings mirror the ABI.
#[allow(clippy::too_many_arguments)]
pub mod contracts {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        TestUsd,
        "contracts/artifacts/TestUsd.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        TaskEscrow,
        "contracts/artifacts/TaskEscrow.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        PaymentChannel,
        "contracts/artifacts/PaymentChannel.json"
    );

    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        BatchSettlement,
        "contracts/artifacts/BatchSettlement.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        Erc3009DepositCollector,
        "contracts/artifacts/Erc3009DepositCollector.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        TryAggregate,
        "contracts/artifacts/TryAggregate.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        WorkerBond,
        "contracts/artifacts/WorkerBond.json"
    );

    /// The artifacts as checked in, for hashing and for the test that recompiles them.
    pub const ARTIFACTS: [(&str, &str); 7] = [
        (
            "TestUsd",
            include_str!("../../contracts/artifacts/TestUsd.json"),
        ),
        (
            "TaskEscrow",
            include_str!("../../contracts/artifacts/TaskEscrow.json"),
        ),
        (
            "PaymentChannel",
            include_str!("../../contracts/artifacts/PaymentChannel.json"),
        ),
        (
            "BatchSettlement",
            include_str!("../../contracts/artifacts/BatchSettlement.json"),
        ),
        (
            "Erc3009DepositCollector",
            include_str!("../../contracts/artifacts/Erc3009DepositCollector.json"),
        ),
        (
            "TryAggregate",
            include_str!("../../contracts/artifacts/TryAggregate.json"),
        ),
        (
            "WorkerBond",
            include_str!("../../contracts/artifacts/WorkerBond.json"),
        ),
    ];
}

/// An artifact's code hashes: keccak256 of the creation bytecode and of the runtime bytecode (the
/// latter is what `cast keccak $(cast code <address>)` gives for a deployed contract, so an
/// operator can check a deployment against `rails/contracts/DEPLOYMENTS.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHashes {
    pub contract: &'static str,
    pub creation: alloy::primitives::B256,
    pub runtime: alloy::primitives::B256,
}

/// The code hashes of the checked-in artifacts.
pub fn code_hashes() -> Vec<CodeHashes> {
    contracts::ARTIFACTS
        .iter()
        .map(|(name, json)| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            let hash = |key: &str| {
                let hex = v[key].as_str().unwrap_or_default();
                alloy::primitives::keccak256(alloy::hex::decode(hex).unwrap_or_default())
            };
            CodeHashes {
                contract: name,
                creation: hash("bytecode"),
                runtime: hash("deployedBytecode"),
            }
        })
        .collect()
}

/// The token a rail is paid in: a USDC-like EIP-3009 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub address: Address,
    /// EIP-712 domain name and version, as the token's `DOMAIN_SEPARATOR` uses them (and as x402
    /// puts them in `extra`).
    pub name: String,
    pub version: String,
    pub decimals: u8,
}

/// How a Base/EVM rail reaches its chain.
#[derive(Debug, Clone)]
pub struct EvmChain {
    pub rpc_url: url::Url,
    pub chain_id: u64,
    pub asset: Asset,
}

impl EvmChain {
    /// The CAIP-2 id, `eip155:<chain id>`.
    pub fn network(&self) -> ChainId {
        ChainId::new("eip155", self.chain_id.to_string())
    }

    /// A provider that signs with `key` (the gateway's facilitator or fee-payer key).
    pub fn provider(&self, key: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.rpc_url.clone())
            .erased()
    }

    /// A provider that signs with `key` and asks the chain for the account's pending nonce at
    /// every transaction. alloy's default caches nonces, and takes the next one while the gas
    /// is estimated: a transaction whose estimate fails (a payout the wallet cannot cover yet,
    /// an authorization another attempt just used) leaves a gap that strands every later
    /// transaction of the key, and a transaction sent with the same key from elsewhere (an
    /// operator moving funds) makes the cache stale. The caller must send one transaction at
    /// a time per key, or two would read the same nonce.
    pub fn serial_provider(&self, key: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .with_chain_id(self.chain_id)
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.rpc_url.clone())
            .erased()
    }
}

/// How far ahead of `validBefore` a payment must still be valid when verified, so that the
/// settlement transaction can land before it expires (x402's facilitators use a few seconds).
pub const SETTLE_MARGIN_SECS: u64 = 6;

/// How long to wait for a receipt before giving up on a settlement (the outbox keeps it).
pub const RECEIPT_TIMEOUT_SECS: u64 = 60;

pub(crate) use d402_core::clock::now_unix;

pub(crate) fn parse_address(
    rail: &'static str,
    what: &'static str,
    value: &str,
) -> Result<Address, RailError> {
    value.parse::<Address>().map_err(|_| RailError::Address {
        rail,
        what,
        value: value.to_string(),
    })
}

pub(crate) fn to_u256(a: Atomic) -> U256 {
    U256::from(a.get())
}

pub(crate) fn to_atomic(v: U256) -> Result<Atomic, VerifyError> {
    u128::try_from(v)
        .map(Atomic::new)
        .map_err(|_| VerifyError::Payload(format!("{v} does not fit in 128 bits")))
}

/// Why a payment whose simulated settlement failed cannot settle, in x402's terms: its
/// authorization is used (`used` also holds when the caller knows so already), or the payer
/// lacks the funds; else the simulation's own error, `failed`.
pub(crate) async fn why_not_settling(
    token: &contracts::TestUsd::TestUsdInstance<DynProvider>,
    auth: &buyer::Authorization,
    value: Atomic,
    used: bool,
    failed: VerifyError,
) -> RailError {
    let diagnosis = async {
        let nonce_used = used
            || token
                .authorizationState(auth.from, auth.nonce)
                .call()
                .await
                .map_err(chain_err)?;
        if nonce_used {
            return Ok(VerifyError::AuthorizationUsed {
                nonce: auth.nonce.to_string(),
            });
        }
        let balance = to_atomic(token.balanceOf(auth.from).call().await.map_err(chain_err)?)?;
        Ok::<_, RailError>(if balance < value {
            VerifyError::InsufficientFunds {
                balance,
                needed: value,
            }
        } else {
            failed
        })
    };
    match diagnosis.await {
        Ok(reason) => reason.into(),
        Err(e) => e,
    }
}

pub(crate) fn chain_err(e: impl std::fmt::Display) -> RailError {
    RailError::Chain(e.to_string())
}

/// x402's `extra` for an EIP-3009 asset, plus scheme-specific fields.
pub(crate) fn asset_extra(asset: &Asset, more: serde_json::Value) -> serde_json::Value {
    let mut extra = json!({ "name": asset.name, "version": asset.version });
    if let (Some(e), serde_json::Value::Object(m)) = (extra.as_object_mut(), more) {
        e.extend(m);
    }
    extra
}

/// The checks every EVM rail makes first: the payload answers these requirements, on this
/// network, in this scheme, for this asset, payee and amount.
pub(crate) fn check_accepted(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    scheme: &str,
    network: &ChainId,
) -> Result<(), VerifyError> {
    let accepted = &payload.accepted;
    if requirements.scheme != scheme || accepted.scheme != scheme {
        return Err(VerifyError::Scheme {
            expected: scheme.to_string(),
            got: accepted.scheme.clone(),
        });
    }
    if &accepted.network != network || &requirements.network != network {
        return Err(VerifyError::Network {
            expected: network.to_string(),
            got: accepted.network.to_string(),
        });
    }
    if !same_address(&accepted.asset, &requirements.asset) {
        return Err(VerifyError::Asset {
            expected: requirements.asset.clone(),
            got: accepted.asset.clone(),
        });
    }
    if !same_address(&accepted.pay_to, &requirements.pay_to) {
        return Err(VerifyError::Recipient {
            expected: requirements.pay_to.clone(),
            got: accepted.pay_to.clone(),
        });
    }
    if accepted.amount != requirements.amount {
        let parse = |s: &str| s.parse::<Atomic>().unwrap_or_default();
        return Err(VerifyError::Value {
            expected: parse(&requirements.amount),
            got: parse(&accepted.amount),
        });
    }
    if accepted.extra != requirements.extra {
        return Err(VerifyError::Requirements(
            "`extra` differs from the issued requirements".into(),
        ));
    }
    Ok(())
}

pub(crate) fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<Address>(), b.parse::<Address>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Waits for `tx`'s receipt; `Ok(None)` when it did not arrive in time (the outbox still holds
/// the intent, and reconciliation finds out later).
pub(crate) async fn wait_receipt(
    provider: &DynProvider,
    tx: alloy::primitives::TxHash,
) -> Result<Option<alloy::rpc::types::TransactionReceipt>, RailError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(RECEIPT_TIMEOUT_SECS);
    loop {
        if let Some(r) = provider
            .get_transaction_receipt(tx)
            .await
            .map_err(chain_err)?
        {
            return Ok(Some(r));
        }
        if std::time::Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The fee a receipt paid, in wei.
pub(crate) fn receipt_fee(r: &alloy::rpc::types::TransactionReceipt) -> u128 {
    (r.gas_used as u128).saturating_mul(r.effective_gas_price)
}

/// Records a sent transaction in `outbox`, waits for its receipt and records the outcome:
/// confirmed (its fee is returned), reverted, or still unknown (left `Sent` for reconciliation).
pub(crate) async fn conclude(
    outbox: &crate::outbox::Outbox,
    provider: &DynProvider,
    id: &str,
    tx: alloy::primitives::TxHash,
) -> Result<u128, RailError> {
    outbox.mark_sent(id, &tx.to_string())?;
    match wait_receipt(provider, tx).await? {
        Some(r) if r.status() => {
            outbox.mark_confirmed(id, Some(&tx.to_string()))?;
            Ok(receipt_fee(&r))
        }
        Some(_) => {
            outbox.mark_failed(id, "transaction reverted")?;
            Err(RailError::Reverted {
                tx: tx.to_string(),
                reason: format!("{id} reverted"),
            })
        }
        None => Err(RailError::Chain(format!("no receipt for {tx} yet"))),
    }
}
