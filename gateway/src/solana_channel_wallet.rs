//! A buyer's `solana-channel` channels (`d402 client --scheme solana-channel`), kept in
//! `solana-channels.json` under the client's `--state`: per gateway (its authority, network and
//! mint) the channel's keypair, what the gateway charged so far and what the buyer deposited.
//!
//! The first payment opens the channel (a deposit sized by the 402's `minDeposit`, never above
//! `--max-deposit`), a payment the deposit cannot cover tops it up, every payment carries the
//! next cumulative voucher. The channel's keypair is saved before anything is signed, so a crash
//! never loses a channel the chain may hold; local state moves only on what the buyer can check
//! (a charge within what it signed, or a voucher it signed itself). The file is replaced whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use d402_rails::evm::buyer;
use d402_rails::solana::channel::ledger::Voucher;
use d402_rails::solana::channel::payer::{Opening, open_instructions, top_up};
use d402_rails::solana::channel::rail::{ChannelPayload, FundingTx};
use d402_rails::solana::channel::voucher;
use d402_rails::solana::direct::partially_signed;
use d402_rails::{Atomic, PaymentPayload, PaymentRequirements};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;

use crate::purchase_error::ClientError;

const FILE: &str = "solana-channels.json";

/// One channel as the buyer keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolanaChannelEntry {
    /// The channel account's keypair (base58), which signs the opening.
    pub keypair: String,
    pub channel: String,
    pub network: String,
    pub authority: String,
    pub mint: String,
    /// The gateway confirmed the opening.
    pub opened: bool,
    pub charged: u64,
    pub deposit: u64,
}

/// What a payment was made against, to apply its response to.
#[derive(Debug, Clone)]
pub struct PendingVoucher {
    pub key: String,
    pub cumulative: u64,
}

pub struct SolanaChannelWallet {
    dir: PathBuf,
    payer: Keypair,
    rpc_url: String,
    max_deposit: u64,
    /// What an opening or top-up deposits at least (besides the gateway's `minDeposit`), so that
    /// a buyer who knows its volume funds it once.
    deposit: u64,
}

fn io(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Sign(format!("{}: {e}", path.display()))
}

fn extra_str<'a>(r: &'a PaymentRequirements, field: &str) -> Result<&'a str, ClientError> {
    r.extra
        .as_ref()
        .and_then(|e| e.get(field))
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            ClientError::Challenge(format!("no extra.{field} on a solana-channel option"))
        })
}

fn extra_key(r: &PaymentRequirements, field: &str) -> Result<Pubkey, ClientError> {
    extra_str(r, field)?
        .parse()
        .map_err(|_| ClientError::Challenge(format!("extra.{field} is not a key")))
}

fn extra_u64(r: &PaymentRequirements, field: &str) -> Result<u64, ClientError> {
    let v = r.extra.as_ref().and_then(|e| e.get(field));
    v.and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
    .ok_or_else(|| ClientError::Challenge(format!("no extra.{field} on a solana-channel option")))
}

