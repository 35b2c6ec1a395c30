//! The channel maintainer (`d402 solana-channel-maintainer`, seed 001 "Channel maintenance"):
//! publishes the roots the gateway signed, cranks withdrawals for the claimants it serves and
//! reclaims rent, on an interval. It holds only a fee payer: every root it publishes carries the
//! payer's and the authority's signatures, and every withdrawal pays the claimant's own token
//! account, so it can neither take nor redirect anything. It **never closes a channel**.
//!
//! It reads the roots the gateway exported (`STATE/gateway/solana-channel-roots/<channel>/<seq>.json`,
//! see [`super::rail::ROOTS_DIR`]) into a ledger of its own, sends through an outbox of its own,
//! and writes what each round did to `status.json`, which `d402 ops-status` reads (failed
//! withdrawals and a maintainer that stopped reporting are alerts).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use d402_program::channel::ChannelStage;
use serde::{Deserialize, Serialize};
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;

use super::ledger::{Ledger, SignedRoot};
use super::roots::{ChannelChain, ChannelError};
use crate::outbox::Outbox;
use crate::solana::submit::Submitter;

/// The maintainer's folder under the node's `--state`.
pub const MAINTAINER_DIR: &str = "solana-channel-maintainer";
/// Its status file, in [`MAINTAINER_DIR`].
pub const STATUS_FILE: &str = "status.json";
/// The outbox rail name its records are written under.
pub const RAIL: &str = "solana-channel-maintainer";

/// One thing a round could not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub channel: String,
    /// The claimant, for a withdrawal or a claim's reclaim.
    pub claimant: Option<String>,
    /// `publish`, `withdraw`, `reclaim-claim`, `reclaim-channel` or `read`.
    pub action: String,
    pub error: String,
}

/// What the last round did, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintainerStatus {
    pub written_ms: u64,
    pub interval_ms: u64,
    pub rounds: u64,
    pub channels: usize,
    /// In the last round.
    pub published: Vec<String>,
    pub withdrawn: Vec<String>,
    pub reclaimed: Vec<String>,
    pub failures: Vec<Failure>,
}

impl MaintainerStatus {
    pub fn path(state: &Path) -> PathBuf {
        state.join(MAINTAINER_DIR).join(STATUS_FILE)
    }

    pub fn read(state: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(Self::path(state))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    fn write(&self, state: &Path) -> std::io::Result<()> {
        let path = Self::path(state);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaintainerError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("maintainer state: {0}")]
    State(String),
}

pub struct Maintainer {
    state: PathBuf,
    roots_dir: PathBuf,
    claimants: Vec<Pubkey>,
    ledger: Ledger,
    chain: ChannelChain,
    status: MaintainerStatus,
}

impl Maintainer {
    /// A maintainer over the gateway node's `state` folder, cranking for `claimants`, paying
    /// fees with `fee_payer`.
    pub fn open(
        state: &Path,
        rpc: Arc<RpcClient>,
        fee_payer: Arc<Keypair>,
        claimants: Vec<Pubkey>,
        interval_ms: u64,
    ) -> Result<Self, MaintainerError> {
        let own = state.join(MAINTAINER_DIR);
        std::fs::create_dir_all(&own).map_err(|e| MaintainerError::Io(own.clone(), e))?;
        let ledger = Ledger::open(&own.join("roots.redb"))
            .map_err(|e| MaintainerError::State(e.to_string()))?;
        let outbox = Outbox::open(&own.join("outbox.redb"))
            .map_err(|e| MaintainerError::State(e.to_string()))?;
        let submitter = Submitter::new(Arc::clone(&rpc), outbox, RAIL);
        Ok(Maintainer {
            state: state.to_path_buf(),
            roots_dir: state.join("gateway").join(super::rail::ROOTS_DIR),
            claimants,
            ledger,
            chain: ChannelChain::new(rpc, submitter.clone(), fee_payer),
            status: MaintainerStatus {
                interval_ms,
                ..MaintainerStatus::default()
            },
        })
    }

    /// Finishes what a previous run left in flight (a transaction sent and not seen).
    pub async fn reconcile(&self) -> Result<(), ChannelError> {
        self.chain.submitter().reconcile().await?;
        Ok(())
    }

