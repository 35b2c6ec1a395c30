//! `base-task-escrow`: one task's payment held by the `TaskEscrow` contract.
//!
//! The challenge fixes the task's terms (task id, amount, creator and gateway shares, deadline)
//! and names the EIP-3009 nonce the buyer must sign: the contract's hash of those terms and of the
//! validator's address. `settle` submits the buyer's `receiveWithAuthorization` through
//! `TaskEscrow.fund`, which can only fund the task with those terms. When the validator role has
//! accepted the result it signs a [`Release`](super::eip712::Release) for the workers (a quorum's
//! agreeing workers share the worker amount), and `finalize` pays workers, creator and gateway in
//! one transaction. If the deadline passes first,
//! anyone (the buyer, a finalizer) can `refund`.

use std::collections::BTreeMap;
use std::str::FromStr;

use alloy::contract::SolCallBuilder;
use alloy::primitives::{Address, B256, TxHash, U256, keccak256};
use alloy::providers::DynProvider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use x402_chain_eip155::v1_eip155_exact::types::ExactEvmPayload;

use super::buyer::{Authorization, AuthorizationKind};
use super::contracts::{TaskEscrow, TestUsd};
use super::direct::check_window;
use super::eip712::{self, Release as ReleaseMessage};
use super::{EvmChain, SETTLE_MARGIN_SECS, chain_err, now_unix, parse_address, to_atomic, to_u256};
use crate::amount::Atomic;
use crate::caps::SafetyCaps;
use crate::delivery::{Accepted, Delivery};
use crate::error::{RailError, VerifyError};
use crate::open_escrows::OpenEscrows;
use crate::outbox::SettlementRecord;
use crate::outbox::{Outbox, OutboxError, SettlementState};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Payout, Rail, RailKind, ReconcileReport, Release,
    Settlement, TaskId, Terms, Verified,
};
use crate::refund::{PaidTask, Refund};

pub const NAME: &str = "base-task-escrow";
pub const SCHEME: &str = "d402-task-escrow";

/// The on-chain state of a task (`TaskEscrow.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    None,
    Funded,
    Settled,
    Refunded,
}

/// The terms a task's money is bound to, as the challenge's `extra` carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowTerms {
    pub task_id: B256,
    pub amount: Atomic,
    pub creator: Address,
    pub creator_amount: Atomic,
    pub gateway: Address,
    pub gateway_amount: Atomic,
    pub deadline: u64,
}

impl EscrowTerms {
    fn to_contract(&self) -> TaskEscrow::Terms {
        TaskEscrow::Terms {
            taskId: self.task_id,
            amount: to_u256(self.amount),
            creator: self.creator,
            creatorAmount: to_u256(self.creator_amount),
            gateway: self.gateway,
            gatewayAmount: to_u256(self.gateway_amount),
            deadline: self.deadline,
        }
    }

    /// `TaskEscrow.termsNonce`: the EIP-3009 nonce that binds the buyer's money to these terms.
    pub fn nonce(&self, escrow: Address, validator: Address) -> B256 {
        keccak256(
            (
                escrow,
                validator,
                self.task_id,
                to_u256(self.amount),
                self.creator,
                to_u256(self.creator_amount),
                self.gateway,
                to_u256(self.gateway_amount),
                self.deadline,
            )
                .abi_encode(),
        )
    }

    /// The workers' share.
    pub fn worker_amount(&self) -> Atomic {
        self.amount
            .checked_sub(self.creator_amount)
            .and_then(|a| a.checked_sub(self.gateway_amount))
            .unwrap_or(Atomic::ZERO)
    }

    /// What each of `workers` receives, as `TaskEscrow.settle` pays it: equal shares of the
    /// worker amount, the first taking what the division leaves over; a wallet named twice
    /// receives both shares.
    pub fn worker_payouts(&self, workers: &[Address]) -> Vec<(Address, Atomic)> {
        let total = self.worker_amount().get();
        let n = workers.len().max(1) as u128;
        let share = total / n;
        let mut out: Vec<(Address, Atomic)> = Vec::new();
        for (i, w) in workers.iter().enumerate() {
            let amount = if i == 0 {
                total - share * (n - 1)
            } else {
                share
            };
            match out.iter_mut().find(|(to, _)| to == w) {
                Some((_, a)) => *a = Atomic::new(a.get() + amount),
                None => out.push((*w, Atomic::new(amount))),
            }
        }
        out
    }
}

