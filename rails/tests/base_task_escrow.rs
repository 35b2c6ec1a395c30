//! `base-task-escrow` against a real anvil: the split is paid exactly on the validator's
//! release, a refund after the deadline returns everything, each task ends once, and money
//! cannot be detached from the task's terms.

mod common;

use alloy::primitives::{Address, U256};
use common::{now, terms, world};
use d402_rails::evm::buyer::{self, AuthorizationKind};
use d402_rails::evm::contracts::TaskEscrow;
use d402_rails::evm::escrow::{BaseTaskEscrow, EscrowTerms, TaskState, sign_release};
use d402_rails::{
    Commission, GatewayFee, PaymentRequirements, Rail, RailError, Release, SafetyCaps, Terms,
};

struct Escrow {
    w: common::World,
    rail: BaseTaskEscrow,
    validator: alloy::signers::local::PrivateKeySigner,
    worker: Address,
    creator: Address,
    gateway: Address,
}

async fn escrow_world(caps: SafetyCaps) -> Escrow {
    let w = world().await;
    let validator = w.others[0].clone();
    let escrow = BaseTaskEscrow::deploy(
        &w.anvil.provider(&w.deployer),
        w.chain.asset.address,
        validator.address(),
    )
    .await
    .unwrap();
    let gateway = w.others[3].address();
    let rail = BaseTaskEscrow::new(
        w.chain.clone(),
        escrow,
        validator.address(),
        &w.facilitator,
        gateway,
        w.outbox("escrow.redb"),
        caps,
    );
    Escrow {
        worker: w.others[1].address(),
        creator: w.others[2].address(),
        gateway,
        validator,
        rail,
        w,
    }
}

fn commission_terms(e: &Escrow, label: &str, price: u128) -> Terms {
    let mut t = terms(label, price, &e.worker.to_string());
    t.commission = Some(Commission {
        wallet: e.creator.to_string(),
        bps: 1_500,
    });
    t.gateway_fee = GatewayFee::Bps(250);
    t
}

fn escrow_terms(req: &PaymentRequirements) -> EscrowTerms {
    serde_json::from_value(req.extra.as_ref().unwrap()["terms"].clone()).unwrap()
}

/// Challenge, pay and fund; returns the requirements.
async fn fund(e: &Escrow, t: &Terms) -> PaymentRequirements {
    let req = e.rail.challenge(t).unwrap();
    let payload = buyer::pay_escrow(&e.w.buyer, &req, now()).unwrap();
    let verified = e.rail.verify(&payload, &req).await.unwrap();
    let s = e.rail.settle(&verified).await.unwrap();
    assert_eq!(s.tx_hashes.len(), 1);
    req
}

#[tokio::test]
async fn release_pays_worker_creator_and_gateway_the_split_exactly() {
    let e = escrow_world(SafetyCaps::default()).await;
    let t = commission_terms(&e, "escrow-1", 1_000_003);
    let buyer_before = e.w.balance(e.w.buyer.address()).await;
    let req = fund(&e, &t).await;
    assert_eq!(e.w.balance(e.rail.address()).await, 1_000_003);
    assert_eq!(
        e.w.balance(e.w.buyer.address()).await,
        buyer_before - 1_000_003
    );
    assert_eq!(
        e.rail.task_state(&t.task_id).await.unwrap(),
        TaskState::Funded
    );

    // 15 % of 1,000,003 = 150,000 (floor); 2.5 % = 25,000; the worker gets the rest.
    let et = escrow_terms(&req);
    assert_eq!(et.creator_amount.get(), 150_000);
    assert_eq!(et.gateway_amount.get(), 25_000);
    let sig = sign_release(&e.validator, 31337, e.rail.address(), &et, &[e.worker]).unwrap();
    let s = e
        .rail
        .finalize(&Release::Task {
            task_id: t.task_id,
            workers: vec![e.worker.to_string()],
            validator_signature: sig,
        })
        .await
        .unwrap();
    assert_eq!(s.tx_hashes.len(), 1);
    assert_eq!(e.w.balance(e.worker).await, 825_003);
    assert_eq!(e.w.balance(e.creator).await, 150_000);
    assert_eq!(e.w.balance(e.gateway).await, 25_000);
    assert_eq!(e.w.balance(e.rail.address()).await, 0);
    assert_eq!(
        e.rail.task_state(&t.task_id).await.unwrap(),
        TaskState::Settled
    );

    // Refund after settle fails on chain, even past the deadline.
    e.w.anvil.advance_time(7_200).await.unwrap();
    assert!(e.rail.refund(&t.task_id).await.is_err());
    let escrow = TaskEscrow::new(e.rail.address(), e.w.anvil.provider(&e.w.others[4]));
    let receipt = escrow
        .refund(t.task_id.0)
        .gas(200_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!receipt.status(), "a mined refund after settle reverts");
    assert_eq!(e.w.balance(e.worker).await, 825_003);
}

