//! The gateway's task records, in one redb database under `--state` (DESIGN.md §11).
//!
//! Every transition that involves value is committed here before its effect is visible outside:
//! a task is recorded as `Verified` before its payment is settled, as `Settled` before it is
//! dispatched, as `Validated` before the split is released, and the HTTP response is built from
//! the committed record. A restart reads the records back and resumes what was in flight
//! ([`super::Gateway::resume`]).

use std::path::Path;
use std::sync::Arc;

use d402_rails::{
    Atomic, PaymentPayload, PaymentRequirements, Payout, Settlement, Split, Verified,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// Task id → [`TaskRecord`] (JSON).
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Payment digest → task id: a payment is used for one task only.
const PAYMENTS: TableDefinition<&str, &str> = TableDefinition::new("payments");
/// `payment-identifier` id → (payment digest, task id) as JSON.
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// Digest of issued requirements → [`Challenge`] (JSON).
const CHALLENGES: TableDefinition<&str, &[u8]> = TableDefinition::new("challenges");
/// `task id` + `/` + recipient → [`Owed`] (JSON): worker pay of delivered tasks on a direct rail,
/// not yet taken into a payout batch.
const OWED: TableDefinition<&str, &[u8]> = TableDefinition::new("owed_payouts");
/// Batch id → [`PayoutBatch`] (JSON).
const BATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("payout_batches");
/// Batch id → creation time (ms), for the batches not yet paid: what the payer retries.
const UNPAID: TableDefinition<&str, u64> = TableDefinition::new("unpaid_batches");
/// Task id → the batch its worker pay went into.
const TASK_BATCH: TableDefinition<&str, &str> = TableDefinition::new("task_batch");
/// Task id → last update (ms), for the tasks in flight only: what a restart and the sweep pick
/// up, without reading every task ever sold.
const IN_FLIGHT: TableDefinition<&str, u64> = TableDefinition::new("in_flight");
/// Schema facts (`in_flight_indexed`: the index above covers every task).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Why the task store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task database: {0}")]
    Db(String),
    #[error("task record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

d402_core::db_error_from!(StoreError::Db);

/// Where a task is in the money flow. Each state is committed before what it enables happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// The payment verified; settlement (or escrow funding) is about to be sent.
    Verified,
    /// Money moved to the payee or locked in escrow; the task may be dispatched.
    Settled,
    /// A validated result is recorded; the worker is about to be paid (the split released from
    /// escrow, or the worker net committed as owed on a direct rail).
    Validated,
    /// Result delivered and the worker paid (escrow rails) or its pay committed as owed, paid
    /// in the next payout batch (direct rails).
    Delivered,
    /// The task failed after payment; the buyer is about to be refunded (an escrow after its
    /// deadline, a direct payment at once, out of `payTo`).
    RefundPending,
    /// The buyer's money was returned.
    Refunded,
    /// Nothing was charged (settlement failed), or a payment on a rail that cannot return it.
    Failed,
}

impl TaskState {
    /// Whether a restart must pick the task up again.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            TaskState::Verified
                | TaskState::Settled
                | TaskState::Validated
                | TaskState::RefundPending
        )
    }
}

