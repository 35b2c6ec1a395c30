//! A buyer's `batch-settlement` channels (`d402 client --scheme batch-settlement`), kept in
//! `channels.json` under the client's `--state`: per channel its configuration, what the gateway
//! charged so far and what the buyer deposited. The first payment to a gateway deposits (sized by
//! the 402's `minDeposit`, never above `--max-deposit`); the next ones are vouchers.
//!
//! Local state moves only on what the buyer can check: a payment response's `chargedAmount` when
//! it is within the price and agrees with the channel state it comes with; and a corrective 402
//! only when its `voucherState` carries a voucher this buyer signed (the scheme's client rules).
//! The file is replaced whole (write, then rename), so a crash leaves the old state or the new.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use d402_rails::evm::batch::config::{ChannelConfig, channel_id, voucher_digest};
use d402_rails::evm::batch::{BatchPayload, payer};
use d402_rails::evm::{buyer, eip712};
use d402_rails::{Atomic, PaymentPayload, PaymentRequirements};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::purchase_error::ClientError;

const FILE: &str = "channels.json";

/// One channel as the buyer keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelEntry {
    pub config: ChannelConfig,
    pub network: String,
    pub charged: Atomic,
    pub balance: Atomic,
}

/// What a payment was made against, to apply its response to.
#[derive(Debug, Clone)]
pub struct PendingCharge {
    pub channel: B256,
    pub price: Atomic,
    pub deposit: Atomic,
}

pub struct ChannelWallet {
    dir: PathBuf,
    key: PrivateKeySigner,
    max_deposit: Atomic,
}

fn io(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Sign(format!("{}: {e}", path.display()))
}

impl ChannelWallet {
    /// The wallet of `key` under `dir`; deposits never exceed `max_deposit`.
    pub fn new(dir: &Path, key: PrivateKeySigner, max_deposit: Atomic) -> Self {
        ChannelWallet {
            dir: dir.to_path_buf(),
            key,
            max_deposit,
        }
    }

    pub fn channels(&self) -> Result<BTreeMap<String, ChannelEntry>, ClientError> {
        let path = self.dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn save(&self, channels: &BTreeMap<String, ChannelEntry>) -> Result<(), ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let path = self.dir.join(FILE);
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(channels).map_err(|e| io(&path, e))?;
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// This buyer's channel with the server `r` names (receiver, authorizer, token, delay), if
    /// it has one.
    fn find(
        &self,
        channels: &BTreeMap<String, ChannelEntry>,
        r: &PaymentRequirements,
    ) -> Result<Option<(String, ChannelEntry)>, ClientError> {
        let probe = payer::channel_for(self.key.address(), r, B256::ZERO).map_err(sign)?;
        Ok(channels
            .iter()
            .find(|(_, e)| {
                e.network == r.network.to_string()
                    && ChannelConfig {
                        salt: B256::ZERO,
                        ..e.config
                    } == probe
            })
            .map(|(k, e)| (k.clone(), e.clone())))
    }

    /// The payment for one task priced `price` by `r`: a voucher on this buyer's channel with the
    /// server, or a deposit (with the first voucher) when the channel cannot cover it.
    pub fn pay(
        &self,
        r: &PaymentRequirements,
        price: Atomic,
        now: u64,
    ) -> Result<(PaymentPayload, PendingCharge), ClientError> {
        let chain_id = buyer::chain_id_of(r).map_err(sign)?;
        let mut channels = self.channels()?;
        let (key, entry) = match self.find(&channels, r)? {
            Some(found) => found,
            None => {
                let salt = buyer::random_nonce().map_err(sign)?;
                let config = payer::channel_for(self.key.address(), r, salt).map_err(sign)?;
                let id = channel_id(&config, chain_id)
                    .ok_or_else(|| ClientError::Challenge("withdraw delay out of range".into()))?;
                let entry = ChannelEntry {
                    config,
                    network: r.network.to_string(),
                    charged: Atomic::new(0),
                    balance: Atomic::new(0),
                };
                channels.insert(id.to_string(), entry.clone());
                // Saved before anything is signed: the salt names the channel for good.
                self.save(&channels)?;
                (id.to_string(), entry)
            }
        };
        let channel: B256 = key
            .parse()
            .map_err(|_| ClientError::Sign(format!("channel id {key} in {FILE}")))?;
        let ceiling = Atomic::new(entry.charged.get().saturating_add(price.get()));
        let needed = ceiling.get().saturating_sub(entry.balance.get());
        let payload = if needed == 0 {
            BatchPayload::Voucher {
                channel_config: entry.config,
                voucher: payer::sign_voucher(&self.key, &entry.config, chain_id, ceiling)
                    .map_err(sign)?,
            }
        } else {
            let announced = r
                .extra
                .as_ref()
                .and_then(|e| e.get("minDeposit"))
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<u128>().ok())
                .unwrap_or(0);
            let deposit = needed.max(announced).min(self.max_deposit.get());
            if deposit < needed {
                return Err(ClientError::OverCap {
                    price: Atomic::new(needed),
                    cap: self.max_deposit,
                });
            }
            let salt = U256::from_be_bytes(buyer::random_nonce().map_err(sign)?.0);
            payer::deposit(
                &self.key,
                r,
                &entry.config,
                Atomic::new(deposit),
                ceiling,
                now + r.max_timeout_seconds,
                salt,
            )
            .map_err(sign)?
        };
        let deposit = match &payload {
            BatchPayload::Deposit { deposit, .. } => deposit.amount,
            _ => Atomic::new(0),
        };
        let value = serde_json::to_value(&payload).map_err(|e| ClientError::Sign(e.to_string()))?;
        Ok((
            buyer::payment_payload(r, value),
            PendingCharge {
                channel,
                price,
                deposit,
            },
        ))
    }

