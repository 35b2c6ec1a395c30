//! The gateway (DESIGN.md §9–§11): sells the peer network's capabilities over HTTP for x402
//! payments.
//!
//! ```text
//! POST /tasks (no payment)  ─▶ policy checks ─▶ rail.challenge ─▶ 402 PAYMENT-REQUIRED
//! POST /tasks (PAYMENT-SIGNATURE) ─▶ replay / idempotency checks ─▶ rail.verify
//!   ─▶ commit Verified ─▶ rail.settle ─▶ commit Settled ─▶ dispatch into the network
//!   ─▶ commit Validated ─▶ escrow: rail.finalize ─▶ commit Delivered
//!                       │   direct: commit Delivered + pay owed ─▶ batch ─▶ rail.finalize
//!                       └▶ failure ─▶ commit RefundPending ─▶ refund ─▶ commit Refunded
//! ```
//!
//! On an escrow rail `rail.finalize` releases the split to the workers (a quorum's agreeing
//! workers share the worker net), the creator and the gateway. On a
//! direct rail the worker net (shared by a quorum's agreeing workers) is committed as owed in the
//! same transaction as the delivery, and a payer pays everything owed every
//! [`SalePolicy::payout_window`] as one batch: one transfer per worker out of `payTo` (the
//! gateway's fee stays there), so a busy gateway sends a few payouts a second rather than one
//! per task. A refund
//! is the escrow's own after its deadline, or, on a direct rail, the whole price paid back out
//! of `payTo` at once. Each step is committed before the next is visible, and every payment
//! goes through the rail's outbox, so [`Gateway::resume`] finishes whatever a restart
//! interrupted without paying anyone twice.
//!
//! [`Gateway`] holds the state and the flow; [`api`] is the thin axum layer over it.

pub mod api;
pub mod metrics;
pub mod policy;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use d402_node::{Coordinator, SignedRelease, TaskSpec};

use crate::release::EscrowRelease;
use d402_rails::evm::escrow::{EscrowTerms, sign_release};
use d402_rails::rail::{ResourceInfo, X402Version2};
use d402_rails::{
    Atomic, Commission, Outbox, PaymentPayload, PaymentRequired, PaymentRequirements, Payout, Rail,
    RailError, RailKind, Release, SettlementState, Split, SplitTerms, TaskId, Terms,
};
use d402_registry::AcceptancePolicy;
use serde::Serialize;

pub use metrics::Metrics;
pub use policy::{Listing, Refused, SalePolicy};
pub use store::{Challenge, StoreError, TaskRecord, TaskState, TaskStore};

/// The x402 extension key of the buyer's idempotency id.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";

/// Everything the gateway refuses or fails with. Each variant has a stable `code` and an HTTP
/// status ([`GatewayError::code`], [`GatewayError::status`]); the API renders it once.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no capability {0} is sold here")]
    UnknownCapability(String),
    #[error("{capability} is not sold: {reason}")]
    CapabilityRefused {
        capability: String,
        code: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Input(#[from] policy::InputRefusal),
    #[error("no challenge issued: {0}")]
    ChallengeRefused(String),
    #[error("payment required: {message}")]
    PaymentRequired {
        /// The x402 reason (`invalid_exact_evm_payload_signature`, …) when a payment was refused.
        reason: Option<&'static str>,
        message: String,
        required: Box<PaymentRequired>,
    },
    #[error("payment header: {0}")]
    PaymentHeader(String),
    #[error("payment-identifier {0:?} was used with a different payment")]
    IdempotencyConflict(String),
    #[error("no task {0}")]
    TaskNotFound(String),
    #[error("task {id} has no {what} yet (state {state:?})")]
    NotReady {
        id: String,
        what: &'static str,
        state: TaskState,
    },
    #[error("payment rail: {0}")]
    Rail(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The incident switch is on: nothing new is sold until the operator turns it off.
    #[error(
        "the gateway is not taking new payments (incident switch {0} is on); paid work still finishes"
    )]
    IncidentShutdown(String),
}

impl GatewayError {
    /// The stable machine-readable code clients match on.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            UnknownCapability(_) => "unknown_capability",
            CapabilityRefused { code, .. } => code,
            Input(policy::InputRefusal::TooLarge { .. }) => "input_too_large",
            Input(policy::InputRefusal::NotAnObject) => "invalid_input",
            Input(policy::InputRefusal::Url { .. }) => "url_refused",
            ChallengeRefused(_) => "challenge_refused",
            PaymentRequired { reason, .. } => reason.unwrap_or("payment_required"),
            PaymentHeader(_) => "invalid_payment_header",
            IdempotencyConflict(_) => "payment_identifier_conflict",
            TaskNotFound(_) => "task_not_found",
            NotReady { .. } => "not_ready",
            Rail(_) => "rail_unavailable",
            Store(_) => "internal",
            IncidentShutdown(_) => "incident_shutdown",
        }
    }

    pub fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            UnknownCapability(_) | TaskNotFound(_) => 404,
            CapabilityRefused { .. } | ChallengeRefused(_) => 403,
            Input(policy::InputRefusal::TooLarge { .. }) => 413,
            Input(_) => 422,
            PaymentRequired { .. } => 402,
            PaymentHeader(_) => 400,
            IdempotencyConflict(_) | NotReady { .. } => 409,
            Rail(_) => 502,
            Store(_) => 500,
            IncidentShutdown(_) => 503,
        }
    }
}

