//! The task escrow account (`README.md`, "Task escrow"): one task's payment held by the program
//! until the validator's signed release pays its split, or until its deadline lets anyone refund
//! the buyer. The escrow is created by the gateway's fee payer with the system program's
//! `CreateAccountWithSeed` (base: the fee payer, seed: the task), so its address follows from the
//! task and no extra keypair signs the buyer's transaction.

use solana_pubkey::Pubkey;

use crate::ID;
use crate::channel::{key, u64_at};

/// An escrow account's size.
pub const ESCROW_LEN: usize = 272;
/// "d402escr"
pub const ESCROW_DISCRIMINATOR: [u8; 8] = *b"d402escr";
/// The most workers one release pays (16 accounts in all, 8 of them the release's own).
pub const MAX_RELEASE_WORKERS: usize = 8;

/// An open escrow's contents (a released or refunded escrow no longer exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowState {
    pub buyer: Pubkey,
    /// The key whose signature releases the split.
    pub validator: Pubkey,
    pub mint: Pubkey,
    pub vault: Pubkey,
    /// The creator's token account.
    pub creator: Pubkey,
    pub vault_bump: u8,
    /// Unix seconds: a release must land before it, a refund at or after it.
    pub deadline: i64,
    pub amount: u64,
    pub creator_amount: u64,
    pub gateway_amount: u64,
    /// The gateway's token account.
    pub gateway: Pubkey,
    /// Who funded the escrow's and the vault's rent, and gets it back.
    pub rent_payer: Pubkey,
}

impl EscrowState {
    /// Reads an open escrow's data; `None` for anything else.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() != ESCROW_LEN || data[..8] != ESCROW_DISCRIMINATOR || data[169] != 0 {
            return None;
        }
        Some(EscrowState {
            buyer: key(data, 8),
            validator: key(data, 40),
            mint: key(data, 72),
            vault: key(data, 104),
            creator: key(data, 136),
            vault_bump: data[168],
            deadline: u64_at(data, 176) as i64,
            amount: u64_at(data, 184),
            creator_amount: u64_at(data, 192),
            gateway_amount: u64_at(data, 200),
            gateway: key(data, 208),
            rent_payer: key(data, 240),
        })
    }

    /// The workers' part of a release: the vault's balance less the creator's and the gateway's
    /// amounts, as the program computes it.
    pub fn worker_amount(&self, vault_balance: u64) -> u64 {
        vault_balance
            .saturating_sub(self.creator_amount)
            .saturating_sub(self.gateway_amount)
    }
}

/// The seed an escrow's address is derived with: the task's id, as at most 32 characters.
pub fn escrow_seed(task_hex: &str) -> &str {
    let t = task_hex.trim_start_matches("0x");
    t.get(..32).unwrap_or(t)
}

/// A task's escrow address: `create_with_seed(base, seed, program)`.
/// `seed` must be at most 32 bytes (the system program's limit; [`escrow_seed`] keeps it).
pub fn escrow_address(base: &Pubkey, seed: &str) -> Pubkey {
    use sha2::{Digest, Sha256};
    let hash = Sha256::new()
        .chain_update(base.as_ref())
        .chain_update(seed.as_bytes())
        .chain_update(ID.as_ref())
        .finalize();
    Pubkey::new_from_array(hash.into())
}

/// What each worker token account receives from a release of `worker_amount`: equal parts, the
/// first taking what the division leaves (the program's rule).
pub fn worker_shares(worker_amount: u64, workers: usize) -> Vec<u64> {
    let n = workers.max(1) as u64;
    let share = worker_amount / n;
    (0..workers)
        .map(|i| {
            if i == 0 {
                worker_amount - share * (n - 1)
            } else {
                share
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_the_workers_amount() {
        assert_eq!(worker_shares(10, 3), [4, 3, 3]);
        assert_eq!(worker_shares(1, 2), [1, 0]);
        assert_eq!(worker_shares(7, 1), [7]);
        assert_eq!(worker_shares(900, 2).iter().sum::<u64>(), 900);
    }

    #[test]
    fn the_seed_fits_and_the_address_is_the_bases() {
        let task = format!("0x{}", "ab".repeat(32));
        assert_eq!(escrow_seed(&task).len(), 32);
        let base = Pubkey::new_unique();
        assert_ne!(
            escrow_address(&base, escrow_seed(&task)),
            escrow_address(&Pubkey::new_unique(), escrow_seed(&task))
        );
    }

    #[test]
    fn only_an_open_escrow_parses() {
        let mut data = vec![0u8; ESCROW_LEN];
        assert!(EscrowState::parse(&data).is_none());
        data[..8].copy_from_slice(&ESCROW_DISCRIMINATOR);
        data[184..192].copy_from_slice(&100u64.to_le_bytes());
        let state = EscrowState::parse(&data).expect("open");
        assert_eq!(state.amount, 100);
        data[169] = 2;
        assert!(EscrowState::parse(&data).is_none());
        assert!(EscrowState::parse(&data[..256]).is_none());
    }
}
