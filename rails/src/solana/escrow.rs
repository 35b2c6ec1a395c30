//! `solana-task-escrow`: one task's payment held by `d402-program`'s task escrow, sold over HTTP.
//!
//! The challenge fixes the task's escrow: its address (derived from the gateway's fee payer and the
//! task id, `CreateAccountWithSeed`), the validator whose signature releases it, the creator's and
//! the gateway's amounts and the deadline. The buyer answers with one partially signed transaction
//! (as on `solana-direct`, the gateway is its fee payer): it creates the escrow account and the
//! vault, transfers the price into the vault and opens the escrow. The gateway co-signs only the
//! exact transaction [`funding_instructions`] builds from the challenge (it rebuilds the message
//! and compares bytes), so its signature pays fees and rent and nothing else.
//!
//! From there the program decides: the split is paid only with the validator's Ed25519 signature
//! over the escrow and the worker token accounts (signed on the validator node, from the task's
//! release context, or here when the gateway holds the key in development), and only before the
//! deadline; after the deadline anyone can refund the buyer the vault's whole balance. Release
//! and refund close the escrow, so whichever lands second fails on chain. Every transaction goes
//! through the outbox first ([`Submitter`]), under an id per task and step, so a retry or a
//! restart sends each step at most once.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use solana_commitment_config::CommitmentConfig;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_message::{VersionedMessage, v0};
use solana_program_pack::Pack;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent;

use super::submit::{EntryKind, SolanaRequest, Submitter};
use super::{TOKEN_PROGRAM_ID, wire};
use crate::amount::Atomic;
use crate::caps::SafetyCaps;
use crate::delivery::{Accepted, Delivery};
use crate::error::{RailError, VerifyError};
use crate::open_escrows::OpenEscrows;
use crate::outbox::{SettlementRecord, SettlementState};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Payout, Rail, RailKind, ReconcileReport, Release,
    Settlement, TaskId, Terms, Verified,
};
use crate::refund::{PaidTask, Refund};
use d402_program::channel::vault_authority;
use d402_program::escrow::{
    ESCROW_LEN, EscrowState, MAX_RELEASE_WORKERS, escrow_address, escrow_seed, worker_shares,
};
use d402_program::instruction::{self as program_ix, EscrowOpen, Signed};

/// The rail's name, as the gateway advertises it and the outbox records it.
pub const NAME: &str = "solana-task-escrow";
/// The x402 scheme its requirements carry (the same name as `base-task-escrow`'s; the network
/// tells them apart).
pub const SCHEME: &str = "d402-task-escrow";
/// The escrow account's rent-exempt minimum at the default rent ((128 + 272) bytes × 6,960
/// lamports), which every cluster uses; a cluster with another rent refuses the funding in
/// simulation, before anything is sent.
pub const ESCROW_RENT: u64 = 2_784_000;
/// The compute budget of a funding transaction (two account creations, up to three ATAs, a
/// transfer, EscrowOpen; about 60,000 units when every ATA is new).
pub const FUNDING_COMPUTE_UNITS: u32 = 150_000;

/// What the gateway accepts and who releases.
#[derive(Debug, Clone)]
pub struct EscrowConfig {
    /// The CAIP-2 network id (`solana:<first 32 chars of the genesis hash>`).
    pub network: ChainId,
    pub mint: Pubkey,
    pub decimals: u8,
    /// The key whose signature releases a split (the validator role's).
    pub validator: Pubkey,
    /// Where the gateway's fee goes (its token account is this wallet's ATA).
    pub gateway_wallet: Pubkey,
    /// The largest `SetComputeUnitPrice` (micro-lamports per unit) the gateway pays for.
    pub max_compute_unit_price: u64,
}

impl EscrowConfig {
    pub fn new(
        network: ChainId,
        mint: Pubkey,
        decimals: u8,
        validator: Pubkey,
        gateway_wallet: Pubkey,
    ) -> Self {
        Self {
            network,
            mint,
            decimals,
            validator,
            gateway_wallet,
            max_compute_unit_price: 5_000_000,
        }
    }
}

/// The escrow a challenge asks the buyer to fund, as its `extra` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowChallenge {
    /// The gateway's fee payer: pays fees and rent, and is the escrow address's base.
    pub fee_payer: String,
    /// The seed of the escrow's address (the task id's first 32 hex characters).
    pub seed: String,
    pub escrow: String,
    pub validator: String,
    /// The creator's wallet (the gateway's when the capability carries no commission).
    pub creator: String,
    pub gateway: String,
    /// Unix seconds: released before, refundable from then on.
    pub deadline: i64,
    pub creator_amount: u64,
    pub gateway_amount: u64,
    pub decimals: u8,
}

