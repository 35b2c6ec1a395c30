//! What a paying client signs, for each EVM rail: the payload a `PAYMENT-SIGNATURE` header
//! carries. The gateway never holds these keys; this module is here so that `d402 client`, the
//! tests and the benchmarks produce payloads exactly as the rails expect them.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use x402_chain_eip155::v1_eip155_exact::types::{ExactEvmPayload, ExactEvmPayloadAuthorization};
use x402_types::timestamp::UnixTimestamp;

use super::eip712::{self, ReceiveWithAuthorization, TransferWithAuthorization, Voucher};
use crate::error::{RailError, VerifyError};
use crate::rail::{PaymentPayload, PaymentRequirements, X402Version2};

/// The fields of an EIP-3009 authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: u64,
    pub valid_before: u64,
    pub nonce: B256,
}

/// Which EIP-3009 function the authorization is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationKind {
    /// `transferWithAuthorization`: anyone may submit (x402 `exact`).
    Transfer,
    /// `receiveWithAuthorization`: only `to` may submit (escrow, channel funding).
    Receive,
}

impl Authorization {
    /// The EIP-712 digest the token checks.
    pub fn digest(
        &self,
        kind: AuthorizationKind,
        token_name: &str,
        token_version: &str,
        chain_id: u64,
        token: Address,
    ) -> B256 {
        let domain = eip712::token_domain(token_name, token_version, chain_id, token);
        let (from, to, value, nonce) = (self.from, self.to, self.value, self.nonce);
        let (valid_after, valid_before) =
            (U256::from(self.valid_after), U256::from(self.valid_before));
        match kind {
            AuthorizationKind::Transfer => eip712::digest(
                &TransferWithAuthorization {
                    from,
                    to,
                    value,
                    validAfter: valid_after,
                    validBefore: valid_before,
                    nonce,
                },
                &domain,
            ),
            AuthorizationKind::Receive => eip712::digest(
                &ReceiveWithAuthorization {
                    from,
                    to,
                    value,
                    validAfter: valid_after,
                    validBefore: valid_before,
                    nonce,
                },
                &domain,
            ),
        }
    }

    /// The x402 `exact` payload for this authorization and its signature.
    pub fn to_payload(&self, signature: &[u8]) -> ExactEvmPayload {
        ExactEvmPayload {
            signature: Bytes::copy_from_slice(signature),
            authorization: ExactEvmPayloadAuthorization {
                from: self.from,
                to: self.to,
                value: self.value,
                valid_after: UnixTimestamp::from_secs(self.valid_after),
                valid_before: UnixTimestamp::from_secs(self.valid_before),
                nonce: self.nonce,
            },
        }
    }

    pub(crate) fn from_payload(p: &ExactEvmPayload) -> Authorization {
        let a = &p.authorization;
        Authorization {
            from: a.from,
            to: a.to,
            value: a.value,
            valid_after: a.valid_after.as_secs(),
            valid_before: a.valid_before.as_secs(),
            nonce: a.nonce,
        }
    }
}

pub(crate) fn extra_str<'a>(req: &'a PaymentRequirements, key: &str) -> Result<&'a str, RailError> {
    req.extra
        .as_ref()
        .and_then(|e| e.get(key))
        .and_then(|v| v.as_str())
        .ok_or_else(|| VerifyError::Requirements(format!("`extra.{key}` is missing")).into())
}

pub(crate) fn sign(signer: &PrivateKeySigner, digest: &B256) -> Result<Vec<u8>, RailError> {
    signer
        .sign_hash_sync(digest)
        .map(|s| s.as_bytes().to_vec())
        .map_err(|e| RailError::Refused(format!("signing failed: {e}")))
}

/// Wraps a scheme payload into the x402 v2 payment payload answering `requirements`.
pub fn payment_payload(
    requirements: &PaymentRequirements,
    payload: serde_json::Value,
) -> PaymentPayload {
    PaymentPayload {
        accepted: requirements.clone(),
        payload,
        resource: None,
        x402_version: X402Version2,
        extensions: Default::default(),
    }
}

/// The chain id of a requirements' `eip155:<id>` network.
pub fn chain_id_of(req: &PaymentRequirements) -> Result<u64, RailError> {
    req.network
        .reference()
        .parse()
        .map_err(|_| VerifyError::Network {
            expected: "eip155:<chain id>".into(),
            got: req.network.to_string(),
        })
        .map_err(Into::into)
}

