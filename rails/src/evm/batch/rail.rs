//! `base-batch-settlement`: the x402 `batch-settlement` scheme sold by the gateway, in the
//! spec's server and facilitator roles at once.
//!
//! - The 402 names the gateway's wallet as receiver and its settlement key as receiver
//!   authorizer, the withdraw delay and a minimum deposit.
//! - A `deposit` payload is checked (the ERC-3009 signature locally, the payer's balance and the
//!   deposit by simulation) and submitted once, through the outbox.
//! - A `voucher` payload is checked locally: the channel binding, the payer's EIP-712 signature,
//!   and the cumulative ceiling = charged + price within the balance. No chain call.
//! - [`Rail::settle`] commits the charge to the [`Ledger`] before the paid response leaves.
//! - [`Rail::maintain`] claims (many channels per transaction, on a window, a value threshold,
//!   or at once for a channel whose payer started a withdrawal) and sweeps to the wallet.
//! - Workers are paid their net out of the wallet in the gateway's payout batches, exactly as on
//!   `base-x402-direct` (whose payout engine this rail uses); a failed task's charge is reversed.
//!
//! A direct rail in the gateway's terms: one payee, so commission-bearing capabilities are
//! refused (they go through split settlement).

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use serde_json::json;

use super::config::{ChannelConfig, channel_id, deposit_nonce, voucher_digest};
use super::ledger::{Channel, ChargeRefusal, Ledger, LedgerError};
use super::payload::BatchPayload;
use super::{ERC3009_COLLECTOR_ADDRESS, MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY, SCHEME};
use crate::amount::Atomic;
use crate::caps::{Exposure, SafetyCaps};
use crate::delivery::{Accepted, Delivery, direct_lifecycle, owe_workers};
use crate::error::{RailError, VerifyError};
use crate::evm::buyer::{Authorization, AuthorizationKind};
use crate::evm::contracts::{BatchSettlement, TestUsd};
use crate::evm::direct::BaseDirect;
use crate::evm::eip712;
use crate::evm::{EvmChain, SETTLE_MARGIN_SECS, chain_err, now_unix, parse_address};
use crate::outbox::{Outbox, OutboxError, SettlementRecord, SettlementState};
use crate::payment::ChannelBook;
use crate::rail::{
    ChainId, PaymentPayload, PaymentRequirements, Rail, ReconcileReport, Release, Settlement,
    Terms, Verified,
};
use crate::refund::{PaidTask, Refund};

pub const NAME: &str = "base-batch-settlement";

/// When the gateway claims, and what it asks of deposits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// The payer's escape-hatch delay the gateway's channels carry (15 minutes to 30 days).
    pub withdraw_delay: u64,
    /// The deposit target the 402 announces (`extra.minDeposit`); the client deposits at least
    /// this, so that one deposit pays for many requests.
    pub min_deposit: Atomic,
    /// Claim once the oldest unclaimed charge is this old.
    pub claim_window: Duration,
    /// Claim once this much is unclaimed over all channels.
    pub claim_threshold: Atomic,
    /// At most this many channels per claim transaction.
    pub claim_batch: usize,
    /// Claim a channel whose payer started a withdrawal when this little of the delay is left
    /// (at once by default: the payer could finalize the moment the delay ends).
    pub withdrawal_margin: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            withdraw_delay: 86_400,
            min_deposit: Atomic::new(1_000_000),
            claim_window: Duration::from_secs(60),
            claim_threshold: Atomic::new(10_000_000),
            claim_batch: 100,
            withdrawal_margin: Duration::from_secs(MAX_WITHDRAW_DELAY),
        }
    }
}

