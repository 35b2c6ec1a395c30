//! Evidence: every byte that entered a task through an import, content-addressed.
//!
//! A live run *records*: each `snapshot` and `fetch` becomes an [`EvidenceRecord`] (its bodies
//! stored as separate objects), and the receipt lists the records' CIDs in call order. A replay
//! *serves*: given those CIDs, the host answers each import from the records and never touches the
//! network; an import the evidence does not hold is an error, not a network request.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::egress::NetworkFailure;
use crate::store::{ContentStore, StoreError};
use d402_core::content_id::{CanonicalJsonError, ContentId, cid_of_json};

/// One import call and what it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum EvidenceRecord {
    /// A page frozen by the snapshotter.
    #[serde(rename_all = "camelCase")]
    Snapshot {
        url: String,
        outcome: Outcome<FrozenPageRecord>,
    },
    /// An HTTP request through egress.
    #[serde(rename_all = "camelCase")]
    Fetch {
        request: FetchRequestRecord,
        outcome: Outcome<FetchResponseRecord>,
    },
}

/// Either what came back, or the failure the capability was told about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome<T> {
    Ok(T),
    Failed(NetworkFailure),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrozenPageRecord {
    pub final_url: String,
    /// CID of the HTML bytes.
    pub html: ContentId,
    /// Which snapshotter froze it (`chromium`, `fetch`, `frozen`).
    pub snapshotter: String,
}

/// The request as the capability made it: the key a replay looks it up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchRequestRecord {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<ContentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchResponseRecord {
    pub final_url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ContentId,
}

/// The most evidence records one run may have. Each is a host-side object held for the task, so they
/// are bounded by count as well as by the egress byte budget; a receipt naming more is refused
/// before anything is loaded.
pub const MAX_EVIDENCE_RECORDS: usize = 1024;

