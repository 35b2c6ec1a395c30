//! The client side of the task protocol: submit an intent into the network and await the
//! validated outcome. Tests use it directly; the gateway wraps it in HTTP.
//!
//! One task goes: find the workers that offer the capability (DHT provider records) → ask each
//! for a bid → order the bids by reputation, excluding workers caught lying → lease → collect
//! signed claims until enough agree (mode `single`, `race` or `quorum`) → have a validator
//! re-execute from the evidence → record a reputation event for every worker involved.
//!
//! *Freeze once, compare many* (DESIGN.md §8): when the capability reads the outside world, the
//! first leased worker runs live and freezes what it saw; every other worker in the quorum and the
//! validator replay that same frozen evidence, so honest outputs agree byte for byte.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use d402_core::{ContentId, Receipt};
use d402_host::ContentStore;
use d402_registry::{CreatorWallets, Manifest, Registration, ValidationClass};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::objects;
use crate::quorum::{Tally, agreement_key};
use crate::reputation::{ReputationEvent, Standing};
use crate::state::NodeState;
use crate::swarm::{NetError, NetHandle};
use crate::validator::judge;
use crate::verdict::Verdict;
use crate::wire::{
    Claim, ComparatorRef, Intent, Lease, ReleaseRequest, SnapshotCheckRequest, TaskRequest,
    TaskResponse, ValidationRequest,
};

/// How long claims already leased may still arrive once a quorum agrees.
const MINORITY_GRACE: Duration = Duration::from_secs(2);

/// How many workers must do a task, and how their results combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One worker; another only if it fails.
    Single,
    /// `fanout` workers at once; the first valid claim wins.
    Race,
    /// Workers until `quorum` claims agree.
    Quorum,
}

/// A published capability, as the coordinator serves it to workers.
#[derive(Debug, Clone)]
pub struct Offer {
    pub registration: Registration,
    pub manifest: Manifest,
    pub registration_cid: ContentId,
    pub manifest_cid: ContentId,
}

impl Offer {
    /// Puts the registration, manifest and component in `store` (so workers can fetch them by
    /// CID from this node) after checking that they belong together.
    pub fn publish(
        store: &ContentStore,
        registration: Registration,
        manifest: Manifest,
        component: &[u8],
    ) -> Result<Self, TaskError> {
        let bad = |e: String| TaskError::Offer(e);
        registration.verify().map_err(|e| bad(e.to_string()))?;
        registration
            .check_manifest(&manifest)
            .map_err(|e| bad(e.to_string()))?;
        manifest
            .check_component(component)
            .map_err(|e| bad(e.to_string()))?;
        let reg_bytes =
            d402_core::content_id::canonical_json(&registration).map_err(|e| bad(e.to_string()))?;
        let (manifest_cid, manifest_bytes) =
            manifest.canonical().map_err(|e| bad(e.to_string()))?;
        let registration_cid = store.put(&reg_bytes).map_err(|e| bad(e.to_string()))?;
        store
            .put_verified(&manifest_cid, &manifest_bytes)
            .map_err(|e| bad(e.to_string()))?;
        store.put(component).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            registration,
            manifest,
            registration_cid,
            manifest_cid,
        })
    }

    pub fn capability(&self) -> String {
        self.manifest.capability_ref().to_string()
    }

    /// This offer as the comparator of a scoreable capability.
    pub fn comparator_ref(&self) -> ComparatorRef {
        ComparatorRef {
            capability: self.capability(),
            registration: self.registration_cid,
            manifest: self.manifest_cid,
            implementation: self.manifest.implementation.cid,
        }
    }
}

