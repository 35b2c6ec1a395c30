//! The settlement outbox (DESIGN.md §11): every transaction that moves value is written down as an
//! *intent* before it is sent, under an id that the chain itself can be asked about (an EIP-3009
//! authorization `from` + nonce, an escrow task id, a channel claim). A process that dies between
//! sending a transaction and recording its outcome finds the intent on restart, asks the chain
//! what happened, and either marks it confirmed or sends it again; so nothing paid is lost and
//! nothing is paid twice.
//!
//! The same ids make replays visible: a second intent with an id already recorded is refused
//! ([`OutboxError::AlreadyRecorded`]), whatever state the first is in.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const SETTLEMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("settlements");
/// The ids of the settlements in flight (intent or sent), with the rail that wrote them, written
/// in the same commit as each record: a reconcile or a monitor reads what is pending without
/// parsing every settlement ever made.
const IN_FLIGHT: TableDefinition<&str, &str> = TableDefinition::new("settlements_in_flight");
/// Markers of one-off upgrades of an older database (`in_flight_index`: built).
const META: TableDefinition<&str, u64> = TableDefinition::new("outbox_meta");
/// Channel rails: the latest accepted voucher per channel and payee triple. A voucher is money
/// owed to a worker; it must survive a restart until it is claimed.
const VOUCHERS: TableDefinition<&str, &[u8]> = TableDefinition::new("channel_vouchers");

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("settlement database: {0}")]
    Database(String),
    #[error("settlement {id} is already recorded ({state:?}): a replay")]
    AlreadyRecorded { id: String, state: SettlementState },
    #[error("no settlement {0} in the outbox")]
    Unknown(String),
    /// A new attempt was asked for a settlement that has not failed: the earlier attempt may
    /// still execute, so a second one could pay twice.
    #[error("settlement {id} is {state:?}, not failed: it cannot be tried again")]
    NotFailed { id: String, state: SettlementState },
    #[error("settlement record {id} is unreadable: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

d402_core::db_error_from!(OutboxError::Database);

/// Where a settlement stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum SettlementState {
    /// Written before the transaction is sent; the transaction may or may not have reached the
    /// chain.
    Intent,
    /// Handed to the chain; not yet seen in a block.
    Sent,
    /// Seen executed on chain: the money moved.
    Confirmed,
    /// Cannot succeed any more (expired authorization, reverted for a lasting reason); the money
    /// did not move.
    Failed { reason: String },
}

impl SettlementState {
    /// Still in flight: a restart must ask the chain about it.
    pub fn in_flight(&self) -> bool {
        matches!(self, SettlementState::Intent | SettlementState::Sent)
    }
}

/// One settlement: what is to be sent, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementRecord {
    /// The deterministic identity, e.g. `eip3009:<token>:<from>:<nonce>` or `escrow:<task>:fund`.
    pub id: String,
    /// The rail that wrote it (`base-x402-direct`, …): which rail reconciles it.
    pub rail: String,
    pub state: SettlementState,
    /// The hash of the last transaction sent for it, if any.
    pub tx_hash: Option<String>,
    /// Everything needed to send the transaction again, in the rail's own format.
    pub request: serde_json::Value,
    pub created_unix: u64,
    pub updated_unix: u64,
}

