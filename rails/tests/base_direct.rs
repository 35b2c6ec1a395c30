//! `base-x402-direct` against a real anvil: pays exactly, refuses each bad payment with its own
//! reason, refuses commission-bearing terms, and recovers from a crash between sending a
//! settlement and recording it.

mod common;

use alloy::primitives::B256;
use common::{now, terms, world};
use d402_rails::evm::buyer::{self, AuthorizationKind};
use d402_rails::evm::contracts::TestUsd;
use d402_rails::evm::direct::BaseDirect;
use d402_rails::{
    Commission, PaymentPayload, PaymentRequirements, Rail, RailError, SafetyCaps, SettlementState,
};

fn reason(r: Result<d402_rails::Verified, RailError>) -> &'static str {
    match r {
        Ok(_) => panic!("verification passed but should have been refused"),
        Err(e) => e
            .reason()
            .unwrap_or_else(|| panic!("not a verification refusal: {e}")),
    }
}

fn sign(
    w: &common::World,
    req: &PaymentRequirements,
    valid_after: u64,
    valid_before: u64,
) -> PaymentPayload {
    buyer::sign_authorization(
        &w.buyer,
        req,
        AuthorizationKind::Transfer,
        valid_after,
        valid_before,
        buyer::random_nonce().unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_funded_buyer_pays_the_payee_exactly_the_price() {
    let w = world().await;
    let rail = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        w.outbox("direct.redb"),
        SafetyCaps::default(),
    );
    let payee = w.others[0].address();
    let req = rail
        .challenge(&terms("task-1", 10_000, &payee.to_string()))
        .unwrap();
    assert_eq!(req.network.to_string(), "eip155:31337");
    assert_eq!(req.scheme, "exact");
    assert_eq!(req.amount, "10000");
    let extra = req.extra.clone().unwrap();
    assert_eq!(extra["name"], "Test USD");
    assert_eq!(extra["version"], "2");

    let (payee_before, buyer_before) = (w.balance(payee).await, w.balance(w.buyer.address()).await);
    let payload = buyer::pay_exact(&w.buyer, &req, now()).unwrap();
    let verified = rail.verify(&payload, &req).await.unwrap();
    assert_eq!(verified.amount.get(), 10_000);
    let settlement = rail.settle(&verified).await.unwrap();
    assert_eq!(settlement.tx_hashes.len(), 1);
    assert!(settlement.fee_native > 0);
    assert_eq!(w.balance(payee).await, payee_before + 10_000);
    assert_eq!(w.balance(w.buyer.address()).await, buyer_before - 10_000);
}

#[tokio::test]
async fn verify_refuses_each_bad_payment_with_its_own_reason() {
    let w = world().await;
    let rail = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        w.outbox("direct.redb"),
        SafetyCaps::default(),
    );
    let payee = w.others[0].address();
    let req = rail
        .challenge(&terms("task-2", 10_000, &payee.to_string()))
        .unwrap();
    let t = now();

    // Wrong amount: the buyer authorizes less than the price.
    let mut cheaper = req.clone();
    cheaper.amount = "9999".into();
    let mut p = sign(&w, &cheaper, t - 60, t + 300);
    p.accepted = req.clone();
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "invalid_exact_evm_payload_authorization_value"
    );

    // Wrong asset: a payment in another EIP-3009 token.
    let other = TestUsd::deploy(
        w.anvil.provider(&w.deployer),
        "Other USD".to_string(),
        "2".to_string(),
    )
    .await
    .unwrap();
    let mut other_req = req.clone();
    other_req.asset = other.address().to_checksum(None);
    let p = sign(&w, &other_req, t - 60, t + 300);
    assert_eq!(reason(rail.verify(&p, &req).await), "asset_mismatch");

    // Wrong recipient: the authorization pays someone else.
    let mut elsewhere = req.clone();
    elsewhere.pay_to = w.others[1].address().to_checksum(None);
    let mut p = sign(&w, &elsewhere, t - 60, t + 300);
    p.accepted = req.clone();
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "invalid_exact_evm_payload_recipient_mismatch"
    );

    // Expired, and expiring too soon to settle.
    let p = sign(&w, &req, t - 600, t - 10);
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    let p = sign(&w, &req, t - 600, t + 2);
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "invalid_exact_evm_payload_authorization_valid_before"
    );

    // Not yet valid.
    let p = sign(&w, &req, t + 3600, t + 7200);
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "invalid_exact_evm_payload_authorization_valid_after"
    );

    // Bad signature: one bit of `r` flipped.
    let mut p = sign(&w, &req, t - 60, t + 300);
    let sig = p.payload["signature"].as_str().unwrap().to_string();
    let mut bytes = alloy::hex::decode(&sig).unwrap();
    bytes[5] ^= 1;
    p.payload["signature"] = alloy::hex::encode_prefixed(&bytes).into();
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "invalid_exact_evm_payload_signature"
    );

    // Signed by someone other than `from`.
    let mut forged = buyer::sign_authorization(
        &w.others[2],
        &req,
        AuthorizationKind::Transfer,
        t - 60,
        t + 300,
        B256::repeat_byte(7),
    )
    .unwrap();
    forged.payload["authorization"]["from"] = w.buyer.address().to_string().into();
    assert_eq!(
        reason(rail.verify(&forged, &req).await),
        "invalid_exact_evm_payload_signature"
    );

    // Wrong network.
    let mut p = sign(&w, &req, t - 60, t + 300);
    p.accepted.network = "eip155:8453".parse().unwrap();
    assert_eq!(reason(rail.verify(&p, &req).await), "invalid_network");

    // Insufficient balance: a buyer with no tokens.
    let poor = buyer::pay_exact(&w.others[3], &req, t).unwrap();
    assert_eq!(reason(rail.verify(&poor, &req).await), "insufficient_funds");

    // Replay of a used authorization: refused by the outbox, and by the chain for a gateway
    // whose outbox never saw it.
    let p = sign(&w, &req, t - 60, t + 300);
    let v = rail.verify(&p, &req).await.unwrap();
    rail.settle(&v).await.unwrap();
    assert_eq!(
        reason(rail.verify(&p, &req).await),
        "authorization_already_used"
    );
    assert!(matches!(rail.settle(&v).await, Err(RailError::Replay(_))));
    let fresh = BaseDirect::new(
        w.chain.clone(),
        &w.others[4],
        w.outbox("another-gateway.redb"),
        SafetyCaps::default(),
    );
    assert_eq!(
        reason(fresh.verify(&p, &req).await),
        "authorization_already_used"
    );
}