    /// The roots exported for each channel, highest sequence number last.
    fn exported(&self) -> Vec<(String, Result<Vec<SignedRoot>, String>)> {
        let Ok(dirs) = std::fs::read_dir(&self.roots_dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dir in dirs.flatten() {
            let channel = dir.file_name().to_string_lossy().to_string();
            let read = || -> Result<Vec<SignedRoot>, String> {
                let mut roots = Vec::new();
                for f in std::fs::read_dir(dir.path())
                    .map_err(|e| e.to_string())?
                    .flatten()
                {
                    let path = f.path();
                    if path.extension().is_none_or(|e| e != "json") {
                        continue;
                    }
                    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                    let root: SignedRoot = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    if root.channel != channel {
                        return Err(format!("{} names channel {}", path.display(), root.channel));
                    }
                    roots.push(root);
                }
                roots.sort_by_key(|r| r.seq);
                Ok(roots)
            };
            let roots = read();
            out.push((channel, roots));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// One round over every channel: publish the newest root the chain lacks, crank each
    /// claimant's withdrawal, reclaim the rent of closed channels' spent claims and empty vaults.
    /// Failures are recorded and the round goes on; the status file is rewritten at the end.
    pub async fn round(&mut self) -> Result<&MaintainerStatus, MaintainerError> {
        let mut status = MaintainerStatus {
            interval_ms: self.status.interval_ms,
            rounds: self.status.rounds + 1,
            ..MaintainerStatus::default()
        };
        let exported = self.exported();
        status.channels = exported.len();
        for (name, roots) in exported {
            let fail = |action: &str, claimant: Option<&Pubkey>, error: String| Failure {
                channel: name.clone(),
                claimant: claimant.map(|c| c.to_string()),
                action: action.into(),
                error,
            };
            let roots = match roots {
                Ok(r) => r,
                Err(e) => {
                    status.failures.push(fail("read", None, e));
                    continue;
                }
            };
            let Ok(channel) = Pubkey::from_str(&name) else {
                status
                    .failures
                    .push(fail("read", None, "not a channel address".into()));
                continue;
            };
            for r in &roots {
                if let Err(e) = self.ledger.keep_root(r) {
                    status.failures.push(fail("read", None, e.to_string()));
                }
            }
            let state = match self.chain.state(&channel).await {
                Ok(s) => s,
                Err(e) => {
                    status.failures.push(fail("read", None, e.to_string()));
                    continue;
                }
            };
            if let Some(newest) = roots.last()
                && newest.seq > state.seq
                && newest.total >= state.allocated
                && state.stage != ChannelStage::Closed
            {
                match self
                    .chain
                    .publish(newest, &state.payer, &state.authority, &state.vault)
                    .await
                {
                    Ok(sig) => status.published.push(sig.to_string()),
                    Err(e) => status.failures.push(fail("publish", None, e.to_string())),
                }
            }
            for claimant in &self.claimants {
                match self.chain.withdraw(&self.ledger, &channel, claimant).await {
                    Ok(Some(sig)) => status.withdrawn.push(sig.to_string()),
                    Ok(None) => {}
                    Err(e) => status
                        .failures
                        .push(fail("withdraw", Some(claimant), e.to_string())),
                }
                match self
                    .chain
                    .reclaim_claim(&self.ledger, &channel, claimant)
                    .await
                {
                    Ok(Some(sig)) => status.reclaimed.push(sig.to_string()),
                    Ok(None) => {}
                    Err(e) => {
                        status
                            .failures
                            .push(fail("reclaim-claim", Some(claimant), e.to_string()))
                    }
                }
            }
            match self.chain.reclaim_channel(&channel).await {
                Ok(Some(sig)) => status.reclaimed.push(sig.to_string()),
                Ok(None) => {}
                Err(e) => status
                    .failures
                    .push(fail("reclaim-channel", None, e.to_string())),
            }
        }
        status.written_ms = d402_core::clock::now_ms();
        status
            .write(&self.state)
            .map_err(|e| MaintainerError::Io(MaintainerStatus::path(&self.state), e))?;
        self.status = status;
        Ok(&self.status)
    }
}
