//! Fetching content-addressed objects from peers. Bytes are hashed on arrival: bytes that do not
//! match the CID asked for are discarded, the peer that sent them is penalised, and the next peer
//! is asked. Only verified bytes reach the content store.

use std::time::Duration;

use d402_core::ContentId;
use d402_host::ContentStore;
use libp2p::PeerId;

use crate::reputation::ReputationEvent;
use crate::state::NodeState;
use crate::swarm::NetHandle;
use crate::wire::MAX_OBJECT_BYTES;

const OBJECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An object no peer would give us.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("object {cid} is not held by any peer asked ({asked} asked, {lied} sent wrong bytes)")]
    Unavailable {
        cid: ContentId,
        asked: usize,
        lied: usize,
    },
    #[error("content store: {0}")]
    Store(String),
}

/// Makes sure `cid` is in `store`, asking `peers` in order. Returns the bytes.
pub async fn ensure(
    net: &NetHandle,
    store: &ContentStore,
    state: &NodeState,
    cid: ContentId,
    peers: &[PeerId],
) -> Result<Vec<u8>, FetchError> {
    if let Some(bytes) = store
        .get(&cid)
        .map_err(|e| FetchError::Store(e.to_string()))?
    {
        return Ok(bytes);
    }
    let mut lied = 0;
    for peer in peers {
        let reply = match net.object(*peer, cid, OBJECT_TIMEOUT).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(%peer, %cid, "object request failed: {e}");
                continue;
            }
        };
        let bytes = match reply.into_bytes() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(%peer, %cid, "malformed object reply: {e}");
                lied += 1;
                penalise(state, peer);
                continue;
            }
        };
        if bytes.len() > MAX_OBJECT_BYTES || cid.verify(&bytes).is_err() {
            tracing::warn!(%peer, %cid, "peer sent bytes that do not match the CID; discarded");
            lied += 1;
            penalise(state, peer);
            continue;
        }
        store
            .put_verified(&cid, &bytes)
            .map_err(|e| FetchError::Store(e.to_string()))?;
        return Ok(bytes);
    }
    Err(FetchError::Unavailable {
        cid,
        asked: peers.len(),
        lied,
    })
}

fn penalise(state: &NodeState, peer: &PeerId) {
    if let Err(e) = state.update_standing(peer, |s| s.apply(ReputationEvent::BadObject)) {
        tracing::warn!("cannot record bad object from {peer}: {e}");
    }
}
