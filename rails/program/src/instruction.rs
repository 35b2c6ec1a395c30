//! The program's instructions and the messages its signers sign (layouts in `README.md`).
//!
//! Instruction data is 8-byte aligned: a tag byte, then fields at multiples of 8.

use solana_instruction::{AccountMeta, Instruction};
use solana_pubkey::Pubkey;

use crate::channel::{claim_address, vault_authority};
use crate::merkle::Proof;
use crate::{ED25519_PROGRAM, ID, INSTRUCTIONS_SYSVAR, SYSTEM_PROGRAM, TOKEN_PROGRAM};

/// A payer's voucher: "d402vch1" || channel || cumulative amount (u64 LE), 48 bytes.
pub fn voucher_message(channel: &Pubkey, cumulative: u64) -> [u8; 48] {
    let mut m = [0u8; 48];
    m[..8].copy_from_slice(b"d402vch1");
    m[8..40].copy_from_slice(channel.as_ref());
    m[40..].copy_from_slice(&cumulative.to_le_bytes());
    m
}

/// An authority's root: "d402root" || channel || seq || total || root, 88 bytes.
pub fn root_message(channel: &Pubkey, seq: u64, total: u64, root: &[u8; 32]) -> [u8; 88] {
    let mut m = [0u8; 88];
    m[..8].copy_from_slice(b"d402root");
    m[8..40].copy_from_slice(channel.as_ref());
    m[40..48].copy_from_slice(&seq.to_le_bytes());
    m[48..56].copy_from_slice(&total.to_le_bytes());
    m[56..].copy_from_slice(root);
    m
}

/// One signature for the Ed25519 precompile.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub signer: Pubkey,
    pub signature: [u8; 64],
    pub message: &'a [u8],
}

/// The Ed25519 precompile instruction checking `signatures`, all data inside itself (instruction
/// index `u16::MAX` in every offset, which the program requires).
pub fn ed25519_instruction(signatures: &[Signed<'_>]) -> Instruction {
    const HEADER: usize = 2;
    const OFFSETS: usize = 14;
    let mut data = vec![0u8; HEADER + OFFSETS * signatures.len()];
    data[0] = signatures.len() as u8;
    for (i, s) in signatures.iter().enumerate() {
        let pk = data.len();
        data.extend_from_slice(s.signer.as_ref());
        let sig = data.len();
        data.extend_from_slice(&s.signature);
        let msg = data.len();
        data.extend_from_slice(s.message);
        let fields = [
            sig as u16,
            u16::MAX,
            pk as u16,
            u16::MAX,
            msg as u16,
            s.message.len() as u16,
            u16::MAX,
        ];
        let at = HEADER + OFFSETS * i;
        for (j, f) in fields.iter().enumerate() {
            data[at + 2 * j..at + 2 * j + 2].copy_from_slice(&f.to_le_bytes());
        }
    }
    Instruction {
        program_id: ED25519_PROGRAM,
        accounts: Vec::new(),
        data,
    }
}

/// 0 Open: records the channel in `channel` (a 256-byte account of this program the payer
/// created in the same transaction), whose vault is `vault` (a token account of `mint` owned by
/// [`vault_authority`]). Fund the vault with a token transfer in the same transaction; a
/// transfer into it later is a top-up.
pub fn open(
    channel: &Pubkey,
    payer: &Pubkey,
    vault: &Pubkey,
    authority: &Pubkey,
    maintainer: &Pubkey,
    mint: &Pubkey,
    grace_secs: u64,
) -> Instruction {
    let (_, bump) = vault_authority(channel);
    let mut data = vec![0u8; 16];
    data[1] = bump;
    data[8..16].copy_from_slice(&grace_secs.to_le_bytes());
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new_readonly(*payer, true),
            AccountMeta::new_readonly(*vault, false),
            AccountMeta::new_readonly(*authority, false),
            AccountMeta::new_readonly(*maintainer, false),
            AccountMeta::new_readonly(*mint, false),
        ],
        data,
    }
}