/// A quorum's agreeing workers share the worker amount, the first taking the remainder; the
/// validator's signature binds the workers and their order, so a gateway can neither drop one
/// nor add its own.
#[tokio::test]
async fn a_release_shares_the_worker_amount_among_a_quorum() {
    let e = escrow_world(SafetyCaps::default()).await;
    let second = e.w.others[4].address();
    let t = commission_terms(&e, "escrow-quorum", 1_000_003);
    let req = fund(&e, &t).await;
    let et = escrow_terms(&req);
    // 1,000,003 − 150,000 − 25,000 = 825,003 for the workers: 412,502 and 412,501.
    let sig = sign_release(
        &e.validator,
        31337,
        e.rail.address(),
        &et,
        &[e.worker, second],
    )
    .unwrap();
    let release = |workers: Vec<String>| Release::Task {
        task_id: t.task_id,
        workers,
        validator_signature: sig.clone(),
    };
    for tampered in [
        vec![second.to_string(), e.worker.to_string()],
        vec![e.worker.to_string()],
        vec![e.worker.to_string(), e.w.others[5].address().to_string()],
    ] {
        assert!(
            matches!(
                e.rail.finalize(&release(tampered.clone())).await,
                Err(RailError::WouldRevert { .. })
            ),
            "{tampered:?}"
        );
    }
    let s = e
        .rail
        .finalize(&release(vec![e.worker.to_string(), second.to_string()]))
        .await
        .unwrap();
    assert_eq!(e.w.balance(e.worker).await, 412_502);
    assert_eq!(e.w.balance(second).await, 412_501);
    assert_eq!(e.w.balance(e.creator).await, 150_000);
    assert_eq!(e.w.balance(e.gateway).await, 25_000);
    assert_eq!(e.w.balance(e.rail.address()).await, 0);
    let paid: Vec<(String, u128)> = s
        .payouts
        .iter()
        .map(|p| (p.to.clone(), p.amount.get()))
        .collect();
    assert_eq!(
        paid,
        [
            (e.worker.to_string(), 412_502),
            (second.to_string(), 412_501),
            (e.creator.to_string(), 150_000),
            (e.gateway.to_string(), 25_000),
        ]
    );
    // No workers, or more than the contract takes: refused before signing.
    assert!(sign_release(&e.validator, 31337, e.rail.address(), &et, &[]).is_err());
    assert!(sign_release(&e.validator, 31337, e.rail.address(), &et, &[second; 17]).is_err());
}

