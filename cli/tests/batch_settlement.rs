//! `base-batch-settlement` end to end: a real anvil with the settlement contracts at their
//! canonical addresses, real nodes on 127.0.0.1 (bootstrap, a merkle worker, a validator, the
//! gateway's node) and the gateway on the batch rail.
//!
//! - The stock `@x402/evm` batch-settlement client (`tests/x402-interop/pay-batch.mjs`) buys 50
//!   tasks: one deposit, 49 vouchers, no transaction from the buyer; one claim; the chain's
//!   balances equal the gateway's records to the unit.
//! - Every refusal: a replayed voucher, one below what was charged (the corrective 402 with the
//!   channel's state and the last voucher), one above the balance, a deposit above the cap, a
//!   voucher for a channel the gateway never saw.
//! - A payer's withdrawal: the gateway claims what was spent before the delay ends; the payer
//!   gets the rest after it.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_gateway::gateway::api::{PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use d402_gateway::gateway::{Gateway, SalePolicy};
use d402_network_support::*;
use d402_node::{Node, NodeConfig};
use d402_rails::evm::EvmChain;
use d402_rails::evm::batch::ledger::Ledger;
use d402_rails::evm::batch::rail::{BaseBatch, BatchPolicy};
use d402_rails::evm::batch::{self, BatchPayload, SETTLEMENT_ADDRESS, payer};
use d402_rails::evm::buyer;
use d402_rails::evm::contracts::BatchSettlement;
use d402_rails::{Atomic, GatewayFee, Outbox, PaymentRequired, PaymentRequirements, SafetyCaps};
use d402_registry::AcceptancePolicy;
use serde_json::{Value, json};

const PRICE: u128 = 10_000; // $0.01 of a 6-decimals token
const FEE_BPS: u16 = 500;
const BUYER_FUNDS: u128 = 10_000_000;
/// What the 402 asks a channel to be opened with: 100 tasks.
const MIN_DEPOSIT: u128 = 1_000_000;
const DELAY: u64 = 900;

struct World {
    anvil: Anvil,
    chain: EvmChain,
    gateway_key: PrivateKeySigner,
    buyer: PrivateKeySigner,
    worker: Address,
    spare: Vec<PrivateKeySigner>,
    url: String,
    gw: Arc<Gateway>,
    rail: Arc<BaseBatch>,
    _nodes: Vec<Node>,
}

impl World {
    async fn balance(&self, who: Address) -> u128 {
        self.anvil
            .balance(self.chain.asset.address, who)
            .await
            .unwrap()
    }
}

async fn world(dir: &std::path::Path, caps: SafetyCaps) -> World {
    let anvil = Anvil::start(8).await.expect("anvil (run scripts/setup.sh)");
    let mut keys = anvil.keys.clone();
    let deployer = keys.remove(0);
    let gateway_key = keys.remove(0);
    let buyer = keys.remove(0);
    let worker = keys.remove(0).address();
    let chain = anvil.deploy_test_usd(&deployer).await.unwrap();
    anvil.install_batch_settlement().await.unwrap();
    for who in [&buyer, &keys[0]] {
        anvil
            .mint(&deployer, chain.asset.address, who.address(), BUYER_FUNDS)
            .await
            .unwrap();
    }

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.evm = Some(worker.to_checksum(None));
    let worker_node = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let mut config = NodeConfig::new("validator", dir.join("validator"));
    config.peers = vec![bootstrap.listen_addr()];
    config.validate = [MERKLE.to_string()].into();
    let validator = Node::start(config).await.expect("validator starts");
    let gateway_node = start(dir, "gateway", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &worker_node, &validator, &gateway_node];
    for n in everyone {
        wait_discovered(n, &everyone).await;
    }

    let rail = Arc::new(BaseBatch::new(
        chain.clone(),
        &gateway_key,
        Outbox::open(&dir.join("outbox.redb")).unwrap(),
        Ledger::open(&dir.join("batch-channels.redb")).unwrap(),
        caps,
        BatchPolicy {
            withdraw_delay: DELAY,
            min_deposit: Atomic::new(MIN_DEPOSIT),
            // Claims are asked for by the tests, or forced by a withdrawal.
            claim_window: Duration::from_secs(3600),
            claim_threshold: Atomic::new(u128::MAX),
            ..BatchPolicy::default()
        },
    ));
    let mut acceptance =
        AcceptancePolicy::default().trust("merkle", &Identity::from_seed([42; 32]).public_id());
    acceptance.required_rails = vec![d402_registry::wallet::Rail::Evm];
    let (url, gw) = common::serve(
        dir,
        &gateway_node,
        rail.clone(),
        vec![merkle_offer(&gateway_node)],
        acceptance,
        SalePolicy {
            price: Atomic::new(PRICE),
            worker_budget: Atomic::new(PRICE),
            gateway_fee: GatewayFee::Bps(FEE_BPS),
            pay_to: gateway_key.address().to_checksum(None),
            asset: chain.asset.address.to_checksum(None),
            payout_window: Duration::from_millis(200),
            sweep_every: Duration::from_millis(500),
            ..SalePolicy::default()
        },
    )
    .await;
    assert!(gw.refused.is_empty(), "{:?}", gw.refused);
    gw.resume().await.unwrap();
    World {
        anvil,
        chain,
        gateway_key,
        buyer,
        worker,
        spare: keys,
        url,
        gw,
        rail,
        _nodes: vec![bootstrap, worker_node, validator, gateway_node],
    }
}