/// One task to submit.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub task_id: String,
    pub input: String,
    pub mode: Mode,
    /// Workers leased at once (at least the quorum in `quorum` mode).
    pub fanout: usize,
    /// Agreeing claims needed in `quorum` mode.
    pub quorum: usize,
    /// Time for the whole task.
    pub deadline: Duration,
    /// Time one worker gets before its lease expires and the task moves on.
    pub lease_time: Duration,
    /// Most a worker may be paid, in atomic units.
    pub budget: u64,
    /// The task's clock, as the capability sees it.
    pub timestamp_ms: u64,
    /// Whether a validator must re-execute and sign off.
    pub validate: bool,
    /// The rail's description of a held payment the validator role releases (see
    /// [`crate::wire::ReleaseRequest`]): with it, the verdict carries the signed release of the
    /// winning claim, from a validator that holds the release key.
    pub release: Option<serde_json::Value>,
    /// For a *scoreable* capability: the comparator the validator runs (the one the manifest
    /// names, published in this node's store, see [`Offer::comparator_ref`]).
    pub comparator: Option<ComparatorRef>,
    /// Honest snapshots: on a sample of the tasks whose page is frozen once, an independent
    /// worker runs the task on its own freeze and the validator compares the two outputs.
    pub snapshot_check: Option<SnapshotCheckSpec>,
    /// Who may be leased beyond the reputation book's exclusions: a gateway's floor for work
    /// nobody can re-execute exactly.
    pub workers: WorkerPolicy,
}

/// Decides whether a worker may be leased by what stands behind it outside the network (a
/// gateway's minimum bond, read from a chain).
pub trait WorkerGate: Send + Sync + std::fmt::Debug {
    /// `Ok(())` when the worker paid at `wallets` may be leased, else why not.
    fn admit<'a>(
        &'a self,
        wallets: &'a CreatorWallets,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Who may be leased for one task.
#[derive(Debug, Clone, Default)]
pub struct WorkerPolicy {
    /// The least reputation score ([`Standing::score`]; a newcomer has 0.5).
    pub min_score: Option<f64>,
    /// A check outside the network, e.g. a minimum bond.
    pub gate: Option<Arc<dyn WorkerGate>>,
}

impl WorkerPolicy {
    async fn admit(&self, standing: &Standing, wallets: &CreatorWallets) -> Result<(), String> {
        if let Some(floor) = self.min_score
            && standing.score() < floor
        {
            return Err(format!(
                "reputation {:.3} is under the floor {floor}",
                standing.score()
            ));
        }
        match &self.gate {
            Some(gate) => gate.admit(wallets).await,
            None => Ok(()),
        }
    }
}

/// The gateway's `--snapshot-check` policy, as the coordinator applies it.
#[derive(Debug, Clone)]
pub struct SnapshotCheckSpec {
    /// The comparator the validator runs (a pure, exact capability in this node's store).
    pub comparator: ComparatorRef,
    /// The score, in millionths, the two outputs must reach.
    pub threshold: u32,
    /// The share of frozen tasks checked, 0.0 to 1.0; which tasks is decided by the task id, so
    /// a retry samples the same way.
    pub rate: f64,
}

impl SnapshotCheckSpec {
    /// Whether `task_id` is in the sample.
    pub fn samples(&self, task_id: &str) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let hash = blake3::hash(task_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        (u64::from_le_bytes(first) as f64 / u64::MAX as f64) < self.rate
    }
}

impl TaskSpec {
    /// A task with the manifest's default quorum and sensible times.
    pub fn new(task_id: impl Into<String>, input: impl Into<String>, offer: &Offer) -> Self {
        let quorum = offer.manifest.validation.quorum.max(1) as usize;
        Self {
            task_id: task_id.into(),
            input: input.into(),
            mode: if quorum > 1 {
                Mode::Quorum
            } else {
                Mode::Single
            },
            fanout: quorum,
            quorum,
            deadline: Duration::from_secs(60),
            lease_time: Duration::from_secs(30),
            budget: 1_000_000,
            timestamp_ms: crate::now_ms(),
            validate: true,
            release: None,
            comparator: None,
            snapshot_check: None,
            workers: WorkerPolicy::default(),
        }
    }
}

/// A worker's claim that the network did not accept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub worker: PeerId,
    pub reason: String,
}

/// The validated result of a task.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    pub output: String,
    /// Receipts of the agreeing workers.
    pub receipts: Vec<Receipt>,
    pub workers: Vec<PeerId>,
    /// Where each agreeing worker is paid (same order as `workers`).
    pub payout_wallets: Vec<CreatorWallets>,
    pub verdict: Option<Verdict>,
    pub rejected: Vec<Rejection>,
    /// Every worker leased, in order (including those that failed).
    pub leased: Vec<PeerId>,
    /// Every claim counted, in the order the validator saw them (a scoreable verdict's score
    /// matrix is over these, less any whose receipt did not hold).
    pub claims: Vec<Claim>,
    /// Set when an honest-snapshot check found the frozen page wanting: why. The result is
    /// not validated work; the caller refunds it or delivers it marked disputed.
    pub snapshot_disputed: Option<String>,
}