#[tokio::test]
async fn refund_after_the_deadline_returns_everything_and_blocks_settle() {
    let e = escrow_world(SafetyCaps::default()).await;
    let mut t = commission_terms(&e, "escrow-2", 500_000);
    t.deadline_unix = now() + 600;
    let buyer_before = e.w.balance(e.w.buyer.address()).await;
    let req = fund(&e, &t).await;
    let et = escrow_terms(&req);
    let sig = sign_release(&e.validator, 31337, e.rail.address(), &et, &[e.worker]).unwrap();

    // Before the deadline nobody can refund.
    assert!(e.rail.refund(&t.task_id).await.is_err());
    e.w.anvil.advance_time(601).await.unwrap();
    // A stranger refunds: no key of the gateway's is needed.
    let escrow = TaskEscrow::new(e.rail.address(), e.w.anvil.provider(&e.w.others[4]));
    let receipt = escrow
        .refund(t.task_id.0)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(e.w.balance(e.w.buyer.address()).await, buyer_before);
    assert_eq!(
        e.rail.task_state(&t.task_id).await.unwrap(),
        TaskState::Refunded
    );

    // Settle after refund fails on chain.
    let release = Release::Task {
        task_id: t.task_id,
        workers: vec![e.worker.to_string()],
        validator_signature: sig.clone(),
    };
    assert!(e.rail.finalize(&release).await.is_err());
    let receipt = escrow
        .settle(t.task_id.0, vec![e.worker], sig.into())
        .gas(300_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!receipt.status(), "a mined settle after refund reverts");
    assert_eq!(e.w.balance(e.worker).await, 0);
}

