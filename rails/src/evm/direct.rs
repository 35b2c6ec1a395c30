//! `base-x402-direct`: the x402 `exact` scheme on an EVM chain. The buyer signs an EIP-3009
//! `TransferWithAuthorization` to the payee; the gateway, acting as facilitator, checks it off
//! chain (signature, amount, window, recipient, asset, network), then against the chain (nonce
//! unused, balance, a simulated call), and settles by submitting it from its own key, paying the
//! gas. A direct rail pays exactly one payee, so it refuses commission-bearing terms: those go
//! through an escrow or a channel, where the split is enforced by contract.
//!
//! After settlement the payee's wallet pays out of what it received ([`Release::Payouts`]): the
//! worker's net when a task is delivered, the whole price back to the buyer when it fails. Each
//! payout is an EIP-3009 `transferWithAuthorization` that the facilitator key (which must be the
//! payee's) signs from its own wallet, with a nonce derived from (task, recipient). The token
//! executes a nonce at most once, so the chain itself makes a payout idempotent: a retry, a
//! restart, or a crash between sending and recording can be answered by asking the token
//! whether the nonce is used, and never pays twice. A plain ERC-20 `transfer` has no such
//! identity: after a crash nothing on chain would tell a sent payout from one never sent.

use std::sync::atomic::{AtomicBool, Ordering};

use alloy::primitives::{Address, B256, Bytes, TxHash, U256, keccak256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use serde_json::json;
use x402_chain_eip155::v1_eip155_exact::types::ExactEvmPayload;

use super::buyer::{Authorization, AuthorizationKind};
use super::contracts::TestUsd;
use super::{EvmChain, SETTLE_MARGIN_SECS, chain_err, now_unix, parse_address, to_atomic, to_u256};
use crate::amount::Atomic;
use crate::caps::SafetyCaps;
use crate::delivery::{Accepted, Delivery, direct_lifecycle, owe_workers};
use crate::error::{RailError, VerifyError};
use crate::outbox::{Outbox, OutboxError, SettlementRecord, SettlementState};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Payout, Rail, ReconcileReport, Release,
    Settlement, TaskId, Terms, Verified,
};
use crate::refund::{PaidTask, Refund};

pub const NAME: &str = "base-x402-direct";
pub const SCHEME: &str = "exact";

/// How long a payout's authorization stays valid once signed. It is signed afresh at every
/// attempt (the nonce, not the signature, is its identity), so this only bounds how long one
/// sent transaction may wait for a block.
pub const PAYOUT_VALIDITY_SECS: u64 = 3600;

/// The outbox id prefix of payouts, to tell them from settlements on reconciliation.
const PAYOUT_PREFIX: &str = "payout:";

