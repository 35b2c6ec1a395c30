//! A validator's verdict: what it accepted and rejected, the reference it computed, and the
//! rail release it signed, under the validator's own signature. Its own file because the wire
//! protocol carries it ([`crate::wire`]) and the validator role produces it
//! ([`crate::validator`]); neither depends on the other for it.

use d402_core::ContentId;
use d402_core::content_id::canonical_json;
use d402_core::identity::verify_signature;
use d402_registry::ValidationClass;
use d402_registry::validation::Assurance;
use serde::{Deserialize, Serialize};

/// Signs a rail's release of a task's held payment, for work this validator accepted.
pub trait ReleaseSigner: Send + Sync {
    /// The release of the payment `context` describes, for task `task_id`, shared by the workers
    /// paid at `payout_wallets` (one entry per accepted claim, in order). `Ok(None)`: not a
    /// context this signer signs. `Err`: one it refuses (a context for another task, no worker
    /// with a wallet on its chain).
    fn sign_release(
        &self,
        task_id: &str,
        context: &serde_json::Value,
        payout_wallets: &[d402_registry::CreatorWallets],
    ) -> Result<Option<SignedRelease>, String>;
}

/// A release signed by the validator role: shared by `workers`, with the rail's own signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedRelease {
    /// The wallets the release pays, on the rail's chain, in the order signed.
    pub workers: Vec<String>,
    /// The rail's signature (hex), e.g. the EIP-712 release of `base-task-escrow`.
    pub signature: String,
}

/// What the validator computed itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reference {
    pub output: ContentId,
    pub canonical_output: ContentId,
    pub fuel_used: u64,
}

/// How a scoreable task's claims were compared: enough for anyone holding the comparator's
/// component to rerun the comparison and get the same scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scoring {
    /// The comparator, `ID@VERSION`.
    pub comparator: String,
    /// The comparator's implementation CID: what was run.
    pub implementation: ContentId,
    /// The manifest's threshold, in millionths.
    pub threshold: u32,
    /// `scores[i][j]`, in millionths, between the outputs of claims `i` and `j` (the request's
    /// order).
    pub scores: Vec<Vec<u32>>,
    /// The comparator's fuel: a rerun burns the same.
    pub fuel_used: u64,
    /// The receipt of the claim delivered: the one closest to the most others.
    pub delivered: ContentId,
}

/// The result of an honest-snapshot check: how the agreed output compares with an independent
/// worker's run on its own freeze of the same page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotCheck {
    pub comparator: String,
    pub implementation: ContentId,
    pub threshold: u32,
    /// The comparator's score between the agreed output and the independent one.
    pub score: u32,
    pub fuel_used: u64,
    /// `ed25519:<hex>` of the independent worker, and its receipt.
    pub checker: String,
    pub receipt: ContentId,
    /// `score >= threshold`: the frozen evidence holds up.
    pub passed: bool,
}

/// A claim the validator did not accept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectedClaim {
    /// `ed25519:<hex>` of the worker that made the claim.
    pub worker: String,
    pub receipt: ContentId,
    pub reason: String,
}

/// The signed part of a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerdictBody {
    pub task_id: String,
    pub capability: String,
    pub class: ValidationClass,
    /// What the verdict promises about the accepted output (see [`Assurance`]).
    pub assurance: Assurance,
    /// `ed25519:<hex>` of the validator.
    pub validator: String,
    /// The validator's own run; `None` for classes that are not re-executed.
    pub reference: Option<Reference>,
    /// CIDs of the receipts that hold up.
    pub accepted: Vec<ContentId>,
    pub rejected: Vec<RejectedClaim>,
    /// For a scoreable capability: the comparator's scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<Scoring>,
    /// The honest-snapshot check, when one was asked for and could be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_check: Option<SnapshotCheck>,
    /// The signed release of the held payment to the accepted worker, when one was asked of a
    /// validator holding the rail's release key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<SignedRelease>,
}

/// A verdict signed by a validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verdict {
    #[serde(flatten)]
    pub body: VerdictBody,
    pub signature: String,
}

impl Verdict {
    /// Checks the validator's signature.
    pub fn verify(&self) -> Result<(), String> {
        let message = canonical_json(&self.body).map_err(|e| e.to_string())?;
        verify_signature(&self.body.validator, &message, &self.signature).map_err(|e| e.to_string())
    }
}
