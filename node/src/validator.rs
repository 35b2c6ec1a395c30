//! The validator role: re-executes claimed work from its evidence and signs a verdict.
//!
//! A validator never touches the network for the capability: it replays the frozen evidence the
//! claims name (a replay that asks for anything unrecorded fails). What it compares depends on the
//! manifest's validation class (DESIGN.md §8):
//! - *exact*: output CID and fuel must equal the validator's own run;
//! - *canonicalizable*: the canonical hash must equal the validator's;
//! - *non-verifiable*: only the receipt's signature and terms are checked.
//!
//! *Scoreable* needs a comparator capability and is refused for now. The verdict is signed with
//! the validator's own key, which lives only in the validator process.
//!
//! A validator may also hold a rail's release key (a [`ReleaseSigner`]): when a task's payment
//! sits in an escrow that the validator role releases, the verdict carries the signed release
//! of the accepted work, so that the key never has to live on a gateway that faces HTTP (seed
//! 000, key custody).

use std::collections::BTreeSet;
use std::sync::Arc;

use d402_core::ContentId;
use d402_core::content_id::{CanonicalJsonError, canonical_json};
use d402_host::{ContentStore, EvidenceMode, Host, ReplayBook};
use d402_registry::ValidationClass;
use libp2p::PeerId;

use crate::admission::{self, Refusal};
use crate::state::NodeState;
use crate::swarm::NetHandle;
use crate::verdict::{
    Reference, RejectedClaim, ReleaseSigner, SignedRelease, Verdict, VerdictBody,
};
use crate::wire::{Claim, ReleaseRequest, TaskResponse, ValidationRequest};

/// A running validator.
pub struct Validator {
    /// `ID@VERSION`s this node validates (`--validate`).
    pub(crate) capabilities: BTreeSet<String>,
    pub(crate) host: Arc<Host>,
    pub(crate) store: ContentStore,
    pub(crate) state: NodeState,
    pub(crate) net: NetHandle,
    pub(crate) release_signer: Option<Arc<dyn ReleaseSigner>>,
}

impl Validator {
    pub(crate) async fn validate(
        self: Arc<Self>,
        from: PeerId,
        request: ValidationRequest,
    ) -> TaskResponse {
        match self.check(from, request).await {
            Ok(verdict) => TaskResponse::Verdict(Box::new(verdict)),
            Err(refusal) => TaskResponse::Refused {
                code: refusal.code().into(),
                message: refusal.to_string(),
            },
        }
    }

    async fn check(
        self: Arc<Self>,
        from: PeerId,
        request: ValidationRequest,
    ) -> Result<Verdict, Refusal> {
        let lease = &request.lease;
        if !self.capabilities.contains(&lease.capability) {
            return Err(Refusal::NotOffered(lease.capability.clone()));
        }
        let admitted =
            admission::admit(&self.net, &self.store, &self.state, lease, &[from]).await?;
        let class = admitted.manifest.validation.class;
        let this = self.clone();
        let request_for_run = request.clone();
        let reference = match class {
            ValidationClass::Scoreable => {
                return Err(Refusal::Execution(
                    "scoreable validation needs a comparator capability, which this validator does not run".into(),
                ));
            }
            ValidationClass::NonVerifiable => None,
            ValidationClass::Exact | ValidationClass::Canonicalizable => Some(
                tokio::task::spawn_blocking(move || this.re_execute(&request_for_run, &admitted))
                    .await
                    .map_err(|e| Refusal::Execution(format!("validation task failed: {e}")))??,
            ),
        };
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut accepted_claims = Vec::new();
        for (index, claim) in request.claims.iter().enumerate() {
            let receipt_cid = claim
                .receipt
                .cid()
                .map_err(|e: CanonicalJsonError| Refusal::Execution(e.to_string()))?;
            match judge(&request, claim, class, reference.as_ref()) {
                Ok(()) => {
                    accepted.push(receipt_cid);
                    accepted_claims.push(index);
                }
                Err(reason) => rejected.push(RejectedClaim {
                    worker: claim.receipt.body.worker.clone(),
                    receipt: receipt_cid,
                    reason,
                }),
            }
        }
        let body = VerdictBody {
            task_id: request.task_id.clone(),
            capability: lease.capability.clone(),
            class,
            validator: self.host.identity().public_id(),
            reference,
            accepted,
            rejected,
            release: match (&request.release, &self.release_signer) {
                (Some(release), Some(signer)) => {
                    self.sign_release(signer.as_ref(), &request, release, &accepted_claims)
                }
                _ => None,
            },
        };
        let signature = self
            .host
            .identity()
            .sign(&canonical_json(&body).map_err(|e| Refusal::Execution(e.to_string()))?);
        Ok(Verdict { body, signature })
    }