fn body(leaf: &str) -> Value {
    json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input(leaf)).unwrap()})
}

fn b64(v: &impl serde::Serialize) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
}

fn unb64(s: &str) -> Value {
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

struct Reply {
    status: u16,
    required: Option<PaymentRequired>,
    response: Option<Value>,
    body: Value,
}

async fn post(
    url: &str,
    body: &Value,
    payment: Option<&BatchPayload>,
    req: Option<&PaymentRequirements>,
) -> Reply {
    let mut r = reqwest::Client::new()
        .post(format!("{url}/tasks"))
        .json(body);
    if let (Some(p), Some(req)) = (payment, req) {
        r = r.header(
            PAYMENT_SIGNATURE,
            b64(&buyer::payment_payload(
                req,
                serde_json::to_value(p).unwrap(),
            )),
        );
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let required = res
        .headers()
        .get(PAYMENT_REQUIRED)
        .map(|h| serde_json::from_value(unb64(h.to_str().unwrap())).unwrap());
    let response = res
        .headers()
        .get(PAYMENT_RESPONSE)
        .map(|h| unb64(h.to_str().unwrap()));
    let body = res.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        required,
        response,
        body,
    }
}

async fn challenge(w: &World) -> PaymentRequirements {
    let r = post(&w.url, &body("challenge"), None, None).await;
    assert_eq!(r.status, 402, "{}", r.body);
    r.required.unwrap().accepts.remove(0)
}

/// The stock batch-settlement client buys 50 tasks: one deposit, vouchers after, no buyer
/// transaction; one claim; every balance matches the gateway's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_batch_settlement_client_buys_50_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = world(dir, SafetyCaps::default()).await;
    let script = common::client_script(dir).with_file_name("pay-batch.mjs");
    let bodies: Vec<Value> = (0..50).map(|i| body(&format!("leaf-{i}"))).collect();
    let bodies_file = dir.join("bodies.json");
    std::fs::write(&bodies_file, serde_json::to_vec(&bodies).unwrap()).unwrap();
    let buyer_before = w.balance(w.buyer.address()).await;
    let args = [
        "--url".to_string(),
        w.url.clone(),
        "--key".into(),
        alloy::hex::encode_prefixed(w.buyer.to_bytes()),
        "--rpc".into(),
        w.anvil.url.to_string(),
        "--asset".into(),
        w.chain.asset.address.to_checksum(None),
        "--max-amount".into(),
        MIN_DEPOSIT.to_string(),
        "--bodies".into(),
        bodies_file.to_string_lossy().into_owned(),
    ];
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").arg(&script).args(&args).output())
            .await
            .unwrap()
            .expect("node runs (run scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let reply: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("the stock client bought 50 tasks in {} ms", reply["ms"]);
    assert_eq!(reply["statuses"].as_array().unwrap().len(), 50);
    assert!(
        reply["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == 200),
        "{}",
        reply["statuses"]
    );
    assert_eq!(reply["charged"], (50 * PRICE).to_string());
    let responses = reply["paymentResponses"].as_array().unwrap();
    assert!(
        responses[0]["transaction"]
            .as_str()
            .unwrap()
            .starts_with("0x"),
        "the first pays by deposit"
    );
    assert!(
        responses[1..].iter().all(|r| r["transaction"] == ""),
        "the rest by voucher"
    );
    assert_eq!(
        responses[49]["extra"]["channelState"]["chargedCumulativeAmount"],
        (50 * PRICE).to_string()
    );

    // Nothing was sent by the buyer: the deposit is gasless.
    assert_eq!(w.anvil.tx_count(w.buyer.address()).await.unwrap(), 0);
    assert_eq!(
        w.balance(w.buyer.address()).await,
        buyer_before - MIN_DEPOSIT
    );

    // One claim transaction for all 50, swept to the wallet; the worker paid out of it.
    let sent = w.rail.claim_all().await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let channels = w.rail.channels().unwrap();
    assert_eq!(channels.len(), 1);
    let ch = &channels[0];
    assert_eq!(
        (ch.charged.get(), ch.total_claimed.get()),
        (50 * PRICE, 50 * PRICE)
    );
    let settlement = BatchSettlement::new(SETTLEMENT_ADDRESS, w.anvil.provider(&w.gateway_key));
    let on_chain = settlement.channels(ch.id).call().await.unwrap();
    assert_eq!(
        (on_chain.balance, on_chain.totalClaimed),
        (MIN_DEPOSIT, 50 * PRICE)
    );
    assert_eq!(
        w.balance(SETTLEMENT_ADDRESS).await,
        MIN_DEPOSIT - 50 * PRICE
    );
    let fee = PRICE * u128::from(FEE_BPS) / 10_000;
    eventually(Duration::from_secs(30), "the worker's pay", || async {
        w.balance(w.worker).await == 50 * (PRICE - fee)
    })
    .await;
    assert_eq!(w.balance(w.gateway_key.address()).await, 50 * fee);
    let buyer_tasks = w.gw.store.all().unwrap();
    assert_eq!(
        buyer_tasks
            .iter()
            .filter(|t| t.state == d402_gateway::gateway::TaskState::Delivered)
            .count(),
        50
    );

    // The stock client's cooperative refund (a fresh client process: it recovers the channel
    // from the chain) returns what was not spent.
    let script = dir.join("x402-client").join("pay-batch.mjs");
    let args = [
        "--url".to_string(),
        w.url.clone(),
        "--key".into(),
        alloy::hex::encode_prefixed(w.buyer.to_bytes()),
        "--rpc".into(),
        w.anvil.url.to_string(),
        "--asset".into(),
        w.chain.asset.address.to_checksum(None),
        "--count".into(),
        "0".into(),
        "--refund".into(),
    ];
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").arg(&script).args(&args).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let reply: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        reply["refund"]["amount"],
        (MIN_DEPOSIT - 50 * PRICE).to_string(),
        "{reply}"
    );
    assert_eq!(
        w.balance(w.buyer.address()).await,
        buyer_before - 50 * PRICE
    );
    assert_eq!(w.balance(SETTLEMENT_ADDRESS).await, 0);
}

/// The same through `d402 client --scheme batch-settlement` (the binary, its channel under
/// `--state`), and `d402 client refund`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn d402_client_buys_by_channel_and_refunds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let w = world(dir, SafetyCaps::default()).await;
    let d402 = env!("CARGO_BIN_EXE_d402");
    let key = alloy::hex::encode(w.buyer.to_bytes());
    let state = dir.join("client");
    let before = w.balance(w.buyer.address()).await;
    for i in 0..50 {
        let input = merkle_input(&format!("client-{i}"));
        let (d402, url, key, state) = (d402.to_string(), w.url.clone(), key.clone(), state.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(d402)
                .args([
                    "client",
                    "run",
                    "--gateway",
                    &url,
                    "--capability",
                    MERKLE,
                    "--input",
                    &input,
                ])
                .args(["--wallet", &key, "--scheme", "batch-settlement", "--state"])
                .arg(&state)
                .args(["--max-spend", "$0.01", "--max-deposit", "$1"])
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "task {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(w.anvil.tx_count(w.buyer.address()).await.unwrap(), 0);
    assert_eq!(w.balance(w.buyer.address()).await, before - MIN_DEPOSIT);
    let ch = &w.rail.channels().unwrap()[0];
    assert_eq!(ch.charged.get(), 50 * PRICE);

    let (d402, url) = (d402.to_string(), w.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(d402)
            .args([
                "client",
                "refund",
                "--gateway",
                &url,
                "--wallet",
                &key,
                "--state",
            ])
            .arg(&state)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refund: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        refund["amount"],
        (MIN_DEPOSIT - 50 * PRICE).to_string(),
        "{refund}"
    );
    // The refund claimed first: what was charged is the gateway's, the rest is back.
    assert_eq!(w.balance(w.buyer.address()).await, before - 50 * PRICE);
    let settlement = BatchSettlement::new(SETTLEMENT_ADDRESS, w.anvil.provider(&w.gateway_key));
    let on_chain = settlement.channels(ch.id).call().await.unwrap();
    assert_eq!(
        (on_chain.balance, on_chain.totalClaimed),
        (50 * PRICE, 50 * PRICE)
    );
    let fee = PRICE * u128::from(FEE_BPS) / 10_000;
    eventually(Duration::from_secs(30), "the worker's pay", || async {
        w.balance(w.worker).await == 50 * (PRICE - fee)
    })
    .await;
}

/// Every refusal, each with the scheme's reason (or the corrective 402), and nothing charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_vouchers_and_deposits_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let caps = SafetyCaps {
        max_channel_initial_funding: Some(Atomic::new(2 * MIN_DEPOSIT)),
        max_channel_balance: Some(Atomic::new(3 * MIN_DEPOSIT)),
        ..SafetyCaps::default()
    };
    let w = world(tmp.path(), caps).await;
    let req = challenge(&w).await;
    let extra = req.extra.clone().unwrap();
    assert_eq!(
        extra["receiverAuthorizer"],
        w.gateway_key.address().to_checksum(None)
    );
    assert_eq!(extra["withdrawDelay"], DELAY);
    assert_eq!(extra["minDeposit"], MIN_DEPOSIT.to_string());
    let config = payer::channel_for(w.buyer.address(), &req, B256::ZERO).unwrap();
    let valid_before = w.anvil.now().await.unwrap() + 600;
    let deposit = |amount: u128, ceiling: u128, salt: u64| {
        payer::deposit(
            &w.buyer,
            &req,
            &config,
            Atomic::new(amount),
            Atomic::new(ceiling),
            valid_before,
            U256::from(salt),
        )
        .unwrap()
    };
    let voucher = |ceiling: u128| BatchPayload::Voucher {
        channel_config: config,
        voucher: payer::sign_voucher(&w.buyer, &config, 31337, Atomic::new(ceiling)).unwrap(),
    };

    // A voucher for a channel nobody deposited into.
    let r = post(&w.url, &body("a"), Some(&voucher(PRICE)), Some(&req)).await;
    assert_eq!(r.status, 402);
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_channel_not_found",
        "{}",
        r.body
    );

    // A deposit above the initial-funding cap.
    let r = post(
        &w.url,
        &body("a"),
        Some(&deposit(2 * MIN_DEPOSIT + 1, PRICE, 1)),
        Some(&req),
    )
    .await;
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_deposit_above_cap",
        "{}",
        r.body
    );
    assert_eq!(w.balance(SETTLEMENT_ADDRESS).await, 0);

    // The first task, by a deposit of two tasks' worth (a server does not refuse a deposit
    // below its announced minimum).
    let r = post(
        &w.url,
        &body("a"),
        Some(&deposit(2 * PRICE, PRICE, 2)),
        Some(&req),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.response.as_ref().unwrap()["extra"]["chargedAmount"],
        PRICE.to_string()
    );
    // The same deposit again: its voucher was charged, so the client is put back in step, and
    // nothing is deposited twice.
    let r = post(
        &w.url,
        &body("b"),
        Some(&deposit(2 * PRICE, PRICE, 2)),
        Some(&req),
    )
    .await;
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_cumulative_amount_mismatch",
        "{}",
        r.body
    );
    assert_eq!(w.balance(SETTLEMENT_ADDRESS).await, 2 * PRICE);
    // The next voucher pays.
    let second = voucher(2 * PRICE);
    let r = post(&w.url, &body("b"), Some(&second), Some(&req)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A replayed voucher: refused with the corrective 402 (a client whose answer was lost
    // re-sends the same bytes, and is told it was charged), nothing charged.
    let r = post(&w.url, &body("c"), Some(&second), Some(&req)).await;
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_cumulative_amount_mismatch",
        "{}",
        r.body
    );
    // A voucher below what was charged: the corrective 402 carries the channel's state and the
    // last voucher the payer signed.
    let r = post(&w.url, &body("c"), Some(&voucher(PRICE)), Some(&req)).await;
    assert_eq!(r.status, 402);
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_cumulative_amount_mismatch",
        "{}",
        r.body
    );
    let accepts = &r.required.unwrap().accepts[0];
    let e = accepts.extra.as_ref().unwrap();
    assert_eq!(
        e["channelState"]["chargedCumulativeAmount"],
        (2 * PRICE).to_string()
    );
    assert_eq!(
        e["voucherState"]["signedMaxClaimable"],
        (2 * PRICE).to_string()
    );
    // The third task's voucher is above what the channel holds.
    let r = post(&w.url, &body("c"), Some(&voucher(3 * PRICE)), Some(&req)).await;
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_cumulative_exceeds_balance",
        "{}",
        r.body
    );
    // A top-up over the balance cap.
    let r = post(
        &w.url,
        &body("c"),
        Some(&deposit(3 * MIN_DEPOSIT, 3 * PRICE, 3)),
        Some(&req),
    )
    .await;
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_deposit_above_cap",
        "{}",
        r.body
    );
    // A voucher signed by someone else.
    let forged = BatchPayload::Voucher {
        channel_config: config,
        voucher: payer::sign_voucher(&w.spare[0], &config, 31337, Atomic::new(3 * PRICE)).unwrap(),
    };
    let r = post(&w.url, &body("c"), Some(&forged), Some(&req)).await;
    assert_eq!(
        r.body["code"], "invalid_batch_settlement_evm_voucher_signature",
        "{}",
        r.body
    );

    // Exactly two tasks were charged.
    let ch = &w.rail.channels().unwrap()[0];
    assert_eq!((ch.charged.get(), ch.balance.get()), (2 * PRICE, 2 * PRICE));
    w.rail.claim_all().await.unwrap();
    let settlement = BatchSettlement::new(SETTLEMENT_ADDRESS, w.anvil.provider(&w.gateway_key));
    assert_eq!(
        settlement
            .channels(ch.id)
            .call()
            .await
            .unwrap()
            .totalClaimed,
        2 * PRICE
    );
}

