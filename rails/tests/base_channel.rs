//! `base-channel` against a real anvil: 1,000 tasks across 3 workers settle in at most 3
//! transactions, each payee receiving exactly the sum of its splits; replayed vouchers are
//! refused; the channel caps hold; accepted vouchers survive a restart.

mod common;

use std::collections::HashMap;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use common::{now, terms, world};
use d402_rails::evm::buyer::{self, SignedVoucher};
use d402_rails::evm::channel::BaseChannel;
use d402_rails::evm::contracts::PaymentChannel;
use d402_rails::evm::eip712::Voucher;
use d402_rails::{
    Atomic, CapExceeded, Commission, GatewayFee, PaymentPayload, PaymentRequirements, Rail,
    RailError, Release, SafetyCaps, Terms,
};

/// What the buyer keeps: the running totals per payee triple.
#[derive(Default)]
struct BuyerLedger {
    totals: HashMap<(Address, Address, Address), [U256; 3]>,
}

impl BuyerLedger {
    /// The buyer's answer to a channel challenge: the triple's next cumulative voucher.
    fn pay(
        &mut self,
        key: &PrivateKeySigner,
        channel_contract: Address,
        channel_id: B256,
        req: &PaymentRequirements,
    ) -> PaymentPayload {
        let extra = req.extra.as_ref().unwrap();
        let a = |k: &str| extra[k].as_str().unwrap().parse::<Address>().unwrap();
        let n = |k: &str| U256::from(extra[k].as_str().unwrap().parse::<u128>().unwrap());
        let triple = (a("worker"), a("creator"), a("gateway"));
        let t = self.totals.entry(triple).or_default();
        t[0] += n("workerAmount");
        t[1] += n("creatorAmount");
        t[2] += n("gatewayAmount");
        let v = buyer::sign_voucher(
            key,
            31337,
            channel_contract,
            &Voucher {
                channelId: channel_id,
                worker: triple.0,
                creator: triple.1,
                gateway: triple.2,
                workerTotal: t[0],
                creatorTotal: t[1],
                gatewayTotal: t[2],
            },
        )
        .unwrap();
        buyer::payment_payload(req, serde_json::to_value(v).unwrap())
    }
}

struct Channel {
    w: common::World,
    rail: BaseChannel,
    contract: Address,
    channel_id: B256,
    workers: Vec<Address>,
    creator: Address,
    gateway: Address,
}

async fn channel_world(caps: SafetyCaps, outbox: &str) -> Channel {
    let w = world().await;
    let contract =
        BaseChannel::deploy(&w.anvil.provider(&w.deployer), w.chain.asset.address, 3_600)
            .await
            .unwrap();
    let gateway = w.others[4].address();
    let rail = BaseChannel::new(
        w.chain.clone(),
        contract,
        &w.facilitator,
        gateway,
        w.outbox(outbox),
        caps,
    );
    Channel {
        workers: vec![
            w.others[0].address(),
            w.others[1].address(),
            w.others[2].address(),
        ],
        creator: w.others[3].address(),
        gateway,
        contract,
        channel_id: B256::repeat_byte(0xc4),
        rail,
        w,
    }
}

async fn open(c: &Channel, amount: u128) {
    let req = c
        .rail
        .funding_challenge(c.channel_id, Atomic::new(amount), 300)
        .await
        .unwrap();
    let payload = buyer::pay_escrow(&c.w.buyer, &req, now()).unwrap();
    let s = c.rail.fund(&payload, &req).await.unwrap();
    assert_eq!(s.tx_hashes.len(), 1);
}

fn task_terms(c: &Channel, i: usize) -> Terms {
    let mut t = terms(
        &format!("channel-task-{i}"),
        1_000 + (i as u128 % 7) * 13,
        &c.workers[i % 3].to_string(),
    );
    t.commission = Some(Commission {
        wallet: c.creator.to_string(),
        bps: 1_000,
    });
    t.gateway_fee = GatewayFee::Bps(200);
    t
}

#[tokio::test]
async fn a_thousand_tasks_across_three_workers_settle_in_at_most_three_transactions() {
    let c = channel_world(SafetyCaps::default(), "channel.redb").await;
    open(&c, 5_000_000).await;
    let mut ledger = BuyerLedger::default();
    let mut expected: HashMap<Address, u128> = HashMap::new();
    let verify_started = std::time::Instant::now();
    for i in 0..1_000 {
        let t = task_terms(&c, i);
        let split = t.split().unwrap();
        *expected.entry(c.workers[i % 3]).or_default() += split.worker.get();
        *expected.entry(c.creator).or_default() += split.creator.get();
        *expected.entry(c.gateway).or_default() += split.gateway.get();
        let req = c.rail.challenge(&t).unwrap();
        let payload = ledger.pay(&c.w.buyer, c.contract, c.channel_id, &req);
        let verified = c.rail.verify(&payload, &req).await.unwrap();
        let s = c.rail.settle(&verified).await.unwrap();
        assert!(s.tx_hashes.is_empty(), "accepting a voucher sends nothing");
    }
    eprintln!(
        "1,000 vouchers verified and accepted in {:?}",
        verify_started.elapsed()
    );

    let sender = c.w.facilitator.address();
    let before = c.w.anvil.tx_count(sender).await.unwrap();
    let s = c.rail.finalize(&Release::PendingVouchers).await.unwrap();
    let sent = c.w.anvil.tx_count(sender).await.unwrap() - before;
    assert!(
        s.tx_hashes.len() <= 3,
        "{} claim transactions",
        s.tx_hashes.len()
    );
    assert!(sent <= 3, "{sent} transactions sent");
    eprintln!("claimed in {sent} transaction(s), fee {} wei", s.fee_native);
    for (who, amount) in &expected {
        assert_eq!(c.w.balance(*who).await, *amount, "{who}");
    }
    let total: u128 = expected.values().sum();
    assert_eq!(c.w.balance(c.contract).await, 5_000_000 - total);

    // Nothing left to claim: finalizing again sends nothing.
    let again = c.rail.finalize(&Release::PendingVouchers).await.unwrap();
    assert!(again.tx_hashes.is_empty());
}

