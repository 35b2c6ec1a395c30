//! The gateway's `solana-channel` book, in redb: per channel what was charged against the payer's
//! latest voucher, one row per accepted charge, each claimant's cumulative allocation, and every
//! signed root (kept by root hash, so a proof can always be rebuilt for whatever root the chain
//! holds, even when a retried publication raced an earlier one).
//!
//! A voucher is the money: a charge is committed here, in one write transaction that re-checks the
//! channel's cumulative amount, before the paid response leaves. An allocation (a task's split
//! over its worker, its creator and the gateway's fee) is committed once per charge, and only
//! within what the charge paid, so after any crash and retry every paid task is allocated exactly
//! once.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// channel (base58) → [`ChannelRecord`] (JSON)
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("sol_channels");
/// settlement id → [`Charge`] (JSON)
const CHARGES: TableDefinition<&str, &[u8]> = TableDefinition::new("sol_channel_charges");
/// "channel/claimant" → cumulative allocation (u64 LE)
const ALLOCATIONS: TableDefinition<&str, u64> = TableDefinition::new("sol_channel_allocations");
/// "channel/root hex" → [`SignedRoot`] (JSON)
const ROOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("sol_channel_roots");
/// settlement id → [`Funding`] (JSON): an opening or top-up recorded before its transaction is
/// sent and applied once it landed.
const FUNDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("sol_channel_fundings");

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("channel ledger database: {0}")]
    Database(String),
    #[error("channel ledger record {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// An allocation that does not add up to its charge, or of a charge that is not there.
    #[error("allocation of {settlement}: {reason}")]
    Allocation { settlement: String, reason: String },
}

d402_core::db_error_from!(LedgerError::Database);

/// A payer's cumulative voucher: its Ed25519 signature over
/// [`d402_program::instruction::voucher_message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Voucher {
    pub cumulative: u64,
    /// 64 bytes, hex.
    pub signature: String,
}

/// One channel as the gateway knows it (all keys base58).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    pub channel: String,
    pub payer: String,
    pub vault: String,
    pub mint: String,
    /// What the vault was funded with, as far as the gateway has seen (opening and top-ups).
    pub deposit: u64,
    /// What accepted vouchers add up to, net of reversed charges.
    pub charged: u64,
    /// The payer's latest voucher (its cumulative amount is at least `charged`).
    pub voucher: Option<Voucher>,
    /// When the gateway recorded the opening (unix ms; 0 when unknown), from which a first root
    /// is due.
    #[serde(default)]
    pub opened_ms: u64,
}

/// One accepted charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub channel: String,
    pub amount: u64,
    /// Its split was allocated to claimants.
    pub allocated: bool,
    /// Given back before allocation (the task failed).
    pub reversed: bool,
}

/// A root the authority signed: what it commits to and both signatures a publication carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedRoot {
    pub channel: String,
    pub seq: u64,
    pub total: u64,
    /// hex
    pub root: String,
    /// (claimant base58, cumulative amount), the tree's leaves.
    pub allocations: Vec<(String, u64)>,
    pub voucher: Voucher,
    /// The authority's signature over the root message, hex.
    pub authority_signature: String,
    /// When it was signed (ms).
    pub signed_at_ms: u64,
}

/// An opening or a top-up on its way to the chain: what the channel gains once it landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Funding {
    /// The channel as an opening records it (`deposit` 0, nothing charged); for a top-up, the
    /// channel it adds to.
    pub record: ChannelRecord,
    pub amount: u64,
    /// The charge that came with it (a buyer's payment), committed once the funding is applied;
    /// `None` for a funding the gateway makes of its own channel.
    #[serde(default)]
    pub voucher: Option<Voucher>,
    #[serde(default)]
    pub price: u64,
}

/// Why a charge was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeRefusal {
    /// The settlement id was charged before: a replayed voucher.
    Replay,
    /// The voucher is not `charged + price`; carries what was charged.
    Mismatch { charged: u64 },
    /// The voucher is above what the channel was funded with.
    AboveDeposit { deposit: u64, cumulative: u64 },
    /// No such channel.
    Unknown,
}

