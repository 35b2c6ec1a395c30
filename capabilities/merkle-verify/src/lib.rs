//! `merkle.verify_proof@1`: an *exactly verifiable* capability. Given a leaf, an inclusion proof and
//! a root, it recomputes the root the RFC 6962 way (SHA-256, leaves hashed as `H(0x00 || leaf)`,
//! interior nodes as `H(0x01 || left || right)`) and says whether it matches. It uses no imports, so
//! every honest worker returns the same bytes.
//!
//! ```
//! use d402_cap_merkle_verify::{leaf_hash, node_hash, verify, ProofStep, Side};
//! let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
//! let root = node_hash(&a, &b);
//! let proof = [ProofStep { hash: b, position: Side::Right }];
//! assert_eq!(verify(b"a", &proof, &root), (true, root));
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The capability id and version this crate implements.
pub const CAPABILITY_ID: &str = "merkle.verify_proof@1";

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Which side of the path the sibling hash sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// One step of an inclusion proof: the sibling's hash and its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofStep {
    pub hash: Hash,
    pub position: Side,
}

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(leaf)
        .finalize()
        .into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Folds the proof over the leaf hash; returns whether the result equals `root`, and the result.
pub fn verify(leaf: &[u8], proof: &[ProofStep], root: &Hash) -> (bool, Hash) {
    let computed = proof
        .iter()
        .fold(leaf_hash(leaf), |node, step| match step.position {
            Side::Left => node_hash(&step.hash, &node),
            Side::Right => node_hash(&node, &step.hash),
        });
    (computed == *root, computed)
}

/// The input did not match `{"leaf": hex, "proof": [{"hash": hex, "position": "left"|"right"}], "root": hex}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {0}")]
pub struct InputError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    leaf: String,
    proof: Vec<RawStep>,
    root: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    hash: String,
    position: Side,
}

/// A checked task input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub leaf: Vec<u8>,
    pub proof: Vec<ProofStep>,
    pub root: Hash,
}

impl Input {
    /// Parses the JSON input; hex must be even-length, and proof hashes and the root 32 bytes.
    pub fn parse(json: &str) -> Result<Self, InputError> {
        let raw: RawInput = serde_json::from_str(json).map_err(|e| InputError(e.to_string()))?;
        let leaf = decode_hex("leaf", &raw.leaf)?;
        let proof = raw
            .proof
            .iter()
            .enumerate()
            .map(|(i, step)| {
                Ok(ProofStep {
                    hash: decode_hash(&format!("proof[{i}].hash"), &step.hash)?,
                    position: step.position,
                })
            })
            .collect::<Result<Vec<_>, InputError>>()?;
        let root = decode_hash("root", &raw.root)?;
        Ok(Input { leaf, proof, root })
    }
}

/// The task output: `{"valid": bool, "computedRoot": hex}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub valid: bool,
    pub computed_root: String,
}

impl Output {
    /// The output as JSON text.
    pub fn to_json(&self) -> String {
        // A bool and a string always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs the capability on JSON input: the whole component minus the WIT glue.
pub fn run(json: &str) -> Result<Output, InputError> {
    let input = Input::parse(json)?;
    let (valid, computed) = verify(&input.leaf, &input.proof, &input.root);
    Ok(Output {
        valid,
        computed_root: hex::encode(computed),
    })
}

fn decode_hex(field: &str, text: &str) -> Result<Vec<u8>, InputError> {
    hex::decode(text).map_err(|e| InputError(format!("{field} is not hex: {e}")))
}

fn decode_hash(field: &str, text: &str) -> Result<Hash, InputError> {
    let bytes = decode_hex(field, text)?;
    Hash::try_from(bytes.as_slice()).map_err(|_| {
        InputError(format!(
            "{field} must be 32 bytes (64 hex digits), got {} bytes",
            bytes.len()
        ))
    })
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "capability" });

    struct MerkleVerify;

    impl Guest for MerkleVerify {
        fn run(input: String) -> Result<String, CapabilityError> {
            crate::run(&input)
                .map(|output| output.to_json())
                .map_err(|e| CapabilityError::InvalidInput(e.0))
        }
    }

