//! `solana-direct`: the x402 SVM `exact` scheme with the gateway as fee payer.
//!
//! The buyer builds a transaction whose only money movement is one SPL `TransferChecked` from its
//! token account to the associated token account (ATA) of `payTo`, sets the gateway's key (from the
//! challenge's `extra.feePayer`) as fee payer, signs it partially and sends it base64-encoded. The
//! gateway checks it with the x402 sponsor rules before adding its own signature:
//!
//! 1. the fee payer is the gateway's key, and the gateway's key appears in no instruction's
//!    accounts (so its signature can authorize nothing but the fee) and is not the transfer
//!    authority;
//! 2. the instructions are exactly `SetComputeUnitLimit`, `SetComputeUnitPrice` (both within the
//!    gateway's caps, so a buyer cannot burn the gateway's SOL on priority fees), one
//!    `TransferChecked`, and optionally memos;
//! 3. the transfer's mint, decimals, destination (the ATA of `payTo` for the mint) and amount are
//!    the challenge's;
//! 4. every signature other than the fee payer's is valid for the message;
//! 5. the transaction is not already in the settlement book or on chain (replay);
//! 6. the source account exists and holds the amount; the destination exists;
//! 7. the co-signed transaction simulates cleanly.
//!
//! Errors carry the x402 SVM reason strings where x402 defines one ([`VerifyError::reason`]).

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::{VersionedMessage, v0};
use solana_program_pack::Pack;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_token_interface::instruction::TokenInstruction;

use super::submit::{EntryKind, Landed, SolanaRequest, SubmitError, Submitter, outbox_id};
use super::{MEMO_PROGRAM_ID, TOKEN_PROGRAM_ID, wire};
use crate::amount::Atomic;
use crate::caps::SafetyCaps;
use crate::delivery::{Accepted, Delivery, direct_lifecycle, owe_workers};
use crate::error::RailError;
use crate::outbox::{SettlementRecord, SettlementState};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Payout, Rail, ReconcileReport, Release,
    Settlement, TaskId, Terms, Verified,
};
use crate::refund::{PaidTask, Refund};

/// The rail's name, as the gateway advertises it and the outbox records it.
pub const NAME: &str = "solana-direct";

/// The x402 scheme name.
pub const SCHEME: &str = "exact";

/// How many fresh transactions one payout call sends when each expires before it lands (a
/// congested leader, a dropped packet); after that the payout stays owed for the next call.
const PAYOUT_ATTEMPTS: usize = 3;

/// The outbox id of the payout of `task` to `to`: one record however many transactions the
/// payout takes, so that it is paid once.
pub fn payout_id(task: &TaskId, to: &Pubkey) -> String {
    format!("solana-payout:{task}:{to}")
}

/// The gateway's sponsor limits and the asset it accepts.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// The CAIP-2 network id (`solana:<first 32 chars of the genesis hash>`).
    pub network: ChainId,
    /// The SPL mint accepted (USDC on mainnet).
    pub mint: Pubkey,
    /// The mint's decimals, which `TransferChecked` must state.
    pub decimals: u8,
    /// The largest `SetComputeUnitLimit` the gateway pays for. A transfer needs ~6,000 CU.
    pub max_compute_unit_limit: u32,
    /// The largest `SetComputeUnitPrice` (micro-lamports per CU) the gateway pays for.
    pub max_compute_unit_price: u64,
    /// How long a challenge stays payable (x402 `maxTimeoutSeconds`).
    pub max_timeout_seconds: u64,
    /// How many memo instructions a payment may carry besides the required three.
    pub max_memos: usize,
}

impl DirectConfig {
    /// Defaults for `mint` on `network`: the caps x402's reference facilitator uses.
    pub fn new(network: ChainId, mint: Pubkey, decimals: u8) -> Self {
        Self {
            network,
            mint,
            decimals,
            max_compute_unit_limit: 400_000,
            max_compute_unit_price: 5_000_000,
            max_timeout_seconds: 60,
            max_memos: 2,
        }
    }
}

