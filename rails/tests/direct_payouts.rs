//! `base-x402-direct` payouts against a real anvil: after a buyer's payment settles to the
//! gateway's `payTo` (the facilitator's wallet), `finalize(Release::Payouts)` pays the worker's
//! net, or the buyer back, exactly once per (task, recipient), whatever is retried or crashes.

mod common;

use alloy::primitives::Address;
use common::{World, now, terms, world};
use d402_rails::evm::direct::BaseDirect;
use d402_rails::{
    Atomic, Outbox, Payout, Rail, RailError, Release, SafetyCaps, SettlementState, TaskId,
};

const PRICE: u128 = 10_000;

fn rail(w: &World, outbox: Outbox) -> BaseDirect {
    BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        outbox,
        SafetyCaps::default(),
    )
}

/// The buyer pays `PRICE` for `label` to the facilitator's wallet, as the gateway's `payTo`.
async fn paid(w: &World, rail: &BaseDirect, label: &str) -> TaskId {
    let t = terms(label, PRICE, &w.facilitator.address().to_string());
    let req = rail.challenge(&t).unwrap();
    let payload = d402_rails::evm::buyer::pay_exact(&w.buyer, &req, now()).unwrap();
    let verified = rail.verify(&payload, &req).await.unwrap();
    rail.settle(&verified).await.unwrap();
    t.task_id
}

