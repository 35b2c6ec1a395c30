//! `solana-task-escrow`: a task's money held so that no single key can move it.
//!
//! Without a custom program (Anza's SBF toolchain cannot be installed here; see the module doc of
//! [`super`]), the escrow is built from the SPL Token program alone:
//!
//! - a **multisig** account (SPL Token `Multisig`, 2 of 3: buyer, validator, finalizer), created once
//!   per buyer at an address derived from the buyer and the two role keys;
//! - a **vault** token account per task, owned by that multisig, at an address derived from the
//!   buyer and a hash of the task's terms (worker, creator, gateway, amount, commission, fee,
//!   deadline). The money is bound to the terms: anyone can re-derive the vault from them, and a
//!   front-runner cannot move the funding to other terms because the buyer's signature covers the
//!   exact vault address.
//!
//! Who can move the vault (any two of the three multisig signers):
//! - **settle** = validator + finalizer: the split to worker, creator and gateway ATAs, then the
//!   vault is closed and its rent returned to the buyer. The validator role's signature is always
//!   needed (the buyer would not sign a payout); the gateway's key is never a signer.
//! - **refund** = buyer + finalizer: the whole amount back to the buyer, vault closed. The finalizer
//!   co-signs only after the deadline (checked against the chain's clock). The gateway's key is never
//!   needed; the buyer pays the fee.
//! - validator + buyer could also move it (a cooperative settlement); no single key can.
//!
//! Both settle and refund close the vault, so whichever lands second fails on chain: the vault no
//! longer exists. The deadline is enforced by the finalizer's policy, not by the chain: that is the
//! limit of an SPL-multisig escrow, and what an sBPF escrow program would add.

use std::str::FromStr;
use std::sync::Arc;

use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_message::{VersionedMessage, v0};
use solana_program_pack::Pack;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_sha256_hasher::hashv;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent;
use spl_token_interface::instruction as token_ix;
use spl_token_interface::state::{Account as TokenAccount, Multisig};

use super::submit::{EntryKind, Landed, SubmitError, Submitter};
use super::{TOKEN_PROGRAM_ID, wire};
use crate::amount::Atomic;
use crate::split::{GatewayFee, Split, SplitError, SplitTerms};

/// The rail's name, as the gateway advertises it and the outbox records it.
pub const NAME: &str = "solana-task-escrow";

/// The multisig threshold: any two of buyer, validator, finalizer.
pub const MULTISIG_THRESHOLD: u8 = 2;

/// The terms a task is funded under. Hashed into the vault address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowTerms {
    /// The task's unique id (the settlement book's reference).
    pub task_id: String,
    pub buyer: Pubkey,
    pub worker: Pubkey,
    /// The capability creator's wallet (receives the commission).
    pub creator: Pubkey,
    /// The gateway's fee wallet.
    pub gateway: Pubkey,
    /// Gross amount in atomic units.
    pub amount: u64,
    pub creator_commission_bps: u16,
    pub gateway_fee_bps: u16,
    /// Unix seconds after which the buyer may be refunded.
    pub deadline: i64,
}

/// The split in SPL amounts (u64), from the core split rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSplit {
    pub worker: u64,
    pub creator: u64,
    pub gateway: u64,
}

impl EscrowTerms {
    /// The split these terms pay on settlement: the core rule ([`Split::compute`]): commission and
    /// fee rounded down, every remainder to the worker.
    pub fn split(&self) -> Result<TokenSplit, EscrowError> {
        let split = Split::compute(
            Atomic::new(u128::from(self.amount)),
            &SplitTerms {
                creator_bps: self.creator_commission_bps,
                gateway_fee: GatewayFee::Bps(self.gateway_fee_bps),
            },
        )?;
        // Each part is at most the gross, which is a u64.
        let part = |a: Atomic| u64::try_from(a.get()).map_err(|_| SplitError::Overflow(a));
        Ok(TokenSplit {
            worker: part(split.worker)?,
            creator: part(split.creator)?,
            gateway: part(split.gateway)?,
        })
    }

    /// A digest of every term, so the vault address commits to all of them.
    fn digest(&self) -> Hash {
        hashv(&[
            b"d402-solana-task-escrow-v1",
            self.task_id.as_bytes(),
            &[0],
            self.buyer.as_ref(),
            self.worker.as_ref(),
            self.creator.as_ref(),
            self.gateway.as_ref(),
            &self.amount.to_le_bytes(),
            &self.creator_commission_bps.to_le_bytes(),
            &self.gateway_fee_bps.to_le_bytes(),
            &self.deadline.to_le_bytes(),
        ])
    }
}

