//! Roots and withdrawals on chain. The authority (the gateway's settlement key) signs a root over
//! the ledger's allocations ([`sign_root`]) and keeps it before anyone publishes it; anyone with a
//! fee payer, the gateway or the maintainer, publishes a kept root ([`ChannelChain::publish`]) and
//! cranks withdrawals for claimants ([`ChannelChain::withdraw`]), which pay the claimant's own
//! token account and nobody else's. Every transaction goes through the outbox first
//! ([`Submitter`]); a retry after a crash reads the chain again, so nothing is published or paid
//! twice (the program refuses an old sequence number and pays a claim only what it has not
//! withdrawn).

use std::str::FromStr;
use std::sync::Arc;

use d402_program::channel::{CLAIM_LEN, ChannelState, ClaimState, claim_address};
use d402_program::instruction::{self as ix, Signed};
use d402_program::merkle::Tree;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction::versioned::VersionedTransaction;

use super::ledger::{Ledger, LedgerError, SignedRoot};
use super::voucher::{VoucherError, signature_bytes};
use crate::solana::submit::{EntryKind, SubmitError, Submitter};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("rpc: {0}")]
    Rpc(#[from] solana_rpc_client_api::client_error::Error),
    #[error(transparent)]
    Voucher(#[from] VoucherError),
    #[error("{0} is not a d402 channel on chain")]
    NotAChannel(String),
    #[error("channel {0} is not in the ledger")]
    Unknown(String),
    #[error("channel {channel}: the payer's voucher covers {voucher}, the allocations {total}")]
    VoucherBelow {
        channel: String,
        voucher: u64,
        total: u64,
    },
    #[error("channel {channel}: no kept root has hash {root}")]
    UnknownRoot { channel: String, root: String },
    #[error("{0} is not a valid key")]
    Key(String),
}

fn key(text: &str) -> Result<Pubkey, ChannelError> {
    Pubkey::from_str(text).map_err(|_| ChannelError::Key(text.to_string()))
}

/// The authority signs a root over `channel`'s allocations in the ledger with sequence number
/// `seq`, and keeps it. `None` when nothing is allocated beyond `published` (the chain's total).
pub fn sign_root(
    ledger: &Ledger,
    authority: &Keypair,
    channel: &Pubkey,
    seq: u64,
    published: u64,
) -> Result<Option<SignedRoot>, ChannelError> {
    let name = channel.to_string();
    let record = ledger
        .channel(&name)?
        .ok_or_else(|| ChannelError::Unknown(name.clone()))?;
    let allocations = ledger.allocations(&name)?;
    let tree = Tree::new(
        allocations
            .iter()
            .map(|(w, a)| key(w).map(|k| (k, *a)))
            .collect::<Result<Vec<_>, _>>()?,
    );
    if tree.total() <= published {
        return Ok(None);
    }
    let voucher = record.voucher.ok_or_else(|| ChannelError::VoucherBelow {
        channel: name.clone(),
        voucher: 0,
        total: tree.total(),
    })?;
    if voucher.cumulative < tree.total() {
        return Err(ChannelError::VoucherBelow {
            channel: name,
            voucher: voucher.cumulative,
            total: tree.total(),
        });
    }
    let root = tree.root();
    let message = ix::root_message(channel, seq, tree.total(), &root);
    let signature: [u8; 64] = authority.sign_message(&message).into();
    let signed = SignedRoot {
        channel: name,
        seq,
        total: tree.total(),
        root: hex::encode(root),
        allocations,
        voucher,
        authority_signature: hex::encode(signature),
        signed_at_ms: d402_core::clock::now_ms(),
    };
    ledger.keep_root(&signed)?;
    Ok(Some(signed))
}

/// What publishes roots and cranks withdrawals: an RPC client, the outbox and a fee payer. Holds
/// no key that can move channel funds. Cheap to clone.
#[derive(Clone)]
pub struct ChannelChain {
    rpc: Arc<RpcClient>,
    submitter: Submitter,
    fee_payer: Arc<Keypair>,
}

impl ChannelChain {
    pub fn new(rpc: Arc<RpcClient>, submitter: Submitter, fee_payer: Arc<Keypair>) -> Self {
        ChannelChain {
            rpc,
            submitter,
            fee_payer,
        }
    }

    /// The submitter (and through it the outbox) this chain sends through.
    pub fn submitter(&self) -> &Submitter {
        &self.submitter
    }

    /// The channel's account as the chain has it.
    pub async fn state(&self, channel: &Pubkey) -> Result<ChannelState, ChannelError> {
        let data = self.rpc.get_account_data(channel).await?;
        ChannelState::parse(&data).ok_or_else(|| ChannelError::NotAChannel(channel.to_string()))
    }

    /// The chain's clock (the latest confirmed block's time): what the program's grace checks
    /// read, which may lag this machine's clock by a few seconds.
    pub async fn chain_time(&self) -> Result<i64, ChannelError> {
        let slot = self.rpc.get_slot().await?;
        Ok(self.rpc.get_block_time(slot).await?)
    }

    async fn send(
        &self,
        instructions: &[solana_instruction::Instruction],
        kind: EntryKind,
        reference: &str,
    ) -> Result<solana_signature::Signature, ChannelError> {
        let blockhash = self.rpc.get_latest_blockhash().await?;
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&self.fee_payer.pubkey()),
            &[self.fee_payer.as_ref()],
            blockhash,
        );
        let landed = self
            .submitter
            .submit(&VersionedTransaction::from(tx), kind, reference)
            .await?;
        Ok(landed.signature)
    }

    /// Sends `instructions` signed by this chain's fee payer alone (the authority's own
    /// instructions, when the fee payer is the authority), through the outbox.
    pub async fn send_signed(
        &self,
        instructions: &[solana_instruction::Instruction],
        kind: EntryKind,
        reference: &str,
    ) -> Result<solana_signature::Signature, ChannelError> {
        self.send(instructions, kind, reference).await
    }

    /// Publishes a kept root: the precompile instruction with the payer's voucher and the
    /// authority's root signature, then PublishRoot.
    pub async fn publish(
        &self,
        signed: &SignedRoot,
        payer: &Pubkey,
        authority: &Pubkey,
        vault: &Pubkey,
    ) -> Result<solana_signature::Signature, ChannelError> {
        let channel = key(&signed.channel)?;
        let root: [u8; 32] = hex::decode(&signed.root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ChannelError::Key(signed.root.clone()))?;
        let authority_signature: [u8; 64] = hex::decode(&signed.authority_signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(VoucherError::Malformed)?;
        let voucher_message = ix::voucher_message(&channel, signed.voucher.cumulative);
        let root_message = ix::root_message(&channel, signed.seq, signed.total, &root);
        let instructions = [
            ix::ed25519_instruction(&[
                Signed {
                    signer: *payer,
                    signature: signature_bytes(&signed.voucher)?,
                    message: &voucher_message,
                },
                Signed {
                    signer: *authority,
                    signature: authority_signature,
                    message: &root_message,
                },
            ]),
            ix::publish_root(
                &channel,
                vault,
                signed.seq,
                signed.total,
                signed.voucher.cumulative,
                &root,
            ),
        ];
        let reference = format!("root:{}:{}", signed.channel, signed.seq);
        self.send(&instructions, EntryKind::ChannelRoot, &reference)
            .await
    }

    /// The authority's step: signs a root over what the ledger allocated beyond the chain's last
    /// root, keeps it and publishes it. `None` when nothing new is allocated.
    pub async fn publish_due(
        &self,
        ledger: &Ledger,
        authority: &Keypair,
        channel: &Pubkey,
    ) -> Result<Option<solana_signature::Signature>, ChannelError> {
        let state = self.state(channel).await?;
        let Some(signed) = sign_root(ledger, authority, channel, state.seq + 1, state.allocated)?
        else {
            return Ok(None);
        };
        self.publish(&signed, &state.payer, &state.authority, &state.vault)
            .await
            .map(Some)
    }

    /// The final amount and proof of `claimant` under the root the chain holds for `channel`,
    /// from the kept root with that hash. `None` when the root does not name the claimant.
    fn proof_for(
        &self,
        ledger: &Ledger,
        channel: &Pubkey,
        state: &ChannelState,
        claimant: &Pubkey,
    ) -> Result<Option<(u64, d402_program::merkle::Proof)>, ChannelError> {
        let root = hex::encode(state.root);
        let signed =
            ledger
                .root(&channel.to_string(), &root)?
                .ok_or_else(|| ChannelError::UnknownRoot {
                    channel: channel.to_string(),
                    root,
                })?;
        let tree = Tree::new(
            signed
                .allocations
                .iter()
                .map(|(w, a)| key(w).map(|k| (k, *a)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(tree.proof(claimant))
    }

    /// The claim account of `claimant` in `channel`, if it exists.
    async fn claim(
        &self,
        channel: &Pubkey,
        claimant: &Pubkey,
    ) -> Result<Option<ClaimState>, ChannelError> {
        Ok(self
            .rpc
            .get_account_with_commitment(
                &claim_address(channel, claimant),
                solana_commitment_config::CommitmentConfig::confirmed(),
            )
            .await?
            .value
            .and_then(|account| ClaimState::parse(&account.data)))
    }

    /// Once the channel is closed and `claimant` withdrew its whole final amount: its claim's
    /// rent back to whoever paid it. `None` when that is not (yet) the case.
    pub async fn reclaim_claim(
        &self,
        ledger: &Ledger,
        channel: &Pubkey,
        claimant: &Pubkey,
    ) -> Result<Option<solana_signature::Signature>, ChannelError> {
        let state = self.state(channel).await?;
        if state.stage != d402_program::channel::ChannelStage::Closed {
            return Ok(None);
        }
        let Some(claim) = self.claim(channel, claimant).await? else {
            return Ok(None);
        };
        let Some((amount, proof)) = self.proof_for(ledger, channel, &state, claimant)? else {
            return Ok(None);
        };
        if claim.withdrawn < amount {
            return Ok(None);
        }
        let instructions = [ix::reclaim_claim(
            channel,
            claimant,
            &claim.rent_payer,
            amount,
            &proof,
        )];
        let reference = format!("reclaim-claim:{channel}:{claimant}");
        self.send(&instructions, EntryKind::ChannelReclaim, &reference)
            .await
            .map(Some)
    }

    /// Once the channel is closed and its vault empty: the vault's and the channel's rent back to
    /// the authority, which paid it. `None` when that is not (yet) the case.
    pub async fn reclaim_channel(
        &self,
        channel: &Pubkey,
    ) -> Result<Option<solana_signature::Signature>, ChannelError> {
        let Ok(state) = self.state(channel).await else {
            return Ok(None);
        };
        if state.stage != d402_program::channel::ChannelStage::Closed {
            return Ok(None);
        }
        let vault = self.rpc.get_token_account_balance(&state.vault).await?;
        if vault.amount != "0" {
            return Ok(None);
        }
        let instructions = [ix::reclaim_channel(channel, &state.vault, &state.authority)];
        let reference = format!("reclaim-channel:{channel}");
        self.send(&instructions, EntryKind::ChannelReclaim, &reference)
            .await
            .map(Some)
    }

    /// Pays `claimant` what the chain's current root allocates it beyond what it withdrew, into
    /// its associated token account (created if missing). The proof comes from the kept root
    /// whose hash the chain holds. `None` when nothing is due.
    pub async fn withdraw(
        &self,
        ledger: &Ledger,
        channel: &Pubkey,
        claimant: &Pubkey,
    ) -> Result<Option<solana_signature::Signature>, ChannelError> {
        let state = self.state(channel).await?;
        if state.seq == 0 {
            return Ok(None);
        }
        let Some((amount, proof)) = self.proof_for(ledger, channel, &state, claimant)? else {
            return Ok(None);
        };
        let withdrawn = self
            .claim(channel, claimant)
            .await?
            .map_or(0, |c| c.withdrawn);
        if withdrawn >= amount {
            return Ok(None);
        }
        let rent = self
            .rpc
            .get_minimum_balance_for_rent_exemption(CLAIM_LEN)
            .await?;
        let destination =
            spl_associated_token_account_interface::address::get_associated_token_address(
                claimant,
                &state.mint,
            );
        let instructions = [
            spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
                &self.fee_payer.pubkey(),
                claimant,
                &state.mint,
                &d402_program::TOKEN_PROGRAM,
            ),
            ix::withdraw(
                channel,
                &state.vault,
                claimant,
                &destination,
                &self.fee_payer.pubkey(),
                amount,
                rent,
                &proof,
            ),
        ];
        let reference = format!("withdraw:{channel}:{claimant}:{amount}");
        self.send(&instructions, EntryKind::ChannelWithdrawal, &reference)
            .await
            .map(Some)
    }
}