/// Problems building or reading evidence.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("a run may have at most {limit} evidence records")]
    TooManyRecords { limit: usize },
    #[error("evidence object {0} is not in the content store")]
    Missing(ContentId),
    #[error("evidence object {cid} is not an evidence record: {reason}")]
    Malformed { cid: ContentId, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Canonical(#[from] CanonicalJsonError),
}

/// Objects a run produced (records and bodies) that must be stored for the run to be replayable.
#[derive(Debug, Default, Clone)]
pub struct EvidenceObjects {
    objects: Vec<(ContentId, Vec<u8>)>,
}

impl EvidenceObjects {
    /// Adds `bytes` and returns their CID.
    pub fn add(&mut self, bytes: Vec<u8>) -> ContentId {
        let cid = ContentId::of(&bytes);
        if !self.objects.iter().any(|(c, _)| *c == cid) {
            self.objects.push((cid, bytes));
        }
        cid
    }

    /// The objects in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (ContentId, &[u8])> {
        self.objects.iter().map(|(c, b)| (*c, b.as_slice()))
    }

    /// Looks up an object recorded in this run.
    pub fn get(&self, cid: &ContentId) -> Option<&[u8]> {
        self.objects
            .iter()
            .find(|(c, _)| c == cid)
            .map(|(_, b)| b.as_slice())
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Writes every object to `store` in one transaction.
    pub fn persist(&self, store: &ContentStore) -> Result<(), StoreError> {
        store.put_many(self.iter())
    }
}

/// Records the evidence of a live run.
#[derive(Debug, Default)]
pub struct EvidenceRecorder {
    pub(crate) records: Vec<ContentId>,
    pub(crate) objects: EvidenceObjects,
}

impl EvidenceRecorder {
    /// Stores a body and returns its CID.
    pub fn body(&mut self, bytes: Vec<u8>) -> ContentId {
        self.objects.add(bytes)
    }

    /// Stores a record (in canonical form) and appends it to the run's evidence list.
    pub fn record(&mut self, record: &EvidenceRecord) -> Result<ContentId, EvidenceError> {
        if self.records.len() >= MAX_EVIDENCE_RECORDS {
            return Err(EvidenceError::TooManyRecords {
                limit: MAX_EVIDENCE_RECORDS,
            });
        }
        let (cid, bytes) = cid_of_json(record)?;
        self.objects.add(bytes);
        self.records.push(cid);
        Ok(cid)
    }
}

/// A recorded answer: the outcome and, when it succeeded, its body.
pub(crate) type Recorded<T> = (Outcome<T>, Option<Vec<u8>>);

/// A recorded answer and the CID of the record it came from.
type Entry<T> = (ContentId, Recorded<T>);

/// Serves a replay from recorded evidence. Calls are matched by request, in recorded order, so a
/// capability that fetches the same URL twice gets the two recorded answers in turn.
#[derive(Debug, Default)]
pub struct ReplayBook {
    snapshots: HashMap<String, VecDeque<Entry<FrozenPageRecord>>>,
    fetches: HashMap<FetchRequestRecord, VecDeque<Entry<FetchResponseRecord>>>,
    records: Vec<ContentId>,
    /// Records served so far, in call order: the evidence list of the replay's own receipt.
    served: Vec<ContentId>,
}

impl ReplayBook {
    /// Loads the records named by `evidence` and the bodies they refer to, verifying every hash.
    pub fn load(store: &ContentStore, evidence: &[ContentId]) -> Result<Self, EvidenceError> {
        if evidence.len() > MAX_EVIDENCE_RECORDS {
            return Err(EvidenceError::TooManyRecords {
                limit: MAX_EVIDENCE_RECORDS,
            });
        }
        let mut book = ReplayBook {
            records: evidence.to_vec(),
            ..Default::default()
        };
        let fetch_body = |cid: &ContentId| -> Result<Vec<u8>, EvidenceError> {
            store.get(cid)?.ok_or(EvidenceError::Missing(*cid))
        };
        for cid in evidence {
            let bytes = fetch_body(cid)?;
            let record: EvidenceRecord =
                serde_json::from_slice(&bytes).map_err(|e| EvidenceError::Malformed {
                    cid: *cid,
                    reason: e.to_string(),
                })?;
            match record {
                EvidenceRecord::Snapshot { url, outcome } => {
                    let body = match &outcome {
                        Outcome::Ok(page) => Some(fetch_body(&page.html)?),
                        Outcome::Failed(_) => None,
                    };
                    book.snapshots
                        .entry(url)
                        .or_default()
                        .push_back((*cid, (outcome, body)));
                }
                EvidenceRecord::Fetch { request, outcome } => {
                    let body = match &outcome {
                        Outcome::Ok(resp) => Some(fetch_body(&resp.body)?),
                        Outcome::Failed(_) => None,
                    };
                    book.fetches
                        .entry(request)
                        .or_default()
                        .push_back((*cid, (outcome, body)));
                }
            }
        }
        Ok(book)
    }

    /// The recorded answer to the next snapshot of `url`.
    pub(crate) fn next_snapshot(&mut self, url: &str) -> Option<Recorded<FrozenPageRecord>> {
        let (cid, recorded) = self.snapshots.get_mut(url)?.pop_front()?;
        self.served.push(cid);
        Some(recorded)
    }

    /// The recorded answer to the next identical fetch.
    pub(crate) fn next_fetch(
        &mut self,
        request: &FetchRequestRecord,
    ) -> Option<Recorded<FetchResponseRecord>> {
        let (cid, recorded) = self.fetches.get_mut(request)?.pop_front()?;
        self.served.push(cid);
        Some(recorded)
    }

    /// The records served so far, in call order.
    pub(crate) fn served(&self) -> &[ContentId] {
        &self.served
    }

    /// The evidence list this book was loaded from.
    pub fn records(&self) -> &[ContentId] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> EvidenceRecord {
        EvidenceRecord::Fetch {
            request: FetchRequestRecord {
                method: "GET".into(),
                url: format!("https://example.com/{i}"),
                headers: Vec::new(),
                body: None,
            },
            outcome: Outcome::Failed(crate::egress::NetworkFailure::Unavailable("down".into())),
        }
    }

    #[test]
    fn a_run_holds_a_bounded_number_of_records() {
        let mut recorder = EvidenceRecorder::default();
        for i in 0..MAX_EVIDENCE_RECORDS {
            recorder.record(&record(i)).expect("within the limit");
        }
        let objects = recorder.objects.len();
        assert!(matches!(
            recorder.record(&record(MAX_EVIDENCE_RECORDS)),
            Err(EvidenceError::TooManyRecords {
                limit: MAX_EVIDENCE_RECORDS
            })
        ));
        // The refused record left nothing behind.
        assert_eq!(recorder.records.len(), MAX_EVIDENCE_RECORDS);
        assert_eq!(recorder.objects.len(), objects);
    }

    #[test]
    fn a_receipt_naming_too_many_records_is_refused_before_loading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open_path(dir.path()).expect("store");
        // None of these exist: the count alone refuses the list, before any lookup.
        let evidence = vec![ContentId::of(b"absent"); MAX_EVIDENCE_RECORDS + 1];
        assert!(matches!(
            ReplayBook::load(&store, &evidence),
            Err(EvidenceError::TooManyRecords { .. })
        ));
        assert!(matches!(
            ReplayBook::load(&store, &evidence[..1]),
            Err(EvidenceError::Missing(_))
        ));
    }
}