/// The two role keys every escrow multisig includes besides the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowRoles {
    /// Signs settlements (in the validator process, never the gateway's).
    pub validator: Pubkey,
    /// Co-signs settlements and, after the deadline, refunds; pays settlement fees.
    pub finalizer: Pubkey,
}

/// Where a task's escrow lives on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowAddresses {
    pub multisig: Pubkey,
    pub multisig_seed: [u8; 24],
    pub vault: Pubkey,
    pub vault_seed: [u8; 24],
}

fn seed_str(seed: &[u8; 24]) -> &str {
    // Seeds are lowercase hex, so always valid UTF-8.
    std::str::from_utf8(seed).unwrap_or("")
}

fn hex_seed(prefix: u8, hash: &Hash) -> [u8; 24] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 24];
    out[0] = prefix;
    for (i, slot) in out.iter_mut().enumerate().skip(1) {
        let byte = hash.as_ref()[i / 2];
        *slot = HEX[usize::from(if i % 2 == 0 { byte >> 4 } else { byte & 0xf })];
    }
    out
}

impl EscrowAddresses {
    /// Derives the multisig and vault addresses (`create_with_seed`, base = buyer).
    pub fn derive(terms: &EscrowTerms, roles: &EscrowRoles) -> Result<Self, EscrowError> {
        let multisig_seed = hex_seed(
            b'm',
            &hashv(&[roles.validator.as_ref(), roles.finalizer.as_ref()]),
        );
        let vault_seed = hex_seed(b'v', &terms.digest());
        let derive = |seed: &[u8; 24]| {
            Pubkey::create_with_seed(&terms.buyer, seed_str(seed), &TOKEN_PROGRAM_ID)
                .map_err(|e| EscrowError::Derive(e.to_string()))
        };
        Ok(Self {
            multisig: derive(&multisig_seed)?,
            multisig_seed,
            vault: derive(&vault_seed)?,
            vault_seed,
        })
    }
}