/// The `base-x402-direct` rail.
pub struct BaseDirect {
    chain: EvmChain,
    provider: DynProvider,
    facilitator: Address,
    /// The facilitator key: pays settlement gas, and signs payouts out of its own wallet.
    signer: PrivateKeySigner,
    token: TestUsd::TestUsdInstance<DynProvider>,
    outbox: Outbox,
    caps: SafetyCaps,
    stop_after_send: AtomicBool,
    /// Held while a transaction of the facilitator key is handed to the chain: the provider
    /// reads the pending nonce per transaction ([`EvmChain::serial_provider`]), so two
    /// concurrent sends would read the same one.
    sending: tokio::sync::Mutex<()>,
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
        let provider = chain.serial_provider(facilitator);
        let token = TestUsd::new(chain.asset.address, provider.clone());
        BaseDirect {
            facilitator: facilitator.address(),
            signer: facilitator.clone(),
            chain,
            provider,
            token,
            outbox,
            caps,
            stop_after_send: AtomicBool::new(false),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// The lock every transaction of the facilitator key is sent under; a rail that sends from
    /// the same key (a channel paying workers through this engine) takes it too.
    pub(crate) fn sending(&self) -> &tokio::sync::Mutex<()> {
        &self.sending
    }

    /// Test hook: the next settlement or payout stops right after its transaction is sent,
    /// before the outbox records it, as a crash there would.
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
        let _one_at_a_time = self.sending.lock().await;
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
            extra: None,
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

    /// The outbox id of the payout of `task` to `to`.
    fn payout_id(&self, task: &TaskId, to: Address) -> String {
        format!(
            "{PAYOUT_PREFIX}{}:{}:{}",
            self.chain.asset.address, task, to
        )
        .to_lowercase()
    }

    /// The EIP-3009 nonce of the payout of `task` to `to`: the same at every attempt, so the
    /// token executes it at most once.
    pub fn payout_nonce(task: &TaskId, to: Address) -> B256 {
        let mut bytes = Vec::with_capacity(11 + 32 + 20);
        bytes.extend_from_slice(b"d402.payout");
        bytes.extend_from_slice(task.0.as_slice());
        bytes.extend_from_slice(to.as_slice());
        keccak256(bytes)
    }

    /// Signs the payout authorization afresh and sends it.
    async fn send_payout(&self, p: &PayoutRequest) -> Result<TxHash, RailError> {
        let auth = Authorization {
            from: self.facilitator,
            to: p.to,
            value: to_u256(p.amount),
            valid_after: 0,
            valid_before: now_unix() + PAYOUT_VALIDITY_SECS,
            nonce: p.nonce,
        };
        let digest = auth.digest(
            AuthorizationKind::Transfer,
            &self.chain.asset.name,
            &self.chain.asset.version,
            self.chain.chain_id,
            self.chain.asset.address,
        );
        let signature = self
            .signer
            .sign_hash_sync(&digest)
            .map_err(|e| RailError::Refused(format!("signing a payout failed: {e}")))?;
        let _one_at_a_time = self.sending.lock().await;
        let pending = self
            .token
            .transferWithAuthorization(
                auth.from,
                auth.to,
                auth.value,
                U256::from(auth.valid_after),
                U256::from(auth.valid_before),
                auth.nonce,
                Bytes::copy_from_slice(&signature.as_bytes()),
            )
            .send()
            .await
            .map_err(chain_err)?;
        Ok(*pending.tx_hash())
    }

    /// The transaction that executed a payout nonce, if it executed.
    async fn payout_use(&self, nonce: B256) -> Result<Option<Option<TxHash>>, RailError> {
        let used = self
            .token
            .authorizationState(self.facilitator, nonce)
            .call()
            .await
            .map_err(chain_err)?;
        if !used {
            return Ok(None);
        }
        let logs = self
            .token
            .AuthorizationUsed_filter()
            .topic1(self.facilitator)
            .topic2(nonce)
            .from_block(0)
            .query()
            .await
            .map_err(chain_err)?;
        Ok(Some(logs.first().and_then(|(_, log)| log.transaction_hash)))
    }

    /// Finishes a payout whose intent is recorded: asks the chain whether it already executed
    /// (an earlier attempt may have sent it and died), else sends it and waits for it. Returns
    /// the transaction and the gas paid now (zero when an earlier attempt paid it).
    async fn complete_payout(
        &self,
        id: &str,
        p: &PayoutRequest,
        ask_chain: bool,
    ) -> Result<(Option<TxHash>, u128, bool), RailError> {
        if ask_chain && let Some(tx) = self.payout_use(p.nonce).await? {
            let tx_str = tx.map(|t| t.to_string());
            self.outbox.mark_confirmed(id, tx_str.as_deref())?;
            return Ok((tx, 0, false));
        }
        let tx = match self.send_payout(p).await {
            Ok(tx) => tx,
            Err(e) => {
                // Refused before it left (a gas estimate that reverts): perhaps because another
                // attempt has just used the nonce, which is success, not failure.
                if let Some(earlier) = self.payout_use(p.nonce).await? {
                    let tx_str = earlier.map(|t| t.to_string());
                    self.outbox.mark_confirmed(id, tx_str.as_deref())?;
                    return Ok((earlier, 0, false));
                }
                return Err(e);
            }
        };
        if self.stop_after_send.swap(false, Ordering::SeqCst) {
            return Err(RailError::StoppedAfterSend { tx: tx.to_string() });
        }
        self.outbox.mark_sent(id, &tx.to_string())?;
        match super::wait_receipt(&self.provider, tx).await? {
            Some(r) if r.status() => {
                self.outbox.mark_confirmed(id, Some(&tx.to_string()))?;
                Ok((Some(tx), super::receipt_fee(&r), true))
            }
            Some(_) => {
                // An earlier attempt still waiting for a block may have used the nonce first:
                // then this one reverted because the payout is already made.
                if let Some(earlier) = self.payout_use(p.nonce).await? {
                    let tx_str = earlier.map(|t| t.to_string());
                    self.outbox.mark_confirmed(id, tx_str.as_deref())?;
                    return Ok((earlier, 0, false));
                }
                // The nonce is unused, so a later attempt is safe: the record says failed until
                // then.
                self.outbox.mark_failed(id, "payout reverted")?;
                Err(RailError::Reverted {
                    tx: tx.to_string(),
                    reason: format!("payout {id} reverted"),
                })
            }
            None => Err(RailError::Chain(format!("no receipt for {tx} yet"))),
        }
    }

    /// Pays `amount` of `task` to `to`, once: records the intent first, or picks up the record
    /// an earlier attempt left. Returns the payout's transaction (sent now or earlier) and the
    /// gas paid now.
    async fn pay_once(
        &self,
        task: &TaskId,
        to: Address,
        amount: Atomic,
    ) -> Result<(Option<TxHash>, u128), RailError> {
        let id = self.payout_id(task, to);
        let request = PayoutRequest {
            task: *task,
            to,
            amount,
            nonce: Self::payout_nonce(task, to),
        };
        let body = serde_json::to_value(&request).map_err(|e| RailError::Refused(e.to_string()))?;
        let ask_chain = match self.outbox.record_intent(&id, NAME, body) {
            Ok(_) => false,
            Err(OutboxError::AlreadyRecorded { .. }) => {
                let record = self
                    .outbox
                    .get(&id)?
                    .ok_or_else(|| OutboxError::Unknown(id.clone()))?;
                let recorded = PayoutRequest::of(&record.request)?;
                if recorded.amount != amount {
                    return Err(RailError::PayoutConflict {
                        id,
                        recorded: recorded.amount,
                        requested: amount,
                    });
                }
                match record.state {
                    SettlementState::Confirmed => {
                        let tx = record.tx_hash.as_deref().and_then(|t| t.parse().ok());
                        return Ok((tx, 0));
                    }
                    SettlementState::Failed { .. } => {
                        self.outbox.reopen(&id)?;
                    }
                    SettlementState::Intent | SettlementState::Sent => {}
                }
                true
            }
            Err(e) => return Err(e.into()),
        };
        let (tx, fee, _) = self.complete_payout(&id, &request, ask_chain).await?;
        Ok((tx, fee))
    }

    /// [`Release::Payouts`]: each recipient's payout, once.
    async fn pay_out(
        &self,
        task_id: &TaskId,
        from: &str,
        payouts: &[Payout],
    ) -> Result<Settlement, RailError> {
        let source = parse_address(NAME, "payout source", from)?;
        if source != self.facilitator {
            return Err(RailError::PayoutSource {
                rail: NAME,
                from: source.to_string(),
                signer: self.facilitator.to_string(),
            });
        }
        // All recipients are checked before anything is recorded; one recipient named twice is
        // paid the sum, once.
        let mut merged: Vec<(Address, Atomic)> = Vec::new();
        for p in payouts {
            let to = parse_address(NAME, "payout recipient", &p.to)?;
            match merged.iter_mut().find(|(a, _)| *a == to) {
                Some((_, sum)) => {
                    *sum = sum
                        .checked_add(p.amount)
                        .ok_or_else(|| RailError::Refused(format!("payouts to {to} overflow")))?
                }
                None => merged.push((to, p.amount)),
            }
        }
        merged.retain(|(_, a)| !a.is_zero());
        let mut tx_hashes = Vec::new();
        let mut fee_native = 0u128;
        for (to, amount) in &merged {
            let (tx, fee) = self.pay_once(task_id, *to, *amount).await?;
            tx_hashes.extend(tx.map(|t| t.to_string()));
            fee_native = fee_native.saturating_add(fee);
        }
        Ok(Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: format!("payouts:{}:{}", self.chain.asset.address, task_id)
                .to_lowercase(),
            tx_hashes,
            payer: Some(source.to_string()),
            payouts: merged
                .into_iter()
                .map(|(to, amount)| Payout {
                    to: to.to_string(),
                    amount,
                })
                .collect(),
            fee_native,
            extra: None,
        })
    }
}

