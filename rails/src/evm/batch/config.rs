//! A channel's configuration as the scheme's payloads carry it, and the digests derived from it:
//! the channel id and the voucher a payer signs. Computed exactly as the contract does, so that
//! a voucher checked here is one the contract accepts in a claim.

use alloy::primitives::{Address, B256, U256, aliases::U40};
use serde::{Deserialize, Serialize};

use super::SETTLEMENT_ADDRESS;
use crate::evm::eip712::{self, batch};

/// `ChannelConfig` in the payload's JSON shape (`withdrawDelay` a JSON number, addresses hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelConfig {
    pub payer: Address,
    /// The EOA that signs vouchers, or zero for the payer itself (EIP-1271 for contract wallets).
    pub payer_authorizer: Address,
    pub receiver: Address,
    pub receiver_authorizer: Address,
    pub token: Address,
    pub withdraw_delay: u64,
    pub salt: B256,
}

impl ChannelConfig {
    /// The contract's struct, for calls and hashing; `None` when the delay does not fit 40 bits.
    pub fn to_sol(&self) -> Option<batch::ChannelConfig> {
        Some(batch::ChannelConfig {
            payer: self.payer,
            payerAuthorizer: self.payer_authorizer,
            receiver: self.receiver,
            receiverAuthorizer: self.receiver_authorizer,
            token: self.token,
            withdrawDelay: U40::try_from(self.withdraw_delay).ok()?,
            salt: self.salt,
        })
    }

    /// Who signs this channel's vouchers.
    pub fn voucher_signer(&self) -> Address {
        if self.payer_authorizer.is_zero() {
            self.payer
        } else {
            self.payer_authorizer
        }
    }
}

/// The channel id: the EIP-712 digest of the config under the settlement contract's domain on
/// `chain_id` (so the same config names different channels on different chains).
pub fn channel_id(config: &ChannelConfig, chain_id: u64) -> Option<B256> {
    let domain = eip712::batch_domain(chain_id, SETTLEMENT_ADDRESS);
    Some(eip712::digest(&config.to_sol()?, &domain))
}

/// The digest a payer signs for a voucher with cumulative ceiling `max_claimable`.
pub fn voucher_digest(channel: B256, max_claimable: u128, chain_id: u64) -> B256 {
    let domain = eip712::batch_domain(chain_id, SETTLEMENT_ADDRESS);
    eip712::digest(
        &batch::Voucher {
            channelId: channel,
            maxClaimableAmount: max_claimable,
        },
        &domain,
    )
}

/// The digest the receiver authorizer signs for a cooperative refund.
pub fn refund_digest(channel: B256, nonce: U256, amount: u128, chain_id: u64) -> B256 {
    let domain = eip712::batch_domain(chain_id, SETTLEMENT_ADDRESS);
    eip712::digest(
        &batch::Refund {
            channelId: channel,
            nonce,
            amount,
        },
        &domain,
    )
}

/// The ERC-3009 nonce of a deposit: binds the payer's authorization to one channel.
pub fn deposit_nonce(channel: B256, salt: U256) -> B256 {
    use alloy::sol_types::SolValue;
    alloy::primitives::keccak256((channel, salt).abi_encode())
}

impl ChannelConfig {
    /// The settlement contract binding's struct, for calls.
    pub fn to_contract(&self) -> Option<crate::evm::contracts::BatchSettlement::ChannelConfig> {
        let c = self.to_sol()?;
        Some(crate::evm::contracts::BatchSettlement::ChannelConfig {
            payer: c.payer,
            payerAuthorizer: c.payerAuthorizer,
            receiver: c.receiver,
            receiverAuthorizer: c.receiverAuthorizer,
            token: c.token,
            withdrawDelay: c.withdrawDelay,
            salt: c.salt,
        })
    }
}

/// The digest the receiver authorizer signs for `claimWithSignature` over `rows` of
/// (channel id, voucher ceiling, new claimed total).
pub fn claim_batch_digest(rows: &[(B256, u128, u128)], chain_id: u64) -> B256 {
    let domain = eip712::batch_domain(chain_id, SETTLEMENT_ADDRESS);
    eip712::digest(
        &batch::ClaimBatch {
            claims: rows
                .iter()
                .map(|&(id, max, total)| batch::ClaimEntry {
                    channelId: id,
                    maxClaimableAmount: max,
                    totalClaimed: total,
                })
                .collect(),
        },
        &domain,
    )
}