/// Why an escrow step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("split: {0}")]
    Split(#[from] SplitError),
    #[error("address derivation: {0}")]
    Derive(String),
    #[error("instruction: {0}")]
    Instruction(String),
    #[error("the funding transaction could not be decoded: {0}")]
    Decode(String),
    /// The funding transaction is not exactly the one these terms call for.
    #[error("the funding transaction does not match the task's terms")]
    FundingMismatch,
    #[error("the settlement transaction does not match the task's terms")]
    SettlementMismatch,
    #[error("signature {0} is missing or does not verify")]
    InvalidSignature(usize),
    #[error("simulation failed: {0}")]
    Simulation(String),
    /// The finalizer co-signs a refund only once the chain's clock has passed the deadline.
    #[error("the deadline {deadline} has not passed (chain time {now})")]
    BeforeDeadline { deadline: i64, now: i64 },
    #[error("rpc: {0}")]
    Rpc(#[from] solana_rpc_client_api::client_error::Error),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Chain-wide escrow settings.
#[derive(Debug, Clone)]
pub struct EscrowConfig {
    pub mint: Pubkey,
    pub decimals: u8,
    pub roles: EscrowRoles,
    /// Compute budget the funding transaction must state (the gateway pays its fee).
    pub compute_unit_limit: u32,
    pub compute_unit_price: u64,
}

impl EscrowConfig {
    pub fn new(mint: Pubkey, decimals: u8, roles: EscrowRoles) -> Self {
        Self {
            mint,
            decimals,
            roles,
            compute_unit_limit: 60_000,
            compute_unit_price: 0,
        }
    }
}

/// The escrow rail. The gateway uses [`TaskEscrow::accept_funding`]; the validator
/// [`approve_settlement`]; the finalizer [`TaskEscrow::finalize_settlement`] and
/// [`TaskEscrow::cosign_refund`]; the buyer [`funding_transaction`] and [`refund_transaction`].
pub struct TaskEscrow {
    config: EscrowConfig,
    submitter: Submitter,
}

impl TaskEscrow {
    pub fn new(config: EscrowConfig, submitter: Submitter) -> Self {
        Self { config, submitter }
    }

    pub fn config(&self) -> &EscrowConfig {
        &self.config
    }

    fn rpc(&self) -> &RpcClient {
        self.submitter.rpc()
    }

    /// Whether the buyer's multisig already exists (then funding skips creating it).
    pub async fn multisig_exists(&self, terms: &EscrowTerms) -> Result<bool, EscrowError> {
        let addresses = EscrowAddresses::derive(terms, &self.config.roles)?;
        Ok(self
            .rpc()
            .get_account_with_commitment(&addresses.multisig, CommitmentConfig::confirmed())
            .await?
            .value
            .is_some())
    }

    /// The rent-exempt minimums of a multisig and a token account, which the funding states.
    pub async fn rents(&self) -> Result<Rents, EscrowError> {
        Ok(Rents {
            multisig: self
                .rpc()
                .get_minimum_balance_for_rent_exemption(Multisig::LEN)
                .await?,
            vault: self
                .rpc()
                .get_minimum_balance_for_rent_exemption(TokenAccount::LEN)
                .await?,
        })
    }

    /// Gateway: checks the buyer's partially signed funding transaction (base64) against the
    /// terms, co-signs it as fee payer, simulates and sends it through the settlement book.
    ///
    /// The check is exact: the message must equal the one [`funding_transaction`] builds for these
    /// terms (with or without creating the multisig), so nothing but the funding can ride along on
    /// the gateway's fee-payer signature.
    pub async fn accept_funding(
        &self,
        terms: &EscrowTerms,
        transaction: &str,
        gateway: &Keypair,
    ) -> Result<Landed, EscrowError> {
        let mut tx = wire::decode_transaction(transaction).map_err(EscrowError::Decode)?;
        let rents = self.rents().await?;
        let blockhash = *tx.message.recent_blockhash();
        let matches = |with_multisig: bool| -> Result<bool, EscrowError> {
            let ixs = funding_instructions(terms, &self.config, rents, with_multisig)?;
            let expected = compile(&gateway.pubkey(), &ixs, blockhash)?;
            Ok(expected.serialize() == tx.message.serialize())
        };
        if !(matches(false)? || matches(true)?) {
            return Err(EscrowError::FundingMismatch);
        }
        let valid = tx.verify_with_results();
        if let Some(bad) = valid.iter().skip(1).position(|ok| !ok) {
            return Err(EscrowError::InvalidSignature(bad + 1));
        }
        tx.signatures[0] = gateway.sign_message(&tx.message.serialize());
        if let Some(err) = super::simulate(self.rpc(), &tx).await? {
            return Err(EscrowError::Simulation(err));
        }
        Ok(self
            .submitter
            .submit(&tx, EntryKind::EscrowFunding, &terms.task_id)
            .await?)
    }

    /// Finalizer: checks a settlement the validator approved (see [`approve_settlement`]) against
    /// the terms, adds the finalizer's signature and sends it through the settlement book.
    pub async fn finalize_settlement(
        &self,
        terms: &EscrowTerms,
        approved: VersionedTransaction,
        finalizer: &Keypair,
    ) -> Result<Landed, EscrowError> {
        let tx = self.cosign_settlement(terms, approved, finalizer)?;
        Ok(self
            .submitter
            .submit(&tx, EntryKind::EscrowSettlement, &terms.task_id)
            .await?)
    }

    /// The finalizer's half of [`TaskEscrow::finalize_settlement`] without sending: checks and
    /// signs. Split out so that a test can send and "crash" before the outcome is recorded.
    pub fn cosign_settlement(
        &self,
        terms: &EscrowTerms,
        mut approved: VersionedTransaction,
        finalizer: &Keypair,
    ) -> Result<VersionedTransaction, EscrowError> {
        let ixs = settlement_instructions(terms, &self.config)?;
        let expected = compile(
            &finalizer.pubkey(),
            &ixs,
            *approved.message.recent_blockhash(),
        )?;
        if expected.serialize() != approved.message.serialize() {
            return Err(EscrowError::SettlementMismatch);
        }
        sign_at(&mut approved, finalizer)?;
        let valid = approved.verify_with_results();
        if let Some(bad) = valid.iter().position(|ok| !ok) {
            return Err(EscrowError::InvalidSignature(bad));
        }
        Ok(approved)
    }

    /// The settlement submitter, for crash tests and reconciliation.
    pub fn submitter(&self) -> &Submitter {
        &self.submitter
    }

    /// Finalizer: co-signs the buyer's refund once the chain's clock has passed the deadline, then
    /// sends it through the settlement book. The gateway's key is not involved.
    pub async fn cosign_refund(
        &self,
        terms: &EscrowTerms,
        mut refund: VersionedTransaction,
        finalizer: &Keypair,
    ) -> Result<Landed, EscrowError> {
        let now = self.chain_time().await?;
        if now <= terms.deadline {
            return Err(EscrowError::BeforeDeadline {
                deadline: terms.deadline,
                now,
            });
        }
        let ixs = refund_instructions(terms, &self.config)?;
        let expected = compile(&terms.buyer, &ixs, *refund.message.recent_blockhash())?;
        if expected.serialize() != refund.message.serialize() {
            return Err(EscrowError::SettlementMismatch);
        }
        sign_at(&mut refund, finalizer)?;
        let valid = refund.verify_with_results();
        if let Some(bad) = valid.iter().position(|ok| !ok) {
            return Err(EscrowError::InvalidSignature(bad));
        }
        Ok(self
            .submitter
            .submit(&refund, EntryKind::EscrowRefund, &terms.task_id)
            .await?)
    }

    /// The chain's clock (block time of the latest confirmed slot), in unix seconds.
    pub async fn chain_time(&self) -> Result<i64, EscrowError> {
        let slot = self
            .rpc()
            .get_slot_with_commitment(CommitmentConfig::confirmed())
            .await?;
        Ok(self.rpc().get_block_time(slot).await?)
    }

    /// The vault's balance, or `None` once it is closed (or before it is funded).
    pub async fn vault_balance(&self, terms: &EscrowTerms) -> Result<Option<u64>, EscrowError> {
        let addresses = EscrowAddresses::derive(terms, &self.config.roles)?;
        let account = self
            .rpc()
            .get_account_with_commitment(&addresses.vault, CommitmentConfig::confirmed())
            .await?
            .value;
        Ok(account
            .filter(|a| a.owner == TOKEN_PROGRAM_ID)
            .and_then(|a| TokenAccount::unpack(&a.data).ok())
            .map(|a| a.amount))
    }
}

/// Rent-exempt minimums, in lamports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rents {
    pub multisig: u64,
    pub vault: u64,
}

fn ix_err(e: impl std::fmt::Display) -> EscrowError {
    EscrowError::Instruction(e.to_string())
}

fn compile(
    fee_payer: &Pubkey,
    instructions: &[Instruction],
    blockhash: Hash,
) -> Result<VersionedMessage, EscrowError> {
    Ok(VersionedMessage::V0(
        v0::Message::try_compile(fee_payer, instructions, &[], blockhash).map_err(ix_err)?,
    ))
}

/// Adds `signer`'s signature at its place in the message's signer list.
fn sign_at(tx: &mut VersionedTransaction, signer: &Keypair) -> Result<(), EscrowError> {
    let required = usize::from(tx.message.header().num_required_signatures);
    if tx.signatures.len() != required {
        tx.signatures.resize(required, Signature::default());
    }
    let position = tx.message.static_account_keys()[..required]
        .iter()
        .position(|k| *k == signer.pubkey())
        .ok_or_else(|| {
            ix_err(format!(
                "{} does not sign this transaction",
                signer.pubkey()
            ))
        })?;
    tx.signatures[position] = signer.sign_message(&tx.message.serialize());
    Ok(())
}

/// The instructions of a task's funding, paid by `buyer`'s signature (rent) and moved from the
/// buyer's ATA into the vault. `with_multisig` creates the buyer's multisig first.
pub fn funding_instructions(
    terms: &EscrowTerms,
    config: &EscrowConfig,
    rents: Rents,
    with_multisig: bool,
) -> Result<Vec<Instruction>, EscrowError> {
    let a = EscrowAddresses::derive(terms, &config.roles)?;
    let mut ixs = vec![
        solana_compute_budget_interface::ComputeBudgetInstruction::set_compute_unit_limit(
            config.compute_unit_limit,
        ),
        solana_compute_budget_interface::ComputeBudgetInstruction::set_compute_unit_price(
            config.compute_unit_price,
        ),
    ];
    // An account the buyer creates at an address derived from its key and a seed, owned by the
    // token program.
    let seeded = |address: &Pubkey, seed: &[u8; 24], lamports: u64, len: usize| {
        solana_system_interface::instruction::create_account_with_seed(
            &terms.buyer,
            address,
            &terms.buyer,
            seed_str(seed),
            lamports,
            len as u64,
            &TOKEN_PROGRAM_ID,
        )
    };
    if with_multisig {
        ixs.push(seeded(
            &a.multisig,
            &a.multisig_seed,
            rents.multisig,
            Multisig::LEN,
        ));
        ixs.push(
            token_ix::initialize_multisig2(
                &TOKEN_PROGRAM_ID,
                &a.multisig,
                &[
                    &terms.buyer,
                    &config.roles.validator,
                    &config.roles.finalizer,
                ],
                MULTISIG_THRESHOLD,
            )
            .map_err(ix_err)?,
        );
    }
    ixs.push(seeded(
        &a.vault,
        &a.vault_seed,
        rents.vault,
        TokenAccount::LEN,
    ));
    ixs.push(
        token_ix::initialize_account3(&TOKEN_PROGRAM_ID, &a.vault, &config.mint, &a.multisig)
            .map_err(ix_err)?,
    );
    ixs.push(
        token_ix::transfer_checked(
            &TOKEN_PROGRAM_ID,
            &get_associated_token_address(&terms.buyer, &config.mint),
            &config.mint,
            &a.vault,
            &terms.buyer,
            &[],
            terms.amount,
            config.decimals,
        )
        .map_err(ix_err)?,
    );
    Ok(ixs)
}

/// Buyer: the funding transaction (base64), signed by the buyer, with the gateway as fee payer.
pub fn funding_transaction(
    terms: &EscrowTerms,
    config: &EscrowConfig,
    rents: Rents,
    with_multisig: bool,
    gateway_fee_payer: &Pubkey,
    buyer: &Keypair,
    blockhash: Hash,
) -> Result<String, EscrowError> {
    let ixs = funding_instructions(terms, config, rents, with_multisig)?;
    let message = compile(gateway_fee_payer, &ixs, blockhash)?;
    let required = usize::from(message.header().num_required_signatures);
    let mut tx = VersionedTransaction {
        signatures: vec![Signature::default(); required],
        message,
    };
    sign_at(&mut tx, buyer)?;
    wire::encode_transaction(&tx).map_err(EscrowError::Decode)
}

/// The settlement's instructions: create the payees' ATAs if missing (paid by the finalizer), pay
/// the split out of the vault (validator + finalizer sign for the multisig), close the vault with
/// its rent back to the buyer.
pub fn settlement_instructions(
    terms: &EscrowTerms,
    config: &EscrowConfig,
) -> Result<Vec<Instruction>, EscrowError> {
    let a = EscrowAddresses::derive(terms, &config.roles)?;
    let split = terms.split()?;
    let signers = [&config.roles.validator, &config.roles.finalizer];
    let mut ixs = Vec::new();
    for (payee, amount) in [
        (terms.worker, split.worker),
        (terms.creator, split.creator),
        (terms.gateway, split.gateway),
    ] {
        if amount == 0 {
            continue;
        }
        ixs.push(create_associated_token_account_idempotent(
            &config.roles.finalizer,
            &payee,
            &config.mint,
            &TOKEN_PROGRAM_ID,
        ));
        ixs.push(
            token_ix::transfer_checked(
                &TOKEN_PROGRAM_ID,
                &a.vault,
                &config.mint,
                &get_associated_token_address(&payee, &config.mint),
                &a.multisig,
                &signers,
                amount,
                config.decimals,
            )
            .map_err(ix_err)?,
        );
    }
    ixs.push(
        token_ix::close_account(
            &TOKEN_PROGRAM_ID,
            &a.vault,
            &terms.buyer,
            &a.multisig,
            &signers,
        )
        .map_err(ix_err)?,
    );
    Ok(ixs)
}

/// Validator: builds the settlement for `terms` with the finalizer as fee payer and signs it with
/// the validator key. The finalizer checks and completes it.
pub fn approve_settlement(
    terms: &EscrowTerms,
    config: &EscrowConfig,
    validator: &Keypair,
    blockhash: Hash,
) -> Result<VersionedTransaction, EscrowError> {
    let ixs = settlement_instructions(terms, config)?;
    let message = compile(&config.roles.finalizer, &ixs, blockhash)?;
    let required = usize::from(message.header().num_required_signatures);
    let mut tx = VersionedTransaction {
        signatures: vec![Signature::default(); required],
        message,
    };
    sign_at(&mut tx, validator)?;
    Ok(tx)
}

/// The refund's instructions: everything back to the buyer's ATA, vault closed (buyer + finalizer
/// sign for the multisig).
pub fn refund_instructions(
    terms: &EscrowTerms,
    config: &EscrowConfig,
) -> Result<Vec<Instruction>, EscrowError> {
    let a = EscrowAddresses::derive(terms, &config.roles)?;
    let signers = [&terms.buyer, &config.roles.finalizer];
    Ok(vec![
        token_ix::transfer_checked(
            &TOKEN_PROGRAM_ID,
            &a.vault,
            &config.mint,
            &get_associated_token_address(&terms.buyer, &config.mint),
            &a.multisig,
            &signers,
            terms.amount,
            config.decimals,
        )
        .map_err(ix_err)?,
        token_ix::close_account(
            &TOKEN_PROGRAM_ID,
            &a.vault,
            &terms.buyer,
            &a.multisig,
            &signers,
        )
        .map_err(ix_err)?,
    ])
}

/// Buyer: the refund transaction, paid and signed by the buyer; the finalizer adds its signature.
pub fn refund_transaction(
    terms: &EscrowTerms,
    config: &EscrowConfig,
    buyer: &Keypair,
    blockhash: Hash,
) -> Result<VersionedTransaction, EscrowError> {
    let ixs = refund_instructions(terms, config)?;
    let message = compile(&terms.buyer, &ixs, blockhash)?;
    let required = usize::from(message.header().num_required_signatures);
    let mut tx = VersionedTransaction {
        signatures: vec![Signature::default(); required],
        message,
    };
    sign_at(&mut tx, buyer)?;
    Ok(tx)
}

/// Parses a base58 address, for callers that hold terms as text.
pub fn parse_pubkey(text: &str) -> Result<Pubkey, EscrowError> {
    Pubkey::from_str(text).map_err(|e| EscrowError::Derive(format!("{text}: {e}")))
}

/// Shared handle type for callers that keep one escrow rail per process.
pub type SharedTaskEscrow = Arc<TaskEscrow>;

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(amount: u64, creator_commission_bps: u16, gateway_fee_bps: u16) -> EscrowTerms {
        EscrowTerms {
            task_id: "t".into(),
            buyer: Pubkey::new_unique(),
            worker: Pubkey::new_unique(),
            creator: Pubkey::new_unique(),
            gateway: Pubkey::new_unique(),
            amount,
            creator_commission_bps,
            gateway_fee_bps,
            deadline: 0,
        }
    }

    #[test]
    fn split_sums_to_gross_and_floors_the_commission() {
        let s = terms(1_000_003, 1_500, 250).split().expect("valid rates");
        assert_eq!(s.creator, 150_000);
        assert_eq!(s.gateway, 25_000);
        assert_eq!(s.worker + s.creator + s.gateway, 1_000_003);
        assert!(terms(10, 10_001, 0).split().is_err());
        assert!(terms(10, 9_000, 1_001).split().is_ok_and(|s| s.worker == 0));
        let all = terms(u64::MAX, 10_000, 0).split().expect("valid");
        assert_eq!(all.creator, u64::MAX);
        assert_eq!(all.worker, 0);
    }

    #[test]
    fn vault_address_commits_to_every_term() {
        let roles = EscrowRoles {
            validator: Pubkey::new_unique(),
            finalizer: Pubkey::new_unique(),
        };
        let terms = EscrowTerms {
            task_id: "t1".into(),
            buyer: Pubkey::new_unique(),
            worker: Pubkey::new_unique(),
            creator: Pubkey::new_unique(),
            gateway: Pubkey::new_unique(),
            amount: 1_000_000,
            creator_commission_bps: 1_000,
            gateway_fee_bps: 200,
            deadline: 1_800_000_000,
        };
        let a = EscrowAddresses::derive(&terms, &roles).expect("derive");
        let mut other = terms.clone();
        other.worker = Pubkey::new_unique();
        let b = EscrowAddresses::derive(&other, &roles).expect("derive");
        assert_ne!(a.vault, b.vault);
        assert_eq!(a.multisig, b.multisig);
        assert!(std::str::from_utf8(&a.vault_seed).is_ok());
    }
}