    export!(MerkleVerify);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hash: &Hash) -> String {
        hex::encode(hash)
    }

    /// A four-leaf tree: root = N(N(a, b), N(c, d)).
    fn tree() -> (Vec<Hash>, Hash, Hash, Hash) {
        let leaves: Vec<Hash> = [b"a", b"b", b"c", b"d"]
            .iter()
            .map(|l| leaf_hash(*l))
            .collect();
        let ab = node_hash(&leaves[0], &leaves[1]);
        let cd = node_hash(&leaves[2], &leaves[3]);
        let root = node_hash(&ab, &cd);
        (leaves, ab, cd, root)
    }

    #[test]
    fn rfc6962_empty_leaf_hash() {
        // RFC 6962 / Certificate Transparency: the hash of an empty leaf.
        assert_eq!(
            h(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn valid_proofs_for_every_leaf() {
        let (leaves, ab, cd, root) = tree();
        let input = |leaf: &[u8], steps: &[(Hash, &str)]| {
            let proof: Vec<String> = steps
                .iter()
                .map(|(hash, side)| format!(r#"{{"hash":"{}","position":"{side}"}}"#, h(hash)))
                .collect();
            format!(
                r#"{{"leaf":"{}","proof":[{}],"root":"{}"}}"#,
                hex::encode(leaf),
                proof.join(","),
                h(&root)
            )
        };
        let cases = [
            (input(b"a", &[(leaves[1], "right"), (cd, "right")])),
            (input(b"b", &[(leaves[0], "left"), (cd, "right")])),
            (input(b"c", &[(leaves[3], "right"), (ab, "left")])),
            (input(b"d", &[(leaves[2], "left"), (ab, "left")])),
        ];
        for json in cases {
            let out = run(&json).expect("valid input");
            assert!(out.valid, "{json}");
            assert_eq!(out.computed_root, h(&root));
        }
    }

    #[test]
    fn wrong_side_or_leaf_is_invalid_not_an_error() {
        let (leaves, _, cd, root) = tree();
        let json = format!(
            r#"{{"leaf":"{}","proof":[{{"hash":"{}","position":"left"}},{{"hash":"{}","position":"right"}}],"root":"{}"}}"#,
            hex::encode(b"a"),
            h(&leaves[1]),
            h(&cd),
            h(&root)
        );
        let out = run(&json).expect("well-formed");
        assert!(!out.valid);
        assert_ne!(out.computed_root, h(&root));

        let json = json.replace(&hex::encode(b"a"), &hex::encode(b"z"));
        assert!(!run(&json).expect("well-formed").valid);
    }

    #[test]
    fn single_leaf_tree_has_empty_proof() {
        let root = leaf_hash(b"only");
        let json = format!(
            r#"{{"leaf":"{}","proof":[],"root":"{}"}}"#,
            hex::encode(b"only"),
            h(&root).to_uppercase()
        );
        let out = run(&json).expect("valid");
        assert!(out.valid);
        assert_eq!(
            out.to_json(),
            format!(r#"{{"valid":true,"computedRoot":"{}"}}"#, h(&root))
        );
    }

    #[test]
    fn malformed_input_is_rejected() {
        let good = "00".repeat(32);
        let bad = [
            "not json".to_owned(),
            r#"{"leaf":"zz","proof":[],"root":"00"}"#.to_owned(),
            format!(r#"{{"leaf":"abc","proof":[],"root":"{good}"}}"#),
            format!(r#"{{"leaf":"00","proof":[],"root":"{}"}}"#, "00".repeat(31)),
            format!(
                r#"{{"leaf":"00","proof":[{{"hash":"00","position":"left"}}],"root":"{good}"}}"#
            ),
            format!(
                r#"{{"leaf":"00","proof":[{{"hash":"{good}","position":"up"}}],"root":"{good}"}}"#
            ),
            format!(r#"{{"leaf":"00","proof":[{{"hash":"{good}"}}],"root":"{good}"}}"#),
            format!(r#"{{"leaf":"00","root":"{good}"}}"#),
            format!(r#"{{"leaf":"00","proof":[],"root":"{good}","extra":true}}"#),
        ];
        for json in bad {
            assert!(run(&json).is_err(), "{json}");
        }
    }
}