/// The most workers one release pays (`TaskEscrow.MAX_WORKERS`).
pub const MAX_RELEASE_WORKERS: usize = 16;

/// The validator role's approval of a task's split among `workers` (in this order): its
/// signature over `Release`. Runs wherever the validator key lives (never the gateway process,
/// seed 000 "Key custody").
pub fn sign_release(
    validator: &PrivateKeySigner,
    chain_id: u64,
    escrow: Address,
    terms: &EscrowTerms,
    workers: &[Address],
) -> Result<Vec<u8>, RailError> {
    if workers.is_empty() || workers.len() > MAX_RELEASE_WORKERS {
        return Err(RailError::Refused(format!(
            "a release pays 1 to {MAX_RELEASE_WORKERS} workers, not {}",
            workers.len()
        )));
    }
    let digest = eip712::digest(
        &ReleaseMessage {
            taskId: terms.task_id,
            workers: workers.to_vec(),
            workerAmount: to_u256(terms.worker_amount()),
            creatorAmount: to_u256(terms.creator_amount),
            gatewayAmount: to_u256(terms.gateway_amount),
        },
        &eip712::escrow_domain(chain_id, escrow),
    );
    validator
        .sign_hash_sync(&digest)
        .map(|s| s.as_bytes().to_vec())
        .map_err(|e| RailError::Refused(format!("signing failed: {e}")))
}

/// The gas limit of every escrow transaction (funding, the most expensive, uses about 150k).
/// Set rather than estimated: an estimate that fails after the nonce was taken would leave a gap
/// that stalls every later transaction of the sender; the call is simulated first instead.
const ESCROW_TX_GAS: u64 = 400_000;

/// Simulates `call` (an `eth_call`): a revert is [`RailError::WouldRevert`].
async fn simulate<C: alloy::sol_types::SolCall>(
    what: &str,
    call: &SolCallBuilder<&DynProvider, C>,
) -> Result<(), RailError> {
    call.call_raw()
        .await
        .map(|_| ())
        .map_err(|e| refusal(what, e))
}

/// A contract call's error: [`RailError::WouldRevert`], named by the contract's error, when the
/// chain refused to execute it; otherwise a chain (transport) error.
fn refusal(what: &str, e: alloy::contract::Error) -> RailError {
    if let Some(decoded) = e.as_decoded_interface_error::<TaskEscrow::TaskEscrowErrors>() {
        return RailError::WouldRevert {
            what: what.to_string(),
            reason: format!("{decoded:?}"),
        };
    }
    match e.as_revert_data() {
        Some(data) => RailError::WouldRevert {
            what: what.to_string(),
            reason: data.to_string(),
        },
        None => chain_err(e),
    }
}

/// The `base-task-escrow` rail.
pub struct BaseTaskEscrow {
    chain: EvmChain,
    provider: DynProvider,
    sender: Address,
    token: TestUsd::TestUsdInstance<DynProvider>,
    escrow: TaskEscrow::TaskEscrowInstance<DynProvider>,
    validator: Address,
    gateway_wallet: Address,
    outbox: Outbox,
    caps: SafetyCaps,
    /// The validator role's key when it is held here (one process holds everything: a
    /// development set-up); `None` when the network's validator signs inside its verdict.
    release_key: Option<PrivateKeySigner>,
    /// Open escrows by task, for the open-escrow cap.
    open: OpenEscrows<B256>,
}