/// What the outbox keeps of a payout: enough to sign and send it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayoutRequest {
    task: TaskId,
    to: Address,
    amount: Atomic,
    nonce: B256,
}

impl PayoutRequest {
    fn of(request: &serde_json::Value) -> Result<PayoutRequest, RailError> {
        serde_json::from_value(request.clone())
            .map_err(|e| RailError::Refused(format!("unreadable payout record: {e}")))
    }
}

#[async_trait]
impl Rail for BaseDirect {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pays_out(&self) -> bool {
        true
    }

    fn accepts_wallet(&self, wallet: &str) -> bool {
        wallet.parse::<Address>().is_ok()
    }

    direct_lifecycle!();

    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        Ok(owe_workers(
            &self.network(),
            |w| self.accepts_wallet(w),
            accepted,
        ))
    }

    /// The whole price back to the buyer out of `payTo`, at once.
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        Ok(Refund::Refunded(self.finalize(&task.payout_back()).await?))
    }

    fn network(&self) -> ChainId {
        self.chain.network()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        terms.check_direct(NAME, &self.caps)?;
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
        // The simulation alone shows that the payment goes through now (an unused nonce, the
        // funds, a token that is not paused): one call on the happy path. Only when it fails
        // is the chain asked why, to answer with x402's own reason.
        if let Err(failed) = simulate(&self.token, &p, self.facilitator).await {
            return Err(super::why_not_settling(&self.token, &auth, value, false, failed).await);
        }
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

    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        let (task_id, from, payouts) = release.payouts(NAME)?;
        self.pay_out(task_id, from, payouts).await
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        Ok(self.outbox.get(id)?.map(|r| r.state))
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.outbox.all_in_flight()?)
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        let mut report = ReconcileReport::default();
        for record in self.outbox.in_flight(NAME)? {
            if record.id.starts_with(PAYOUT_PREFIX) {
                let request = PayoutRequest::of(&record.request)?;
                match self.complete_payout(&record.id, &request, true).await {
                    Ok((_, _, false)) => report.confirmed.push(record.id),
                    Ok((_, _, true)) => report.resent.push(record.id),
                    // A payout that cannot go through now (the wallet cannot cover it, the
                    // transaction reverted) must not stop the others, nor the gateway's start:
                    // it stays owed, and resuming its task tries again.
                    Err(RailError::Reverted { .. }) | Err(RailError::Chain(_)) => {
                        report.pending.push(record.id)
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
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

/// Runs the settlement as an `eth_call`: whether it goes through now, including what the
/// off-chain checks cannot see (a used nonce, the funds, a paused or blacklisting token).
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
