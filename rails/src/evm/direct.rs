//! `base-x402-direct`: the x402 `exact` scheme on an EVM chain. The buyer signs an EIP-3009
//! `TransferWithAuthorization` to the payee; the gateway, acting as facilitator, checks it off
//! chain (signature, amount, window, recipient, asset, network), then against the chain (nonce
//! unused, balance, a simulated call), and settles by submitting it from its own key, paying the
//! gas. A direct rail pays exactly one payee, so it refuses commission-bearing terms: those go
//! through an escrow or a channel, where the split is enforced by contract.

use std::sync::atomic::{AtomicBool, Ordering};

use alloy::primitives::{Address, Bytes, TxHash};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use serde_json::json;
use x402_chain_eip155::v1_eip155_exact::types::ExactEvmPayload;

use super::buyer::{Authorization, AuthorizationKind};
use super::contracts::TestUsd;
use super::{EvmChain, SETTLE_MARGIN_SECS, chain_err, now_unix, parse_address, to_atomic};
use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::error::{RailError, VerifyError};
use crate::outbox::{Outbox, OutboxError};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Payout, Rail, RailKind, ReconcileReport,
    Settlement, Terms, Verified,
};

pub const NAME: &str = "base-x402-direct";
pub const SCHEME: &str = "exact";

/// The `base-x402-direct` rail.
pub struct BaseDirect {
    chain: EvmChain,
    provider: DynProvider,
    facilitator: Address,
    token: TestUsd::TestUsdInstance<DynProvider>,
    outbox: Outbox,
    caps: SafetyCaps,
    stop_after_send: AtomicBool,
}

impl BaseDirect {
    /// A rail on `chain` that settles from `facilitator` (its key pays the gas; it never holds
    /// buyer funds).
    pub fn new(
        chain: EvmChain,
        facilitator: &PrivateKeySigner,
        outbox: Outbox,
        caps: SafetyCaps,
    ) -> Self {
        let provider = chain.provider(facilitator);
        let token = TestUsd::new(chain.asset.address, provider.clone());
        BaseDirect {
            facilitator: facilitator.address(),
            chain,
            provider,
            token,
            outbox,
            caps,
            stop_after_send: AtomicBool::new(false),
        }
    }

    /// Test hook: the next settlement stops right after its transaction is sent, before the
    /// outbox records it, as a crash there would.
    #[doc(hidden)]
    pub fn stop_after_next_send(&self) {
        self.stop_after_send.store(true, Ordering::SeqCst);
    }

    fn parse(payload: &serde_json::Value) -> Result<ExactEvmPayload, VerifyError> {
        serde_json::from_value(payload.clone()).map_err(|e| VerifyError::Payload(e.to_string()))
    }

    /// The outbox key: EIP-3009 nonces are unique per (token, authorizer).
    fn settlement_id(&self, auth: &Authorization) -> String {
        format!(
            "eip3009:{}:{}:{}",
            self.chain.asset.address, auth.from, auth.nonce
        )
        .to_lowercase()
    }

    async fn send(&self, p: &ExactEvmPayload) -> Result<TxHash, RailError> {
        let a = &p.authorization;
        let pending = self
            .token
            .transferWithAuthorization(
                a.from,
                a.to,
                a.value,
                alloy::primitives::U256::from(a.valid_after.as_secs()),
                alloy::primitives::U256::from(a.valid_before.as_secs()),
                a.nonce,
                p.signature.clone(),
            )
            .send()
            .await
            .map_err(chain_err)?;
        Ok(*pending.tx_hash())
    }

