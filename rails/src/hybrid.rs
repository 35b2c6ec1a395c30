//! `base-x402-solana-channel`: the buyer pays on Base with a stock x402 `exact` client (EIP-3009,
//! settled as on `base-x402-direct`, the whole price to the gateway's Base wallet), and the task's
//! split is paid on Solana through a channel the gateway funds itself: the gateway is that
//! channel's payer (it signs the vouchers) and its authority (it signs the roots). Each accepted
//! task's worker net, creator commission and gateway fee are allocated to their claimants once,
//! roots are published on an interval, and workers and creators withdraw on Solana (or the
//! maintainer cranks it for them).
//!
//! - A challenge is refused when the channel cannot cover the task
//!   ([`RailError::ChannelHeadroom`]); [`Rail::maintain`] opens the channel and tops it up within
//!   the channel caps, so the refusal is temporary.
//! - The commission's terms travel in the requirements' `extra` (`creator`, `creatorBps`), which
//!   the stock client passes back untouched.
//! - A failed task is refunded on Base out of the gateway's wallet; nothing was allocated for it.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction::versioned::VersionedTransaction;

use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::delivery::{Accepted, Delivery};
use crate::error::RailError;
use crate::evm::direct::BaseDirect;
use crate::outbox::{SettlementRecord, SettlementState};
use crate::payment::{ChannelBook, RailKind};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Rail, ReconcileReport, Release, Settlement,
    Terms, Verified,
};
use crate::refund::{PaidTask, Refund};
use crate::solana::channel::ledger::{ChannelRecord, ChargeRefusal, Funding, Ledger, LedgerError};
use crate::solana::channel::payer::{Opening, open_instructions, top_up, vault_of};
use crate::solana::channel::publisher::RootPublisher;
use crate::solana::channel::rail::{check_split_terms, claimant_parts, split_of};
use crate::solana::channel::roots::ChannelChain;
use crate::solana::channel::voucher;
use crate::solana::submit::{EntryKind, SolanaRequest, SubmitError, Submitter};
use crate::split::{GatewayFee, Split};

pub const NAME: &str = "base-x402-solana-channel";

/// How the gateway funds its channel and publishes its roots.
#[derive(Debug, Clone)]
pub struct HybridPolicy {
    /// The channel's maintainer (may publish and crank; holds no funds).
    pub maintainer: Pubkey,
    /// What an opening or a top-up deposits.
    pub deposit: u64,
    /// Top up once the headroom falls below this.
    pub low_water: u64,
    pub grace_secs: u64,
    pub root_interval: std::time::Duration,
}