    /// Applies a paid response's `PAYMENT-RESPONSE`: the deposit (when it carries a transaction)
    /// and the charge, when within the price and consistent with the state it reports.
    pub fn settled(&self, pending: &PendingCharge, response: &Value) -> Result<(), ClientError> {
        let mut channels = self.channels()?;
        let Some(entry) = channels.get_mut(&pending.channel.to_string()) else {
            return Ok(());
        };
        let charged = response["extra"]["chargedAmount"]
            .as_str()
            .and_then(|s| s.parse::<u128>().ok())
            .unwrap_or(0);
        let reported = response["extra"]["channelState"]["chargedCumulativeAmount"]
            .as_str()
            .and_then(|s| s.parse::<u128>().ok());
        let next = entry.charged.get().saturating_add(charged);
        if pending.deposit.get() > 0
            && response["transaction"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        {
            entry.balance = Atomic::new(entry.balance.get().saturating_add(pending.deposit.get()));
        }
        if charged <= pending.price.get() && reported.is_none_or(|r| r == next) {
            entry.charged = Atomic::new(next);
        }
        self.save(&channels)
    }

    /// A corrective 402: adopts the server's charged total when its `voucherState` is a voucher
    /// this buyer signed for exactly that total. Returns whether the state changed (retry).
    pub fn resync(&self, r: &PaymentRequirements) -> Result<bool, ClientError> {
        let Some(extra) = &r.extra else {
            return Ok(false);
        };
        let state = &extra["channelState"];
        let voucher = &extra["voucherState"];
        let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<u128>().ok());
        let (Some(charged), Some(signed), Some(balance)) = (
            parse(&state["chargedCumulativeAmount"]),
            parse(&voucher["signedMaxClaimable"]),
            parse(&state["balance"]),
        ) else {
            return Ok(false);
        };
        let Some(id) = state["channelId"]
            .as_str()
            .and_then(|s| s.parse::<B256>().ok())
        else {
            return Ok(false);
        };
        let signature: Vec<u8> = voucher["signature"]
            .as_str()
            .and_then(|s| alloy::hex::decode(s).ok())
            .unwrap_or_default();
        let chain_id = buyer::chain_id_of(r).map_err(sign)?;
        let mine = eip712::recover(&voucher_digest(id, signed, chain_id), &signature)
            == Some(self.key.address());
        let mut channels = self.channels()?;
        let Some(entry) = channels.get_mut(&id.to_string()) else {
            return Ok(false);
        };
        if !mine || signed != charged {
            return Ok(false);
        }
        entry.charged = Atomic::new(charged);
        entry.balance = Atomic::new(balance);
        self.save(&channels)?;
        Ok(true)
    }

    /// The cooperative refund's payload for this buyer's channel with the server `r` names: a
    /// zero-charge voucher (its ceiling what was charged) and the amount, `None` for all.
    pub fn refund(
        &self,
        r: &PaymentRequirements,
        amount: Option<Atomic>,
    ) -> Result<(PaymentPayload, String), ClientError> {
        let chain_id = buyer::chain_id_of(r).map_err(sign)?;
        let channels = self.channels()?;
        let (key, entry) = self.find(&channels, r)?.ok_or_else(|| {
            ClientError::NoOption("no channel with this gateway in --state".into())
        })?;
        let payload = BatchPayload::Refund {
            channel_config: entry.config,
            voucher: payer::sign_voucher(&self.key, &entry.config, chain_id, entry.charged)
                .map_err(sign)?,
            amount,
        };
        let value = serde_json::to_value(&payload).map_err(|e| ClientError::Sign(e.to_string()))?;
        Ok((buyer::payment_payload(r, value), key))
    }

    /// Records a refund's outcome: the channel's balance as the response reports it.
    pub fn refunded(&self, channel: &str, response: &Value) -> Result<(), ClientError> {
        let mut channels = self.channels()?;
        if let Some(entry) = channels.get_mut(channel)
            && let Some(b) = response["extra"]["channelState"]["balance"]
                .as_str()
                .and_then(|s| s.parse::<u128>().ok())
        {
            entry.balance = Atomic::new(b);
        }
        self.save(&channels)
    }
}

fn sign(e: impl std::fmt::Display) -> ClientError {
    ClientError::Sign(e.to_string())
}