impl BaseTaskEscrow {
    /// A rail on `chain` using the `TaskEscrow` at `escrow`, whose validator is `validator`;
    /// transactions are sent (and gas paid) by `sender`; gateway fees go to `gateway_wallet`.
    pub fn new(
        chain: EvmChain,
        escrow: Address,
        validator: Address,
        sender: &PrivateKeySigner,
        gateway_wallet: Address,
        outbox: Outbox,
        caps: SafetyCaps,
    ) -> Self {
        let provider = chain.provider(sender);
        BaseTaskEscrow {
            token: TestUsd::new(chain.asset.address, provider.clone()),
            escrow: TaskEscrow::new(escrow, provider.clone()),
            sender: sender.address(),
            chain,
            provider,
            validator,
            gateway_wallet,
            outbox,
            caps,
            release_key: None,
            open: OpenEscrows::default(),
        }
    }

    /// Signs releases here with `key` (the escrow's validator role) instead of asking the
    /// network's validator for a signature.
    pub fn with_release_key(mut self, key: PrivateKeySigner) -> Self {
        self.release_key = Some(key);
        self
    }

    /// The workers to pay and the validator role's signature: signed here with the local key,
    /// or taken from the validator's verdict.
    fn signed_release(&self, accepted: &Accepted<'_>) -> Option<(Vec<Address>, Vec<u8>)> {
        match &self.release_key {
            Some(key) => {
                let workers: Vec<Address> = accepted
                    .workers
                    .iter()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                let release = EscrowRelease::of(accepted.requirements).ok()?;
                let signature = release.sign(key, &workers).ok()?;
                Some((workers, signature))
            }
            None => {
                let signed = accepted.validator_release?;
                let workers = signed
                    .workers
                    .iter()
                    .map(|w| w.parse::<Address>().ok())
                    .collect::<Option<Vec<_>>>()?;
                Some((workers, signed.signature.clone()))
            }
        }
    }

    /// Deploys a `TaskEscrow` for `token` with `validator` as its release signer.
    pub async fn deploy(
        provider: &DynProvider,
        token: Address,
        validator: Address,
    ) -> Result<Address, RailError> {
        let c = TaskEscrow::deploy(provider.clone(), token, validator)
            .await
            .map_err(chain_err)?;
        Ok(*c.address())
    }

    pub fn address(&self) -> Address {
        *self.escrow.address()
    }

    /// A task's state on chain.
    pub async fn task_state(&self, task: &TaskId) -> Result<TaskState, RailError> {
        let t = self.escrow.tasks(task.0).call().await.map_err(chain_err)?;
        Ok(match t.state {
            0 => TaskState::None,
            1 => TaskState::Funded,
            2 => TaskState::Settled,
            _ => TaskState::Refunded,
        })
    }

    /// Open escrows according to the outbox: fundings not failed, without a confirmed release
    /// or refund.
    fn scan_open_escrows(&self) -> Result<BTreeMap<B256, Atomic>, RailError> {
        let mut open = BTreeMap::new();
        let records = self.outbox.all()?;
        for r in records
            .iter()
            .filter(|r| r.rail == NAME && r.id.ends_with(":fund"))
        {
            if matches!(r.state, SettlementState::Failed { .. }) {
                continue;
            }
            let base = r.id.trim_end_matches(":fund");
            let closed = records.iter().any(|o| {
                (o.id == format!("{base}:release") || o.id == format!("{base}:refund"))
                    && o.state == SettlementState::Confirmed
            });
            if !closed {
                let terms: Option<EscrowTerms> =
                    serde_json::from_value(r.request["terms"].clone()).ok();
                if let Some(t) = terms {
                    open.insert(t.task_id, t.amount);
                }
            }
        }
        Ok(open)
    }

    fn id(&self, task: &B256, what: &str) -> String {
        format!("escrow:{}:{}:{what}", self.address(), task).to_lowercase()
    }

    fn terms_of(requirements: &PaymentRequirements) -> Result<EscrowTerms, VerifyError> {
        let extra = requirements
            .extra
            .as_ref()
            .and_then(|e| e.get("terms"))
            .ok_or_else(|| VerifyError::Requirements("`extra.terms` is missing".into()))?;
        serde_json::from_value(extra.clone()).map_err(|e| VerifyError::Requirements(e.to_string()))
    }

