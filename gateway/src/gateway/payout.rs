//! Payout batches: the worker pay delivered tasks left owed, paid a batch at a time.
//!
//! Pay owed is committed with each delivery ([`super::delivery`]); every
//! [`super::SalePolicy::payout_window`] the payer takes everything owed into a batch and pays it
//! as one payout per worker ([`d402_rails::Release::Payouts`]), so a busy gateway sends a few
//! payouts a second rather than one per task. A batch's id is the rail's task id for its
//! payouts, so retrying a batch never pays anyone twice.

use std::sync::Arc;

use d402_rails::{RailError, Release, TaskId};

use super::store::PayoutBatch;
use super::{Gateway, GatewayError, now_ms, random_id};

impl Gateway {
    /// Starts the payer: a batch after each delivery that left pay owed (once the payout window
    /// has gathered more), and every sweep for batches left unpaid (a restart, a chain error).
    pub(super) fn start_payer(self: &Arc<Self>) {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let _ =
                    tokio::time::timeout(gw.policy.sweep_every, gw.payouts_due.notified()).await;
                tokio::time::sleep(gw.policy.payout_window).await;
                if let Err(e) = gw.pay_owed().await {
                    eprintln!("{}: paying workers: {e}", gw.label);
                }
            }
        });
    }

    /// Pays what delivered tasks owe their workers: first every batch left unpaid, then
    /// everything owed since, taken into a new batch (one payout per worker for the whole
    /// batch). Returns how many batches were paid; the first error after trying them all. A
    /// wallet still waiting for its rail's next claim ([`RailError::AwaitingFunds`]) is not an
    /// error: the batches wait for the next sweep, and no new batch is opened meanwhile (the pay
    /// owed since is added to the batch that finally goes, not spread over many).
    pub async fn pay_owed(&self) -> Result<usize, GatewayError> {
        let _one = self.paying.lock().await;
        let mut paid = 0;
        let mut first_error = None;
        for batch in self.store.unpaid_batches()? {
            match self.pay_batch(&batch).await {
                Ok(()) => paid += 1,
                Err(e) if awaits_funds(&e) => return Ok(paid),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        while let Some(batch) = self
            .store
            .open_batch(&format!("payout-batch-{}", random_id()), now_ms())?
        {
            match self.pay_batch(&batch).await {
                Ok(()) => paid += 1,
                Err(e) if awaits_funds(&e) => return Ok(paid),
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(paid),
        }
    }

    async fn pay_batch(&self, batch: &PayoutBatch) -> Result<(), GatewayError> {
        let release = Release::Payouts {
            task_id: TaskId::from_label(&batch.id),
            from: batch.from.clone(),
            payouts: batch.payouts.clone(),
        };
        let settlement = self.rail.finalize(&release).await.map_err(|source| {
            if !matches!(source, RailError::AwaitingFunds { .. }) {
                self.metrics.inc(&self.metrics.payout_errors);
            }
            GatewayError::Payout {
                batch: batch.id.clone(),
                source,
            }
        })?;
        self.store.batch_paid(&batch.id, &settlement)?;
        self.metrics.inc(&self.metrics.payout_batches_paid);
        Ok(())
    }

    /// Worker pay of delivered tasks not paid out yet: owed and not in a batch, plus the
    /// `unpaid` batches.
    pub(super) fn owed_total(&self, unpaid: &[PayoutBatch]) -> Result<u128, GatewayError> {
        Ok(self
            .store
            .owed()?
            .iter()
            .map(|o| o.amount.get())
            .chain(
                unpaid
                    .iter()
                    .flat_map(|b| b.payouts.iter().map(|p| p.amount.get())),
            )
            .fold(0u128, u128::saturating_add))
    }
}

fn awaits_funds(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::Payout {
            source: RailError::AwaitingFunds { .. },
            ..
        }
    )
}
