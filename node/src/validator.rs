//! The validator role: re-executes claimed work from its evidence and signs a verdict.
//!
//! A validator never touches the network for the capability: it replays the frozen evidence the
//! claims name (a replay that asks for anything unrecorded fails). What it compares depends on the
//! manifest's validation class (DESIGN.md §8):
//! - *exact*: output CID and fuel must equal the validator's own run;
//! - *canonicalizable*: the canonical hash must equal the validator's;
//! - *scoreable*: every pair of claims' outputs is scored by the comparator capability the
//!   manifest names (run here, in the host, under its own manifest's limits; see
//!   [`d402_comparator`]); the claims around the one that agrees with the most others are
//!   accepted if they are a strict majority, the rest rejected as outliers;
//! - *non-verifiable*: only the receipt's signature and terms are checked.
//!
//! The verdict is signed with the validator's own key, which lives only in the validator
//! process. A comparator that traps, runs out of fuel, or answers anything but a well-formed
//! score matrix is a refusal: no task is ever accepted on a broken comparator's word.
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
    Reference, RejectedClaim, ReleaseSigner, Scoring, SignedRelease, SnapshotCheck, Verdict,
    VerdictBody,
};
use crate::wire::{Claim, ComparatorRef, Lease, ReleaseRequest, TaskResponse, ValidationRequest};

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
        let comparator = match class {
            ValidationClass::Scoreable => {
                Some(self.scoreable_comparator(from, &request, &admitted).await?)
            }
            _ => None,
        };
        let snapshot_comparator = match &request.snapshot_check {
            Some(check) => Some(
                self.admit_comparator(from, &request, &check.comparator, check.threshold)
                    .await?,
            ),
            None => None,
        };
        let reference = match class {
            ValidationClass::Scoreable | ValidationClass::NonVerifiable => None,
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
        let scoring = match comparator {
            Some(comparator) => {
                let this = self.clone();
                let for_run = request.clone();
                let candidates = accepted_claims.clone();
                let scored = tokio::task::spawn_blocking(move || {
                    this.score(&for_run, &candidates, comparator)
                })
                .await
                .map_err(|e| Refusal::Execution(format!("comparator task failed: {e}")))??;
                // Only the agreeing cluster stays accepted; the outliers are rejected with
                // their best score against it.
                let (mut kept, mut kept_receipts) = (Vec::new(), Vec::new());
                for (position, (&index, &receipt)) in
                    accepted_claims.iter().zip(&accepted).enumerate()
                {
                    if scored.members.contains(&position) {
                        kept.push(index);
                        kept_receipts.push(receipt);
                        continue;
                    }
                    let best = scored
                        .members
                        .iter()
                        .map(|&m| scored.scoring.scores[position][m])
                        .max()
                        .unwrap_or(0);
                    rejected.push(RejectedClaim {
                        worker: request.claims[index].receipt.body.worker.clone(),
                        receipt,
                        reason: if scored.members.is_empty() {
                            format!(
                                "no strict majority of claims scored {} or more with each other",
                                scored.scoring.threshold
                            )
                        } else {
                            format!(
                                "outlier: scored at most {best} against the agreeing claims, under the threshold {}",
                                scored.scoring.threshold
                            )
                        },
                    });
                }
                accepted = kept_receipts;
                accepted_claims = kept;
                Some(scored.scoring)
            }
            None => None,
        };
        let snapshot_check = match (snapshot_comparator, accepted_claims.first()) {
            (Some(comparison), Some(&agreed)) => {
                let this = self.clone();
                let for_run = request.clone();
                tokio::task::spawn_blocking(move || {
                    this.check_snapshot(&for_run, agreed, comparison)
                })
                .await
                .map_err(|e| Refusal::Execution(format!("comparator task failed: {e}")))??
            }
            _ => None,
        };
        let body = VerdictBody {
            task_id: request.task_id.clone(),
            capability: lease.capability.clone(),
            class,
            assurance: class.verdict_assurance(),
            validator: self.host.identity().public_id(),
            reference,
            accepted,
            rejected,
            scoring,
            snapshot_check,
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

    /// The comparator of a scoreable capability: the request must name the one the manifest
    /// names.
    async fn scoreable_comparator(
        &self,
        from: PeerId,
        request: &ValidationRequest,
        admitted: &admission::Admitted,
    ) -> Result<Comparison, Refusal> {
        let validation = &admitted.manifest.validation;
        let (Some(wanted), Some(threshold)) = (&validation.comparator, validation.threshold) else {
            return Err(Refusal::Execution(
                "the scoreable manifest names no comparator or threshold".into(),
            ));
        };
        let Some(named) = &request.comparator else {
            return Err(Refusal::Execution(format!(
                "scoreable validation needs the comparator {wanted}, and the request names none"
            )));
        };
        if &named.capability != wanted {
            return Err(Refusal::Execution(format!(
                "the request names comparator {}, the manifest {wanted}",
                named.capability
            )));
        }
        self.admit_comparator(from, request, named, threshold).await
    }

    /// Fetches and checks a comparator: it must be *exact* and pure (no snapshot, no egress),
    /// so that its scores are themselves re-executable bit for bit.
    async fn admit_comparator(
        &self,
        from: PeerId,
        request: &ValidationRequest,
        named: &ComparatorRef,
        threshold: u32,
    ) -> Result<Comparison, Refusal> {
        let wanted = &named.capability;
        let lease = Lease {
            lease_id: format!("{}/compare", request.task_id),
            task_id: format!("{}/compare", request.task_id),
            capability: named.capability.clone(),
            registration: named.registration,
            manifest: named.manifest,
            implementation: named.implementation,
            input: String::new(),
            timestamp_ms: request.lease.timestamp_ms,
            expires_at_ms: u64::MAX,
            evidence: Vec::new(),
            evidence_objects: Vec::new(),
        };
        let comparator =
            admission::admit(&self.net, &self.store, &self.state, &lease, &[from]).await?;
        let manifest = &comparator.manifest;
        if manifest.validation.class != ValidationClass::Exact
            || manifest.permissions.snapshot
            || !manifest.permissions.egress_hosts.is_empty()
        {
            return Err(Refusal::Execution(format!(
                "comparator {wanted} must be exact and read nothing outside its input"
            )));
        }
        Ok(Comparison {
            lease,
            admitted: comparator,
            threshold,
        })
    }

    /// Runs the comparator over the outputs of `candidates` (indexes into the request's
    /// claims) and finds the agreeing cluster. Any failure of the comparator is a refusal.
    fn score(
        &self,
        request: &ValidationRequest,
        candidates: &[usize],
        mut comparison: Comparison,
    ) -> Result<Scored, Refusal> {
        if candidates.len() < 2 {
            return Err(Refusal::Execution(format!(
                "scoreable validation compares at least two valid claims, got {}",
                candidates.len()
            )));
        }
        let outputs: Vec<String> = candidates
            .iter()
            .map(|&i| request.claims[i].output.clone())
            .collect();
        let (scores, fuel_used) = self.compare(&mut comparison, outputs)?;
        let cluster = scores.cluster(comparison.threshold, 1);
        let (members, center) = match &cluster {
            Some(c) => (c.members.clone(), c.center),
            None => (Vec::new(), 0),
        };
        let delivered = request.claims[candidates[center]]
            .receipt
            .cid()
            .map_err(|e| Refusal::Execution(e.to_string()))?;
        Ok(Scored {
            members,
            scoring: Scoring {
                comparator: comparison.lease.capability.clone(),
                implementation: comparison.lease.implementation,
                threshold: comparison.threshold,
                scores: scores.scores,
                fuel_used,
                delivered,
            },
        })
    }

    /// Runs the comparator over `outputs`; any failure of the comparator, or an answer that
    /// breaks the contract, is a refusal.
    fn compare(
        &self,
        comparison: &mut Comparison,
        outputs: Vec<String>,
    ) -> Result<(d402_comparator::Scores, u64), Refusal> {
        let n = outputs.len();
        comparison.lease.input = d402_comparator::Candidates {
            candidates: outputs,
        }
        .to_json();
        let capability = comparison.lease.capability.clone();
        let failed = |e: String| Refusal::Execution(format!("comparator {capability}: {e}"));
        let execution = crate::execution::run(
            &self.host,
            &self.store,
            &comparison.lease,
            &comparison.admitted,
            EvidenceMode::Replay(ReplayBook::default()),
            false,
        )
        .map_err(|e| failed(e.to_string()))?;
        let scores = d402_comparator::Scores::from_output(&execution.output, n)
            .map_err(|e| failed(e.to_string()))?;
        Ok((scores, execution.receipt.body.fuel_used))
    }

    /// Compares the agreed output (claim `agreed`) with the independent worker's run on its own
    /// freeze. `None` when the independent claim itself does not hold up (a broken checker says
    /// nothing about the freezer).
    fn check_snapshot(
        &self,
        request: &ValidationRequest,
        agreed: usize,
        mut comparison: Comparison,
    ) -> Result<Option<SnapshotCheck>, Refusal> {
        let Some(check) = &request.snapshot_check else {
            return Ok(None);
        };
        if let Err(reason) = judge(request, &check.claim, ValidationClass::NonVerifiable, None) {
            tracing::warn!(task = request.task_id, "snapshot check not made: {reason}");
            return Ok(None);
        }
        let outputs = vec![
            request.claims[agreed].output.clone(),
            check.claim.output.clone(),
        ];
        let (scores, fuel_used) = self.compare(&mut comparison, outputs)?;
        let score = scores.scores[0][1];
        Ok(Some(SnapshotCheck {
            comparator: comparison.lease.capability.clone(),
            implementation: comparison.lease.implementation,
            threshold: comparison.threshold,
            score,
            fuel_used,
            checker: check.claim.receipt.body.worker.clone(),
            receipt: check
                .claim
                .receipt
                .cid()
                .map_err(|e| Refusal::Execution(e.to_string()))?,
            passed: score >= comparison.threshold,
        }))
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

/// A comparator admitted for one validation.
struct Comparison {
    lease: Lease,
    admitted: admission::Admitted,
    threshold: u32,
}

/// What the comparator said: the agreeing cluster (positions among the scored claims; empty
/// when no strict majority agrees) and the scores for the verdict.
struct Scored {
    members: Vec<usize>,
    scoring: Scoring,
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
