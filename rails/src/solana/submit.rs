//! Sending money-moving transactions through the core [`Outbox`]: intent first, then send, then
//! wait for the chain's verdict; and reconciling what a crash left in flight.
//!
//! Solana makes this exact. A transaction's id is its first signature, and ed25519 signatures are
//! deterministic, so the id is known before anything leaves the process; it is the outbox key
//! (`solana:<signature>`). A transaction can land only while its recent blockhash is valid
//! (~150 slots), and the chain refuses a second copy of the same signature. So after a crash, for
//! each in-flight record:
//! - `getSignatureStatuses` knows the signature → it landed: record the outcome, never resend;
//! - unknown, blockhash still valid → resend the *same* bytes (a duplicate is refused by the chain);
//! - unknown, blockhash expired → it can never land: the record is failed (`expired`) and the
//!   caller may build a new transaction (new blockhash, new signature, new record).
//!
//! The same keys serve replay protection: a payment whose id is already recorded is a replay.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_api::config::RpcSendTransactionConfig;
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;
use std::sync::Arc;

use super::wire;
use crate::outbox::{Outbox, OutboxError, SettlementRecord, SettlementState};
use crate::rail::ReconcileReport;

/// How often the chain is asked about a pending signature. The local validator confirms in
/// ~0.2 s with `ticks_per_slot(8)`; mainnet in ~0.4–1 s.
const POLL: Duration = Duration::from_millis(25);

/// What a recorded transaction does; kept in the outbox request for audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// An x402 `exact` payment co-signed by the gateway (solana-direct).
    DirectPayment,
    /// A task escrow funding transaction (buyer → vault).
    EscrowFunding,
    /// A task escrow split settlement (vault → worker, creator, gateway).
    EscrowSettlement,
    /// A task escrow refund (vault → buyer).
    EscrowRefund,
    /// A solana-direct payout out of the gateway's wallet: a worker's net, or a buyer's refund.
    /// Recorded under the payout's own id (task and recipient), not the signature, so that a
    /// payout is one record however many transactions it takes.
    DirectPayout,
    /// A `solana-channel` root publication (the precompile's signatures and PublishRoot).
    ChannelRoot,
    /// A `solana-channel` withdrawal cranked for a claimant.
    ChannelWithdrawal,
    /// A `solana-channel` opening or top-up the buyer signed and the gateway co-signed.
    ChannelFunding,
    /// A `solana-channel` rent reclaim (a claim or a closed channel).
    ChannelReclaim,
    /// A `solana-channel` close request or close (the incident steps).
    ChannelClose,
}

/// The outbox request of a Solana settlement: everything needed to resend it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolanaRequest {
    pub kind: EntryKind,
    /// What the transaction is for: the task id or payment reference.
    pub reference: String,
    /// The fully signed transaction (bincode, base64).
    pub transaction: String,
    /// Its recent blockhash (base58), which bounds when it can land.
    pub blockhash: String,
    /// A payout's recipient (wallet owner) and amount, so that the same payout asked again
    /// with another amount is refused rather than paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
}

/// The outbox id of a Solana transaction.
pub fn outbox_id(signature: &Signature) -> String {
    format!("solana:{signature}")
}

/// Why a transaction could not be brought to a final state.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("rpc: {0}")]
    Rpc(#[from] solana_rpc_client_api::client_error::Error),
    #[error("transaction encoding: {0}")]
    Encoding(String),
    /// The transaction landed and failed: no money moved (the fee was paid).
    #[error("transaction {signature} failed on chain: {error}")]
    FailedOnChain { signature: Signature, error: String },
    /// Its blockhash expired before it landed; it never will. Build a new one.
    #[error("transaction {0} expired before it landed")]
    Expired(Signature),
    /// Neither landed nor expired within the wait; it stays in flight and `reconcile` finishes it.
    #[error("transaction {0} is still pending")]
    StillPending(Signature),
}

/// A transaction that landed and succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    pub signature: Signature,
    pub slot: u64,
}

/// The chain's verdict on a signature.
enum Verdict {
    Landed(u64),
    Failed(String),
}

/// Sends one rail's transactions through the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Submitter {
    rpc: Arc<RpcClient>,
    outbox: Outbox,
    rail: &'static str,
    /// How long `submit` waits for a verdict before leaving the record to `reconcile`.
    wait: Duration,
}