/// The `base-batch-settlement` rail.
pub struct BaseBatch {
    pub(super) chain: EvmChain,
    /// The receiver authorizer: submits deposits, claims and refunds, and (being the `payTo`
    /// wallet too) pays workers out of what was swept.
    pub(super) key: PrivateKeySigner,
    pub(super) provider: DynProvider,
    pub(super) settlement: BatchSettlement::BatchSettlementInstance<DynProvider>,
    pub(super) token: TestUsd::TestUsdInstance<DynProvider>,
    pub(super) outbox: Outbox,
    pub(super) ledger: Ledger,
    pub(super) caps: SafetyCaps,
    pub(super) policy: BatchPolicy,
    /// The payout engine (worker nets, refunds owed in money). It sends from the same key, so
    /// every transaction of this rail goes through its send lock ([`BaseDirect::sending`]).
    pub(super) payouts: BaseDirect,
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> RailError {
    VerifyError::Batch {
        reason,
        detail: detail.into(),
        corrective: None,
    }
    .into()
}

pub(super) fn ledger_err(e: LedgerError) -> RailError {
    RailError::Chain(e.to_string())
}

impl BaseBatch {
    /// A rail on `chain` whose receiver and receiver authorizer is `key`, keeping its channels in
    /// `ledger`. The settlement contracts must be at their canonical addresses.
    pub fn new(
        chain: EvmChain,
        key: &PrivateKeySigner,
        outbox: Outbox,
        ledger: Ledger,
        caps: SafetyCaps,
        policy: BatchPolicy,
    ) -> Self {
        let provider = chain.serial_provider(key);
        BaseBatch {
            settlement: BatchSettlement::new(super::SETTLEMENT_ADDRESS, provider.clone()),
            token: TestUsd::new(chain.asset.address, provider.clone()),
            payouts: BaseDirect::new(chain.clone(), key, outbox.clone(), caps.clone()),
            chain,
            key: key.clone(),
            provider,
            outbox,
            ledger,
            caps,
            policy,
        }
    }

    fn chain_id(&self) -> u64 {
        self.chain.chain_id
    }

