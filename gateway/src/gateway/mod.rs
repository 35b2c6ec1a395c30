//! The gateway (DESIGN.md §9–§11): sells the peer network's capabilities over HTTP for x402
//! payments.
//!
//! ```text
//! POST /tasks (no payment)  ─▶ policy checks ─▶ rail.challenge ─▶ 402 PAYMENT-REQUIRED   sale
//! POST /tasks (PAYMENT-SIGNATURE) ─▶ replay / idempotency checks ─▶ rail.verify         sale
//!   ─▶ commit Verified ─▶ rail.settle ─▶ commit Settled                           settlement
//!   ─▶ dispatch into the network ─▶ commit Validated                                dispatch
//!   ─▶ rail.deliver ─▶ commit Delivered (+ pay owed, paid in batches)       delivery, payout
//!   └▶ failure ─▶ commit RefundPending ─▶ rail.refund_buyer ─▶ commit Refunded         refund
//! ```
//!
//! The gateway never asks which kind of rail it holds: the rail says whether a challenge is
//! bound to one task, what an accepted result pays (an escrow's split released on chain, or
//! pay owed out of `payTo` on a direct rail, paid every [`SalePolicy::payout_window`] as one
//! batch), how a failed task is refunded and where a settlement stands. Each step is committed
//! before the next is visible, and every payment goes through the rail's outbox, so
//! [`Gateway::resume`] finishes whatever a restart interrupted without paying anyone twice.
//!
//! One file per step: [`sale`] (challenge → payment → task), [`settlement`] (record, resume,
//! sweep), [`dispatch`] (the network), [`delivery`], [`refund`], [`payout`] (batches),
//! [`incident`] (the switch), [`ops_snapshot`], [`metrics`]; [`store`] holds the records and
//! [`api`] is the thin axum layer over it all.

pub mod api;
mod channel;
mod delivery;
mod dispatch;
mod error;
mod incident;
pub mod metrics;
mod ops_snapshot;
mod payout;
pub mod policy;
mod refund;
mod sale;
mod settlement;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use d402_node::Coordinator;
use d402_rails::Rail;
use d402_registry::AcceptancePolicy;
use serde::Serialize;

pub use error::GatewayError;
pub use metrics::Metrics;
pub use policy::{Listing, Refused, SalePolicy};
pub use sale::{PAYMENT_IDENTIFIER, payment_identifier};
pub use store::{Challenge, StoreError, TaskRecord, TaskState, TaskStore};

pub(crate) use d402_core::clock::{now_ms, now_unix};

/// The gateway's configuration, all server-owned.
pub struct GatewayConfig {
    pub policy: SalePolicy,
    pub acceptance: AcceptancePolicy,
    /// The rail the gateway sells on. It owns its settlement records (its outbox) and its keys.
    pub rail: Arc<dyn Rail>,
    /// The public base URL, e.g. `http://127.0.0.1:8080` (the x402 `resource`).
    pub public_url: String,
    pub label: String,
    /// Where the operations snapshot goes, and the fee payer it names (`None`: no snapshot).
    pub ops: Option<OpsReporting>,
}

/// Publishing the operations snapshot ([`crate::ops`]) that `d402 ops-status` and
/// `d402 ops-monitor` read.
#[derive(Debug, Clone)]
pub struct OpsReporting {
    /// Normally `STATE/gateway/ops.json`.
    pub snapshot: std::path::PathBuf,
    /// The wallet paying this gateway's transaction fees, for the balance check.
    pub fee_payer: Option<crate::ops::FeePayer>,
}

/// A running gateway: listings, rail, task records, the network's coordinator.
pub struct Gateway {
    pub policy: SalePolicy,
    /// The snapshot check as the coordinator applies it (the policy's, with the comparator
    /// found among the offers); `None` when off.
    snapshot_check: Option<d402_node::SnapshotCheckSpec>,
    pub rail: Arc<dyn Rail>,
    pub listings: BTreeMap<String, Listing>,
    pub refused: BTreeMap<String, Refused>,
    pub store: TaskStore,
    coordinator: Coordinator,
    pub metrics: Metrics,
    pub public_url: String,
    pub label: String,
    /// Tasks some part of this process is driving right now (a request, a run, a refund
    /// waiting for its deadline); the sweep leaves them alone.
    active: Arc<Mutex<BTreeSet<String>>>,
    /// Bumped after every committed state transition, so that a `POST /tasks` waiting for its
    /// task answers as soon as the task is delivered instead of on its next poll.
    transitions: tokio::sync::watch::Sender<u64>,
    /// Woken when a delivered task leaves pay owed, so the payer starts a batch.
    payouts_due: Arc<tokio::sync::Notify>,
    /// One payer at a time: a batch is opened and paid by one caller only.
    paying: tokio::sync::Mutex<()>,
    ops: Option<OpsReporting>,
    started_ms: u64,
}

