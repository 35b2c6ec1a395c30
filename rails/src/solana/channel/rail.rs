//! `solana-channel` as the gateway sells it: the x402 scheme `d402-solana-channel`.
//!
//! - The 402 names the gateway's settlement key (the channel's authority, which is also the fee
//!   payer and the gateway fee's claimant, `payTo`), the maintainer, the grace period, the
//!   minimum deposit and the rent of a channel account, and, for a commission-bearing capability,
//!   the creator's wallet and share.
//! - The first payment carries the **opening**: a transaction the buyer (and the channel's fresh
//!   keypair) signed with the gateway as fee payer, which must be byte for byte the canonical
//!   opening ([`super::payer::open_instructions`]) for the parameters it states; the gateway
//!   co-signs, simulates, records the funding and sends it through the outbox. A later payment may
//!   carry a **top-up** the same way. Both are within the channel caps.
//! - Every payment carries the payer's cumulative **voucher**, checked here without a chain call
//!   (cumulative = charged + price, within the deposit) and committed to the [`Ledger`] before
//!   the paid response leaves. Out of step, the refusal carries the channel's state (a
//!   corrective 402).
//! - On delivery the task's split (the agreeing workers' net, the creator's commission, the
//!   gateway's fee) is allocated to its claimants, once per charge; a failed task's charge is
//!   given back. [`Rail::maintain`] signs a root over the allocations on an interval, keeps it,
//!   exports it for the maintainer and publishes it; claimants withdraw on their own or through the
//!   maintainer.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use solana_keypair::Keypair;
use solana_message::VersionedMessage;
use solana_message::v0;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;

use super::ledger::{ChannelRecord, ChargeRefusal, Funding, Ledger, LedgerError, Voucher};
use super::payer::{Opening, open_instructions, top_up, vault_of};
use super::publisher::RootPublisher;
use super::roots::ChannelChain;
use super::voucher;
use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::delivery::{Accepted, Delivery, shares};
use crate::error::{RailError, VerifyError};
use crate::outbox::{SettlementRecord, SettlementState};
use crate::payment::{ChannelBook, RailKind};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Rail, ReconcileReport, Settlement, Terms,
    Verified,
};
use crate::refund::{PaidTask, Refund};
use crate::solana::submit::{EntryKind, SolanaRequest, Submitter};
use crate::solana::wire;
use crate::split::{GatewayFee, Split, SplitTerms};

pub const NAME: &str = "solana-channel";
/// d402's own scheme: x402 has no Solana channel scheme.
pub const SCHEME: &str = "d402-solana-channel";
/// The folder under the gateway's state where signed roots are exported for the maintainer
/// (`<channel>/<seq>.json`, each a [`super::ledger::SignedRoot`]).
pub const ROOTS_DIR: &str = "solana-channel-roots";

/// What the gateway asks of its channels and how often it publishes roots.
#[derive(Debug, Clone)]
pub struct ChannelPolicy {
    /// The channel's maintainer (may publish and crank; holds no funds).
    pub maintainer: Pubkey,
    /// Seconds between a close request and the close.
    pub grace_secs: u64,
    /// The smallest opening deposit (the client deposits at least this, so that one opening
    /// pays for many requests and the gateway's rent for the channel is worth it).
    pub min_deposit: u64,
    /// A root is signed and published once the oldest unpublished allocation is this old.
    pub root_interval: Duration,
}

impl ChannelPolicy {
    pub fn new(maintainer: Pubkey) -> Self {
        ChannelPolicy {
            maintainer,
            grace_secs: 86_400,
            min_deposit: 1_000_000,
            root_interval: Duration::from_secs(30),
        }
    }
}

/// The payload of a `d402-solana-channel` payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPayload {
    pub channel: String,
    pub payer: String,
    pub voucher: Voucher,
    /// The opening transaction (first payment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<FundingTx>,
    /// A top-up transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up: Option<FundingTx>,
}

/// A funding transaction the buyer signed, with the gateway as fee payer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundingTx {
    /// base64 (bincode) of the partially signed transaction.
    pub transaction: String,
    pub amount: u64,
}