/// The outbox: a redb database of [`SettlementRecord`]s. Cheap to clone; clones share the
/// database.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Outbox {
    /// Opens or creates the outbox database at `path` (a file, normally under `--state`).
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            let settlements = tx.open_table(SETTLEMENTS)?;
            tx.open_table(VOUCHERS)?;
            let mut meta = tx.open_table(META)?;
            let mut index = tx.open_table(IN_FLIGHT)?;
            // A database from before the index: build it once from the records.
            if meta.get("in_flight_index")?.is_none() {
                for entry in settlements.iter()? {
                    let (k, v) = entry?;
                    let record = decode(k.value(), v.value())?;
                    if record.state.in_flight() {
                        index.insert(k.value(), record.rail.as_str())?;
                    }
                }
                meta.insert("in_flight_index", 1)?;
            }
        }
        tx.commit()?;
        Ok(Outbox { db: Arc::new(db) })
    }

    /// Records the intent to send a settlement, durably, before it is sent. Refuses an id that is
    /// already recorded: that is a replay of an authorization or voucher already used.
    pub fn record_intent(
        &self,
        id: &str,
        rail: &str,
        request: serde_json::Value,
    ) -> Result<SettlementRecord, OutboxError> {
        let tx = self.db.begin_write()?;
        let record = {
            let mut table = tx.open_table(SETTLEMENTS)?;
            if let Some(existing) = table.get(id)? {
                let existing = decode(id, existing.value())?;
                return Err(OutboxError::AlreadyRecorded {
                    id: id.to_string(),
                    state: existing.state,
                });
            }
            let t = now();
            let record = SettlementRecord {
                id: id.to_string(),
                rail: rail.to_string(),
                state: SettlementState::Intent,
                tx_hash: None,
                request,
                created_unix: t,
                updated_unix: t,
            };
            table.insert(id, encode(&record).as_slice())?;
            tx.open_table(IN_FLIGHT)?.insert(id, rail)?;
            record
        };
        tx.commit()?;
        Ok(record)
    }

    /// Records that the transaction `tx_hash` was sent for `id`.
    pub fn mark_sent(&self, id: &str, tx_hash: &str) -> Result<SettlementRecord, OutboxError> {
        self.update(id, |r| {
            r.state = SettlementState::Sent;
            r.tx_hash = Some(tx_hash.to_string());
        })
    }

    /// Records that `id` executed on chain (in `tx_hash`, when known).
    pub fn mark_confirmed(
        &self,
        id: &str,
        tx_hash: Option<&str>,
    ) -> Result<SettlementRecord, OutboxError> {
        self.update(id, |r| {
            r.state = SettlementState::Confirmed;
            if let Some(h) = tx_hash {
                r.tx_hash = Some(h.to_string());
            }
        })
    }

    /// Records that `id` can no longer succeed.
    pub fn mark_failed(&self, id: &str, reason: &str) -> Result<SettlementRecord, OutboxError> {
        self.update(id, |r| {
            r.state = SettlementState::Failed {
                reason: reason.to_string(),
            }
        })
    }

    /// Puts a failed settlement back in flight before it is tried again, so that a crash during
    /// the retry is reconciled like a first attempt. Only for settlements whose on-chain identity
    /// makes a second attempt safe (an EIP-3009 nonce that executes at most once).
    pub fn reopen(&self, id: &str) -> Result<SettlementRecord, OutboxError> {
        self.update(id, |r| r.state = SettlementState::Intent)
    }

    /// Replaces a failed settlement's request with a new attempt and puts it back in flight, in
    /// one commit, so that at any time at most one attempt of `id` can execute. Only for a
    /// settlement whose failed attempt can never execute any more (a Solana transaction whose
    /// blockhash expired unlanded, or that failed on chain); refuses one that is not failed.
    pub fn retry_with(
        &self,
        id: &str,
        request: serde_json::Value,
    ) -> Result<SettlementRecord, OutboxError> {
        self.try_update(id, |r| {
            if !matches!(r.state, SettlementState::Failed { .. }) {
                return Err(OutboxError::NotFailed {
                    id: id.to_string(),
                    state: r.state.clone(),
                });
            }
            r.state = SettlementState::Intent;
            r.tx_hash = None;
            r.request = request;
            Ok(())
        })
    }

    /// The record for `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<SettlementRecord>, OutboxError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SETTLEMENTS)?;
        table.get(id)?.map(|v| decode(id, v.value())).transpose()
    }

    /// Every record, in id order.
    pub fn all(&self) -> Result<Vec<SettlementRecord>, OutboxError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SETTLEMENTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The records a restart must reconcile, for one rail.
    pub fn in_flight(&self, rail: &str) -> Result<Vec<SettlementRecord>, OutboxError> {
        Ok(self
            .all_in_flight()?
            .into_iter()
            .filter(|r| r.rail == rail)
            .collect())
    }

    /// Every record in flight (intent or sent), whatever its rail, in id order: what an
    /// operator's monitor watches for settlements that stay pending.
    pub fn all_in_flight(&self) -> Result<Vec<SettlementRecord>, OutboxError> {
        let tx = self.db.begin_read()?;
        let index = tx.open_table(IN_FLIGHT)?;
        let table = tx.open_table(SETTLEMENTS)?;
        let mut out = Vec::new();
        for entry in index.iter()? {
            let (k, _) = entry?;
            if let Some(v) = table.get(k.value())? {
                out.push(decode(k.value(), v.value())?);
            }
        }
        Ok(out)
    }

    /// Stores the latest accepted voucher under `key`, replacing the previous one.
    pub fn save_voucher(&self, key: &str, voucher: &serde_json::Value) -> Result<(), OutboxError> {
        let bytes = serde_json::to_vec(voucher).unwrap_or_default();
        let tx = self.db.begin_write()?;
        tx.open_table(VOUCHERS)?.insert(key, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every stored voucher whose key starts with `prefix`.
    pub fn vouchers(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>, OutboxError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(VOUCHERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            if k.value().starts_with(prefix) {
                let value =
                    serde_json::from_slice(v.value()).map_err(|source| OutboxError::Corrupt {
                        id: k.value().to_string(),
                        source,
                    })?;
                out.push((k.value().to_string(), value));
            }
        }
        Ok(out)
    }

    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut SettlementRecord),
    ) -> Result<SettlementRecord, OutboxError> {
        self.try_update(id, |r| {
            change(r);
            Ok(())
        })
    }

    /// Reads, changes and writes record `id` in one commit; nothing is written when `change`
    /// refuses.
    fn try_update(
        &self,
        id: &str,
        change: impl FnOnce(&mut SettlementRecord) -> Result<(), OutboxError>,
    ) -> Result<SettlementRecord, OutboxError> {
        let tx = self.db.begin_write()?;
        let record = {
            let mut table = tx.open_table(SETTLEMENTS)?;
            let mut record = match table.get(id)? {
                Some(v) => decode(id, v.value())?,
                None => return Err(OutboxError::Unknown(id.to_string())),
            };
            change(&mut record)?;
            record.updated_unix = now();
            table.insert(id, encode(&record).as_slice())?;
            let mut index = tx.open_table(IN_FLIGHT)?;
            if record.state.in_flight() {
                index.insert(id, record.rail.as_str())?;
            } else {
                index.remove(id)?;
            }
            record
        };
        tx.commit()?;
        Ok(record)
    }
}