#[tokio::test]
async fn vouchers_are_refused_when_replayed_forged_wrong_or_over_the_deposit() {
    let c = channel_world(SafetyCaps::default(), "channel.redb").await;
    open(&c, 2_500).await;
    let mut ledger = BuyerLedger::default();
    let t = task_terms(&c, 0);
    let req = c.rail.challenge(&t).unwrap();
    let first = ledger.pay(&c.w.buyer, c.contract, c.channel_id, &req);
    let v = c.rail.verify(&first, &req).await.unwrap();
    c.rail.settle(&v).await.unwrap();

    // The same voucher again, for another task: not increasing.
    let t1 = task_terms(&c, 3);
    let req1 = c.rail.challenge(&t1).unwrap();
    let mut replay = first.clone();
    replay.accepted = req1.clone();
    assert_eq!(
        c.rail.verify(&replay, &req1).await.unwrap_err().reason(),
        Some("voucher_not_increasing")
    );

    // Signed by someone other than the channel's buyer.
    let mut stranger = BuyerLedger {
        totals: ledger.totals.clone(),
    };
    let forged = stranger.pay(&c.w.others[5], c.contract, c.channel_id, &req1);
    assert_eq!(
        c.rail.verify(&forged, &req1).await.unwrap_err().reason(),
        Some("invalid_exact_evm_payload_signature")
    );

    // Adding less than the task's split.
    let mut short: SignedVoucher = serde_json::from_value(
        BuyerLedger {
            totals: ledger.totals.clone(),
        }
        .pay(&c.w.buyer, c.contract, c.channel_id, &req1)
        .payload,
    )
    .unwrap();
    short.worker_total -= U256::from(1);
    let short = buyer::sign_voucher(&c.w.buyer, 31337, c.contract, &short.message()).unwrap();
    let short = buyer::payment_payload(&req1, serde_json::to_value(short).unwrap());
    assert_eq!(
        c.rail.verify(&short, &req1).await.unwrap_err().reason(),
        Some("invalid_exact_evm_payload_authorization_value")
    );

    // Over the deposit: 2,500 holds two ~1,000 tasks, not three.
    let p1 = ledger.pay(&c.w.buyer, c.contract, c.channel_id, &req1);
    let v1 = c.rail.verify(&p1, &req1).await.unwrap();
    c.rail.settle(&v1).await.unwrap();
    let t2 = task_terms(&c, 6);
    let req2 = c.rail.challenge(&t2).unwrap();
    let p2 = ledger.pay(&c.w.buyer, c.contract, c.channel_id, &req2);
    assert_eq!(
        c.rail.verify(&p2, &req2).await.unwrap_err().reason(),
        Some("channel_insufficient_balance")
    );

    // An unknown channel.
    let p3 = BuyerLedger::default().pay(&c.w.buyer, c.contract, B256::repeat_byte(9), &req2);
    assert_eq!(
        c.rail.verify(&p3, &req2).await.unwrap_err().reason(),
        Some("channel_unknown")
    );

    // On chain, a stale voucher is skipped: claiming the first voucher after the second pays
    // nothing more.
    c.rail.finalize(&Release::PendingVouchers).await.unwrap();
    let worker = c.workers[0];
    let paid = c.w.balance(worker).await;
    let first_voucher: SignedVoucher = serde_json::from_value(first.payload.clone()).unwrap();
    let contract = PaymentChannel::new(c.contract, c.w.anvil.provider(&c.w.others[5]));
    let r = contract
        .claimAndPay(
            c.channel_id,
            vec![PaymentChannel::Voucher {
                worker: first_voucher.worker,
                creator: first_voucher.creator,
                gateway: first_voucher.gateway,
                workerTotal: first_voucher.worker_total,
                creatorTotal: first_voucher.creator_total,
                gatewayTotal: first_voucher.gateway_total,
                signature: first_voucher.signature.clone(),
            }],
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    assert_eq!(
        c.w.balance(worker).await,
        paid,
        "a replayed voucher pays nothing"
    );
}

#[tokio::test]
async fn channel_caps_refuse_the_funding_over_and_allow_the_one_under() {
    let caps = SafetyCaps {
        max_channel_initial_funding: Some(Atomic::new(1_000_000)),
        max_channel_balance: Some(Atomic::new(1_500_000)),
        ..SafetyCaps::default()
    };
    let c = channel_world(caps, "channel.redb").await;
    assert!(matches!(
        c.rail
            .funding_challenge(c.channel_id, Atomic::new(1_000_001), 300)
            .await,
        Err(RailError::Cap(CapExceeded::ChannelInitialFunding { .. }))
    ));
    open(&c, 999_999).await;
    // A top-up to 1,500,001 is over the balance cap; to 1,499,999 is under.
    assert!(matches!(
        c.rail
            .funding_challenge(c.channel_id, Atomic::new(500_002), 300)
            .await,
        Err(RailError::Cap(CapExceeded::ChannelBalance { .. }))
    ));
    open(&c, 500_000).await;
    assert_eq!(c.w.balance(c.contract).await, 1_499_999);
}

#[tokio::test]
async fn accepted_vouchers_survive_a_restart_and_are_claimed_once() {
    let c = channel_world(SafetyCaps::default(), "channel.redb").await;
    open(&c, 1_000_000).await;
    let mut ledger = BuyerLedger::default();
    let mut owed_worker = 0;
    for i in 0..10 {
        let t = task_terms(&c, i * 3);
        owed_worker += t.split().unwrap().worker.get();
        let req = c.rail.challenge(&t).unwrap();
        let p = ledger.pay(&c.w.buyer, c.contract, c.channel_id, &req);
        let v = c.rail.verify(&p, &req).await.unwrap();
        c.rail.settle(&v).await.unwrap();
    }
    let Channel {
        w,
        rail,
        contract,
        gateway,
        ..
    } = c;
    drop(rail);
    let rail = BaseChannel::new(
        w.chain.clone(),
        contract,
        &w.facilitator,
        gateway,
        w.outbox("channel.redb"),
        SafetyCaps::default(),
    );
    rail.reconcile().await.unwrap();
    let s = rail.finalize(&Release::PendingVouchers).await.unwrap();
    assert_eq!(s.tx_hashes.len(), 1);
    assert_eq!(w.balance(w.others[0].address()).await, owed_worker);
    rail.reconcile().await.unwrap();
    assert!(
        rail.finalize(&Release::PendingVouchers)
            .await
            .unwrap()
            .tx_hashes
            .is_empty()
    );
}

#[tokio::test]
async fn close_after_the_grace_period_returns_the_rest_and_payees_pull_what_they_are_owed() {
    let c = channel_world(SafetyCaps::default(), "channel.redb").await;
    open(&c, 100_000).await;
    let mut ledger = BuyerLedger::default();
    let t = task_terms(&c, 0);
    let split = t.split().unwrap();
    let req = c.rail.challenge(&t).unwrap();
    let p = ledger.pay(&c.w.buyer, c.contract, c.channel_id, &req);
    let v: SignedVoucher = serde_json::from_value(p.payload.clone()).unwrap();

    // A plain claim credits the payees; each pulls its own credit.
    let anyone = PaymentChannel::new(c.contract, c.w.anvil.provider(&c.w.others[5]));
    let voucher = PaymentChannel::Voucher {
        worker: v.worker,
        creator: v.creator,
        gateway: v.gateway,
        workerTotal: v.worker_total,
        creatorTotal: v.creator_total,
        gatewayTotal: v.gateway_total,
        signature: v.signature.clone(),
    };
    let r = anyone
        .claim(c.channel_id, vec![voucher])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    assert_eq!(c.w.balance(c.workers[0]).await, 0, "credited, not yet paid");
    let as_worker = PaymentChannel::new(c.contract, c.w.anvil.provider(&c.w.others[0]));
    as_worker
        .withdraw()
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(c.w.balance(c.workers[0]).await, split.worker.get());

    // Only the buyer may ask to close; the rest returns after the grace period, not before.
    let as_buyer = PaymentChannel::new(c.contract, c.w.anvil.provider(&c.w.buyer));
    let r = anyone
        .requestClose(c.channel_id)
        .gas(100_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!r.status(), "a stranger cannot close the channel");
    assert!(
        as_buyer
            .requestClose(c.channel_id)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
            .status()
    );
    let r = anyone
        .close(c.channel_id)
        .gas(100_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!r.status(), "the grace period is not over");
    let buyer_before = c.w.balance(c.w.buyer.address()).await;
    c.w.anvil.advance_time(3_601).await.unwrap();
    let r = anyone
        .close(c.channel_id)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(r.status());
    let spent = split.worker.get() + split.creator.get() + split.gateway.get();
    assert_eq!(
        c.w.balance(c.w.buyer.address()).await,
        buyer_before + 100_000 - spent
    );
    assert_eq!(
        c.w.balance(c.contract).await,
        split.creator.get() + split.gateway.get(),
        "credits not yet pulled stay payable"
    );
}
