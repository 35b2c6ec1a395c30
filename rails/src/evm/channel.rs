//! `base-channel`: a buyer-funded `PaymentChannel`, paid per task with cumulative EIP-712
//! vouchers.
//!
//! A buyer opens a channel once (an EIP-3009 `receiveWithAuthorization` to the contract, see
//! [`BaseChannel::funding_challenge`] and [`BaseChannel::fund`]). For each task the challenge names
//! the payee triple (worker, creator, gateway) and the split; the buyer answers with a voucher for
//! that triple whose running totals grow by exactly the split. Verification is off chain and
//! takes microseconds: one signature recovery and a few comparisons against the channel's state
//! in memory. Accepted vouchers are kept (the latest per triple, persisted in the outbox
//! database); [`Rail::finalize`] with [`Release::PendingVouchers`] claims them all with one
//! `claimAndPay` per channel, which credits and pays every payee in that transaction. So a
//! thousand tasks cost one transaction, not a thousand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use alloy::primitives::{Address, B256, TxHash, U256, keccak256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use async_trait::async_trait;
use serde_json::json;
use x402_chain_eip155::v1_eip155_exact::types::ExactEvmPayload;

use super::buyer::{Authorization, AuthorizationKind, SignedVoucher};
use super::contracts::{PaymentChannel, TestUsd};
use super::direct::check_window;
use super::{EvmChain, chain_err, now_unix, parse_address, to_atomic, to_u256};
use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::error::{RailError, VerifyError};
use crate::outbox::{Outbox, OutboxError, SettlementRecord, SettlementState};
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Payout, Rail, RailKind, ReconcileReport, Release,
    Settlement, Terms, Verified,
};

pub const NAME: &str = "base-channel";
pub const SCHEME: &str = "d402-channel";
pub const FUNDING_SCHEME: &str = "d402-channel-funding";

type Triple = (Address, Address, Address);

/// What the rail knows of one channel.
#[derive(Debug, Default)]
struct ChannelView {
    buyer: Address,
    deposit: Atomic,
    closing: bool,
    /// Sum of the latest accepted totals over all triples: what the channel owes.
    owed: Atomic,
    latest: BTreeMap<Triple, SignedVoucher>,
    /// Totals already claimed on chain, per triple.
    claimed: HashMap<Triple, U256>,
}

fn total(v: &SignedVoucher) -> U256 {
    v.worker_total + v.creator_total + v.gateway_total
}

/// The `base-channel` rail.
pub struct BaseChannel {
    chain: EvmChain,
    provider: DynProvider,
    token: TestUsd::TestUsdInstance<DynProvider>,
    channel: PaymentChannel::PaymentChannelInstance<DynProvider>,
    gateway_wallet: Address,
    outbox: Outbox,
    caps: SafetyCaps,
    channels: Mutex<HashMap<B256, ChannelView>>,
}

