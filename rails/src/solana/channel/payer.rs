//! The payer's side: the instructions that open (create, fund and record) a channel to a gateway,
//! and the top-up. The payer signs them with the channel account's fresh keypair.

use d402_program::channel::{CHANNEL_LEN, vault_authority};
use d402_program::instruction as ix;
use solana_instruction::Instruction;
use solana_pubkey::Pubkey;
use spl_associated_token_account_interface::address::get_associated_token_address;
use spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent;

use d402_program::TOKEN_PROGRAM;

/// What a payer opens a channel with.
#[derive(Debug, Clone)]
pub struct Opening {
    pub payer: Pubkey,
    /// A fresh keypair's address; it signs the opening.
    pub channel: Pubkey,
    pub mint: Pubkey,
    pub authority: Pubkey,
    pub maintainer: Pubkey,
    pub deposit: u64,
    pub grace_secs: u64,
    /// The cluster's minimum balance for [`CHANNEL_LEN`] bytes.
    pub channel_rent: u64,
}

/// The channel's vault: the vault PDA's associated token account for `mint`.
pub fn vault_of(channel: &Pubkey, mint: &Pubkey) -> Pubkey {
    get_associated_token_address(&vault_authority(channel).0, mint)
}

/// Creates the channel account, creates the vault, deposits and records the channel; `fee_payer`
/// pays the rent of both accounts.
pub fn open_instructions(o: &Opening, fee_payer: &Pubkey) -> Vec<Instruction> {
    let vault = vault_of(&o.channel, &o.mint);
    vec![
        solana_system_interface::instruction::create_account(
            fee_payer,
            &o.channel,
            o.channel_rent,
            CHANNEL_LEN as u64,
            &d402_program::ID,
        ),
        create_associated_token_account_idempotent(
            fee_payer,
            &vault_authority(&o.channel).0,
            &o.mint,
            &TOKEN_PROGRAM,
        ),
        top_up(&o.payer, &o.channel, &o.mint, o.deposit),
        ix::open(
            &o.channel,
            &o.payer,
            &vault,
            &o.authority,
            &o.maintainer,
            &o.mint,
            o.grace_secs,
        ),
    ]
}

/// A token transfer from the payer's associated token account into the channel's vault.
pub fn top_up(payer: &Pubkey, channel: &Pubkey, mint: &Pubkey, amount: u64) -> Instruction {
    let from = get_associated_token_address(payer, mint);
    let to = vault_of(channel, mint);
    // The only failure is a program id other than SPL Token's, and this is SPL Token's.
    spl_token_interface::instruction::transfer(&TOKEN_PROGRAM, &from, &to, payer, &[], amount)
        .unwrap_or_else(|_| unreachable!("SPL Token's own id"))
}