/// The gateway side of `solana-channel`.
pub struct SolanaChannel {
    network: ChainId,
    mint: Pubkey,
    /// The settlement key: the channels' authority, the fee payer, the fee's claimant.
    authority: Arc<Keypair>,
    submitter: Submitter,
    chain: ChannelChain,
    ledger: Ledger,
    caps: SafetyCaps,
    policy: ChannelPolicy,
    /// The cluster's rent for a channel account (the opening must state exactly this).
    channel_rent: u64,
    /// Signs, exports and publishes roots over the ledger's allocations.
    roots: RootPublisher,
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> RailError {
    VerifyError::Batch {
        reason,
        detail: detail.into(),
        corrective: None,
    }
    .into()
}

fn ledger_err(e: LedgerError) -> RailError {
    RailError::Chain(e.to_string())
}

fn pubkey(reason: &'static str, what: &str, text: &str) -> Result<Pubkey, RailError> {
    Pubkey::from_str(text).map_err(|_| refuse(reason, format!("{what} {text:?} is not a key")))
}

/// The channel's state as a corrective 402 and a payment response carry it.
pub fn channel_state_json(ch: &ChannelRecord) -> serde_json::Value {
    json!({
        "channel": ch.channel,
        "charged": ch.charged.to_string(),
        "deposit": ch.deposit.to_string(),
    })
}

impl SolanaChannel {
    /// A rail whose settlement key is `authority`, keeping its channels in `ledger` and exporting
    /// roots to `roots_dir`. `submitter` must write under [`NAME`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        network: ChainId,
        mint: Pubkey,
        authority: Arc<Keypair>,
        submitter: Submitter,
        ledger: Ledger,
        caps: SafetyCaps,
        policy: ChannelPolicy,
        channel_rent: u64,
        roots_dir: PathBuf,
    ) -> Self {
        let chain = ChannelChain::new(
            submitter.rpc_handle(),
            submitter.clone(),
            Arc::clone(&authority),
        );
        SolanaChannel {
            roots: RootPublisher::new(
                ledger.clone(),
                Arc::clone(&authority),
                chain.clone(),
                policy.root_interval,
                roots_dir,
            ),
            chain,
            network,
            mint,
            authority,
            submitter,
            ledger,
            caps,
            policy,
            channel_rent,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn chain(&self) -> &ChannelChain {
        &self.chain
    }

    /// Signs and publishes a root for every channel with unpublished allocations (`force`: now,
    /// whatever the interval). Returns how many were published.
    pub async fn publish_roots(&self, force: bool) -> Result<usize, RailError> {
        self.roots.publish_roots(force).await
    }

    /// The settlement id of a charge: one per (channel, cumulative amount), so a replayed
    /// voucher has the id of the charge it already paid.
    pub fn settlement_id(channel: &str, cumulative: u64) -> String {
        format!("{NAME}:{channel}:{cumulative}")
    }

    /// The requirements' `extra` for `terms` (what binds the channel, and the split).
    fn extra(&self, terms: &Terms) -> serde_json::Value {
        let mut extra = json!({
            "feePayer": self.authority.pubkey().to_string(),
            "authority": self.authority.pubkey().to_string(),
            "maintainer": self.policy.maintainer.to_string(),
            "program": d402_program::ID.to_string(),
            "graceSecs": self.policy.grace_secs,
            "minDeposit": self.policy.min_deposit.max(terms.price.get() as u64).to_string(),
            "channelRent": self.channel_rent.to_string(),
        });
        if let Some(c) = terms.commission.as_ref().filter(|c| c.bps > 0) {
            extra["creator"] = json!(c.wallet);
            extra["creatorBps"] = json!(c.bps);
        }
        extra
    }

    /// The accepted requirements are the ones issued (field by field: the client may not change
    /// the split or the channel's terms).
    fn check_accepted(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(), RailError> {
        let a = &payload.accepted;
        if a.scheme != SCHEME || requirements.scheme != SCHEME {
            return Err(VerifyError::Scheme {
                expected: SCHEME.into(),
                got: a.scheme.clone(),
            }
            .into());
        }
        if a.network != self.network || requirements.network != self.network {
            return Err(VerifyError::Network {
                expected: self.network.to_string(),
                got: a.network.to_string(),
            }
            .into());
        }
        if a.asset != requirements.asset
            || a.pay_to != requirements.pay_to
            || a.amount != requirements.amount
            || a.extra != requirements.extra
        {
            return Err(VerifyError::Requirements(
                "the accepted requirements differ from the issued ones".into(),
            )
            .into());
        }
        Ok(())
    }

    /// A funding transaction checked against its canonical form and co-signed: `expected` are
    /// the instructions it must hold, exactly, with this gateway as fee payer.
    fn cosign(
        &self,
        funding: &FundingTx,
        expected: &[solana_instruction::Instruction],
    ) -> Result<VersionedTransaction, RailError> {
        let bad = |d: String| refuse("invalid_solana_channel_funding_transaction", d);
        let mut tx = wire::decode_transaction(&funding.transaction).map_err(bad)?;
        let blockhash = *tx.message.recent_blockhash();
        let canonical =
            v0::Message::try_compile(&self.authority.pubkey(), expected, &[], blockhash)
                .map_err(|e| bad(e.to_string()))?;
        if tx.message != VersionedMessage::V0(canonical) {
            return Err(bad(
                "the transaction is not the canonical funding for the stated parameters (its \
                 instructions, accounts or fee payer differ)"
                    .into(),
            ));
        }
        let valid = tx.verify_with_results();
        if let Some(bad_at) = valid.iter().skip(1).position(|ok| !ok) {
            return Err(refuse(
                "invalid_solana_channel_funding_signature",
                format!("signature {} is missing or does not verify", bad_at + 1),
            ));
        }
        let message = tx.message.serialize();
        match tx.signatures.first_mut() {
            Some(s) => *s = self.authority.sign_message(&message),
            None => return Err(bad("no signatures".into())),
        }
        Ok(tx)
    }

    /// Checks a co-signed funding on chain without sending it: not sent before, and it would
    /// succeed (the payer's tokens, a fresh channel account, a live blockhash).
    async fn check_funding_online(&self, tx: &VersionedTransaction) -> Result<(), RailError> {
        let signature = wire::transaction_id(tx)
            .ok_or_else(|| refuse("invalid_solana_channel_funding_transaction", "unsigned"))?;
        let statuses = self
            .submitter
            .rpc()
            .get_signature_statuses_with_history(&[signature])
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?
            .value;
        if statuses.first().is_some_and(Option::is_some) {
            return Err(RailError::Replay(signature.to_string()));
        }
        if let Some(err) = crate::solana::simulate(self.submitter.rpc(), tx)
            .await
            .map_err(|e| RailError::Chain(e.to_string()))?
        {
            return Err(refuse(
                "invalid_solana_channel_funding_simulation_failed",
                err,
            ));
        }
        Ok(())
    }

    /// The fields a corrective 402 adds: the channel's state, and the payer's latest voucher,
    /// which lets the client check a charge it has no answer for against its own signature.
    fn corrective(ch: &ChannelRecord) -> Option<Box<serde_json::Value>> {
        let mut corrective = json!({ "channelState": channel_state_json(ch) });
        if let Some(v) = &ch.voucher {
            corrective["voucherState"] = json!({
                "cumulative": v.cumulative.to_string(),
                "signature": v.signature,
            });
        }
        Some(Box::new(corrective))
    }

    /// A refusal telling the client where the channel stands (the corrective 402).
    fn out_of_step(ch: &ChannelRecord, got: u64, price: u64) -> RailError {
        VerifyError::Batch {
            reason: "invalid_solana_channel_cumulative_mismatch",
            detail: format!(
                "the voucher's cumulative amount is {got}; charged so far {} + price {price} = {}",
                ch.charged,
                ch.charged.saturating_add(price)
            ),
            corrective: Self::corrective(ch),
        }
        .into()
    }

    fn above_deposit(ch: &ChannelRecord, cumulative: u64) -> RailError {
        VerifyError::Batch {
            reason: "invalid_solana_channel_insufficient_deposit",
            detail: format!(
                "the voucher's cumulative amount {cumulative} is above the channel's deposit {}: top it up",
                ch.deposit
            ),
            corrective: Self::corrective(ch),
        }
        .into()
    }

    /// The canonical opening of `channel` by `payer` depositing `amount` at this gateway (its
    /// authority, maintainer, grace, mint and rent), with the gateway as fee payer: what the
    /// buyer's transaction must be, byte for byte, and what is sent.
    fn opening_instructions(
        &self,
        payer: &Pubkey,
        channel: &Pubkey,
        amount: u64,
    ) -> Vec<solana_instruction::Instruction> {
        let opening = Opening {
            payer: *payer,
            channel: *channel,
            mint: self.mint,
            authority: self.authority.pubkey(),
            maintainer: self.policy.maintainer,
            deposit: amount,
            grace_secs: self.policy.grace_secs,
            channel_rent: self.channel_rent,
        };
        open_instructions(&opening, &self.authority.pubkey())
    }

    /// The channel record an opening creates.
    fn opening_record(&self, channel: &Pubkey, payer: &Pubkey) -> ChannelRecord {
        ChannelRecord {
            channel: channel.to_string(),
            payer: payer.to_string(),
            vault: vault_of(channel, &self.mint).to_string(),
            mint: self.mint.to_string(),
            deposit: 0,
            charged: 0,
            voucher: None,
            opened_ms: d402_core::clock::now_ms(),
        }
    }

    /// Commits a verified charge (after any funding was applied).
    fn commit_charge(
        &self,
        verified: &Verified,
        p: &ChannelPayload,
    ) -> Result<ChannelRecord, RailError> {
        let price = u64::try_from(verified.amount.get()).unwrap_or(u64::MAX);
        match self
            .ledger
            .charge(&verified.settlement_id, &p.channel, &p.voucher, price)
            .map_err(ledger_err)?
        {
            Ok(ch) => Ok(ch),
            Err(ChargeRefusal::Replay) => Err(RailError::Replay(verified.settlement_id.clone())),
            Err(ChargeRefusal::Mismatch { .. }) => {
                let ch = self.ledger.channel(&p.channel).map_err(ledger_err)?;
                Err(match ch {
                    Some(ch) => Self::out_of_step(&ch, p.voucher.cumulative, price),
                    None => refuse("invalid_solana_channel_unknown", "no such channel"),
                })
            }
            Err(ChargeRefusal::AboveDeposit {
                deposit,
                cumulative,
            }) => Err(refuse(
                "invalid_solana_channel_insufficient_deposit",
                format!("the cumulative amount {cumulative} is above the deposit {deposit}"),
            )),
            Err(ChargeRefusal::Unknown) => Err(refuse(
                "invalid_solana_channel_unknown",
                format!("channel {} is not open at this gateway", p.channel),
            )),
        }
    }

    fn settlement(
        &self,
        verified: &Verified,
        ch: &ChannelRecord,
        tx: Option<String>,
    ) -> Settlement {
        Settlement {
            rail: NAME.into(),
            network: self.network.to_string(),
            settlement_id: verified.settlement_id.clone(),
            tx_hashes: tx.into_iter().collect(),
            payer: Some(verified.payer.clone()),
            payouts: Vec::new(),
            fee_native: 0,
            extra: Some(json!({
                "chargedAmount": verified.amount.get().to_string(),
                "channelState": channel_state_json(ch),
            })),
        }
    }

    /// Applies a landed funding and commits the charge that came with it; both idempotent, so
    /// a restart finishes what a crash interrupted.
    fn finish_funding(&self, id: &str) -> Result<(), RailError> {
        if let Some(f) = self.ledger.apply_funding(id).map_err(ledger_err)?
            && let Some(voucher) = &f.voucher
        {
            // A charge already committed is a replay; one out of step (a later voucher raced
            // it) leaves the deposit and no charge, and the task is refunded as unpaid.
            let _ = self
                .ledger
                .charge(id, &f.record.channel, voucher, f.price)
                .map_err(ledger_err)?;
        }
        Ok(())
    }
}

/// An accepted task's split as claimants' shares: the agreeing workers' net (equal shares, the
/// first taking the remainder), the creator's commission at the wallet the requirements name, the
/// gateway's fee to `fee_claimant`. `None` when no worker has a Solana wallet.
pub(crate) fn claimant_parts(
    accepted: &Accepted<'_>,
    fee_claimant: &str,
) -> Result<Option<Vec<(String, u64)>>, RailError> {
    let split = match accepted.split {
        Some(s) => s,
        None => split_of(accepted.verified, GatewayFee::Bps(0))?,
    };
    let workers: Vec<String> = accepted
        .workers
        .iter()
        .filter(|w| Pubkey::from_str(w).is_ok())
        .cloned()
        .collect();
    if workers.is_empty() {
        return Ok(None);
    }
    let mut parts: Vec<(String, u64)> = shares(split.worker, &workers)
        .into_iter()
        .map(|p| (p.to, p.amount.get() as u64))
        .collect();
    let extra = accepted.requirements.extra.as_ref();
    if split.creator.get() > 0 {
        let creator = extra
            .and_then(|e| e.get("creator"))
            .and_then(|c| c.as_str())
            .ok_or_else(|| RailError::Refused("a commission without a creator".into()))?;
        parts.push((creator.to_string(), split.creator.get() as u64));
    }
    if split.gateway.get() > 0 {
        parts.push((fee_claimant.to_string(), split.gateway.get() as u64));
    }
    Ok(Some(parts))
}

/// What a rail paying a split to claimants on Solana checks before it issues requirements: the
/// creator's wallet is a Solana key, the price and commission are within the caps, the split
/// adds up.
pub(crate) fn check_split_terms(
    rail: &'static str,
    terms: &Terms,
    caps: &SafetyCaps,
) -> Result<(), RailError> {
    let creator_bps = terms.commission.as_ref().map_or(0, |c| c.bps);
    if let Some(c) = terms.commission.as_ref().filter(|c| c.bps > 0)
        && Pubkey::from_str(&c.wallet).is_err()
    {
        return Err(RailError::Address {
            rail,
            what: "creator wallet",
            value: c.wallet.clone(),
        });
    }
    caps.check(&Exposure {
        task_budget: terms.price,
        creator_bps,
        ..Exposure::default()
    })?;
    terms.split()?;
    Ok(())
}

/// The split of a verified payment: the creator's share from the requirements this gateway issued
/// (`extra.creatorBps`), the fee from the policy.
pub(crate) fn split_of(verified: &Verified, fee: GatewayFee) -> Result<Split, RailError> {
    let creator_bps = verified
        .requirements
        .extra
        .as_ref()
        .and_then(|e| e.get("creatorBps"))
        .and_then(|b| b.as_u64())
        .map_or(0, |b| b as u16);
    Ok(Split::compute(
        verified.amount,
        &SplitTerms {
            creator_bps,
            gateway_fee: fee,
        },
    )?)
}

#[async_trait]
impl Rail for SolanaChannel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> RailKind {
        RailKind::Channel
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn network(&self) -> ChainId {
        self.network.clone()
    }

    /// The same requirements for every task of a capability (the split is the capability's), so
    /// a channel's next payment needs no fresh 402.
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
        if u64::try_from(terms.price.get()).is_err() {
            return Err(RailError::Refused(format!(
                "price {} is above u64",
                terms.price
            )));
        }
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.network.clone(),
            amount: terms.price.to_string(),
            pay_to: self.authority.pubkey().to_string(),
            max_timeout_seconds: terms.max_timeout_seconds,
            asset: self.mint.to_string(),
            extra: Some(self.extra(terms)),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        self.check_accepted(payload, requirements)?;
        let price: Atomic = requirements.amount.parse().map_err(RailError::from)?;
        let price = u64::try_from(price.get())
            .map_err(|_| RailError::Refused(format!("price {price} is above u64")))?;
        let p: ChannelPayload = serde_json::from_value(payload.payload.clone())
            .map_err(|e| refuse("invalid_solana_channel_payload", e.to_string()))?;
        let channel = pubkey("invalid_solana_channel_payload", "channel", &p.channel)?;
        let payer = pubkey("invalid_solana_channel_payload", "payer", &p.payer)?;
        voucher::verify(&payer, &channel, &p.voucher)
            .map_err(|e| refuse("invalid_solana_channel_voucher_signature", e.to_string()))?;
        if p.open.is_some() && p.top_up.is_some() {
            return Err(refuse(
                "invalid_solana_channel_payload",
                "an opening and a top-up in one payment",
            ));
        }
        let known = self.ledger.channel(&p.channel).map_err(ledger_err)?;
        let ch = match (&known, &p.open) {
            (Some(ch), Some(_)) => {
                return Err(VerifyError::Batch {
                    reason: "invalid_solana_channel_already_open",
                    detail: format!("channel {channel} is already open"),
                    corrective: Self::corrective(ch),
                }
                .into());
            }
            (Some(ch), None) => ch.clone(),
            (None, Some(open)) => {
                if open.amount < self.policy.min_deposit.max(price) {
                    return Err(refuse(
                        "invalid_solana_channel_deposit_below_minimum",
                        format!(
                            "the opening deposits {}, the minimum is {}",
                            open.amount,
                            self.policy.min_deposit.max(price)
                        ),
                    ));
                }
                self.caps
                    .check(&Exposure {
                        channel_initial_funding: Some(Atomic::new(open.amount.into())),
                        channel_balance_after: Some(Atomic::new(open.amount.into())),
                        ..Exposure::default()
                    })
                    .map_err(|e| {
                        refuse("invalid_solana_channel_deposit_above_cap", e.to_string())
                    })?;
                let tx = self.cosign(
                    open,
                    &self.opening_instructions(&payer, &channel, open.amount),
                )?;
                self.check_funding_online(&tx).await?;
                ChannelRecord {
                    deposit: open.amount,
                    ..self.opening_record(&channel, &payer)
                }
            }
            (None, None) => {
                return Err(refuse(
                    "invalid_solana_channel_unknown",
                    format!("channel {channel} is not open at this gateway: open it first"),
                ));
            }
        };
        if ch.payer != p.payer {
            return Err(refuse(
                "invalid_solana_channel_payer_mismatch",
                format!("channel {channel} belongs to {}", ch.payer),
            ));
        }
        let mut deposit = ch.deposit;
        if let Some(t) = &p.top_up {
            let after = ch.deposit.saturating_add(t.amount);
            self.caps
                .check(&Exposure {
                    channel_balance_after: Some(Atomic::new(after.into())),
                    ..Exposure::default()
                })
                .map_err(|e| refuse("invalid_solana_channel_deposit_above_cap", e.to_string()))?;
            if t.amount == 0 {
                return Err(refuse("invalid_solana_channel_payload", "a top-up of zero"));
            }
            let tx = self.cosign(t, &[top_up(&payer, &channel, &self.mint, t.amount)])?;
            self.check_funding_online(&tx).await?;
            deposit = after;
        }
        if p.voucher.cumulative != ch.charged.saturating_add(price) {
            return Err(Self::out_of_step(&ch, p.voucher.cumulative, price));
        }
        if p.voucher.cumulative > deposit {
            return Err(Self::above_deposit(&ch, p.voucher.cumulative));
        }
        Ok(Verified {
            rail: NAME.into(),
            network: self.network.to_string(),
            payer: p.payer.clone(),
            amount: Atomic::new(price.into()),
            settlement_id: Self::settlement_id(&p.channel, p.voucher.cumulative),
            requirements: requirements.clone(),
            payload: payload.payload.clone(),
        })
    }

    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let p: ChannelPayload = serde_json::from_value(verified.payload.clone())
            .map_err(|e| refuse("invalid_solana_channel_payload", e.to_string()))?;
        let channel = pubkey("invalid_solana_channel_payload", "channel", &p.channel)?;
        let payer = pubkey("invalid_solana_channel_payload", "payer", &p.payer)?;
        if let Some((funding, expected, record, kind)) = match (&p.open, &p.top_up) {
            (Some(open), _) => Some((
                open,
                self.opening_instructions(&payer, &channel, open.amount),
                self.opening_record(&channel, &payer),
                "open",
            )),
            (None, Some(t)) => {
                let record = self
                    .ledger
                    .channel(&p.channel)
                    .map_err(ledger_err)?
                    .ok_or_else(|| refuse("invalid_solana_channel_unknown", "no such channel"))?;
                Some((
                    t,
                    vec![top_up(&payer, &channel, &self.mint, t.amount)],
                    record,
                    "top-up",
                ))
            }
            (None, None) => None,
        } {
            let tx = self.cosign(funding, &expected)?;
            let id = &verified.settlement_id;
            // Recorded before it is sent: a crash from here on is applied by `reconcile`.
            self.ledger
                .record_funding(
                    id,
                    &Funding {
                        record,
                        amount: funding.amount,
                        voucher: Some(p.voucher.clone()),
                        price: u64::try_from(verified.amount.get()).unwrap_or(u64::MAX),
                    },
                )
                .map_err(ledger_err)?;
            let request = SolanaRequest::new(
                &tx,
                EntryKind::ChannelFunding,
                &format!("{kind}:{}", p.channel),
            )?;
            let landed = match self.submitter.submit_as(id, &request, false, false).await {
                Ok(l) => l,
                Err(e) => {
                    // Failed or expired: it never lands, the channel gains nothing. Anything
                    // else stays in flight for `reconcile`.
                    if matches!(
                        e,
                        crate::solana::submit::SubmitError::FailedOnChain { .. }
                            | crate::solana::submit::SubmitError::Expired(_)
                    ) {
                        self.ledger.drop_funding(id).map_err(ledger_err)?;
                    }
                    return Err(e.into());
                }
            };
            self.finish_funding(id)?;
            let ch = self
                .ledger
                .channel(&p.channel)
                .map_err(ledger_err)?
                .ok_or_else(|| refuse("invalid_solana_channel_unknown", "no such channel"))?;
            if self.ledger.charge_of(id).map_err(ledger_err)?.is_none() {
                // The funding landed, the charge raced another voucher: out of step.
                let price = u64::try_from(verified.amount.get()).unwrap_or(u64::MAX);
                return Err(Self::out_of_step(&ch, p.voucher.cumulative, price));
            }
            return Ok(self.settlement(verified, &ch, Some(landed.signature.to_string())));
        }
        let ch = self.commit_charge(verified, &p)?;
        Ok(self.settlement(verified, &ch, None))
    }

    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        let Some(parts) = claimant_parts(accepted, &accepted.requirements.pay_to)? else {
            return Ok(Delivery::Refused(format!(
                "no worker has a valid payout wallet on {}: the buyer's charge is given back",
                self.network
            )));
        };
        match self
            .ledger
            .allocate(&accepted.verified.settlement_id, &parts)
        {
            Ok(_) => Ok(Delivery::Kept),
            Err(e @ LedgerError::Allocation { .. }) => Ok(Delivery::Refused(e.to_string())),
            Err(e) => Err(ledger_err(e)),
        }
    }