/// An [`EscrowChallenge`] read back into keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Challenge {
    fee_payer: Pubkey,
    escrow: Pubkey,
    validator: Pubkey,
    creator: Pubkey,
    gateway: Pubkey,
    mint: Pubkey,
    amount: u64,
    deadline: i64,
    creator_amount: u64,
    gateway_amount: u64,
    decimals: u8,
}

fn key(what: &str, text: &str) -> Result<Pubkey, String> {
    Pubkey::from_str(text).map_err(|_| format!("{what} {text:?} is not a base58 public key"))
}

impl EscrowChallenge {
    /// The escrow terms in `requirements.extra`.
    pub fn of(requirements: &PaymentRequirements) -> Result<Self, String> {
        let extra = requirements
            .extra
            .as_ref()
            .ok_or("the requirements carry no `extra`")?;
        serde_json::from_value(extra.clone()).map_err(|e| format!("extra: {e}"))
    }

    fn keys(&self, requirements: &PaymentRequirements) -> Result<(Challenge, String), String> {
        let c = Challenge {
            fee_payer: key("feePayer", &self.fee_payer)?,
            escrow: key("escrow", &self.escrow)?,
            validator: key("validator", &self.validator)?,
            creator: key("creator", &self.creator)?,
            gateway: key("gateway", &self.gateway)?,
            mint: key("asset", &requirements.asset)?,
            amount: requirements
                .amount
                .parse()
                .map_err(|_| format!("amount {:?}", requirements.amount))?,
            deadline: self.deadline,
            creator_amount: self.creator_amount,
            gateway_amount: self.gateway_amount,
            decimals: self.decimals,
        };
        if self.seed.len() > 32 || escrow_address(&c.fee_payer, &self.seed) != c.escrow {
            return Err("the escrow is not the address of its seed".into());
        }
        Ok((c, self.seed.clone()))
    }
}

/// The buyer side (and the gateway's reference): the instructions funding the escrow
/// `requirements` name, paid from `buyer`'s token account, at `compute_unit_price`.
pub fn funding_instructions(
    buyer: &Pubkey,
    requirements: &PaymentRequirements,
    compute_unit_price: u64,
) -> Result<Vec<Instruction>, String> {
    let (c, seed) = EscrowChallenge::of(requirements)?.keys(requirements)?;
    let vault_owner = vault_authority(&c.escrow).0;
    let vault = get_associated_token_address(&vault_owner, &c.mint);
    let transfer = spl_token_interface::instruction::transfer_checked(
        &TOKEN_PROGRAM_ID,
        &get_associated_token_address(buyer, &c.mint),
        &c.mint,
        &vault,
        buyer,
        &[],
        c.amount,
        c.decimals,
    )
    .map_err(|e| e.to_string())?;
    let mut ixs = vec![
        solana_compute_budget_interface::ComputeBudgetInstruction::set_compute_unit_limit(
            FUNDING_COMPUTE_UNITS,
        ),
        solana_compute_budget_interface::ComputeBudgetInstruction::set_compute_unit_price(
            compute_unit_price,
        ),
        solana_system_interface::instruction::create_account_with_seed(
            &c.fee_payer,
            &c.escrow,
            &c.fee_payer,
            &seed,
            ESCROW_RENT,
            ESCROW_LEN as u64,
            &d402_program::ID,
        ),
    ];
    // The vault, and the creator's and the gateway's token accounts (the program checks they
    // exist when the escrow opens), created where missing at the gateway's expense.
    let mut owners = vec![vault_owner, c.creator];
    if c.gateway != c.creator {
        owners.push(c.gateway);
    }
    for owner in owners {
        ixs.push(create_associated_token_account_idempotent(
            &c.fee_payer,
            &owner,
            &c.mint,
            &TOKEN_PROGRAM_ID,
        ));
    }
    ixs.push(transfer);
    ixs.push(program_ix::escrow_open(&EscrowOpen {
        escrow: c.escrow,
        buyer: *buyer,
        vault,
        validator: c.validator,
        mint: c.mint,
        creator_token: get_associated_token_address(&c.creator, &c.mint),
        gateway_token: get_associated_token_address(&c.gateway, &c.mint),
        rent_payer: c.fee_payer,
        deadline: c.deadline,
        amount: c.amount,
        creator_amount: c.creator_amount,
        gateway_amount: c.gateway_amount,
    }));
    Ok(ixs)
}

