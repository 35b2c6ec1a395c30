//! The program's accounts, as `README.md` lays them out: the channel (256 bytes, created by the
//! payer with the system program in the transaction that opens it) and the claim (112 bytes, a
//! PDA the program creates at a claimant's first withdrawal).

use solana_pubkey::Pubkey;

use crate::ID;

/// A channel account's size.
pub const CHANNEL_LEN: usize = 256;
/// A claim account's size.
pub const CLAIM_LEN: usize = 112;
/// "d402chan"
pub const CHANNEL_DISCRIMINATOR: [u8; 8] = *b"d402chan";
/// "d402clm1"
pub const CLAIM_DISCRIMINATOR: [u8; 8] = *b"d402clm1";

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStage {
    Open,
    /// A close was requested at `close_at`; roots may still be published until `Close`.
    Closing,
    /// The payer's remainder went back; claimants may still withdraw what roots allocated.
    Closed,
}

/// A channel account's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    pub payer: Pubkey,
    pub authority: Pubkey,
    pub maintainer: Pubkey,
    pub mint: Pubkey,
    pub vault: Pubkey,
    pub vault_bump: u8,
    pub stage: ChannelStage,
    /// The last published root's sequence number (0: none yet).
    pub seq: u64,
    /// The last root's total: what claimants may withdraw in all.
    pub allocated: u64,
    /// The highest payer voucher seen on chain.
    pub voucher: u64,
    pub root: [u8; 32],
    /// What claimants have withdrawn in all.
    pub withdrawn: u64,
    /// Unix seconds of the close request (0: none).
    pub close_at: i64,
    pub grace_secs: u64,
}

/// A claim account's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimState {
    pub channel: Pubkey,
    pub claimant: Pubkey,
    /// Who paid the claim's rent, and gets it back at `ReclaimClaim`.
    pub rent_payer: Pubkey,
    pub withdrawn: u64,
}

/// The key at `at` in an account's data (the caller checked the length).
pub(crate) fn key(data: &[u8], at: usize) -> Pubkey {
    let mut k = [0u8; 32];
    k.copy_from_slice(&data[at..at + 32]);
    Pubkey::new_from_array(k)
}

/// The little-endian u64 at `at` in an account's data.
pub(crate) fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(b)
}

impl ChannelState {
    /// Reads a channel account's data; `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() != CHANNEL_LEN || data[..8] != CHANNEL_DISCRIMINATOR {
            return None;
        }
        let stage = match data[169] {
            0 => ChannelStage::Open,
            1 => ChannelStage::Closing,
            2 => ChannelStage::Closed,
            _ => return None,
        };
        let mut root = [0u8; 32];
        root.copy_from_slice(&data[200..232]);
        Some(ChannelState {
            payer: key(data, 8),
            authority: key(data, 40),
            maintainer: key(data, 72),
            mint: key(data, 104),
            vault: key(data, 136),
            vault_bump: data[168],
            stage,
            seq: u64_at(data, 176),
            allocated: u64_at(data, 184),
            voucher: u64_at(data, 192),
            root,
            withdrawn: u64_at(data, 232),
            close_at: u64_at(data, 240) as i64,
            grace_secs: u64_at(data, 248),
        })
    }
}

impl ClaimState {
    /// Reads a claim account's data; `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() != CLAIM_LEN || data[..8] != CLAIM_DISCRIMINATOR {
            return None;
        }
        Some(ClaimState {
            channel: key(data, 8),
            claimant: key(data, 40),
            rent_payer: key(data, 72),
            withdrawn: u64_at(data, 104),
        })
    }
}

/// The vault's owner: the PDA of `["vault", channel]`, and its bump.
pub fn vault_authority(channel: &Pubkey) -> (Pubkey, u8) {
    Pubkey::find_program_address(&[b"vault", channel.as_ref()], &ID)
}

/// A claimant's claim account: the canonical PDA of `["claim", channel, claimant]`.
pub fn claim_address(channel: &Pubkey, claimant: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[b"claim", channel.as_ref(), claimant.as_ref()], &ID).0
}
