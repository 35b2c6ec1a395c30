//! Transaction bytes on the wire: x402's SVM payload carries a bincode-serialized
//! `VersionedTransaction`, base64-encoded (standard alphabet, with padding).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

/// Solana's packet limit: a transaction larger than this cannot be sent, so larger input is
/// refused before decoding.
pub const MAX_TRANSACTION_BYTES: usize = 1232;

/// base64(bincode(tx)).
pub fn encode_transaction(tx: &VersionedTransaction) -> Result<String, String> {
    let bytes = bincode::serialize(tx).map_err(|e| e.to_string())?;
    Ok(STANDARD.encode(bytes))
}

/// The inverse of [`encode_transaction`], bounded by [`MAX_TRANSACTION_BYTES`] and sanitized
/// (account indexes in range, header consistent), so later checks can index safely.
pub fn decode_transaction(text: &str) -> Result<VersionedTransaction, String> {
    if text.len() > MAX_TRANSACTION_BYTES * 4 / 3 + 4 {
        return Err("transaction is larger than a Solana packet".to_string());
    }
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("base64: {e}"))?;
    if bytes.len() > MAX_TRANSACTION_BYTES {
        return Err("transaction is larger than a Solana packet".to_string());
    }
    let tx: VersionedTransaction =
        bincode::deserialize(&bytes).map_err(|e| format!("bincode: {e}"))?;
    tx.sanitize().map_err(|e| format!("sanitize: {e}"))?;
    if tx.signatures.len() != usize::from(tx.message.header().num_required_signatures) {
        return Err("signature count does not match the message header".to_string());
    }
    Ok(tx)
}

/// A transaction's id: its first signature (the fee payer's).
pub fn transaction_id(tx: &VersionedTransaction) -> Option<Signature> {
    tx.signatures.first().copied()
}

/// The fee a transaction costs its fee payer, in lamports: 5,000 per signature plus the priority
/// fee its compute-budget instructions ask for (`ceil(price × limit / 10^6)`).
pub fn transaction_fee(tx: &VersionedTransaction) -> u64 {
    const LAMPORTS_PER_SIGNATURE: u64 = 5_000;
    let keys = tx.message.static_account_keys();
    let budget = solana_compute_budget_interface::id();
    let (mut limit, mut price) = (200_000u64, 0u64);
    for ix in tx.message.instructions() {
        if keys.get(usize::from(ix.program_id_index)) != Some(&budget) {
            continue;
        }
        match ix.data.as_slice() {
            [2, a, b, c, d] => limit = u64::from(u32::from_le_bytes([*a, *b, *c, *d])),
            [3, rest @ ..] if rest.len() == 8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(rest);
                price = u64::from_le_bytes(bytes);
            }
            _ => {}
        }
    }
    let priority = (u128::from(price) * u128::from(limit)).div_ceil(1_000_000);
    LAMPORTS_PER_SIGNATURE * u64::from(tx.message.header().num_required_signatures)
        + u64::try_from(priority).unwrap_or(u64::MAX)
}
