//! Registrations: the publisher's signed statement that a manifest CID is theirs, in a namespace
//! they may use, with the commission (in basis points of accepted gross worker payout) and the
//! creator wallets per rail that a compliant gateway pays it to.
//!
//! ```json
//! {"manifest": "bafkr4i…", "namespace": "example",
//!  "namespaceProof": {"owner": "ed25519:…", "signature": "…"},
//!  "publisher": "ed25519:…", "creatorCommissionBps": 1000,
//!  "creatorWallets": {"solana": "…", "evm": "0x…"},
//!  "issuedAt": 1767225600000, "signature": "…"}
//! ```
//!
//! `issuedAt` is milliseconds since the Unix epoch (an integer, like receipts' `timestampMs`).
//! The signature covers the RFC 8785 bytes of every field but `signature` (as receipts do), so
//! changing any term (commission, a wallet, the manifest CID, the namespace) breaks it; the
//! registration CID is the CID of the canonical full object, signature included.

use d402_core::ContentId;
use d402_core::content_id::{CanonicalJsonError, canonical_json};
use d402_core::identity::{Identity, verify_signature};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::document::{self, Problems};
use crate::error::{DocumentError, RegistrationError};
use crate::manifest::Manifest;
use crate::namespace::{NamespaceProof, NamespaceProofDocument, check_namespace, check_public_id};
use crate::schema::MAX_SAFE_INTEGER;
use crate::wallet::CreatorWallets;

const WHAT: &str = "registration";

/// 100% in basis points.
pub const MAX_BPS: u32 = 10_000;

/// Everything a registration states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationBody {
    /// The manifest CID these terms apply to (and only it: forks and new versions register anew).
    pub manifest: ContentId,
    /// The first segment of the manifest id.
    pub namespace: String,
    /// The namespace owner's proof that `publisher` may publish in `namespace`; `null` if none.
    pub namespace_proof: Option<NamespaceProof>,
    /// `ed25519:<hex>` of the publisher, who signs the registration.
    pub publisher: String,
    /// Commission in basis points of accepted gross worker payout (1000 = 10%), at most 10000.
    pub creator_commission_bps: u32,
    pub creator_wallets: CreatorWallets,
    /// Milliseconds since the Unix epoch.
    pub issued_at: u64,
}

/// A signed registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    #[serde(flatten)]
    pub body: RegistrationBody,
    /// Hex ed25519 signature by `publisher` over the canonical bytes of the body.
    pub signature: String,
}

impl RegistrationBody {
    /// Field checks: namespace and key syntax, commission range, wallets per rail.
    pub fn validate(&self) -> Result<(), DocumentError> {
        let mut p = Problems::default();
        self.check(&mut p);
        p.into_result(WHAT)
    }

    fn check(&self, p: &mut Problems) {
        if let Err(e) = check_namespace(&self.namespace) {
            p.add("/namespace", e);
        }
        if let Some(proof) = &self.namespace_proof {
            if let Err(e) = check_public_id(&proof.owner) {
                p.add("/namespaceProof/owner", e);
            }
            if let Err(e) = check_signature_hex(&proof.signature) {
                p.add("/namespaceProof/signature", e);
            }
        }
        if let Err(e) = check_public_id(&self.publisher) {
            p.add("/publisher", e);
        }
        if self.creator_commission_bps > MAX_BPS {
            p.add(
                "/creatorCommissionBps",
                format!(
                    "{} basis points is more than 100% ({MAX_BPS})",
                    self.creator_commission_bps
                ),
            );
        }
        for (rail, e) in self.creator_wallets.check() {
            p.add(format!("/creatorWallets/{rail}"), e);
        }
        if self.issued_at > MAX_SAFE_INTEGER {
            p.add(
                "/issuedAt",
                "must be at most 2^53-1 milliseconds since the Unix epoch",
            );
        }
    }

    /// Signs the body as `publisher`, which becomes the body's `publisher`.
    pub fn sign(mut self, publisher: &Identity) -> Result<Registration, RegistrationError> {
        self.publisher = publisher.public_id();
        self.validate()?;
        let signature = publisher.sign(&canonical_json(&self)?);
        Ok(Registration {
            body: self,
            signature,
        })
    }
}

fn check_signature_hex(signature: &str) -> Result<(), String> {
    // Lowercase only: `AB` and `ab` decode to the same bytes, so accepting both would let anyone
    // change a registration's CID without breaking its signature.
    if signature.len() == 128 && signature.bytes().all(document::is_lower_hex) {
        Ok(())
    } else {
        Err("is not an ed25519 signature (128 lowercase hex digits)".into())
    }
}