    fn parse(payload: &serde_json::Value) -> Result<ExactEvmPayload, VerifyError> {
        serde_json::from_value(payload.clone()).map_err(|e| VerifyError::Payload(e.to_string()))
    }

    /// `TaskEscrow.fund` with the buyer's authorization.
    fn fund_call(
        &self,
        terms: &EscrowTerms,
        p: &ExactEvmPayload,
    ) -> SolCallBuilder<&DynProvider, TaskEscrow::fundCall> {
        let a = &p.authorization;
        self.escrow
            .fund(
                terms.to_contract(),
                a.from,
                U256::from(a.valid_after.as_secs()),
                U256::from(a.valid_before.as_secs()),
                p.signature.clone(),
            )
            .from(self.sender)
            .gas(ESCROW_TX_GAS)
    }

    /// `TaskEscrow.settle`: the split, approved by the validator's signature.
    fn release_call(
        &self,
        task: B256,
        workers: &[Address],
        signature: &[u8],
    ) -> SolCallBuilder<&DynProvider, TaskEscrow::settleCall> {
        self.escrow
            .settle(task, workers.to_vec(), signature.to_vec().into())
            .from(self.sender)
            .gas(ESCROW_TX_GAS)
    }

    fn refund_call(&self, task: B256) -> SolCallBuilder<&DynProvider, TaskEscrow::refundCall> {
        self.escrow
            .refund(task)
            .from(self.sender)
            .gas(ESCROW_TX_GAS)
    }

    /// Simulates `call` and sends it. A simulation that reverts is
    /// [`RailError::WouldRevert`]: nothing was sent.
    async fn send<C: alloy::sol_types::SolCall>(
        &self,
        what: &str,
        call: SolCallBuilder<&DynProvider, C>,
    ) -> Result<TxHash, RailError> {
        simulate(what, &call).await?;
        let pending = call.send().await.map_err(|e| refusal(what, e))?;
        Ok(*pending.tx_hash())
    }

    /// What an earlier attempt recorded under `id`: the transactions when it executed, an error
    /// when it failed ([`RailError::Reverted`]) or is still in flight ([`RailError::Replay`]:
    /// the next reconciliation decides), `None` when nothing was recorded. This is what makes a
    /// retried release or refund idempotent.
    fn earlier(&self, id: &str) -> Result<Option<Vec<String>>, RailError> {
        let Some(r) = self.outbox.get(id)? else {
            return Ok(None);
        };
        match r.state {
            SettlementState::Confirmed => Ok(Some(r.tx_hash.into_iter().collect())),
            SettlementState::Failed { reason } => Err(RailError::Reverted {
                tx: r.tx_hash.unwrap_or_default(),
                reason,
            }),
            _ => Err(RailError::Replay(id.to_string())),
        }
    }

    /// Records the sent transaction, waits for it and records the outcome.
    async fn conclude(&self, id: &str, tx: TxHash) -> Result<u128, RailError> {
        super::conclude(&self.outbox, &self.provider, id, tx).await
    }

