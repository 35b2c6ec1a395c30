//! Delivery: an accepted result's payment settled the rail's way ([`d402_rails::Rail::deliver`]),
//! and the task marked delivered.
//!
//! Pay the rail leaves owed (a direct rail's worker net) is committed in the same transaction as
//! the delivery and paid later in a batch ([`super::payout`]); a release the chain refuses for
//! good, or a rail that cannot pay for the work, refunds the buyer instead.

use d402_node::SignedRelease;
use d402_rails::{Accepted, Delivery, ValidatorRelease};

use super::store::Owed;
use super::{Gateway, GatewayError, TaskRecord, TaskState, now_ms};

/// The release the validator signed inside the task's verdict, if any.
fn validator_release(record: &TaskRecord) -> Option<ValidatorRelease> {
    let signed: SignedRelease =
        serde_json::from_value(record.verdict.as_ref()?.get("release")?.clone()).ok()?;
    Some(ValidatorRelease {
        workers: signed.workers,
        signature: alloy::hex::decode(&signed.signature).ok()?,
    })
}

impl Gateway {
    /// Pays for a validated task's work the rail's way and marks it delivered.
    pub(super) async fn deliver(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        let signed = validator_release(&record);
        // Records from before the split was fixed at payment: fixed now.
        let split = match record.split {
            Some(s) => Some(s),
            None => self
                .rail
                .split_at_payment(&record.verified, self.policy.gateway_fee)?,
        };
        let accepted = Accepted {
            label: &record.id,
            requirements: &record.requirements,
            verified: &record.verified,
            split,
            workers: record.payees(),
            validator_release: signed.as_ref(),
        };
        let delivery = match self.rail.deliver(&accepted).await {
            Ok(d) => d,
            // The chain refuses the release for good (its deadline passed, e.g. while the
            // gateway was down): the buyer is refunded.
            Err(e) if e.is_final() => {
                self.metrics.inc(&self.metrics.release_errors);
                record.error = Some(format!("release refused: {e}; refunding instead"));
                return self.fail(record).await;
            }
            // An earlier release still in flight or the chain unreachable: left `Validated`,
            // retried by the sweep and reconciled on restart.
            Err(e) => {
                self.metrics.inc(&self.metrics.release_errors);
                record.error = Some(e.to_string());
                self.store.put(&record)?;
                return Err(GatewayError::Rail(e));
            }
        };
        match delivery {
            Delivery::Released(s) => record.release = Some(s),
            Delivery::Kept => {}
            Delivery::Refused(reason) => {
                record.error = Some(reason);
                return self.fail(record).await;
            }
            Delivery::Owed { from, payouts } => {
                let owed: Vec<Owed> = payouts
                    .into_iter()
                    .map(|p| Owed {
                        task: record.id.clone(),
                        from: from.clone(),
                        to: p.to,
                        amount: p.amount,
                    })
                    .collect();
                // Delivered together with the debt: the pay itself goes out in the next batch.
                record.state = TaskState::Delivered;
                record.updated_ms = now_ms();
                record.error = None;
                self.store.deliver_owing(&record, &owed)?;
                self.announce();
                self.metrics.inc(&self.metrics.tasks_delivered);
                self.payouts_due.notify_one();
                return Ok(());
            }
        }
        self.transition(&mut record, TaskState::Delivered)?;
        self.metrics.inc(&self.metrics.tasks_delivered);
        Ok(())
    }
}