/// The terms an author registers a manifest under.
#[derive(Debug, Clone)]
pub struct Terms {
    pub namespace: String,
    /// The owner's proof; without one, the publisher vouches for itself (which a gateway accepts
    /// only if the publisher is the namespace's trusted owner).
    pub namespace_proof: Option<NamespaceProofDocument>,
    pub creator_commission_bps: u32,
    pub creator_wallets: CreatorWallets,
    pub issued_at: u64,
}

/// Registers `manifest` under `terms`, signed by `publisher`.
pub fn register(
    manifest: &Manifest,
    publisher: &Identity,
    terms: Terms,
) -> Result<Registration, RegistrationError> {
    manifest.validate()?;
    if terms.namespace != manifest.namespace() {
        return Err(RegistrationError::NamespaceMismatch {
            namespace: terms.namespace,
            id: manifest.id.clone(),
        });
    }
    let publisher_id = publisher.public_id();
    let proof = match &terms.namespace_proof {
        Some(doc) => {
            let proof = doc.proof_for(&terms.namespace, &publisher_id)?;
            proof.verify(&terms.namespace, &publisher_id)?;
            proof
        }
        None => NamespaceProof::sign(publisher, &terms.namespace, &publisher_id)?,
    };
    RegistrationBody {
        manifest: manifest.cid()?,
        namespace: terms.namespace,
        namespace_proof: Some(proof),
        publisher: publisher_id,
        creator_commission_bps: terms.creator_commission_bps,
        creator_wallets: terms.creator_wallets,
        issued_at: terms.issued_at,
    }
    .sign(publisher)
}

impl Registration {
    /// Reads a registration: size, JSON, field types and field checks. Does not verify the
    /// signature; call [`Registration::verify`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, DocumentError> {
        Self::from_value(document::read_json(bytes, WHAT)?)
    }

    /// Like [`Registration::from_json`], from a parsed value.
    pub fn from_value(value: Value) -> Result<Self, DocumentError> {
        let Value::Object(mut map) = value else {
            let mut p = Problems::default();
            p.add("", "a registration is a JSON object");
            return Err(p.into_result(WHAT).unwrap_err());
        };
        let signature = map.remove("signature");
        let body: RegistrationBody = document::typed(Value::Object(map), WHAT)?;
        let mut p = Problems::default();
        body.check(&mut p);
        let signature = match signature {
            Some(Value::String(s)) => {
                if let Err(e) = check_signature_hex(&s) {
                    p.add("/signature", e);
                }
                s
            }
            Some(_) => {
                p.add("/signature", "must be a string (128 hex digits)");
                String::new()
            }
            None => {
                p.add("/signature", "is required (a hex ed25519 signature)");
                String::new()
            }
        };
        p.into_result(WHAT)?;
        Ok(Self { body, signature })
    }

    /// Checks the publisher's signature, then the namespace proof's (if any). Whether the
    /// namespace owner is trusted is for [`crate::policy`] to decide.
    pub fn verify(&self) -> Result<(), RegistrationError> {
        self.verify_signature()?;
        if let Some(proof) = &self.body.namespace_proof {
            proof.verify(&self.body.namespace, &self.body.publisher)?;
        }
        Ok(())
    }

    /// Checks the publisher's signature only.
    pub fn verify_signature(&self) -> Result<(), RegistrationError> {
        let message = canonical_json(&self.body)?;
        verify_signature(&self.body.publisher, &message, &self.signature)
            .map_err(RegistrationError::Signature)
    }

    /// Checks that `manifest` is the one registered, and in the registered namespace.
    pub fn check_manifest(&self, manifest: &Manifest) -> Result<(), RegistrationError> {
        let actual = manifest.cid()?;
        if actual != self.body.manifest {
            return Err(RegistrationError::ManifestCidMismatch {
                registered: self.body.manifest,
                actual,
            });
        }
        if manifest.namespace() != self.body.namespace {
            return Err(RegistrationError::NamespaceMismatch {
                namespace: self.body.namespace.clone(),
                id: manifest.id.clone(),
            });
        }
        Ok(())
    }

    /// The registration CID: of the canonical full object, signature included.
    pub fn cid(&self) -> Result<ContentId, CanonicalJsonError> {
        Ok(ContentId::of(&canonical_json(self)?))
    }
}

impl<'de> Deserialize<'de> for Registration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Registration::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Manifest {
    /// Checks that `component` is the implementation this manifest names.
    pub fn check_component(&self, component: &[u8]) -> Result<(), RegistrationError> {
        self.implementation.cid.verify(component).map_err(|e| {
            RegistrationError::ImplementationCidMismatch {
                expected: e.expected,
                actual: e.actual,
            }
        })
    }
}
