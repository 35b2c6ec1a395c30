//! What a task-escrow rail's open escrows hold (funded or being funded, not yet released or
//! refunded), for `D402_SAFETY_MAX_OPEN_TASK_ESCROW_BUDGET`. Rebuilt from the rail's outbox on first
//! use and after each reconciliation, then kept up to date as escrows open and close.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::error::RailError;

/// Open escrows by key (a task id, an escrow address), with their amounts.
pub struct OpenEscrows<K> {
    /// `None` means "rebuild from the outbox".
    open: Mutex<Option<BTreeMap<K, Atomic>>>,
}

impl<K: Ord> Default for OpenEscrows<K> {
    fn default() -> Self {
        Self {
            open: Mutex::new(None),
        }
    }
}

impl<K: Ord> OpenEscrows<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<BTreeMap<K, Atomic>>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sum of open escrows, scanning the outbox (`scan`) when the book was forgotten.
    pub fn total(
        &self,
        scan: impl FnOnce() -> Result<BTreeMap<K, Atomic>, RailError>,
    ) -> Result<Atomic, RailError> {
        let mut open = self.lock();
        if open.is_none() {
            *open = Some(scan()?);
        }
        open.iter()
            .flat_map(|m| m.values())
            .try_fold(Atomic::ZERO, |a, b| a.checked_add(*b))
            .ok_or_else(|| RailError::Refused("open escrow total overflows".into()))
    }

    /// Checks a new escrow of `amount` against the caps (task budget, commission, open total).
    pub fn check(
        &self,
        caps: &SafetyCaps,
        amount: Atomic,
        creator_bps: u16,
        scan: impl FnOnce() -> Result<BTreeMap<K, Atomic>, RailError>,
    ) -> Result<(), RailError> {
        let open_after = self
            .total(scan)?
            .checked_add(amount)
            .ok_or_else(|| RailError::Refused("open escrow total overflows".into()))?;
        Ok(caps.check(&Exposure {
            task_budget: amount,
            creator_bps,
            open_task_escrow_after: Some(open_after),
            ..Exposure::default()
        })?)
    }

    /// Records `key` as open (`Some(amount)`) or closed (`None`).
    pub fn note(&self, key: K, amount: Option<Atomic>) {
        if let Some(map) = self.lock().as_mut() {
            match amount {
                Some(a) => map.insert(key, a),
                None => map.remove(&key),
            };
        }
    }

    /// Forgets the book: the next total is rebuilt from the outbox (after a reconciliation, or
    /// when a send failed midway and what is open is uncertain).
    pub fn forget(&self) {
        *self.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanned_once_then_kept_up_to_date() {
        let book = OpenEscrows::<u8>::default();
        let scans = std::cell::Cell::new(0);
        let scan = || {
            scans.set(scans.get() + 1);
            Ok(BTreeMap::from([(1, Atomic::new(5))]))
        };
        assert_eq!(book.total(scan).unwrap(), Atomic::new(5));
        book.note(2, Some(Atomic::new(7)));
        assert_eq!(book.total(scan).unwrap(), Atomic::new(12));
        book.note(1, None);
        assert_eq!(book.total(scan).unwrap(), Atomic::new(7));
        assert_eq!(scans.get(), 1);
        book.forget();
        assert_eq!(book.total(scan).unwrap(), Atomic::new(5));
        assert_eq!(scans.get(), 2);
        let caps = SafetyCaps {
            max_open_task_escrow_budget: Some(Atomic::new(10)),
            ..SafetyCaps::default()
        };
        assert!(book.check(&caps, Atomic::new(5), 0, scan).is_ok());
        assert!(book.check(&caps, Atomic::new(6), 0, scan).is_err());
    }
}