/// The gateway's configuration, all server-owned.
pub struct GatewayConfig {
    pub policy: SalePolicy,
    pub acceptance: AcceptancePolicy,
    /// The rail the gateway sells on.
    pub rail: Arc<dyn Rail>,
    /// The rail's outbox (the same database the rail writes), read on restart.
    pub outbox: Outbox,
    /// Escrow rails: the key that signs split releases once the network's validator has
    /// accepted a result. Seed 000 wants this key outside the HTTP process in production; it is
    /// a hook here so that a remote signer can replace it.
    pub release_signer: Option<PrivateKeySigner>,
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
    pub rail: Arc<dyn Rail>,
    outbox: Outbox,
    release_signer: Option<PrivateKeySigner>,
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
    /// Woken when a delivered task leaves pay owed (direct rails), so the payer starts a batch.
    payouts_due: Arc<tokio::sync::Notify>,
    /// One payer at a time: a batch is opened and paid by one caller only.
    paying: tokio::sync::Mutex<()>,
    ops: Option<OpsReporting>,
    started_ms: u64,
}

/// How often a waiting `POST /tasks` re-reads its task when no transition woke it (a task
/// record another process changed, which no local transition announces).
const WAIT_BACKSTOP: Duration = Duration::from_millis(250);

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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_unix() -> u64 {
    now_ms() / 1000
}

/// Hex BLAKE3 of a JSON value's bytes (serde_json sorts object keys, so equal values give equal
/// digests).
pub fn digest_json(v: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    blake3::hash(&bytes).to_hex().to_string()
}

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

