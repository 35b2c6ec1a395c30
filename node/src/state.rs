//! The node's own database (one redb file under `--state`): the peers it knows and the reputation
//! of the workers it has dealt with. Content (components, evidence) lives in the host's
//! [`d402_host::ContentStore`] beside it.
//!
//! Both survive restarts: a worker restarted with the same `--state` redials the peers it knew
//! without `--peer`, and a coordinator keeps avoiding the workers that lied to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::reputation::Standing;

const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
const REPUTATION: TableDefinition<&str, &[u8]> = TableDefinition::new("reputation");

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[error("node state: {0}")]
pub struct StateError(String);

fn err(e: impl std::fmt::Display) -> StateError {
    StateError(e.to_string())
}

/// What the node remembers about one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerEntry {
    pub addresses: Vec<String>,
    /// Whether the addresses came from a signed peer record (the peer's own signature over its
    /// addresses) rather than from an unsigned identify message.
    pub signed: bool,
    pub last_seen_ms: u64,
}

/// The node database. Cheap to clone.
#[derive(Clone)]
pub struct NodeState {
    db: Arc<Database>,
}

impl NodeState {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(PEERS).map_err(err)?;
        tx.open_table(REPUTATION).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Records `peer`'s addresses, replacing what was known.
    pub fn remember_peer(
        &self,
        peer: &PeerId,
        addresses: &[Multiaddr],
        signed: bool,
        now_ms: u64,
    ) -> Result<(), StateError> {
        let entry = PeerEntry {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            signed,
            last_seen_ms: now_ms,
        };
        self.put(PEERS, &peer.to_string(), &entry)
    }

    /// Every remembered peer with its parsed addresses; entries that no longer parse are skipped.
    pub fn known_peers(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, StateError> {
        Ok(self
            .all::<PeerEntry>(PEERS)?
            .into_iter()
            .filter_map(|(id, entry)| {
                let peer: PeerId = id.parse().ok()?;
                let addrs = entry
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect::<Vec<_>>();
                Some((peer, addrs))
            })
            .collect())
    }

    pub fn standing(&self, peer: &PeerId) -> Result<Standing, StateError> {
        Ok(self.get(REPUTATION, &peer.to_string())?.unwrap_or_default())
    }

    /// Applies `change` to `peer`'s standing in one write transaction (read-modify-write under
    /// redb's single writer, so concurrent events are not lost).
    pub fn update_standing(
        &self,
        peer: &PeerId,
        change: impl FnOnce(&mut Standing),
    ) -> Result<Standing, StateError> {
        let key = peer.to_string();
        let tx = self.db.begin_write().map_err(err)?;
        let standing = {
            let mut table = tx.open_table(REPUTATION).map_err(err)?;
            let mut standing: Standing = match table.get(key.as_str()).map_err(err)? {
                Some(v) => serde_json::from_slice(v.value()).unwrap_or_default(),
                None => Standing::default(),
            };
            change(&mut standing);
            let bytes = serde_json::to_vec(&standing).map_err(err)?;
            table.insert(key.as_str(), bytes.as_slice()).map_err(err)?;
            standing
        };
        tx.commit().map_err(err)?;
        Ok(standing)
    }

    pub fn all_standings(&self) -> Result<BTreeMap<String, Standing>, StateError> {
        self.all(REPUTATION)
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value).map_err(err)?;
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(table)
            .map_err(err)?
            .insert(key, bytes.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StateError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(table).map_err(err)?;
        let Some(value) = table.get(key).map_err(err)? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value()).map(Some).map_err(err)
    }

    fn all<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<BTreeMap<String, T>, StateError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(table).map_err(err)?;
        let mut out = BTreeMap::new();
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Ok(value) = serde_json::from_slice(v.value()) {
                out.insert(k.value().to_string(), value);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_standing_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        {
            let state = NodeState::open(&path).unwrap();
            state
                .remember_peer(&peer, std::slice::from_ref(&addr), true, 5)
                .unwrap();
            state.update_standing(&peer, |s| s.rejected += 2).unwrap();
        }
        let state = NodeState::open(&path).unwrap();
        assert_eq!(state.known_peers().unwrap(), vec![(peer, vec![addr])]);
        assert_eq!(state.standing(&peer).unwrap().rejected, 2);
    }
}