    fn settlement(
        &self,
        id: &str,
        auth: &Authorization,
        receipt: Option<&TransactionReceipt>,
        tx: Option<TxHash>,
    ) -> Result<Settlement, RailError> {
        Ok(Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: id.to_string(),
            tx_hashes: tx.map(|t| t.to_string()).into_iter().collect(),
            payer: Some(auth.from.to_string()),
            payouts: vec![Payout {
                to: auth.to.to_string(),
                amount: to_atomic(auth.value)?,
            }],
            fee_native: receipt.map(super::receipt_fee).unwrap_or(0),
        })
    }

    /// Finishes a sent transaction: waits for its receipt and records the outcome.
    async fn conclude(
        &self,
        id: &str,
        auth: &Authorization,
        tx: TxHash,
    ) -> Result<Settlement, RailError> {
        self.outbox.mark_sent(id, &tx.to_string())?;
        match super::wait_receipt(&self.provider, tx).await? {
            Some(r) if r.status() => {
                self.outbox.mark_confirmed(id, Some(&tx.to_string()))?;
                self.settlement(id, auth, Some(&r), Some(tx))
            }
            Some(_) => {
                // A revert here means the authorization was used or became invalid between
                // verify and settle; reconciliation tells which.
                Err(RailError::Reverted {
                    tx: tx.to_string(),
                    reason: "transferWithAuthorization reverted".into(),
                })
            }
            None => Err(RailError::Chain(format!("no receipt for {tx} yet"))),
        }
    }

    /// The checks that need no chain (x402 fields, recipient, amount, time window, EIP-712
    /// signature): microseconds, so a gateway can refuse a bad payment before any RPC.
    /// Returns the parsed payload, its authorization and its value.
    pub fn verify_offchain(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(ExactEvmPayload, Authorization, Atomic), RailError> {
        let network = self.chain.network();
        super::check_accepted(payload, requirements, SCHEME, &network)?;
        let token = self.chain.asset.address;
        if !super::same_address(&requirements.asset, &token.to_string()) {
            return Err(VerifyError::Asset {
                expected: token.to_string(),
                got: requirements.asset.clone(),
            }
            .into());
        }
        let p = Self::parse(&payload.payload)?;
        let auth = Authorization::from_payload(&p);
        let pay_to = parse_address(NAME, "payTo", &requirements.pay_to)?;
        if auth.to != pay_to {
            return Err(VerifyError::Recipient {
                expected: pay_to.to_string(),
                got: auth.to.to_string(),
            }
            .into());
        }
        let amount: Atomic = requirements.amount.parse()?;
        let value = to_atomic(auth.value)?;
        if value != amount {
            return Err(VerifyError::Value {
                expected: amount,
                got: value,
            }
            .into());
        }
        check_window(&auth, now_unix())?;
        let digest = auth.digest(
            AuthorizationKind::Transfer,
            &self.chain.asset.name,
            &self.chain.asset.version,
            self.chain.chain_id,
            token,
        );
        if super::eip712::recover(&digest, &p.signature) != Some(auth.from) {
            return Err(VerifyError::Signature {
                expected: auth.from.to_string(),
            }
            .into());
        }
        Ok((p, auth, value))
    }

    /// The transaction that used an authorization, from the token's `AuthorizationUsed` log.
    async fn find_use(&self, auth: &Authorization) -> Result<Option<TxHash>, RailError> {
        let logs = self
            .token
            .AuthorizationUsed_filter()
            .topic1(auth.from)
            .topic2(auth.nonce)
            .from_block(0)
            .query()
            .await
            .map_err(chain_err)?;
        Ok(logs.first().and_then(|(_, log)| log.transaction_hash))
    }
}

#[async_trait]
impl Rail for BaseDirect {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> RailKind {
        RailKind::Direct
    }

