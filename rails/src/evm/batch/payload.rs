//! The scheme's payment payloads (the `payload` of an x402 v2 `PAYMENT-SIGNATURE`), as the stock
//! client sends them: `deposit` (an ERC-3009 authorization to the collector plus the first
//! voucher), `voucher`, and `refund` (a zero-charge voucher asking for the unspent balance).

use alloy::primitives::{B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use super::config::ChannelConfig;
use crate::amount::Atomic;

/// A payer-signed cumulative voucher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedVoucher {
    pub channel_id: B256,
    pub max_claimable_amount: Atomic,
    pub signature: Bytes,
}

/// The payer's ERC-3009 `receiveWithAuthorization` to the collector; its nonce is
/// `keccak256(abi.encode(channelId, salt))`, so it is not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Erc3009Authorization {
    pub valid_after: Atomic,
    pub valid_before: Atomic,
    /// A uint256 the client picks, as 0x-prefixed hex.
    pub salt: U256,
    pub signature: Bytes,
}

impl Erc3009Authorization {
    /// The collector's `collectorData`: `abi.encode(validAfter, validBefore, salt, signature)`.
    pub fn collector_data(&self) -> Bytes {
        use alloy::sol_types::SolValue;
        (
            U256::from(self.valid_after.get()),
            U256::from(self.valid_before.get()),
            self.salt,
            self.signature.clone(),
        )
            .abi_encode_params()
            .into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositAuthorization {
    /// The only transfer method d402 accepts; a Permit2 deposit is refused as malformed.
    pub erc3009_authorization: Erc3009Authorization,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositPayload {
    pub amount: Atomic,
    pub authorization: DepositAuthorization,
}

/// One payload, by its `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BatchPayload {
    #[serde(rename_all = "camelCase")]
    Deposit {
        channel_config: ChannelConfig,
        voucher: SignedVoucher,
        deposit: DepositPayload,
    },
    #[serde(rename_all = "camelCase")]
    Voucher {
        channel_config: ChannelConfig,
        voucher: SignedVoucher,
    },
    #[serde(rename_all = "camelCase")]
    Refund {
        channel_config: ChannelConfig,
        voucher: SignedVoucher,
        /// A partial refund; `None` asks for everything unspent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<Atomic>,
    },
}

impl BatchPayload {
    pub fn config(&self) -> &ChannelConfig {
        match self {
            BatchPayload::Deposit { channel_config, .. }
            | BatchPayload::Voucher { channel_config, .. }
            | BatchPayload::Refund { channel_config, .. } => channel_config,
        }
    }

    pub fn voucher(&self) -> &SignedVoucher {
        match self {
            BatchPayload::Deposit { voucher, .. }
            | BatchPayload::Voucher { voucher, .. }
            | BatchPayload::Refund { voucher, .. } => voucher,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes of the scheme's specification examples parse, and a Permit2 deposit (which d402
    /// does not take) is refused.
    #[test]
    fn spec_shapes_parse() {
        let config = serde_json::json!({
            "payer": "0x1111111111111111111111111111111111111111",
            "payerAuthorizer": "0x1111111111111111111111111111111111111111",
            "receiver": "0x2222222222222222222222222222222222222222",
            "receiverAuthorizer": "0x3333333333333333333333333333333333333333",
            "token": "0x4444444444444444444444444444444444444444",
            "withdrawDelay": 900,
            "salt": format!("0x{}", "00".repeat(32)),
        });
        let voucher = serde_json::json!({
            "channelId": format!("0x{}", "ab".repeat(32)),
            "maxClaimableAmount": "1000",
            "signature": format!("0x{}", "11".repeat(65)),
        });
        let deposit: BatchPayload = serde_json::from_value(serde_json::json!({
            "type": "deposit", "channelConfig": config, "voucher": voucher,
            "deposit": {"amount": "100000", "authorization": {"erc3009Authorization": {
                "validAfter": "0", "validBefore": "1770000000",
                "salt": "0x00000000000000000000000000000000000000000000000000000000000000ff",
                "signature": format!("0x{}", "22".repeat(65))}}}
        }))
        .unwrap();
        assert!(
            matches!(&deposit, BatchPayload::Deposit { deposit, .. } if deposit.amount == Atomic::new(100_000))
        );
        assert_eq!(deposit.config().withdraw_delay, 900);
        let refund: BatchPayload = serde_json::from_value(serde_json::json!({
            "type": "refund", "channelConfig": config, "voucher": voucher
        }))
        .unwrap();
        assert!(matches!(refund, BatchPayload::Refund { amount: None, .. }));
        let permit2 = serde_json::from_value::<BatchPayload>(serde_json::json!({
            "type": "deposit", "channelConfig": config, "voucher": voucher,
            "deposit": {"amount": "1", "authorization": {"permit2Authorization": {}}}
        }));
        assert!(permit2.is_err());
    }
}
