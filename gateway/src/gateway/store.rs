//! The gateway's task records, in one redb database under `--state` (DESIGN.md §11).
//!
//! Every transition that involves value is committed here before its effect is visible outside:
//! a task is recorded as `Verified` before its payment is settled, as `Settled` before it is
//! dispatched, as `Validated` before the split is released, and the HTTP response is built from
//! the committed record. A restart reads the records back and resumes what was in flight
//! ([`super::Gateway::resume`]).

use std::path::Path;
use std::sync::Arc;

use d402_rails::{PaymentPayload, PaymentRequirements, Settlement, Split, Verified};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Task id → [`TaskRecord`] (JSON).
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Payment digest → task id: a payment is used for one task only.
const PAYMENTS: TableDefinition<&str, &str> = TableDefinition::new("payments");
/// `payment-identifier` id → (payment digest, task id) as JSON.
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// Digest of issued requirements → [`Challenge`] (JSON).
const CHALLENGES: TableDefinition<&str, &[u8]> = TableDefinition::new("challenges");

/// Why the task store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task database: {0}")]
    Db(String),
    #[error("task record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Where a task is in the money flow. Each state is committed before what it enables happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// The payment verified; settlement (or escrow funding) is about to be sent.
    Verified,
    /// Money moved to the payee or locked in escrow; the task may be dispatched.
    Settled,
    /// A validated result is recorded; the worker is about to be paid (the split released from
    /// escrow, or the worker's net paid out of `payTo` on a direct rail).
    Validated,
    /// Result delivered and the worker paid.
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
    /// Where the accepted worker is paid on this rail's chain.
    pub worker_wallet: Option<String>,
    /// Direct rails: the split of the payment, fixed when it was verified, so that a restart
    /// pays the worker the same net whatever the policy says by then (worker net paid out of
    /// `payTo` on delivery, the gateway's fee kept there). `None` on escrow rails, whose split
    /// is in the requirements' terms.
    #[serde(default)]
    pub split: Option<Split>,
    pub error: Option<String>,
    /// Unix seconds after which an escrow may be refunded.
    pub deadline_unix: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
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
        tx.commit()?;
        Ok(Self { db: Arc::new(db) })
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
        let bytes = serde_json::to_vec(r)?;
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
            tx.open_table(TASKS)?
                .insert(r.id.as_str(), bytes.as_slice())?;
        }
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
        let bytes = serde_json::to_vec(r)?;
        let tx = self.db.begin_write()?;
        tx.open_table(TASKS)?
            .insert(r.id.as_str(), bytes.as_slice())?;
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
}