/// 1 PublishRoot: must follow the [`ed25519_instruction`] carrying the payer's
/// [`voucher_message`] for `voucher` and the authority's [`root_message`] for (`seq`, `total`,
/// `root`), in that order.
pub fn publish_root(
    channel: &Pubkey,
    vault: &Pubkey,
    seq: u64,
    total: u64,
    voucher: u64,
    root: &[u8; 32],
) -> Instruction {
    let mut data = vec![0u8; 64];
    data[0] = 1;
    data[8..16].copy_from_slice(&seq.to_le_bytes());
    data[16..24].copy_from_slice(&total.to_le_bytes());
    data[24..32].copy_from_slice(&voucher.to_le_bytes());
    data[32..64].copy_from_slice(root);
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new_readonly(*vault, false),
            AccountMeta::new_readonly(INSTRUCTIONS_SYSVAR, false),
        ],
        data,
    }
}

fn proof_data(tag: u8, amount: u64, claim_rent: u64, proof: &Proof) -> Vec<u8> {
    let mut data = vec![0u8; 24];
    data[0] = tag;
    data[2] = proof.nodes.len() as u8;
    data[4..8].copy_from_slice(&proof.left.to_le_bytes());
    data[8..16].copy_from_slice(&amount.to_le_bytes());
    data[16..24].copy_from_slice(&claim_rent.to_le_bytes());
    for node in &proof.nodes {
        data.extend_from_slice(node);
    }
    data
}

/// 2 Withdraw: pays `destination` (a token account of the channel's mint whose owner is the
/// claimant) the claimant's cumulative `amount` under the current root, minus what it withdrew.
/// `fee_payer` pays the claim account's rent the first time, `claim_rent` lamports (the cluster's
/// minimum balance for [`crate::channel::CLAIM_LEN`] bytes; the runtime refuses less), and gets
/// it back at reclaim.
#[allow(clippy::too_many_arguments)]
pub fn withdraw(
    channel: &Pubkey,
    vault: &Pubkey,
    claimant: &Pubkey,
    destination: &Pubkey,
    fee_payer: &Pubkey,
    amount: u64,
    claim_rent: u64,
    proof: &Proof,
) -> Instruction {
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new(*vault, false),
            AccountMeta::new(claim_address(channel, claimant), false),
            AccountMeta::new(*destination, false),
            AccountMeta::new(*fee_payer, true),
            AccountMeta::new_readonly(vault_authority(channel).0, false),
            AccountMeta::new_readonly(TOKEN_PROGRAM, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
        ],
        data: proof_data(2, amount, claim_rent, proof),
    }
}

/// 3 RequestClose, signed by the payer or the authority: starts the grace period.
pub fn request_close(channel: &Pubkey, signer: &Pubkey) -> Instruction {
    let mut data = vec![0u8; 8];
    data[0] = 3;
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new_readonly(*signer, true),
        ],
        data,
    }
}

/// 4 Close, after the grace period: what no root allocated goes to `payer_token` (the payer's
/// token account of the mint). Anyone may send it.
pub fn close(channel: &Pubkey, vault: &Pubkey, payer_token: &Pubkey) -> Instruction {
    let mut data = vec![0u8; 8];
    data[0] = 4;
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new(*vault, false),
            AccountMeta::new(*payer_token, false),
            AccountMeta::new_readonly(vault_authority(channel).0, false),
            AccountMeta::new_readonly(TOKEN_PROGRAM, false),
        ],
        data,
    }
}

/// 5 ReclaimClaim, once closed: the claim's rent back to whoever paid it, given a proof that the
/// claimant withdrew its whole final `amount`.
pub fn reclaim_claim(
    channel: &Pubkey,
    claimant: &Pubkey,
    rent_payer: &Pubkey,
    amount: u64,
    proof: &Proof,
) -> Instruction {
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new(claim_address(channel, claimant), false),
            AccountMeta::new(*rent_payer, false),
        ],
        data: proof_data(5, amount, 0, proof),
    }
}

/// 6 ReclaimChannel, once closed and the vault empty: the vault's and the channel's rent to the
/// authority's wallet (whose fee payer funded them at the opening).
pub fn reclaim_channel(channel: &Pubkey, vault: &Pubkey, authority: &Pubkey) -> Instruction {
    let mut data = vec![0u8; 8];
    data[0] = 6;
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*channel, false),
            AccountMeta::new(*vault, false),
            AccountMeta::new(*authority, false),
            AccountMeta::new_readonly(vault_authority(channel).0, false),
            AccountMeta::new_readonly(TOKEN_PROGRAM, false),
        ],
        data,
    }
}

