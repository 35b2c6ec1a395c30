//! The worker role: bids on intents for the capabilities it offers, runs leases in the host, and
//! answers with a signed claim.
//!
//! A worker bids only for what it offers (`--offer ID@VERSION`), only within the buyer's budget,
//! and only if it can meet the deadline. Before running a lease it fetches and checks the
//! registration, manifest and component by CID ([`crate::admission`]); a lease naming bytes that
//! do not match, or a registration that does not verify, is refused and nothing runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use d402_core::{Snapshotter, content_id::canonical_json};
use d402_host::{ContentStore, EvidenceMode, Host, ReplayBook};
use libp2p::PeerId;

use crate::admission::{self, Refusal};
use crate::state::NodeState;
use crate::swarm::NetHandle;
use crate::wire::{Bid, Claim, Intent, Lease, TaskResponse};

/// How a worker is set up.
#[derive(Clone)]
pub struct WorkerConfig {
    /// `ID@VERSION`s this worker sells.
    pub offers: BTreeSet<String>,
    /// Browser (or plain fetch) used to freeze pages on live leases.
    pub snapshotter: Arc<dyn Snapshotter>,
    /// Atomic units asked per task.
    pub price: u64,
    /// Where this worker is paid, per rail. Workers hold addresses only, never funds.
    pub payout_wallets: d402_registry::CreatorWallets,
    /// Lets capabilities reach loopback and private addresses. Off in production; the local
    /// devnet and tests turn it on because everything they serve is local.
    pub allow_private_targets: bool,
    /// Largest task input accepted, in bytes.
    pub max_input_bytes: u64,
    /// What this worker expects a task to take; it declines deadlines it cannot meet.
    pub expected_task_ms: u64,
    /// Deliberate misbehaviour, for tests of the network's defences. `None` in real nodes.
    #[doc(hidden)]
    pub fault: Option<Fault>,
}

/// Misbehaviour a test can ask a worker for.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Alter the output (and sign a receipt for the altered output): a lying worker.
    AlterOutput,
    /// Return a degraded output: a page's Markdown cut to its first line and spam (with a
    /// consistent, correctly signed receipt), which exact comparison and a comparator both catch.
    DegradeOutput,
    /// Alter every page before freezing it (its paragraphs replaced by spam) and run honestly on
    /// the altered page: a lying snapshotter, whose evidence, output and receipt are all
    /// consistent, so that replaying its frozen page agrees with it. Only an independent
    /// freeze of the same URL catches it (the gateway's `--snapshot-check`).
    AlterPage,
    /// Sleep this long before answering a lease: a worker that hangs or is killed mid-task.
    Stall(Duration),
}

impl WorkerConfig {
    pub fn new(
        offers: impl IntoIterator<Item = String>,
        snapshotter: Arc<dyn Snapshotter>,
    ) -> Self {
        Self {
            offers: offers.into_iter().collect(),
            snapshotter,
            price: 1,
            payout_wallets: Default::default(),
            allow_private_targets: false,
            max_input_bytes: 1 << 20,
            expected_task_ms: 2_000,
            fault: None,
        }
    }
}

/// A running worker.
pub struct Worker {
    pub(crate) config: WorkerConfig,
    pub(crate) host: Arc<Host>,
    pub(crate) store: ContentStore,
    pub(crate) state: NodeState,
    pub(crate) net: NetHandle,
}

impl Worker {
    pub(crate) fn bid(&self, intent: Intent) -> TaskResponse {
        let decline = |reason: String| TaskResponse::Decline { reason };
        if !self.config.offers.contains(&intent.capability) {
            return decline(format!("not-offered: {}", intent.capability));
        }
        if intent.budget < self.config.price {
            return decline(format!(
                "budget: {} is under the price {}",
                intent.budget, self.config.price
            ));
        }
        if intent.input_bytes > self.config.max_input_bytes {
            return decline(format!(
                "input: {} bytes is over {}",
                intent.input_bytes, self.config.max_input_bytes
            ));
        }
        let now = crate::now_ms();
        if now.saturating_add(self.config.expected_task_ms) > intent.deadline_ms {
            return decline("deadline: cannot finish in time".into());
        }
        TaskResponse::Bid(Bid {
            task_id: intent.task_id,
            worker: self.host.identity().public_id(),
            price: self.config.price,
            payout_wallets: self.config.payout_wallets.clone(),
            eta_ms: self.config.expected_task_ms,
        })
    }

    pub(crate) async fn lease(self: Arc<Self>, from: PeerId, lease: Lease) -> TaskResponse {
        match self.run_lease(from, lease).await {
            Ok(claim) => TaskResponse::Claim(Box::new(claim)),
            Err(refusal) => {
                tracing::info!(code = refusal.code(), "lease refused: {refusal}");
                TaskResponse::Refused {
                    code: refusal.code().into(),
                    message: refusal.to_string(),
                }
            }
        }
    }

