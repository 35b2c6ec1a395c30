//! The operations snapshot: what an operator watches right now (tasks in flight, settlements
//! pending, pay owed, the counters), written where `d402 ops-status` and `d402 ops-monitor`
//! read it. [`crate::ops`] decides what is an alert.

use crate::ops::{LISTED, OpsSnapshot, PendingSettlement, TaskInFlight, UnpaidBatch};
use d402_rails::SettlementState;

use super::{Gateway, GatewayError, now_ms};

impl Gateway {
    /// Rewrites the operations snapshot, if this gateway publishes one. A failure is reported
    /// and the gateway carries on: the snapshot going stale is what the monitor alerts on.
    pub(super) fn publish_ops(&self) {
        let Some(ops) = &self.ops else {
            return;
        };
        let written = self
            .ops_snapshot()
            .map_err(|e| e.to_string())
            .and_then(|s| s.write(&ops.snapshot).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("{}: writing the operations snapshot: {e}", self.label);
        }
    }

    /// The snapshot as of now.
    pub fn ops_snapshot(&self) -> Result<OpsSnapshot, GatewayError> {
        let mut tasks = self.store.in_flight()?;
        tasks.sort_by_key(|t| t.created_ms);
        let tasks_in_flight = tasks.len() as u64;
        let in_flight = tasks
            .into_iter()
            .take(LISTED)
            .map(|t| TaskInFlight {
                state: serde_json::to_value(t.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                id: t.id,
                created_ms: t.created_ms,
                deadline_unix: t.deadline_unix,
            })
            .collect();
        let mut pending = self.rail.settlements_in_flight()?;
        pending.sort_by_key(|r| r.created_unix);
        let pending_settlements = pending
            .into_iter()
            .take(LISTED)
            .map(|r| PendingSettlement {
                state: match r.state {
                    SettlementState::Intent => "intent",
                    SettlementState::Sent => "sent",
                    SettlementState::Confirmed => "confirmed",
                    SettlementState::Failed { .. } => "failed",
                }
                .into(),
                id: r.id,
                rail: r.rail,
                tx_hash: r.tx_hash,
                created_unix: r.created_unix,
                updated_unix: r.updated_unix,
            })
            .collect();
        let unpaid = self.store.unpaid_batches()?;
        let owed_total = self.owed_total(&unpaid)?;
        let mut unpaid_batches: Vec<UnpaidBatch> = unpaid
            .into_iter()
            .map(|b| UnpaidBatch {
                id: b.id,
                created_ms: b.created_ms,
            })
            .collect();
        unpaid_batches.sort_by_key(|b| b.created_ms);
        unpaid_batches.truncate(LISTED);
        Ok(OpsSnapshot {
            label: self.label.clone(),
            rail: self.rail.name().to_string(),
            network: self.rail.network().to_string(),
            pay_to: self.policy.pay_to.clone(),
            fee_payer: self.ops.as_ref().and_then(|o| o.fee_payer.clone()),
            started_ms: self.started_ms,
            written_ms: now_ms(),
            incident: self.incident(),
            tasks_in_flight,
            in_flight,
            worker_pay_owed_atomic: owed_total.to_string(),
            unpaid_batches,
            pending_settlements,
            channels: self.rail.channel_book()?,
            counters: self.metrics.values(),
        })
    }

    /// Gauges for `/metrics`: what is in flight and what is owed right now (an operator alerts
    /// on these growing: a stuck task, a payer that cannot pay).
    pub fn gauges(&self) -> Result<Vec<(&'static str, &'static str, u128)>, GatewayError> {
        let unpaid = self.store.unpaid_batches()?;
        let owed_total = self.owed_total(&unpaid)?;
        let mut gauges = vec![
            (
                "d402_tasks_in_flight",
                "paid tasks not yet delivered, refunded or failed",
                u128::from(self.store.in_flight_count()?),
            ),
            (
                "d402_worker_pay_owed_atomic",
                "worker pay of delivered tasks not yet paid out, in the asset's atomic units",
                owed_total,
            ),
            (
                "d402_payout_batches_unpaid",
                "payout batches opened and not yet confirmed paid",
                unpaid.len() as u128,
            ),
        ];
        if let Some(book) = self.rail.channel_book()? {
            let now = super::now_unix();
            gauges.extend([
                (
                    "d402_channels",
                    "payment channels this gateway holds vouchers of",
                    book.channels as u128,
                ),
                (
                    "d402_channel_unclaimed_atomic",
                    "accepted voucher value not yet claimed on chain, in the asset's atomic units",
                    book.unclaimed.get(),
                ),
                (
                    "d402_channel_withdrawals_running",
                    "channels whose payer started a withdrawal while vouchers are unclaimed",
                    book.withdrawals.len() as u128,
                ),
                (
                    "d402_channel_withdrawal_seconds_left",
                    "seconds until the first running withdrawal ends (0 when none)",
                    book.withdrawals
                        .iter()
                        .map(|w| u128::from(w.ends_unix.saturating_sub(now)))
                        .min()
                        .unwrap_or(0),
                ),
            ]);
            if let Some(headroom) = book.headroom {
                gauges.push((
                    "d402_channel_headroom_atomic",
                    "what the gateway's own channel can still allocate before a top-up, in atomic units",
                    headroom.get(),
                ));
            }
        }
        Ok(gauges)
    }
}
