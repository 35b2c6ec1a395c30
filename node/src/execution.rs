//! Running an admitted lease in the host: the same code for a worker's live run, a quorum
//! worker's replay and a validator's re-execution, so the three can only differ in where the
//! evidence comes from.

use d402_core::TaskContext;
use d402_host::{ContentStore, EvidenceMode, Execution, Host, Task};

use crate::admission::{Admitted, Refusal};
use crate::wire::Lease;

/// Runs `lease` and stores everything the run produced (input, output, evidence), so it can be
/// served to peers and replayed.
pub fn run(
    host: &Host,
    store: &ContentStore,
    lease: &Lease,
    admitted: &Admitted,
    evidence: EvidenceMode,
    allow_private_targets: bool,
) -> Result<Execution, Refusal> {
    let manifest = &admitted.manifest;
    host.load(&lease.implementation, &admitted.component)
        .map_err(|e| Refusal::Component(e.to_string()))?;
    let mut egress = manifest.permissions.egress_policy();
    egress.allow_private_targets = allow_private_targets;
    let execution = host
        .execute(Task {
            implementation: lease.implementation,
            input: &lease.input,
            context: TaskContext {
                id: lease.task_id.clone(),
                timestamp_ms: lease.timestamp_ms,
            },
            limits: manifest.limits.into(),
            egress,
            evidence,
            canonicalizer: manifest.validation.effective_canonicalizer(),
            capability: Some(manifest.capability_ref()),
            manifest: Some(lease.manifest),
        })
        .map_err(|e| Refusal::Execution(format!("{}: {e}", e.code())))?;
    execution
        .objects
        .persist(store)
        .map_err(|e| Refusal::Execution(format!("storing evidence: {e}")))?;
    Ok(execution)
}
