//! Refunds: a paid task that failed gives the buyer's money back the rail's way
//! ([`d402_rails::Rail::refund_buyer`]): an escrow after its deadline, a direct payment at once
//! out of `payTo`. `RefundPending` is committed before the rail is asked, so a restart asks
//! again (the rail answers a repeated refund from its outbox). A rail that cannot refund leaves
//! the payment recorded as owed to the buyer.

use std::time::Duration;

use d402_rails::{PaidTask, Refund};

use super::{Gateway, GatewayError, TaskRecord, TaskState, now_unix};

impl Gateway {
    /// A paid task failed: the buyer is refunded, or the payment is recorded as owed back.
    pub(super) async fn fail(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        self.metrics.inc(&self.metrics.tasks_failed);
        if self.rail.refunds() {
            self.transition(&mut record, TaskState::RefundPending)?;
            return self.refund(record).await;
        }
        let e = record.error.take().unwrap_or_default();
        record.error = Some(format!("{e}; the payment is owed back to the buyer"));
        self.transition(&mut record, TaskState::Failed)?;
        Ok(())
    }

    /// Refunds a `RefundPending` task, waiting for the moment the rail can (left
    /// `RefundPending` on error: resuming the task refunds it, once).
    pub(super) async fn refund(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        loop {
            let task = PaidTask {
                label: &record.id,
                requirements: &record.requirements,
                verified: &record.verified,
                deadline_unix: record.deadline_unix,
            };
            match self.rail.refund_buyer(&task).await {
                Ok(Refund::Refunded(s)) => {
                    record.refund = Some(s);
                    self.transition(&mut record, TaskState::Refunded)?;
                    self.metrics.inc(&self.metrics.tasks_refunded);
                    return Ok(());
                }
                Ok(Refund::NotBefore(due)) => {
                    if record.refund_due_unix != Some(due) {
                        // Recorded, so that a buyer waiting on the task is answered now.
                        record.refund_due_unix = Some(due);
                        self.store.put(&record)?;
                        self.announce();
                    }
                    let wait = due.saturating_sub(now_unix());
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                Err(e) => {
                    self.metrics.inc(&self.metrics.refund_errors);
                    return Err(GatewayError::Rail(e));
                }
            }
        }
    }
}
