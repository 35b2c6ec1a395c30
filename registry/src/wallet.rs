//! Creator wallets, one per payment rail, each validated so that a typo cannot send a creator's
//! commission into the void.
//!
//! - `solana`: a base58 public key that decodes to exactly 32 bytes.
//! - `evm`: `0x` and 40 hex digits with a valid EIP-55 checksum. An address with no checksum
//!   information (all its letters lower case, or all upper case) is refused too, and the error
//!   gives the checksummed form to use: in a signed registration the address is written once and
//!   read by every gateway, so it must carry its own typo check. (An address with no letters at all
//!   has nothing to checksum and is accepted as is.) [`normalize_evm`] turns what a user types
//!   (seed 001's `0x…c0de`, with no checksum) into that form; the CLI applies it.

use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

/// A payment rail a gateway may settle on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rail {
    Solana,
    Evm,
}

impl Rail {
    pub const ALL: [Rail; 2] = [Rail::Solana, Rail::Evm];

    pub fn as_str(&self) -> &'static str {
        match self {
            Rail::Solana => "solana",
            Rail::Evm => "evm",
        }
    }

    /// The wallet family paid on a CAIP-2 network namespace (`eip155`, `solana`).
    pub fn of_namespace(namespace: &str) -> Option<Rail> {
        match namespace {
            "eip155" => Some(Rail::Evm),
            "solana" => Some(Rail::Solana),
            _ => None,
        }
    }
}

impl std::fmt::Display for Rail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Rail {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "solana" => Ok(Rail::Solana),
            "evm" => Ok(Rail::Evm),
            other => Err(format!(
                "unknown rail {other:?} (expected `solana` or `evm`)"
            )),
        }
    }
}

/// Where the creator's commission is paid, per rail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatorWallets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solana: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm: Option<String>,
}

impl CreatorWallets {
    /// The wallet for `rail`, if any.
    pub fn get(&self, rail: Rail) -> Option<&str> {
        match rail {
            Rail::Solana => self.solana.as_deref(),
            Rail::Evm => self.evm.as_deref(),
        }
    }

    /// Checks every wallet present; each error is `(rail, message)`.
    pub fn check(&self) -> Vec<(Rail, String)> {
        let mut errors = Vec::new();
        if let Some(w) = &self.solana
            && let Err(e) = check_solana(w)
        {
            errors.push((Rail::Solana, e));
        }
        if let Some(w) = &self.evm
            && let Err(e) = check_evm(w)
        {
            errors.push((Rail::Evm, e));
        }
        errors
    }
}

fn excerpt(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    if short.len() < s.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// A Solana public key: base58, 32 bytes.
pub fn check_solana(wallet: &str) -> Result<(), String> {
    if wallet.len() > 64 {
        return Err(format!(
            "{} is not a Solana public key: too long",
            excerpt(wallet)
        ));
    }
    let bytes = bs58::decode(wallet)
        .into_vec()
        .map_err(|e| format!("{} is not base58: {e}", excerpt(wallet)))?;
    if bytes.len() != 32 {
        return Err(format!(
            "{} decodes to {} bytes; a Solana public key is 32",
            excerpt(wallet),
            bytes.len()
        ));
    }
    Ok(())
}

/// The EIP-55 checksummed form of an address given as 40 hex digits (any case).
pub fn evm_checksummed(hex40: &str) -> Option<String> {
    if hex40.len() != 40 || !hex40.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex40.to_ascii_lowercase();
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    Some(out)
}

/// The 40 hex digits of an EVM address, or why it is not one.
fn evm_hex(wallet: &str) -> Result<&str, String> {
    wallet
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            format!(
                "{} is not an EVM address (0x and 40 hex digits)",
                excerpt(wallet)
            )
        })
}

/// All letters one case: the address carries no EIP-55 checksum information.
fn single_case(hex40: &str) -> bool {
    hex40 == hex40.to_ascii_lowercase() || hex40 == hex40.to_ascii_uppercase()
}

/// An EVM address: `0x` + 40 hex digits with a valid EIP-55 checksum.
pub fn check_evm(wallet: &str) -> Result<(), String> {
    let hex40 = evm_hex(wallet)?;
    let checksummed = evm_checksummed(hex40).unwrap_or_default();
    if checksummed == wallet {
        Ok(())
    } else if single_case(hex40) {
        Err(format!(
            "{wallet} has no EIP-55 checksum; write it as {checksummed}"
        ))
    } else {
        Err(format!(
            "{wallet} fails its EIP-55 checksum (expected {checksummed})"
        ))
    }
}

/// An EVM address as a user may type it, in the form a registration carries: an address with no
/// checksum information (all letters one case) is given its EIP-55 checksum; a mixed-case one must
/// already carry a valid checksum (so a typo is caught, not blessed).
pub fn normalize_evm(wallet: &str) -> Result<String, String> {
    let hex40 = evm_hex(wallet)?;
    if single_case(hex40) {
        return Ok(evm_checksummed(hex40).unwrap_or_default());
    }
    check_evm(wallet)?;
    Ok(wallet.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_vectors() {
        // The test vectors of EIP-55.
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(check_evm(a), Ok(()), "{a}");
            assert_eq!(evm_checksummed(&a[2..]).unwrap(), a);
        }
        assert!(check_evm("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_err());
        assert!(
            check_evm("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
                .unwrap_err()
                .contains("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
        );
        assert!(check_evm("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_err());
        assert!(check_evm("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe").is_err());
        assert!(check_evm("0xZaAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_err());
        assert_eq!(
            check_evm("0x0000000000000000000000000000000000000000"),
            Ok(())
        );
    }

    #[test]
    fn seed_example_address_is_checksummed_on_input() {
        // Seed 001 writes `0x…c0de`, which carries no checksum: the CLI turns it into the
        // checksummed form, and a registration must carry that form.
        let seed = "0x000000000000000000000000000000000000c0de";
        assert!(check_evm(seed).is_err());
        let normal = normalize_evm(seed).unwrap();
        assert_eq!(normal, "0x000000000000000000000000000000000000c0DE");
        assert_eq!(check_evm(&normal), Ok(()));
        assert!(normalize_evm("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_err());
        assert!(normalize_evm("0x5aae").is_err());
    }

    #[test]
    fn solana_keys() {
        assert_eq!(check_solana("11111111111111111111111111111111"), Ok(()));
        assert_eq!(
            check_solana("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"),
            Ok(())
        );
        assert!(check_solana("0OIl").is_err());
        assert!(check_solana("abc").is_err());
        assert!(check_solana(&"1".repeat(100)).is_err());
    }
}