/// Why a payment was refused. [`VerifyError::reason`] gives the x402 reason string.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the payment transaction could not be decoded: {0}")]
    Decode(String),
    #[error("the requirements are not this rail's: {0}")]
    Requirements(String),
    #[error("the payment is for network {0}, not this rail's")]
    NetworkMismatch(String),
    #[error("the fee payer {0} is not this gateway's key")]
    FeePayerNotManaged(Pubkey),
    #[error("address lookup tables are not accepted (every account must be visible)")]
    AddressLookupTables,
    #[error("the transaction has {0} instructions; expected 3 plus optional memos")]
    InstructionCount(usize),
    #[error("instruction 0 is not a valid SetComputeUnitLimit within the cap")]
    ComputeLimitInstruction,
    #[error("instruction 1 is not a SetComputeUnitPrice")]
    ComputePriceInstruction,
    #[error("compute unit price {0} micro-lamports is above the cap")]
    ComputePriceTooHigh(u64),
    #[error("instruction 2 is not an SPL Token TransferChecked")]
    NoTransferInstruction,
    #[error("instruction {0} (program {1}) is not allowed")]
    UnknownInstruction(usize, Pubkey),
    #[error("the fee payer is the transfer authority or source")]
    FeePayerTransferringFunds,
    #[error("the fee payer appears in an instruction's accounts")]
    FeePayerInInstructionAccounts,
    #[error("the transfer moves mint {0} (or states other decimals), not the required asset")]
    MintMismatch(Pubkey),
    #[error("the transfer pays {0}, not the ATA of payTo")]
    RecipientMismatch(Pubkey),
    #[error("the transfer moves {got}, the requirement is {expected}")]
    AmountMismatch { expected: u64, got: u64 },
    #[error("signature {0} is missing or does not verify")]
    InvalidSignature(usize),
    #[error("the transaction {0} was already submitted")]
    Replay(Signature),
    #[error("the source token account {0} does not exist")]
    SenderAccountMissing(Pubkey),
    #[error("the destination token account {0} does not exist")]
    ReceiverAccountMissing(Pubkey),
    #[error("the source holds {balance}, the payment is {amount}")]
    InsufficientFunds { balance: u64, amount: u64 },
    /// The SVM form of an expired (or never valid) authorization: the transaction's recent
    /// blockhash is not one the cluster still accepts, so it could never land.
    #[error("the transaction's blockhash {0} has expired or is unknown to the cluster")]
    BlockhashExpired(Hash),
    #[error("simulation failed: {0}")]
    Simulation(String),
    #[error("the chain could not be asked: {0}")]
    Rpc(String),
}

impl VerifyError {
    /// The x402 `invalidReason`. Strings from the x402 SVM `exact` facilitators where they define
    /// one; `invalid_exact_svm_payload_signature` and `..._address_lookup_tables` are d402's, named
    /// in the same pattern.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode(_) => "invalid_exact_svm_payload_transaction_could_not_be_decoded",
            Self::Requirements(_) => "invalid_payment_requirements",
            Self::NetworkMismatch(_) => "invalid_network",
            Self::FeePayerNotManaged(_) => "fee_payer_not_managed_by_facilitator",
            Self::AddressLookupTables => "invalid_exact_svm_payload_address_lookup_tables",
            Self::InstructionCount(_) => {
                "invalid_exact_svm_payload_transaction_instructions_length"
            }
            Self::ComputeLimitInstruction => {
                "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
            }
            Self::ComputePriceInstruction => {
                "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
            }
            Self::ComputePriceTooHigh(_) => {
                "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high"
            }
            Self::NoTransferInstruction => "invalid_exact_svm_payload_no_transfer_instruction",
            Self::UnknownInstruction(..) => {
                "invalid_exact_svm_payload_unknown_optional_instruction"
            }
            Self::FeePayerTransferringFunds => {
                "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
            }
            Self::FeePayerInInstructionAccounts => {
                "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts"
            }
            Self::MintMismatch(_) => "invalid_exact_svm_payload_mint_mismatch",
            Self::RecipientMismatch(_) => "invalid_exact_svm_payload_recipient_mismatch",
            Self::AmountMismatch { .. } => "invalid_exact_svm_payload_amount_mismatch",
            Self::InvalidSignature(_) => "invalid_exact_svm_payload_signature",
            Self::Replay(_) => "duplicate_settlement",
            Self::SenderAccountMissing(_) => {
                "invalid_exact_svm_payload_transaction_sender_ata_not_found"
            }
            Self::ReceiverAccountMissing(_) => {
                "invalid_exact_svm_payload_transaction_receiver_ata_not_found"
            }
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::BlockhashExpired(_) => "invalid_exact_svm_payload_transaction_expired",
            Self::Simulation(_) => "transaction_simulation_failed",
            Self::Rpc(_) => "unexpected_verify_error",
        }
    }
}