    fn refunds(&self) -> bool {
        true
    }

    /// The charge is given back: the channel's cumulative amount goes down by the price, and the
    /// response tells the client where the channel stands.
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        let reversed = self
            .ledger
            .reverse(&task.verified.settlement_id)
            .map_err(ledger_err)?;
        let ch = match reversed {
            Some(ch) => Some(ch),
            None => {
                let p: Option<ChannelPayload> =
                    serde_json::from_value(task.verified.payload.clone()).ok();
                match p {
                    Some(p) => self.ledger.channel(&p.channel).map_err(ledger_err)?,
                    None => None,
                }
            }
        };
        Ok(Refund::Refunded(Settlement {
            rail: NAME.into(),
            network: self.network.to_string(),
            settlement_id: task.verified.settlement_id.clone(),
            tx_hashes: Vec::new(),
            payer: Some(task.verified.payer.clone()),
            payouts: Vec::new(),
            fee_native: 0,
            extra: ch
                .map(|c| json!({ "chargedAmount": "0", "channelState": channel_state_json(&c) })),
        }))
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        if self.ledger.charge_of(id).map_err(ledger_err)?.is_some() {
            return Ok(Some(SettlementState::Confirmed));
        }
        match self.submitter.outbox().get(id)? {
            Some(r) if r.state == SettlementState::Confirmed => {
                self.finish_funding(id)?;
                Ok(Some(SettlementState::Confirmed))
            }
            Some(r) => Ok(Some(r.state)),
            None => Ok(None),
        }
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.submitter.outbox().all_in_flight()?)
    }

    /// Brings in-flight transactions to a verdict, then applies the fundings that landed (and
    /// forgets those that failed or expired).
    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        let report = self.submitter.reconcile().await?;
        for (id, _) in self.ledger.fundings().map_err(ledger_err)? {
            match self.submitter.outbox().get(&id)?.map(|r| r.state) {
                Some(SettlementState::Confirmed) => self.finish_funding(&id)?,
                Some(SettlementState::Failed { .. }) | None => {
                    self.ledger.drop_funding(&id).map_err(ledger_err)?
                }
                Some(_) => {}
            }
        }
        Ok(report)
    }

    async fn maintain(&self) -> Result<(), RailError> {
        self.roots.publish_roots(false).await.map(|_| ())
    }

    /// Allocated value not yet in a published root, per channel.
    fn channel_book(&self) -> Result<Option<ChannelBook>, RailError> {
        let unpublished = self.roots.unpublished()?;
        Ok(Some(ChannelBook {
            channels: self.ledger.channels().map_err(ledger_err)?.len(),
            unclaimed: Atomic::new(unpublished.iter().map(|u| u.amount.get()).sum()),
            withdrawals: Vec::new(),
            unpublished,
            headroom: None,
        }))
    }
}
