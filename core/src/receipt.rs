//! Receipts: a worker's signed statement of what it ran, on what, with what result and cost.
//!
//! The signature covers the RFC 8785 bytes of every field but `signature`, so changing any field
//! (the fuel count, one evidence CID, the worker) breaks it. Fuel is deterministic, so a validator
//! that replays the run compares it exactly, along with the output CID.

use serde::{Deserialize, Serialize};

use crate::canonical::Canonicalizer;
use crate::content_id::{CanonicalJsonError, ContentId, canonical_json};
use crate::identity::{Identity, SignatureError, verify_signature};

/// Which capability a receipt is for, when it is known (a bare `d402 run --wasm` does not know).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityRef {
    pub id: String,
    pub version: String,
}

impl std::fmt::Display for CapabilityRef {
    /// `ID@VERSION`, as offers and leases name capabilities.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.version)
    }
}

/// The deterministic context of a task: the clock the capability sees and the seed of its
/// randomness both come from here, so a replay must use the same values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskContext {
    pub id: String,
    /// Milliseconds since the Unix epoch; the capability's wall clock is frozen at this instant.
    pub timestamp_ms: u64,
}

/// The limits a run was held to: a replay must use the same ones to get the same result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsRecord {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub wall_time_ms: u64,
    pub output_bytes: u64,
}

/// Everything a receipt states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptBody {
    /// Format version of this receipt.
    pub d402_receipt: u32,
    pub capability: Option<CapabilityRef>,
    pub manifest: Option<ContentId>,
    pub implementation: ContentId,
    pub input: ContentId,
    pub task: TaskContext,
    pub limits: LimitsRecord,
    /// Evidence record CIDs, in the order the imports were called.
    pub evidence: Vec<ContentId>,
    pub output: ContentId,
    pub canonicalizer: Canonicalizer,
    /// CID of the output's canonical bytes: what a quorum compares.
    pub canonical_output: ContentId,
    pub fuel_used: u64,
    pub peak_memory_bytes: u64,
    /// Measured, not deterministic; informational.
    pub wall_time_us: u64,
    /// `ed25519:<hex>` of the worker that ran the task.
    pub worker: String,
}

/// A signed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    #[serde(flatten)]
    pub body: ReceiptBody,
    /// Hex ed25519 signature by `worker` over the canonical bytes of the body.
    pub signature: String,
}

/// A receipt that does not hold up.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt is not valid JSON: {0}")]
    Malformed(String),
    #[error("receipt signature: {0}")]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Canonical(#[from] CanonicalJsonError),
}

impl ReceiptBody {
    /// Signs the body as `identity`, which must be the body's `worker`.
    pub fn sign(mut self, identity: &Identity) -> Result<Receipt, CanonicalJsonError> {
        self.worker = identity.public_id();
        let signature = identity.sign(&canonical_json(&self)?);
        Ok(Receipt {
            body: self,
            signature,
        })
    }
}

impl Receipt {
    /// Checks the signature against the `worker` the receipt names.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let message = canonical_json(&self.body)?;
        verify_signature(&self.body.worker, &message, &self.signature)?;
        Ok(())
    }

    /// Parses and verifies a receipt.
    pub fn from_json(text: &str) -> Result<Self, ReceiptError> {
        let receipt: Receipt =
            serde_json::from_str(text).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        receipt.verify()?;
        Ok(receipt)
    }

    /// The receipt's own CID (of its canonical form, signature included).
    pub fn cid(&self) -> Result<ContentId, CanonicalJsonError> {
        Ok(ContentId::of(&canonical_json(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ReceiptBody {
        let cid = ContentId::of(b"x");
        ReceiptBody {
            d402_receipt: 1,
            capability: Some(CapabilityRef {
                id: "t.echo".into(),
                version: "1".into(),
            }),
            manifest: None,
            implementation: cid,
            input: cid,
            task: TaskContext {
                id: "t1".into(),
                timestamp_ms: 1,
            },
            limits: LimitsRecord {
                fuel: 1,
                memory_bytes: 1,
                wall_time_ms: 1,
                output_bytes: 1,
            },
            evidence: vec![cid],
            output: cid,
            canonicalizer: Canonicalizer::Jcs,
            canonical_output: cid,
            fuel_used: 42,
            peak_memory_bytes: 65536,
            wall_time_us: 10,
            worker: String::new(),
        }
    }

    #[test]
    fn signed_receipt_round_trips_and_verifies() {
        let id = Identity::from_seed([1; 32]);
        let receipt = body().sign(&id).unwrap();
        let text = serde_json::to_string(&receipt).unwrap();
        let back = Receipt::from_json(&text).unwrap();
        assert_eq!(back, receipt);
        assert_eq!(back.body.worker, id.public_id());
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let id = Identity::from_seed([1; 32]);
        let receipt = body().sign(&id).unwrap();
        let mut tampered = receipt.clone();
        tampered.body.fuel_used += 1;
        assert!(matches!(
            tampered.verify(),
            Err(ReceiptError::Signature(SignatureError::Invalid))
        ));
        let mut tampered = receipt.clone();
        tampered.body.evidence.push(ContentId::of(b"y"));
        assert!(tampered.verify().is_err());
        let mut tampered = receipt;
        tampered.body.worker = Identity::from_seed([2; 32]).public_id();
        assert!(tampered.verify().is_err());
    }
}
