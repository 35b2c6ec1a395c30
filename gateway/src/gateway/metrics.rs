//! `/metrics`: counters of the money flow in the Prometheus text format. Plain atomics: the
//! gateway counts a handful of events and needs no registry.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub challenges: AtomicU64,
    pub challenges_refused: AtomicU64,
    pub payments_verified: AtomicU64,
    pub payments_refused: AtomicU64,
    pub payments_settled: AtomicU64,
    pub replays_refused: AtomicU64,
    pub idempotent_replays: AtomicU64,
    pub tasks_dispatched: AtomicU64,
    pub tasks_delivered: AtomicU64,
    pub tasks_failed: AtomicU64,
    pub tasks_refunded: AtomicU64,
    pub payout_batches_paid: AtomicU64,
    pub payment_id_conflicts: AtomicU64,
    pub release_errors: AtomicU64,
    pub refund_errors: AtomicU64,
    pub payout_errors: AtomicU64,
    pub snapshot_checks_failed: AtomicU64,
}

impl Metrics {
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter with its Prometheus name and help text.
    fn rows(&self) -> [(&'static str, &'static str, &AtomicU64); 18] {
        [
            (
                "d402_http_requests_total",
                "HTTP requests served",
                &self.http_requests,
            ),
            (
                "d402_challenges_total",
                "402 challenges issued",
                &self.challenges,
            ),
            (
                "d402_challenges_refused_total",
                "challenges refused by policy or a safety cap",
                &self.challenges_refused,
            ),
            (
                "d402_payments_verified_total",
                "payments that passed verification",
                &self.payments_verified,
            ),
            (
                "d402_payments_refused_total",
                "payments refused (402 with a reason)",
                &self.payments_refused,
            ),
            (
                "d402_payments_settled_total",
                "payments settled or escrowed on chain",
                &self.payments_settled,
            ),
            (
                "d402_replay_rejections_total",
                "replayed payments refused",
                &self.replays_refused,
            ),
            (
                "d402_idempotent_replays_total",
                "stored responses returned for a repeated payment-identifier",
                &self.idempotent_replays,
            ),
            (
                "d402_snapshot_checks_failed_total",
                "tasks whose frozen page an independent freeze did not confirm",
                &self.snapshot_checks_failed,
            ),
            (
                "d402_tasks_dispatched_total",
                "paid tasks sent into the network",
                &self.tasks_dispatched,
            ),
            (
                "d402_tasks_delivered_total",
                "tasks delivered with a validated result",
                &self.tasks_delivered,
            ),
            (
                "d402_tasks_failed_total",
                "paid tasks that failed",
                &self.tasks_failed,
            ),
            (
                "d402_tasks_refunded_total",
                "escrows refunded to the buyer",
                &self.tasks_refunded,
            ),
            (
                "d402_payout_batches_paid_total",
                "batches of delivered tasks' worker pay paid out on a direct rail",
                &self.payout_batches_paid,
            ),
            (
                "d402_payment_id_conflicts_total",
                "payment-identifiers reused with a different payment (409)",
                &self.payment_id_conflicts,
            ),
            (
                "d402_release_errors_total",
                "failed attempts to release a validated task's split or pay",
                &self.release_errors,
            ),
            (
                "d402_refund_errors_total",
                "failed attempts to refund a failed task",
                &self.refund_errors,
            ),
            (
                "d402_payout_errors_total",
                "failed attempts to pay a batch of worker pay",
                &self.payout_errors,
            ),
        ]
    }

    /// The counters' values by Prometheus name, for the operations snapshot.
    pub fn values(&self) -> std::collections::BTreeMap<String, u64> {
        self.rows()
            .into_iter()
            .map(|(name, _, c)| (name.to_string(), c.load(Ordering::Relaxed)))
            .collect()
    }

    /// The Prometheus exposition text: the counters, then `gauges` (name, help, value).
    pub fn render(&self, gauges: &[(&str, &str, u128)]) -> String {
        let mut out = String::new();
        for (name, help, c) in self.rows() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