/// The `payment-identifier` id in a payload's extensions (`{"payment-identifier": {"info":
/// {"id": …}}}`), if the buyer gave one.
pub fn payment_identifier(payload: &PaymentPayload) -> Option<String> {
    let ext = serde_json::to_value(&payload.extensions).ok()?;
    let info = &ext.get(PAYMENT_IDENTIFIER)?["info"];
    info.get("id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(str::to_string)
}

impl Gateway {
    /// Builds the gateway: checks every offer against the acceptance policy and the rail before
    /// anything is sold, opens the task database.
    pub fn new(
        config: GatewayConfig,
        coordinator: Coordinator,
        offers: Vec<d402_node::Offer>,
        store: TaskStore,
    ) -> Self {
        let mut listings = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for offer in offers {
            match policy::list(&config.acceptance, config.rail.kind(), offer) {
                Ok(l) => {
                    listings.insert(l.offer.capability(), l);
                }
                Err(r) => {
                    refused.insert(r.capability.clone(), r);
                }
            }
        }
        Gateway {
            policy: config.policy,
            rail: config.rail,
            outbox: config.outbox,
            release_signer: config.release_signer,
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

    /// The terms of a new task of `listing`: server-owned price, split and deadlines.
    fn terms(&self, listing: &Listing, task_id: &str) -> Terms {
        let bps = listing.accepted.creator_commission_bps.min(u16::MAX as u32) as u16;
        let commission = (bps > 0).then(|| Commission {
            wallet: listing
                .accepted
                .creator_wallets
                .evm
                .clone()
                .unwrap_or_default(),
            bps,
        });
        Terms {
            task_id: TaskId::from_label(task_id),
            price: self.policy.price,
            pay_to: self.policy.pay_to.clone(),
            commission,
            gateway_fee: self.policy.gateway_fee,
            max_timeout_seconds: self.policy.max_timeout_seconds,
            deadline_unix: now_unix()
                + self.policy.max_timeout_seconds
                + self.policy.task_deadline.as_secs()
                + self.policy.refund_after.as_secs(),
        }
    }

    /// Issues a challenge for `capability` and `input` (already policy-checked): the
    /// requirements are recorded before the 402 leaves, so a payment answering them can be tied
    /// back to what was offered.
    pub fn challenge(
        &self,
        capability: &str,
        input: &str,
        error: Option<(&'static str, String)>,
    ) -> GatewayError {
        match self.issue(capability, input, true) {
            Ok((required, _)) => {
                self.metrics.inc(&self.metrics.challenges);
                let (reason, message) = match error {
                    Some((r, m)) => (Some(r), m),
                    None => (None, "payment required".to_string()),
                };
                let mut required = required;
                required.error = Some(reason.unwrap_or("payment_required").to_string());
                GatewayError::PaymentRequired {
                    reason,
                    message,
                    required: Box::new(required),
                }
            }
            Err(e) => {
                self.metrics.inc(&self.metrics.challenges_refused);
                e
            }
        }
    }

    /// The requirements for a new task of `capability`, and what they were issued for. With
    /// `record`, the challenge is committed before it is returned (it is about to leave).
    fn issue(
        &self,
        capability: &str,
        input: &str,
        record: bool,
    ) -> Result<(PaymentRequired, Challenge), GatewayError> {
        let listing = self.listing(capability)?;
        let task_id = random_id();
        let terms = self.terms(listing, &task_id);
        let requirements = self.rail.challenge(&terms).map_err(|e| match e {
            RailError::Cap(c) => GatewayError::ChallengeRefused(c.to_string()),
            e @ RailError::CommissionOnDirectRail { .. } => {
                GatewayError::ChallengeRefused(e.to_string())
            }
            e => GatewayError::Rail(e.to_string()),
        })?;
        let bound = self.rail.kind() != RailKind::Direct;
        let challenge = Challenge {
            capability: capability.to_string(),
            task_id: bound.then(|| task_id.clone()),
            input_digest: bound.then(|| digest_json(&input)),
            deadline_unix: terms.deadline_unix,
        };
        if record && bound {
            self.store
                .record_challenge(&digest_json(&requirements), &challenge)?;
        }
        let required = PaymentRequired {
            x402_version: X402Version2,
            error: None,
            resource: Some(ResourceInfo {
                url: format!("{}/tasks", self.public_url),
                description: Some(format!("one {capability} task")),
                mime_type: Some("application/json".into()),
            }),
            accepts: vec![requirements],
            extensions: Default::default(),
        };
        Ok((required, challenge))
    }

    /// The requirements a payment must answer and the challenge they came from. On a direct
    /// rail they are the same for every task of a capability, so they are issued afresh and
    /// the rail's checks name exactly what differs (asset, network, amount); on a split rail
    /// they are bound to one task and must be ones this gateway recorded.
    fn answered(
        &self,
        capability: &str,
        input: &str,
        payment: &PaymentPayload,
    ) -> Result<Option<(PaymentRequirements, Challenge)>, GatewayError> {
        if self.rail.kind() == RailKind::Direct {
            let (required, challenge) = self.issue(capability, input, false)?;
            return Ok(required.accepts.into_iter().next().map(|r| (r, challenge)));
        }
        Ok(
            match self.store.challenge(&digest_json(&payment.accepted))? {
                Some(c) if c.capability == capability => Some((payment.accepted.clone(), c)),
                _ => None,
            },
        )
    }

    /// `POST /tasks`: challenge, or verify + settle + dispatch, and wait up to the policy's
    /// wait for the result.
    pub async fn submit(
        self: &Arc<Self>,
        capability: &str,
        input: &serde_json::Value,
        payment: Option<PaymentPayload>,
    ) -> Result<Submitted, GatewayError> {
        self.listing(capability)?;
        let input = self.policy.check_input(input)?;
        let Some(payment) = payment else {
            self.check_incident()?;
            return Err(self.challenge(capability, &input, None));
        };
        let offered = input.clone();
        let refuse = |reason: &'static str, message: String| {
            self.metrics.inc(&self.metrics.payments_refused);
            Err(self.challenge(capability, &offered, Some((reason, message))))
        };

        let digest = digest_json(&payment.payload);
        let payment_id = payment_identifier(&payment);
        if let Some(pid) = &payment_id
            && let Some((stored_digest, task)) = self.store.by_payment_id(pid)?
        {
            if stored_digest != digest {
                self.metrics.inc(&self.metrics.payment_id_conflicts);
                return Err(GatewayError::IdempotencyConflict(pid.clone()));
            }
            let record = self
                .store
                .get(&task)?
                .ok_or_else(|| GatewayError::TaskNotFound(task.clone()))?;
            self.metrics.inc(&self.metrics.idempotent_replays);
            return Ok(Submitted {
                record: self.wait_for(record).await?,
                replay: true,
            });
        }
        // Past the stored answers to retries: from here on a payment would be taken.
        self.check_incident()?;
        if self.store.by_payment_digest(&digest)?.is_some() {
            self.metrics.inc(&self.metrics.replays_refused);
            return refuse(
                "authorization_already_used",
                "this payment was already used for a task".into(),
            );
        }

        let Some((requirements, challenge)) = self.answered(capability, &input, &payment)? else {
            return refuse(
                "invalid_payment_requirements",
                "the accepted requirements were not issued by this gateway for this capability"
                    .into(),
            );
        };
        if let Some(d) = &challenge.input_digest
            && *d != digest_json(&input)
        {
            return refuse(
                "invalid_payment_requirements",
                "the payment is bound to a task with a different input".into(),
            );
        }

        let verified = match self.rail.verify(&payment, &requirements).await {
            Ok(v) => v,
            Err(RailError::Verify(v)) => return refuse(v.reason(), v.to_string()),
            Err(e) => return Err(GatewayError::Rail(e.to_string())),
        };
        let task_id = challenge.task_id.clone().unwrap_or_else(random_id);
        let Some(claim) = self.claim(&task_id) else {
            self.metrics.inc(&self.metrics.replays_refused);
            return refuse(
                "authorization_already_used",
                "this task is already being paid".into(),
            );
        };
        let split = match self.rail.kind() {
            RailKind::Direct => Some(self.direct_split(&verified)?),
            _ => None,
        };
        let now = now_ms();
        let mut record = TaskRecord {
            id: task_id,
            capability: capability.to_string(),
            input,
            rail: self.rail.name().to_string(),
            state: TaskState::Verified,
            requirements,
            payment,
            payment_digest: digest,
            payment_id,
            verified,
            settlement: None,
            release: None,
            refund: None,
            output: None,
            receipts: Vec::new(),
            verdict: None,
            worker_wallet: None,
            worker_wallets: Vec::new(),
            split,
            error: None,
            deadline_unix: challenge.deadline_unix,
            created_ms: now,
            updated_ms: now,
        };
        // Committed before anything is sent: a crash from here on is reconciled on restart.
        if self.store.insert_new(&record)?.is_some() {
            self.metrics.inc(&self.metrics.replays_refused);
            return refuse(
                "authorization_already_used",
                "this payment was already used for a task".into(),
            );
        }
        self.metrics.inc(&self.metrics.payments_verified);
        match self.rail.settle(&record.verified).await {
            Ok(s) => {
                record.settlement = Some(s);
                self.transition(&mut record, TaskState::Settled)?;
                self.metrics.inc(&self.metrics.payments_settled);
            }
            Err(RailError::Replay(_)) => {
                record.error = Some("payment already settled for another task".into());
                self.transition(&mut record, TaskState::Failed)?;
                return refuse(
                    "authorization_already_used",
                    "this payment was already used".into(),
                );
            }
            Err(e) => {
                // What the outbox holds decides: nothing sent (or refused on chain) fails the
                // task with nothing charged; an intent still in flight leaves it `Verified` for
                // the next reconciliation; funded after all settles it.
                record.error = Some(e.to_string());
                if !self.settle_recorded(&mut record, false).await? {
                    return Err(GatewayError::Rail(e.to_string()));
                }
            }
        }
        self.spawn_run(record.clone(), claim);
        Ok(Submitted {
            record: self.wait_for(record).await?,
            replay: false,
        })
    }

    /// Whether the incident switch is on.
    pub fn incident(&self) -> bool {
        self.policy
            .incident_file
            .as_ref()
            .is_some_and(|f| f.exists())
    }

    /// `Err(IncidentShutdown)` while the incident switch is on.
    pub fn check_incident(&self) -> Result<(), GatewayError> {
        match &self.policy.incident_file {
            Some(f) if f.exists() => Err(GatewayError::IncidentShutdown(f.display().to_string())),
            _ => Ok(()),
        }
    }

    /// The split of a direct payment: no commission (refused on direct rails), the gateway's
    /// fee kept in `payTo`, the rest the worker's.
    fn direct_split(&self, verified: &d402_rails::Verified) -> Result<Split, GatewayError> {
        Split::compute(
            verified.amount,
            &SplitTerms {
                creator_bps: 0,
                gateway_fee: self.policy.gateway_fee,
            },
        )
        .map_err(|e| GatewayError::Rail(e.to_string()))
    }

    /// Waits up to the policy's wait for a task to leave the states before delivery (and, on a
    /// direct rail, the refund, which is immediate).
    async fn wait_for(&self, record: TaskRecord) -> Result<TaskRecord, GatewayError> {
        let until = tokio::time::Instant::now() + self.policy.wait;
        let direct = self.rail.kind() == RailKind::Direct;
        // Subscribed before the first read, so a transition committed in between still wakes us.
        let mut woken = self.transitions.subscribe();
        let mut record = match self.store.get(&record.id)? {
            Some(r) => r,
            None => record,
        };
        while matches!(
            record.state,
            TaskState::Verified | TaskState::Settled | TaskState::Validated
        ) || (direct && record.state == TaskState::RefundPending)
        {
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            let _ = tokio::time::timeout_at(until.min(now + WAIT_BACKSTOP), woken.changed()).await;
            woken.mark_unchanged();
            if let Some(r) = self.store.get(&record.id)? {
                record = r;
            }
        }
        Ok(record)
    }

    fn transition(&self, r: &mut TaskRecord, state: TaskState) -> Result<(), StoreError> {
        r.state = state;
        r.updated_ms = now_ms();
        self.store.put(r)?;
        self.transitions.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
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

    /// Settles a `Verified` task according to its settlement's outbox record; returns whether
    /// it is now `Settled`. Confirmed: settled. Failed: nothing was charged, the task fails.
    /// Still in flight: left `Verified` for the next reconciliation. Not recorded: settled now
    /// with `send` (a restart after a crash before the intent), else the settlement was refused
    /// before anything was sent and the task fails.
    async fn settle_recorded(
        &self,
        record: &mut TaskRecord,
        send: bool,
    ) -> Result<bool, GatewayError> {
        let outbox = self
            .outbox
            .get(&record.verified.settlement_id)
            .map_err(|e| GatewayError::Rail(e.to_string()))?;
        match outbox.map(|s| s.state) {
            Some(SettlementState::Confirmed) => {
                self.transition(record, TaskState::Settled)?;
                self.metrics.inc(&self.metrics.payments_settled);
                Ok(true)
            }
            Some(SettlementState::Failed { reason }) => {
                record.error = Some(format!("settlement failed, nothing was charged: {reason}"));
                self.transition(record, TaskState::Failed)?;
                Ok(false)
            }
            Some(_) => {
                self.store.put(record)?;
                Ok(false)
            }
            None if send => match self.rail.settle(&record.verified).await {
                Ok(s) => {
                    record.settlement = Some(s);
                    self.transition(record, TaskState::Settled)?;
                    self.metrics.inc(&self.metrics.payments_settled);
                    Ok(true)
                }
                Err(e) => {
                    record.error = Some(e.to_string());
                    Box::pin(self.settle_recorded(record, false)).await
                }
            },
            None => {
                let e = record.error.take().unwrap_or_default();
                record.error = Some(format!("settlement refused, nothing was charged: {e}"));
                self.transition(record, TaskState::Failed)?;
                Ok(false)
            }
        }
    }

    /// Runs a settled task through the network, then releases the split or arranges the refund.
    async fn run(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        if record.state == TaskState::Settled {
            let listing = self.listing(&record.capability)?.clone();
            let spec = TaskSpec {
                mode: listing.mode,
                fanout: listing.fanout,
                quorum: listing.quorum,
                deadline: self.policy.task_deadline,
                budget: u64::try_from(self.policy.worker_budget.get()).unwrap_or(u64::MAX),
                // Without a release key here, the validator that accepts the work signs the
                // escrow's release (seed 000: no validator key next to public HTTP).
                release: match (self.rail.kind(), &self.release_signer) {
                    (RailKind::TaskEscrow, None) => escrow_release(&record)
                        .ok()
                        .and_then(|r| serde_json::to_value(r).ok()),
                    _ => None,
                },
                ..TaskSpec::new(record.id.clone(), record.input.clone(), &listing.offer)
            };
            self.metrics.inc(&self.metrics.tasks_dispatched);
            match self.coordinator.submit(&listing.offer, spec).await {
                Ok(outcome) if outcome.output.len() <= self.policy.max_output_bytes => {
                    record.output = Some(outcome.output.clone());
                    record.receipts = outcome
                        .receipts
                        .iter()
                        .filter_map(|r| serde_json::to_value(r).ok())
                        .collect();
                    record.verdict = outcome
                        .verdict
                        .as_ref()
                        .and_then(|v| serde_json::to_value(v).ok());
                    // The worker's wallet on the rail's own chain.
                    let solana = self.rail.network().namespace() == "solana";
                    record.worker_wallets = outcome
                        .payout_wallets
                        .iter()
                        .filter_map(|w| {
                            if solana {
                                w.solana.clone()
                            } else {
                                w.evm.clone()
                            }
                        })
                        .collect();
                    record.worker_wallet = record.worker_wallets.first().cloned();
                    self.transition(&mut record, TaskState::Validated)?;
                }
                Ok(outcome) => {
                    record.error = Some(format!(
                        "output of {} bytes exceeds the gateway's limit of {}",
                        outcome.output.len(),
                        self.policy.max_output_bytes
                    ));
                    return self.fail(record).await;
                }
                Err(e) => {
                    record.error = Some(e.to_string());
                    return self.fail(record).await;
                }
            }
        }
        if record.state == TaskState::Validated {
            self.release(record).await?;
        }
        Ok(())
    }

    /// Pays the worker of a validated task (the escrow's split, or the worker's net out of
    /// `payTo` on a direct rail) and marks it delivered.
    async fn release(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        if self.rail.kind() == RailKind::Direct && self.rail.pays_out() {
            // Every agreeing worker with a wallet this rail can pay gets an equal share of the
            // worker net.
            let workers: Vec<String> = record
                .payees()
                .iter()
                .filter(|w| self.rail.accepts_wallet(w))
                .cloned()
                .collect();
            if workers.is_empty() {
                record.error = Some(format!(
                    "no worker has a valid payout wallet on {}: the buyer is refunded",
                    self.rail.network()
                ));
                return self.fail(record).await;
            }
            let split = match record.split {
                Some(s) => s,
                None => self.direct_split(&record.verified)?,
            };
            let owed = shares(
                &record.id,
                &record.requirements.pay_to,
                split.worker,
                &workers,
            );
            // Delivered together with the debt: the pay itself goes out in the next batch.
            record.state = TaskState::Delivered;
            record.updated_ms = now_ms();
            record.error = None;
            self.store.deliver_owing(&record, &owed)?;
            self.transitions.send_modify(|n| *n = n.wrapping_add(1));
            self.metrics.inc(&self.metrics.tasks_delivered);
            self.payouts_due.notify_one();
            return Ok(());
        } else if self.rail.kind() == RailKind::TaskEscrow {
            // The release is signed here with a local key (one process holds everything: a
            // development set-up), or was signed by the validator inside its verdict.
            // A quorum's agreeing workers share the worker amount.
            let signed = match &self.release_signer {
                Some(signer) => {
                    let workers: Vec<Address> = record
                        .payees()
                        .iter()
                        .filter_map(|w| w.parse().ok())
                        .collect();
                    escrow_release(&record).ok().and_then(|r| {
                        let signature =
                            sign_release(signer, r.chain_id, r.escrow, &r.terms, &workers).ok()?;
                        Some((workers, signature))
                    })
                }
                None => record
                    .verdict
                    .as_ref()
                    .and_then(|v| {
                        serde_json::from_value::<SignedRelease>(v.get("release")?.clone()).ok()
                    })
                    .and_then(|r| {
                        let workers = r
                            .workers
                            .iter()
                            .map(|w| w.parse::<Address>().ok())
                            .collect::<Option<Vec<_>>>()?;
                        Some((workers, alloy::hex::decode(&r.signature).ok()?))
                    }),
            };
            let Some((workers, signature)) = signed else {
                record.error = Some(
                    "no release signature (no release key here, and none from the validator) or no worker EVM wallet: the escrow is refunded instead"
                        .into(),
                );
                return self.fail(record).await;
            };
            let release = Release::Task {
                task_id: TaskId::from_label(&record.id),
                workers: workers.iter().map(|w| w.to_string()).collect(),
                validator_signature: signature,
            };
            match self.rail.finalize(&release).await {
                // Also when an earlier attempt released it: the rail answers from its outbox.
                Ok(s) => record.release = Some(s),
                // The chain refuses the release (its deadline passed, e.g. while the gateway
                // was down): the escrow goes back to the buyer.
                Err(e @ (RailError::WouldRevert { .. } | RailError::Reverted { .. })) => {
                    self.metrics.inc(&self.metrics.release_errors);
                    record.error = Some(format!("release refused: {e}; refunding instead"));
                    return self.fail(record).await;
                }
                // An earlier release still in flight (`Replay`) or the chain unreachable: left
                // `Validated`, retried by the sweep and reconciled on restart.
                Err(e) => {
                    self.metrics.inc(&self.metrics.release_errors);
                    record.error = Some(e.to_string());
                    self.store.put(&record)?;
                    return Err(GatewayError::Rail(e.to_string()));
                }
            }
        }
        self.transition(&mut record, TaskState::Delivered)?;
        self.metrics.inc(&self.metrics.tasks_delivered);
        Ok(())
    }

    /// A paid task failed: the buyer is refunded, an escrow after its deadline, a direct
    /// payment at once out of `payTo`. `RefundPending` is committed first, so a restart
    /// finishes the refund.
    async fn fail(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        self.metrics.inc(&self.metrics.tasks_failed);
        match self.rail.kind() {
            RailKind::TaskEscrow => {
                self.transition(&mut record, TaskState::RefundPending)?;
                self.refund(record).await
            }
            RailKind::Direct if self.rail.pays_out() => {
                self.transition(&mut record, TaskState::RefundPending)?;
                self.refund(record).await
            }
            RailKind::Direct | RailKind::Channel => {
                let e = record.error.take().unwrap_or_default();
                record.error = Some(format!("{e}; the payment is owed back to the buyer"));
                self.transition(&mut record, TaskState::Failed)?;
                Ok(())
            }
        }
    }

    /// Refunds a `RefundPending` task in the rail's way.
    async fn refund(&self, record: TaskRecord) -> Result<(), GatewayError> {
        if self.rail.kind() == RailKind::Direct {
            self.refund_direct(record).await
        } else {
            self.refund_when_due(record).await
        }
    }

    /// Pays a failed direct task's whole price back to the buyer out of `payTo`, once.
    async fn refund_direct(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        let release = Release::Payouts {
            task_id: TaskId::from_label(&record.id),
            from: record.requirements.pay_to.clone(),
            payouts: vec![Payout {
                to: record.verified.payer.clone(),
                amount: record.verified.amount,
            }],
        };
        // Left `RefundPending` on error: the outbox holds the refund's intent, and resuming the
        // task pays it (once).
        let s = self.rail.finalize(&release).await.map_err(|e| {
            self.metrics.inc(&self.metrics.refund_errors);
            GatewayError::Rail(format!("refunding task {}: {e}", record.id))
        })?;
        record.refund = Some(s);
        self.transition(&mut record, TaskState::Refunded)?;
        self.metrics.inc(&self.metrics.tasks_refunded);
        Ok(())
    }

    async fn refund_when_due(&self, mut record: TaskRecord) -> Result<(), GatewayError> {
        let wait = record
            .deadline_unix
            .saturating_add(1)
            .saturating_sub(now_unix());
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match self.rail.refund(&TaskId::from_label(&record.id)).await {
            Ok(s) => {
                record.refund = Some(s);
                self.transition(&mut record, TaskState::Refunded)?;
                self.metrics.inc(&self.metrics.tasks_refunded);
                Ok(())
            }
            Err(e) => {
                self.metrics.inc(&self.metrics.refund_errors);
                Err(GatewayError::Rail(e.to_string()))
            }
        }
    }

    /// On start: reconciles the rail's outbox with the chain, resumes every task that was in
    /// flight, and starts the sweep that keeps doing so, so that each paid task ends delivered
    /// or refunded. Returns how many tasks were resumed.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, GatewayError> {
        self.rail
            .reconcile()
            .await
            .map_err(|e| GatewayError::Rail(e.to_string()))?;
        let resumed = self.sweep(true).await?;
        if self.rail.kind() == RailKind::Direct && self.rail.pays_out() {
            let gw = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    // Batches left unpaid (a restart, a chain error) are retried every sweep.
                    let _ = tokio::time::timeout(gw.policy.sweep_every, gw.payouts_due.notified())
                        .await;
                    tokio::time::sleep(gw.policy.payout_window).await;
                    if let Err(e) = gw.pay_owed().await {
                        eprintln!("{}: paying workers: {e}", gw.label);
                    }
                }
            });
        }
        self.publish_ops();
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(gw.policy.sweep_every).await;
                if let Err(e) = gw.sweep(false).await {
                    eprintln!("{}: sweeping tasks: {e}", gw.label);
                }
                gw.publish_ops();
            }
        });
        Ok(resumed)
    }

    /// Rewrites the operations snapshot, if this gateway publishes one. A failure is reported
    /// and the gateway carries on: the snapshot going stale is what the monitor alerts on.
    fn publish_ops(&self) {
        let Some(ops) = &self.ops else {
            return;
        };
        let written = self
            .ops_snapshot()
            .map_err(|e| e.to_string())
            .and_then(|s| s.write(&ops.snapshot).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("{}: writing the operations snapshot: {e}", self.label);
        }
    }

    /// What an operator watches right now: tasks in flight, settlements pending, pay owed,
    /// the counters ([`crate::ops`] decides what is an alert).
    pub fn ops_snapshot(&self) -> Result<crate::ops::OpsSnapshot, GatewayError> {
        use crate::ops::{LISTED, PendingSettlement, TaskInFlight, UnpaidBatch};
        let mut tasks = self.store.in_flight()?;
        tasks.sort_by_key(|t| t.created_ms);
        let tasks_in_flight = tasks.len() as u64;
        let in_flight = tasks
            .into_iter()
            .take(LISTED)
            .map(|t| TaskInFlight {
                state: serde_json::to_value(t.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                id: t.id,
                created_ms: t.created_ms,
                deadline_unix: t.deadline_unix,
            })
            .collect();
        let mut pending = self
            .outbox
            .all_in_flight()
            .map_err(|e| GatewayError::Rail(e.to_string()))?;
        pending.sort_by_key(|r| r.created_unix);
        let pending_settlements = pending
            .into_iter()
            .take(LISTED)
            .map(|r| PendingSettlement {
                state: match r.state {
                    SettlementState::Intent => "intent",
                    SettlementState::Sent => "sent",
                    SettlementState::Confirmed => "confirmed",
                    SettlementState::Failed { .. } => "failed",
                }
                .into(),
                id: r.id,
                rail: r.rail,
                tx_hash: r.tx_hash,
                created_unix: r.created_unix,
                updated_unix: r.updated_unix,
            })
            .collect();
        let unpaid = self.store.unpaid_batches()?;
        let owed_total = self.owed_total(&unpaid)?;
        let mut unpaid_batches: Vec<UnpaidBatch> = unpaid
            .into_iter()
            .map(|b| UnpaidBatch {
                id: b.id,
                created_ms: b.created_ms,
            })
            .collect();
        unpaid_batches.sort_by_key(|b| b.created_ms);
        unpaid_batches.truncate(LISTED);
        Ok(crate::ops::OpsSnapshot {
            label: self.label.clone(),
            rail: self.rail.name().to_string(),
            network: self.rail.network().to_string(),
            pay_to: self.policy.pay_to.clone(),
            fee_payer: self.ops.as_ref().and_then(|o| o.fee_payer.clone()),
            started_ms: self.started_ms,
            written_ms: now_ms(),
            incident: self.check_incident().is_err(),
            tasks_in_flight,
            in_flight,
            worker_pay_owed_atomic: owed_total.to_string(),
            unpaid_batches,
            pending_settlements,
            counters: self.metrics.values(),
        })
    }

    /// Pays what delivered tasks owe their workers on a direct rail: first every batch left
    /// unpaid, then everything owed since, taken into a new batch (one payout per worker for
    /// the whole batch). A batch's id is the rail's task id for its payouts, so retrying it
    /// never pays anyone twice. Returns how many batches were paid; the first error after
    /// trying them all.
    pub async fn pay_owed(&self) -> Result<usize, GatewayError> {
        let _one = self.paying.lock().await;
        let mut paid = 0;
        let mut first_error = None;
        for batch in self.store.unpaid_batches()? {
            match self.pay_batch(&batch).await {
                Ok(()) => paid += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        while let Some(batch) = self
            .store
            .open_batch(&format!("payout-batch-{}", random_id()), now_ms())?
        {
            match self.pay_batch(&batch).await {
                Ok(()) => paid += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(paid),
        }
    }

    /// Gauges for `/metrics`: what is in flight and what is owed right now (an operator alerts
    /// on these growing: a stuck task, a payer that cannot pay).
    pub fn gauges(&self) -> Result<Vec<(&'static str, &'static str, u128)>, GatewayError> {
        let unpaid = self.store.unpaid_batches()?;
        let owed_total = self.owed_total(&unpaid)?;
        Ok(vec![
            (
                "d402_tasks_in_flight",
                "paid tasks not yet delivered, refunded or failed",
                u128::from(self.store.in_flight_count()?),
            ),
            (
                "d402_worker_pay_owed_atomic",
                "worker pay of delivered tasks not yet paid out, in the asset's atomic units",
                owed_total,
            ),
            (
                "d402_payout_batches_unpaid",
                "payout batches opened and not yet confirmed paid",
                unpaid.len() as u128,
            ),
        ])
    }

    /// Worker pay of delivered tasks not paid out yet: owed and not in a batch, plus the
    /// `unpaid` batches.
    fn owed_total(&self, unpaid: &[store::PayoutBatch]) -> Result<u128, GatewayError> {
        Ok(self
            .store
            .owed()?
            .iter()
            .map(|o| o.amount.get())
            .chain(
                unpaid
                    .iter()
                    .flat_map(|b| b.payouts.iter().map(|p| p.amount.get())),
            )
            .fold(0u128, u128::saturating_add))
    }

    async fn pay_batch(&self, batch: &store::PayoutBatch) -> Result<(), GatewayError> {
        let release = Release::Payouts {
            task_id: TaskId::from_label(&batch.id),
            from: batch.from.clone(),
            payouts: batch.payouts.clone(),
        };
        let settlement = self.rail.finalize(&release).await.map_err(|e| {
            self.metrics.inc(&self.metrics.payout_errors);
            GatewayError::Rail(format!("paying out {}: {e}", batch.id))
        })?;
        self.store.batch_paid(&batch.id, &settlement)?;
        self.metrics.inc(&self.metrics.payout_batches_paid);
        Ok(())
    }

    /// Picks up every in-flight task nothing in this process is driving: a refund that failed
    /// or was never started, a release or a run that stopped on an error, a settlement whose
    /// outcome is now known. `at_start`: also settles `Verified` tasks whose settlement was
    /// never recorded (the process died between recording the task and its intent).
    async fn sweep(self: &Arc<Self>, at_start: bool) -> Result<usize, GatewayError> {
        let mut picked = 0;
        for record in self.store.in_flight()? {
            let Some(claim) = self.claim(&record.id) else {
                continue;
            };
            // Read again under the claim: a driver may have moved it on meanwhile.
            let Some(mut record) = self.store.get(&record.id)? else {
                continue;
            };
            if !record.state.in_flight() {
                continue;
            }
            if record.state == TaskState::Verified
                && !self.settle_recorded(&mut record, at_start).await?
            {
                continue;
            }
            picked += 1;
            self.spawn_run(record, claim);
        }
        Ok(picked)
    }
}

/// The escrow a `base-task-escrow` task's payment sits in, as a validator signs its release.
fn escrow_release(record: &TaskRecord) -> Result<EscrowRelease, GatewayError> {
    let terms: EscrowTerms = record
        .requirements
        .extra
        .as_ref()
        .and_then(|e| e.get("terms"))
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .ok_or_else(|| GatewayError::Rail("escrow terms missing".into()))?;
    Ok(EscrowRelease {
        rail: crate::release::RAIL.into(),
        chain_id: record
            .requirements
            .network
            .reference()
            .parse()
            .map_err(|_| GatewayError::Rail("network is not eip155".into()))?,
        escrow: record
            .requirements
            .pay_to
            .parse()
            .map_err(|_| GatewayError::Rail("escrow address invalid".into()))?,
        terms,
    })
}

/// Task `task`'s worker net shared equally among `workers` (the remainder to the first; a
/// wallet named twice gets both shares), as pay owed out of `from`.
fn shares(task: &str, from: &str, net: Atomic, workers: &[String]) -> Vec<store::Owed> {
    let n = workers.len().max(1) as u128;
    let (each, rest) = (net.get() / n, net.get() % n);
    let mut owed: Vec<store::Owed> = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let amount = each + if i == 0 { rest } else { 0 };
        match owed.iter_mut().find(|o| o.to == *w) {
            Some(o) => o.amount = Atomic::new(o.amount.get() + amount),
            None => owed.push(store::Owed {
                task: task.to_string(),
                from: from.to_string(),
                to: w.clone(),
                amount: Atomic::new(amount),
            }),
        }
    }
    owed.retain(|o| o.amount.get() > 0);
    owed
}

/// Encodes a 402 body for the `PAYMENT-REQUIRED` header: base64 of its JSON.
pub fn encode_header(v: &impl Serialize) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap_or_default())
}

