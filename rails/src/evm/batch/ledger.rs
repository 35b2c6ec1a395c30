//! The gateway's per-channel state, in redb: the scheme's server state (what it charged, the
//! latest voucher the payer signed, the on-chain mirror) and one row per accepted charge.
//!
//! A voucher is the money: a charge is committed here, in one write transaction that re-checks
//! the channel's cumulative amount, before the paid response leaves. Everything the claim loop
//! sends follows from this table (claim up to `charged`, with the latest voucher), so a restart
//! claims exactly what was accepted.

use std::path::Path;
use std::sync::Arc;

use alloy::primitives::B256;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::config::ChannelConfig;
use super::payload::SignedVoucher;
use crate::amount::Atomic;

/// channel id (hex) → [`Channel`] (JSON)
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("batch_channels");
/// settlement id → [`Charge`] (JSON)
const CHARGES: TableDefinition<&str, &[u8]> = TableDefinition::new("batch_charges");

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("batch ledger database: {0}")]
    Database(String),
    #[error("batch ledger record {0} is corrupt: {1}")]
    Corrupt(String, String),
}

d402_core::db_error_from!(LedgerError::Database);

/// One channel as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: B256,
    pub config: ChannelConfig,
    /// What the gateway has charged in total (the scheme's `chargedCumulativeAmount`).
    pub charged: Atomic,
    /// The latest voucher the payer signed; its ceiling is at least `charged`.
    pub voucher: Option<SignedVoucher>,
    /// Deposited and not withdrawn or refunded, as far as the gateway knows (confirmed
    /// deposits it submitted, plus what it read on chain).
    pub balance: Atomic,
    /// Claimed on chain (mirrored after each claim).
    pub total_claimed: Atomic,
    /// When the payer started a timed withdrawal (unix seconds), 0 when none.
    pub withdraw_requested_at: u64,
    pub refund_nonce: u64,
    /// Unix milliseconds of the first charge not yet claimed (0 when all is claimed): the claim
    /// window runs from it.
    pub unclaimed_since_ms: u64,
}

impl Channel {
    /// A channel first seen with `balance` on chain and `total_claimed` already claimed: the
    /// scheme's baseline after state loss is charged = claimed.
    pub fn new(id: B256, config: ChannelConfig, balance: Atomic, total_claimed: Atomic) -> Self {
        Channel {
            id,
            config,
            charged: total_claimed,
            voucher: None,
            balance,
            total_claimed,
            withdraw_requested_at: 0,
            refund_nonce: 0,
            unclaimed_since_ms: 0,
        }
    }

    /// When the payer's running withdrawal ends (unix seconds), if one is running.
    pub fn withdrawal_ends(&self) -> Option<u64> {
        (self.withdraw_requested_at != 0)
            .then(|| self.withdraw_requested_at + self.config.withdraw_delay)
    }

    /// Charged and not yet claimed.
    pub fn unclaimed(&self) -> u128 {
        self.charged.get().saturating_sub(self.total_claimed.get())
    }

    /// The scheme's `channelState` object, as payment responses and corrective 402s carry it.
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::json!({
            "channelId": self.id.to_string(),
            "balance": self.balance.get().to_string(),
            "totalClaimed": self.total_claimed.get().to_string(),
            "withdrawRequestedAt": self.withdraw_requested_at,
            "refundNonce": self.refund_nonce.to_string(),
            "chargedCumulativeAmount": self.charged.get().to_string(),
        })
    }
}

/// One accepted payment: what it charged on which channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub channel: B256,
    pub amount: Atomic,
    /// Given back (the task failed): no longer part of `charged`.
    pub reversed: bool,
    /// Of a reversed charge, what had been claimed already and is owed back in money (paid
    /// idempotently per task, so a retried refund asks again).
    #[serde(default)]
    pub owed_back: Atomic,
}

/// Why a charge was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeRefusal {
    /// The settlement id was charged before: a replayed voucher.
    Replay,
    /// The voucher's ceiling is not `charged + price`; carries the channel for the corrective 402.
    Mismatch(Box<Channel>),
    /// The voucher's ceiling is above the channel's balance.
    AboveBalance { balance: Atomic, ceiling: Atomic },
    /// No channel with a balance.
    Unknown,
}

/// What the ledger answers a charge with.
pub type ChargeResult = Result<Result<Channel, ChargeRefusal>, LedgerError>;

#[derive(Clone)]
pub struct Ledger {
    db: Arc<Database>,
}

fn now_ms() -> u64 {
    d402_core::clock::now_ms()
}

