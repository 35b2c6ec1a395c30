//! Claims: what `base-batch-settlement` sends to turn accepted vouchers into money. Built from
//! the ledger alone (claim up to what was charged, with the payer's latest voucher, after reading
//! what the chain has claimed already), so a restart claims exactly what was accepted and a claim
//! whose outcome was lost is never sent twice. Due on the policy's window or value threshold, and
//! at once for a channel whose payer started a withdrawal; each claim is swept to the wallet.

use super::ledger::Channel;
use super::rail::{BaseBatch, ledger_err};
use crate::amount::Atomic;
use crate::error::RailError;
use crate::evm::contracts::BatchSettlement;
use crate::evm::{chain_err, now_unix};

impl BaseBatch {
    /// The channels that owe a claim.
    fn owing(&self) -> Result<Vec<Channel>, RailError> {
        Ok(self
            .ledger
            .channels()
            .map_err(ledger_err)?
            .into_iter()
            .filter(|c| c.unclaimed() > 0)
            .collect())
    }

    /// Claims `owing` in transactions of at most the policy's batch size.
    async fn claim_in_batches(&self, owing: Vec<Channel>) -> Result<Vec<String>, RailError> {
        let mut sent = Vec::new();
        for chunk in owing.chunks(self.policy.claim_batch.max(1)) {
            if let Some(tx) = self.claim(chunk.to_vec()).await? {
                sent.push(tx);
            }
        }
        Ok(sent)
    }

    /// Claims what `channels` have charged beyond what is claimed on chain, in one
    /// transaction, then sweeps. Returns the claim's transaction, if one was sent.
    pub(super) async fn claim(&self, channels: Vec<Channel>) -> Result<Option<String>, RailError> {
        let mut rows = Vec::new();
        let mut claimed = Vec::new();
        for ch in channels {
            let (_, on_chain) = self.on_chain(ch.id).await?;
            if on_chain >= ch.charged.get() {
                // Claimed already (a claim whose outcome was not recorded).
                self.ledger
                    .update(&ch.id, |c| mirror_claim(c, Atomic::new(on_chain)))
                    .map_err(ledger_err)?;
                continue;
            }
            let (Some(v), Some(cfg)) = (&ch.voucher, ch.config.to_contract()) else {
                continue;
            };
            rows.push(BatchSettlement::VoucherClaim {
                voucher: BatchSettlement::Voucher {
                    channel: cfg,
                    maxClaimableAmount: v.max_claimable_amount.get(),
                },
                signature: v.signature.clone(),
                totalClaimed: ch.charged.get(),
            });
            claimed.push((ch.id, ch.charged));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let (tx, _) = self.transact("claim", self.settlement.claim(rows)).await?;
        for (id, total) in claimed {
            self.ledger
                .update(&id, |c| mirror_claim(c, total))
                .map_err(ledger_err)?;
        }
        self.sweep().await?;
        Ok(Some(tx.to_string()))
    }

    /// Transfers everything claimed and not yet settled to the wallet.
    async fn sweep(&self) -> Result<(), RailError> {
        let receiver = self.key.address();
        let token = self.chain.asset.address;
        let r = self
            .settlement
            .receivers(receiver, token)
            .call()
            .await
            .map_err(chain_err)?;
        if r.totalClaimed <= r.totalSettled {
            return Ok(());
        }
        self.transact("sweep", self.settlement.settle(receiver, token))
            .await
            .map(|_| ())
    }

    /// Reads the payers' withdrawal clocks of the channels that still owe a claim.
    async fn watch_withdrawals(&self, channels: &[Channel]) -> Result<(), RailError> {
        for ch in channels {
            let w = self
                .settlement
                .pendingWithdrawals(ch.id)
                .call()
                .await
                .map_err(chain_err)?;
            let at = u64::try_from(w.initiatedAt).unwrap_or(0);
            if at != ch.withdraw_requested_at {
                self.ledger
                    .update(&ch.id, |c| c.withdraw_requested_at = at)
                    .map_err(ledger_err)?;
            }
        }
        Ok(())
    }

    /// The claim loop's one step: claims what is due (see [`BatchPolicy`]). Returns the claim
    /// transactions sent.
    pub async fn claim_due(&self) -> Result<Vec<String>, RailError> {
        let owing = self.owing()?;
        if owing.is_empty() {
            return Ok(Vec::new());
        }
        self.watch_withdrawals(&owing).await?;
        let owing = self.owing()?;
        let now_ms = d402_core::clock::now_ms();
        let total: u128 = owing.iter().map(|c| c.unclaimed()).sum();
        let oldest = owing
            .iter()
            .map(|c| c.unclaimed_since_ms)
            .min()
            .unwrap_or(now_ms);
        let margin = self.policy.withdrawal_margin.as_secs();
        let withdrawing = owing.iter().any(|c| {
            c.withdrawal_ends()
                .is_some_and(|end| end.saturating_sub(now_unix()) <= margin)
        });
        let due = withdrawing
            || total >= self.policy.claim_threshold.get()
            || now_ms.saturating_sub(oldest) >= self.policy.claim_window.as_millis() as u64;
        if !due {
            return Ok(Vec::new());
        }
        self.claim_in_batches(owing).await
    }

    /// Claims every unclaimed charge now, whatever the policy (a drain, and tests).
    pub async fn claim_all(&self) -> Result<Vec<String>, RailError> {
        self.claim_in_batches(self.owing()?).await
    }

    /// The channels as the ledger has them.
    pub fn channels(&self) -> Result<Vec<Channel>, RailError> {
        self.ledger.channels().map_err(ledger_err)
    }
}

fn mirror_claim(c: &mut Channel, total: Atomic) {
    if total > c.total_claimed {
        c.total_claimed = total;
    }
    if c.charged < c.total_claimed {
        c.charged = c.total_claimed;
    }
    c.unclaimed_since_ms = if c.unclaimed() > 0 {
        d402_core::clock::now_ms()
    } else {
        0
    };
}