/// The validator role's signature of a task's release to `worker_wallets` (in this order):
/// Ed25519 over [`program_ix::release_message`] of the task's escrow and the wallets' token
/// accounts. Runs wherever the validator key lives (never the gateway process in production).
pub fn sign_release(
    key: &Keypair,
    context: &ReleaseContext,
    task: &TaskId,
    worker_wallets: &[Pubkey],
) -> Result<Vec<u8>, RailError> {
    if worker_wallets.is_empty() || worker_wallets.len() > MAX_RELEASE_WORKERS {
        return Err(RailError::Refused(format!(
            "a release pays 1 to {MAX_RELEASE_WORKERS} workers, not {}",
            worker_wallets.len()
        )));
    }
    let escrow = context.escrow(task)?;
    let mint = context.mint()?;
    let tokens: Vec<Pubkey> = worker_wallets
        .iter()
        .map(|w| get_associated_token_address(w, &mint))
        .collect();
    let message = program_ix::release_message(&escrow, &tokens);
    Ok(key.sign_message(&message).as_ref().to_vec())
}

/// What a gateway sends with a `solana-task-escrow` task for the validator to sign: where the
/// task's escrow is (its address follows from `base` and the task) and its mint. The validator
/// derives the escrow from the task it judged, so a context cannot make it sign another task's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseContext {
    /// Always `solana-task-escrow`.
    pub rail: String,
    /// The gateway's fee payer, the base of the escrow's address.
    pub base: String,
    pub mint: String,
}

impl ReleaseContext {
    /// Reads a task's release context as a validator receives it: `None` when it is another
    /// rail's.
    pub fn from_context(context: &serde_json::Value) -> Result<Option<Self>, String> {
        if context.get("rail").and_then(|r| r.as_str()) != Some(NAME) {
            return Ok(None);
        }
        serde_json::from_value(context.clone())
            .map(Some)
            .map_err(|e| format!("unreadable {NAME} release: {e}"))
    }

    fn mint(&self) -> Result<Pubkey, RailError> {
        Pubkey::from_str(&self.mint).map_err(|_| RailError::Refused("mint invalid".into()))
    }

    /// The task's escrow address.
    pub fn escrow(&self, task: &TaskId) -> Result<Pubkey, RailError> {
        let base =
            Pubkey::from_str(&self.base).map_err(|_| RailError::Refused("base invalid".into()))?;
        Ok(escrow_address(&base, escrow_seed(&task.to_string())))
    }
}

/// The `solana-task-escrow` rail, gateway side.
pub struct SolanaTaskEscrow {
    config: EscrowConfig,
    fee_payer: Arc<Keypair>,
    submitter: Submitter,
    caps: SafetyCaps,
    /// The validator role's key when it is held here (development); `None` when the network's
    /// validator signs inside its verdict.
    release_key: Option<Arc<Keypair>>,
    /// Open escrows by escrow address, for the open-escrow cap.
    open: OpenEscrows<Pubkey>,
    stop_before_funding_send: std::sync::atomic::AtomicBool,
}

/// The outbox id of one step (`fund`, `release`, `refund`) of a task's escrow.
fn step_id(escrow: &Pubkey, step: &str) -> String {
    format!("solana-escrow:{escrow}:{step}")
}

