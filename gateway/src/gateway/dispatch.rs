//! Dispatch: a settled task sent into the peer network, and its outcome recorded.
//!
//! The listing decides mode, fanout and quorum; the policy decides deadline and budget; the
//! rail may send a release context for the validator to sign (a task escrow whose key is not
//! here). An accepted result is committed `Validated` with its receipts, verdict and the
//! agreeing workers' wallets on the rail's chain, then delivered; a failed run is refunded.

use d402_node::TaskSpec;
use d402_registry::ValidationClass;
use d402_registry::wallet::Rail as WalletFamily;

use super::policy::SnapshotFailure;
use super::{Gateway, GatewayError, TaskRecord, TaskState};

impl Gateway {
    /// Runs a settled task through the network, then delivers it or arranges the refund.
    pub(super) async fn run(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        if record.state == TaskState::Settled {
            let listing = self.listing(&record.capability)?.clone();
            let spec = TaskSpec {
                mode: listing.mode,
                fanout: listing.fanout,
                quorum: listing.quorum,
                deadline: self.policy.task_deadline,
                budget: u64::try_from(self.policy.worker_budget.get()).unwrap_or(u64::MAX),
                release: self.rail.release_context(&record.requirements),
                comparator: listing.comparator.clone(),
                snapshot_check: self.snapshot_check.clone(),
                workers: match listing.offer.manifest.validation.class {
                    ValidationClass::NonVerifiable | ValidationClass::Scoreable => {
                        self.policy.unverifiable_workers.clone()
                    }
                    ValidationClass::Exact | ValidationClass::Canonicalizable => {
                        d402_node::WorkerPolicy::default()
                    }
                },
                ..TaskSpec::new(record.id.clone(), record.input.clone(), &listing.offer)
            };
            self.metrics.inc(&self.metrics.tasks_dispatched);
            match self.coordinator.submit(&listing.offer, spec).await {
                Ok(outcome)
                    if outcome.snapshot_disputed.is_some()
                        && self.policy.snapshot_check.map(|c| c.on_failure)
                            != Some(SnapshotFailure::DeliverDisputed) =>
                {
                    self.metrics.inc(&self.metrics.snapshot_checks_failed);
                    record.error = outcome.snapshot_disputed;
                    return self.fail(record).await;
                }
                Ok(outcome) if outcome.output.len() <= self.policy.max_output_bytes => {
                    if outcome.snapshot_disputed.is_some() {
                        self.metrics.inc(&self.metrics.snapshot_checks_failed);
                    }
                    record.disputed = outcome.snapshot_disputed.clone();
                    record.output = Some(outcome.output.clone());
                    record.receipts = outcome
                        .receipts
                        .iter()
                        .filter_map(|r| serde_json::to_value(r).ok())
                        .collect();
                    record.verdict = outcome
                        .verdict
                        .as_ref()
                        .and_then(|v| serde_json::to_value(v).ok());
                    record.assurance = Some(outcome.assurance());
                    // The workers' wallets on the rail's own chain.
                    let family = WalletFamily::of_namespace(self.rail.payout_network().namespace());
                    record.worker_wallets = outcome
                        .payout_wallets
                        .iter()
                        .filter_map(|w| Some(w.get(family?)?.to_string()))
                        .collect();
                    record.worker_wallet = record.worker_wallets.first().cloned();
                    self.transition(&mut record, TaskState::Validated)?;
                }
                Ok(outcome) => {
                    record.error = Some(format!(
                        "output of {} bytes exceeds the gateway's limit of {}",
                        outcome.output.len(),
                        self.policy.max_output_bytes
                    ));
                    return self.fail(record).await;
                }
                Err(e) => {
                    record.error = Some(e.to_string());
                    return self.fail(record).await;
                }
            }
        }
        if record.state == TaskState::Validated {
            self.deliver(record).await?;
        }
        Ok(())
    }
}