#[tokio::test]
async fn commission_bearing_terms_are_refused_on_the_direct_rail() {
    let w = world().await;
    let rail = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        w.outbox("direct.redb"),
        SafetyCaps::default(),
    );
    let mut t = terms("task-3", 10_000, &w.others[0].address().to_string());
    t.commission = Some(Commission {
        wallet: w.others[1].address().to_string(),
        bps: 500,
    });
    assert!(matches!(
        rail.challenge(&t),
        Err(RailError::CommissionOnDirectRail { bps: 500, .. })
    ));
    // A zero commission is no commission.
    t.commission.as_mut().unwrap().bps = 0;
    assert!(rail.challenge(&t).is_ok());
}

/// A settlement whose transaction was sent but whose sending was never recorded (the process
/// died in between) is found on restart: exactly one transfer on chain, the record says
/// confirmed, and the payment cannot be settled again.
#[tokio::test]
async fn a_crash_between_send_and_record_reconciles_to_exactly_one_transfer() {
    let w = world().await;
    let path = w.dir.path().join("crash.redb");
    let payee = w.others[0].address();
    let price = 25_000;
    let (id, payload, req) = {
        let rail = BaseDirect::new(
            w.chain.clone(),
            &w.facilitator,
            d402_rails::Outbox::open(&path).unwrap(),
            SafetyCaps::default(),
        );
        let req = rail
            .challenge(&terms("task-4", price, &payee.to_string()))
            .unwrap();
        let payload = buyer::pay_exact(&w.buyer, &req, now()).unwrap();
        let verified = rail.verify(&payload, &req).await.unwrap();
        rail.stop_after_next_send();
        match rail.settle(&verified).await {
            Err(RailError::StoppedAfterSend { .. }) => {}
            other => panic!("expected the simulated crash, got {other:?}"),
        }
        (verified.settlement_id, payload, req)
        // The rail and its database handle are dropped here, as in a crash.
    };
    let outbox = d402_rails::Outbox::open(&path).unwrap();
    assert_eq!(
        outbox.get(&id).unwrap().unwrap().state,
        SettlementState::Intent,
        "the crash left only the intent"
    );
    let rail = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    );
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.confirmed, vec![id.clone()]);
    assert!(report.resent.is_empty());
    let record = outbox.get(&id).unwrap().unwrap();
    assert_eq!(record.state, SettlementState::Confirmed);
    assert!(
        record.tx_hash.is_some(),
        "the transaction is found from its log"
    );
    assert_eq!(w.balance(payee).await, price, "exactly one transfer");
    assert_eq!(
        reason(rail.verify(&payload, &req).await),
        "authorization_already_used"
    );
    // Reconciling again changes nothing.
    assert_eq!(rail.reconcile().await.unwrap(), Default::default());
    assert_eq!(w.balance(payee).await, price);
}

/// The other side of the same window: the intent was recorded but the process died before the
/// transaction left. Reconciliation sends it, once.
#[tokio::test]
async fn an_intent_never_sent_is_sent_once_on_restart() {
    let w = world().await;
    let path = w.dir.path().join("unsent.redb");
    let payee = w.others[0].address();
    let outbox = d402_rails::Outbox::open(&path).unwrap();
    let rail = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    );
    let req = rail
        .challenge(&terms("task-5", 7_000, &payee.to_string()))
        .unwrap();
    let payload = buyer::pay_exact(&w.buyer, &req, now()).unwrap();
    let verified = rail.verify(&payload, &req).await.unwrap();
    outbox
        .record_intent(
            &verified.settlement_id,
            "base-x402-direct",
            serde_json::json!({ "payload": verified.payload }),
        )
        .unwrap();
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.resent, vec![verified.settlement_id.clone()]);
    assert_eq!(w.balance(payee).await, 7_000);
    assert_eq!(rail.reconcile().await.unwrap(), Default::default());
    assert_eq!(w.balance(payee).await, 7_000);
}