fn payouts(w: &World, task_id: TaskId, to: &[(Address, u128)]) -> Release {
    Release::Payouts {
        task_id,
        from: w.facilitator.address().to_string(),
        payouts: to
            .iter()
            .map(|(a, n)| Payout {
                to: a.to_string(),
                amount: Atomic::new(*n),
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_payout_moves_exactly_the_amounts_once() {
    let w = world().await;
    let rail = rail(&w, w.outbox("payouts.redb"));
    let gateway = w.facilitator.address();
    let worker = w.others[0].address();
    let task = paid(&w, &rail, "task-payout").await;
    assert_eq!(w.balance(gateway).await, PRICE);

    // Worker net 9_500, gateway fee 500 stays with payTo.
    let release = payouts(&w, task, &[(worker, 9_500)]);
    let s = rail.finalize(&release).await.unwrap();
    assert_eq!(s.tx_hashes.len(), 1);
    assert!(s.fee_native > 0, "the payout's gas is paid now");
    assert_eq!(s.payer.as_deref(), Some(gateway.to_string().as_str()));
    assert_eq!(
        s.payouts,
        vec![Payout {
            to: worker.to_string(),
            amount: Atomic::new(9_500)
        }]
    );
    assert_eq!(w.balance(worker).await, 9_500);
    assert_eq!(w.balance(gateway).await, PRICE - 9_500);
    assert_eq!(
        w.balance(w.buyer.address()).await,
        common::BUYER_FUNDS - PRICE
    );

    // A second finalize of the same task pays nothing more, and still names the transaction.
    let again = rail.finalize(&release).await.unwrap();
    assert_eq!(again.tx_hashes, s.tx_hashes);
    assert_eq!(again.fee_native, 0, "nothing was sent");
    assert_eq!(w.balance(worker).await, 9_500);
    assert_eq!(w.balance(gateway).await, PRICE - 9_500);

    // The same recipient with another amount is refused, not added.
    match rail.finalize(&payouts(&w, task, &[(worker, 9_000)])).await {
        Err(RailError::PayoutConflict {
            recorded,
            requested,
            ..
        }) => {
            assert_eq!(recorded, Atomic::new(9_500));
            assert_eq!(requested, Atomic::new(9_000));
        }
        other => panic!("expected a payout conflict, got {other:?}"),
    }
    assert_eq!(w.balance(worker).await, 9_500);

    // A fresh rail on another outbox (a gateway that lost its database) still pays nothing
    // more: the payout's nonce is used on chain.
    let amnesiac = self::rail(&w, w.outbox("amnesiac.redb"));
    let s2 = amnesiac.finalize(&release).await.unwrap();
    assert_eq!(s2.fee_native, 0);
    assert_eq!(s2.tx_hashes, s.tx_hashes, "found from the token's log");
    assert_eq!(w.balance(worker).await, 9_500);
}

#[tokio::test]
async fn a_failed_task_is_refunded_in_full_to_the_buyer() {
    let w = world().await;
    let rail = rail(&w, w.outbox("refund.redb"));
    let task = paid(&w, &rail, "task-refund").await;
    let buyer = w.buyer.address();
    assert_eq!(w.balance(buyer).await, common::BUYER_FUNDS - PRICE);
    let release = payouts(&w, task, &[(buyer, PRICE)]);
    rail.finalize(&release).await.unwrap();
    rail.finalize(&release).await.unwrap();
    assert_eq!(w.balance(buyer).await, common::BUYER_FUNDS);
    assert_eq!(w.balance(w.facilitator.address()).await, 0);
}

#[tokio::test]
async fn payouts_are_refused_from_a_wallet_the_rail_does_not_hold() {
    let w = world().await;
    let outbox = w.outbox("foreign.redb");
    let rail = rail(&w, outbox.clone());
    let release = Release::Payouts {
        task_id: TaskId::from_label("foreign"),
        from: w.others[1].address().to_string(),
        payouts: vec![Payout {
            to: w.others[0].address().to_string(),
            amount: Atomic::new(1),
        }],
    };
    assert!(matches!(
        rail.finalize(&release).await,
        Err(RailError::PayoutSource { .. })
    ));
    let bad_recipient = Release::Payouts {
        task_id: TaskId::from_label("foreign"),
        from: w.facilitator.address().to_string(),
        payouts: vec![Payout {
            to: "not-an-address".into(),
            amount: Atomic::new(1),
        }],
    };
    assert!(matches!(
        rail.finalize(&bad_recipient).await,
        Err(RailError::Address { .. })
    ));
    assert!(outbox.all().unwrap().is_empty(), "nothing was recorded");
    // Escrow releases are not this rail's.
    assert!(matches!(
        rail.finalize(&Release::PendingVouchers).await,
        Err(RailError::Unsupported { .. })
    ));
}

/// The payout's transaction left but the process died before recording it: on restart the
/// outbox holds only the intent, reconciliation finds the payout on chain, and a retried
/// finalize pays nothing more.
#[tokio::test]
async fn a_crash_between_send_and_record_reconciles_to_exactly_one_payout() {
    let w = world().await;
    let path = w.dir.path().join("crash.redb");
    let worker = w.others[0].address();
    let release = {
        let rail = rail(&w, Outbox::open(&path).unwrap());
        let task = paid(&w, &rail, "task-crash").await;
        let release = payouts(&w, task, &[(worker, 9_000)]);
        rail.stop_after_next_send();
        match rail.finalize(&release).await {
            Err(RailError::StoppedAfterSend { .. }) => {}
            other => panic!("expected the simulated crash, got {other:?}"),
        }
        release
        // The rail and its database handle are dropped here, as in a crash.
    };
    assert_eq!(
        w.balance(worker).await,
        9_000,
        "the payout reached the chain"
    );
    let outbox = Outbox::open(&path).unwrap();
    let flying = outbox.in_flight("base-x402-direct").unwrap();
    assert_eq!(flying.len(), 1);
    assert_eq!(flying[0].state, SettlementState::Intent, "only the intent");
    let id = flying[0].id.clone();

    let rail = rail(&w, outbox.clone());
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.confirmed, vec![id.clone()]);
    assert!(report.resent.is_empty() && report.pending.is_empty());
    let record = outbox.get(&id).unwrap().unwrap();
    assert_eq!(record.state, SettlementState::Confirmed);
    assert!(record.tx_hash.is_some(), "found from the token's log");
    assert_eq!(w.balance(worker).await, 9_000, "exactly one transfer");

    // The gateway's resume finalizes the task again: nothing more moves.
    let s = rail.finalize(&release).await.unwrap();
    assert_eq!(s.tx_hashes, vec![record.tx_hash.unwrap()]);
    assert_eq!(rail.reconcile().await.unwrap(), Default::default());
    assert_eq!(w.balance(worker).await, 9_000);
    assert_eq!(w.balance(w.facilitator.address()).await, PRICE - 9_000);
}

/// The other side of the window: the intent is recorded but the transaction never leaves (here
/// because the operator moved the funds out of `payTo`, so the payout cannot be sent).
/// Reconciliation leaves it owed without stopping, and sends it once the wallet can cover it;
/// a finalize after that pays nothing more.
#[tokio::test]
async fn a_payout_intent_never_sent_is_sent_once_later() {
    let w = world().await;
    let outbox = w.outbox("unsent.redb");
    let rail = rail(&w, outbox.clone());
    let worker = w.others[0].address();
    let gateway = w.facilitator.address();
    let task = paid(&w, &rail, "task-unsent").await;
    let release = payouts(&w, task, &[(worker, 8_000)]);
    move_tokens(&w, &w.facilitator, w.others[2].address(), PRICE).await;

    let err = rail.finalize(&release).await.unwrap_err();
    assert!(
        matches!(err, RailError::Chain(_) | RailError::Reverted { .. }),
        "{err}"
    );
    assert_eq!(w.balance(worker).await, 0);
    let report = rail.reconcile().await.unwrap();
    assert_eq!(
        report.pending.len(),
        1,
        "still owed, and reconciliation goes on"
    );
    assert_eq!(outbox.in_flight("base-x402-direct").unwrap().len(), 1);

    move_tokens(&w, &w.others[2], gateway, PRICE).await;
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.resent.len(), 1, "{report:?}");
    assert_eq!(w.balance(worker).await, 8_000);
    let s = rail.finalize(&release).await.unwrap();
    assert_eq!(s.fee_native, 0);
    assert_eq!(rail.reconcile().await.unwrap(), Default::default());
    assert_eq!(w.balance(worker).await, 8_000);
    assert_eq!(w.balance(gateway).await, PRICE - 8_000);
}

/// A plain ERC-20 transfer from `from`'s wallet (an operator moving funds).
async fn move_tokens(
    w: &World,
    from: &alloy::signers::local::PrivateKeySigner,
    to: Address,
    amount: u128,
) {
    let token =
        d402_rails::evm::contracts::TestUsd::new(w.chain.asset.address, w.anvil.provider(from));
    token
        .transfer(to, alloy::primitives::U256::from(amount))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}