impl BaseChannel {
    /// A rail on `chain` using the `PaymentChannel` at `contract`; claims are sent (and gas paid)
    /// by `sender`; gateway fees go to `gateway_wallet`.
    pub fn new(
        chain: EvmChain,
        contract: Address,
        sender: &PrivateKeySigner,
        gateway_wallet: Address,
        outbox: Outbox,
        caps: SafetyCaps,
    ) -> Self {
        let provider = chain.provider(sender);
        BaseChannel {
            token: TestUsd::new(chain.asset.address, provider.clone()),
            channel: PaymentChannel::new(contract, provider.clone()),
            chain,
            provider,
            gateway_wallet,
            outbox,
            caps,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Deploys a `PaymentChannel` for `token` with a close grace period of `close_grace` seconds.
    pub async fn deploy(
        provider: &DynProvider,
        token: Address,
        close_grace: u64,
    ) -> Result<Address, RailError> {
        let c = PaymentChannel::deploy(provider.clone(), token, close_grace)
            .await
            .map_err(chain_err)?;
        Ok(*c.address())
    }

    pub fn address(&self) -> Address {
        *self.channel.address()
    }

    fn voucher_key(&self, channel: &B256, t: &Triple) -> String {
        format!("{}:{}:{}:{}:{}", self.address(), channel, t.0, t.1, t.2).to_lowercase()
    }

    fn views(&self) -> std::sync::MutexGuard<'_, HashMap<B256, ChannelView>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads a channel from the chain into memory (once; later checks are off chain).
    async fn load(&self, id: B256) -> Result<(), RailError> {
        if self.views().contains_key(&id) {
            return Ok(());
        }
        let c = self.channel.channels(id).call().await.map_err(chain_err)?;
        if c.buyer == Address::ZERO {
            return Err(VerifyError::ChannelUnknown(id.to_string()).into());
        }
        let view = ChannelView {
            buyer: c.buyer,
            deposit: to_atomic(c.deposit)?,
            closing: c.closeRequestedAt != 0 || c.closed,
            owed: to_atomic(c.spent)?,
            ..ChannelView::default()
        };
        self.views().entry(id).or_insert(view);
        Ok(())
    }

    /// The challenge to open or top up `channel_id` with `amount`, after the channel caps: the
    /// initial funding cap for a new channel, the balance cap for the channel's unclaimed balance
    /// after the funding.
    pub async fn funding_challenge(
        &self,
        channel_id: B256,
        amount: Atomic,
        max_timeout_seconds: u64,
    ) -> Result<PaymentRequirements, RailError> {
        let c = self
            .channel
            .channels(channel_id)
            .call()
            .await
            .map_err(chain_err)?;
        let deposit = to_atomic(c.deposit)?;
        let unspent = deposit
            .checked_sub(to_atomic(c.spent)?)
            .unwrap_or(Atomic::ZERO);
        self.caps.check(&Exposure {
            channel_initial_funding: (c.buyer == Address::ZERO).then_some(amount),
            channel_balance_after: unspent.checked_add(amount),
            ..Exposure::default()
        })?;
        let nonce = funding_nonce(self.address(), channel_id, deposit, amount);
        Ok(PaymentRequirements {
            scheme: FUNDING_SCHEME.into(),
            network: self.chain.network(),
            amount: amount.to_string(),
            pay_to: self.address().to_checksum(None),
            max_timeout_seconds,
            asset: self.chain.asset.address.to_checksum(None),
            extra: Some(super::asset_extra(
                &self.chain.asset,
                json!({ "channelId": channel_id, "depositBefore": deposit, "nonce": nonce }),
            )),
        })
    }

    /// Submits a buyer's funding authorization (answering [`BaseChannel::funding_challenge`]).
    pub async fn fund(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Settlement, RailError> {
        let network = self.chain.network();
        super::check_accepted(payload, requirements, FUNDING_SCHEME, &network)?;
        let extra = requirements.extra.clone().unwrap_or_default();
        let field = |k: &str| {
            extra
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let channel_id: B256 = field("channelId")
            .parse()
            .map_err(|_| VerifyError::Requirements("`extra.channelId`".into()))?;
        let deposit_before: Atomic = serde_json::from_value(extra["depositBefore"].clone())
            .map_err(|_| VerifyError::Requirements("`extra.depositBefore`".into()))?;
        let amount: Atomic = requirements.amount.parse()?;
        let p: ExactEvmPayload = serde_json::from_value(payload.payload.clone())
            .map_err(|e| VerifyError::Payload(e.to_string()))?;
        let auth = Authorization::from_payload(&p);
        if auth.to != self.address() {
            return Err(VerifyError::Recipient {
                expected: self.address().to_string(),
                got: auth.to.to_string(),
            }
            .into());
        }
        if to_atomic(auth.value)? != amount {
            return Err(VerifyError::Value {
                expected: amount,
                got: to_atomic(auth.value)?,
            }
            .into());
        }
        if auth.nonce != funding_nonce(self.address(), channel_id, deposit_before, amount) {
            return Err(VerifyError::Nonce.into());
        }
        check_window(&auth, now_unix())?;
        let digest = auth.digest(
            AuthorizationKind::Receive,
            &self.chain.asset.name,
            &self.chain.asset.version,
            self.chain.chain_id,
            self.chain.asset.address,
        );
        if super::eip712::recover(&digest, &p.signature) != Some(auth.from) {
            return Err(VerifyError::Signature {
                expected: auth.from.to_string(),
            }
            .into());
        }
        let id = format!(
            "channel:{}:{}:fund:{}",
            self.address(),
            channel_id,
            deposit_before
        )
        .to_lowercase();
        self.intent(
            &id,
            json!({ "payload": payload.payload, "channelId": channel_id, "amount": amount }),
        )?;
        let pending = self
            .channel
            .fund(
                channel_id,
                auth.from,
                auth.value,
                U256::from(auth.valid_after),
                U256::from(auth.valid_before),
                p.signature.clone(),
            )
            .send()
            .await
            .map_err(chain_err)?;
        let tx = *pending.tx_hash();
        let fee = self.conclude(&id, tx).await?;
        // The next check reads the new deposit from the chain.
        self.views().remove(&channel_id);
        Ok(Settlement {
            rail: NAME.into(),
            network: network.to_string(),
            settlement_id: id,
            tx_hashes: vec![tx.to_string()],
            payer: Some(auth.from.to_string()),
            payouts: vec![Payout {
                to: self.address().to_string(),
                amount,
            }],
            fee_native: fee,
            extra: None,
        })
    }

    fn intent(&self, id: &str, request: serde_json::Value) -> Result<(), RailError> {
        match self.outbox.record_intent(id, NAME, request) {
            Ok(_) => Ok(()),
            Err(OutboxError::AlreadyRecorded { .. }) => Err(RailError::Replay(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn conclude(&self, id: &str, tx: TxHash) -> Result<u128, RailError> {
        super::conclude(&self.outbox, &self.provider, id, tx).await
    }

    fn expected_triple(
        requirements: &PaymentRequirements,
    ) -> Result<(Triple, [Atomic; 3]), VerifyError> {
        let extra = requirements
            .extra
            .as_ref()
            .ok_or_else(|| VerifyError::Requirements("`extra` is missing".into()))?;
        let addr = |k: &str| -> Result<Address, VerifyError> {
            extra
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| VerifyError::Requirements(format!("`extra.{k}`")))
        };
        let amount = |k: &str| -> Result<Atomic, VerifyError> {
            extra
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| VerifyError::Requirements(format!("`extra.{k}`")))
        };
        Ok((
            (addr("worker")?, addr("creator")?, addr("gateway")?),
            [
                amount("workerAmount")?,
                amount("creatorAmount")?,
                amount("gatewayAmount")?,
            ],
        ))
    }

    /// Checks `v` against the channel's state: the next voucher of its triple, adding exactly
    /// `split`, signed by the buyer, within the deposit.
    fn check_next(
        &self,
        view: &ChannelView,
        channel: &B256,
        v: &SignedVoucher,
        split: [Atomic; 3],
    ) -> Result<Atomic, VerifyError> {
        if view.closing {
            return Err(VerifyError::ChannelClosing(channel.to_string()));
        }
        let triple = (v.worker, v.creator, v.gateway);
        let zero = U256::ZERO;
        let (lw, lc, lg) = view.latest.get(&triple).map_or((zero, zero, zero), |l| {
            (l.worker_total, l.creator_total, l.gateway_total)
        });
        let last_total = lw + lc + lg;
        if total(v) <= last_total
            || v.worker_total < lw
            || v.creator_total < lc
            || v.gateway_total < lg
        {
            return Err(VerifyError::VoucherNotIncreasing {
                last: to_atomic(last_total)?,
                got: to_atomic(total(v))?,
            });
        }
        let delta = [
            v.worker_total - lw,
            v.creator_total - lc,
            v.gateway_total - lg,
        ];
        if delta != split.map(to_u256) {
            let got = to_atomic(delta[0] + delta[1] + delta[2])?;
            let expected = split
                .iter()
                .try_fold(Atomic::ZERO, |a, b| a.checked_add(*b))
                .unwrap_or(Atomic::ZERO);
            return Err(VerifyError::Value { expected, got });
        }
        let digest = super::eip712::digest(
            &v.message(),
            &super::eip712::channel_domain(self.chain.chain_id, self.address()),
        );
        if super::eip712::recover(&digest, &v.signature) != Some(view.buyer) {
            return Err(VerifyError::Signature {
                expected: view.buyer.to_string(),
            });
        }
        let added = to_atomic(total(v) - last_total)?;
        let owed = view
            .owed
            .checked_add(added)
            .unwrap_or(Atomic::new(u128::MAX));
        if owed > view.deposit {
            return Err(VerifyError::ChannelBalance {
                deposit: view.deposit,
                owed,
            });
        }
        Ok(added)
    }

    /// Vouchers accepted and not yet claimed, per channel.
    fn pending(&self) -> Vec<(B256, Vec<SignedVoucher>)> {
        self.views()
            .iter()
            .map(|(id, view)| {
                let vs: Vec<SignedVoucher> = view
                    .latest
                    .iter()
                    .filter(|(t, v)| view.claimed.get(*t).is_none_or(|c| total(v) > *c))
                    .map(|(_, v)| v.clone())
                    .collect();
                (*id, vs)
            })
            .filter(|(_, vs)| !vs.is_empty())
            .collect()
    }

    fn claim_id(&self, channel: &B256, vouchers: &[SignedVoucher]) -> String {
        let sigs: Vec<u8> = vouchers.iter().flat_map(|v| v.signature.to_vec()).collect();
        format!(
            "channel:{}:{}:claim:{}",
            self.address(),
            channel,
            keccak256(sigs)
        )
        .to_lowercase()
    }

    async fn send_claim(
        &self,
        channel: B256,
        vouchers: &[SignedVoucher],
    ) -> Result<TxHash, RailError> {
        let batch: Vec<PaymentChannel::Voucher> = vouchers
            .iter()
            .map(|v| PaymentChannel::Voucher {
                worker: v.worker,
                creator: v.creator,
                gateway: v.gateway,
                workerTotal: v.worker_total,
                creatorTotal: v.creator_total,
                gatewayTotal: v.gateway_total,
                signature: v.signature.clone(),
            })
            .collect();
        let pending = self
            .channel
            .claimAndPay(channel, batch)
            .send()
            .await
            .map_err(chain_err)?;
        Ok(*pending.tx_hash())
    }

    /// Whether every voucher's totals are already credited on chain.
    async fn claimed_on_chain(
        &self,
        channel: B256,
        vouchers: &[SignedVoucher],
    ) -> Result<bool, RailError> {
        for v in vouchers {
            let key = keccak256((v.worker, v.creator, v.gateway).abi_encode());
            let p = self
                .channel
                .paid(channel, key)
                .call()
                .await
                .map_err(chain_err)?;
            if p.worker < v.worker_total
                || p.creator < v.creator_total
                || p.gateway < v.gateway_total
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Loads the vouchers accepted before a restart.
    async fn restore(&self) -> Result<(), RailError> {
        let prefix = format!("{}:", self.address()).to_lowercase();
        for (_, value) in self.outbox.vouchers(&prefix)? {
            let v: SignedVoucher =
                serde_json::from_value(value).map_err(|e| RailError::Refused(e.to_string()))?;
            self.load(v.channel_id).await?;
            let key = keccak256((v.worker, v.creator, v.gateway).abi_encode());
            let p = self
                .channel
                .paid(v.channel_id, key)
                .call()
                .await
                .map_err(chain_err)?;
            let mut views = self.views();
            let triple = (v.worker, v.creator, v.gateway);
            if let Some(view) = views.get_mut(&v.channel_id)
                && !view.latest.contains_key(&triple)
            {
                let claimed = p.worker + p.creator + p.gateway;
                // The chain's `spent` already counts what was claimed; add what was not.
                let unclaimed = total(&v).saturating_sub(claimed);
                view.owed = view
                    .owed
                    .checked_add(to_atomic(unclaimed)?)
                    .unwrap_or(view.owed);
                view.claimed.insert(triple, claimed);
                view.latest.insert(triple, v);
            }
        }
        Ok(())
    }
}

/// `PaymentChannel.fundingNonce`.
pub fn funding_nonce(
    contract: Address,
    channel: B256,
    deposit_before: Atomic,
    amount: Atomic,
) -> B256 {
    keccak256((contract, channel, to_u256(deposit_before), to_u256(amount)).abi_encode())
}

#[async_trait]
impl Rail for BaseChannel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> RailKind {
        RailKind::Channel
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        Ok(self.outbox.get(id)?.map(|r| r.state))
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.outbox.all_in_flight()?)
    }

    fn network(&self) -> ChainId {
        self.chain.network()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        let split = terms.split()?;
        let creator_bps = terms.commission.as_ref().map_or(0, |c| c.bps);
        self.caps.check(&Exposure {
            task_budget: terms.price,
            creator_bps,
            ..Exposure::default()
        })?;
        let worker = parse_address(NAME, "payTo", &terms.pay_to)?;
        let creator = match &terms.commission {
            Some(c) if c.bps > 0 => parse_address(NAME, "creator wallet", &c.wallet)?,
            _ => Address::ZERO,
        };
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.chain.network(),
            amount: terms.price.to_string(),
            pay_to: self.address().to_checksum(None),
            max_timeout_seconds: terms.max_timeout_seconds,
            asset: self.chain.asset.address.to_checksum(None),
            extra: Some(super::asset_extra(
                &self.chain.asset,
                json!({
                    "taskId": terms.task_id,
                    "worker": worker,
                    "creator": creator,
                    "gateway": self.gateway_wallet,
                    "workerAmount": split.worker,
                    "creatorAmount": split.creator,
                    "gatewayAmount": split.gateway,
                }),
            )),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        let network = self.chain.network();
        super::check_accepted(payload, requirements, SCHEME, &network)?;
        if !super::same_address(&requirements.asset, &self.chain.asset.address.to_string()) {
            return Err(VerifyError::Asset {
                expected: self.chain.asset.address.to_string(),
                got: requirements.asset.clone(),
            }
            .into());
        }
        let v: SignedVoucher = serde_json::from_value(payload.payload.clone())
            .map_err(|e| VerifyError::Payload(e.to_string()))?;
        let (triple, split) = Self::expected_triple(requirements)?;
        if (v.worker, v.creator, v.gateway) != triple {
            return Err(VerifyError::Recipient {
                expected: format!("{triple:?}"),
                got: format!("{:?}", (v.worker, v.creator, v.gateway)),
            }
            .into());
        }
        self.load(v.channel_id).await?;
        let views = self.views();
        let view = views
            .get(&v.channel_id)
            .ok_or_else(|| VerifyError::ChannelUnknown(v.channel_id.to_string()))?;
        let added = self.check_next(view, &v.channel_id, &v, split)?;
        Ok(Verified {
            rail: NAME.into(),
            network: network.to_string(),
            payer: view.buyer.to_string(),
            amount: added,
            settlement_id: format!("{}:{}", self.voucher_key(&v.channel_id, &triple), total(&v)),
            requirements: requirements.clone(),
            payload: payload.payload.clone(),
        })
    }

    /// Accepts the voucher: it becomes the triple's latest, to be claimed by
    /// [`Rail::finalize`]. No transaction is sent.
    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let v: SignedVoucher = serde_json::from_value(verified.payload.clone())
            .map_err(|e| VerifyError::Payload(e.to_string()))?;
        let (triple, split) = Self::expected_triple(&verified.requirements)?;
        let key = self.voucher_key(&v.channel_id, &triple);
        {
            let mut views = self.views();
            let view = views
                .get_mut(&v.channel_id)
                .ok_or_else(|| VerifyError::ChannelUnknown(v.channel_id.to_string()))?;
            // Checked again under the lock: another task's voucher for the same triple may have
            // been accepted since this one was verified.
            let added = self.check_next(view, &v.channel_id, &v, split)?;
            view.owed = view.owed.checked_add(added).unwrap_or(view.owed);
            view.latest.insert(triple, v.clone());
        }
        self.outbox.save_voucher(
            &key,
            &serde_json::to_value(&v).map_err(|e| RailError::Refused(e.to_string()))?,
        )?;
        Ok(Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: verified.settlement_id.clone(),
            tx_hashes: vec![],
            payer: Some(verified.payer.clone()),
            payouts: vec![],
            fee_native: 0,
            extra: None,
        })
    }

    /// Claims every accepted voucher: one `claimAndPay` per channel with the latest voucher of
    /// each triple.
    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        if !matches!(release, Release::PendingVouchers) {
            return Err(RailError::Unsupported {
                rail: NAME,
                operation: "release a single task",
            });
        }
        let mut out = Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: "channel-claim".into(),
            tx_hashes: vec![],
            payer: None,
            payouts: vec![],
            fee_native: 0,
            extra: None,
        };
        for (channel, vouchers) in self.pending() {
            let id = self.claim_id(&channel, &vouchers);
            self.intent(&id, json!({ "channelId": channel, "vouchers": vouchers }))?;
            let tx = self.send_claim(channel, &vouchers).await?;
            let fee = self.conclude(&id, tx).await?;
            out.tx_hashes.push(tx.to_string());
            out.fee_native += fee;
            let mut views = self.views();
            if let Some(view) = views.get_mut(&channel) {
                for v in &vouchers {
                    let triple = (v.worker, v.creator, v.gateway);
                    view.claimed.insert(triple, total(v));
                }
            }
            for v in &vouchers {
                for (to, amount) in [
                    (v.worker, v.worker_total),
                    (v.creator, v.creator_total),
                    (v.gateway, v.gateway_total),
                ] {
                    if !amount.is_zero() {
                        out.payouts.push(Payout {
                            to: to.to_string(),
                            amount: to_atomic(amount)?,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        let mut report = ReconcileReport::default();
        for record in self.outbox.in_flight(NAME)? {
            if record.id.contains(":claim:") {
                let channel: B256 = serde_json::from_value(record.request["channelId"].clone())
                    .map_err(|e| RailError::Refused(e.to_string()))?;
                let vouchers: Vec<SignedVoucher> =
                    serde_json::from_value(record.request["vouchers"].clone())
                        .map_err(|e| RailError::Refused(e.to_string()))?;
                if self.claimed_on_chain(channel, &vouchers).await? {
                    self.outbox
                        .mark_confirmed(&record.id, record.tx_hash.as_deref())?;
                    report.confirmed.push(record.id);
                } else {
                    // Claims are idempotent on chain (stale vouchers are skipped): resending
                    // cannot pay twice.
                    let tx = self.send_claim(channel, &vouchers).await?;
                    self.conclude(&record.id, tx).await?;
                    report.resent.push(record.id);
                }
            } else {
                // A funding: done if the deposit grew past the recorded starting point.
                let channel: B256 = serde_json::from_value(record.request["channelId"].clone())
                    .map_err(|e| RailError::Refused(e.to_string()))?;
                let p: ExactEvmPayload = serde_json::from_value(record.request["payload"].clone())
                    .map_err(|e| RailError::Refused(e.to_string()))?;
                let used = self
                    .token
                    .authorizationState(p.authorization.from, p.authorization.nonce)
                    .call()
                    .await
                    .map_err(chain_err)?;
                if used {
                    self.outbox
                        .mark_confirmed(&record.id, record.tx_hash.as_deref())?;
                    report.confirmed.push(record.id);
                } else {
                    self.outbox.mark_failed(
                        &record.id,
                        "funding not executed; the buyer must sign again",
                    )?;
                    report.failed.push(record.id);
                }
                self.views().remove(&channel);
            }
        }
        self.restore().await?;
        Ok(report)
    }
}
