//! Worker bonds (`contracts/WorkerBond.sol`): the stake behind work nobody can re-execute.
//!
//! A worker bonds tokens; a gateway that sells non-verifiable or scoreable work reads the bond
//! and leases only workers above its minimum; a lost dispute is paid to the buyer out of the
//! bond with the slasher's EIP-712 signature ([`sign_slash`]), once per task (the contract
//! refuses a second slash for the same reason, so a retry never pays twice). Leaving takes an
//! unbonding delay, during which the bond can still be slashed.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;

use super::contracts::{TestUsd, WorkerBond};
use super::{chain_err, eip712};
use crate::RailError;

/// The gas limit of every bond transaction (a slash, the most expensive, uses under 80k). Set
/// rather than estimated, after a simulation that decodes a revert: a failed estimate would
/// leave a gap in a cached nonce sequence and strand every later transaction of the key.
const BOND_TX_GAS: u64 = 200_000;

/// A worker's bond as the contract holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BondState {
    /// What can be slashed and counts for a gateway's minimum.
    pub active: u128,
    /// Waiting out the unbonding delay (still slashable, not counted).
    pub unbonding: u128,
    /// Unix seconds from which `unbonding` can be withdrawn.
    pub unlock_at: u64,
}

/// A `WorkerBond` contract, seen through one key's provider (a worker's, to bond and leave; a
/// gateway's, to read bonds and submit slashes).
pub struct WorkerBonds {
    bond: WorkerBond::WorkerBondInstance<DynProvider>,
    provider: DynProvider,
}

impl WorkerBonds {
    /// Deploys a bond contract for `token`, slashed with `slasher`'s signature, with an
    /// unbonding delay of `unbonding_delay_secs`.
    pub async fn deploy(
        provider: &DynProvider,
        token: Address,
        slasher: Address,
        unbonding_delay_secs: u64,
    ) -> Result<Address, RailError> {
        let c = WorkerBond::deploy(provider.clone(), token, slasher, unbonding_delay_secs)
            .await
            .map_err(chain_err)?;
        Ok(*c.address())
    }

    pub fn new(provider: DynProvider, address: Address) -> Self {
        Self {
            bond: WorkerBond::new(address, provider.clone()),
            provider,
        }
    }

    pub fn address(&self) -> Address {
        *self.bond.address()
    }

    /// `worker`'s bond.
    pub async fn bond_of(&self, worker: Address) -> Result<BondState, RailError> {
        let b = self.bond.bonds(worker).call().await.map_err(chain_err)?;
        Ok(BondState {
            active: b.active,
            unbonding: b.unbonding,
            unlock_at: b.unlockAt,
        })
    }

    /// Approves and bonds `amount` of the contract's token from this provider's key.
    pub async fn bond(&self, amount: u128) -> Result<B256, RailError> {
        let token = self.bond.token().call().await.map_err(chain_err)?;
        let token = TestUsd::new(token, self.provider.clone());
        let approve = token.approve(self.address(), U256::from(amount));
        approve.call().await.map_err(chain_err)?;
        confirm(approve.gas(BOND_TX_GAS).send().await.map_err(chain_err)?).await?;
        let call = self.bond.bond(U256::from(amount));
        call.call().await.map_err(revert)?;
        confirm(call.gas(BOND_TX_GAS).send().await.map_err(chain_err)?).await
    }

    /// Starts unbonding `amount` of this key's bond.
    pub async fn request_unbond(&self, amount: u128) -> Result<B256, RailError> {
        let call = self.bond.requestUnbond(U256::from(amount));
        call.call().await.map_err(revert)?;
        confirm(call.gas(BOND_TX_GAS).send().await.map_err(chain_err)?).await
    }

    /// Withdraws what finished unbonding.
    pub async fn withdraw(&self) -> Result<B256, RailError> {
        let call = self.bond.withdraw();
        call.call().await.map_err(revert)?;
        confirm(call.gas(BOND_TX_GAS).send().await.map_err(chain_err)?).await
    }

    /// Submits a slash the slasher signed ([`sign_slash`]).
    pub async fn slash(&self, order: &SlashOrder, signature: &[u8]) -> Result<B256, RailError> {
        let call = self.bond.slash(
            order.worker,
            order.to,
            U256::from(order.amount),
            order.reason,
            Bytes::copy_from_slice(signature),
        );
        call.call().await.map_err(revert)?;
        confirm(call.gas(BOND_TX_GAS).send().await.map_err(chain_err)?).await
    }

    /// Whether a slash for `reason` was already paid.
    pub async fn slashed(&self, reason: B256) -> Result<bool, RailError> {
        self.bond.slashed(reason).call().await.map_err(chain_err)
    }
}

/// What a slash pays: `amount` of `worker`'s bond to `to`, for `reason` (the task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlashOrder {
    pub worker: Address,
    pub to: Address,
    pub amount: u128,
    pub reason: B256,
}

/// The slasher's signature over `order` for the bond contract at `bond` on `chain_id`.
pub fn sign_slash(
    slasher: &PrivateKeySigner,
    chain_id: u64,
    bond: Address,
    order: &SlashOrder,
) -> Result<Vec<u8>, RailError> {
    let digest = eip712::digest(
        &eip712::Slash {
            worker: order.worker,
            to: order.to,
            amount: U256::from(order.amount),
            reason: order.reason,
        },
        &eip712::bond_domain(chain_id, bond),
    );
    slasher
        .sign_hash_sync(&digest)
        .map(|s| s.as_bytes().to_vec())
        .map_err(|e| RailError::Refused(format!("signing failed: {e}")))
}

/// A send the contract reverted, with its error's name when it is one of the bond's own.
fn revert(e: alloy::contract::Error) -> RailError {
    match e.as_decoded_interface_error::<WorkerBond::WorkerBondErrors>() {
        Some(decoded) => RailError::Refused(format!("WorkerBond: {decoded:?}")),
        None => chain_err(e),
    }
}

async fn confirm(
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
) -> Result<B256, RailError> {
    let receipt = pending.get_receipt().await.map_err(chain_err)?;
    if !receipt.status() {
        return Err(RailError::Chain(format!(
            "transaction {} reverted",
            receipt.transaction_hash
        )));
    }
    Ok(receipt.transaction_hash)
}
