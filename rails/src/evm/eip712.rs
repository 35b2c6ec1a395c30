//! The EIP-712 messages d402's EVM rails sign and check, and their domains. Off-chain checks use
//! exactly the digests the contracts compute, so a payment that verifies here is one the chain
//! accepts.

use std::borrow::Cow;

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};

alloy::sol! {
    /// EIP-3009, the x402 `exact` scheme's message.
    #[derive(Debug)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// EIP-3009, for payments only the payee contract may submit (escrow and channel funding).
    #[derive(Debug)]
    struct ReceiveWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// The validator's approval of a task's split (`TaskEscrow.settle`).
    #[derive(Debug)]
    struct Release {
        bytes32 taskId;
        address[] workers;
        uint256 workerAmount;
        uint256 creatorAmount;
        uint256 gatewayAmount;
    }

    /// The slasher's order to pay part of a worker's bond to a buyer (`WorkerBond.slash`).
    #[derive(Debug)]
    struct Slash {
        address worker;
        address to;
        uint256 amount;
        bytes32 reason;
    }

    /// A buyer's cumulative voucher for one (worker, creator, gateway) triple of a channel.
    #[derive(Debug, PartialEq, Eq)]
    struct Voucher {
        bytes32 channelId;
        address worker;
        address creator;
        address gateway;
        uint256 workerTotal;
        uint256 creatorTotal;
        uint256 gatewayTotal;
    }
}

fn domain(name: String, version: String, chain_id: u64, contract: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(Cow::Owned(name)),
        Some(Cow::Owned(version)),
        Some(U256::from(chain_id)),
        Some(contract),
        None,
    )
}

/// The token's domain (name and version from x402's `extra`).
pub fn token_domain(name: &str, version: &str, chain_id: u64, token: Address) -> Eip712Domain {
    domain(name.into(), version.into(), chain_id, token)
}

/// `TaskEscrow`'s domain.
pub fn escrow_domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    domain("d402 TaskEscrow".into(), "1".into(), chain_id, escrow)
}

/// `WorkerBond`'s domain.
pub fn bond_domain(chain_id: u64, bond: Address) -> Eip712Domain {
    domain("d402 WorkerBond".into(), "1".into(), chain_id, bond)
}

/// `PaymentChannel`'s domain.
pub fn channel_domain(chain_id: u64, channel: Address) -> Eip712Domain {
    domain("d402 PaymentChannel".into(), "1".into(), chain_id, channel)
}

/// The digest of `message` in `domain`.
pub fn digest<T: SolStruct>(message: &T, domain: &Eip712Domain) -> B256 {
    message.eip712_signing_hash(domain)
}

/// secp256k1n / 2: the contracts refuse a higher `s` (a malleable copy of a signature).
const HALF_N: U256 = U256::from_be_bytes([
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0x5D, 0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
]);

/// The address that signed `digest`, with the contracts' rules: 65 bytes, low `s`.
pub fn recover(digest: &B256, signature: &[u8]) -> Option<Address> {
    if signature.len() != 65 {
        return None;
    }
    let sig = Signature::from_raw(signature).ok()?;
    if sig.s() > HALF_N {
        return None;
    }
    sig.recover_address_from_prehash(digest).ok()
}

/// The x402 `batch-settlement` scheme's messages, under the settlement contract's domain
/// ([`batch_domain`]). Apart from the channel contract's `Voucher` above, whose name they share.
pub mod batch {
    alloy::sol! {
        /// A channel's immutable configuration; its EIP-712 digest is the channel id.
        #[derive(Debug, PartialEq, Eq)]
        struct ChannelConfig {
            address payer;
            address payerAuthorizer;
            address receiver;
            address receiverAuthorizer;
            address token;
            uint40 withdrawDelay;
            bytes32 salt;
        }

        /// The payer's cumulative ceiling for one channel.
        #[derive(Debug, PartialEq, Eq)]
        struct Voucher {
            bytes32 channelId;
            uint128 maxClaimableAmount;
        }

        /// The receiver authorizer's consent to a cooperative refund.
        #[derive(Debug)]
        struct Refund {
            bytes32 channelId;
            uint256 nonce;
            uint128 amount;
        }

        /// One row of a relayed claim.
        #[derive(Debug)]
        struct ClaimEntry {
            bytes32 channelId;
            uint128 maxClaimableAmount;
            uint128 totalClaimed;
        }

        /// The receiver authorizer's consent to a relayed claim of many channels.
        #[derive(Debug)]
        struct ClaimBatch {
            ClaimEntry[] claims;
        }
    }
}

/// The `batch-settlement` contract's domain: the scheme fixes its name and version, and the
/// contract's canonical address.
pub fn batch_domain(chain_id: u64, settlement: Address) -> Eip712Domain {
    domain(
        "x402 Batch Settlement".into(),
        "1".into(),
        chain_id,
        settlement,
    )
}
