//! Settlement: a verified payment moved on chain, and the restart that finishes what was in
//! flight.
//!
//! Where a settlement stands is the rail's to say ([`d402_rails::Rail::settlement_state`], from
//! its outbox): a task whose settlement is confirmed is settled, one whose settlement failed
//! charged nothing and fails, one still in flight waits for the next reconciliation.
//! [`Gateway::resume`] reconciles the rail on start, then the sweep keeps picking up every task
//! nothing in this process is driving, so that each paid task ends delivered or refunded.

use std::sync::Arc;

use d402_rails::{RailError, SettlementState};

use super::{Gateway, GatewayError, TaskRecord, TaskState};

impl Gateway {
    /// Settles a freshly verified task. `None`: the payment was already settled for another
    /// task (a replay), and the task failed with nothing charged.
    pub(super) async fn settle_new(
        &self,
        mut record: TaskRecord,
    ) -> Result<Option<TaskRecord>, GatewayError> {
        match self.rail.settle(&record.verified).await {
            Ok(s) => {
                record.settlement = Some(s);
                self.transition(&mut record, TaskState::Settled)?;
                self.metrics.inc(&self.metrics.payments_settled);
            }
            Err(RailError::Replay(_)) => {
                record.error = Some("payment already settled for another task".into());
                self.transition(&mut record, TaskState::Failed)?;
                return Ok(None);
            }
            Err(RailError::Verify(v)) => {
                record.error = Some(format!(
                    "payment refused at settlement, nothing was charged: {v}"
                ));
                self.transition(&mut record, TaskState::Failed)?;
                return Err(GatewayError::Rail(RailError::Verify(v)));
            }
            Err(e) => {
                // What the rail recorded decides: nothing sent (or refused on chain) fails the
                // task with nothing charged; an intent still in flight leaves it `Verified` for
                // the next reconciliation; funded after all settles it.
                record.error = Some(e.to_string());
                if !self.settle_recorded(&mut record, false).await? {
                    return Err(GatewayError::Rail(e));
                }
            }
        }
        Ok(Some(record))
    }

    /// Settles a `Verified` task according to what the rail recorded of its settlement; returns
    /// whether it is now `Settled`. Confirmed: settled. Failed: nothing was charged, the task
    /// fails. Still in flight: left `Verified` for the next reconciliation. Not recorded:
    /// settled now with `send` (a restart after a crash before the intent), else the settlement
    /// was refused before anything was sent and the task fails.
    async fn settle_recorded(
        &self,
        record: &mut TaskRecord,
        send: bool,
    ) -> Result<bool, GatewayError> {
        match self.rail.settlement_state(&record.verified.settlement_id)? {
            Some(SettlementState::Confirmed) => {
                self.transition(record, TaskState::Settled)?;
                self.metrics.inc(&self.metrics.payments_settled);
                Ok(true)
            }
            Some(SettlementState::Failed { reason }) => {
                record.error = Some(format!("settlement failed, nothing was charged: {reason}"));
                self.transition(record, TaskState::Failed)?;
                Ok(false)
            }
            Some(_) => {
                self.store.put(record)?;
                Ok(false)
            }
            None if send => match self.rail.settle(&record.verified).await {
                Ok(s) => {
                    record.settlement = Some(s);
                    self.transition(record, TaskState::Settled)?;
                    self.metrics.inc(&self.metrics.payments_settled);
                    Ok(true)
                }
                Err(e) => {
                    record.error = Some(e.to_string());
                    Box::pin(self.settle_recorded(record, false)).await
                }
            },
            None => {
                let e = record.error.take().unwrap_or_default();
                record.error = Some(format!("settlement refused, nothing was charged: {e}"));
                self.transition(record, TaskState::Failed)?;
                Ok(false)
            }
        }
    }

    /// On start: reconciles the rail's outbox with the chain, resumes every task that was in
    /// flight, and starts the sweep that keeps doing so (and the payer, on a rail that pays
    /// out), so that each paid task ends delivered or refunded. Returns how many tasks were
    /// resumed.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, GatewayError> {
        self.rail.reconcile().await?;
        let resumed = self.sweep(true).await?;
        if self.rail.pays_out() {
            self.start_payer();
        }
        self.publish_ops();
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(gw.policy.sweep_every).await;
                if let Err(e) = gw.sweep(false).await {
                    eprintln!("{}: sweeping tasks: {e}", gw.label);
                }
                // The rail's upkeep (a channel's claims and roots) goes on under the incident
                // switch too, but opens and funds nothing.
                let upkeep = if gw.incident() {
                    gw.rail.maintain_under_incident().await
                } else {
                    gw.rail.maintain().await
                };
                if let Err(e) = upkeep {
                    eprintln!("{}: rail upkeep: {e}", gw.label);
                }
                gw.publish_ops();
            }
        });
        Ok(resumed)
    }

    /// Picks up every in-flight task nothing in this process is driving: a refund that failed
    /// or was never started, a release or a run that stopped on an error, a settlement whose
    /// outcome is now known. `at_start`: also settles `Verified` tasks whose settlement was
    /// never recorded (the process died between recording the task and its intent).
    async fn sweep(self: &Arc<Self>, at_start: bool) -> Result<usize, GatewayError> {
        let mut picked = 0;
        for record in self.store.in_flight()? {
            let Some(claim) = self.claim(&record.id) else {
                continue;
            };
            // Read again under the claim: a driver may have moved it on meanwhile.
            let Some(mut record) = self.store.get(&record.id)? else {
                continue;
            };
            if !record.state.in_flight() {
                continue;
            }
            if record.state == TaskState::Verified
                && !self.settle_recorded(&mut record, at_start).await?
            {
                continue;
            }
            picked += 1;
            self.spawn_run(record, claim);
        }
        Ok(picked)
    }
}
