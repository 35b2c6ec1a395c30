//! A buyer of d402 work (`d402 client`): answers a gateway's 402 with an x402 v2 payment signed
//! by the buyer's key, within a spend cap, and waits for the validated result.

use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use d402_rails::evm::buyer;
use d402_rails::{Atomic, PaymentRequired, PaymentRequirements};
use serde_json::Value;

use crate::gateway::api::{PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use crate::gateway::encode_header;

/// Why a purchase did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("gateway: {0}")]
    Http(#[from] reqwest::Error),
    #[error("gateway answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the 402 carries no usable PAYMENT-REQUIRED header: {0}")]
    Challenge(String),
    #[error("no payment option this client can pay (schemes offered: {0})")]
    NoOption(String),
    #[error("the price {price} is above the spend cap {cap} (atomic units): not paying")]
    OverCap { price: Atomic, cap: Atomic },
    #[error("signing the payment: {0}")]
    Sign(String),
    #[error("the task did not finish within {0:?}")]
    Timeout(Duration),
}

/// A buyer bound to one gateway.
pub struct Buyer {
    pub gateway: String,
    pub signer: PrivateKeySigner,
    /// The most one task may cost, in atomic units; `None` pays any price.
    pub max_spend: Option<Atomic>,
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
        Self {
            gateway: gateway.trim_end_matches('/').to_string(),
            signer,
            max_spend,
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
        let header = res
            .headers()
            .get(PAYMENT_REQUIRED)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ClientError::Challenge("missing".into()))?;
        let required: PaymentRequired = base64::engine::general_purpose::STANDARD
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ClientError::Challenge("not base64 JSON of x402 v2".into()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (requirements, payload) = required
            .accepts
            .iter()
            .find_map(|r| {
                let signed = match r.scheme.as_str() {
                    "exact" => buyer::pay_exact(&self.signer, r, now),
                    d402_rails::evm::escrow::SCHEME => buyer::pay_escrow(&self.signer, r, now),
                    _ => return None,
                };
                Some(signed.map(|p| (r.clone(), p)))
            })
            .ok_or_else(|| {
                ClientError::NoOption(
                    required
                        .accepts
                        .iter()
                        .map(|r| r.scheme.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })?
            .map_err(|e| ClientError::Sign(e.to_string()))?;
        let price: Atomic = requirements
            .amount
            .parse()
            .map_err(|_| ClientError::Challenge(format!("amount {:?}", requirements.amount)))?;
        if let Some(cap) = self.max_spend
            && price > cap
        {
            return Err(ClientError::OverCap { price, cap });
        }
        let res = self
            .http
            .post(&url)
            .header(PAYMENT_SIGNATURE, encode_header(&payload))
            .json(&body)
            .send()
            .await?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        let mut task: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200 => {}
            202 => task = self.wait(&task).await?,
            _ => return Err(ClientError::Refused { status, body: text }),
        }
        Ok(Purchase {
            task,
            paid: price,
            requirements,
        })
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