    /// The signed release, or `None` (logged) when the signer does not sign this context or
    /// refuses it: the verdict still stands, and the rail falls back to its refund.
    fn sign_release(
        &self,
        signer: &dyn ReleaseSigner,
        request: &ValidationRequest,
        release: &ReleaseRequest,
        accepted: &[usize],
    ) -> Option<SignedRelease> {
        let task_id = request.task_id.as_str();
        // Only claims this validator accepted are paid, each where its worker itself said,
        // never where the coordinator says.
        let mut wallets = Vec::new();
        let mut seen = Vec::new();
        for &index in &release.claims {
            // A claim named twice is still one worker's one share.
            if seen.contains(&index) || !accepted.contains(&index) {
                continue;
            }
            seen.push(index);
            let Some(claim) = request.claims.get(index) else {
                continue;
            };
            match claim.verify_payout() {
                Ok(()) => wallets.push(claim.payout_wallets.clone()),
                Err(e) => tracing::warn!(task = task_id, "claim {index} not paid: {e}"),
            }
        }
        if wallets.is_empty() {
            tracing::warn!(
                task = task_id,
                "release not signed: no accepted claim to pay"
            );
            return None;
        }
        match signer.sign_release(task_id, &release.context, &wallets) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!(task = task_id, "release not signed: {e}");
                None
            }
        }
    }

    /// Replays the task from the claims' evidence; never goes to the network.
    fn re_execute(
        &self,
        request: &ValidationRequest,
        admitted: &admission::Admitted,
    ) -> Result<Reference, Refusal> {
        let evidence = if request.lease.evidence.is_empty() {
            request
                .claims
                .first()
                .map(|c| c.receipt.body.evidence.clone())
                .unwrap_or_default()
        } else {
            request.lease.evidence.clone()
        };
        let book = ReplayBook::load(&self.store, &evidence)
            .map_err(|e| Refusal::Execution(format!("evidence: {e}")))?;
        let execution = crate::execution::run(
            &self.host,
            &self.store,
            &request.lease,
            admitted,
            EvidenceMode::Replay(book),
            false,
        )?;
        Ok(Reference {
            output: execution.receipt.body.output,
            canonical_output: execution.receipt.body.canonical_output,
            fuel_used: execution.receipt.body.fuel_used,
        })
    }
}

/// Whether one claim holds up against the lease and the validator's own run.
pub(crate) fn judge(
    request: &ValidationRequest,
    claim: &Claim,
    class: ValidationClass,
    reference: Option<&Reference>,
) -> Result<(), String> {
    let receipt = &claim.receipt;
    receipt
        .verify()
        .map_err(|e| format!("receipt does not verify: {e}"))?;
    let body = &receipt.body;
    let lease = &request.lease;
    if body.task.id != lease.task_id || body.task.timestamp_ms != lease.timestamp_ms {
        return Err("receipt is for another task".into());
    }
    if body.implementation != lease.implementation {
        return Err(format!(
            "ran implementation {}, leased {}",
            body.implementation, lease.implementation
        ));
    }
    if body.input != ContentId::of(lease.input.as_bytes()) {
        return Err("ran another input".into());
    }
    if body.output != ContentId::of(claim.output.as_bytes()) {
        return Err("claimed output does not match its receipt".into());
    }
    match (class, reference) {
        (ValidationClass::Exact, Some(r)) => {
            if body.output != r.output {
                return Err(format!(
                    "output {} != re-executed {}",
                    body.output, r.output
                ));
            }
            if body.fuel_used != r.fuel_used {
                return Err(format!(
                    "fuel {} != re-executed {}",
                    body.fuel_used, r.fuel_used
                ));
            }
        }
        (ValidationClass::Canonicalizable, Some(r))
            if body.canonical_output != r.canonical_output =>
        {
            return Err(format!(
                "canonical output {} != re-executed {}",
                body.canonical_output, r.canonical_output
            ));
        }
        _ => {}
    }
    Ok(())
}