/// One paid task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub id: String,
    pub capability: String,
    pub input: String,
    pub rail: String,
    pub state: TaskState,
    pub requirements: PaymentRequirements,
    pub payment: PaymentPayload,
    /// Digest of the payment's scheme payload: the replay key.
    pub payment_digest: String,
    /// The x402 `payment-identifier` the buyer gave, if any.
    pub payment_id: Option<String>,
    pub verified: Verified,
    pub settlement: Option<Settlement>,
    pub release: Option<Settlement>,
    pub refund: Option<Settlement>,
    pub output: Option<String>,
    pub receipts: Vec<serde_json::Value>,
    pub verdict: Option<serde_json::Value>,
    /// What the delivered result promises (exact, quorum, scored, reputation), once validated.
    #[serde(default)]
    pub assurance: Option<d402_registry::validation::Assurance>,
    /// Set when the result was delivered although a check found it wanting (a failed snapshot
    /// check under `--snapshot-check-failure deliver-disputed`): why.
    #[serde(default)]
    pub disputed: Option<String>,
    /// Where the accepted worker is paid on this rail's chain.
    pub worker_wallet: Option<String>,
    /// Where every agreeing worker of a quorum is paid on this rail's chain (direct rails
    /// share the worker net among them).
    #[serde(default)]
    pub worker_wallets: Vec<String>,
    /// Direct rails: the split of the payment, fixed when it was verified, so that a restart
    /// pays the worker the same net whatever the policy says by then (worker net paid out of
    /// `payTo` on delivery, the gateway's fee kept there). `None` on escrow rails, whose split
    /// is in the requirements' terms.
    #[serde(default)]
    pub split: Option<Split>,
    pub error: Option<String>,
    /// Unix seconds after which an escrow may be refunded.
    pub deadline_unix: u64,
    /// Set when the rail answered that the refund is possible only from this Unix second on
    /// (an escrow before its deadline), so that a buyer waiting on the task is answered at once.
    #[serde(default)]
    pub refund_due_unix: Option<u64>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl TaskRecord {
    /// The wallets a validated task's agreeing workers are paid at, on the rail's chain
    /// (records from before quorum shares name only the first worker).
    pub fn payees(&self) -> &[String] {
        if self.worker_wallets.is_empty() {
            self.worker_wallet.as_slice()
        } else {
            &self.worker_wallets
        }
    }
}

/// Pay a delivered task owes one worker, out of `from` (the gateway's `payTo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owed {
    pub task: String,
    pub from: String,
    pub to: String,
    pub amount: Atomic,
}

/// Owed pay taken together: one payout per recipient (the sum of its entries), sent with the
/// batch id as the rail's task id, so that each recipient of a batch is paid at most once
/// however often the batch is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutBatch {
    pub id: String,
    pub from: String,
    pub entries: Vec<Owed>,
    pub payouts: Vec<Payout>,
    /// The rail's settlement once paid; `None` while owed.
    pub paid: Option<Settlement>,
    pub created_ms: u64,
}

/// What a challenge was issued for, so a payment answering it is tied to the same capability
/// (and, on escrow rails, to the same task and input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    pub capability: String,
    /// The task id the requirements are bound to (escrow rails); `None` when the requirements
    /// are the same for every task of the capability (direct rails).
    pub task_id: Option<String>,
    /// Digest of the input the challenge was issued for (escrow rails).
    pub input_digest: Option<String>,
    pub deadline_unix: u64,
}

/// The task database. Cheap to clone.
#[derive(Clone)]
pub struct TaskStore {
    db: Arc<Database>,
}

