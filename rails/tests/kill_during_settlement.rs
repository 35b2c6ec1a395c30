//! A real crash: a child process settles a payment and is killed with SIGKILL after the
//! transaction left and before the outbox recorded it. The parent reopens the outbox the child
//! had open (redb recovers it), reconciles, and finds exactly one transfer and a confirmed
//! record.
//!
//! The child is this same test binary, re-run with `D402_KILL_CHILD` set to a JSON job.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use common::{now, terms, world};
use d402_rails::evm::direct::BaseDirect;
use d402_rails::evm::{Asset, EvmChain, buyer};
use d402_rails::{Outbox, Rail, RailError, SafetyCaps, SettlementState};
use serde_json::json;

const JOB: &str = "D402_KILL_CHILD";

/// In the child: settle, stop after sending, say so, and wait to be killed.
#[tokio::test]
async fn child_settles_until_killed() {
    let Ok(job) = std::env::var(JOB) else {
        return; // Only meaningful as the parent's child.
    };
    let job: serde_json::Value = serde_json::from_str(&job).unwrap();
    let s = |k: &str| job[k].as_str().unwrap().to_string();
    let chain = EvmChain {
        rpc_url: s("url").parse().unwrap(),
        chain_id: 31337,
        asset: Asset {
            address: s("token").parse().unwrap(),
            name: d402_evm_chain::TOKEN_NAME.into(),
            version: d402_evm_chain::TOKEN_VERSION.into(),
            decimals: 6,
        },
    };
    let facilitator: PrivateKeySigner = s("facilitator").parse().unwrap();
    let rail = BaseDirect::new(
        chain,
        &facilitator,
        Outbox::open(s("outbox").as_ref()).unwrap(),
        SafetyCaps::default(),
    );
    let payload = serde_json::from_value(job["payload"].clone()).unwrap();
    let req = serde_json::from_value(job["requirements"].clone()).unwrap();
    let verified = rail.verify(&payload, &req).await.unwrap();
    rail.stop_after_next_send();
    match rail.settle(&verified).await {
        Err(RailError::StoppedAfterSend { .. }) => {}
        other => panic!("expected to stop after sending, got {other:?}"),
    }
    std::fs::write(s("marker"), b"sent").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[tokio::test]
async fn a_process_killed_after_sending_reconciles_to_exactly_one_transfer() {
    if std::env::var(JOB).is_ok() {
        return;
    }
    let w = world().await;
    let payee = w.others[0].address();
    let path = w.dir.path().join("killed.redb");
    let marker = w.dir.path().join("sent");
    let probe = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        w.outbox("probe.redb"),
        SafetyCaps::default(),
    );
    let req = probe
        .challenge(&terms("killed", 42_000, &payee.to_string()))
        .unwrap();
    let payload = buyer::pay_exact(&w.buyer, &req, now()).unwrap();
    let job = json!({
        "url": w.anvil.url.to_string(),
        "token": w.chain.asset.address.to_string(),
        "facilitator": alloy::hex::encode_prefixed(w.facilitator.to_bytes()),
        "outbox": path,
        "marker": marker,
        "payload": payload,
        "requirements": req,
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_settles_until_killed", "--nocapture"])
        .env(JOB, job.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the child never sent its settlement"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let outbox = Outbox::open(&path).unwrap();
    let records = outbox.all().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].state,
        SettlementState::Intent,
        "killed before recording the send"
    );
    let rail = BaseDirect::new(
        w.chain.clone(),
        &w.facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    );
    let report = rail.reconcile().await.unwrap();
    assert_eq!(report.confirmed, vec![records[0].id.clone()]);
    assert!(report.resent.is_empty());
    assert_eq!(
        outbox.get(&records[0].id).unwrap().unwrap().state,
        SettlementState::Confirmed
    );
    assert_eq!(w.balance(payee).await, 42_000, "exactly one transfer");
    assert_eq!(
        rail.verify(&payload, &req).await.unwrap_err().reason(),
        Some("authorization_already_used")
    );
}
