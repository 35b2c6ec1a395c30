//! The payer's cumulative vouchers: an Ed25519 signature by the channel's payer over
//! [`d402_program::instruction::voucher_message`], checked here without any chain call, and on
//! chain when a root that relies on it is published.

use ed25519_dalek::{Signature, VerifyingKey};
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

use super::ledger::Voucher;
use d402_program::instruction::voucher_message;

/// Why a voucher was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    #[error("voucher signature is not 64 bytes of hex")]
    Malformed,
    #[error("the payer's key is not a valid Ed25519 key")]
    PayerKey,
    #[error("voucher is not signed by the channel's payer")]
    Signature,
}

/// `payer`'s voucher for `cumulative` in `channel`.
pub fn sign(payer: &Keypair, channel: &Pubkey, cumulative: u64) -> Voucher {
    let signature: [u8; 64] = payer
        .sign_message(&voucher_message(channel, cumulative))
        .into();
    Voucher {
        cumulative,
        signature: hex::encode(signature),
    }
}

/// The voucher's signature bytes.
pub fn signature_bytes(voucher: &Voucher) -> Result<[u8; 64], VoucherError> {
    hex::decode(&voucher.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or(VoucherError::Malformed)
}

/// Checks that `payer` signed `voucher` for `channel` (`verify_strict`: no malleable signatures,
/// no small-order keys).
pub fn verify(payer: &Pubkey, channel: &Pubkey, voucher: &Voucher) -> Result<(), VoucherError> {
    let sig = Signature::from_bytes(&signature_bytes(voucher)?);
    let key = VerifyingKey::from_bytes(&payer.to_bytes()).map_err(|_| VoucherError::PayerKey)?;
    key.verify_strict(&voucher_message(channel, voucher.cumulative), &sig)
        .map_err(|_| VoucherError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_payers_voucher_for_this_channel_and_amount_verifies() {
        let payer = Keypair::new();
        let channel = Pubkey::new_unique();
        let v = sign(&payer, &channel, 70);
        assert_eq!(verify(&payer.pubkey(), &channel, &v), Ok(()));
        let more = Voucher {
            cumulative: 71,
            ..v.clone()
        };
        assert_eq!(
            verify(&payer.pubkey(), &channel, &more),
            Err(VoucherError::Signature)
        );
        assert_eq!(
            verify(&payer.pubkey(), &Pubkey::new_unique(), &v),
            Err(VoucherError::Signature)
        );
        assert_eq!(
            verify(&Keypair::new().pubkey(), &channel, &v),
            Err(VoucherError::Signature)
        );
        let short = Voucher {
            signature: "ab".into(),
            ..v
        };
        assert_eq!(
            verify(&payer.pubkey(), &channel, &short),
            Err(VoucherError::Malformed)
        );
    }
}