#[derive(Clone)]
pub struct Ledger {
    db: Arc<Database>,
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Corrupt(key.to_string(), e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn allocation_key(channel: &str, claimant: &str) -> String {
    format!("{channel}/{claimant}")
}

impl Ledger {
    /// Opens or creates the ledger at `path` (a file under the gateway's `--state`).
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(CHANNELS)?;
        tx.open_table(CHARGES)?;
        tx.open_table(ALLOCATIONS)?;
        tx.open_table(ROOTS)?;
        tx.open_table(FUNDINGS)?;
        tx.commit()?;
        Ok(Ledger { db: Arc::new(db) })
    }

    pub fn channel(&self, channel: &str) -> Result<Option<ChannelRecord>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHANNELS)?;
        t.get(channel)?
            .map(|v| decode(channel, v.value()))
            .transpose()
    }

    pub fn channels(&self) -> Result<Vec<ChannelRecord>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHANNELS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Records a channel seen opened (or a top-up: `deposit` grows, never shrinks). The
    /// channel's payer, vault and mint never change once recorded.
    pub fn adopt(&self, record: &ChannelRecord) -> Result<ChannelRecord, LedgerError> {
        let tx = self.db.begin_write()?;
        let kept = {
            let mut t = tx.open_table(CHANNELS)?;
            let existing: Option<ChannelRecord> = t
                .get(record.channel.as_str())?
                .map(|v| decode(&record.channel, v.value()))
                .transpose()?;
            let kept = match existing {
                Some(mut ch) => {
                    ch.deposit = ch.deposit.max(record.deposit);
                    ch
                }
                None => record.clone(),
            };
            t.insert(record.channel.as_str(), encode(&kept).as_slice())?;
            kept
        };
        tx.commit()?;
        Ok(kept)
    }

    pub fn charge_of(&self, settlement_id: &str) -> Result<Option<Charge>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHARGES)?;
        t.get(settlement_id)?
            .map(|v| decode(settlement_id, v.value()))
            .transpose()
    }

    /// Commits a charge of `price` against `voucher` (already verified), atomically: the
    /// voucher's cumulative amount must be exactly `charged + price` and within the deposit, and
    /// `settlement_id` not charged before.
    pub fn charge(
        &self,
        settlement_id: &str,
        channel: &str,
        voucher: &Voucher,
        price: u64,
    ) -> Result<Result<ChannelRecord, ChargeRefusal>, LedgerError> {
        let tx = self.db.begin_write()?;
        let result = {
            let mut channels = tx.open_table(CHANNELS)?;
            let mut charges = tx.open_table(CHARGES)?;
            if charges.get(settlement_id)?.is_some() {
                return Ok(Err(ChargeRefusal::Replay));
            }
            let Some(mut ch) = channels
                .get(channel)?
                .map(|v| decode::<ChannelRecord>(channel, v.value()))
                .transpose()?
            else {
                return Ok(Err(ChargeRefusal::Unknown));
            };
            if voucher.cumulative != ch.charged.saturating_add(price) {
                return Ok(Err(ChargeRefusal::Mismatch {
                    charged: ch.charged,
                }));
            }
            if voucher.cumulative > ch.deposit {
                return Ok(Err(ChargeRefusal::AboveDeposit {
                    deposit: ch.deposit,
                    cumulative: voucher.cumulative,
                }));
            }
            ch.charged = voucher.cumulative;
            ch.voucher = Some(voucher.clone());
            channels.insert(channel, encode(&ch).as_slice())?;
            let charge = Charge {
                channel: channel.to_string(),
                amount: price,
                allocated: false,
                reversed: false,
            };
            charges.insert(settlement_id, encode(&charge).as_slice())?;
            ch
        };
        tx.commit()?;
        Ok(Ok(result))
    }

    /// Allocates a charge's split to its claimants, once: `parts` must add up to the charge.
    /// Returns false when it was allocated before (a retry), and allocates nothing then.
    pub fn allocate(
        &self,
        settlement_id: &str,
        parts: &[(String, u64)],
    ) -> Result<bool, LedgerError> {
        let refuse = |reason: &str| LedgerError::Allocation {
            settlement: settlement_id.to_string(),
            reason: reason.to_string(),
        };
        let tx = self.db.begin_write()?;
        {
            let mut charges = tx.open_table(CHARGES)?;
            let mut allocations = tx.open_table(ALLOCATIONS)?;
            let Some(mut charge) = charges
                .get(settlement_id)?
                .map(|v| decode::<Charge>(settlement_id, v.value()))
                .transpose()?
            else {
                return Err(refuse("no such charge"));
            };
            if charge.allocated {
                return Ok(false);
            }
            if charge.reversed {
                return Err(refuse("the charge was given back"));
            }
            let sum = parts
                .iter()
                .try_fold(0u64, |s, (_, a)| s.checked_add(*a))
                .ok_or_else(|| refuse("the parts overflow"))?;
            if sum != charge.amount {
                return Err(refuse(&format!(
                    "the parts add up to {sum}, the charge is {}",
                    charge.amount
                )));
            }
            for (claimant, amount) in parts {
                let key = allocation_key(&charge.channel, claimant);
                let before = allocations
                    .get(key.as_str())?
                    .map(|v| v.value())
                    .unwrap_or(0);
                allocations.insert(key.as_str(), before.saturating_add(*amount))?;
            }
            charge.allocated = true;
            charges.insert(settlement_id, encode(&charge).as_slice())?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Gives an unallocated charge back (its task failed): `charged` goes down by its amount,
    /// once, and the payer's next voucher is expected from there. Returns the channel after, or
    /// `None` when there is nothing to give back (no such charge, reversed or allocated already).
    pub fn reverse(&self, settlement_id: &str) -> Result<Option<ChannelRecord>, LedgerError> {
        let tx = self.db.begin_write()?;
        let out = {
            let mut charges = tx.open_table(CHARGES)?;
            let mut channels = tx.open_table(CHANNELS)?;
            let Some(mut charge) = charges
                .get(settlement_id)?
                .map(|v| decode::<Charge>(settlement_id, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            if charge.reversed || charge.allocated {
                return Ok(None);
            }
            let Some(mut ch) = channels
                .get(charge.channel.as_str())?
                .map(|v| decode::<ChannelRecord>(&charge.channel, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            ch.charged = ch.charged.saturating_sub(charge.amount);
            charge.reversed = true;
            charges.insert(settlement_id, encode(&charge).as_slice())?;
            channels.insert(charge.channel.as_str(), encode(&ch).as_slice())?;
            ch
        };
        tx.commit()?;
        Ok(Some(out))
    }

    /// Every claimant's cumulative allocation in `channel`.
    pub fn allocations(&self, channel: &str) -> Result<Vec<(String, u64)>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ALLOCATIONS)?;
        let prefix = format!("{channel}/");
        let mut out = Vec::new();
        for entry in t.range(prefix.as_str()..)? {
            let (k, v) = entry?;
            let Some(claimant) = k.value().strip_prefix(&prefix) else {
                break;
            };
            out.push((claimant.to_string(), v.value()));
        }
        Ok(out)
    }

    /// Keeps a signed root (before it is handed to anyone to publish).
    pub fn keep_root(&self, root: &SignedRoot) -> Result<(), LedgerError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(ROOTS)?;
            let key = format!("{}/{}", root.channel, root.root);
            t.insert(key.as_str(), encode(root).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The signed root of `channel` whose hash is `root` (hex).
    pub fn root(&self, channel: &str, root: &str) -> Result<Option<SignedRoot>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROOTS)?;
        let key = format!("{channel}/{root}");
        t.get(key.as_str())?
            .map(|v| decode(&key, v.value()))
            .transpose()
    }

    /// Every signed root of `channel`, by sequence number.
    pub fn roots(&self, channel: &str) -> Result<Vec<SignedRoot>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROOTS)?;
        let prefix = format!("{channel}/");
        let mut out: Vec<SignedRoot> = Vec::new();
        for entry in t.range(prefix.as_str()..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(decode(k.value(), v.value())?);
        }
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// Records a funding before its transaction is sent, so a restart can apply it.
    pub fn record_funding(
        &self,
        settlement_id: &str,
        funding: &Funding,
    ) -> Result<(), LedgerError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(FUNDINGS)?;
            t.insert(settlement_id, encode(funding).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every funding recorded and not yet applied or dropped.
    pub fn fundings(&self) -> Result<Vec<(String, Funding)>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(FUNDINGS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Applies a landed funding, once: the opening records its channel, a top-up adds to the
    /// deposit, and the pending record goes in the same write. Returns the funding, or `None`
    /// when there was nothing pending under `settlement_id` (applied before).
    pub fn apply_funding(&self, settlement_id: &str) -> Result<Option<Funding>, LedgerError> {
        let tx = self.db.begin_write()?;
        let out = {
            let mut fundings = tx.open_table(FUNDINGS)?;
            let mut channels = tx.open_table(CHANNELS)?;
            let Some(funding) = fundings
                .remove(settlement_id)?
                .map(|v| decode::<Funding>(settlement_id, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            let name = funding.record.channel.clone();
            let mut ch = channels
                .get(name.as_str())?
                .map(|v| decode::<ChannelRecord>(&name, v.value()))
                .transpose()?
                .unwrap_or_else(|| funding.record.clone());
            ch.deposit = ch.deposit.saturating_add(funding.amount);
            channels.insert(name.as_str(), encode(&ch).as_slice())?;
            funding
        };
        tx.commit()?;
        Ok(Some(out))
    }

    /// Forgets a funding whose transaction failed or expired: the channel gains nothing.
    pub fn drop_funding(&self, settlement_id: &str) -> Result<(), LedgerError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(FUNDINGS)?;
            t.remove(settlement_id)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(&dir.path().join("channels.redb")).expect("open");
        (dir, l)
    }

    fn voucher(cumulative: u64) -> Voucher {
        Voucher {
            cumulative,
            signature: "00".repeat(64),
        }
    }

    fn channel(deposit: u64) -> ChannelRecord {
        ChannelRecord {
            channel: "C".into(),
            payer: "P".into(),
            vault: "V".into(),
            mint: "M".into(),
            deposit,
            charged: 0,
            voucher: None,
            opened_ms: 0,
        }
    }

    #[test]
    fn charges_follow_the_cumulative_voucher_and_refuse_replays() {
        let (_d, l) = ledger();
        assert_eq!(
            l.charge("s1", "C", &voucher(10), 10).expect("db"),
            Err(ChargeRefusal::Unknown)
        );
        l.adopt(&channel(25)).expect("adopt");
        assert!(l.charge("s1", "C", &voucher(10), 10).expect("db").is_ok());
        assert_eq!(
            l.charge("s1", "C", &voucher(20), 10).expect("db"),
            Err(ChargeRefusal::Replay)
        );
        assert_eq!(
            l.charge("s2", "C", &voucher(10), 10).expect("db"),
            Err(ChargeRefusal::Mismatch { charged: 10 })
        );
        assert!(l.charge("s2", "C", &voucher(20), 10).expect("db").is_ok());
        assert_eq!(
            l.charge("s3", "C", &voucher(30), 10).expect("db"),
            Err(ChargeRefusal::AboveDeposit {
                deposit: 25,
                cumulative: 30
            })
        );
        // A top-up raises the deposit; an older, smaller sighting never lowers it.
        l.adopt(&channel(40)).expect("top-up");
        l.adopt(&channel(25)).expect("stale");
        assert_eq!(l.channel("C").expect("db").map(|c| c.deposit), Some(40));
        assert!(l.charge("s3", "C", &voucher(30), 10).expect("db").is_ok());
    }

    #[test]
    fn each_charge_is_allocated_once_and_exactly() {
        let (_d, l) = ledger();
        l.adopt(&channel(100)).expect("adopt");
        l.charge("s1", "C", &voucher(10), 10)
            .expect("db")
            .expect("charged");
        l.charge("s2", "C", &voucher(20), 10)
            .expect("db")
            .expect("charged");
        let parts = |w: u64, c: u64, g: u64| {
            vec![
                ("W".to_string(), w),
                ("K".to_string(), c),
                ("G".to_string(), g),
            ]
        };
        assert!(
            l.allocate("s1", &parts(8, 1, 2)).is_err(),
            "11 is not the charge"
        );
        assert!(l.allocate("s1", &parts(7, 1, 2)).expect("allocate"));
        assert!(
            !l.allocate("s1", &parts(7, 1, 2)).expect("retry"),
            "a retry allocates nothing"
        );
        assert!(l.allocate("nope", &parts(7, 1, 2)).is_err());
        // s2's task failed before allocation: given back, then it cannot be allocated.
        assert_eq!(l.reverse("s2").expect("db").map(|c| c.charged), Some(10));
        assert_eq!(l.reverse("s2").expect("db"), None);
        assert!(l.allocate("s2", &parts(7, 1, 2)).is_err());
        // An allocated charge is not given back.
        assert_eq!(l.reverse("s1").expect("db"), None);
        let mut got = l.allocations("C").expect("db");
        got.sort();
        assert_eq!(got, vec![("G".into(), 2), ("K".into(), 1), ("W".into(), 7)]);
        assert!(l.allocations("D").expect("db").is_empty());
    }

    #[test]
    fn a_funding_is_applied_once_with_its_charge_and_a_dropped_one_adds_nothing() {
        let (_d, l) = ledger();
        let funding = |amount: u64, cumulative: u64| Funding {
            record: channel(0),
            amount,
            voucher: Some(voucher(cumulative)),
            price: 10,
        };
        // The opening: the channel appears with its deposit only when applied, and only once.
        l.record_funding("open", &funding(100, 10)).expect("record");
        assert_eq!(l.channel("C").expect("read"), None);
        assert_eq!(l.fundings().expect("read").len(), 1);
        assert!(l.apply_funding("open").expect("apply").is_some());
        assert_eq!(l.apply_funding("open").expect("again"), None);
        assert_eq!(l.channel("C").expect("read").map(|c| c.deposit), Some(100));
        assert!(l.fundings().expect("read").is_empty());
        // A top-up that failed on chain is dropped: the deposit does not grow.
        l.record_funding("top-up", &funding(50, 20))
            .expect("record");
        l.drop_funding("top-up").expect("drop");
        assert_eq!(l.apply_funding("top-up").expect("apply"), None);
        assert_eq!(l.channel("C").expect("read").map(|c| c.deposit), Some(100));
        // One that landed adds to it.
        l.record_funding("top-up-2", &funding(50, 20))
            .expect("record");
        assert!(l.apply_funding("top-up-2").expect("apply").is_some());
        assert_eq!(l.channel("C").expect("read").map(|c| c.deposit), Some(150));
    }
}