/// Signs an EIP-3009 authorization of `kind` for `requirements` (payee, amount, asset and domain
/// from the requirements), valid in `[valid_after, valid_before]`.
pub fn sign_authorization(
    signer: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    kind: AuthorizationKind,
    valid_after: u64,
    valid_before: u64,
    nonce: B256,
) -> Result<PaymentPayload, RailError> {
    let rail = "evm buyer";
    let auth = Authorization {
        from: signer.address(),
        to: super::parse_address(rail, "payTo", &requirements.pay_to)?,
        value: U256::from(
            requirements
                .amount
                .parse::<crate::Atomic>()
                .map_err(RailError::from)?
                .get(),
        ),
        valid_after,
        valid_before,
        nonce,
    };
    let token = super::parse_address(rail, "asset", &requirements.asset)?;
    let digest = auth.digest(
        kind,
        extra_str(requirements, "name")?,
        extra_str(requirements, "version")?,
        chain_id_of(requirements)?,
        token,
    );
    let signature = sign(signer, &digest)?;
    let payload = serde_json::to_value(auth.to_payload(&signature))
        .map_err(|e| RailError::Refused(e.to_string()))?;
    Ok(payment_payload(requirements, payload))
}

/// The x402 `exact` payment for `requirements` from the `base-x402-direct` rail: a
/// `transferWithAuthorization` with a random nonce.
pub fn pay_exact(
    signer: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    now: u64,
) -> Result<PaymentPayload, RailError> {
    sign_authorization(
        signer,
        requirements,
        AuthorizationKind::Transfer,
        now.saturating_sub(60),
        now + requirements.max_timeout_seconds,
        random_nonce()?,
    )
}

/// 32 random bytes from the operating system: an EIP-3009 nonce nobody can predict or reuse.
pub fn random_nonce() -> Result<B256, RailError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| RailError::Refused(format!("no randomness: {e}")))?;
    Ok(B256::from(b))
}

/// The payment for a `base-task-escrow` challenge: a `receiveWithAuthorization` to the escrow
/// whose nonce is the one the challenge names (the hash of the task's terms).
pub fn pay_escrow(
    signer: &PrivateKeySigner,
    requirements: &PaymentRequirements,
    now: u64,
) -> Result<PaymentPayload, RailError> {
    let nonce: B256 = extra_str(requirements, "nonce")?
        .parse()
        .map_err(|_| VerifyError::Requirements("`extra.nonce` is not 32 bytes".into()))?;
    sign_authorization(
        signer,
        requirements,
        AuthorizationKind::Receive,
        now.saturating_sub(60),
        now + requirements.max_timeout_seconds,
        nonce,
    )
}

/// A channel voucher as it travels in a `base-channel` payment payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedVoucher {
    pub channel_id: B256,
    pub worker: Address,
    pub creator: Address,
    pub gateway: Address,
    #[serde(with = "x402_types::util::decimal_u256")]
    pub worker_total: U256,
    #[serde(with = "x402_types::util::decimal_u256")]
    pub creator_total: U256,
    #[serde(with = "x402_types::util::decimal_u256")]
    pub gateway_total: U256,
    pub signature: Bytes,
}

impl SignedVoucher {
    pub fn message(&self) -> Voucher {
        Voucher {
            channelId: self.channel_id,
            worker: self.worker,
            creator: self.creator,
            gateway: self.gateway,
            workerTotal: self.worker_total,
            creatorTotal: self.creator_total,
            gatewayTotal: self.gateway_total,
        }
    }
}

/// Signs a cumulative voucher for `channel` (the PaymentChannel contract) on `chain_id`.
pub fn sign_voucher(
    signer: &PrivateKeySigner,
    chain_id: u64,
    channel: Address,
    voucher: &Voucher,
) -> Result<SignedVoucher, RailError> {
    let digest = eip712::digest(voucher, &eip712::channel_domain(chain_id, channel));
    Ok(SignedVoucher {
        channel_id: voucher.channelId,
        worker: voucher.worker,
        creator: voucher.creator,
        gateway: voucher.gateway,
        worker_total: voucher.workerTotal,
        creator_total: voucher.creatorTotal,
        gateway_total: voucher.gatewayTotal,
        signature: sign(signer, &digest)?.into(),
    })
}