impl Submitter {
    /// A submitter writing records under `rail` (the rail's name) in `outbox`.
    pub fn new(rpc: Arc<RpcClient>, outbox: Outbox, rail: &'static str) -> Self {
        Self {
            rpc,
            outbox,
            rail,
            wait: Duration::from_secs(60),
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The shared RPC client, for a part of the same rail that reads the chain itself.
    pub fn rpc_handle(&self) -> Arc<RpcClient> {
        Arc::clone(&self.rpc)
    }

    pub fn rail(&self) -> &'static str {
        self.rail
    }

    /// Records `tx` as an intent (refusing an id already recorded), sends it and waits until it
    /// lands or expires. `tx` must be fully signed.
    pub async fn submit(
        &self,
        tx: &VersionedTransaction,
        kind: EntryKind,
        reference: &str,
    ) -> Result<Landed, SubmitError> {
        let record = self.record(tx, kind, reference)?;
        let signature = self.send_only(tx).await?;
        self.outbox.mark_sent(&record.id, &signature.to_string())?;
        self.await_verdict(&record.id, signature, blockhash_of(tx), tx)
            .await
    }

    /// Writes the intent only. Split from [`Submitter::submit`] so that a test can stop between
    /// the record and the send, as a crash would.
    pub fn record(
        &self,
        tx: &VersionedTransaction,
        kind: EntryKind,
        reference: &str,
    ) -> Result<SettlementRecord, SubmitError> {
        let signature = wire::transaction_id(tx)
            .ok_or_else(|| SubmitError::Encoding("transaction has no signatures".to_string()))?;
        let request = SolanaRequest::new(tx, kind, reference)?;
        Ok(self
            .outbox
            .record_intent(&outbox_id(&signature), self.rail, json!(request))?)
    }

    /// Records `request` under `id` (a new record, or with `retry`, the next attempt of a
    /// failed one: [`Outbox::retry_with`]), sends its transaction and waits until it lands or
    /// expires. With `stop_before_send`, returns right after the record, as a crash would.
    pub async fn submit_as(
        &self,
        id: &str,
        request: &SolanaRequest,
        retry: bool,
        stop_before_send: bool,
    ) -> Result<Landed, SubmitError> {
        let tx = wire::decode_transaction(&request.transaction).map_err(SubmitError::Encoding)?;
        let signature = wire::transaction_id(&tx)
            .ok_or_else(|| SubmitError::Encoding("transaction has no signatures".to_string()))?;
        if retry {
            self.outbox.retry_with(id, json!(request))?;
        } else {
            self.outbox.record_intent(id, self.rail, json!(request))?;
        }
        if stop_before_send {
            return Err(SubmitError::StillPending(signature));
        }
        let signature = self.send_only(&tx).await?;
        self.outbox.mark_sent(id, &signature.to_string())?;
        self.await_verdict(id, signature, blockhash_of(&tx), &tx)
            .await
    }

    /// Brings the in-flight record `id` to its verdict: recorded if it landed (never resent),
    /// else resent byte for byte and awaited until it lands or its blockhash expires.
    pub async fn finish(&self, id: &str) -> Result<Landed, SubmitError> {
        self.finish_telling(id).await.0
    }

    /// [`Submitter::finish`], and whether the transaction had to be sent again (it had not
    /// landed), for the reconciliation report.
    async fn finish_telling(&self, id: &str) -> (Result<Landed, SubmitError>, bool) {
        let found = async {
            let record = self
                .outbox
                .get(id)?
                .ok_or_else(|| OutboxError::Unknown(id.to_string()))?;
            let request: SolanaRequest = serde_json::from_value(record.request)
                .map_err(|e| SubmitError::Encoding(e.to_string()))?;
            let tx =
                wire::decode_transaction(&request.transaction).map_err(SubmitError::Encoding)?;
            let signature = wire::transaction_id(&tx)
                .ok_or_else(|| SubmitError::Encoding("no signature".to_string()))?;
            let verdict = self.verdict(&signature).await?;
            Ok::<_, SubmitError>((tx, signature, verdict))
        };
        let (tx, signature, verdict) = match found.await {
            Ok(f) => f,
            Err(e) => return (Err(e), false),
        };
        let outcome = match verdict {
            Some(Verdict::Landed(slot)) => self
                .outbox
                .mark_confirmed(id, Some(&signature.to_string()))
                .map(|_| Landed { signature, slot })
                .map_err(SubmitError::from),
            Some(Verdict::Failed(error)) => match self.outbox.mark_failed(id, &error) {
                Ok(_) => Err(SubmitError::FailedOnChain { signature, error }),
                Err(e) => Err(e.into()),
            },
            None => {
                // Same bytes, same signature: if an earlier copy lands first, this one is
                // refused by the chain, so resending can never pay twice.
                let _ = self.send_only(&tx).await;
                let landed = self
                    .await_verdict(id, signature, blockhash_of(&tx), &tx)
                    .await;
                return (landed, true);
            }
        };
        (outcome, false)
    }

    /// Sends a transaction without waiting (what a process does right before it would record
    /// the outcome).
    pub async fn send_only(&self, tx: &VersionedTransaction) -> Result<Signature, SubmitError> {
        Ok(self
            .rpc
            .send_transaction_with_config(
                tx,
                RpcSendTransactionConfig {
                    // Payments were simulated during verification; an escrow step that cannot
                    // succeed must fail on chain, visibly, rather than vanish in a preflight.
                    skip_preflight: true,
                    max_retries: Some(0),
                    ..RpcSendTransactionConfig::default()
                },
            )
            .await?)
    }

    /// Waits for the chain's verdict and writes it to the outbox. While waiting, resends the
    /// same bytes now and then (a dropped packet must not look like an expiry).
    async fn await_verdict(
        &self,
        id: &str,
        signature: Signature,
        blockhash: Hash,
        tx: &VersionedTransaction,
    ) -> Result<Landed, SubmitError> {
        let started = Instant::now();
        let mut last_resend = Instant::now();
        loop {
            match self.verdict(&signature).await? {
                Some(Verdict::Landed(slot)) => {
                    self.outbox
                        .mark_confirmed(id, Some(&signature.to_string()))?;
                    return Ok(Landed { signature, slot });
                }
                Some(Verdict::Failed(error)) => {
                    self.outbox.mark_failed(id, &error)?;
                    return Err(SubmitError::FailedOnChain { signature, error });
                }
                None => {}
            }
            if !self
                .rpc
                .is_blockhash_valid(&blockhash, CommitmentConfig::processed())
                .await?
            {
                // Ask once more: it may have landed in the slot that expired the blockhash.
                if self.verdict(&signature).await?.is_some() {
                    continue;
                }
                self.outbox
                    .mark_failed(id, "expired: the blockhash expired before it landed")?;
                return Err(SubmitError::Expired(signature));
            }
            if started.elapsed() > self.wait {
                return Err(SubmitError::StillPending(signature));
            }
            if last_resend.elapsed() > Duration::from_secs(2) {
                last_resend = Instant::now();
                let _ = self.send_only(tx).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The chain's verdict on `signature` at `confirmed` commitment, or `None` if it has not
    /// landed (or only at `processed`).
    async fn verdict(&self, signature: &Signature) -> Result<Option<Verdict>, SubmitError> {
        let statuses = self
            .rpc
            .get_signature_statuses_with_history(&[*signature])
            .await?
            .value;
        let Some(Some(status)) = statuses.into_iter().next() else {
            return Ok(None);
        };
        if !status.satisfies_commitment(CommitmentConfig::confirmed()) {
            return Ok(None);
        }
        Ok(Some(match status.err {
            None => Verdict::Landed(status.slot),
            Some(err) => Verdict::Failed(err.to_string()),
        }))
    }

    /// Brings every in-flight record of this rail to a final state after a restart: a landed
    /// transaction is recorded (never resent), an unlanded one with a valid blockhash is resent
    /// byte for byte and awaited, an expired one is marked failed.
    pub async fn reconcile(&self) -> Result<ReconcileReport, SubmitError> {
        let mut report = ReconcileReport::default();
        for record in self.outbox.in_flight(self.rail)? {
            let (outcome, resent) = self.finish_telling(&record.id).await;
            if resent {
                report.resent.push(record.id.clone());
            }
            let outcome = outcome.map(|_| ());
            match outcome {
                Ok(()) | Err(SubmitError::FailedOnChain { .. }) | Err(SubmitError::Expired(_)) => {}
                Err(e) => return Err(e),
            }
            match self.outbox.get(&record.id)?.map(|r| r.state) {
                Some(SettlementState::Confirmed) => report.confirmed.push(record.id),
                Some(SettlementState::Failed { .. }) => report.failed.push(record.id),
                _ => {}
            }
        }
        Ok(report)
    }
}

impl SolanaRequest {
    /// The record of `tx`, fully signed, for `kind` and `reference`.
    pub fn new(
        tx: &VersionedTransaction,
        kind: EntryKind,
        reference: &str,
    ) -> Result<Self, SubmitError> {
        Ok(Self {
            kind,
            reference: reference.to_string(),
            transaction: wire::encode_transaction(tx).map_err(SubmitError::Encoding)?,
            blockhash: tx.message.recent_blockhash().to_string(),
            recipient: None,
            amount: None,
        })
    }
}

fn blockhash_of(tx: &VersionedTransaction) -> Hash {
    *tx.message.recent_blockhash()
}

impl From<SubmitError> for crate::error::RailError {
    fn from(e: SubmitError) -> Self {
        use crate::error::RailError;
        match e {
            SubmitError::Outbox(crate::outbox::OutboxError::AlreadyRecorded { id, .. }) => {
                RailError::Replay(id)
            }
            SubmitError::Outbox(o) => RailError::Outbox(o),
            SubmitError::FailedOnChain { signature, error } => RailError::Reverted {
                tx: signature.to_string(),
                reason: error,
            },
            other => RailError::Chain(other.to_string()),
        }
    }
}