impl TaskOutcome {
    /// What the outcome promises: the verdict's assurance when a validator signed one, else
    /// `quorum` when several workers agreed, else `reputation`.
    pub fn assurance(&self) -> d402_registry::validation::Assurance {
        use d402_registry::validation::Assurance;
        match &self.verdict {
            Some(verdict) => verdict.body.assurance,
            None if self.receipts.len() > 1 => Assurance::Quorum,
            None => Assurance::Reputation,
        }
    }
}

/// Why a task did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("offer does not hold: {0}")]
    Offer(String),
    #[error("no worker offers {0}")]
    NoWorkers(String),
    #[error(
        "no worker bid for {capability} ({declined} declined, {excluded} excluded by reputation or the worker policy)"
    )]
    NoBids {
        capability: String,
        declined: usize,
        excluded: usize,
    },
    #[error(
        "no {quorum} claims agreed before workers ran out ({claims} claims, {failed} leases failed)"
    )]
    NoQuorum {
        quorum: usize,
        claims: usize,
        failed: usize,
    },
    #[error("the deadline passed")]
    DeadlinePassed,
    #[error("no validator for {0} answered")]
    NoValidator(String),
    #[error("the validator rejected the agreed result: {0}")]
    ValidationFailed(String),
    #[error("evidence of the agreed claim: {0}")]
    Evidence(#[from] objects::FetchError),
    #[error(transparent)]
    Net(#[from] NetError),
}

/// The client API of the peer network.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) net: NetHandle,
    pub(crate) store: ContentStore,
    pub(crate) state: NodeState,
    pub(crate) providers: Providers,
}

/// How long a DHT provider lookup is reused. A lookup is a Kademlia query of several round
/// trips, twice per task (workers, then validators), while workers join and leave over minutes;
/// a worker gone within the window costs one failed bid, and one that joined is seen at the
/// next lookup.
const PROVIDERS_FRESH: Duration = Duration::from_secs(5);

/// One lookup: when, and who provides.
type Lookup = (Instant, HashSet<PeerId>);

/// Recent provider lookups by DHT key, shared by a node's coordinator clones.
#[derive(Clone, Default)]
pub(crate) struct Providers(Arc<Mutex<HashMap<String, Lookup>>>);

impl Providers {
    /// The providers of `key` found less than [`PROVIDERS_FRESH`] ago, if at least `wanted`.
    fn fresh(&self, key: &str, wanted: usize) -> Option<HashSet<PeerId>> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (at, found) = cache.get(key)?;
        (at.elapsed() < PROVIDERS_FRESH && found.len() >= wanted.max(1)).then(|| found.clone())
    }

    fn remember(&self, key: &str, found: &HashSet<PeerId>) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key.to_string(), (Instant::now(), found.clone()));
    }
}

/// A bid with what we know of its worker.
struct Candidate {
    peer: PeerId,
    worker: String,
    payout_wallets: CreatorWallets,
}

/// The DHT key workers announce their offers under.
pub fn offer_key(capability: &str) -> String {
    format!("d402/offer/{capability}")
}

/// The DHT key validators announce under.
pub fn validator_key(capability: &str) -> String {
    format!("d402/validate/{capability}")
}