    async fn run_lease(self: Arc<Self>, from: PeerId, lease: Lease) -> Result<Claim, Refusal> {
        if !self.config.offers.contains(&lease.capability) {
            return Err(Refusal::NotOffered(lease.capability));
        }
        if crate::now_ms() > lease.expires_at_ms {
            return Err(Refusal::Expired(lease.lease_id));
        }
        let admitted =
            admission::admit(&self.net, &self.store, &self.state, &lease, &[from]).await?;
        if let Some(Fault::Stall(pause)) = self.config.fault {
            tokio::time::sleep(pause).await;
        }
        let worker = self.clone();
        tokio::task::spawn_blocking(move || worker.execute(lease, admitted))
            .await
            .map_err(|e| Refusal::Execution(format!("execution task failed: {e}")))?
    }

    fn execute(&self, lease: Lease, admitted: admission::Admitted) -> Result<Claim, Refusal> {
        let evidence = if lease.evidence.is_empty() {
            EvidenceMode::Live {
                snapshotter: match self.config.fault {
                    Some(Fault::AlterPage) => {
                        Arc::new(AlteringSnapshotter(self.config.snapshotter.clone()))
                    }
                    _ => self.config.snapshotter.clone(),
                },
            }
        } else {
            EvidenceMode::Replay(
                ReplayBook::load(&self.store, &lease.evidence)
                    .map_err(|e| Refusal::Execution(format!("evidence: {e}")))?,
            )
        };
        let execution = crate::execution::run(
            &self.host,
            &self.store,
            &lease,
            &admitted,
            evidence,
            self.config.allow_private_targets,
        )?;
        let evidence_objects = execution.objects.iter().map(|(cid, _)| cid).collect();
        let (output, receipt) = match self.config.fault {
            Some(fault @ (Fault::AlterOutput | Fault::DegradeOutput)) => {
                self.lie(fault, &execution.output, execution.receipt)?
            }
            _ => (execution.output, execution.receipt),
        };
        let payout_wallets = self.config.payout_wallets.clone();
        let payout_signature = self.host.identity().sign(
            &Claim::payout_message(&lease.lease_id, &payout_wallets)
                .map_err(|e| Refusal::Execution(e.to_string()))?,
        );
        Ok(Claim {
            lease_id: lease.lease_id,
            output,
            receipt,
            evidence_objects,
            payout_wallets,
            payout_signature,
        })
    }

    /// A lying worker's claim: altered output with a receipt that is consistent with it and
    /// correctly signed, so only comparison with honest workers can catch it.
    fn lie(
        &self,
        fault: Fault,
        output: &str,
        receipt: d402_core::Receipt,
    ) -> Result<(String, d402_core::Receipt), Refusal> {
        let mut value: serde_json::Value = serde_json::from_str(output)
            .map_err(|e| Refusal::Execution(format!("output is not JSON: {e}")))?;
        if let Some(serde_json::Value::String(text)) = value.get_mut("markdown") {
            if fault == Fault::DegradeOutput {
                let first = text.lines().next().unwrap_or_default().to_string();
                *text = first;
            }
            text.push_str("\n\nBuy cheap watches at example.invalid!");
        } else if let serde_json::Value::Object(map) = &mut value {
            map.insert("forged".into(), true.into());
        }
        let altered = String::from_utf8(
            canonical_json(&value).map_err(|e| Refusal::Execution(e.to_string()))?,
        )
        .map_err(|e| Refusal::Execution(e.to_string()))?;
        let mut body = receipt.body;
        self.store
            .put(altered.as_bytes())
            .map_err(|e| Refusal::Execution(e.to_string()))?;
        body.output = d402_core::ContentId::of(altered.as_bytes());
        body.canonical_output = body
            .canonicalizer
            .canonical_hash(&value)
            .map_err(|e| Refusal::Execution(e.to_string()))?;
        let receipt = body
            .sign(self.host.identity())
            .map_err(|e| Refusal::Execution(e.to_string()))?;
        Ok((altered, receipt))
    }
}

/// The [`Fault::AlterPage`] snapshotter: freezes the page, then replaces what every paragraph says.
struct AlteringSnapshotter(Arc<dyn Snapshotter>);

impl Snapshotter for AlteringSnapshotter {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn freeze(
        &self,
        url: &url::Url,
        limits: &d402_core::snapshot::SnapshotLimits,
    ) -> Result<d402_core::snapshot::FrozenHtml, d402_core::snapshot::SnapshotError> {
        let mut page = self.0.freeze(url, limits)?;
        let mut altered = String::with_capacity(page.html.len());
        let mut rest = page.html.as_str();
        while let Some(start) = rest.find("<p>") {
            altered.push_str(&rest[..start + 3]);
            rest = &rest[start + 3..];
            let end = rest.find("</p>").unwrap_or(rest.len());
            altered.push_str(
                "Buy cheap watches at example.invalid, the best prices on the whole web today.",
            );
            rest = &rest[end..];
        }
        altered.push_str(rest);
        page.html = altered;
        Ok(page)
    }
}