/// A payer starts a withdrawal: the gateway's upkeep claims what was spent before the delay
/// ends, and the payer takes the rest after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_is_claimed_ahead_and_the_payer_gets_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let w = world(tmp.path(), SafetyCaps::default()).await;
    let req = challenge(&w).await;
    let config = payer::channel_for(w.buyer.address(), &req, B256::ZERO).unwrap();
    let valid_before = w.anvil.now().await.unwrap() + 600;
    let first = payer::deposit(
        &w.buyer,
        &req,
        &config,
        Atomic::new(MIN_DEPOSIT),
        Atomic::new(PRICE),
        valid_before,
        U256::from(1),
    )
    .unwrap();
    assert_eq!(
        post(&w.url, &body("w1"), Some(&first), Some(&req))
            .await
            .status,
        200
    );
    for i in 2..=3u128 {
        let v = BatchPayload::Voucher {
            channel_config: config,
            voucher: payer::sign_voucher(&w.buyer, &config, 31337, Atomic::new(i * PRICE)).unwrap(),
        };
        assert_eq!(
            post(&w.url, &body(&format!("w{i}")), Some(&v), Some(&req))
                .await
                .status,
            200
        );
    }
    let start = w.balance(w.buyer.address()).await;
    let as_buyer = BatchSettlement::new(SETTLEMENT_ADDRESS, w.anvil.provider(&w.buyer));
    let cfg = config.to_contract().unwrap();
    as_buyer
        .initiateWithdraw(cfg.clone(), MIN_DEPOSIT - 3 * PRICE)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // The gateway's upkeep sees the clock running and claims at once (its window is an hour).
    let id = batch::channel_id(&config, 31337).unwrap();
    eventually(
        Duration::from_secs(30),
        "the claim ahead of the withdrawal",
        || async { as_buyer.channels(id).call().await.unwrap().totalClaimed == 3 * PRICE },
    )
    .await;
    w.anvil.advance_time(DELAY + 1).await.unwrap();
    as_buyer
        .finalizeWithdraw(cfg)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(
        w.balance(w.buyer.address()).await,
        start + MIN_DEPOSIT - 3 * PRICE
    );
    let fee = PRICE * u128::from(FEE_BPS) / 10_000;
    eventually(Duration::from_secs(30), "the worker's pay", || async {
        w.balance(w.worker).await == 3 * (PRICE - fee)
    })
    .await;
    assert_eq!(w.balance(w.gateway_key.address()).await, 3 * fee);
}
