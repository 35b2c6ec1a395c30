//! The content store: immutable objects kept in redb, keyed by their CID.
//!
//! The hash is checked on every `put` (the bytes must hash to the CID they are stored under) and on
//! every read (a disk that flips a bit, or a hand-edited database, must not feed wrong bytes to a
//! task). The database file is opened through a `cap-std` directory handle rooted at the node's
//! state folder, so no name taken from input can reach outside it.

use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptions};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use d402_core::content_id::{CidMismatch, ContentId};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const FILE_NAME: &str = "objects.redb";

/// What can go wrong in the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("content store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("content store database: {0}")]
    Database(String),
    #[error("refused to store object: {0}")]
    Mismatch(#[from] CidMismatch),
    #[error("stored object {cid} is corrupt: {source}")]
    Corrupt {
        cid: ContentId,
        #[source]
        source: CidMismatch,
    },
}

d402_core::db_error_from!(StoreError::Database);

/// A redb-backed store of objects by CID. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct ContentStore {
    db: Arc<Database>,
}

impl ContentStore {
    /// Opens (or creates) the store in `dir`, the node's state folder.
    pub fn open(dir: &Dir) -> Result<Self, StoreError> {
        let file = dir.open_with(
            FILE_NAME,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        let backend = redb::backends::FileBackend::new(file.into_std())?;
        let db = Database::builder().create_with_backend(backend)?;
        let tx = db.begin_write()?;
        tx.open_table(OBJECTS)?;
        tx.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Opens the store in the folder at `path`, creating the folder if needed.
    pub fn open_path(path: &std::path::Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Self::open(&dir)
    }

    /// Stores `bytes` and returns their CID.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentId, StoreError> {
        let cid = ContentId::of(bytes);
        self.put_many([(cid, bytes)])?;
        Ok(cid)
    }

    /// Stores `bytes` under `cid`, refusing bytes that do not hash to it.
    pub fn put_verified(&self, cid: &ContentId, bytes: &[u8]) -> Result<(), StoreError> {
        cid.verify(bytes)?;
        self.put_many([(*cid, bytes)])
    }

    /// Stores several objects in one transaction. Every object is verified first; if one fails,
    /// nothing is written.
    pub fn put_many<'a>(
        &self,
        objects: impl IntoIterator<Item = (ContentId, &'a [u8])>,
    ) -> Result<(), StoreError> {
        let objects: Vec<_> = objects.into_iter().collect();
        for (cid, bytes) in &objects {
            cid.verify(bytes)?;
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(OBJECTS)?;
            for (cid, bytes) in &objects {
                let key = cid.to_bytes();
                if table.get(key.as_slice())?.is_none() {
                    table.insert(key.as_slice(), *bytes)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads an object, checking its hash. `Ok(None)` if the store does not have it.
    pub fn get(&self, cid: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OBJECTS)?;
        let Some(value) = table.get(cid.to_bytes().as_slice())? else {
            return Ok(None);
        };
        let bytes = value.value().to_vec();
        cid.verify(&bytes)
            .map_err(|source| StoreError::Corrupt { cid: *cid, source })?;
        Ok(Some(bytes))
    }

    /// Whether the store holds `cid` (without reading or checking it).
    pub fn contains(&self, cid: &ContentId) -> Result<bool, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OBJECTS)?;
        Ok(table.get(cid.to_bytes().as_slice())?.is_some())
    }

    /// Overwrites an object without checking it. Only for tests that simulate disk corruption.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, cid: &ContentId, bytes: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(OBJECTS)?;
            table.insert(cid.to_bytes().as_slice(), bytes)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open_path(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn put_then_get_returns_the_same_bytes() {
        let (_dir, store) = store();
        let cid = store.put(b"frozen html").unwrap();
        assert_eq!(store.get(&cid).unwrap().unwrap(), b"frozen html");
        assert!(store.contains(&cid).unwrap());
        assert_eq!(store.get(&ContentId::of(b"other")).unwrap(), None);
    }

    #[test]
    fn refuses_bytes_under_a_cid_they_do_not_hash_to() {
        let (_dir, store) = store();
        let cid = ContentId::of(b"the real bytes");
        let err = store.put_verified(&cid, b"other bytes").unwrap_err();
        assert!(matches!(err, StoreError::Mismatch(_)), "{err}");
        assert!(!store.contains(&cid).unwrap(), "nothing may be written");
    }

    #[test]
    fn a_batch_with_one_bad_object_writes_nothing() {
        let (_dir, store) = store();
        let good = ContentId::of(b"good");
        let bad = ContentId::of(b"bad");
        let err = store
            .put_many([(good, &b"good"[..]), (bad, &b"tampered"[..])])
            .unwrap_err();
        assert!(matches!(err, StoreError::Mismatch(_)));
        assert!(!store.contains(&good).unwrap());
    }

    #[test]
    fn detects_corruption_on_read() {
        let (_dir, store) = store();
        let cid = store.put(b"evidence").unwrap();
        store.corrupt_for_test(&cid, b"evidencf").unwrap();
        assert!(matches!(store.get(&cid), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let cid = ContentStore::open_path(dir.path())
            .unwrap()
            .put(b"kept")
            .unwrap();
        let store = ContentStore::open_path(dir.path()).unwrap();
        assert_eq!(store.get(&cid).unwrap().unwrap(), b"kept");
    }
}
