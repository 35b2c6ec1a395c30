//! Root publication for a gateway's channels: the authority signs a root over the ledger's
//! allocations once the oldest allocation no root carries is `interval` old (counted from the last
//! root, so a restart does not postpone it), keeps it, exports it for the maintainer
//! (`ROOTS_DIR/<channel>/<seq>.json`) and publishes it; a kept root that never landed is published
//! again. Shared by `solana-channel` (buyers' channels) and `base-x402-solana-channel` (the
//! gateway's own).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;

use super::ledger::{Ledger, LedgerError, SignedRoot};
use super::roots::{ChannelChain, ChannelError, sign_root};
use crate::amount::Atomic;
use crate::error::RailError;
use crate::payment::UnpublishedRoot;

fn ledger_err(e: LedgerError) -> RailError {
    RailError::Chain(e.to_string())
}

fn channel_err(e: ChannelError) -> RailError {
    match e {
        ChannelError::Submit(s) => s.into(),
        other => RailError::Chain(other.to_string()),
    }
}

pub struct RootPublisher {
    ledger: Ledger,
    authority: Arc<Keypair>,
    chain: ChannelChain,
    interval: Duration,
    /// Where signed roots are exported for the maintainer.
    roots_dir: PathBuf,
    /// When each channel's oldest unpublished allocation was first seen (unix ms).
    pending_since: Mutex<HashMap<String, u64>>,
    /// Each channel's last root total seen on chain (by this process).
    published: Mutex<HashMap<String, u64>>,
}

impl RootPublisher {
    pub fn new(
        ledger: Ledger,
        authority: Arc<Keypair>,
        chain: ChannelChain,
        interval: Duration,
        roots_dir: PathBuf,
    ) -> Self {
        RootPublisher {
            ledger,
            authority,
            chain,
            interval,
            roots_dir,
            pending_since: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Writes a kept root where the maintainer reads it (`ROOTS_DIR/<channel>/<seq>.json`),
    /// replacing the file whole.
    fn export_root(&self, root: &SignedRoot) -> Result<(), RailError> {
        let dir = self.roots_dir.join(&root.channel);
        let io = |e: std::io::Error| RailError::Chain(format!("exporting a root: {e}"));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tmp = dir.join(format!("{}.json.tmp", root.seq));
        std::fs::write(&tmp, serde_json::to_vec_pretty(root).unwrap_or_default()).map_err(io)?;
        std::fs::rename(&tmp, dir.join(format!("{}.json", root.seq))).map_err(io)?;
        Ok(())
    }

    /// Signs, keeps, exports and publishes a root for every channel whose allocations grew past
    /// its last published root (with `force`, at once; else once the growth is
    /// [`ChannelPolicy::root_interval`] old). Returns how many roots were published.
    pub async fn publish_roots(&self, force: bool) -> Result<usize, RailError> {
        let mut published = 0;
        for ch in self.ledger.channels().map_err(ledger_err)? {
            let allocated = self.allocated(&ch.channel)?;
            if allocated <= self.on_chain_total(&ch.channel) {
                continue;
            }
            let kept = self.ledger.roots(&ch.channel).map_err(ledger_err)?.pop();
            let kept_total = kept.as_ref().map_or(0, |r| r.total);
            // A kept root that never made it on chain is retried at once; new allocations wait
            // for the interval, so that one root carries many tasks.
            if allocated > kept_total && !force {
                let now = d402_core::clock::now_ms();
                // Allocations past the last root have accrued since it was signed (or since the
                // opening): a restart does not restart the interval.
                let accrued = kept.as_ref().map_or(ch.opened_ms, |k| k.signed_at_ms);
                let mut pending = self.pending_since.lock().unwrap_or_else(|p| p.into_inner());
                let since = *pending.entry(ch.channel.clone()).or_insert(if accrued > 0 {
                    accrued.min(now)
                } else {
                    now
                });
                if u128::from(now.saturating_sub(since)) < self.interval.as_millis() {
                    continue;
                }
            }
            let channel = Pubkey::from_str(&ch.channel)
                .map_err(|_| RailError::Chain(format!("ledger channel {}", ch.channel)))?;
            let state = self.chain.state(&channel).await.map_err(channel_err)?;
            if state.allocated >= allocated {
                self.mark_published(&ch.channel, state.allocated);
                continue;
            }
            let signed = match kept {
                Some(k) if k.total >= allocated && k.seq > state.seq => k,
                _ => match sign_root(
                    &self.ledger,
                    &self.authority,
                    &channel,
                    state.seq + 1,
                    state.allocated,
                )
                .map_err(channel_err)?
                {
                    Some(s) => s,
                    None => continue,
                },
            };
            self.export_root(&signed)?;
            self.chain
                .publish(&signed, &state.payer, &state.authority, &state.vault)
                .await
                .map_err(channel_err)?;
            self.mark_published(&ch.channel, signed.total);
            published += 1;
        }
        Ok(published)
    }

    /// What the ledger allocated in `channel` in all.
    fn allocated(&self, channel: &str) -> Result<u64, RailError> {
        Ok(self
            .ledger
            .allocations(channel)
            .map_err(ledger_err)?
            .iter()
            .map(|(_, a)| *a)
            .sum())
    }

    /// The total of the last root this process saw on chain for `channel` (0: not seen yet).
    fn on_chain_total(&self, channel: &str) -> u64 {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .copied()
            .unwrap_or(0)
    }

    fn mark_published(&self, channel: &str, total: u64) {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.to_string(), total);
        self.pending_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
    }

    /// Every channel whose allocations no published root carries (as far as this process saw).
    pub fn unpublished(&self) -> Result<Vec<UnpublishedRoot>, RailError> {
        let since = self
            .pending_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = d402_core::clock::now_ms();
        let mut out = Vec::new();
        for ch in self.ledger.channels().map_err(ledger_err)? {
            let allocated = self.allocated(&ch.channel)?;
            let last = self.on_chain_total(&ch.channel);
            if allocated > last {
                out.push(UnpublishedRoot {
                    channel: ch.channel.clone(),
                    amount: Atomic::new(u128::from(allocated - last)),
                    since_ms: since.get(&ch.channel).copied().unwrap_or(now),
                });
            }
        }
        Ok(out)
    }
}