fn encode(record: &SettlementRecord) -> Vec<u8> {
    // A record is plain data (strings, integers, JSON values): serialising it cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

fn decode(id: &str, bytes: &[u8]) -> Result<SettlementRecord, OutboxError> {
    serde_json::from_slice(bytes).map_err(|source| OutboxError::Corrupt {
        id: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_then_sent_then_confirmed_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        {
            let o = Outbox::open(&path).unwrap();
            o.record_intent("a", "r", serde_json::json!({"x": 1}))
                .unwrap();
            o.record_intent("b", "r", serde_json::Value::Null).unwrap();
            o.mark_sent("a", "0xabc").unwrap();
            o.mark_confirmed("b", None).unwrap();
        }
        let o = Outbox::open(&path).unwrap();
        let flying = o.in_flight("r").unwrap();
        assert_eq!(flying.len(), 1);
        assert_eq!(flying[0].id, "a");
        assert_eq!(flying[0].state, SettlementState::Sent);
        assert_eq!(flying[0].tx_hash.as_deref(), Some("0xabc"));
        assert!(o.in_flight("other").unwrap().is_empty());
        o.mark_confirmed("a", None).unwrap();
        assert!(o.in_flight("r").unwrap().is_empty());
        assert_eq!(
            o.get("a").unwrap().unwrap().tx_hash.as_deref(),
            Some("0xabc")
        );
    }

    /// A database written before the in-flight index gets the index on open, with exactly the
    /// records in flight.
    #[test]
    fn an_older_database_gets_its_in_flight_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut table = tx.open_table(SETTLEMENTS).unwrap();
                for (id, state) in [
                    ("flying", SettlementState::Sent),
                    ("done", SettlementState::Confirmed),
                    ("lost", SettlementState::Failed { reason: "x".into() }),
                ] {
                    let record = SettlementRecord {
                        id: id.into(),
                        rail: "r".into(),
                        state,
                        tx_hash: None,
                        request: serde_json::Value::Null,
                        created_unix: 1,
                        updated_unix: 1,
                    };
                    table.insert(id, encode(&record).as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let flying = |o: &Outbox| -> Vec<String> {
            o.all_in_flight()
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        let o = Outbox::open(&path).unwrap();
        assert_eq!(flying(&o), ["flying"]);
        o.mark_confirmed("flying", None).unwrap();
        o.reopen("lost").unwrap();
        drop(o);
        // Built once: reopening keeps what the writes since have made of it.
        let o = Outbox::open(&path).unwrap();
        assert_eq!(flying(&o), ["lost"]);
    }

    #[test]
    fn only_a_failed_settlement_takes_a_new_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(&dir.path().join("o.redb")).unwrap();
        o.record_intent("p", "r", serde_json::json!({"attempt": 1}))
            .unwrap();
        // In flight: the first attempt may still execute.
        assert!(matches!(
            o.retry_with("p", serde_json::json!({"attempt": 2})),
            Err(OutboxError::NotFailed { .. })
        ));
        o.mark_sent("p", "sig1").unwrap();
        o.mark_failed("p", "expired").unwrap();
        let again = o
            .retry_with("p", serde_json::json!({"attempt": 2}))
            .unwrap();
        assert_eq!(again.state, SettlementState::Intent);
        assert_eq!(again.tx_hash, None);
        assert_eq!(o.in_flight("r").unwrap()[0].request["attempt"], 2);
        o.mark_confirmed("p", Some("sig2")).unwrap();
        assert!(matches!(
            o.retry_with("p", serde_json::json!({"attempt": 3})),
            Err(OutboxError::NotFailed { .. })
        ));
        assert!(matches!(
            o.retry_with("missing", serde_json::Value::Null),
            Err(OutboxError::Unknown(_))
        ));
    }

    #[test]
    fn a_second_intent_with_the_same_id_is_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(&dir.path().join("o.redb")).unwrap();
        o.record_intent("n", "r", serde_json::Value::Null).unwrap();
        o.mark_confirmed("n", Some("0x1")).unwrap();
        match o.record_intent("n", "r", serde_json::Value::Null) {
            Err(OutboxError::AlreadyRecorded { state, .. }) => {
                assert_eq!(state, SettlementState::Confirmed)
            }
            other => panic!("expected a replay refusal, got {other:?}"),
        }
        assert!(matches!(
            o.mark_sent("missing", "0x"),
            Err(OutboxError::Unknown(_))
        ));
    }
}