/// The peer id a worker's `ed25519:<hex>` key implies: nodes derive their network key from their
/// signing key, so a claim signed by one worker cannot come from another peer.
pub fn peer_of(public_id: &str) -> Option<PeerId> {
    let bytes = hex::decode(public_id.strip_prefix("ed25519:")?).ok()?;
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(&bytes).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

impl Coordinator {
    pub fn standing(&self, peer: &PeerId) -> Standing {
        self.state.standing(peer).unwrap_or_default()
    }

    /// Workers announcing `capability`, waiting up to `patience` for at least one. A lookup
    /// made in the last few seconds that found at least `wanted` is reused.
    pub async fn find_workers(
        &self,
        capability: &str,
        wanted: usize,
        patience: Duration,
    ) -> Result<HashSet<PeerId>, TaskError> {
        self.find(&offer_key(capability), wanted, patience)
            .await?
            .ok_or_else(|| TaskError::NoWorkers(capability.into()))
    }

    async fn find(
        &self,
        key: &str,
        wanted: usize,
        patience: Duration,
    ) -> Result<Option<HashSet<PeerId>>, TaskError> {
        if let Some(found) = self.providers.fresh(key, wanted) {
            return Ok(Some(found));
        }
        let until = Instant::now() + patience;
        loop {
            let mut found = self.net.find_providers(key).await?;
            found.remove(&self.net.peer_id());
            if !found.is_empty() {
                self.providers.remember(key, &found);
                return Ok(Some(found));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs one task through the network and returns the validated outcome.
    pub async fn submit(&self, offer: &Offer, spec: TaskSpec) -> Result<TaskOutcome, TaskError> {
        let started = Instant::now();
        let deadline = started + spec.deadline;
        let capability = offer.capability();
        let wanted = match spec.mode {
            Mode::Single => 1,
            Mode::Race => spec.fanout,
            Mode::Quorum => spec.fanout.max(spec.quorum),
        };
        let workers = self
            .find_workers(
                &capability,
                wanted,
                spec.deadline.min(Duration::from_secs(10)),
            )
            .await?;
        let mut candidates = self.collect_bids(&spec, &capability, workers).await?;

        let class = offer.manifest.validation.class;
        let (needed, parallel) = match spec.mode {
            Mode::Single => (1, 1),
            Mode::Race => (1, spec.fanout.max(1)),
            Mode::Quorum => (spec.quorum.max(1), spec.fanout.max(spec.quorum).max(1)),
        };
        let reads_world = offer.manifest.permissions.snapshot
            || !offer.manifest.permissions.egress_hosts.is_empty();
        // Freeze once when several workers must agree on what they saw. Scoreable work is
        // compared by score, not byte for byte: each worker reads the world itself, so that one
        // worker's copy of a page is never what everyone else is judged on.
        let freeze_first = reads_world
            && spec.mode == Mode::Quorum
            && needed > 1
            && class != ValidationClass::Scoreable;
        let mut lease = Lease {
            lease_id: String::new(),
            task_id: spec.task_id.clone(),
            capability: capability.clone(),
            registration: offer.registration_cid,
            manifest: offer.manifest_cid,
            implementation: offer.manifest.implementation.cid,
            input: spec.input.clone(),
            timestamp_ms: spec.timestamp_ms,
            expires_at_ms: 0,
            evidence: Vec::new(),
            evidence_objects: Vec::new(),
        };

        let mut claims: Vec<(Candidate, Claim, u64)> = Vec::new();
        let mut tally = Tally::default();
        let mut rejected = Vec::new();
        let mut leased = Vec::new();
        let mut failed = 0;
        let mut in_flight = FuturesUnordered::new();
        let mut frozen = !freeze_first;
        // The worker whose freeze everyone else replays.
        let mut freezer: Option<PeerId> = None;

        // Once enough claims agree, claims already leased get a short grace to arrive, so a
        // minority is judged (and a liar caught) even when the honest claims came first.
        let mut grace_until: Option<Instant> = None;
        loop {
            let reached = tally.outcome(needed).is_some();
            // A race ends at the first valid claim; a quorum waits out the grace for the rest.
            if reached && (in_flight.is_empty() || spec.mode != Mode::Quorum) {
                break;
            }
            if !reached {
                let missing = needed - tally.best();
                let want = if !frozen {
                    1
                } else if leased.len() < parallel {
                    parallel - leased.len() + in_flight.len()
                } else {
                    missing
                };
                while in_flight.len() < want {
                    let Some(candidate) = candidates.pop_front() else {
                        break;
                    };
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let lease_for = spec.lease_time.min(deadline - now);
                    lease.lease_id = format!("{}/{}", spec.task_id, leased.len() + 1);
                    lease.expires_at_ms = crate::now_ms() + lease_for.as_millis() as u64;
                    leased.push(candidate.peer);
                    let request = TaskRequest::Lease(Box::new(lease.clone()));
                    let net = self.net.clone();
                    in_flight.push(async move {
                        let sent = Instant::now();
                        let reply = net.task(candidate.peer, request, lease_for).await;
                        (candidate, reply, sent.elapsed().as_millis() as u64)
                    });
                }
                if in_flight.is_empty() {
                    return Err(TaskError::NoQuorum {
                        quorum: needed,
                        claims: claims.len(),
                        failed,
                    });
                }
            }
            let wait_until = if reached {
                *grace_until.get_or_insert_with(|| (Instant::now() + MINORITY_GRACE).min(deadline))
            } else {
                deadline
            };
            let (candidate, reply, latency) =
                match tokio::time::timeout_at(wait_until.into(), in_flight.next()).await {
                    Ok(Some(next)) => next,
                    _ if reached => break,
                    _ => return Err(TaskError::DeadlinePassed),
                };
            let claim = match reply {
                Ok(TaskResponse::Claim(claim)) => *claim,
                Ok(TaskResponse::Refused { code, message }) => {
                    tracing::info!(peer = %candidate.peer, code, "lease refused: {message}");
                    failed += 1;
                    continue;
                }
                Ok(other) => {
                    tracing::warn!(peer = %candidate.peer, "unexpected answer to a lease: {other:?}");
                    self.event(&candidate.peer, ReputationEvent::Rejected);
                    failed += 1;
                    continue;
                }
                Err(e) => {
                    tracing::info!(peer = %candidate.peer, "lease lost: {e}");
                    self.event(&candidate.peer, ReputationEvent::TimedOut);
                    failed += 1;
                    continue;
                }
            };
            // The claim must be this worker's, for this lease, consistent with its receipt.
            let request = ValidationRequest {
                task_id: spec.task_id.clone(),
                lease: lease.clone(),
                claims: Vec::new(),
                release: None,
                comparator: None,
                snapshot_check: None,
            };
            if let Err(reason) = self.check_claim(&request, &candidate, &claim) {
                self.event(&candidate.peer, ReputationEvent::Rejected);
                rejected.push(Rejection {
                    worker: candidate.peer,
                    reason,
                });
                continue;
            }
            if !frozen {
                // The first claim's evidence becomes what everyone else replays.
                match self.fetch_claim_objects(&candidate, &claim).await {
                    Ok(()) => {
                        lease.evidence = claim.receipt.body.evidence.clone();
                        lease.evidence_objects = claim.evidence_objects.clone();
                        frozen = true;
                        freezer = Some(candidate.peer);
                    }
                    Err(e) => {
                        rejected.push(Rejection {
                            worker: candidate.peer,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                }
            }
            tally.add(claims.len(), agreement_key(&claim, class));
            claims.push((candidate, claim, latency));
        }
        drop(in_flight);
        let Some(mut outcome) = tally.outcome(needed) else {
            return Err(TaskError::DeadlinePassed);
        };
        if class == ValidationClass::Scoreable && !spec.validate {
            return Err(TaskError::ValidationFailed(
                "a scoreable capability is compared by a validator, and this task asked for none"
                    .into(),
            ));
        }

        if !freeze_first && class != ValidationClass::Scoreable {
            // The validator replays the winner's evidence, fetched from us; a frozen run already
            // has it, and a scoreable one is compared, not replayed.
            let winner = &claims[outcome.majority[0]];
            self.fetch_claim_objects(&winner.0, &winner.1).await?;
            lease.evidence_objects = winner.1.evidence_objects.clone();
        }
        let snapshot_check = match &spec.snapshot_check {
            Some(check) if freeze_first && spec.validate && check.samples(&spec.task_id) => self
                .independent_freeze(&spec, &lease, &mut candidates, deadline)
                .await
                .map(|claim| SnapshotCheckRequest {
                    claim,
                    comparator: check.comparator.clone(),
                    threshold: check.threshold,
                }),
            _ => None,
        };
        let verdict = if spec.validate {
            let all_claims = claims.iter().map(|(_, c, _)| c.clone()).collect();
            Some(
                self.validate(
                    &capability,
                    ValidationRequest {
                        task_id: spec.task_id.clone(),
                        lease: lease.clone(),
                        claims: all_claims,
                        release: spec.release.clone().map(|context| ReleaseRequest {
                            context,
                            claims: outcome.majority.clone(),
                        }),
                        comparator: spec.comparator.clone(),
                        snapshot_check,
                    },
                    deadline,
                )
                .await?,
            )
        } else {
            None
        };
        let mut winner_index = outcome.majority[0];
        if let Some(scoring) = verdict.as_ref().and_then(|v| v.body.scoring.as_ref()) {
            // The comparator decided: the accepted claims are the majority, the one closest to
            // the others is delivered, and the rest are outliers.
            let accepted: HashSet<ContentId> = verdict
                .iter()
                .flat_map(|v| v.body.accepted.iter().copied())
                .collect();
            let cid = |i: usize| claims[i].1.receipt.cid().ok();
            let (majority, minority): (Vec<usize>, Vec<usize>) =
                (0..claims.len()).partition(|&i| cid(i).is_some_and(|c| accepted.contains(&c)));
            if majority.is_empty() {
                for (candidate, _, _) in &claims {
                    self.event(&candidate.peer, ReputationEvent::Rejected);
                }
                return Err(TaskError::ValidationFailed(format!(
                    "no majority of outputs scored {} or more by {}",
                    scoring.threshold, scoring.comparator
                )));
            }
            winner_index = majority
                .iter()
                .copied()
                .find(|&i| cid(i) == Some(scoring.delivered))
                .unwrap_or(majority[0]);
            outcome.agreed = claims[winner_index].1.receipt.body.output;
            outcome.majority = majority;
            outcome.minority = minority;
        }
        let mut snapshot_disputed = None;
        if let Some(check) = verdict
            .as_ref()
            .and_then(|v| v.body.snapshot_check.as_ref())
            && !check.passed
        {
            // The page everyone replayed is not the page an independent worker saw: the
            // freezer's word is what failed.
            if let Some(freezer) = freezer {
                self.event(&freezer, ReputationEvent::Rejected);
            }
            snapshot_disputed = Some(format!(
                "the frozen page failed the snapshot check: {} scored {} against an independent freeze, under {}",
                check.comparator, check.score, check.threshold
            ));
        }
        let winner = &claims[winner_index];
        let rejected_by_validator: HashSet<String> = verdict
            .iter()
            .flat_map(|v| v.body.rejected.iter().map(|r| r.worker.clone()))
            .collect();
        for &i in &outcome.majority {
            let (candidate, _, latency) = &claims[i];
            if rejected_by_validator.contains(&candidate.worker) {
                self.event(&candidate.peer, ReputationEvent::Rejected);
            } else {
                self.event(
                    &candidate.peer,
                    ReputationEvent::Accepted {
                        latency_ms: *latency,
                    },
                );
            }
        }
        for &i in &outcome.minority {
            let (candidate, _, _) = &claims[i];
            self.event(&candidate.peer, ReputationEvent::Rejected);
            rejected.push(Rejection {
                worker: candidate.peer,
                reason: format!("outvoted: agreed result was {}", outcome.agreed),
            });
        }
        if outcome
            .majority
            .iter()
            .any(|&i| rejected_by_validator.contains(&claims[i].0.worker))
        {
            return Err(TaskError::ValidationFailed(format!(
                "re-execution did not reproduce {}",
                outcome.agreed
            )));
        }
        Ok(TaskOutcome {
            output: winner.1.output.clone(),
            receipts: outcome
                .majority
                .iter()
                .map(|&i| claims[i].1.receipt.clone())
                .collect(),
            workers: outcome.majority.iter().map(|&i| claims[i].0.peer).collect(),
            payout_wallets: outcome
                .majority
                .iter()
                .map(|&i| claims[i].0.payout_wallets.clone())
                .collect(),
            verdict,
            rejected,
            leased,
            claims: claims.into_iter().map(|(_, claim, _)| claim).collect(),
            snapshot_disputed,
        })
    }

    /// Leases the task, live, to a worker that took no part in it, for an honest-snapshot check:
    /// its claim, or `None` (logged) when no such worker answers in time.
    async fn independent_freeze(
        &self,
        spec: &TaskSpec,
        lease: &Lease,
        candidates: &mut VecDeque<Candidate>,
        deadline: Instant,
    ) -> Option<Claim> {
        let mut live = lease.clone();
        live.evidence.clear();
        live.evidence_objects.clear();
        while let Some(candidate) = candidates.pop_front() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let lease_for = spec.lease_time.min(deadline - now);
            live.lease_id = format!("{}/snapshot-check", spec.task_id);
            live.expires_at_ms = crate::now_ms() + lease_for.as_millis() as u64;
            let request = TaskRequest::Lease(Box::new(live.clone()));
            match self.net.task(candidate.peer, request, lease_for).await {
                Ok(TaskResponse::Claim(claim)) => {
                    let check = ValidationRequest {
                        task_id: spec.task_id.clone(),
                        lease: live.clone(),
                        claims: Vec::new(),
                        release: None,
                        comparator: None,
                        snapshot_check: None,
                    };
                    match self.check_claim(&check, &candidate, &claim) {
                        Ok(()) => return Some(*claim),
                        Err(reason) => {
                            self.event(&candidate.peer, ReputationEvent::Rejected);
                            tracing::info!(peer = %candidate.peer, "snapshot check claim refused: {reason}");
                        }
                    }
                }
                Ok(other) => {
                    tracing::info!(peer = %candidate.peer, "snapshot check lease not run: {other:?}")
                }
                Err(e) => tracing::info!(peer = %candidate.peer, "snapshot check lease lost: {e}"),
            }
        }
        tracing::warn!(
            task = spec.task_id,
            "no independent worker for the snapshot check: the frozen page is unchecked"
        );
        None
    }

    async fn collect_bids(
        &self,
        spec: &TaskSpec,
        capability: &str,
        workers: HashSet<PeerId>,
    ) -> Result<VecDeque<Candidate>, TaskError> {
        let intent = Intent {
            task_id: spec.task_id.clone(),
            capability: capability.to_string(),
            deadline_ms: crate::now_ms() + spec.deadline.as_millis() as u64,
            budget: spec.budget,
            input_bytes: spec.input.len() as u64,
        };
        let mut asks = FuturesUnordered::new();
        for peer in workers {
            let net = self.net.clone();
            let request = TaskRequest::Intent(intent.clone());
            asks.push(async move { (peer, net.task(peer, request, Duration::from_secs(5)).await) });
        }
        let (mut declined, mut excluded) = (0, 0);
        let mut bids = Vec::new();
        while let Some((peer, reply)) = asks.next().await {
            match reply {
                Ok(TaskResponse::Bid(bid))
                    if bid.price <= spec.budget && peer_of(&bid.worker) == Some(peer) =>
                {
                    let standing = self.standing(&peer);
                    if standing.excluded() {
                        excluded += 1;
                    } else if let Err(why) =
                        spec.workers.admit(&standing, &bid.payout_wallets).await
                    {
                        tracing::info!(%peer, "bid not taken: {why}");
                        excluded += 1;
                    } else {
                        bids.push((standing, bid.price, peer, bid.worker, bid.payout_wallets));
                    }
                }
                Ok(TaskResponse::Bid(_)) => {
                    // A bid over budget or signed for another key: not to be trusted.
                    self.event(&peer, ReputationEvent::Rejected);
                    declined += 1;
                }
                _ => declined += 1,
            }
        }
        if bids.is_empty() {
            return Err(TaskError::NoBids {
                capability: capability.to_string(),
                declined,
                excluded,
            });
        }
        // Best reputation first; then faster, then cheaper, then a stable order.
        bids.sort_by(|a, b| {
            b.0.score()
                .total_cmp(&a.0.score())
                .then(
                    a.0.mean_latency_ms()
                        .unwrap_or(u64::MAX)
                        .cmp(&b.0.mean_latency_ms().unwrap_or(u64::MAX)),
                )
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        Ok(bids
            .into_iter()
            .map(|(_, _, peer, worker, payout_wallets)| Candidate {
                peer,
                worker,
                payout_wallets,
            })
            .collect())
    }

    fn check_claim(
        &self,
        request: &ValidationRequest,
        candidate: &Candidate,
        claim: &Claim,
    ) -> Result<(), String> {
        if claim.lease_id.split('/').next() != Some(request.task_id.as_str()) {
            return Err("claim is for another lease".into());
        }
        if claim.receipt.body.worker != candidate.worker {
            return Err("claim is signed by another worker".into());
        }
        // The wallets the worker is paid at are the ones it signed, and the ones it bid with.
        claim.verify_payout()?;
        if claim.payout_wallets != candidate.payout_wallets {
            return Err("claim names other payout wallets than its bid".into());
        }
        judge(request, claim, ValidationClass::NonVerifiable, None)
    }

    async fn fetch_claim_objects(
        &self,
        candidate: &Candidate,
        claim: &Claim,
    ) -> Result<(), objects::FetchError> {
        let peers = [candidate.peer];
        for cid in claim
            .receipt
            .body
            .evidence
            .iter()
            .chain(&claim.evidence_objects)
        {
            objects::ensure(&self.net, &self.store, &self.state, *cid, &peers).await?;
        }
        Ok(())
    }

    async fn validate(
        &self,
        capability: &str,
        request: ValidationRequest,
        deadline: Instant,
    ) -> Result<Verdict, TaskError> {
        let patience = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(10));
        let validators = self
            .find(&validator_key(capability), 1, patience)
            .await?
            .ok_or_else(|| TaskError::NoValidator(capability.into()))?;
        let mut last_problem = String::new();
        for peer in validators {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self
                .net
                .task(
                    peer,
                    TaskRequest::Validate(Box::new(request.clone())),
                    timeout,
                )
                .await
            {
                Ok(TaskResponse::Verdict(verdict)) => {
                    if verdict.verify().is_err() || peer_of(&verdict.body.validator) != Some(peer) {
                        last_problem = format!("validator {peer} sent a verdict it did not sign");
                        continue;
                    }
                    if verdict.body.task_id != request.task_id {
                        last_problem = format!("validator {peer} judged another task");
                        continue;
                    }
                    return Ok(*verdict);
                }
                Ok(TaskResponse::Refused { code, message }) => {
                    last_problem = format!("{code}: {message}");
                }
                Ok(other) => last_problem = format!("unexpected answer {other:?}"),
                Err(e) => last_problem = e.to_string(),
            }
        }
        Err(TaskError::NoValidator(format!(
            "{capability} ({last_problem})"
        )))
    }

    fn event(&self, peer: &PeerId, event: ReputationEvent) {
        if let Err(e) = self.state.update_standing(peer, |s| s.apply(event)) {
            tracing::warn!("cannot record reputation of {peer}: {e}");
        }
    }

    /// Every worker's standing, by peer id.
    pub fn reputation(&self) -> BTreeMap<String, Standing> {
        self.state.all_standings().unwrap_or_default()
    }

    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    pub fn store(&self) -> &ContentStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup is reused only while fresh and only if it found as many providers as the task
    /// wants: a quorum of three never runs on a cached lookup that found two.
    #[test]
    fn a_provider_lookup_is_reused_only_when_it_found_enough() {
        let providers = Providers::default();
        assert_eq!(providers.fresh("k", 1), None);
        let two: HashSet<PeerId> = [PeerId::random(), PeerId::random()].into();
        providers.remember("k", &two);
        assert_eq!(providers.fresh("k", 0), Some(two.clone()));
        assert_eq!(providers.fresh("k", 2), Some(two.clone()));
        assert_eq!(providers.fresh("k", 3), None);
        assert_eq!(providers.fresh("other", 1), None);
        providers.0.lock().unwrap().get_mut("k").unwrap().0 -= PROVIDERS_FRESH;
        assert_eq!(
            providers.fresh("k", 1),
            None,
            "a stale lookup is asked again"
        );
    }

    #[test]
    fn a_signing_key_names_its_peer() {
        let identity = d402_core::Identity::from_seed([7; 32]);
        let keypair =
            libp2p::identity::Keypair::ed25519_from_bytes(identity.secret_seed()).unwrap();
        assert_eq!(
            peer_of(&identity.public_id()),
            Some(keypair.public().to_peer_id())
        );
        assert_eq!(peer_of("ed25519:zz"), None);
        assert_eq!(peer_of("nope"), None);
    }

    #[test]
    fn arc_is_send() {
        fn send<T: Send + Sync>() {}
        send::<std::sync::Arc<Coordinator>>();
    }
}