impl Ledger {
    /// Opens or creates the ledger at `path` (a file under the gateway's `--state`).
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(CHANNELS)?;
        tx.open_table(CHARGES)?;
        tx.commit()?;
        Ok(Ledger { db: Arc::new(db) })
    }

    pub fn channel(&self, id: &B256) -> Result<Option<Channel>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHANNELS)?;
        t.get(id.to_string().as_str())?
            .map(|v| decode(&id.to_string(), v.value()))
            .transpose()
    }

    pub fn channels(&self) -> Result<Vec<Channel>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHANNELS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn charge_of(&self, settlement_id: &str) -> Result<Option<Charge>, LedgerError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(CHARGES)?;
        t.get(settlement_id)?
            .map(|v| decode(settlement_id, v.value()))
            .transpose()
    }

    /// Commits a charge of `price` against `voucher`, atomically: the voucher's ceiling must be
    /// exactly `charged + price` and within the balance, and `settlement_id` not charged before.
    /// The channel must be in the ledger (verification adopts it, [`Ledger::adopt`]);
    /// `deposited` is added to its balance first (a confirmed deposit).
    pub fn charge(
        &self,
        settlement_id: &str,
        voucher: &SignedVoucher,
        price: Atomic,
        deposited: Atomic,
    ) -> ChargeResult {
        let key = voucher.channel_id.to_string();
        let tx = self.db.begin_write()?;
        let result = {
            let mut channels = tx.open_table(CHANNELS)?;
            let mut charges = tx.open_table(CHARGES)?;
            if charges.get(settlement_id)?.is_some() {
                return Ok(Err(ChargeRefusal::Replay));
            }
            let Some(mut ch) = load(&channels, &key)? else {
                return Ok(Err(ChargeRefusal::Unknown));
            };
            ch.balance = Atomic::new(ch.balance.get().saturating_add(deposited.get()));
            let expected = ch.charged.get().saturating_add(price.get());
            let ceiling = voucher.max_claimable_amount;
            if ceiling.get() != expected {
                return Ok(Err(ChargeRefusal::Mismatch(Box::new(ch))));
            }
            if ceiling > ch.balance {
                return Ok(Err(ChargeRefusal::AboveBalance {
                    balance: ch.balance,
                    ceiling,
                }));
            }
            if ch.unclaimed() == 0 {
                ch.unclaimed_since_ms = now_ms();
            }
            ch.charged = ceiling;
            ch.voucher = Some(voucher.clone());
            channels.insert(key.as_str(), encode(&ch).as_slice())?;
            let charge = Charge {
                channel: voucher.channel_id,
                amount: price,
                reversed: false,
                owed_back: Atomic::new(0),
            };
            charges.insert(settlement_id, encode(&charge).as_slice())?;
            ch
        };
        tx.commit()?;
        Ok(Ok(result))
    }

    /// Gives a charge back (its task failed): `charged` goes down by its amount, once, but never
    /// below what was claimed on chain. Returns the channel after and how much of the charge is
    /// still owed back (claimed already: the rail pays it back in money), or `None` when there
    /// was no such charge.
    pub fn reverse(&self, settlement_id: &str) -> Result<Option<(Channel, Atomic)>, LedgerError> {
        let tx = self.db.begin_write()?;
        let out = {
            let mut channels = tx.open_table(CHANNELS)?;
            let mut charges = tx.open_table(CHARGES)?;
            let Some(mut charge) = charges
                .get(settlement_id)?
                .map(|v| decode::<Charge>(settlement_id, v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            let key = charge.channel.to_string();
            let Some(mut ch) = load(&channels, &key)? else {
                return Ok(None);
            };
            let mut owed = charge.owed_back;
            if !charge.reversed {
                // Never below what was claimed: a claimed charge is the receiver's already.
                let floor = ch.total_claimed.get();
                let after = ch
                    .charged
                    .get()
                    .saturating_sub(charge.amount.get())
                    .max(floor);
                owed = Atomic::new(charge.amount.get() - (ch.charged.get() - after));
                ch.charged = Atomic::new(after);
                charge.reversed = true;
                charge.owed_back = owed;
                charges.insert(settlement_id, encode(&charge).as_slice())?;
                channels.insert(key.as_str(), encode(&ch).as_slice())?;
            }
            (ch, owed)
        };
        tx.commit()?;
        Ok(Some(out))
    }

    /// Applies `f` to channel `id` and stores it (the on-chain mirror after a claim, a refund or
    /// a withdrawal read). Returns the channel after, `None` when unknown.
    pub fn update(
        &self,
        id: &B256,
        f: impl FnOnce(&mut Channel),
    ) -> Result<Option<Channel>, LedgerError> {
        let key = id.to_string();
        let tx = self.db.begin_write()?;
        let out = {
            let mut channels = tx.open_table(CHANNELS)?;
            let Some(mut ch) = load(&channels, &key)? else {
                return Ok(None);
            };
            f(&mut ch);
            channels.insert(key.as_str(), encode(&ch).as_slice())?;
            ch
        };
        tx.commit()?;
        Ok(Some(out))
    }

    /// Stores a channel first seen on chain, unless the ledger has it already (never overwrites
    /// what was charged).
    pub fn adopt(&self, ch: &Channel) -> Result<(), LedgerError> {
        let key = ch.id.to_string();
        let tx = self.db.begin_write()?;
        {
            let mut channels = tx.open_table(CHANNELS)?;
            if channels.get(key.as_str())?.is_none() {
                channels.insert(key.as_str(), encode(ch).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes a channel the payer took everything back from (a full refund).
    pub fn remove(&self, id: &B256) -> Result<(), LedgerError> {
        let tx = self.db.begin_write()?;
        tx.open_table(CHANNELS)?.remove(id.to_string().as_str())?;
        tx.commit()?;
        Ok(())
    }
}

/// Channel `key` from the channel table of a transaction.
fn load(
    channels: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Channel>, LedgerError> {
    channels
        .get(key)?
        .map(|v| decode::<Channel>(key, v.value()))
        .transpose()
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Corrupt(key.to_string(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, Bytes};

    fn config() -> ChannelConfig {
        ChannelConfig {
            payer: Address::repeat_byte(1),
            payer_authorizer: Address::repeat_byte(1),
            receiver: Address::repeat_byte(2),
            receiver_authorizer: Address::repeat_byte(2),
            token: Address::repeat_byte(3),
            withdraw_delay: 900,
            salt: B256::ZERO,
        }
    }

    fn voucher(max: u128) -> SignedVoucher {
        SignedVoucher {
            channel_id: B256::repeat_byte(9),
            max_claimable_amount: Atomic::new(max),
            signature: Bytes::from(vec![0u8; 65]),
        }
    }

    /// Charges are exact and cumulative, survive a reopen, refuse a replay, a ceiling that is not
    /// charged + price, and one above the balance; a reversal gives the amount back once.
    #[test]
    fn charges_are_exact_durable_and_reversible_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.redb");
        let seen = Channel::new(
            B256::repeat_byte(9),
            config(),
            Atomic::new(0),
            Atomic::new(0),
        );
        let l = Ledger::open(&path).unwrap();
        l.adopt(&seen).unwrap();
        let p = Atomic::new(100);
        let ch = l
            .charge("a", &voucher(100), p, Atomic::new(1000))
            .unwrap()
            .unwrap();
        assert_eq!((ch.charged.get(), ch.balance.get()), (100, 1000));
        assert_eq!(
            l.charge("a", &voucher(200), p, Atomic::new(0)).unwrap(),
            Err(ChargeRefusal::Replay)
        );
        assert!(
            matches!(l.charge("b", &voucher(150), p, Atomic::new(0)).unwrap(), Err(ChargeRefusal::Mismatch(c)) if c.charged.get() == 100)
        );
        drop(l);
        let l = Ledger::open(&path).unwrap();
        l.charge("b", &voucher(200), p, Atomic::new(0))
            .unwrap()
            .unwrap();
        assert!(matches!(
            l.charge("c", &voucher(1100), Atomic::new(900), Atomic::new(0))
                .unwrap(),
            Err(ChargeRefusal::AboveBalance { .. })
        ));
        let (ch, owed) = l.reverse("b").unwrap().unwrap();
        assert_eq!((ch.charged.get(), owed.get()), (100, 0));
        let (ch, owed) = l.reverse("b").unwrap().unwrap();
        assert_eq!((ch.charged.get(), owed.get()), (100, 0), "once");
        // After the reversal the next voucher is 100 + 100 again; a second 200 is a new charge.
        assert_eq!(
            l.charge("e", &voucher(200), p, Atomic::new(0))
                .unwrap()
                .unwrap()
                .charged
                .get(),
            200
        );
        // A charge claimed already cannot be taken off the channel: it is owed back instead.
        l.update(&B256::repeat_byte(9), |c| {
            c.total_claimed = Atomic::new(200)
        })
        .unwrap();
        let (ch, owed) = l.reverse("e").unwrap().unwrap();
        assert_eq!((ch.charged.get(), owed.get()), (200, 100));
        let (_, owed) = l.reverse("e").unwrap().unwrap();
        assert_eq!(owed.get(), 100, "a retried refund is owed the same");
        let other = SignedVoucher {
            channel_id: B256::repeat_byte(8),
            ..voucher(100)
        };
        assert_eq!(
            l.charge("d", &other, p, Atomic::new(0)).unwrap(),
            Err(ChargeRefusal::Unknown)
        );
    }
}