#[tokio::test]
async fn money_cannot_be_detached_from_the_task_or_released_without_the_validator() {
    let e = escrow_world(SafetyCaps::default()).await;
    let t = commission_terms(&e, "escrow-3", 100_000);
    let req = e.rail.challenge(&t).unwrap();
    let payload = buyer::pay_escrow(&e.w.buyer, &req, now()).unwrap();

    // A front-runner submits the buyer's authorization with the creator's share moved to
    // itself: the nonce no longer matches, the token refuses.
    let escrow = TaskEscrow::new(e.rail.address(), e.w.anvil.provider(&e.w.others[4]));
    let et = escrow_terms(&req);
    let auth = &payload.payload["authorization"];
    let num = |k: &str| U256::from(auth[k].as_str().unwrap().parse::<u64>().unwrap());
    let sig: alloy::primitives::Bytes = payload.payload["signature"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hijacked = TaskEscrow::Terms {
        taskId: et.task_id,
        amount: U256::from(et.amount.get()),
        creator: e.w.others[4].address(),
        creatorAmount: U256::from(et.creator_amount.get()),
        gateway: et.gateway,
        gatewayAmount: U256::from(et.gateway_amount.get()),
        deadline: et.deadline,
    };
    let r = escrow
        .fund(
            hijacked,
            e.w.buyer.address(),
            num("validAfter"),
            num("validBefore"),
            sig.clone(),
        )
        .gas(300_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!r.status(), "funding with other terms reverts");
    // Calling the token directly is refused too: only the escrow may receive.
    let token = d402_rails::evm::contracts::TestUsd::new(
        e.w.chain.asset.address,
        e.w.anvil.provider(&e.w.others[4]),
    );
    let r = token
        .receiveWithAuthorization(
            e.w.buyer.address(),
            e.rail.address(),
            U256::from(et.amount.get()),
            num("validAfter"),
            num("validBefore"),
            et.nonce(e.rail.address(), e.validator.address()),
            sig,
        )
        .gas(300_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(!r.status());

    // A buyer authorization with a nonce not bound to the terms is refused by verify.
    let unbound = buyer::sign_authorization(
        &e.w.buyer,
        &req,
        AuthorizationKind::Receive,
        now() - 60,
        now() + 300,
        buyer::random_nonce().unwrap(),
    )
    .unwrap();
    assert_eq!(
        e.rail.verify(&unbound, &req).await.unwrap_err().reason(),
        Some("invalid_exact_evm_payload_nonce_mismatch")
    );

    // The honest payment funds; a release signed by someone other than the validator fails.
    let verified = e.rail.verify(&payload, &req).await.unwrap();
    e.rail.settle(&verified).await.unwrap();
    assert!(matches!(
        e.rail.settle(&verified).await,
        Err(RailError::Replay(_))
    ));
    assert_eq!(
        e.rail.verify(&payload, &req).await.unwrap_err().reason(),
        Some("authorization_already_used")
    );
    // A gateway whose outbox never saw the payment learns it from the chain: the simulated
    // funding fails, and the escrow already holds the task.
    let fresh = BaseTaskEscrow::new(
        e.w.chain.clone(),
        e.rail.address(),
        e.validator.address(),
        &e.w.facilitator,
        e.gateway,
        e.w.outbox("escrow-fresh.redb"),
        SafetyCaps::default(),
    );
    assert_eq!(
        fresh.verify(&payload, &req).await.unwrap_err().reason(),
        Some("authorization_already_used")
    );
    let forged = sign_release(
        &e.w.others[4],
        31337,
        e.rail.address(),
        &et,
        &[e.w.others[4].address()],
    )
    .unwrap();
    assert!(
        e.rail
            .finalize(&Release::Task {
                task_id: t.task_id,
                workers: vec![e.w.others[4].address().to_string()],
                validator_signature: forged,
            })
            .await
            .is_err()
    );
    // The validator's release for worker A cannot pay worker B.
    let for_worker = sign_release(&e.validator, 31337, e.rail.address(), &et, &[e.worker]).unwrap();
    assert!(
        e.rail
            .finalize(&Release::Task {
                task_id: t.task_id,
                workers: vec![e.w.others[4].address().to_string()],
                validator_signature: for_worker,
            })
            .await
            .is_err()
    );
    assert_eq!(e.w.balance(e.rail.address()).await, 100_000);
}

#[tokio::test]
async fn the_open_escrow_cap_counts_funded_tasks() {
    let caps = SafetyCaps {
        max_open_task_escrow_budget: Some(d402_rails::Atomic::new(300_000)),
        ..SafetyCaps::default()
    };
    let e = escrow_world(caps).await;
    // Two challenges issued while nothing is open are each under the cap; paid together they
    // would not be, so the second funding is refused before the buyer's money moves.
    let late = e
        .rail
        .challenge(&commission_terms(&e, "cap-0", 150_000))
        .unwrap();
    let late_payment = buyer::pay_escrow(&e.w.buyer, &late, now()).unwrap();
    let late_verified = e.rail.verify(&late_payment, &late).await.unwrap();
    fund(&e, &commission_terms(&e, "cap-1", 200_000)).await;
    let buyer_before = e.w.balance(e.w.buyer.address()).await;
    assert!(matches!(
        e.rail.settle(&late_verified).await,
        Err(RailError::Cap(
            d402_rails::CapExceeded::OpenTaskEscrowBudget { .. }
        ))
    ));
    assert_eq!(e.w.balance(e.w.buyer.address()).await, buyer_before);
    // 200,000 open + 100,001 would exceed 300,000; 99,999 is just under.
    assert!(matches!(
        e.rail.challenge(&commission_terms(&e, "cap-2", 100_001)),
        Err(RailError::Cap(
            d402_rails::CapExceeded::OpenTaskEscrowBudget { .. }
        ))
    ));
    assert!(
        e.rail
            .challenge(&commission_terms(&e, "cap-3", 99_999))
            .is_ok()
    );
    // A commission over the cap is refused too.
    let mut t = commission_terms(&e, "cap-4", 1_000);
    t.commission.as_mut().unwrap().bps = 2_001;
    assert!(matches!(
        e.rail.challenge(&t),
        Err(RailError::Cap(
            d402_rails::CapExceeded::CreatorCommission { .. }
        ))
    ));
}

/// A funding whose intent was recorded but whose transaction never left (a crash) is sent on
/// restart, once; a release interrupted the same way is completed; nothing is paid twice.
#[tokio::test]
async fn interrupted_funding_and_release_reconcile_once() {
    let e = escrow_world(SafetyCaps::default()).await;
    let t = commission_terms(&e, "escrow-crash", 300_000);
    let req = e.rail.challenge(&t).unwrap();
    let payload = buyer::pay_escrow(&e.w.buyer, &req, now()).unwrap();
    let verified = e.rail.verify(&payload, &req).await.unwrap();
    let outbox = e.w.outbox("escrow.redb.crash");
    let rail = BaseTaskEscrow::new(
        e.w.chain.clone(),
        e.rail.address(),
        e.validator.address(),
        &e.w.facilitator,
        e.gateway,
        outbox.clone(),
        SafetyCaps::default(),
    );
    outbox
        .record_intent(
            &verified.settlement_id,
            "base-task-escrow",
            serde_json::json!({ "payload": verified.payload, "terms": escrow_terms(&req) }),
        )
        .unwrap();
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.resent, vec![verified.settlement_id.clone()]);
    assert_eq!(e.w.balance(e.rail.address()).await, 300_000);
    assert_eq!(rail.reconcile().await.unwrap(), Default::default());

    let et = escrow_terms(&req);
    let sig = sign_release(&e.validator, 31337, e.rail.address(), &et, &[e.worker]).unwrap();
    // The release went out (sent by someone, e.g. the process before it died) but was never
    // recorded as done: reconciliation sees the task settled and confirms without resending.
    let release_id = format!("escrow:{}:{}:release", e.rail.address(), t.task_id.0).to_lowercase();
    outbox
        .record_intent(
            &release_id,
            "base-task-escrow",
            serde_json::json!({ "worker": e.worker, "signature": alloy::hex::encode_prefixed(&sig) }),
        )
        .unwrap();
    let escrow = TaskEscrow::new(e.rail.address(), e.w.anvil.provider(&e.w.others[4]));
    assert!(
        escrow
            .settle(t.task_id.0, vec![e.worker], sig.into())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
            .status()
    );
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.confirmed, vec![release_id.clone()]);
    assert!(report.resent.is_empty());
    assert_eq!(e.w.balance(e.worker).await, 300_000 - 45_000 - 7_500);
    assert_eq!(
        outbox.get(&release_id).unwrap().unwrap().state,
        d402_rails::SettlementState::Confirmed
    );
}

