//! Namespace proofs. A namespace (`example`, the first segment of `example.extract_product`) is
//! owned by whoever holds its owner key, an ordinary [`Identity`]. The owner vouches for a
//! publisher by signing the RFC 8785 bytes of the statement `{"namespace", "publisher"}`; a gateway
//! that trusts `example` → owner key accepts `example.*` registrations only from publishers the
//! owner has vouched for.

use d402_core::Identity;
use d402_core::content_id::{CanonicalJsonError, canonical_json};
use d402_core::identity::{SignatureError, verify_signature};
use serde::{Deserialize, Serialize};

use crate::document::{self, Problems};
use crate::error::RegistrationError;

/// The statement a namespace owner signs.
#[derive(Serialize)]
struct Statement<'a> {
    namespace: &'a str,
    publisher: &'a str,
}

fn statement(namespace: &str, publisher: &str) -> Result<Vec<u8>, CanonicalJsonError> {
    canonical_json(&Statement {
        namespace,
        publisher,
    })
}

/// The proof carried in a registration: who owns the namespace and their signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceProof {
    /// `ed25519:<hex>` of the namespace owner.
    pub owner: String,
    /// Hex ed25519 signature by `owner` over the canonical `{namespace, publisher}`.
    pub signature: String,
}

impl NamespaceProof {
    /// `owner` vouches for `publisher` in `namespace`.
    pub fn sign(
        owner: &Identity,
        namespace: &str,
        publisher: &str,
    ) -> Result<Self, CanonicalJsonError> {
        Ok(Self {
            owner: owner.public_id(),
            signature: owner.sign(&statement(namespace, publisher)?),
        })
    }

    /// Checks the signature by `self.owner` for this namespace and publisher. Whether the owner
    /// is *trusted* for the namespace is the gateway's policy ([`crate::policy`]).
    pub fn verify(&self, namespace: &str, publisher: &str) -> Result<(), RegistrationError> {
        let message = statement(namespace, publisher)?;
        verify_signature(&self.owner, &message, &self.signature)
            .map_err(RegistrationError::NamespaceProof)
    }
}

/// The document `d402 namespace proof` prints and `d402 capability register --namespace-proof`
/// reads: the statement and the proof together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceProofDocument {
    pub namespace: String,
    pub publisher: String,
    #[serde(flatten)]
    pub proof: NamespaceProof,
}

impl NamespaceProofDocument {
    pub fn sign(
        owner: &Identity,
        namespace: &str,
        publisher: &str,
    ) -> Result<Self, RegistrationError> {
        let mut p = Problems::default();
        if let Err(e) = check_namespace(namespace) {
            p.add("/namespace", e);
        }
        if let Err(e) = check_public_id(publisher) {
            p.add("/publisher", e);
        }
        p.into_result("namespace proof")?;
        Ok(Self {
            namespace: namespace.to_string(),
            publisher: publisher.to_string(),
            proof: NamespaceProof::sign(owner, namespace, publisher)?,
        })
    }

    /// Reads a proof document and checks its signature.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RegistrationError> {
        let value = document::read_json(bytes, "namespace proof")?;
        let doc: Self = document::typed(value, "namespace proof")?;
        doc.proof.verify(&doc.namespace, &doc.publisher)?;
        Ok(doc)
    }

    /// The proof for `namespace` and `publisher`, or a mismatch error naming which one differs.
    pub fn proof_for(
        &self,
        namespace: &str,
        publisher: &str,
    ) -> Result<NamespaceProof, RegistrationError> {
        for (field, expected, found) in [
            ("namespace", namespace, &self.namespace),
            ("publisher", publisher, &self.publisher),
        ] {
            if expected != found {
                return Err(RegistrationError::NamespaceProofMismatch {
                    field,
                    expected: expected.to_string(),
                    found: found.clone(),
                });
            }
        }
        Ok(self.proof.clone())
    }
}

/// A namespace: one dotted-name segment (`example`).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    document::check_dotted_name(namespace, 1)?;
    if namespace.contains('.') {
        return Err(format!(
            "{namespace:?} is not a namespace: one segment, the first of a capability id"
        ));
    }
    Ok(())
}

/// `ed25519:` and 64 lowercase hex digits of a valid public key (lowercase only, so one key has
/// one spelling and one registration CID).
pub fn check_public_id(id: &str) -> Result<(), String> {
    let lower = id
        .strip_prefix("ed25519:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(document::is_lower_hex));
    if !lower {
        return Err(format!(
            "{} is not an ed25519 public key (`ed25519:` and 64 lowercase hex digits)",
            id.chars().take(80).collect::<String>()
        ));
    }
    // Verifying an empty message with a dummy signature tells a bad key from a bad signature.
    match verify_signature(id, b"", &"00".repeat(64)) {
        Err(SignatureError::BadSigner(_)) => Err(format!(
            "{} is not an ed25519 public key (`ed25519:` and 64 hex digits)",
            id.chars().take(80).collect::<String>()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_only_for_its_namespace_and_publisher() {
        let owner = Identity::from_seed([1; 32]);
        let publisher = Identity::from_seed([2; 32]).public_id();
        let proof = NamespaceProof::sign(&owner, "example", &publisher).unwrap();
        proof.verify("example", &publisher).unwrap();
        assert!(matches!(
            proof.verify("exampl", &publisher),
            Err(RegistrationError::NamespaceProof(SignatureError::Invalid))
        ));
        let other = Identity::from_seed([3; 32]).public_id();
        assert!(proof.verify("example", &other).is_err());
    }

    #[test]
    fn proof_document_round_trips() {
        let owner = Identity::from_seed([1; 32]);
        let publisher = Identity::from_seed([2; 32]).public_id();
        let doc = NamespaceProofDocument::sign(&owner, "example", &publisher).unwrap();
        let back = NamespaceProofDocument::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        assert!(back.proof_for("example", &publisher).is_ok());
        assert!(matches!(
            back.proof_for("other", &publisher),
            Err(RegistrationError::NamespaceProofMismatch {
                field: "namespace",
                ..
            })
        ));
        assert!(NamespaceProofDocument::sign(&owner, "Bad.NS", &publisher).is_err());
        assert!(NamespaceProofDocument::sign(&owner, "example", "ed25519:zz").is_err());
    }
}
