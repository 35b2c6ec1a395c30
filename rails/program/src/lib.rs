//! `d402-program`: d402's on-chain Solana program, and what a client needs to use it.
//!
//! The program (`src/d402.s`, sBPF assembly assembled by `build.rs`) keeps per-task escrows
//! ([`escrow`]: a task's payment released by the validator's signature or refunded after its
//! deadline) and payment channels whose
//! money is allocated by Merkle roots: a payer funds a vault held by the channel's PDA; the
//! channel's authority (a gateway's settlement key) signs roots over cumulative per-claimant
//! amounts, each bounded on chain by the payer's latest signed cumulative voucher and by the vault;
//! anyone (a maintainer) can publish a root carrying both signatures; each claimant withdraws with
//! a Merkle proof, without anyone's cooperation; after a close request and a grace period the payer
//! recovers what no root allocated, and rent comes back. `README.md` in this crate documents every
//! account and instruction byte by byte; this crate mirrors it:
//! [`channel`] (the channel and claim accounts), [`instruction`] (the instructions and the signed
//! messages), [`merkle`] (the allocation tree) and [`ProgramError`] (the program's error codes).

pub mod channel;
pub mod escrow;
pub mod instruction;
pub mod merkle;

use solana_pubkey::Pubkey;

/// The program's ELF, as assembled from `src/d402.s`.
pub const ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/d402_program.so"));

/// The program's address (on a test validator and the devnet it is loaded here at genesis):
/// base58 of sha256("d402-program v1").
pub const ID: Pubkey = Pubkey::from_str_const("9wwo8R1m5FWHgSxSTwcH4vi2GXozv3mhdtVCrYYwzVeH");

/// The SPL Token program, which holds the vault.
pub const TOKEN_PROGRAM: Pubkey =
    Pubkey::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// The system program, which creates claim accounts.
pub const SYSTEM_PROGRAM: Pubkey = Pubkey::new_from_array([0; 32]);
/// The instructions sysvar, through which the program reads the Ed25519 precompile's signatures.
pub const INSTRUCTIONS_SYSVAR: Pubkey =
    Pubkey::from_str_const("Sysvar1nstructions1111111111111111111111111");
/// The Ed25519 signature-verification precompile.
pub const ED25519_PROGRAM: Pubkey =
    Pubkey::from_str_const("Ed25519SigVerify111111111111111111111111111");

/// Why the program refused an instruction: its `Custom(code)` errors, one per check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[repr(u32)]
pub enum ProgramError {
    #[error("unknown instruction or malformed instruction data")]
    Instruction = 1,
    #[error("too few accounts")]
    Accounts = 2,
    #[error("an account is not owned by the program it must be")]
    Owner = 3,
    #[error("a required signature is missing")]
    Signer = 4,
    #[error("not a channel of this program (or already open)")]
    Channel = 5,
    #[error("a token account of another mint")]
    Mint = 6,
    #[error("not the channel's vault, or a vault someone else controls")]
    Vault = 7,
    #[error("an address is not the expected program-derived address")]
    Pda = 8,
    #[error("the root's sequence number does not exceed the last one")]
    Sequence = 9,
    #[error("the root allocates more than the payer's voucher authorises")]
    AboveVoucher = 10,
    #[error("the root allocates more than the vault ever held")]
    AboveVault = 11,
    #[error("no valid payer voucher signature precedes the instruction")]
    VoucherSignature = 12,
    #[error("no valid authority root signature precedes the instruction")]
    RootSignature = 13,
    #[error("the Merkle proof does not lead to the channel's root")]
    Proof = 14,
    #[error("nothing is due: the claim has withdrawn this amount already")]
    NothingDue = 15,
    #[error("the close grace period has not ended")]
    Grace = 16,
    #[error("the channel is closed")]
    Closed = 17,
    #[error("the account still holds funds")]
    HoldsFunds = 18,
    #[error("a root's total may not decrease")]
    TotalDecreased = 19,
    #[error("an account is not the one this instruction needs")]
    Account = 20,
    #[error("the channel account is not writable")]
    Writable = 21,
    #[error("the channel is not closing")]
    NotClosing = 22,
    #[error("the channel is not closed")]
    NotClosed = 23,
    #[error("the withdrawal is above what the root allocated and nobody withdrew yet")]
    AboveAllocation = 24,
    #[error("not an open task escrow of this program (or already open)")]
    Escrow = 25,
    #[error("no valid validator release signature precedes the instruction")]
    ReleaseSignature = 26,
    #[error("the escrow's deadline has passed: it can only be refunded")]
    DeadlinePassed = 27,
    #[error("the escrow's deadline has not passed: it cannot be refunded yet")]
    BeforeDeadline = 28,
    #[error("the creator's and the gateway's amounts exceed the escrowed amount (or it is zero)")]
    Split = 29,
    #[error("the vault holds less than the escrowed amount")]
    Underfunded = 30,
}

impl ProgramError {
    /// The error a `Custom(code)` from this program stands for.
    pub fn from_code(code: u32) -> Option<Self> {
        use ProgramError::*;
        const ALL: [ProgramError; 30] = [
            Instruction,
            Accounts,
            Owner,
            Signer,
            Channel,
            Mint,
            Vault,
            Pda,
            Sequence,
            AboveVoucher,
            AboveVault,
            VoucherSignature,
            RootSignature,
            Proof,
            NothingDue,
            Grace,
            Closed,
            HoldsFunds,
            TotalDecreased,
            Account,
            Writable,
            NotClosing,
            NotClosed,
            AboveAllocation,
            Escrow,
            ReleaseSignature,
            DeadlinePassed,
            BeforeDeadline,
            Split,
            Underfunded,
        ];
        ALL.into_iter().find(|e| *e as u32 == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elf_is_an_sbpf_v0_shared_object() {
        assert_eq!(&ELF[..4], b"\x7fELF");
        // e_machine EM_BPF (247), e_flags 0 (V0).
        assert_eq!(u16::from_le_bytes([ELF[18], ELF[19]]), 247);
        assert_eq!(u32::from_le_bytes([ELF[48], ELF[49], ELF[50], ELF[51]]), 0);
    }

    #[test]
    fn the_elf_matches_the_recorded_hash() {
        use sha2::{Digest, Sha256};
        let hash: String = Sha256::digest(ELF)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let table = include_str!("../../contracts/DEPLOYMENTS.md");
        let row = table
            .lines()
            .find(|l| l.starts_with("| `d402-program`"))
            .expect("a d402-program row in DEPLOYMENTS.md");
        assert!(
            row.contains(&format!("`{hash}`")) && row.contains(&format!("| {} |", ELF.len())),
            "DEPLOYMENTS.md records {row:?}; the build is sha256 {hash}, {} bytes: update the table",
            ELF.len()
        );
        assert!(row.contains(&ID.to_string()));
    }

    #[test]
    fn error_codes_round_trip() {
        for code in 1..=30 {
            assert_eq!(ProgramError::from_code(code).map(|e| e as u32), Some(code));
        }
        assert_eq!(ProgramError::from_code(0), None);
        assert_eq!(ProgramError::from_code(31), None);
    }
}