/// Decodes a `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) header into a v2 payload. A v1
/// payload (`{x402Version: 1, scheme, network, payload}`) is answered against `issued`, the
/// requirements a direct rail issues for every task alike.
pub fn decode_payment(
    header: &str,
    issued: Option<&PaymentRequirements>,
) -> Result<PaymentPayload, GatewayError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|e| GatewayError::PaymentHeader(format!("not base64: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::PaymentHeader(format!("not JSON: {e}")))?;
    match value.get("x402Version").and_then(|v| v.as_u64()) {
        Some(2) => serde_json::from_value(value)
            .map_err(|e| GatewayError::PaymentHeader(format!("not an x402 v2 payload: {e}"))),
        Some(1) => {
            let issued = issued.ok_or_else(|| {
                GatewayError::PaymentHeader(
                    "x402 v1 payments are accepted on direct rails only".into(),
                )
            })?;
            if value.get("scheme").and_then(|s| s.as_str()) != Some(issued.scheme.as_str()) {
                return Err(GatewayError::PaymentHeader(format!(
                    "v1 payment scheme is not {}",
                    issued.scheme
                )));
            }
            Ok(d402_rails::evm::buyer::payment_payload(
                issued,
                value.get("payload").cloned().unwrap_or_default(),
            ))
        }
        _ => Err(GatewayError::PaymentHeader(
            "x402Version must be 1 or 2".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_shares_the_worker_net() {
        let w = |s: &str| s.to_string();
        let amounts = |owed: &[store::Owed]| {
            owed.iter()
                .map(|o| (o.to.clone(), o.amount.get()))
                .collect::<Vec<_>>()
        };
        // Equal shares, the remainder to the first worker, nothing lost or added.
        let owed = shares("t", "gw", Atomic::new(10), &[w("a"), w("b"), w("c")]);
        assert_eq!(amounts(&owed), [(w("a"), 4), (w("b"), 3), (w("c"), 3)]);
        assert!(owed.iter().all(|o| o.task == "t" && o.from == "gw"));
        // One wallet behind two workers gets both shares, in one entry.
        let owed = shares("t", "gw", Atomic::new(9), &[w("a"), w("b"), w("a")]);
        assert_eq!(amounts(&owed), [(w("a"), 6), (w("b"), 3)]);
        // Shares of nothing are not owed.
        let owed = shares("t", "gw", Atomic::new(1), &[w("a"), w("b")]);
        assert_eq!(amounts(&owed), [(w("a"), 1)]);
    }
}