/// What a gateway killed at the wrong moment needs from the rail: a release the chain would
/// refuse (its deadline passed while the gateway was down) is refused before any intent is
/// recorded, so the task can still be refunded; a refund before the deadline likewise leaves
/// nothing behind and succeeds later; a release or refund asked for again answers from the
/// outbox instead of refusing it as a replay; and a recorded release that can no longer go out
/// is marked failed by reconciliation, which carries on.
#[tokio::test]
async fn releases_and_refunds_are_refused_before_their_intent_and_repeat_idempotently() {
    let e = escrow_world(SafetyCaps::default()).await;
    // A rail whose outbox this test can read.
    let outbox = e.w.outbox("escrow-idempotent.redb");
    let rail = BaseTaskEscrow::new(
        e.w.chain.clone(),
        e.rail.address(),
        e.validator.address(),
        &e.w.facilitator,
        e.gateway,
        outbox.clone(),
        SafetyCaps::default(),
    );
    let id = |t: &Terms, what: &str| {
        format!("escrow:{}:{}:{what}", rail.address(), t.task_id.0).to_lowercase()
    };
    let fund = |t: Terms| {
        let rail = &rail;
        let buyer = e.w.buyer.clone();
        async move {
            let req = rail.challenge(&t).unwrap();
            let payload = buyer::pay_escrow(&buyer, &req, now()).unwrap();
            let verified = rail.verify(&payload, &req).await.unwrap();
            rail.settle(&verified).await.unwrap();
            escrow_terms(&req)
        }
    };
    let release = |t: &Terms, et: &EscrowTerms| Release::Task {
        task_id: t.task_id,
        workers: vec![e.worker.to_string()],
        validator_signature: sign_release(&e.validator, 31337, rail.address(), et, &[e.worker])
            .unwrap(),
    };

    // Released once, asked again: the same settlement, nothing sent twice.
    let t = commission_terms(&e, "escrow-again", 100_000);
    let et = fund(t.clone()).await;
    let first = rail.finalize(&release(&t, &et)).await.unwrap();
    let sent = e.w.anvil.tx_count(e.w.facilitator.address()).await.unwrap();
    let again = rail.finalize(&release(&t, &et)).await.unwrap();
    assert_eq!(again.tx_hashes, first.tx_hashes);
    assert_eq!(again.payouts, first.payouts);
    assert_eq!(
        e.w.anvil.tx_count(e.w.facilitator.address()).await.unwrap(),
        sent
    );
    assert_eq!(e.w.balance(e.worker).await, 100_000 - 15_000 - 2_500);

    // A refund before the deadline: refused, nothing recorded, nothing sent.
    let mut t = commission_terms(&e, "escrow-late", 200_000);
    t.deadline_unix = e.w.anvil.now().await.unwrap() + 600;
    let et = fund(t.clone()).await;
    match rail.refund(&t.task_id).await {
        Err(RailError::WouldRevert { reason, .. }) => {
            assert!(reason.contains("DeadlineNotReached"), "{reason}")
        }
        other => panic!("expected the chain to refuse an early refund, got {other:?}"),
    }
    assert!(outbox.get(&id(&t, "refund")).unwrap().is_none());

    // Past the deadline the release is refused the same way, and the refund goes through, once.
    e.w.anvil.advance_time(601).await.unwrap();
    match rail.finalize(&release(&t, &et)).await {
        Err(RailError::WouldRevert { reason, .. }) => {
            assert!(reason.contains("DeadlinePassed"), "{reason}")
        }
        other => panic!("expected the chain to refuse a late release, got {other:?}"),
    }
    assert!(outbox.get(&id(&t, "release")).unwrap().is_none());
    let buyer_before = e.w.balance(e.w.buyer.address()).await;
    let refund = rail.refund(&t.task_id).await.unwrap();
    assert_eq!(
        rail.refund(&t.task_id).await.unwrap().tx_hashes,
        refund.tx_hashes
    );
    assert_eq!(
        e.w.balance(e.w.buyer.address()).await,
        buyer_before + 200_000
    );
    assert_eq!(
        rail.task_state(&t.task_id).await.unwrap(),
        TaskState::Refunded
    );

    // A release recorded before a crash, whose deadline passed before the restart: marked
    // failed by reconciliation (not a reason to stop), so the task can be refunded instead.
    let mut t = commission_terms(&e, "escrow-crashed-release", 300_000);
    t.deadline_unix = e.w.anvil.now().await.unwrap() + 600;
    // The chain's clock runs 601 s ahead of the wall clock by now.
    t.max_timeout_seconds = 3_600;
    let et = fund(t.clone()).await;
    let Release::Task {
        validator_signature,
        ..
    } = release(&t, &et)
    else {
        unreachable!()
    };
    outbox
        .record_intent(
            &id(&t, "release"),
            "base-task-escrow",
            serde_json::json!({ "worker": e.worker, "signature": alloy::hex::encode_prefixed(&validator_signature) }),
        )
        .unwrap();
    e.w.anvil.advance_time(601).await.unwrap();
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.failed, vec![id(&t, "release")]);
    assert!(report.resent.is_empty() && report.confirmed.is_empty());
    assert!(matches!(
        rail.finalize(&release(&t, &et)).await,
        Err(RailError::Reverted { .. })
    ));
    rail.refund(&t.task_id).await.unwrap();
    assert_eq!(
        rail.task_state(&t.task_id).await.unwrap(),
        TaskState::Refunded
    );
}