/// This process drives one task until dropped: nothing else (the sweep, a concurrent request)
/// works on the task meanwhile.
struct Claim {
    active: Arc<Mutex<BTreeSet<String>>>,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// What `POST /tasks` produced.
pub struct Submitted {
    pub record: TaskRecord,
    /// The stored response of an earlier request with the same `payment-identifier`.
    pub replay: bool,
}

/// Hex BLAKE3 of a JSON value's bytes (serde_json sorts object keys, so equal values give equal
/// digests).
pub fn digest_json(v: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    blake3::hash(&bytes).to_hex().to_string()
}

/// A fresh random id (task ids, payout batch ids).
fn random_id() -> String {
    let mut b = [0u8; 16];
    // The OS RNG failing is not recoverable in any useful way; fall back to time + counter.
    if d402_rails::evm::buyer::random_nonce()
        .map(|n| b.copy_from_slice(&n.0[..16]))
        .is_err()
    {
        b[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    hex::encode(b)
}

impl Gateway {
    /// Builds the gateway: checks every offer against the acceptance policy and the rail before
    /// anything is sold.
    pub fn new(
        config: GatewayConfig,
        coordinator: Coordinator,
        offers: Vec<d402_node::Offer>,
        store: TaskStore,
    ) -> Self {
        let mut listings = BTreeMap::new();
        let mut refused = BTreeMap::new();
        let comparators: BTreeMap<String, d402_node::wire::ComparatorRef> = offers
            .iter()
            .map(|o| (o.capability(), o.comparator_ref()))
            .collect();
        let snapshot_check = config.policy.snapshot_check.and_then(|check| {
            Some(d402_node::SnapshotCheckSpec {
                comparator: comparators.get(policy::SNAPSHOT_COMPARATOR)?.clone(),
                threshold: check.threshold,
                rate: check.rate,
            })
        });
        for offer in offers {
            match policy::list(
                &config.acceptance,
                config.rail.as_ref(),
                offer,
                &comparators,
            ) {
                Ok(l) => {
                    listings.insert(l.offer.capability(), l);
                }
                Err(r) => {
                    refused.insert(r.capability.clone(), r);
                }
            }
        }
        Gateway {
            snapshot_check,
            policy: config.policy,
            rail: config.rail,
            listings,
            refused,
            store,
            coordinator,
            metrics: Metrics::default(),
            public_url: config.public_url,
            label: config.label,
            active: Arc::default(),
            transitions: tokio::sync::watch::Sender::new(0),
            payouts_due: Arc::new(tokio::sync::Notify::new()),
            paying: tokio::sync::Mutex::new(()),
            ops: config.ops,
            started_ms: now_ms(),
        }
    }

    /// Claims task `id` for this caller; `None` when something else is driving it.
    fn claim(&self, id: &str) -> Option<Claim> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.insert(id.to_string()).then(|| Claim {
            active: Arc::clone(&self.active),
            id: id.to_string(),
        })
    }

    fn listing(&self, capability: &str) -> Result<&Listing, GatewayError> {
        if let Some(r) = self.refused.get(capability) {
            return Err(GatewayError::CapabilityRefused {
                capability: capability.into(),
                code: r.code,
                reason: r.reason.clone(),
            });
        }
        self.listings
            .get(capability)
            .ok_or_else(|| GatewayError::UnknownCapability(capability.into()))
    }

    /// Commits `r` in `state` and wakes whoever waits on a transition.
    fn transition(&self, r: &mut TaskRecord, state: TaskState) -> Result<(), StoreError> {
        r.state = state;
        r.updated_ms = now_ms();
        self.store.put(r)?;
        self.announce();
        Ok(())
    }

    /// Wakes whoever waits on a transition (after a commit made outside [`Gateway::transition`]).
    fn announce(&self) {
        self.transitions.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Drives `record` onward in the background, holding its claim until it is done or
    /// stopped (a stopped task is picked up again by the sweep).
    fn spawn_run(self: &Arc<Self>, record: TaskRecord, claim: Claim) {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let _claim = claim;
            let id = record.id.clone();
            let r = if record.state == TaskState::RefundPending {
                gw.refund(record).await
            } else {
                gw.run(record).await
            };
            if let Err(e) = r {
                eprintln!("{}: task {id}: {e}", gw.label);
            }
        });
    }
}
