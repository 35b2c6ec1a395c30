//! A buyer of d402 work (`d402 client`): answers a gateway's 402 with an x402 v2 payment signed
//! by the buyer's key, within a spend cap, and waits for the validated result.

use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use d402_rails::evm::buyer;
use d402_rails::solana::{direct, escrow};
use d402_rails::{Atomic, PaymentPayload, PaymentRequired, PaymentRequirements};
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;

use crate::gateway::api::{PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use crate::gateway::api::{decode_header, encode_header};

pub use crate::purchase_error::ClientError;

/// A buyer's Solana side: the keypair that signs `exact` transfers and the cluster it reads the
/// latest blockhash and the mint's decimals from.
pub struct SolanaPayer {
    pub keypair: Keypair,
    pub rpc_url: String,
}

impl SolanaPayer {
    /// The x402 SVM `exact` payload for `r`: a `TransferChecked` to `payTo`'s token account,
    /// signed by the buyer, with the gateway's `extra.feePayer` as fee payer (left for the
    /// gateway to sign); on `solana-task-escrow`, the funding of the task's escrow instead.
    async fn pay(&self, r: &PaymentRequirements) -> Result<PaymentPayload, ClientError> {
        let rpc =
            RpcClient::new_with_commitment(self.rpc_url.clone(), CommitmentConfig::confirmed());
        let sign =
            |what: &str, e: &dyn std::fmt::Display| ClientError::Sign(format!("{what}: {e}"));
        let mint: Pubkey = r.asset.parse().map_err(|e| sign("asset", &e))?;
        let fee_payer: Pubkey = r
            .extra
            .as_ref()
            .and_then(|e| e.get("feePayer"))
            .and_then(|f| f.as_str())
            .ok_or_else(|| ClientError::Challenge("no extra.feePayer on a Solana option".into()))?
            .parse()
            .map_err(|e| sign("extra.feePayer", &e))?;
        let blockhash = rpc
            .get_latest_blockhash()
            .await
            .map_err(|e| sign("reading the latest blockhash", &e))?;
        // A task escrow: the funding of the escrow the challenge names, built from it alone.
        if r.scheme == escrow::SCHEME {
            let transaction = escrow::funding_transaction(&self.keypair, r, blockhash)
                .map_err(|e| sign("building the escrow funding", &e))?;
            return Ok(buyer::payment_payload(
                r,
                serde_json::json!({ "transaction": transaction }),
            ));
        }
        let decimals = rpc
            .get_token_supply(&mint)
            .await
            .map_err(|e| sign("reading the mint", &e))?
            .decimals;
        let instructions = direct::payment_instructions(&self.keypair.pubkey(), r, decimals, 0)
            .map_err(|e| sign("building the transfer", &e))?;
        let transaction =
            direct::partially_signed(&instructions, &fee_payer, &[&self.keypair], blockhash)
                .map_err(|e| sign("signing", &e))?;
        Ok(buyer::payment_payload(
            r,
            serde_json::json!({ "transaction": transaction }),
        ))
    }
}

/// A buyer bound to one gateway.
pub struct Buyer {
    pub gateway: String,
    /// Pays EVM options (`exact` with EIP-3009, `d402-task-escrow`).
    pub signer: Option<PrivateKeySigner>,
    /// Pays Solana `exact` options.
    pub solana: Option<SolanaPayer>,
    /// The most one task may cost, in atomic units; `None` pays any price.
    pub max_spend: Option<Atomic>,
    /// Pays `batch-settlement` options from channels kept on disk (with the EVM key).
    pub channels: Option<crate::channel_wallet::ChannelWallet>,
    /// Pays `d402-solana-channel` options from channels kept on disk (with the Solana key).
    pub solana_channels: Option<crate::solana_channel_wallet::SolanaChannelWallet>,
    pub http: reqwest::Client,
    pub patience: Duration,
}

/// What a purchase produced: the task view the gateway returned, and what was paid.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purchase {
    pub task: Value,
    pub paid: Atomic,
    pub requirements: PaymentRequirements,
}

/// `GET /.well-known/d402-gateway.json`.
pub async fn discover(http: &reqwest::Client, gateway: &str) -> Result<Value, ClientError> {
    let res = http
        .get(format!(
            "{}/.well-known/d402-gateway.json",
            gateway.trim_end_matches('/')
        ))
        .send()
        .await?;
    let status = res.status().as_u16();
    if status != 200 {
        return Err(ClientError::Refused {
            status,
            body: res.text().await.unwrap_or_default(),
        });
    }
    Ok(res.json().await?)
}