impl TaskStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(TASKS)?;
        tx.open_table(PAYMENTS)?;
        tx.open_table(IDEMPOTENCY)?;
        tx.open_table(CHALLENGES)?;
        tx.open_table(OWED)?;
        tx.open_table(BATCHES)?;
        tx.open_table(UNPAID)?;
        tx.open_table(TASK_BATCH)?;
        {
            // A database from before the index: build it once from the task records.
            let mut meta = tx.open_table(META)?;
            if meta.get("in_flight_indexed")?.is_none() {
                let tasks = tx.open_table(TASKS)?;
                let mut in_flight = tx.open_table(IN_FLIGHT)?;
                for row in tasks.iter()? {
                    let (_, v) = row?;
                    let r: TaskRecord = serde_json::from_slice(v.value())?;
                    if r.state.in_flight() {
                        in_flight.insert(r.id.as_str(), r.updated_ms)?;
                    }
                }
                meta.insert("in_flight_indexed", 1)?;
            }
        }
        tx.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Writes `r` and keeps the in-flight index in step, inside `tx`.
    fn write(tx: &redb::WriteTransaction, r: &TaskRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(r)?;
        tx.open_table(TASKS)?
            .insert(r.id.as_str(), bytes.as_slice())?;
        let mut in_flight = tx.open_table(IN_FLIGHT)?;
        if r.state.in_flight() {
            in_flight.insert(r.id.as_str(), r.updated_ms)?;
        } else {
            in_flight.remove(r.id.as_str())?;
        }
        Ok(())
    }

    /// How many tasks are in flight.
    pub fn in_flight_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(IN_FLIGHT)?.len()?)
    }

    /// The tasks a restart or the sweep must pick up again.
    pub fn in_flight(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let index = tx.open_table(IN_FLIGHT)?;
        let tasks = tx.open_table(TASKS)?;
        let mut out = Vec::new();
        for row in index.iter()? {
            let (k, _) = row?;
            if let Some(v) = tasks.get(k.value())? {
                out.push(serde_json::from_slice(v.value())?);
            }
        }
        Ok(out)
    }

    /// Commits `r` (delivered) together with the pay it owes: the result is visible only once
    /// the debt to its workers is on record, and the debt only with the delivery.
    pub fn deliver_owing(&self, r: &TaskRecord, owed: &[Owed]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(OWED)?;
            for o in owed {
                let key = format!("{}/{}", o.task, o.to);
                table.insert(key.as_str(), serde_json::to_vec(o)?.as_slice())?;
            }
        }
        Self::write(&tx, r)?;
        tx.commit()?;
        Ok(())
    }

    /// Takes every owed entry paid out of the same wallet into a new batch `id`, in one commit
    /// (an entry is in exactly one batch); `None` when nothing is owed.
    pub fn open_batch(&self, id: &str, now_ms: u64) -> Result<Option<PayoutBatch>, StoreError> {
        let tx = self.db.begin_write()?;
        let batch = {
            let mut owed = tx.open_table(OWED)?;
            let mut entries: Vec<(String, Owed)> = Vec::new();
            for row in owed.iter()? {
                let (k, v) = row?;
                let o: Owed = serde_json::from_slice(v.value())?;
                if entries
                    .first()
                    .is_none_or(|(_, first)| first.from == o.from)
                {
                    entries.push((k.value().to_string(), o));
                }
            }
            let Some((_, first)) = entries.first() else {
                return Ok(None);
            };
            let from = first.from.clone();
            let mut sums: std::collections::BTreeMap<String, u128> = Default::default();
            let mut task_batch = tx.open_table(TASK_BATCH)?;
            for (key, o) in &entries {
                task_batch.insert(o.task.as_str(), id)?;
                let sum = sums.entry(o.to.clone()).or_default();
                *sum = sum.saturating_add(o.amount.get());
                owed.remove(key.as_str())?;
            }
            let batch = PayoutBatch {
                id: id.to_string(),
                from,
                entries: entries.into_iter().map(|(_, o)| o).collect(),
                payouts: sums
                    .into_iter()
                    .map(|(to, amount)| Payout {
                        to,
                        amount: Atomic::new(amount),
                    })
                    .collect(),
                paid: None,
                created_ms: now_ms,
            };
            tx.open_table(BATCHES)?
                .insert(id, serde_json::to_vec(&batch)?.as_slice())?;
            tx.open_table(UNPAID)?.insert(id, now_ms)?;
            batch
        };
        tx.commit()?;
        Ok(Some(batch))
    }

    /// Records that batch `id` was paid.
    pub fn batch_paid(&self, id: &str, settlement: &Settlement) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut batches = tx.open_table(BATCHES)?;
            let Some(mut batch) = batches
                .get(id)?
                .map(|v| serde_json::from_slice::<PayoutBatch>(v.value()))
                .transpose()?
            else {
                return Ok(());
            };
            batch.paid = Some(settlement.clone());
            batches.insert(id, serde_json::to_vec(&batch)?.as_slice())?;
            tx.open_table(UNPAID)?.remove(id)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The batches not yet paid, oldest first.
    pub fn unpaid_batches(&self) -> Result<Vec<PayoutBatch>, StoreError> {
        let tx = self.db.begin_read()?;
        let unpaid = tx.open_table(UNPAID)?;
        let batches = tx.open_table(BATCHES)?;
        let mut out: Vec<PayoutBatch> = Vec::new();
        for row in unpaid.iter()? {
            let (k, _) = row?;
            if let Some(v) = batches.get(k.value())? {
                out.push(serde_json::from_slice(v.value())?);
            }
        }
        out.sort_by_key(|b| b.created_ms);
        Ok(out)
    }

    /// Batch `id`, paid or not.
    pub fn batch(&self, id: &str) -> Result<Option<PayoutBatch>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BATCHES)?;
        Ok(match t.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// A task's worker pay: still owed (not in a batch yet), or the batch it went into.
    pub fn pay_of(&self, task: &str) -> Result<(Vec<Owed>, Option<PayoutBatch>), StoreError> {
        let tx = self.db.begin_read()?;
        let mut owed = Vec::new();
        let prefix = format!("{task}/");
        for row in tx.open_table(OWED)?.range(prefix.as_str()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            owed.push(serde_json::from_slice(v.value())?);
        }
        let batch = match tx.open_table(TASK_BATCH)?.get(task)? {
            Some(id) => match tx.open_table(BATCHES)?.get(id.value())? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            },
            None => None,
        };
        Ok((owed, batch))
    }

    /// Owed entries not yet in a batch.
    pub fn owed(&self) -> Result<Vec<Owed>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OWED)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    pub fn record_challenge(&self, key: &str, c: &Challenge) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(c)?;
        let tx = self.db.begin_write()?;
        tx.open_table(CHALLENGES)?.insert(key, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub fn challenge(&self, key: &str) -> Result<Option<Challenge>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHALLENGES)?;
        Ok(match t.get(key)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Records a new paid task, claiming its payment digest and payment id in the same
    /// transaction. `Err(Claimed)`-style outcomes are returned as `Ok(Some(existing task id))`:
    /// the payment was used, or the task (an escrow challenge) was already paid, by another
    /// payment whose record must not be overwritten.
    pub fn insert_new(&self, r: &TaskRecord) -> Result<Option<String>, StoreError> {
        let tx = self.db.begin_write()?;
        {
            if tx.open_table(TASKS)?.get(r.id.as_str())?.is_some() {
                return Ok(Some(r.id.clone()));
            }
            let mut payments = tx.open_table(PAYMENTS)?;
            if let Some(existing) = payments.get(r.payment_digest.as_str())? {
                return Ok(Some(existing.value().to_string()));
            }
            payments.insert(r.payment_digest.as_str(), r.id.as_str())?;
            if let Some(pid) = &r.payment_id {
                let v = serde_json::to_vec(&(&r.payment_digest, &r.id))?;
                tx.open_table(IDEMPOTENCY)?
                    .insert(pid.as_str(), v.as_slice())?;
            }
        }
        Self::write(&tx, r)?;
        tx.commit()?;
        Ok(None)
    }

    /// The (payment digest, task id) stored under a `payment-identifier`.
    pub fn by_payment_id(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(IDEMPOTENCY)?;
        Ok(match t.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub fn by_payment_digest(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(PAYMENTS)?;
        Ok(t.get(digest)?.map(|v| v.value().to_string()))
    }

    /// Commits `r` (a transition of an existing task).
    pub fn put(&self, r: &TaskRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        Self::write(&tx, r)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TASKS)?;
        Ok(match t.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub fn all(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TASKS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, payment: &str) -> TaskRecord {
        let requirements = serde_json::json!({
            "scheme": "d402-task-escrow", "network": "eip155:31337", "amount": "10000",
            "payTo": "0x0000000000000000000000000000000000000001", "maxTimeoutSeconds": 60,
            "asset": "0x0000000000000000000000000000000000000002", "extra": null,
        });
        serde_json::from_value(serde_json::json!({
            "id": id, "capability": "merkle.verify_proof@1", "input": "{}",
            "rail": "base-task-escrow", "state": "verified", "requirements": requirements,
            "payment": {"x402Version": 2, "accepted": requirements, "payload": {"p": payment}},
            "paymentDigest": payment, "paymentId": null,
            "verified": {"rail": "base-task-escrow", "network": "eip155:31337", "payer": "0x",
                "amount": "10000", "settlementId": format!("escrow:{id}:fund"),
                "requirements": requirements, "payload": {"p": payment}},
            "settlement": null, "release": null, "refund": null, "output": null,
            "receipts": [], "verdict": null, "workerWallet": null, "error": null,
            "deadlineUnix": 1, "createdMs": 1, "updatedMs": 1,
        }))
        .unwrap()
    }

    /// Two different payments answering the same escrow challenge (the same task): the second
    /// must not overwrite the record of the first, whose money may already be held.
    #[test]
    fn a_task_is_recorded_once_whatever_pays_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::open(&dir.path().join("tasks.redb")).unwrap();
        let mut first = record("task-1", "payment-a");
        assert_eq!(store.insert_new(&first).unwrap(), None);
        first.state = TaskState::Settled;
        store.put(&first).unwrap();
        let second = record("task-1", "payment-b");
        assert_eq!(
            store.insert_new(&second).unwrap().as_deref(),
            Some("task-1")
        );
        let kept = store.get("task-1").unwrap().unwrap();
        assert_eq!(kept.state, TaskState::Settled);
        assert_eq!(kept.payment_digest, "payment-a");
        assert_eq!(store.by_payment_digest("payment-b").unwrap(), None);
    }

    /// Owed pay goes into exactly one batch, summed per recipient, and a paid batch is no
    /// longer retried; a new batch takes only what was owed since.
    #[test]
    fn owed_pay_is_batched_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::open(&dir.path().join("tasks.redb")).unwrap();
        let owe = |task: &str, to: &str, amount: u128| Owed {
            task: task.into(),
            from: "gw".into(),
            to: to.into(),
            amount: Atomic::new(amount),
        };
        let mut r = record("task-1", "payment-a");
        store.insert_new(&r).unwrap();
        r.state = TaskState::Delivered;
        store
            .deliver_owing(&r, &[owe("task-1", "w1", 5), owe("task-1", "w2", 5)])
            .unwrap();
        assert_eq!(
            store.get("task-1").unwrap().unwrap().state,
            TaskState::Delivered
        );
        let r2 = record("task-2", "payment-b");
        store.insert_new(&r2).unwrap();
        store.deliver_owing(&r2, &[owe("task-2", "w1", 7)]).unwrap();
        assert_eq!(store.pay_of("task-1").unwrap().0.len(), 2);

        let batch = store.open_batch("b1", 1).unwrap().unwrap();
        assert_eq!(batch.entries.len(), 3);
        let sums: Vec<_> = batch
            .payouts
            .iter()
            .map(|p| (p.to.as_str(), p.amount.get()))
            .collect();
        assert_eq!(sums, [("w1", 12), ("w2", 5)]);
        assert!(store.owed().unwrap().is_empty());
        assert!(store.open_batch("b2", 2).unwrap().is_none());
        let (owed, in_batch) = store.pay_of("task-2").unwrap();
        assert!(owed.is_empty());
        assert_eq!(in_batch.unwrap().id, "b1");

        // Reopened after a restart: the batch is still unpaid, and is the one retried.
        drop(store);
        let store = TaskStore::open(&dir.path().join("tasks.redb")).unwrap();
        assert_eq!(store.unpaid_batches().unwrap()[0].id, "b1");
        let settlement: Settlement = serde_json::from_value(serde_json::json!({
            "rail": "base-x402-direct", "network": "eip155:31337", "settlementId": "b1",
            "txHashes": ["0x1"], "payer": null, "payouts": [], "feeNative": 0
        }))
        .unwrap();
        store.batch_paid("b1", &settlement).unwrap();
        assert!(store.unpaid_batches().unwrap().is_empty());
        assert!(store.pay_of("task-1").unwrap().1.unwrap().paid.is_some());
    }

    /// The sweep reads only the tasks in flight; a database from before the index gets one
    /// built from its records when it is opened.
    #[test]
    fn the_in_flight_index_follows_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.redb");
        let store = TaskStore::open(&path).unwrap();
        let ids = |s: &TaskStore| {
            s.in_flight()
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        let mut a = record("task-a", "payment-a");
        let b = record("task-b", "payment-b");
        store.insert_new(&a).unwrap();
        store.insert_new(&b).unwrap();
        assert_eq!(ids(&store), ["task-a", "task-b"]);
        a.state = TaskState::Delivered;
        store.deliver_owing(&a, &[]).unwrap();
        assert_eq!(ids(&store), ["task-b"]);
        a.state = TaskState::RefundPending;
        store.put(&a).unwrap();
        assert_eq!(ids(&store), ["task-a", "task-b"]);

        // An older database: no index and no flag. Opening it builds the index.
        {
            let tx = store.db.begin_write().unwrap();
            tx.delete_table(IN_FLIGHT).unwrap();
            tx.open_table(META)
                .unwrap()
                .remove("in_flight_indexed")
                .unwrap();
            tx.commit().unwrap();
        }
        drop(store);
        let store = TaskStore::open(&path).unwrap();
        assert_eq!(ids(&store), ["task-a", "task-b"]);
    }
}