fn num(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl SolanaChannelWallet {
    /// The wallet of `payer` under `dir`; a deposit or top-up never exceeds `max_deposit`.
    pub fn new(dir: &Path, payer: Keypair, rpc_url: &str, max_deposit: Atomic) -> Self {
        SolanaChannelWallet {
            dir: dir.to_path_buf(),
            payer,
            rpc_url: rpc_url.to_string(),
            max_deposit: u64::try_from(max_deposit.get()).unwrap_or(u64::MAX),
            deposit: 0,
        }
    }

    /// Deposits at least `amount` at the opening and at each top-up (never above the maximum).
    pub fn depositing(mut self, amount: Atomic) -> Self {
        self.deposit = u64::try_from(amount.get()).unwrap_or(u64::MAX);
        self
    }

    pub fn channels(&self) -> Result<BTreeMap<String, SolanaChannelEntry>, ClientError> {
        let path = self.dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn save(&self, channels: &BTreeMap<String, SolanaChannelEntry>) -> Result<(), ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let path = self.dir.join(FILE);
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(channels).map_err(|e| io(&path, e))?;
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// The key a gateway's channel is filed under.
    fn key_of(r: &PaymentRequirements) -> Result<String, ClientError> {
        Ok(format!(
            "{}/{}/{}",
            r.network,
            extra_str(r, "authority")?,
            r.asset
        ))
    }

    /// The payment for one task priced `price` by `r`: the next voucher, with the opening or a
    /// top-up when the deposit cannot cover it.
    pub async fn pay(
        &self,
        r: &PaymentRequirements,
        price: u64,
    ) -> Result<(PaymentPayload, PendingVoucher), ClientError> {
        let sign =
            |what: &str, e: &dyn std::fmt::Display| ClientError::Sign(format!("{what}: {e}"));
        let key = Self::key_of(r)?;
        let mut channels = self.channels()?;
        let entry = match channels.get(&key) {
            Some(e) => e.clone(),
            None => {
                let kp = Keypair::new();
                let entry = SolanaChannelEntry {
                    keypair: kp.to_base58_string(),
                    channel: kp.pubkey().to_string(),
                    network: r.network.to_string(),
                    authority: extra_str(r, "authority")?.to_string(),
                    mint: r.asset.clone(),
                    opened: false,
                    charged: 0,
                    deposit: 0,
                };
                channels.insert(key.clone(), entry.clone());
                // Saved before anything is signed: the keypair names the channel for good.
                self.save(&channels)?;
                entry
            }
        };
        let channel: Pubkey = entry
            .channel
            .parse()
            .map_err(|_| ClientError::Sign(format!("channel {} in {FILE}", entry.channel)))?;
        let mint: Pubkey = r.asset.parse().map_err(|e| sign("asset", &e))?;
        let fee_payer = extra_key(r, "feePayer")?;
        let cumulative = entry.charged.saturating_add(price);
        let needed = cumulative.saturating_sub(entry.deposit);
        let amount = if needed == 0 {
            0
        } else {
            let announced = extra_u64(r, "minDeposit").unwrap_or(0);
            let amount = needed
                .max(announced)
                .max(self.deposit)
                .min(self.max_deposit);
            if amount < needed {
                return Err(ClientError::OverCap {
                    price: Atomic::new(needed.into()),
                    cap: Atomic::new(self.max_deposit.into()),
                });
            }
            amount
        };
        let funding = if amount == 0 {
            None
        } else {
            let rpc =
                RpcClient::new_with_commitment(self.rpc_url.clone(), CommitmentConfig::confirmed());
            let blockhash = rpc
                .get_latest_blockhash()
                .await
                .map_err(|e| sign("reading the latest blockhash", &e))?;
            let tx = if entry.opened {
                partially_signed(
                    &[top_up(&self.payer.pubkey(), &channel, &mint, amount)],
                    &fee_payer,
                    &[&self.payer],
                    blockhash,
                )
            } else {
                let kp = Keypair::from_base58_string(&entry.keypair);
                let opening = Opening {
                    payer: self.payer.pubkey(),
                    channel,
                    mint,
                    authority: extra_key(r, "authority")?,
                    maintainer: extra_key(r, "maintainer")?,
                    deposit: amount,
                    grace_secs: extra_u64(r, "graceSecs")?,
                    channel_rent: extra_u64(r, "channelRent")?,
                };
                partially_signed(
                    &open_instructions(&opening, &fee_payer),
                    &fee_payer,
                    &[&self.payer, &kp],
                    blockhash,
                )
            }
            .map_err(|e| sign("signing the funding", &e))?;
            Some(FundingTx {
                transaction: tx,
                amount,
            })
        };
        let voucher = voucher::sign(&self.payer, &channel, cumulative);
        let (open, top_up) = match (entry.opened, funding) {
            (false, f) => (f, None),
            (true, f) => (None, f),
        };
        if !entry.opened && open.is_none() {
            return Err(ClientError::Sign(
                "an unopened channel needs an opening".into(),
            ));
        }
        let payload = ChannelPayload {
            channel: entry.channel.clone(),
            payer: self.payer.pubkey().to_string(),
            voucher,
            open,
            top_up,
        };
        let value = serde_json::to_value(&payload).map_err(|e| ClientError::Sign(e.to_string()))?;
        Ok((
            buyer::payment_payload(r, value),
            PendingVoucher { key, cumulative },
        ))
    }

    /// Applies a paid response's `PAYMENT-RESPONSE` (its `channelState`): the channel is open,
    /// the deposit is what the gateway saw, the charge is the voucher just paid.
    pub fn settled(&self, pending: &PendingVoucher, response: &Value) -> Result<(), ClientError> {
        let mut channels = self.channels()?;
        let Some(entry) = channels.get_mut(&pending.key) else {
            return Ok(());
        };
        let state = &response["extra"]["channelState"];
        let charged = num(&state["charged"]);
        // Only what this buyer signed: never above the voucher just sent.
        if let Some(c) = charged.filter(|c| *c <= pending.cumulative) {
            entry.charged = c;
            entry.opened = true;
            if let Some(d) = num(&state["deposit"]) {
                entry.deposit = d;
            }
        }
        self.save(&channels)
    }

    /// Applies a corrective 402: the gateway's view of the channel, when it is one this buyer can
    /// check (a charge at or below its own, or backed by a voucher it signed). Returns whether
    /// anything changed, so the payment is worth retrying.
    pub fn resync(&self, r: &PaymentRequirements) -> Result<bool, ClientError> {
        let key = Self::key_of(r)?;
        let mut channels = self.channels()?;
        let Some(entry) = channels.get_mut(&key) else {
            return Ok(false);
        };
        let extra = r.extra.clone().unwrap_or_default();
        let state = &extra["channelState"];
        if state["channel"].as_str() != Some(entry.channel.as_str()) {
            return Ok(false);
        }
        let Some(charged) = num(&state["charged"]) else {
            return Ok(false);
        };
        let signed = extra["voucherState"]["signature"]
            .as_str()
            .is_some_and(|sig| {
                let channel: Option<Pubkey> = entry.channel.parse().ok();
                channel.is_some_and(|ch| {
                    voucher::verify(
                        &self.payer.pubkey(),
                        &ch,
                        &Voucher {
                            cumulative: charged,
                            signature: sig.to_string(),
                        },
                    )
                    .is_ok()
                })
            });
        if charged > entry.charged && !signed {
            return Ok(false);
        }
        let before = entry.clone();
        entry.charged = charged;
        entry.opened = true;
        if let Some(d) = num(&state["deposit"]) {
            entry.deposit = d;
        }
        let changed = *entry != before;
        self.save(&channels)?;
        Ok(changed)
    }
}