/// Why a challenge was not issued or a verified payment did not settle.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// Commission-bearing work must go through split settlement, never a direct `payTo`.
    #[error("a commission-bearing manifest cannot be paid on a direct rail")]
    CommissionBearing,
    #[error("amount {0} does not fit an SPL token amount (u64)")]
    AmountTooLarge(u128),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// A payment that passed every check, co-signed and ready to send.
#[derive(Debug, Clone)]
pub struct VerifiedPayment {
    /// The transaction id (the gateway's deterministic fee-payer signature).
    pub signature: Signature,
    /// The buyer (transfer authority).
    pub payer: Pubkey,
    pub amount: u64,
    pub transaction: VersionedTransaction,
}

/// The gateway side of solana-direct.
pub struct SolanaDirect {
    config: DirectConfig,
    fee_payer: Arc<Keypair>,
    submitter: Submitter,
    caps: SafetyCaps,
    stop_before_payout_send: std::sync::atomic::AtomicBool,
}

impl SolanaDirect {
    /// A rail whose `fee_payer` co-signs and pays for payments (it never holds buyer funds).
    /// `submitter` must write under [`NAME`].
    pub fn new(
        config: DirectConfig,
        fee_payer: Arc<Keypair>,
        submitter: Submitter,
        caps: SafetyCaps,
    ) -> Self {
        Self {
            config,
            fee_payer,
            submitter,
            caps,
            stop_before_payout_send: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Test hook: the next payout transaction is recorded and not sent, as a crash between the
    /// record and the send would leave it.
    #[doc(hidden)]
    pub fn stop_before_next_payout_send(&self) {
        self.stop_before_payout_send
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The submitter (and through it the outbox) this rail settles through.
    pub fn submitter(&self) -> &Submitter {
        &self.submitter
    }

    pub fn config(&self) -> &DirectConfig {
        &self.config
    }

    fn rpc(&self) -> &RpcClient {
        self.submitter.rpc()
    }

    /// The requirements of a challenge for `amount` atomic units paid to `pay_to` (without the
    /// safety caps, which [`Rail::challenge`] checks first).
    /// `creator_commission_bps > 0` is refused: commission-bearing work needs split settlement.
    pub fn requirements(
        &self,
        pay_to: &Pubkey,
        amount: u128,
        creator_commission_bps: u16,
    ) -> Result<PaymentRequirements, DirectError> {
        if creator_commission_bps > 0 {
            return Err(DirectError::CommissionBearing);
        }
        let amount = u64::try_from(amount).map_err(|_| DirectError::AmountTooLarge(amount))?;
        Ok(PaymentRequirements {
            scheme: SCHEME.to_string(),
            network: self.config.network.clone(),
            amount: amount.to_string(),
            pay_to: pay_to.to_string(),
            max_timeout_seconds: self.config.max_timeout_seconds,
            asset: self.config.mint.to_string(),
            // x402 SVM: the client needs the fee payer to build the message it signs.
            extra: Some(json!({ "feePayer": self.fee_payer.pubkey().to_string() })),
        })
    }

    /// Verifies `transaction` (base64) against `requirements` without sending anything.
    /// Calling it twice on the same input gives the same answer until the payment is settled.
    pub async fn verify_transaction(
        &self,
        requirements: &PaymentRequirements,
        transaction: &str,
    ) -> Result<VerifiedPayment, VerifyError> {
        let checked = self.check_offline(requirements, transaction)?;
        self.check_online(checked).await
    }

    /// The checks that need no chain access (steps 1–4 of the module doc). Public so that the
    /// benchmark can time the off-chain part of verification on its own.
    pub fn check_offline(
        &self,
        requirements: &PaymentRequirements,
        transaction: &str,
    ) -> Result<OfflineChecked, VerifyError> {
        let required = Required::parse(requirements, &self.config)?;
        let mut tx = wire::decode_transaction(transaction).map_err(VerifyError::Decode)?;
        let fee_payer = self.fee_payer.pubkey();
        let keys = tx.message.static_account_keys();
        if keys.first() != Some(&fee_payer) {
            return Err(VerifyError::FeePayerNotManaged(
                keys.first().copied().unwrap_or_default(),
            ));
        }
        if tx
            .message
            .address_table_lookups()
            .is_some_and(|lookups| !lookups.is_empty())
        {
            return Err(VerifyError::AddressLookupTables);
        }
        let transfer = check_instructions(&tx, &self.config)?;
        if transfer.authority == fee_payer || transfer.source == fee_payer {
            return Err(VerifyError::FeePayerTransferringFunds);
        }
        let fee_payer_in_accounts = tx.message.instructions().iter().any(|ix| {
            ix.accounts
                .iter()
                .any(|&i| keys.get(usize::from(i)) == Some(&fee_payer))
        });
        if fee_payer_in_accounts {
            return Err(VerifyError::FeePayerInInstructionAccounts);
        }
        if transfer.mint != required.mint || transfer.decimals != self.config.decimals {
            return Err(VerifyError::MintMismatch(transfer.mint));
        }
        let expected_destination = get_associated_token_address(&required.pay_to, &required.mint);
        if transfer.destination != expected_destination {
            return Err(VerifyError::RecipientMismatch(transfer.destination));
        }
        if transfer.amount != required.amount {
            return Err(VerifyError::AmountMismatch {
                expected: required.amount,
                got: transfer.amount,
            });
        }
        // Every signer but the fee payer (index 0) must already have signed this exact message.
        let valid = tx.verify_with_results();
        if let Some(bad) = valid.iter().skip(1).position(|ok| !ok) {
            return Err(VerifyError::InvalidSignature(bad + 1));
        }
        // Co-sign. ed25519 is deterministic, so the transaction id is fixed by the message: a
        // replayed payment has the id of the first one.
        let message = tx.message.serialize();
        tx.signatures[0] = self.fee_payer.sign_message(&message);
        Ok(OfflineChecked {
            signature: tx.signatures[0],
            transaction: tx,
            transfer,
        })
    }

    async fn check_online(&self, checked: OfflineChecked) -> Result<VerifiedPayment, VerifyError> {
        let OfflineChecked {
            signature,
            transaction,
            transfer,
        } = checked;
        let rpc_err =
            |e: solana_rpc_client_api::client_error::Error| VerifyError::Rpc(e.to_string());
        if self
            .submitter
            .outbox()
            .get(&outbox_id(&signature))
            .map_err(|e| VerifyError::Rpc(e.to_string()))?
            .is_some()
        {
            return Err(VerifyError::Replay(signature));
        }
        let statuses = self
            .rpc()
            .get_signature_statuses_with_history(&[signature])
            .await
            .map_err(rpc_err)?
            .value;
        if statuses.first().is_some_and(Option::is_some) {
            return Err(VerifyError::Replay(signature));
        }
        let accounts = self
            .rpc()
            .get_multiple_accounts_with_commitment(
                &[transfer.source, transfer.destination],
                CommitmentConfig::confirmed(),
            )
            .await
            .map_err(rpc_err)?
            .value;
        let source = accounts
            .first()
            .and_then(Option::as_ref)
            .filter(|a| a.owner == TOKEN_PROGRAM_ID)
            .ok_or(VerifyError::SenderAccountMissing(transfer.source))?;
        let source = spl_token_interface::state::Account::unpack(&source.data)
            .map_err(|_| VerifyError::SenderAccountMissing(transfer.source))?;
        if accounts.get(1).and_then(Option::as_ref).is_none() {
            return Err(VerifyError::ReceiverAccountMissing(transfer.destination));
        }
        if source.amount < transfer.amount {
            return Err(VerifyError::InsufficientFunds {
                balance: source.amount,
                amount: transfer.amount,
            });
        }
        let blockhash = *transaction.message.recent_blockhash();
        if !self
            .rpc()
            .is_blockhash_valid(&blockhash, CommitmentConfig::processed())
            .await
            .map_err(rpc_err)?
        {
            return Err(VerifyError::BlockhashExpired(blockhash));
        }
        if let Some(err) = super::simulate(self.rpc(), &transaction)
            .await
            .map_err(rpc_err)?
        {
            return Err(VerifyError::Simulation(err));
        }
        Ok(VerifiedPayment {
            signature,
            payer: transfer.authority,
            amount: transfer.amount,
            transaction,
        })
    }

    /// Sends a verified payment through the settlement book and waits for confirmation.
    /// A second settle of the same payment is refused by the book (and would be by the chain).
    pub async fn settle_payment(
        &self,
        payment: &VerifiedPayment,
        reference: &str,
    ) -> Result<Landed, DirectError> {
        Ok(self
            .submitter
            .submit(&payment.transaction, EntryKind::DirectPayment, reference)
            .await?)
    }

    /// Verify then settle, as the x402 `settle` call does.
    pub async fn verify_and_settle(
        &self,
        requirements: &PaymentRequirements,
        transaction: &str,
        reference: &str,
    ) -> Result<Landed, DirectError> {
        let payment = self.verify_transaction(requirements, transaction).await?;
        self.settle_payment(&payment, reference).await
    }
}

impl SolanaDirect {
    /// Pays `payouts` out of the gateway's wallet (`from`, which must be the fee payer's own
    /// wallet: the rail signs with that key), each at most once. A payout is one outbox record
    /// under [`payout_id`]; a new transaction is sent for it only once the previous one can
    /// never land (its blockhash expired, or it failed on chain), so a retry, a concurrent call
    /// or a restart never pays twice.
    pub async fn pay_out(
        &self,
        task: &TaskId,
        from: &str,
        payouts: &[Payout],
    ) -> Result<Settlement, RailError> {
        let signer = self.fee_payer.pubkey();
        if Pubkey::from_str(from).ok() != Some(signer) {
            return Err(RailError::PayoutSource {
                rail: NAME,
                from: from.to_string(),
                signer: signer.to_string(),
            });
        }
        let mut tx_hashes = Vec::new();
        let mut fee_native = 0u128;
        for p in payouts {
            let to = Pubkey::from_str(&p.to).map_err(|_| RailError::Address {
                rail: NAME,
                what: "payout recipient",
                value: p.to.clone(),
            })?;
            let amount = u64::try_from(p.amount.get())
                .map_err(|_| DirectError::AmountTooLarge(p.amount.get()))?;
            if amount == 0 {
                continue;
            }
            let (signature, fee) = self.pay_one(task, &to, amount).await?;
            tx_hashes.push(signature.to_string());
            fee_native += u128::from(fee);
        }
        Ok(Settlement {
            rail: NAME.into(),
            network: self.config.network.to_string(),
            settlement_id: format!("solana-payout:{task}"),
            tx_hashes,
            payer: Some(signer.to_string()),
            payouts: payouts.to_vec(),
            fee_native,
            extra: None,
        })
    }

    /// One payout: the signature that paid it and the fee paid by this call (zero when an
    /// earlier call paid it).
    async fn pay_one(
        &self,
        task: &TaskId,
        to: &Pubkey,
        amount: u64,
    ) -> Result<(Signature, u64), RailError> {
        let id = payout_id(task, to);
        for _ in 0..PAYOUT_ATTEMPTS {
            let record = self.submitter.outbox().get(&id)?;
            if let Some(r) = &record {
                let recorded: Option<SolanaRequest> =
                    serde_json::from_value(r.request.clone()).ok();
                if let Some(recorded) = recorded.and_then(|q| q.amount)
                    && recorded != amount
                {
                    return Err(RailError::PayoutConflict {
                        id,
                        recorded: Atomic::new(u128::from(recorded)),
                        requested: Atomic::new(u128::from(amount)),
                    });
                }
                match &r.state {
                    SettlementState::Confirmed => {
                        let signature = r
                            .tx_hash
                            .as_deref()
                            .and_then(|h| Signature::from_str(h).ok())
                            .unwrap_or_default();
                        return Ok((signature, 0));
                    }
                    SettlementState::Failed { .. } => {}
                    _ => match self.submitter.finish(&id).await {
                        Ok(landed) => return Ok((landed.signature, 0)),
                        Err(SubmitError::Expired(_)) | Err(SubmitError::FailedOnChain { .. }) => {
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    },
                }
            }
            let tx = self.payout_transaction(task, to, amount).await?;
            let fee = wire::transaction_fee(&tx);
            let mut request = SolanaRequest::new(&tx, EntryKind::DirectPayout, &task.to_string())
                .map_err(RailError::from)?;
            request.recipient = Some(to.to_string());
            request.amount = Some(amount);
            let stop = self
                .stop_before_payout_send
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            match self
                .submitter
                .submit_as(&id, &request, record.is_some(), stop)
                .await
            {
                Ok(landed) => return Ok((landed.signature, fee)),
                // Expired unlanded, or landed and failed: it can never pay, so a new
                // transaction may.
                Err(SubmitError::Expired(_)) => continue,
                Err(SubmitError::FailedOnChain { signature, error }) => {
                    return Err(RailError::Reverted {
                        tx: signature.to_string(),
                        reason: error,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RailError::Chain(format!(
            "payout {id}: {PAYOUT_ATTEMPTS} transactions expired before landing; it stays owed"
        )))
    }

    /// The payout's transaction, signed by the fee payer (which owns the source): the
    /// recipient's token account created if missing, the transfer, and a memo naming the task
    /// and recipient so that the payout can be found on chain. Simulated first, so that a
    /// payout the wallet cannot cover is refused before anything is recorded or sent.
    async fn payout_transaction(
        &self,
        task: &TaskId,
        to: &Pubkey,
        amount: u64,
    ) -> Result<VersionedTransaction, RailError> {
        let owner = self.fee_payer.pubkey();
        let mint = self.config.mint;
        let instructions = vec![
            spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
                &owner,
                to,
                &mint,
                &TOKEN_PROGRAM_ID,
            ),
            spl_token_interface::instruction::transfer_checked(
                &TOKEN_PROGRAM_ID,
                &get_associated_token_address(&owner, &mint),
                &mint,
                &get_associated_token_address(to, &mint),
                &owner,
                &[],
                amount,
                self.config.decimals,
            )
            .map_err(|e| RailError::Chain(e.to_string()))?,
            memo_instruction(&format!("d402 payout {task} {to}"), &[]),
        ];
        let chain_err =
            |e: solana_rpc_client_api::client_error::Error| RailError::Chain(e.to_string());
        let blockhash = self
            .rpc()
            .get_latest_blockhash_with_commitment(CommitmentConfig::confirmed())
            .await
            .map_err(chain_err)?
            .0;
        let message = v0::Message::try_compile(&owner, &instructions, &[], blockhash)
            .map_err(|e| RailError::Chain(e.to_string()))?;
        let tx = VersionedTransaction::try_new(VersionedMessage::V0(message), &[&*self.fee_payer])
            .map_err(|e| RailError::Chain(e.to_string()))?;
        if let Some(err) = super::simulate(self.rpc(), &tx).await.map_err(chain_err)? {
            return Err(RailError::WouldRevert {
                what: format!("the payout of {amount} to {to}"),
                reason: err,
            });
        }
        Ok(tx)
    }
}

/// A payment that passed the off-chain checks and carries the gateway's signature.
#[derive(Debug, Clone)]
pub struct OfflineChecked {
    pub signature: Signature,
    pub transaction: VersionedTransaction,
    transfer: Transfer,
}

/// The parsed requirements.
struct Required {
    mint: Pubkey,
    pay_to: Pubkey,
    amount: u64,
}

impl Required {
    fn parse(r: &PaymentRequirements, config: &DirectConfig) -> Result<Self, VerifyError> {
        if r.scheme != SCHEME {
            return Err(VerifyError::Requirements(format!("scheme {}", r.scheme)));
        }
        if r.network != config.network {
            return Err(VerifyError::NetworkMismatch(r.network.to_string()));
        }
        let mint = Pubkey::from_str(&r.asset)
            .map_err(|_| VerifyError::Requirements(format!("asset {}", r.asset)))?;
        if mint != config.mint {
            return Err(VerifyError::Requirements(format!(
                "asset {mint} is not accepted"
            )));
        }
        let pay_to = Pubkey::from_str(&r.pay_to)
            .map_err(|_| VerifyError::Requirements(format!("payTo {}", r.pay_to)))?;
        let amount = r
            .amount
            .parse::<u64>()
            .map_err(|_| VerifyError::Requirements(format!("amount {}", r.amount)))?;
        Ok(Self {
            mint,
            pay_to,
            amount,
        })
    }
}

/// The one `TransferChecked` of a payment.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: u64,
    decimals: u8,
}

/// Checks the instruction layout and returns the transfer (step 2 of the module doc).
fn check_instructions(
    tx: &VersionedTransaction,
    config: &DirectConfig,
) -> Result<Transfer, VerifyError> {
    let keys = tx.message.static_account_keys();
    let ixs = tx.message.instructions();
    if ixs.len() < 3 || ixs.len() > 3 + config.max_memos {
        return Err(VerifyError::InstructionCount(ixs.len()));
    }
    let program = |i: usize| keys.get(usize::from(ixs[i].program_id_index)).copied();
    let compute_budget = solana_compute_budget_interface::id();

    // 0: SetComputeUnitLimit (discriminator 2, u32 LE), no accounts.
    let limit_ix = &ixs[0];
    if program(0) != Some(compute_budget)
        || limit_ix.data.len() != 5
        || limit_ix.data[0] != 2
        || !limit_ix.accounts.is_empty()
    {
        return Err(VerifyError::ComputeLimitInstruction);
    }
    let limit = u32::from_le_bytes([
        limit_ix.data[1],
        limit_ix.data[2],
        limit_ix.data[3],
        limit_ix.data[4],
    ]);
    if limit > config.max_compute_unit_limit {
        return Err(VerifyError::ComputeLimitInstruction);
    }

    // 1: SetComputeUnitPrice (discriminator 3, u64 LE), no accounts.
    let price_ix = &ixs[1];
    if program(1) != Some(compute_budget)
        || price_ix.data.len() != 9
        || price_ix.data[0] != 3
        || !price_ix.accounts.is_empty()
    {
        return Err(VerifyError::ComputePriceInstruction);
    }
    let mut price = [0u8; 8];
    price.copy_from_slice(&price_ix.data[1..9]);
    let price = u64::from_le_bytes(price);
    if price > config.max_compute_unit_price {
        return Err(VerifyError::ComputePriceTooHigh(price));
    }

    // 2: TransferChecked on the SPL Token program: source, mint, destination, authority (a
    // single-signer authority: multisig authorities add signer accounts, which we refuse).
    let transfer_ix = &ixs[2];
    if program(2) != Some(TOKEN_PROGRAM_ID) || transfer_ix.accounts.len() != 4 {
        return Err(VerifyError::NoTransferInstruction);
    }
    let (amount, decimals) = match TokenInstruction::unpack(&transfer_ix.data) {
        Ok(TokenInstruction::TransferChecked { amount, decimals }) => (amount, decimals),
        _ => return Err(VerifyError::NoTransferInstruction),
    };
    let account = |n: usize| {
        transfer_ix
            .accounts
            .get(n)
            .and_then(|&i| keys.get(usize::from(i)))
            .copied()
            .ok_or(VerifyError::NoTransferInstruction)
    };
    let transfer = Transfer {
        source: account(0)?,
        mint: account(1)?,
        destination: account(2)?,
        authority: account(3)?,
        amount,
        decimals,
    };

    // 3..: memos only.
    for i in 3..ixs.len() {
        let id = program(i).unwrap_or_default();
        if id != MEMO_PROGRAM_ID {
            return Err(VerifyError::UnknownInstruction(i, id));
        }
    }
    Ok(transfer)
}

/// The buyer side: the instructions of an `exact` payment for `requirements`.
///
/// `compute_unit_price` is in micro-lamports; 0 is fine on an idle cluster.
pub fn payment_instructions(
    buyer: &Pubkey,
    requirements: &PaymentRequirements,
    decimals: u8,
    compute_unit_price: u64,
) -> Result<Vec<Instruction>, String> {
    let mint = Pubkey::from_str(&requirements.asset).map_err(|e| format!("asset: {e}"))?;
    let pay_to = Pubkey::from_str(&requirements.pay_to).map_err(|e| format!("payTo: {e}"))?;
    let amount: u64 = requirements
        .amount
        .parse()
        .map_err(|e| format!("amount: {e}"))?;
    let source = get_associated_token_address(buyer, &mint);
    let destination = get_associated_token_address(&pay_to, &mint);
    let transfer = spl_token_interface::instruction::transfer_checked(
        &TOKEN_PROGRAM_ID,
        &source,
        &mint,
        &destination,
        buyer,
        &[],
        amount,
        decimals,
    )
    .map_err(|e| e.to_string())?;
    Ok(vec![
        solana_compute_budget_interface::ComputeBudgetInstruction::set_compute_unit_limit(20_000),
        solana_compute_budget_interface::ComputeBudgetInstruction::set_compute_unit_price(
            compute_unit_price,
        ),
        transfer,
    ])
}

/// A memo instruction (no accounts unless `signers` are given), for payment references.
pub fn memo_instruction(text: &str, accounts: &[Pubkey]) -> Instruction {
    Instruction {
        program_id: MEMO_PROGRAM_ID,
        accounts: accounts
            .iter()
            .map(|k| AccountMeta::new_readonly(*k, false))
            .collect(),
        data: text.as_bytes().to_vec(),
    }
}

/// The buyer side: compiles `instructions` into a v0 message with `fee_payer` (from the
/// challenge's `extra.feePayer`) and signs it with `signers`, leaving the fee payer's signature
/// empty. Returns the x402 payload's `transaction` string.
pub fn partially_signed(
    instructions: &[Instruction],
    fee_payer: &Pubkey,
    signers: &[&Keypair],
    blockhash: Hash,
) -> Result<String, String> {
    let message = v0::Message::try_compile(fee_payer, instructions, &[], blockhash)
        .map_err(|e| e.to_string())?;
    let message = VersionedMessage::V0(message);
    let required = usize::from(message.header().num_required_signatures);
    let mut tx = VersionedTransaction {
        signatures: vec![Signature::default(); required],
        message,
    };
    let bytes = tx.message.serialize();
    for signer in signers {
        let position = tx.message.static_account_keys()[..required]
            .iter()
            .position(|k| *k == signer.pubkey())
            .ok_or_else(|| format!("{} is not a signer of this message", signer.pubkey()))?;
        tx.signatures[position] = signer.sign_message(&bytes);
    }
    wire::encode_transaction(&tx)
}

impl From<VerifyError> for crate::error::VerifyError {
    fn from(e: VerifyError) -> Self {
        crate::error::VerifyError::Svm {
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

impl From<DirectError> for RailError {
    fn from(e: DirectError) -> Self {
        match e {
            DirectError::CommissionBearing => RailError::Refused(e.to_string()),
            DirectError::AmountTooLarge(_) => RailError::Refused(e.to_string()),
            DirectError::Verify(v) => RailError::Verify(v.into()),
            DirectError::Submit(s) => s.into(),
        }
    }
}

/// The core [`Rail`] for `solana-direct`: x402 v2 wire types in and out, refusals as
/// [`crate::VerifyError::Svm`] carrying the x402 SVM reason.
#[async_trait]
impl Rail for SolanaDirect {
    fn name(&self) -> &'static str {
        NAME
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
        self.config.network.clone()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        terms.check_direct(NAME, &self.caps)?;
        let pay_to = Pubkey::from_str(&terms.pay_to).map_err(|_| RailError::Address {
            rail: NAME,
            what: "payTo",
            value: terms.pay_to.clone(),
        })?;
        let mut requirements = self.requirements(&pay_to, terms.price.get(), 0)?;
        requirements.max_timeout_seconds = terms.max_timeout_seconds;
        Ok(requirements)
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        if payload.accepted != *requirements {
            return Err(crate::error::VerifyError::Requirements(
                "the accepted requirements are not the ones issued".into(),
            )
            .into());
        }
        let transaction = payload.payload["transaction"].as_str().ok_or_else(|| {
            crate::error::VerifyError::Payload("payload.transaction is missing".into())
        })?;
        let payment = self
            .verify_transaction(requirements, transaction)
            .await
            .map_err(|e| RailError::Verify(e.into()))?;
        let cosigned = wire::encode_transaction(&payment.transaction).map_err(RailError::Chain)?;
        Ok(Verified {
            rail: NAME.into(),
            network: self.config.network.to_string(),
            payer: payment.payer.to_string(),
            amount: Atomic::new(u128::from(payment.amount)),
            settlement_id: outbox_id(&payment.signature),
            requirements: requirements.clone(),
            payload: json!({ "transaction": cosigned }),
        })
    }

    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let text = verified.payload["transaction"].as_str().ok_or_else(|| {
            crate::error::VerifyError::Payload("payload.transaction is missing".into())
        })?;
        let tx = wire::decode_transaction(text)
            .map_err(|e| RailError::Verify(crate::error::VerifyError::Payload(e)))?;
        let landed = self
            .submitter
            .submit(&tx, EntryKind::DirectPayment, &verified.settlement_id)
            .await?;
        Ok(Settlement {
            rail: NAME.into(),
            network: verified.network.clone(),
            settlement_id: verified.settlement_id.clone(),
            tx_hashes: vec![landed.signature.to_string()],
            payer: Some(verified.payer.clone()),
            payouts: vec![Payout {
                to: verified.requirements.pay_to.clone(),
                amount: verified.amount,
            }],
            fee_native: u128::from(wire::transaction_fee(&tx)),
            extra: None,
        })
    }

    fn pays_out(&self) -> bool {
        true
    }

    fn accepts_wallet(&self, wallet: &str) -> bool {
        Pubkey::from_str(wallet).is_ok()
    }

    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        let (task_id, from, payouts) = release.payouts(NAME)?;
        self.pay_out(task_id, from, payouts).await
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        Ok(self.submitter.outbox().get(id)?.map(|r| r.state))
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.submitter.outbox().all_in_flight()?)
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        Ok(self.submitter.reconcile().await?)
    }
}