impl SolanaTaskEscrow {
    /// A rail whose `fee_payer` co-signs fundings and sends releases and refunds. `submitter`
    /// must write under [`NAME`].
    pub fn new(
        config: EscrowConfig,
        fee_payer: Arc<Keypair>,
        submitter: Submitter,
        caps: SafetyCaps,
    ) -> Self {
        Self {
            config,
            fee_payer,
            submitter,
            caps,
            release_key: None,
            open: OpenEscrows::default(),
            stop_before_funding_send: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Test hook: the next funding is recorded and not sent, as a crash between the record and
    /// the send would leave it.
    #[doc(hidden)]
    pub fn stop_before_next_funding_send(&self) {
        self.stop_before_funding_send
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Signs releases here with `key` (the escrow's validator role) instead of asking the
    /// network's validator.
    pub fn with_release_key(mut self, key: Arc<Keypair>) -> Self {
        self.release_key = Some(key);
        self
    }

    pub fn config(&self) -> &EscrowConfig {
        &self.config
    }

    pub fn submitter(&self) -> &Submitter {
        &self.submitter
    }

    fn rpc(&self) -> &RpcClient {
        self.submitter.rpc()
    }

    /// The escrow of `task`.
    pub fn escrow_of(&self, task: &TaskId) -> Pubkey {
        escrow_address(&self.fee_payer.pubkey(), escrow_seed(&task.to_string()))
    }

    fn context(&self) -> ReleaseContext {
        ReleaseContext {
            rail: NAME.into(),
            base: self.fee_payer.pubkey().to_string(),
            mint: self.config.mint.to_string(),
        }
    }

    /// A task's open escrow on chain, `None` once released or refunded (or never funded).
    pub async fn escrow_state(&self, task: &TaskId) -> Result<Option<EscrowState>, RailError> {
        let account = self
            .rpc()
            .get_account_with_commitment(&self.escrow_of(task), CommitmentConfig::confirmed())
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?
            .value;
        Ok(account.and_then(|a| {
            (a.owner == d402_program::ID)
                .then(|| EscrowState::parse(&a.data))
                .flatten()
        }))
    }

    async fn token_balance(&self, account: &Pubkey) -> Result<Option<u64>, RailError> {
        let account = self
            .rpc()
            .get_account_with_commitment(account, CommitmentConfig::confirmed())
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?
            .value;
        Ok(account.and_then(|a| {
            spl_token_interface::state::Account::unpack(&a.data)
                .ok()
                .map(|t| t.amount)
        }))
    }

    /// Open escrows according to the outbox: fundings not failed, without a confirmed release
    /// or refund.
    fn scan_open_escrows(&self) -> Result<BTreeMap<Pubkey, Atomic>, RailError> {
        let records = self.submitter.outbox().all()?;
        let confirmed = |id: String| {
            records
                .iter()
                .any(|o| o.id == id && o.state == SettlementState::Confirmed)
        };
        let mut open = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.rail == NAME && r.id.ends_with(":fund"))
        {
            if matches!(r.state, SettlementState::Failed { .. }) {
                continue;
            }
            let base = r.id.trim_end_matches(":fund");
            if confirmed(format!("{base}:release")) || confirmed(format!("{base}:refund")) {
                continue;
            }
            let amount = r.request["amount"].as_u64().unwrap_or_default();
            // Keyed by the escrow's address, as the rail notes it.
            if let Ok(escrow) = Pubkey::from_str(base.trim_start_matches("solana-escrow:")) {
                open.insert(escrow, Atomic::new(u128::from(amount)));
            }
        }
        Ok(open)
    }

    fn check_caps(&self, amount: Atomic, creator_bps: u16) -> Result<(), RailError> {
        self.open
            .check(&self.caps, amount, creator_bps, || self.scan_open_escrows())
    }

    /// The off-chain checks of a funding transaction: the exact transaction the challenge
    /// asks for, signed by its buyer. Returns it co-signed, and the buyer.
    pub fn check_funding(
        &self,
        requirements: &PaymentRequirements,
        transaction: &str,
    ) -> Result<(VersionedTransaction, Pubkey), VerifyError> {
        let refused = |reason: &str| VerifyError::Payload(reason.to_string());
        let mut tx = wire::decode_transaction(transaction).map_err(VerifyError::Payload)?;
        let fee_payer = self.fee_payer.pubkey();
        let keys = tx.message.static_account_keys();
        if keys.first() != Some(&fee_payer) {
            return Err(refused("the fee payer is not the gateway's"));
        }
        if usize::from(tx.message.header().num_required_signatures) != 2 {
            return Err(refused(
                "a funding is signed by the gateway's fee payer and the buyer only",
            ));
        }
        let buyer = keys[1];
        let ixs = tx.message.instructions();
        let price = ixs
            .get(1)
            .filter(|ix| {
                keys.get(usize::from(ix.program_id_index))
                    == Some(&solana_compute_budget_interface::id())
                    && ix.data.len() == 9
                    && ix.data[0] == 3
            })
            .map(|ix| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&ix.data[1..9]);
                u64::from_le_bytes(b)
            })
            .ok_or_else(|| refused("the second instruction must set the compute unit price"))?;
        if price > self.config.max_compute_unit_price {
            return Err(refused("the compute unit price is above the gateway's cap"));
        }
        // Rebuilt from the challenge and compared byte for byte: the gateway's signature then
        // pays for this escrow's creation and nothing else.
        let expected =
            funding_instructions(&buyer, requirements, price).map_err(VerifyError::Requirements)?;
        let expected =
            v0::Message::try_compile(&fee_payer, &expected, &[], *tx.message.recent_blockhash())
                .map_err(|e| VerifyError::Payload(e.to_string()))?;
        if VersionedMessage::V0(expected).serialize() != tx.message.serialize() {
            return Err(refused(
                "the transaction is not the funding of this task's escrow",
            ));
        }
        let valid = tx.verify_with_results();
        if valid.get(1) != Some(&true) {
            return Err(VerifyError::Signature {
                expected: buyer.to_string(),
            });
        }
        let message = tx.message.serialize();
        tx.signatures[0] = self.fee_payer.sign_message(&message);
        Ok((tx, buyer))
    }

    /// What an earlier attempt recorded under `id`: its transaction when it landed, `None` when
    /// nothing was recorded or it failed (a new attempt may be made), an error while it is in
    /// flight (the next reconciliation decides).
    fn earlier(&self, id: &str) -> Result<Option<Vec<String>>, RailError> {
        let Some(r) = self.submitter.outbox().get(id)? else {
            return Ok(None);
        };
        match r.state {
            SettlementState::Confirmed => Ok(Some(r.tx_hash.into_iter().collect())),
            SettlementState::Failed { .. } => Ok(None),
            _ => Err(RailError::Replay(id.to_string())),
        }
    }

    /// Signs `instructions` with the fee payer, simulates them (a refusal is
    /// [`RailError::WouldRevert`], nothing recorded) and sends them through the outbox as
    /// `id`.
    async fn send_step(
        &self,
        id: &str,
        what: &str,
        kind: EntryKind,
        reference: &str,
        instructions: &[Instruction],
    ) -> Result<(String, u64), RailError> {
        let blockhash = self
            .rpc()
            .get_latest_blockhash()
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?;
        let message =
            v0::Message::try_compile(&self.fee_payer.pubkey(), instructions, &[], blockhash)
                .map_err(|e| RailError::Chain(e.to_string()))?;
        let tx = VersionedTransaction::try_new(VersionedMessage::V0(message), &[&*self.fee_payer])
            .map_err(|e| RailError::Chain(e.to_string()))?;
        if let Some(reason) = super::simulate(self.rpc(), &tx)
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?
        {
            return Err(RailError::WouldRevert {
                what: what.into(),
                reason,
            });
        }
        let request = SolanaRequest::new(&tx, kind, reference)?;
        let retry = self.submitter.outbox().get(id)?.is_some();
        let landed = self.submitter.submit_as(id, &request, retry, false).await?;
        Ok((landed.signature.to_string(), wire::transaction_fee(&tx)))
    }

    fn settlement(
        &self,
        id: String,
        tx_hashes: Vec<String>,
        fee: u64,
        payer: Option<String>,
        payouts: Vec<Payout>,
    ) -> Settlement {
        Settlement {
            rail: NAME.into(),
            network: self.config.network.to_string(),
            settlement_id: id,
            tx_hashes,
            payer,
            payouts,
            fee_native: u128::from(fee),
            extra: None,
        }
    }

    /// The workers to pay and the validator role's signature: signed here with the local key,
    /// or taken from the validator's verdict.
    fn signed_release(&self, accepted: &Accepted<'_>) -> Option<(Vec<Pubkey>, Vec<u8>)> {
        match &self.release_key {
            Some(key) => {
                let workers: Vec<Pubkey> = accepted
                    .workers
                    .iter()
                    .filter_map(|w| Pubkey::from_str(w).ok())
                    .take(MAX_RELEASE_WORKERS)
                    .collect();
                let signature =
                    sign_release(key, &self.context(), &accepted.task_id(), &workers).ok()?;
                Some((workers, signature))
            }
            None => {
                let signed = accepted.validator_release?;
                let workers = signed
                    .workers
                    .iter()
                    .map(|w| Pubkey::from_str(w).ok())
                    .collect::<Option<Vec<_>>>()?;
                Some((workers, signed.signature.clone()))
            }
        }
    }
}

#[async_trait]
impl Rail for SolanaTaskEscrow {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> RailKind {
        RailKind::TaskEscrow
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn network(&self) -> ChainId {
        self.config.network.clone()
    }