impl Buyer {
    pub fn new(gateway: &str, signer: PrivateKeySigner, max_spend: Option<Atomic>) -> Self {
        Self::with_wallets(gateway, Some(signer), None, max_spend)
    }

    /// A buyer with an EVM key, a Solana payer, or both: it pays the first option of the
    /// challenge that one of them can pay.
    pub fn with_wallets(
        gateway: &str,
        signer: Option<PrivateKeySigner>,
        solana: Option<SolanaPayer>,
        max_spend: Option<Atomic>,
    ) -> Self {
        Self {
            gateway: gateway.trim_end_matches('/').to_string(),
            signer,
            solana,
            max_spend,
            channels: None,
            solana_channels: None,
            http: reqwest::Client::new(),
            patience: Duration::from_secs(300),
        }
    }

    /// Buys one task: challenge, pay (if within the cap), wait for the result.
    pub async fn run(&self, capability: &str, input: Value) -> Result<Purchase, ClientError> {
        let body = serde_json::json!({ "capability": capability, "input": input });
        let url = format!("{}/tasks", self.gateway);
        let res = self.http.post(&url).json(&body).send().await?;
        let status = res.status().as_u16();
        if status != 402 {
            return Err(ClientError::Refused {
                status,
                body: res.text().await.unwrap_or_default(),
            });
        }
        if !res.headers().contains_key(PAYMENT_REQUIRED) {
            return Err(ClientError::Challenge("missing".into()));
        }
        let required: PaymentRequired = decode_header(res.headers(), PAYMENT_REQUIRED)
            .ok_or_else(|| ClientError::Challenge("not base64 JSON of x402 v2".into()))?;
        let now = d402_core::clock::now_unix();
        let mut chosen = None;
        for r in &required.accepts {
            let solana = r.network.to_string().starts_with("solana:");
            let payable = match (r.scheme.as_str(), solana) {
                ("exact", true) | (d402_rails::solana::escrow::SCHEME, true) => {
                    self.solana.is_some()
                }
                (d402_rails::solana::channel::rail::SCHEME, true) => self.solana_channels.is_some(),
                ("exact", false) | (d402_rails::evm::escrow::SCHEME, false) => {
                    self.signer.is_some()
                }
                (d402_rails::evm::batch::SCHEME, false) => self.channels.is_some(),
                _ => false,
            };
            if payable {
                chosen = Some(r);
                break;
            }
        }
        let requirements = chosen.cloned().ok_or_else(|| {
            ClientError::NoOption(
                required
                    .accepts
                    .iter()
                    .map(|r| format!("{} on {}", r.scheme, r.network))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        // The cap is checked before anything is signed.
        let price: Atomic = requirements
            .amount
            .parse()
            .map_err(|_| ClientError::Challenge(format!("amount {:?}", requirements.amount)))?;
        if let Some(cap) = self.max_spend
            && price > cap
        {
            return Err(ClientError::OverCap { price, cap });
        }
        // At most twice: a channel out of step with the gateway is corrected once (the
        // scheme's corrective 402) and paid again.
        let mut attempts = 0;
        let task = loop {
            attempts += 1;
            if requirements.scheme == d402_rails::solana::channel::rail::SCHEME
                && let Some(wallet) = &self.solana_channels
            {
                let price = u64::try_from(price.get())
                    .map_err(|_| ClientError::Challenge(format!("price {price}")))?;
                let (payload, pending) = wallet.pay(&requirements, price).await?;
                let res = self
                    .http
                    .post(&url)
                    .header(PAYMENT_SIGNATURE, encode_header(&payload))
                    .json(&body)
                    .send()
                    .await?;
                let status = res.status().as_u16();
                let response: Option<Value> = decode_header(res.headers(), PAYMENT_RESPONSE);
                let corrective: Option<PaymentRequired> =
                    decode_header(res.headers(), PAYMENT_REQUIRED);
                let text = res.text().await.unwrap_or_default();
                if let Some(response) = &response {
                    wallet.settled(&pending, response)?;
                }
                if status == 402
                    && attempts < 3
                    && let Some(c) = &corrective
                    && c.error.as_deref().is_some_and(|e| {
                        e.starts_with("invalid_solana_channel_")
                            && c.accepts.first().is_some_and(|r| {
                                r.extra
                                    .as_ref()
                                    .is_some_and(|x| x.get("channelState").is_some())
                            })
                    })
                    && let Some(r) = c.accepts.first()
                    && wallet.resync(r)?
                {
                    continue;
                }
                let task: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                break match status {
                    200 => task,
                    202 => self.wait(&task).await?,
                    _ => return Err(ClientError::Refused { status, body: text }),
                };
            }
            let (payload, pending) = match (&self.solana, &self.signer, &self.channels) {
                (Some(payer), _, _) if requirements.network.to_string().starts_with("solana:") => {
                    (payer.pay(&requirements).await?, None)
                }
                (_, _, Some(wallet)) if requirements.scheme == d402_rails::evm::batch::SCHEME => {
                    let (p, pending) = wallet.pay(&requirements, price, now)?;
                    (p, Some(pending))
                }
                (_, Some(signer), _) if requirements.scheme == d402_rails::evm::escrow::SCHEME => (
                    buyer::pay_escrow(signer, &requirements, now)
                        .map_err(|e| ClientError::Sign(e.to_string()))?,
                    None,
                ),
                (_, Some(signer), _) => (
                    buyer::pay_exact(signer, &requirements, now)
                        .map_err(|e| ClientError::Sign(e.to_string()))?,
                    None,
                ),
                (_, None, _) => return Err(ClientError::NoOption("no EVM key".into())),
            };
            let res = self
                .http
                .post(&url)
                .header(PAYMENT_SIGNATURE, encode_header(&payload))
                .json(&body)
                .send()
                .await?;
            let status = res.status().as_u16();
            let response: Option<Value> = decode_header(res.headers(), PAYMENT_RESPONSE);
            let corrective: Option<PaymentRequired> =
                decode_header(res.headers(), PAYMENT_REQUIRED);
            let text = res.text().await.unwrap_or_default();
            if let (Some(wallet), Some(pending), Some(response)) =
                (&self.channels, &pending, &response)
            {
                wallet.settled(pending, response)?;
            }
            if status == 402
                && attempts < 2
                && let (Some(wallet), Some(c)) = (&self.channels, &corrective)
                && c.error.as_deref()
                    == Some("invalid_batch_settlement_evm_cumulative_amount_mismatch")
                && let Some(r) = c.accepts.first()
                && wallet.resync(r)?
            {
                continue;
            }
            let task: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            break match status {
                200 => task,
                202 => self.wait(&task).await?,
                _ => return Err(ClientError::Refused { status, body: text }),
            };
        };
        Ok(Purchase {
            task,
            paid: price,
            requirements,
        })
    }

    /// Asks the gateway for the unspent balance of this buyer's channel back (all of it, or
    /// `amount`): probes `/channel/refund` for the requirements naming the channel, then sends
    /// the refund. Returns the decoded `PAYMENT-RESPONSE` (`amount` is what came back).
    pub async fn refund(&self, amount: Option<Atomic>) -> Result<Value, ClientError> {
        let wallet = self
            .channels
            .as_ref()
            .ok_or_else(|| ClientError::NoOption("no channel wallet (--state)".into()))?;
        let url = format!("{}/channel/refund", self.gateway);
        let probe = self.http.get(&url).send().await?;
        let required: PaymentRequired = decode_header(probe.headers(), PAYMENT_REQUIRED)
            .ok_or_else(|| {
                ClientError::Challenge("the refund probe carried no requirements".into())
            })?;
        let r = required
            .accepts
            .iter()
            .find(|r| r.scheme == d402_rails::evm::batch::SCHEME)
            .ok_or_else(|| {
                ClientError::NoOption("the gateway has no batch-settlement channels".into())
            })?;
        let (payload, channel) = wallet.refund(r, amount)?;
        let res = self
            .http
            .get(&url)
            .header(PAYMENT_SIGNATURE, encode_header(&payload))
            .send()
            .await?;
        let status = res.status().as_u16();
        let response: Option<Value> = decode_header(res.headers(), PAYMENT_RESPONSE);
        let text = res.text().await.unwrap_or_default();
        match (status, response) {
            (200, Some(response)) => {
                wallet.refunded(&channel, &response)?;
                Ok(response)
            }
            _ => Err(ClientError::Refused { status, body: text }),
        }
    }

    async fn wait(&self, task: &Value) -> Result<Value, ClientError> {
        let url = task["url"].as_str().unwrap_or_default().to_string();
        let until = Instant::now() + self.patience;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t: Value = self.http.get(&url).send().await?.json().await?;
            match t["status"].as_str() {
                Some("delivered") => return Ok(t),
                Some("failed" | "refunded" | "refund_pending") => {
                    return Err(ClientError::Refused {
                        status: 502,
                        body: t.to_string(),
                    });
                }
                _ => {}
            }
        }
        Err(ClientError::Timeout(self.patience))
    }
}
