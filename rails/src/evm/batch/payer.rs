//! What a paying client signs on `batch-settlement`: the channel it opens, the ERC-3009 deposit
//! into it and the cumulative vouchers. The gateway never holds these keys; this is here so that
//! `d402 client`, the tests and the benchmarks produce payloads exactly as the stock client does.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;

use super::ERC3009_COLLECTOR_ADDRESS;
use super::config::{ChannelConfig, channel_id, deposit_nonce, voucher_digest};
use super::payload::{
    BatchPayload, DepositAuthorization, DepositPayload, Erc3009Authorization, SignedVoucher,
};
use crate::amount::Atomic;
use crate::error::{RailError, VerifyError};
use crate::evm::buyer::{Authorization, AuthorizationKind, chain_id_of, extra_str, sign};
use crate::evm::parse_address;
use crate::rail::PaymentRequirements;

/// The channel `payer` opens with the server named by `requirements` (its `payTo`,
/// `extra.receiverAuthorizer`, `asset` and `extra.withdrawDelay`), told apart from the payer's
/// other channels with that server by `salt`. The payer signs its own vouchers.
pub fn channel_for(
    payer: Address,
    requirements: &PaymentRequirements,
    salt: B256,
) -> Result<ChannelConfig, RailError> {
    let rail = "batch-settlement payer";
    let extra = requirements.extra.as_ref();
    let delay = extra
        .and_then(|e| e.get("withdrawDelay"))
        .and_then(|v| v.as_u64())
        .ok_or_else(|| VerifyError::Requirements("`extra.withdrawDelay` is missing".into()))?;
    Ok(ChannelConfig {
        payer,
        payer_authorizer: payer,
        receiver: parse_address(rail, "payTo", &requirements.pay_to)?,
        receiver_authorizer: parse_address(
            rail,
            "extra.receiverAuthorizer",
            extra_str(requirements, "receiverAuthorizer")?,
        )?,
        token: parse_address(rail, "asset", &requirements.asset)?,
        withdraw_delay: delay,
        salt,
    })
}

/// A voucher for cumulative ceiling `max_claimable` on `config`'s channel.
pub fn sign_voucher(
    key: &PrivateKeySigner,
    config: &ChannelConfig,
    chain_id: u64,
    max_claimable: Atomic,
) -> Result<SignedVoucher, RailError> {
    let id = channel_id(config, chain_id)
        .ok_or_else(|| RailError::Refused("withdraw delay does not fit 40 bits".into()))?;
    let signature = sign(key, &voucher_digest(id, max_claimable.get(), chain_id))?;
    Ok(SignedVoucher {
        channel_id: id,
        max_claimable_amount: max_claimable,
        signature: signature.into(),
    })
}

/// A `deposit` payload: `amount` into the channel by ERC-3009 to the collector, valid until
/// `valid_before`, with the first voucher (`max_claimable`).
pub fn deposit(
    key: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    config: &ChannelConfig,
    amount: Atomic,
    max_claimable: Atomic,
    valid_before: u64,
    salt: U256,
) -> Result<BatchPayload, RailError> {
    let chain_id = chain_id_of(requirements)?;
    let voucher = sign_voucher(key, config, chain_id, max_claimable)?;
    let auth = Authorization {
        from: key.address(),
        to: ERC3009_COLLECTOR_ADDRESS,
        value: U256::from(amount.get()),
        valid_after: 0,
        valid_before,
        nonce: deposit_nonce(voucher.channel_id, salt),
    };
    let digest = auth.digest(
        AuthorizationKind::Receive,
        extra_str(requirements, "name")?,
        extra_str(requirements, "version")?,
        chain_id,
        config.token,
    );
    Ok(BatchPayload::Deposit {
        channel_config: *config,
        voucher,
        deposit: DepositPayload {
            amount,
            authorization: DepositAuthorization {
                erc3009_authorization: Erc3009Authorization {
                    valid_after: Atomic::new(0),
                    valid_before: Atomic::new(u128::from(valid_before)),
                    salt,
                    signature: sign(key, &digest)?.into(),
                },
            },
        },
    })
}