    fn accepts_wallet(&self, wallet: &str) -> bool {
        Pubkey::from_str(wallet).is_ok()
    }

    fn release_context(&self, _requirements: &PaymentRequirements) -> Option<serde_json::Value> {
        if self.release_key.is_some() {
            return None;
        }
        serde_json::to_value(self.context()).ok()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        let split = terms.split()?;
        let creator_bps = terms.commission.as_ref().map_or(0, |c| c.bps);
        self.check_caps(terms.price, creator_bps)?;
        let amount = u64::try_from(terms.price.get())
            .map_err(|_| RailError::Refused(format!("price {} exceeds a u64", terms.price)))?;
        let part = |a: Atomic| {
            u64::try_from(a.get()).map_err(|_| RailError::Refused(format!("share {a}")))
        };
        let creator = match &terms.commission {
            Some(c) if c.bps > 0 => {
                Pubkey::from_str(&c.wallet).map_err(|_| RailError::Address {
                    rail: NAME,
                    what: "creator wallet",
                    value: c.wallet.clone(),
                })?
            }
            _ => self.config.gateway_wallet,
        };
        let fee_payer = self.fee_payer.pubkey();
        let seed = escrow_seed(&terms.task_id.to_string()).to_string();
        let challenge = EscrowChallenge {
            fee_payer: fee_payer.to_string(),
            escrow: escrow_address(&fee_payer, &seed).to_string(),
            seed,
            validator: self.config.validator.to_string(),
            creator: creator.to_string(),
            gateway: self.config.gateway_wallet.to_string(),
            deadline: i64::try_from(terms.deadline_unix)
                .map_err(|_| RailError::Refused("deadline out of range".into()))?,
            creator_amount: part(split.creator)?,
            gateway_amount: part(split.gateway)?,
            decimals: self.config.decimals,
        };
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.config.network.clone(),
            amount: amount.to_string(),
            pay_to: challenge.escrow.clone(),
            max_timeout_seconds: terms.max_timeout_seconds,
            asset: self.config.mint.to_string(),
            extra: Some(
                serde_json::to_value(&challenge).map_err(|e| RailError::Refused(e.to_string()))?,
            ),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        if payload.accepted != *requirements {
            return Err(VerifyError::Requirements(
                "the accepted requirements are not the ones issued".into(),
            )
            .into());
        }
        let transaction = payload.payload["transaction"]
            .as_str()
            .ok_or_else(|| VerifyError::Payload("payload.transaction is missing".into()))?;
        let (tx, buyer) = self.check_funding(requirements, transaction)?;
        let escrow = Pubkey::from_str(&requirements.pay_to)
            .map_err(|_| VerifyError::Requirements("payTo is not the escrow".into()))?;
        let id = step_id(&escrow, "fund");
        let used = VerifyError::AuthorizationUsed { nonce: id.clone() };
        if self.submitter.outbox().get(&id)?.is_some() {
            return Err(used.into());
        }
        let rpc_err =
            |e: solana_rpc_client_api::client_error::Error| RailError::Chain(e.to_string());
        let accounts = self
            .rpc()
            .get_multiple_accounts_with_commitment(
                &[
                    escrow,
                    get_associated_token_address(&buyer, &self.config.mint),
                ],
                CommitmentConfig::confirmed(),
            )
            .await
            .map_err(rpc_err)?
            .value;
        if accounts.first().is_some_and(Option::is_some) {
            return Err(used.into());
        }
        let amount: u64 = requirements
            .amount
            .parse()
            .map_err(|_| VerifyError::Requirements("amount".into()))?;
        let balance = accounts
            .get(1)
            .and_then(Option::as_ref)
            .and_then(|a| spl_token_interface::state::Account::unpack(&a.data).ok())
            .map_or(0, |t| t.amount);
        if balance < amount {
            return Err(VerifyError::InsufficientFunds {
                balance: Atomic::new(u128::from(balance)),
                needed: Atomic::new(u128::from(amount)),
            }
            .into());
        }
        if let Some(reason) = super::simulate(self.rpc(), &tx).await.map_err(rpc_err)? {
            return Err(VerifyError::Simulation(reason).into());
        }
        let cosigned = wire::encode_transaction(&tx).map_err(RailError::Chain)?;
        Ok(Verified {
            rail: NAME.into(),
            network: self.config.network.to_string(),
            payer: buyer.to_string(),
            amount: Atomic::new(u128::from(amount)),
            settlement_id: id,
            requirements: requirements.clone(),
            payload: json!({ "transaction": cosigned }),
        })
    }