    /// Hands a transaction of the settlement key to the chain, one at a time with the payouts
    /// sent from the same key (the provider reads the pending nonce per transaction).
    pub(super) async fn send<C: alloy::sol_types::SolCall + Send + Sync>(
        &self,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<alloy::primitives::TxHash, RailError> {
        let _one = self.payouts.sending().lock().await;
        Ok(*call.send().await.map_err(chain_err)?.tx_hash())
    }

    /// [`Self::send`], then waits for the receipt; returns the transaction and its fee. A revert,
    /// or no receipt in time, is an error naming `what`.
    pub(super) async fn transact<C: alloy::sol_types::SolCall + Send + Sync>(
        &self,
        what: &str,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<(alloy::primitives::TxHash, u128), RailError> {
        let tx = self.send(call).await?;
        match crate::evm::wait_receipt(&self.provider, tx).await? {
            Some(r) if r.status() => Ok((tx, crate::evm::receipt_fee(&r))),
            Some(_) => Err(RailError::Reverted {
                tx: tx.to_string(),
                reason: format!("{what} reverted"),
            }),
            None => Err(RailError::Chain(format!("no receipt for {what} {tx} yet"))),
        }
    }

    /// A channel's `(balance, totalClaimed)` as the settlement contract has them.
    /// Workers are paid out of swept vouchers: a payout batch waits (a typed
    /// [`RailError::AwaitingFunds`], which the payer retries quietly) until the claim loop has
    /// swept enough, rather than claiming for every batch (which would undo the batching of
    /// claims) or sending a transfer that reverts. A batch partly paid already needs less than its
    /// total, so the check can only wait longer, never pay twice.
    async fn fund_payouts(&self, release: &Release) -> Result<(), RailError> {
        let (_, _, payouts) = release.payouts(NAME)?;
        let needed = payouts
            .iter()
            .try_fold(0u128, |sum, p| sum.checked_add(p.amount.get()))
            .ok_or_else(|| RailError::Refused("payout batch total overflows".into()))?;
        let held = self
            .token
            .balanceOf(self.key.address())
            .call()
            .await
            .map_err(chain_err)?;
        if held >= U256::from(needed) {
            return Ok(());
        }
        Err(RailError::AwaitingFunds {
            held: Atomic::new(u128::try_from(held).unwrap_or(u128::MAX)),
            needed: Atomic::new(needed),
        })
    }

    pub(super) async fn on_chain(&self, id: B256) -> Result<(u128, u128), RailError> {
        let c = self
            .settlement
            .channels(id)
            .call()
            .await
            .map_err(chain_err)?;
        Ok((c.balance, c.totalClaimed))
    }

    /// The settlement id of a charge: one per (channel, cumulative ceiling), so a replayed
    /// voucher has the id of the charge it already paid.
    fn settlement_id(voucher: &super::SignedVoucher) -> String {
        format!(
            "batch:{}:{}",
            voucher.channel_id, voucher.max_claimable_amount
        )
    }

    /// The channel as the ledger knows it, or as the chain has it (adopted into the ledger:
    /// the scheme's baseline after state loss is charged = claimed on chain).
    async fn known_channel(&self, id: B256, config: &ChannelConfig) -> Result<Channel, RailError> {
        if let Some(ch) = self.ledger.channel(&id).map_err(ledger_err)? {
            return Ok(ch);
        }
        let (balance, claimed) = self.on_chain(id).await?;
        Ok(Channel::new(
            id,
            *config,
            Atomic::new(balance),
            Atomic::new(claimed),
        ))
    }

    /// The checks every payload type shares: it answers our requirements, its config is ours
    /// and hashes to its channel id, and the payer signed the voucher.
    fn check_binding(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(BatchPayload, B256), RailError> {
        // `accepted.extra` may carry a corrective 402's channel state: compare what binds.
        let mut accepted = payload.clone();
        if let (Some(a), Some(r)) = (&accepted.accepted.extra, &requirements.extra) {
            let binding = ["receiverAuthorizer", "withdrawDelay", "name", "version"];
            if binding.iter().all(|k| a.get(k) == r.get(k)) {
                accepted.accepted.extra = requirements.extra.clone();
            }
        }
        crate::evm::check_accepted(&accepted, requirements, SCHEME, &self.chain.network())?;
        let p: BatchPayload = serde_json::from_value(payload.payload.clone()).map_err(|e| {
            refuse(
                "invalid_batch_settlement_evm_voucher_payload",
                e.to_string(),
            )
        })?;
        let c = p.config();
        let receiver = parse_address(NAME, "payTo", &requirements.pay_to)?;
        if c.receiver != receiver {
            return Err(refuse(
                "invalid_batch_settlement_evm_receiver_mismatch",
                format!("the channel pays {}, not {receiver}", c.receiver),
            ));
        }
        if c.receiver_authorizer != self.key.address() {
            return Err(refuse(
                "invalid_batch_settlement_evm_receiver_authorizer_mismatch",
                format!(
                    "the channel's receiver authorizer is {}",
                    c.receiver_authorizer
                ),
            ));
        }
        if c.token != self.chain.asset.address {
            return Err(refuse(
                "invalid_batch_settlement_evm_token_mismatch",
                format!("the channel's token is {}", c.token),
            ));
        }
        if c.withdraw_delay != self.policy.withdraw_delay {
            return Err(refuse(
                "invalid_batch_settlement_evm_withdraw_delay_mismatch",
                format!(
                    "the channel's withdraw delay is {} s, this gateway's {} s",
                    c.withdraw_delay, self.policy.withdraw_delay
                ),
            ));
        }
        let id = channel_id(c, self.chain_id()).ok_or_else(|| {
            refuse(
                "invalid_batch_settlement_evm_withdraw_delay_out_of_range",
                "delay too large",
            )
        })?;
        let v = p.voucher();
        if v.channel_id != id {
            return Err(refuse(
                "invalid_batch_settlement_evm_channel_id_mismatch",
                format!(
                    "the config hashes to {id}, the voucher names {}",
                    v.channel_id
                ),
            ));
        }
        let digest = voucher_digest(id, v.max_claimable_amount.get(), self.chain_id());
        if eip712::recover(&digest, &v.signature) != Some(c.voucher_signer()) {
            return Err(refuse(
                "invalid_batch_settlement_evm_voucher_signature",
                format!("the voucher is not signed by {}", c.voucher_signer()),
            ));
        }
        Ok((p, id))
    }

    /// A corrective 402's refusal: the client's cumulative amount is out of step with ours.
    fn mismatch(ch: &Channel, got: Atomic, price: Atomic) -> RailError {
        let voucher_state = ch.voucher.as_ref().map(|v| {
            json!({
                "signedMaxClaimable": v.max_claimable_amount.get().to_string(),
                "signature": v.signature.to_string(),
            })
        });
        let mut corrective = json!({ "channelState": ch.state_json() });
        if let Some(vs) = voucher_state {
            corrective["voucherState"] = vs;
        }
        VerifyError::Batch {
            reason: "invalid_batch_settlement_evm_cumulative_amount_mismatch",
            detail: format!(
                "the voucher's ceiling is {got}; charged so far {} + price {price} = {}",
                ch.charged,
                ch.charged.get().saturating_add(price.get())
            ),
            corrective: Some(Box::new(corrective)),
        }
        .into()
    }

    /// The cumulative checks of a voucher against the channel (before the atomic re-check in
    /// [`Ledger::charge`]).
    fn check_ceiling(
        ch: &Channel,
        ceiling: Atomic,
        price: Atomic,
        deposit: Atomic,
    ) -> Result<(), RailError> {
        if ceiling.get() <= ch.total_claimed.get() {
            return Err(refuse(
                "invalid_batch_settlement_evm_cumulative_below_claimed",
                format!(
                    "the ceiling {ceiling} is not above what was claimed ({})",
                    ch.total_claimed
                ),
            ));
        }
        if ceiling.get() != ch.charged.get().saturating_add(price.get()) {
            return Err(Self::mismatch(ch, ceiling, price));
        }
        let balance = ch.balance.get().saturating_add(deposit.get());
        if ceiling.get() > balance {
            return Err(refuse(
                "invalid_batch_settlement_evm_cumulative_exceeds_balance",
                format!("the ceiling {ceiling} is above the channel's balance {balance}"),
            ));
        }
        Ok(())
    }

    /// A deposit's own checks: the caps, the authorization's window and signature, and a
    /// simulation of the deposit (the payer's funds, an unused authorization).
    async fn check_deposit(
        &self,
        id: B256,
        ch: &Channel,
        config: &ChannelConfig,
        deposit: &super::DepositPayload,
    ) -> Result<(), RailError> {
        let amount = deposit.amount;
        if amount.get() == 0 {
            return Err(refuse(
                "invalid_batch_settlement_evm_deposit_payload",
                "a deposit of zero",
            ));
        }
        let first = ch.balance.get() == 0;
        let after = Atomic::new(ch.balance.get().saturating_add(amount.get()));
        self.caps
            .check(&Exposure {
                channel_initial_funding: first.then_some(amount),
                channel_balance_after: Some(after),
                ..Exposure::default()
            })
            .map_err(|e| {
                refuse(
                    "invalid_batch_settlement_evm_deposit_above_cap",
                    e.to_string(),
                )
            })?;
        let auth = &deposit.authorization.erc3009_authorization;
        let now = now_unix();
        let valid_before = u64::try_from(auth.valid_before.get()).unwrap_or(u64::MAX);
        if valid_before < now + SETTLE_MARGIN_SECS {
            return Err(refuse(
                "invalid_batch_settlement_evm_payload_authorization_valid_before",
                format!("the deposit authorization expires at {valid_before}"),
            ));
        }
        if auth.valid_after.get() > u128::from(now) {
            return Err(refuse(
                "invalid_batch_settlement_evm_payload_authorization_valid_after",
                "the deposit authorization is not valid yet",
            ));
        }
        let erc3009 = Authorization {
            from: config.payer,
            to: ERC3009_COLLECTOR_ADDRESS,
            value: U256::from(amount.get()),
            valid_after: u64::try_from(auth.valid_after.get()).unwrap_or(u64::MAX),
            valid_before,
            nonce: deposit_nonce(id, auth.salt),
        };
        let digest = erc3009.digest(
            AuthorizationKind::Receive,
            &self.chain.asset.name,
            &self.chain.asset.version,
            self.chain_id(),
            self.chain.asset.address,
        );
        if eip712::recover(&digest, &auth.signature) != Some(config.payer) {
            return Err(refuse(
                "invalid_batch_settlement_evm_receive_authorization_signature",
                "the deposit authorization is not signed by the payer",
            ));
        }
        let cfg = config.to_contract().ok_or_else(|| {
            refuse(
                "invalid_batch_settlement_evm_withdraw_delay_out_of_range",
                "delay too large",
            )
        })?;
        if let Err(e) = self
            .settlement
            .deposit(
                cfg,
                amount.get(),
                ERC3009_COLLECTOR_ADDRESS,
                auth.collector_data(),
            )
            .from(self.key.address())
            .call()
            .await
        {
            let balance = self
                .token
                .balanceOf(config.payer)
                .call()
                .await
                .map_err(chain_err)?;
            if balance < U256::from(amount.get()) {
                return Err(refuse(
                    "invalid_batch_settlement_evm_insufficient_balance",
                    format!("the payer holds {balance}, the deposit is {amount}"),
                ));
            }
            return Err(refuse(
                "invalid_batch_settlement_evm_deposit_simulation_failed",
                e.to_string(),
            ));
        }
        Ok(())
    }

    /// Sends a deposit and records the outcome in the outbox; returns its transaction and fee.
    async fn submit_deposit(
        &self,
        id: &str,
        config: &ChannelConfig,
        deposit: &super::DepositPayload,
    ) -> Result<(String, u128), RailError> {
        let cfg = config
            .to_contract()
            .ok_or_else(|| RailError::Refused("withdraw delay out of range".into()))?;
        let tx = self
            .send(self.settlement.deposit(
                cfg,
                deposit.amount.get(),
                ERC3009_COLLECTOR_ADDRESS,
                deposit.authorization.erc3009_authorization.collector_data(),
            ))
            .await?;
        let fee = crate::evm::conclude(&self.outbox, &self.provider, id, tx).await?;
        Ok((tx.to_string(), fee))
    }

    /// Commits a verified payment's charge; `deposited` is what a confirmed deposit added.
    fn commit_charge(
        &self,
        verified: &Verified,
        p: &BatchPayload,
        deposited: Atomic,
    ) -> Result<Channel, RailError> {
        let v = p.voucher();
        let id = Self::settlement_id(v);
        let price = verified.amount;
        match self
            .ledger
            .charge(&id, v, price, deposited)
            .map_err(ledger_err)?
        {
            Ok(ch) => Ok(ch),
            Err(ChargeRefusal::Replay) => Err(RailError::Replay(id)),
            Err(ChargeRefusal::Mismatch(ch)) => {
                Err(Self::mismatch(&ch, v.max_claimable_amount, price))
            }
            Err(ChargeRefusal::AboveBalance { balance, ceiling }) => Err(refuse(
                "invalid_batch_settlement_evm_cumulative_exceeds_balance",
                format!("the ceiling {ceiling} is above the channel's balance {balance}"),
            )),
            Err(ChargeRefusal::Unknown) => Err(refuse(
                "invalid_batch_settlement_evm_channel_not_found",
                "no channel with a balance",
            )),
        }
    }

    fn settlement(
        &self,
        verified: &Verified,
        ch: &Channel,
        tx: Option<String>,
        fee: u128,
    ) -> Settlement {
        Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: verified.settlement_id.clone(),
            tx_hashes: tx.into_iter().collect(),
            payer: Some(verified.payer.clone()),
            payouts: Vec::new(),
            fee_native: fee,
            extra: Some(json!({
                "chargedAmount": verified.amount.get().to_string(),
                "channelState": ch.state_json(),
            })),
        }
    }

    /// Finishes a deposit whose transaction is confirmed but whose charge was never committed
    /// (a crash in between).
    fn finish_deposit(&self, record: &SettlementRecord) -> Result<(), RailError> {
        let verified: Verified = serde_json::from_value(record.request["verified"].clone())
            .map_err(|e| RailError::Refused(format!("outbox entry {}: {e}", record.id)))?;
        let p: BatchPayload = serde_json::from_value(verified.payload.clone())
            .map_err(|e| RailError::Refused(format!("outbox entry {}: {e}", record.id)))?;
        if let BatchPayload::Deposit { deposit, .. } = &p {
            match self.commit_charge(&verified, &p, deposit.amount) {
                Ok(_) | Err(RailError::Replay(_)) => {}
                // Out of step after all (a charge raced it): keep the deposit, drop the charge.
                Err(RailError::Verify(_)) => {
                    let _ = self.ledger.update(&p.voucher().channel_id, |c| {
                        c.balance =
                            Atomic::new(c.balance.get().saturating_add(deposit.amount.get()))
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Rail for BaseBatch {
    fn name(&self) -> &'static str {
        NAME
    }

    // Sold like a direct rail (one payee, the same requirements for every task), described
    // as the channel it is.
    direct_lifecycle!(Channel);

    fn pays_out(&self) -> bool {
        true
    }

    fn accepts_wallet(&self, wallet: &str) -> bool {
        wallet.parse::<Address>().is_ok()
    }

    async fn deliver(&self, accepted: &Accepted<'_>) -> Result<Delivery, RailError> {
        Ok(owe_workers(
            &self.network(),
            |w| self.accepts_wallet(w),
            accepted,
        ))
    }

    /// The charge is given back: the channel's cumulative amount goes down by the price, and
    /// the response tells the client it was charged nothing. A charge already claimed on chain
    /// (the task failed after a claim) is paid back out of the wallet instead, like a direct
    /// rail's refund.
    async fn refund_buyer(&self, task: &PaidTask<'_>) -> Result<Refund, RailError> {
        let reversed = self
            .ledger
            .reverse(&task.verified.settlement_id)
            .map_err(ledger_err)?;
        let (extra, owed) = match reversed {
            Some((c, owed)) => (
                Some(json!({ "chargedAmount": "0", "channelState": c.state_json() })),
                owed,
            ),
            None => (None, Atomic::new(0)),
        };
        let mut settlement = Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: task.verified.settlement_id.clone(),
            tx_hashes: Vec::new(),
            payer: Some(task.verified.payer.clone()),
            payouts: Vec::new(),
            fee_native: 0,
            extra,
        };
        if owed.get() > 0 {
            let back = Release::Payouts {
                task_id: task.task_id(),
                from: task.requirements.pay_to.clone(),
                payouts: vec![crate::rail::Payout {
                    to: task.verified.payer.clone(),
                    amount: owed,
                }],
            };
            let paid = self.payouts.finalize(&back).await?;
            settlement.tx_hashes = paid.tx_hashes;
            settlement.payouts = paid.payouts;
            settlement.fee_native = paid.fee_native;
        }
        Ok(Refund::Refunded(settlement))
    }

    fn network(&self) -> ChainId {
        self.chain.network()
    }

    fn challenge(&self, terms: &Terms) -> Result<PaymentRequirements, RailError> {
        terms.check_direct(NAME, &self.caps)?;
        let pay_to = parse_address(NAME, "payTo", &terms.pay_to)?;
        let min_deposit = self.policy.min_deposit.max(terms.price);
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.chain.network(),
            amount: terms.price.to_string(),
            pay_to: pay_to.to_checksum(None),
            max_timeout_seconds: terms.max_timeout_seconds,
            asset: self.chain.asset.address.to_checksum(None),
            extra: Some(crate::evm::asset_extra(
                &self.chain.asset,
                json!({
                    "receiverAuthorizer": self.key.address().to_checksum(None),
                    "withdrawDelay": self.policy.withdraw_delay,
                    "minDeposit": min_deposit.to_string(),
                }),
            )),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Verified, RailError> {
        let price: Atomic = requirements.amount.parse().map_err(RailError::from)?;
        let (p, id) = self.check_binding(payload, requirements)?;
        let config = *p.config();
        let ch = self.known_channel(id, &config).await?;
        match &p {
            BatchPayload::Voucher { voucher, .. } => {
                if ch.balance.get() == 0 {
                    return Err(refuse(
                        "invalid_batch_settlement_evm_channel_not_found",
                        format!("channel {id} has no balance: deposit first"),
                    ));
                }
                Self::check_ceiling(&ch, voucher.max_claimable_amount, price, Atomic::new(0))?;
            }
            BatchPayload::Deposit {
                voucher, deposit, ..
            } => {
                Self::check_ceiling(&ch, voucher.max_claimable_amount, price, deposit.amount)?;
                self.check_deposit(id, &ch, &config, deposit).await?;
            }
            BatchPayload::Refund { .. } => {
                return Err(refuse(
                    "invalid_batch_settlement_evm_payload_type",
                    "a refund is not a payment for a task: send it to the refund endpoint",
                ));
            }
        }
        // Adopt a channel first seen on chain, so that the charge finds its baseline.
        if self.ledger.channel(&id).map_err(ledger_err)?.is_none() {
            self.ledger.adopt(&ch).map_err(ledger_err)?;
        }
        Ok(Verified {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            payer: config.payer.to_string(),
            amount: price,
            settlement_id: Self::settlement_id(p.voucher()),
            requirements: requirements.clone(),
            payload: payload.payload.clone(),
        })
    }

    async fn settle(&self, verified: &Verified) -> Result<Settlement, RailError> {
        let p: BatchPayload = serde_json::from_value(verified.payload.clone()).map_err(|e| {
            refuse(
                "invalid_batch_settlement_evm_voucher_payload",
                e.to_string(),
            )
        })?;
        match &p {
            BatchPayload::Deposit { deposit, .. } => {
                let id = verified.settlement_id.clone();
                match self
                    .outbox
                    .record_intent(&id, NAME, json!({ "verified": verified }))
                {
                    Ok(_) => {}
                    Err(OutboxError::AlreadyRecorded { .. }) => return Err(RailError::Replay(id)),
                    Err(e) => return Err(e.into()),
                }
                let (tx, fee) = self.submit_deposit(&id, p.config(), deposit).await?;
                let ch = self.commit_charge(verified, &p, deposit.amount)?;
                Ok(self.settlement(verified, &ch, Some(tx), fee))
            }
            _ => {
                let ch = self.commit_charge(verified, &p, Atomic::new(0))?;
                Ok(self.settlement(verified, &ch, None, 0))
            }
        }
    }

    async fn finalize(&self, release: &Release) -> Result<Settlement, RailError> {
        self.fund_payouts(release).await?;
        self.payouts.finalize(release).await
    }

    fn settlement_state(&self, id: &str) -> Result<Option<SettlementState>, RailError> {
        if self.ledger.charge_of(id).map_err(ledger_err)?.is_some() {
            return Ok(Some(SettlementState::Confirmed));
        }
        match self.outbox.get(id)? {
            Some(r) if r.state == SettlementState::Confirmed => {
                self.finish_deposit(&r)?;
                Ok(Some(SettlementState::Confirmed))
            }
            Some(r) => Ok(Some(r.state)),
            None => Ok(None),
        }
    }

    fn settlements_in_flight(&self) -> Result<Vec<SettlementRecord>, RailError> {
        Ok(self.outbox.all_in_flight()?)
    }

    async fn reconcile(&self) -> Result<ReconcileReport, RailError> {
        let mut report = self.payouts.reconcile().await?;
        for record in self.outbox.in_flight(NAME)? {
            let verified: Verified = serde_json::from_value(record.request["verified"].clone())
                .map_err(|e| RailError::Refused(format!("outbox entry {}: {e}", record.id)))?;
            let p: BatchPayload = serde_json::from_value(verified.payload.clone())
                .map_err(|e| RailError::Refused(format!("outbox entry {}: {e}", record.id)))?;
            let BatchPayload::Deposit {
                deposit,
                voucher,
                channel_config,
            } = &p
            else {
                continue;
            };
            let auth = &deposit.authorization.erc3009_authorization;
            let nonce = deposit_nonce(voucher.channel_id, auth.salt);
            let used = self
                .token
                .authorizationState(channel_config.payer, nonce)
                .call()
                .await
                .map_err(chain_err)?;
            if used {
                self.outbox
                    .mark_confirmed(&record.id, record.tx_hash.as_deref())?;
                self.finish_deposit(&record)?;
                report.confirmed.push(record.id);
            } else if u64::try_from(auth.valid_before.get()).unwrap_or(u64::MAX)
                > now_unix() + SETTLE_MARGIN_SECS
            {
                self.submit_deposit(&record.id, channel_config, deposit)
                    .await?;
                self.finish_deposit(&record)?;
                report.resent.push(record.id);
            } else {
                self.outbox.mark_failed(
                    &record.id,
                    "deposit authorization expired before it was sent",
                )?;
                report.failed.push(record.id);
            }
        }
        Ok(report)
    }

    async fn maintain(&self) -> Result<(), RailError> {
        self.claim_due().await.map(|_| ())
    }

    /// The cooperative refund: the payer signs a zero-charge voucher (its ceiling is what was
    /// charged) and asks for the unspent balance, or part of it. What was charged is claimed
    /// first, so the refund can only return what nobody earned.
    async fn channel_operation(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<Settlement, RailError> {
        let (p, id) = self.check_binding(payload, requirements)?;
        let BatchPayload::Refund {
            amount, voucher, ..
        } = &p
        else {
            return Err(refuse(
                "invalid_batch_settlement_evm_payload_type",
                "only a refund is a channel operation",
            ));
        };
        let Some(ch) = self.ledger.channel(&id).map_err(ledger_err)? else {
            return Err(refuse(
                "invalid_batch_settlement_evm_missing_channel",
                format!("this gateway has no channel {id}"),
            ));
        };
        if voucher.max_claimable_amount != ch.charged {
            return Err(Self::mismatch(
                &ch,
                voucher.max_claimable_amount,
                Atomic::new(0),
            ));
        }
        self.claim(vec![ch.clone()]).await?;
        let ch = self.ledger.channel(&id).map_err(ledger_err)?.unwrap_or(ch);
        let (balance, claimed) = self.on_chain(id).await?;
        let unspent = balance.saturating_sub(claimed);
        let asked = amount.map(|a| a.get()).unwrap_or(unspent);
        if amount.is_some_and(|a| a.get() == 0) {
            return Err(refuse(
                "invalid_batch_settlement_evm_refund_amount_invalid",
                "a refund of zero",
            ));
        }
        if unspent == 0 {
            return Err(refuse(
                "invalid_batch_settlement_evm_refund_no_balance",
                "nothing unspent is left in the channel",
            ));
        }
        let refunded = asked.min(unspent);
        let cfg = ch
            .config
            .to_contract()
            .ok_or_else(|| RailError::Refused("withdraw delay out of range".into()))?;
        let (tx, fee) = match self
            .transact("refund", self.settlement.refund(cfg, refunded))
            .await
        {
            Ok(done) => done,
            Err(e @ RailError::Chain(_)) => return Err(e),
            Err(e) => {
                return Err(refuse(
                    "invalid_batch_settlement_evm_refund_transaction_failed",
                    e.to_string(),
                ));
            }
        };
        let (balance, claimed) = self.on_chain(id).await?;
        let nonce = self
            .settlement
            .refundNonce(id)
            .call()
            .await
            .map_err(chain_err)?;
        let ch = self
            .ledger
            .update(&id, |c| {
                c.balance = Atomic::new(balance);
                c.total_claimed = Atomic::new(claimed);
                c.refund_nonce = u64::try_from(nonce).unwrap_or(u64::MAX);
            })
            .map_err(ledger_err)?
            .unwrap_or(ch);
        Ok(Settlement {
            rail: NAME.into(),
            network: self.chain.network().to_string(),
            settlement_id: format!("refund:{id}:{nonce}"),
            tx_hashes: vec![tx.to_string()],
            payer: Some(ch.config.payer.to_string()),
            payouts: vec![crate::rail::Payout {
                to: ch.config.payer.to_string(),
                amount: Atomic::new(refunded),
            }],
            fee_native: fee,
            extra: Some(json!({ "channelState": ch.state_json() })),
        })
    }

    fn channel_book(&self) -> Result<Option<ChannelBook>, RailError> {
        let channels = self.channels()?;
        Ok(Some(ChannelBook {
            channels: channels.len(),
            unclaimed: Atomic::new(channels.iter().map(|c| c.unclaimed()).sum()),
            withdrawals: channels
                .iter()
                .filter(|c| c.unclaimed() > 0)
                .filter_map(|c| {
                    Some(crate::payment::WithdrawalClock {
                        channel: c.id.to_string(),
                        ends_unix: c.withdrawal_ends()?,
                        unclaimed: Atomic::new(c.unclaimed()),
                    })
                })
                .collect(),
            unpublished: Vec::new(),
            headroom: None,
        }))
    }
}

/// Checks the policy's withdraw delay against the contract's bounds.
pub fn check_withdraw_delay(secs: u64) -> Result<(), RailError> {
    if !(MIN_WITHDRAW_DELAY..=MAX_WITHDRAW_DELAY).contains(&secs) {
        return Err(RailError::Refused(format!(
            "withdraw delay {secs} s is outside {MIN_WITHDRAW_DELAY}..={MAX_WITHDRAW_DELAY} s"
        )));
    }
    Ok(())
}