/// The validator's release: "d402rel1" || escrow || each worker token account, in the order the
/// release pays them.
pub fn release_message(escrow: &Pubkey, worker_tokens: &[Pubkey]) -> Vec<u8> {
    let mut m = Vec::with_capacity(40 + 32 * worker_tokens.len());
    m.extend_from_slice(b"d402rel1");
    m.extend_from_slice(escrow.as_ref());
    for w in worker_tokens {
        m.extend_from_slice(w.as_ref());
    }
    m
}

/// A task escrow's terms as [`escrow_open`] records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowOpen {
    pub escrow: Pubkey,
    pub buyer: Pubkey,
    pub vault: Pubkey,
    pub validator: Pubkey,
    pub mint: Pubkey,
    /// The creator's token account of the mint.
    pub creator_token: Pubkey,
    /// The gateway's token account of the mint.
    pub gateway_token: Pubkey,
    /// Funds the escrow's and the vault's rent and gets it back.
    pub rent_payer: Pubkey,
    pub deadline: i64,
    pub amount: u64,
    pub creator_amount: u64,
    pub gateway_amount: u64,
}

/// 7 EscrowOpen: records a task escrow in `escrow` (an [`crate::escrow::ESCROW_LEN`]-byte
/// account of this program created in the same transaction) over `vault` (a token account of the
/// mint owned by [`vault_authority`] of the escrow, funded earlier in the same transaction).
pub fn escrow_open(o: &EscrowOpen) -> Instruction {
    let (_, bump) = vault_authority(&o.escrow);
    let mut data = vec![0u8; 40];
    data[0] = 7;
    data[1] = bump;
    data[8..16].copy_from_slice(&o.deadline.to_le_bytes());
    data[16..24].copy_from_slice(&o.amount.to_le_bytes());
    data[24..32].copy_from_slice(&o.creator_amount.to_le_bytes());
    data[32..40].copy_from_slice(&o.gateway_amount.to_le_bytes());
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(o.escrow, false),
            AccountMeta::new_readonly(o.buyer, true),
            AccountMeta::new_readonly(o.vault, false),
            AccountMeta::new_readonly(o.validator, false),
            AccountMeta::new_readonly(o.mint, false),
            AccountMeta::new_readonly(o.creator_token, false),
            AccountMeta::new_readonly(o.gateway_token, false),
            AccountMeta::new(o.rent_payer, true),
        ],
        data,
    }
}

/// 8 EscrowRelease: must follow the [`ed25519_instruction`] carrying the validator's
/// [`release_message`] for these `worker_tokens` (1 to [`crate::escrow::MAX_RELEASE_WORKERS`]).
pub fn escrow_release(
    escrow: &Pubkey,
    state: &crate::escrow::EscrowState,
    worker_tokens: &[Pubkey],
) -> Instruction {
    let mut data = vec![0u8; 8];
    data[0] = 8;
    let mut accounts = vec![
        AccountMeta::new(*escrow, false),
        AccountMeta::new(state.vault, false),
        AccountMeta::new_readonly(INSTRUCTIONS_SYSVAR, false),
        AccountMeta::new(state.creator, false),
        AccountMeta::new(state.gateway, false),
        AccountMeta::new_readonly(vault_authority(escrow).0, false),
        AccountMeta::new_readonly(TOKEN_PROGRAM, false),
        AccountMeta::new(state.rent_payer, false),
    ];
    accounts.extend(worker_tokens.iter().map(|w| AccountMeta::new(*w, false)));
    Instruction {
        program_id: ID,
        accounts,
        data,
    }
}

/// 9 EscrowRefund, at or after the deadline: the vault's balance to `buyer_token` (a token
/// account of the mint owned by the buyer). Anyone may send it.
pub fn escrow_refund(
    escrow: &Pubkey,
    state: &crate::escrow::EscrowState,
    buyer_token: &Pubkey,
) -> Instruction {
    let mut data = vec![0u8; 8];
    data[0] = 9;
    Instruction {
        program_id: ID,
        accounts: vec![
            AccountMeta::new(*escrow, false),
            AccountMeta::new(state.vault, false),
            AccountMeta::new(*buyer_token, false),
            AccountMeta::new(state.rent_payer, false),
            AccountMeta::new_readonly(vault_authority(escrow).0, false),
            AccountMeta::new_readonly(TOKEN_PROGRAM, false),
        ],
        data,
    }
}