    fn intent(&self, id: &str, request: serde_json::Value) -> Result<(), RailError> {
        match self.outbox.record_intent(id, NAME, request) {
            Ok(_) => Ok(()),
            Err(OutboxError::AlreadyRecorded { .. }) => Err(RailError::Replay(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    fn settlement(
        &self,
        id: String,
        tx: TxHash,
        fee: u128,
        payer: Option<String>,
        payouts: Vec<Payout>,
    ) -> Settlement {
        Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: id,
            tx_hashes: vec![tx.to_string()],
            payer,
            payouts,
            fee_native: fee,
            extra: None,
        }
    }

    /// The checks that need no chain (x402 fields, terms, nonce binding, amount, window,
    /// signature). Returns the terms, the parsed payload, its authorization and its value.
    pub fn verify_offchain(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(EscrowTerms, ExactEvmPayload, Authorization, Atomic), RailError> {
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
        let terms = Self::terms_of(requirements)?;
        let p = Self::parse(&payload.payload)?;
        let auth = Authorization::from_payload(&p);
        if auth.to != self.address() {
            return Err(VerifyError::Recipient {
                expected: self.address().to_string(),
                got: auth.to.to_string(),
            }
            .into());
        }
        let value = to_atomic(auth.value)?;
        if value != terms.amount || requirements.amount != terms.amount.to_string() {
            return Err(VerifyError::Value {
                expected: terms.amount,
                got: value,
            }
            .into());
        }
        if auth.nonce != terms.nonce(self.address(), self.validator) {
            return Err(VerifyError::Nonce.into());
        }
        check_window(&auth, now_unix())?;
        let digest = auth.digest(
            AuthorizationKind::Receive,
            &self.chain.asset.name,
            &self.chain.asset.version,
            self.chain.chain_id,
            token,
        );
        if eip712::recover(&digest, &p.signature) != Some(auth.from) {
            return Err(VerifyError::Signature {
                expected: auth.from.to_string(),
            }
            .into());
        }
        Ok((terms, p, auth, value))
    }

    /// The split stored on chain for a funded task.
    async fn stored_terms(&self, task: &TaskId) -> Result<(Address, EscrowTerms), RailError> {
        let t = self.escrow.tasks(task.0).call().await.map_err(chain_err)?;
        Ok((
            t.buyer,
            EscrowTerms {
                task_id: task.0,
                amount: to_atomic(t.amount)?,
                creator: t.creator,
                creator_amount: Atomic::new(t.creatorAmount.to::<u128>()),
                gateway: t.gateway,
                gateway_amount: Atomic::new(t.gatewayAmount.to::<u128>()),
                deadline: t.deadline,
            },
        ))
    }
}

#[async_trait]
impl Rail for BaseTaskEscrow {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> RailKind {
        RailKind::TaskEscrow
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn release_context(&self, requirements: &PaymentRequirements) -> Option<serde_json::Value> {
        if self.release_key.is_some() {
            return None;
        }
        EscrowRelease::of(requirements)
            .ok()
            .and_then(|r| serde_json::to_value(r).ok())
    }

    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        let Some((workers, signature)) = self.signed_release(accepted) else {
            return Ok(Delivery::Refused(
                "no release signature (no release key here, and none from the validator) or no worker EVM wallet: the escrow is refunded instead"
                    .into(),
            ));
        };
        let release = Release::Task {
            task_id: accepted.task_id(),
            workers: workers.iter().map(|w| w.to_string()).collect(),
            validator_signature: signature,
        };
        // Also when an earlier attempt released it: `finalize` answers from the outbox.
        Ok(Delivery::Released(self.finalize(&release).await?))
    }

    fn refunds(&self) -> bool {
        true
    }

    /// After the task's deadline (the escrow refuses before it), the escrow back to the buyer.
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        let due = task.deadline_unix.saturating_add(1);
        if now_unix() < due {
            return Ok(Refund::NotBefore(due));
        }
        Ok(Refund::Refunded(self.refund(&task.task_id()).await?))
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        Ok(self.outbox.get(id)?.map(|r| r.state))
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.outbox.all_in_flight()?)
    }

    fn network(&self) -> ChainId {
        self.chain.network()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        let split = terms.split()?;
        let creator_bps = terms.commission.as_ref().map_or(0, |c| c.bps);
        self.open.check(&self.caps, terms.price, creator_bps, || {
            self.scan_open_escrows()
        })?;
        let creator = match &terms.commission {
            Some(c) if c.bps > 0 => parse_address(NAME, "creator wallet", &c.wallet)?,
            _ => Address::ZERO,
        };
        let escrow_terms = EscrowTerms {
            task_id: terms.task_id.0,
            amount: terms.price,
            creator,
            creator_amount: split.creator,
            gateway: self.gateway_wallet,
            gateway_amount: split.gateway,
            deadline: terms.deadline_unix,
        };
        let nonce = escrow_terms.nonce(self.address(), self.validator);
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.chain.network(),
            amount: terms.price.to_string(),
            pay_to: self.address().to_checksum(None),
            max_timeout_seconds: terms.max_timeout_seconds,
            asset: self.chain.asset.address.to_checksum(None),
            extra: Some(super::asset_extra(
                &self.chain.asset,
                json!({
                    "terms": escrow_terms,
                    "validator": self.validator,
                    "nonce": nonce,
                }),
            )),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        let network = self.chain.network();
        let (terms, p, auth, value) = self.verify_offchain(payload, requirements)?;
        let id = self.id(&terms.task_id, "fund");
        let used = VerifyError::AuthorizationUsed {
            nonce: auth.nonce.to_string(),
        };
        if self.outbox.get(&id)?.is_some() {
            return Err(used.into());
        }
        // As on base-x402-direct: the simulated `fund` alone shows the payment goes through
        // (task not funded yet, nonce unused, funds there); the chain is asked why only when
        // it fails, to answer with x402's own reason.
        let simulated = self
            .escrow
            .fund(
                terms.to_contract(),
                auth.from,
                U256::from(auth.valid_after),
                U256::from(auth.valid_before),
                p.signature.clone(),
            )
            .from(self.sender)
            .call()
            .await;
        if let Err(e) = simulated {
            let funded = self.task_state(&TaskId(terms.task_id)).await? != TaskState::None;
            let failed = VerifyError::Simulation(e.to_string());
            return Err(super::why_not_settling(&self.token, &auth, value, funded, failed).await);
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

    /// Funds the task's escrow: the money is then held by the contract, bound to the task.
    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let terms = Self::terms_of(&verified.requirements)?;
        let p = Self::parse(&verified.payload)?;
        let id = self.id(&terms.task_id, "fund");
        // Checked again here: several challenges may have been issued under the cap and paid
        // together. Refusing now leaves the buyer's authorization unused.
        self.open
            .check(&self.caps, terms.amount, 0, || self.scan_open_escrows())?;
        self.intent(&id, json!({ "payload": verified.payload, "terms": terms }))?;
        self.open.note(terms.task_id, Some(terms.amount));
        let sent = match self.send("the funding", self.fund_call(&terms, &p)).await {
            Ok(tx) => self.conclude(&id, tx).await.map(|fee| (tx, fee)),
            Err(e @ RailError::WouldRevert { .. }) => {
                // Nothing was sent. Funded anyway (the same terms, submitted by someone else):
                // the money is held for this task. Not funded: the authorization cannot fund it
                // (expired, used, not covered), so nothing will be charged.
                if self.task_state(&TaskId(terms.task_id)).await? == TaskState::None {
                    self.outbox.mark_failed(&id, &e.to_string())?;
                } else {
                    self.outbox.mark_confirmed(&id, None)?;
                }
                Err(e)
            }
            Err(e) => Err(e),
        };
        let (tx, fee) = sent.inspect_err(|_| self.open.forget())?;
        Ok(self.settlement(
            id,
            tx,
            fee,
            Some(p.authorization.from.to_string()),
            vec![Payout {
                to: self.address().to_string(),
                amount: terms.amount,
            }],
        ))
    }

    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        let Release::Task {
            task_id,
            workers,
            validator_signature,
        } = release
        else {
            return Err(RailError::Unsupported {
                rail: NAME,
                operation: "release pending vouchers",
            });
        };
        let workers = workers
            .iter()
            .map(|w| parse_address(NAME, "worker", w))
            .collect::<Result<Vec<_>, _>>()?;
        let (buyer, terms) = self.stored_terms(task_id).await?;
        let id = self.id(&task_id.0, "release");
        let payouts: Vec<Payout> = terms
            .worker_payouts(&workers)
            .into_iter()
            .chain([
                (terms.creator, terms.creator_amount),
                (terms.gateway, terms.gateway_amount),
            ])
            .filter(|(_, a)| !a.is_zero())
            .map(|(to, amount)| Payout {
                to: to.to_string(),
                amount,
            })
            .collect();
        if let Some(tx_hashes) = self.earlier(&id)? {
            return Ok(Settlement {
                tx_hashes,
                ..self.settlement(id, TxHash::ZERO, 0, Some(buyer.to_string()), payouts)
            });
        }
        let call = self.release_call(task_id.0, &workers, validator_signature);
        // A release the chain refuses (the deadline passed) is refused before its intent is
        // recorded: the task can still be refunded, and nothing is left to reconcile.
        simulate("the release", &call).await?;
        self.intent(
            &id,
            json!({ "workers": workers, "signature": alloy::hex::encode_prefixed(validator_signature) }),
        )?;
        let tx = self.send("the release", call).await?;
        let fee = self.conclude(&id, tx).await?;
        // Released money is no longer held: it stops counting against the open-escrow cap.
        self.open.note(task_id.0, None);
        Ok(self.settlement(id, tx, fee, Some(buyer.to_string()), payouts))
    }

    async fn refund(&self, task_id: &TaskId) -> Result<Settlement, RailError> {
        let (buyer, terms) = self.stored_terms(task_id).await?;
        let id = self.id(&task_id.0, "refund");
        let payouts = vec![Payout {
            to: buyer.to_string(),
            amount: terms.amount,
        }];
        if let Some(tx_hashes) = self.earlier(&id)? {
            return Ok(Settlement {
                tx_hashes,
                ..self.settlement(id, TxHash::ZERO, 0, Some(buyer.to_string()), payouts)
            });
        }
        let call = self.refund_call(task_id.0);
        // Before the deadline (by the chain's clock) the chain refuses: nothing is recorded, so
        // a later attempt can still refund.
        simulate("the refund", &call).await?;
        self.intent(&id, json!({}))?;
        let tx = self.send("the refund", call).await?;
        let fee = self.conclude(&id, tx).await?;
        self.open.note(task_id.0, None);
        Ok(self.settlement(id, tx, fee, Some(buyer.to_string()), payouts))
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        // Whatever reconciliation settles, the open-escrow total is rebuilt from the outbox.
        self.open.forget();
        let mut report = ReconcileReport::default();
        for record in self.outbox.in_flight(NAME)? {
            let mut parts = record.id.rsplitn(2, ':');
            let what = parts.next().unwrap_or_default().to_string();
            let task = parts
                .next()
                .and_then(|rest| rest.rsplit(':').next())
                .and_then(|t| B256::from_str(t).ok())
                .ok_or_else(|| RailError::Refused(format!("unreadable outbox id {}", record.id)))?;
            let state = self.task_state(&TaskId(task)).await?;
            let done = match what.as_str() {
                "fund" => state != TaskState::None,
                "release" => state == TaskState::Settled,
                _ => state == TaskState::Refunded,
            };
            let impossible = match what.as_str() {
                "fund" => false,
                "release" => state == TaskState::Refunded,
                _ => state == TaskState::Settled,
            };
            if done {
                self.outbox
                    .mark_confirmed(&record.id, record.tx_hash.as_deref())?;
                report.confirmed.push(record.id);
                continue;
            }
            if impossible {
                self.outbox
                    .mark_failed(&record.id, "the task ended the other way")?;
                report.failed.push(record.id);
                continue;
            }
            let sent = match what.as_str() {
                "fund" => {
                    let p = Self::parse(&record.request["payload"])?;
                    if p.authorization.valid_before.as_secs() <= now_unix() + SETTLE_MARGIN_SECS {
                        self.outbox
                            .mark_failed(&record.id, "authorization expired before funding")?;
                        report.failed.push(record.id);
                        continue;
                    }
                    let terms: EscrowTerms =
                        serde_json::from_value(record.request["terms"].clone())
                            .map_err(|e| RailError::Refused(e.to_string()))?;
                    self.send("the funding", self.fund_call(&terms, &p)).await
                }
                "release" => {
                    let workers = release_workers(&record.request)?;
                    let sig = alloy::hex::decode(
                        record.request["signature"].as_str().unwrap_or_default(),
                    )
                    .map_err(|e| RailError::Refused(e.to_string()))?;
                    self.send("the release", self.release_call(task, &workers, &sig))
                        .await
                }
                _ => self.send("the refund", self.refund_call(task)).await,
            };
            // One entry the chain refuses (a release whose deadline passed while the gateway was
            // down) is marked failed, so the task can end the other way; it does not stop the
            // others from being reconciled, nor the gateway from starting.
            let outcome = match sent {
                Ok(tx) => self.conclude(&record.id, tx).await.map(|_| ()),
                Err(RailError::WouldRevert { reason, .. }) => {
                    self.outbox.mark_failed(&record.id, &reason)?;
                    Err(RailError::Reverted {
                        tx: String::new(),
                        reason,
                    })
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => report.resent.push(record.id),
                Err(RailError::Reverted { .. }) => report.failed.push(record.id),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

/// The workers a recorded release pays: `workers`, or `worker` in a record written before
/// releases paid a quorum.
fn release_workers(request: &serde_json::Value) -> Result<Vec<Address>, RailError> {
    let named: Vec<&str> = match request.get("workers").and_then(|w| w.as_array()) {
        Some(list) => list.iter().filter_map(|w| w.as_str()).collect(),
        None => request["worker"].as_str().into_iter().collect(),
    };
    named
        .into_iter()
        .map(|w| parse_address(NAME, "worker", w))
        .collect()
}

// The release: what the validator role signs so that the escrow pays a task's split.
// The `base-task-escrow` release: what the validator role signs so that the escrow pays a
// task's split, and where that signature comes from.
//
// Seed 000 keeps validator keys out of the process that serves public HTTP, so the key can
// live on a validator node: the gateway sends the task's escrow terms with the task
// ([`EscrowRelease`], the task's release context, from `Rail::release_context`) and the
// validator signs the release of the claims it accepted (a quorum's agreeing workers share the
// worker amount) inside its signed verdict. In a one-process development set-up the rail holds
// the key itself (`BaseTaskEscrow::with_release_key`) and signs at delivery. Either way the
// contract checks the signature against its validator address, so a release signed for other
// terms or another escrow is worthless.
//
// `Rail::release_context`: crate::Rail::release_context
// `BaseTaskEscrow::with_release_key`: super::escrow::BaseTaskEscrow::with_release_key

/// What a gateway sends with a `base-task-escrow` task for the validator to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowRelease {
    /// Always `base-task-escrow`: a validator signs only contexts of rails it holds keys for.
    pub rail: String,
    pub chain_id: u64,
    pub escrow: Address,
    pub terms: EscrowTerms,
}

impl EscrowRelease {
    /// The escrow a task's payment sits in, from the requirements the gateway issued for it.
    pub fn of(requirements: &PaymentRequirements) -> Result<EscrowRelease, RailError> {
        let terms: EscrowTerms = requirements
            .extra
            .as_ref()
            .and_then(|e| e.get("terms"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .ok_or_else(|| RailError::Refused("escrow terms missing".into()))?;
        Ok(EscrowRelease {
            rail: NAME.into(),
            chain_id: requirements
                .network
                .reference()
                .parse()
                .map_err(|_| RailError::Refused("network is not eip155".into()))?,
            escrow: requirements
                .pay_to
                .parse()
                .map_err(|_| RailError::Refused("escrow address invalid".into()))?,
            terms,
        })
    }

    /// Reads a task's release context as a validator receives it: `None` when it is another
    /// rail's; refused when it is unreadable or names the escrow of another task (terms for
    /// another task would pay for work nobody checked).
    pub fn from_context(
        task_label: &str,
        context: &serde_json::Value,
    ) -> Result<Option<EscrowRelease>, String> {
        if context.get("rail").and_then(|r| r.as_str()) != Some(NAME) {
            return Ok(None);
        }
        let release: EscrowRelease = serde_json::from_value(context.clone())
            .map_err(|e| format!("unreadable {NAME} release: {e}"))?;
        if release.terms.task_id != TaskId::from_label(task_label).0 {
            return Err(format!("the escrow terms are not task {task_label}'s"));
        }
        Ok(Some(release))
    }

    /// The validator role's signature of this escrow's release to `workers`, in this order.
    pub fn sign(&self, key: &PrivateKeySigner, workers: &[Address]) -> Result<Vec<u8>, RailError> {
        sign_release(key, self.chain_id, self.escrow, &self.terms, workers)
    }
}