    /// Funds the task's escrow: the money is then held by the program, bound to the task.
    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let text = verified.payload["transaction"]
            .as_str()
            .ok_or_else(|| VerifyError::Payload("payload.transaction is missing".into()))?;
        let tx = wire::decode_transaction(text).map_err(VerifyError::Payload)?;
        // Checked again here: several challenges may have been issued under the cap and paid
        // together. Refusing now leaves the buyer's transaction unsent.
        self.check_caps(verified.amount, 0)?;
        let escrow = Pubkey::from_str(&verified.requirements.pay_to)
            .map_err(|_| VerifyError::Requirements("payTo is not the escrow".into()))?;
        let amount = u64::try_from(verified.amount.get())
            .map_err(|_| RailError::Refused("amount exceeds a u64".into()))?;
        let mut request =
            SolanaRequest::new(&tx, EntryKind::EscrowFunding, &verified.settlement_id)?;
        request.amount = Some(amount);
        self.open.note(escrow, Some(verified.amount));
        let stop = self
            .stop_before_funding_send
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let landed = self
            .submitter
            .submit_as(&verified.settlement_id, &request, false, stop)
            .await
            .inspect_err(|_| self.open.forget())?;
        Ok(self.settlement(
            verified.settlement_id.clone(),
            vec![landed.signature.to_string()],
            wire::transaction_fee(&tx),
            Some(verified.payer.clone()),
            vec![Payout {
                to: escrow.to_string(),
                amount: verified.amount,
            }],
        ))
    }

    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        let Some((workers, signature)) = self.signed_release(accepted) else {
            return Ok(Delivery::Refused(
                "no release signature (no release key here, and none from the validator) or no worker Solana wallet: the escrow is refunded instead"
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
        let escrow = self.escrow_of(task_id);
        let id = step_id(&escrow, "release");
        let workers = workers
            .iter()
            .map(|w| {
                Pubkey::from_str(w).map_err(|_| RailError::Address {
                    rail: NAME,
                    what: "worker",
                    value: w.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(tx_hashes) = self.earlier(&id)? {
            return Ok(self.settlement(id, tx_hashes, 0, None, Vec::new()));
        }
        let state = self.escrow_state(task_id).await?.ok_or_else(|| {
            RailError::Refused(format!("the escrow of task {task_id} is not open"))
        })?;
        let signature: [u8; 64] = validator_signature
            .as_slice()
            .try_into()
            .map_err(|_| RailError::Refused("a release signature is 64 bytes".into()))?;
        let vault_balance = self
            .token_balance(&state.vault)
            .await?
            .unwrap_or(state.amount);
        let tokens: Vec<Pubkey> = workers
            .iter()
            .map(|w| get_associated_token_address(w, &self.config.mint))
            .collect();
        let message = program_ix::release_message(&escrow, &tokens);
        let mut ixs: Vec<Instruction> = Vec::new();
        let mut seen = Vec::new();
        for w in &workers {
            if !seen.contains(w) {
                seen.push(*w);
                ixs.push(create_associated_token_account_idempotent(
                    &self.fee_payer.pubkey(),
                    w,
                    &self.config.mint,
                    &TOKEN_PROGRAM_ID,
                ));
            }
        }
        ixs.push(program_ix::ed25519_instruction(&[Signed {
            signer: state.validator,
            signature,
            message: &message,
        }]));
        ixs.push(program_ix::escrow_release(&escrow, &state, &tokens));
        let shares = worker_shares(state.worker_amount(vault_balance), workers.len());
        let payouts: Vec<Payout> = workers
            .iter()
            .zip(shares)
            .map(|(w, a)| (w.to_string(), a))
            .chain([
                (state.creator.to_string(), state.creator_amount),
                (state.gateway.to_string(), state.gateway_amount),
            ])
            .filter(|(_, a)| *a > 0)
            .map(|(to, a)| Payout {
                to,
                amount: Atomic::new(u128::from(a)),
            })
            .collect();
        let (tx, fee) = self
            .send_step(
                &id,
                "the release",
                EntryKind::EscrowSettlement,
                &task_id.to_string(),
                &ixs,
            )
            .await?;
        // Released money is no longer held: it stops counting against the open-escrow cap.
        self.open.note(escrow, None);
        Ok(self.settlement(id, vec![tx], fee, Some(state.buyer.to_string()), payouts))
    }

    fn refunds(&self) -> bool {
        true
    }

    /// After the task's deadline (the program refuses before it), the vault back to the buyer.
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        let due = task.deadline_unix.saturating_add(1);
        if d402_core::clock::now_unix() < due {
            return Ok(Refund::NotBefore(due));
        }
        match self.refund(&task.task_id()).await {
            // The chain's clock lags the gateway's: not yet by the program's reckoning.
            Err(RailError::WouldRevert { reason, .. })
                if reason.contains(&format!(
                    "Custom({})",
                    d402_program::ProgramError::BeforeDeadline as u32
                )) =>
            {
                Ok(Refund::NotBefore(d402_core::clock::now_unix() + 2))
            }
            other => other.map(Refund::Refunded),
        }
    }

    async fn refund(&self, task_id: &TaskId) -> Result<Settlement, RailError> {
        let escrow = self.escrow_of(task_id);
        let id = step_id(&escrow, "refund");
        if let Some(tx_hashes) = self.earlier(&id)? {
            return Ok(self.settlement(id, tx_hashes, 0, None, Vec::new()));
        }
        let state = self.escrow_state(task_id).await?.ok_or_else(|| {
            RailError::Refused(format!("the escrow of task {task_id} is not open"))
        })?;
        let amount = self
            .token_balance(&state.vault)
            .await?
            .unwrap_or(state.amount);
        let buyer_token = get_associated_token_address(&state.buyer, &self.config.mint);
        let ixs = [
            create_associated_token_account_idempotent(
                &self.fee_payer.pubkey(),
                &state.buyer,
                &self.config.mint,
                &TOKEN_PROGRAM_ID,
            ),
            program_ix::escrow_refund(&escrow, &state, &buyer_token),
        ];
        let (tx, fee) = self
            .send_step(
                &id,
                "the refund",
                EntryKind::EscrowRefund,
                &task_id.to_string(),
                &ixs,
            )
            .await?;
        self.open.note(escrow, None);
        Ok(self.settlement(
            id,
            vec![tx],
            fee,
            Some(state.buyer.to_string()),
            vec![Payout {
                to: state.buyer.to_string(),
                amount: Atomic::new(u128::from(amount)),
            }],
        ))
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        Ok(self.submitter.outbox().get(id)?.map(|r| r.state))
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.submitter.outbox().all_in_flight()?)
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        self.open.forget();
        Ok(self.submitter.reconcile().await?)
    }
}

/// The buyer side: the x402 payload's `transaction` funding the escrow `requirements` name,
/// signed by `buyer` (the gateway's fee payer signs when it accepts it).
pub fn funding_transaction(
    buyer: &Keypair,
    requirements: &PaymentRequirements,
    blockhash: solana_hash::Hash,
) -> Result<String, String> {
    let challenge = EscrowChallenge::of(requirements)?;
    let fee_payer = key("feePayer", &challenge.fee_payer)?;
    let instructions = funding_instructions(&buyer.pubkey(), requirements, 0)?;
    super::direct::partially_signed(&instructions, &fee_payer, &[buyer], blockhash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirements(fee_payer: &Pubkey, task: &TaskId) -> PaymentRequirements {
        let seed = escrow_seed(&task.to_string()).to_string();
        let c = EscrowChallenge {
            fee_payer: fee_payer.to_string(),
            escrow: escrow_address(fee_payer, &seed).to_string(),
            seed,
            validator: Pubkey::new_unique().to_string(),
            creator: Pubkey::new_unique().to_string(),
            gateway: Pubkey::new_unique().to_string(),
            deadline: 1_900_000_000,
            creator_amount: 100,
            gateway_amount: 50,
            decimals: 6,
        };
        PaymentRequirements {
            scheme: SCHEME.into(),
            network: "solana:test".parse().expect("network"),
            amount: "1000".into(),
            pay_to: c.escrow.clone(),
            max_timeout_seconds: 60,
            asset: Pubkey::new_unique().to_string(),
            extra: Some(serde_json::to_value(&c).expect("json")),
        }
    }

    /// The funding opens exactly the challenge's escrow, and a challenge whose escrow is not its
    /// seed's address (terms moved to another escrow) builds nothing.
    #[test]
    fn the_funding_is_bound_to_the_challenges_escrow() {
        let fee_payer = Pubkey::new_unique();
        let task = TaskId::from_label("task-1");
        let r = requirements(&fee_payer, &task);
        let buyer = Pubkey::new_unique();
        let ixs = funding_instructions(&buyer, &r, 0).expect("builds");
        let open = ixs.last().expect("open");
        assert_eq!(open.program_id, d402_program::ID);
        assert_eq!(open.data[0], 7);
        assert_eq!(open.accounts[0].pubkey.to_string(), r.pay_to);
        assert_eq!(open.accounts[1].pubkey, buyer);
        assert_eq!(
            u64::from_le_bytes(open.data[16..24].try_into().unwrap()),
            1000
        );

        let mut moved = r.clone();
        let mut extra = moved.extra.take().unwrap();
        extra["escrow"] = json!(Pubkey::new_unique().to_string());
        moved.extra = Some(extra);
        assert!(
            funding_instructions(&buyer, &moved, 0)
                .unwrap_err()
                .contains("not the address of its seed")
        );
    }

    /// The validator's context names the escrow by the task it judged: the same context for
    /// another task gives another escrow, so a signature cannot be moved between tasks.
    #[test]
    fn a_release_signature_is_bound_to_its_task() {
        let base = Pubkey::new_unique();
        let context = ReleaseContext {
            rail: NAME.into(),
            base: base.to_string(),
            mint: Pubkey::new_unique().to_string(),
        };
        let key = Keypair::new();
        let worker = Pubkey::new_unique();
        let t1 = TaskId::from_label("task-1");
        let t2 = TaskId::from_label("task-2");
        let signature = sign_release(&key, &context, &t1, &[worker]).expect("signs");
        let token = get_associated_token_address(&worker, &context.mint().unwrap());
        let m1 = program_ix::release_message(&context.escrow(&t1).unwrap(), &[token]);
        let m2 = program_ix::release_message(&context.escrow(&t2).unwrap(), &[token]);
        let sig = solana_signature::Signature::try_from(signature.as_slice()).expect("64 bytes");
        assert!(sig.verify(key.pubkey().as_ref(), &m1));
        assert!(!sig.verify(key.pubkey().as_ref(), &m2));
        assert!(sign_release(&key, &context, &t1, &[]).is_err());
        assert_eq!(
            ReleaseContext::from_context(&json!({"rail": "base-task-escrow"})).unwrap(),
            None
        );
    }
}