    fn network(&self) -> ChainId {
        self.chain.network()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        if let Some(c) = &terms.commission
            && c.bps > 0
        {
            return Err(RailError::CommissionOnDirectRail {
                rail: NAME,
                bps: c.bps,
            });
        }
        self.caps.check(&Exposure {
            task_budget: terms.price,
            ..Exposure::default()
        })?;
        let pay_to = parse_address(NAME, "payTo", &terms.pay_to)?;
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.chain.network(),
            amount: terms.price.to_string(),
            pay_to: pay_to.to_checksum(None),
            max_timeout_seconds: terms.max_timeout_seconds,
            asset: self.chain.asset.address.to_checksum(None),
            extra: Some(super::asset_extra(&self.chain.asset, json!({}))),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        let network = self.chain.network();
        let (p, auth, value) = self.verify_offchain(payload, requirements)?;
        let id = self.settlement_id(&auth);
        let used = VerifyError::AuthorizationUsed {
            nonce: auth.nonce.to_string(),
        };
        if self.outbox.get(&id)?.is_some() {
            return Err(used.into());
        }
        if self
            .token
            .authorizationState(auth.from, auth.nonce)
            .call()
            .await
            .map_err(chain_err)?
        {
            return Err(used.into());
        }
        let balance = to_atomic(
            self.token
                .balanceOf(auth.from)
                .call()
                .await
                .map_err(chain_err)?,
        )?;
        if balance < value {
            return Err(VerifyError::InsufficientFunds {
                balance,
                needed: value,
            }
            .into());
        }
        simulate(&self.token, &p, self.facilitator).await?;
        Ok(Verified {
            rail: NAME.into(),
            network: network.to_string(),
            payer: auth.from.to_string(),
            amount: value,
            settlement_id: id,
            requirements: requirements.clone(),
            payload: payload.payload.clone(),
        })
    }

    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let p = Self::parse(&verified.payload)?;
        let auth = Authorization::from_payload(&p);
        let id = self.settlement_id(&auth);
        match self
            .outbox
            .record_intent(&id, NAME, json!({ "payload": verified.payload }))
        {
            Ok(_) => {}
            Err(OutboxError::AlreadyRecorded { .. }) => return Err(RailError::Replay(id)),
            Err(e) => return Err(e.into()),
        }
        let tx = self.send(&p).await?;
        if self.stop_after_send.swap(false, Ordering::SeqCst) {
            return Err(RailError::StoppedAfterSend { tx: tx.to_string() });
        }
        self.conclude(&id, &auth, tx).await
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        let mut report = ReconcileReport::default();
        for record in self.outbox.in_flight(NAME)? {
            let p = Self::parse(&record.request["payload"])?;
            let auth = Authorization::from_payload(&p);
            let used = self
                .token
                .authorizationState(auth.from, auth.nonce)
                .call()
                .await
                .map_err(chain_err)?;
            if used {
                let tx = match &record.tx_hash {
                    Some(t) => Some(t.clone()),
                    None => self.find_use(&auth).await?.map(|t| t.to_string()),
                };
                self.outbox.mark_confirmed(&record.id, tx.as_deref())?;
                report.confirmed.push(record.id);
            } else if auth.valid_before > now_unix() + SETTLE_MARGIN_SECS {
                let tx = self.send(&p).await?;
                self.conclude(&record.id, &auth, tx).await?;
                report.resent.push(record.id);
            } else {
                self.outbox
                    .mark_failed(&record.id, "authorization expired before it was settled")?;
                report.failed.push(record.id);
            }
        }
        Ok(report)
    }
}

/// The authorization's time window, with room to settle before it closes.
pub(crate) fn check_window(auth: &Authorization, now: u64) -> Result<(), VerifyError> {
    if auth.valid_after >= now {
        return Err(VerifyError::NotYetValid {
            valid_after: auth.valid_after,
            now,
        });
    }
    if auth.valid_before <= now + SETTLE_MARGIN_SECS {
        return Err(VerifyError::Expired {
            valid_before: auth.valid_before,
            now,
        });
    }
    Ok(())
}

/// Runs the settlement as an `eth_call`: catches anything the off-chain checks cannot see (a
/// paused or blacklisting token, for instance).
async fn simulate(
    token: &TestUsd::TestUsdInstance<DynProvider>,
    p: &ExactEvmPayload,
    from: Address,
) -> Result<(), VerifyError> {
    let a = &p.authorization;
    token
        .transferWithAuthorization(
            a.from,
            a.to,
            a.value,
            alloy::primitives::U256::from(a.valid_after.as_secs()),
            alloy::primitives::U256::from(a.valid_before.as_secs()),
            a.nonce,
            Bytes::clone(&p.signature),
        )
        .from(from)
        .call()
        .await
        .map(|_| ())
        .map_err(|e| VerifyError::Simulation(e.to_string()))
}