impl HybridPolicy {
    pub fn new(maintainer: Pubkey, deposit: u64) -> Self {
        HybridPolicy {
            maintainer,
            deposit,
            low_water: deposit / 4,
            grace_secs: 86_400,
            root_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// The hybrid rail: a [`BaseDirect`] for the payment, a Solana channel for the split.
pub struct BaseX402SolanaChannel {
    base: BaseDirect,
    solana: ChainId,
    mint: Pubkey,
    /// The gateway's Solana key: the channel's payer and authority, the fee payer, the fee's
    /// claimant.
    key: Arc<Keypair>,
    submitter: Submitter,
    ledger: Ledger,
    caps: SafetyCaps,
    policy: HybridPolicy,
    channel_rent: u64,
    roots: RootPublisher,
    /// One charge at a time: each signs the next cumulative voucher.
    charging: tokio::sync::Mutex<()>,
    /// One funding at a time.
    funding: tokio::sync::Mutex<()>,
}

fn ledger_err(e: LedgerError) -> RailError {
    RailError::Chain(e.to_string())
}

impl BaseX402SolanaChannel {
    /// `base` takes the payments (its outbox is shared with `submitter`, which must write under
    /// [`NAME`]); `key` holds the mint's tokens that fund the channel.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: BaseDirect,
        solana: ChainId,
        mint: Pubkey,
        key: Arc<Keypair>,
        submitter: Submitter,
        ledger: Ledger,
        caps: SafetyCaps,
        policy: HybridPolicy,
        channel_rent: u64,
        roots_dir: std::path::PathBuf,
    ) -> Self {
        let roots = RootPublisher::new(
            ledger.clone(),
            Arc::clone(&key),
            ChannelChain::new(submitter.rpc_handle(), submitter.clone(), Arc::clone(&key)),
            policy.root_interval,
            roots_dir,
        );
        BaseX402SolanaChannel {
            base,
            solana,
            mint,
            key,
            submitter,
            ledger,
            caps,
            policy,
            channel_rent,
            roots,
            charging: tokio::sync::Mutex::new(()),
            funding: tokio::sync::Mutex::new(()),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The gateway's channel, once opened.
    pub fn channel(&self) -> Result<Option<ChannelRecord>, RailError> {
        let me = self.key.pubkey().to_string();
        Ok(self
            .ledger
            .channels()
            .map_err(ledger_err)?
            .into_iter()
            .find(|c| c.payer == me))
    }

    /// What the channel can still allocate.
    pub fn headroom(&self) -> Result<u64, RailError> {
        Ok(self
            .channel()?
            .map_or(0, |c| c.deposit.saturating_sub(c.charged)))
    }

    /// Publishes roots now (`force`) or once due.
    pub async fn publish_roots(&self, force: bool) -> Result<usize, RailError> {
        self.roots.publish_roots(force).await
    }

    /// Opens the channel, or tops it up when the headroom is below the low-water mark; within
    /// the channel caps. Nothing while a funding is in flight (reconcile finishes it).
    pub async fn fund(&self) -> Result<(), RailError> {
        let _one = self.funding.lock().await;
        if !self.ledger.fundings().map_err(ledger_err)?.is_empty() {
            return self.finish_fundings().await;
        }
        let amount = self.policy.deposit;
        let (id, instructions, signers, record) = match self.channel()? {
            None => {
                self.caps
                    .check(&Exposure {
                        channel_initial_funding: Some(Atomic::new(amount.into())),
                        channel_balance_after: Some(Atomic::new(amount.into())),
                        ..Exposure::default()
                    })
                    .map_err(RailError::Cap)?;
                let channel = Keypair::new();
                let opening = Opening {
                    payer: self.key.pubkey(),
                    channel: channel.pubkey(),
                    mint: self.mint,
                    authority: self.key.pubkey(),
                    maintainer: self.policy.maintainer,
                    deposit: amount,
                    grace_secs: self.policy.grace_secs,
                    channel_rent: self.channel_rent,
                };
                let record = ChannelRecord {
                    channel: channel.pubkey().to_string(),
                    payer: self.key.pubkey().to_string(),
                    vault: vault_of(&channel.pubkey(), &self.mint).to_string(),
                    mint: self.mint.to_string(),
                    deposit: 0,
                    charged: 0,
                    voucher: None,
                    opened_ms: d402_core::clock::now_ms(),
                };
                (
                    format!("{NAME}:open:{}", channel.pubkey()),
                    open_instructions(&opening, &self.key.pubkey()),
                    Some(channel),
                    record,
                )
            }
            Some(ch) if ch.deposit.saturating_sub(ch.charged) < self.policy.low_water => {
                let after = ch.deposit.saturating_add(amount);
                self.caps
                    .check(&Exposure {
                        channel_balance_after: Some(Atomic::new(after.into())),
                        ..Exposure::default()
                    })
                    .map_err(RailError::Cap)?;
                let channel = Pubkey::from_str(&ch.channel)
                    .map_err(|_| RailError::Chain(format!("ledger channel {}", ch.channel)))?;
                (
                    format!("{NAME}:top-up:{}:{after}", ch.channel),
                    vec![top_up(&self.key.pubkey(), &channel, &self.mint, amount)],
                    None,
                    ch,
                )
            }
            Some(_) => return Ok(()),
        };
        let blockhash = self
            .submitter
            .rpc()
            .get_latest_blockhash()
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?;
        let mut all: Vec<&Keypair> = vec![self.key.as_ref()];
        all.extend(signers.iter());
        let tx = VersionedTransaction::from(Transaction::new_signed_with_payer(
            &instructions,
            Some(&self.key.pubkey()),
            &all,
            blockhash,
        ));
        // Recorded before it is sent: a crash from here on is applied (or dropped) by reconcile.
        self.ledger
            .record_funding(
                &id,
                &Funding {
                    record,
                    amount,
                    voucher: None,
                    price: 0,
                },
            )
            .map_err(ledger_err)?;
        let request = SolanaRequest::new(&tx, EntryKind::ChannelFunding, &id)?;
        match self.submitter.submit_as(&id, &request, false, false).await {
            Ok(_) => {
                self.ledger.apply_funding(&id).map_err(ledger_err)?;
                Ok(())
            }
            Err(e @ (SubmitError::FailedOnChain { .. } | SubmitError::Expired(_))) => {
                self.ledger.drop_funding(&id).map_err(ledger_err)?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies the fundings that landed and forgets those that failed or expired.
    async fn finish_fundings(&self) -> Result<(), RailError> {
        for (id, _) in self.ledger.fundings().map_err(ledger_err)? {
            match self.submitter.outbox().get(&id)?.map(|r| r.state) {
                Some(SettlementState::Confirmed) => {
                    self.ledger.apply_funding(&id).map_err(ledger_err)?;
                }
                Some(SettlementState::Failed { .. }) | None => {
                    self.ledger.drop_funding(&id).map_err(ledger_err)?
                }
                Some(_) => {
                    if let Err(e) = self.submitter.finish(&id).await {
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Charges the task's price to the channel with the gateway's next voucher, once per
    /// settlement: a retry finds the charge already there.
    async fn charge(&self, settlement_id: &str, price: u64) -> Result<(), RailError> {
        let _one = self.charging.lock().await;
        if self
            .ledger
            .charge_of(settlement_id)
            .map_err(ledger_err)?
            .is_some()
        {
            return Ok(());
        }
        let ch = self.channel()?.ok_or(RailError::ChannelHeadroom {
            headroom: Atomic::new(0),
            needed: Atomic::new(price.into()),
        })?;
        let cumulative = ch.charged.saturating_add(price);
        if cumulative > ch.deposit {
            return Err(RailError::AwaitingFunds {
                held: Atomic::new(ch.deposit.saturating_sub(ch.charged).into()),
                needed: Atomic::new(price.into()),
            });
        }
        let channel = Pubkey::from_str(&ch.channel)
            .map_err(|_| RailError::Chain(format!("ledger channel {}", ch.channel)))?;
        let v = voucher::sign(&self.key, &channel, cumulative);
        match self
            .ledger
            .charge(settlement_id, &ch.channel, &v, price)
            .map_err(ledger_err)?
        {
            Ok(_) | Err(ChargeRefusal::Replay) => Ok(()),
            Err(r) => Err(RailError::Chain(format!(
                "charging the gateway's channel: {r:?}"
            ))),
        }
    }
}

#[async_trait]
impl Rail for BaseX402SolanaChannel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> RailKind {
        RailKind::Channel
    }

    fn scheme(&self) -> &'static str {
        self.base.scheme()
    }

    fn network(&self) -> ChainId {
        self.base.network()
    }

    fn payout_network(&self) -> ChainId {
        self.solana.clone()
    }

    /// The same requirements for every task of a capability, like `exact` on Base: a stock
    /// client pays it.
    fn challenge_per_task(&self) -> bool {
        false
    }

    fn split_at_payment(
        &self,
        verified: &Verified,
        gateway_fee: GatewayFee,
    ) -> Result<Option<Split>, RailError> {
        split_of(verified, gateway_fee).map(Some)
    }

    fn accepts_wallet(&self, wallet: &str) -> bool {
        Pubkey::from_str(wallet).is_ok()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        check_split_terms(NAME, terms, &self.caps)?;
        let headroom = self.headroom()?;
        if u128::from(headroom) < terms.price.get() {
            return Err(RailError::ChannelHeadroom {
                headroom: Atomic::new(headroom.into()),
                needed: terms.price,
            });
        }
        // The payment itself is `exact` on Base, to the gateway's wallet.
        let mut requirements = self.base.challenge(&Terms {
            commission: None,
            ..terms.clone()
        })?;
        if let (Some(c), Some(serde_json::Value::Object(extra))) = (
            terms.commission.as_ref().filter(|c| c.bps > 0),
            requirements.extra.as_mut(),
        ) {
            extra.insert("creator".into(), json!(c.wallet));
            extra.insert("creatorBps".into(), json!(c.bps));
        }
        Ok(requirements)
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        let mut v = self.base.verify(payload, requirements).await?;
        v.rail = NAME.into();
        Ok(v)
    }

    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let mut s = self.base.settle(verified).await?;
        s.rail = NAME.into();
        Ok(s)
    }

    fn pays_out(&self) -> bool {
        true
    }

    /// Charges the task to the gateway's channel and allocates its split, each once.
    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        let fee_claimant = self.key.pubkey().to_string();
        let Some(parts) = claimant_parts(accepted, &fee_claimant)? else {
            return Ok(Delivery::Refused(format!(
                "no worker has a valid payout wallet on {}: the buyer is refunded",
                self.solana
            )));
        };
        let id = &accepted.verified.settlement_id;
        let price = u64::try_from(accepted.verified.amount.get())
            .map_err(|_| RailError::Refused("price above u64".into()))?;
        self.charge(id, price).await?;
        match self.ledger.allocate(id, &parts) {
            Ok(_) => Ok(Delivery::Kept),
            Err(e @ LedgerError::Allocation { .. }) => Ok(Delivery::Refused(e.to_string())),
            Err(e) => Err(ledger_err(e)),
        }
    }

    fn refunds(&self) -> bool {
        true
    }

    /// The whole price back on Base, out of the gateway's wallet (nothing was allocated).
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        self.base.refund_buyer(task).await
    }

    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        self.base.finalize(release).await
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        self.base.settlement_state(id)
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        self.base.settlements_in_flight()
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        let mut report = self.base.reconcile().await?;
        let solana = self.submitter.reconcile().await?;
        report.confirmed.extend(solana.confirmed);
        report.resent.extend(solana.resent);
        report.failed.extend(solana.failed);
        report.pending.extend(solana.pending);
        self.finish_fundings().await?;
        Ok(report)
    }

    /// Opens or tops up the channel when needed, then publishes the roots that are due.
    async fn maintain(&self) -> Result<(), RailError> {
        self.fund().await?;
        self.roots.publish_roots(false).await.map(|_| ())
    }

    /// Roots only: the gateway's channel is neither opened nor topped up under the incident
    /// switch.
    async fn maintain_under_incident(&self) -> Result<(), RailError> {
        self.roots.publish_roots(false).await.map(|_| ())
    }

    fn channel_book(&self) -> Result<Option<ChannelBook>, RailError> {
        let unpublished = self.roots.unpublished()?;
        Ok(Some(ChannelBook {
            channels: usize::from(self.channel()?.is_some()),
            unclaimed: Atomic::new(unpublished.iter().map(|u| u.amount.get()).sum()),
            withdrawals: Vec::new(),
            unpublished,
            headroom: Some(Atomic::new(self.headroom()?.into())),
        }))
    }
}
