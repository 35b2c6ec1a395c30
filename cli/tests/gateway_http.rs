//! The gateway end to end over real HTTP: a real anvil with the test token, real nodes on
//! 127.0.0.1 (bootstrap, worker, validator, gateway), a buyer paying x402 v2 challenges with
//! EIP-3009 signatures, and balances read back from the chain.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use d402_core::Identity;
use d402_gateway::gateway::api::{self, PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use d402_gateway::gateway::{Gateway, SalePolicy};
use d402_gateway::release::EscrowReleaseSigner;
use d402_network_support::*;
use d402_node::{Node, NodeConfig, Offer};
use d402_rails::evm::EvmChain;
use d402_rails::evm::buyer::{self, AuthorizationKind};
use d402_rails::evm::direct::BaseDirect;
use d402_rails::evm::escrow::BaseTaskEscrow;
use d402_rails::{Atomic, GatewayFee, Outbox, PaymentPayload, PaymentRequired, Rail, SafetyCaps};
use d402_registry::registration::{Terms, register};
use d402_registry::{AcceptancePolicy, CreatorWallets};
use serde_json::{Value, json};

use common::{BUYER_FUNDS, Chain, chain};

const PRICE: u128 = 10_000; // $0.01 of a 6-decimals token

fn b64(v: &impl serde::Serialize) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
}

fn unb64<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn publisher() -> Identity {
    Identity::from_seed([42; 32])
}

/// Publishes merkle.verify_proof@1 from `node` with the given commission and creator wallet.
fn merkle_with_commission(node: &Node, bps: u32, creator: Option<Address>, sign: bool) -> Offer {
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let manifest = manifest(MERKLE, &bytes);
    let mut registration = register(
        &manifest,
        &publisher(),
        Terms {
            namespace: manifest.namespace().to_string(),
            namespace_proof: None,
            creator_commission_bps: bps,
            creator_wallets: CreatorWallets {
                solana: None,
                evm: creator.map(|c| c.to_checksum(None)),
            },
            issued_at: 1_767_225_600_000,
        },
    )
    .unwrap();
    if !sign {
        registration.signature = "00".repeat(64);
    }
    if sign {
        Offer::publish(node.coordinator().store(), registration, manifest, &bytes).unwrap()
    } else {
        // `Offer::publish` checks the signature itself; an unsigned offer is built by hand to
        // show the gateway refuses it on its own.
        let (manifest_cid, _) = manifest.canonical().unwrap();
        Offer {
            registration_cid: registration.cid().unwrap(),
            registration,
            manifest,
            manifest_cid,
        }
    }
}

fn trust_publisher(namespaces: &[&str]) -> AcceptancePolicy {
    let mut p = AcceptancePolicy::default();
    for ns in namespaces {
        p = p.trust(ns, &publisher().public_id());
    }
    p.required_rails = vec![d402_registry::wallet::Rail::Evm];
    p
}

/// A local network: bootstrap, one merkle worker paid at `worker_wallet`, a validator, and the
/// gateway's own node.
struct Network {
    _nodes: Vec<Node>,
    gateway_node: Node,
}

async fn network(dir: &std::path::Path, worker_wallet: Address) -> Network {
    network_with_release(dir, worker_wallet, None).await
}

/// [`network`], with the validator holding an escrow release key.
async fn network_with_release(
    dir: &std::path::Path,
    worker_wallet: Address,
    release: Option<Arc<dyn d402_node::ReleaseSigner>>,
) -> Network {
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.evm = Some(worker_wallet.to_checksum(None));
    let worker = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let mut config = NodeConfig::new("validator", dir.join("validator"));
    config.peers = vec![bootstrap.listen_addr()];
    config.validate = [MERKLE.to_string()].into();
    config.release_signer = release;
    let validator = Node::start(config).await.expect("validator starts");
    let gateway_node = start(dir, "gateway", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &worker, &validator, &gateway_node];
    for n in everyone {
        wait_discovered(n, &everyone).await;
    }
    Network {
        _nodes: vec![bootstrap, worker, validator],
        gateway_node,
    }
}

/// A gateway served on a free port of 127.0.0.1 and resumed; returns its base URL.
async fn serve(
    dir: &std::path::Path,
    node: &Node,
    rail: Arc<dyn Rail>,
    offers: Vec<Offer>,
    acceptance: AcceptancePolicy,
    policy: SalePolicy,
) -> (String, Arc<Gateway>) {
    let (url, gw) = common::serve(dir, node, rail, offers, acceptance, policy).await;
    gw.resume().await.unwrap();
    (url, gw)
}

fn policy(c: &Chain, pay_to: Address) -> SalePolicy {
    SalePolicy {
        price: Atomic::new(PRICE),
        worker_budget: Atomic::new(PRICE),
        pay_to: pay_to.to_checksum(None),
        asset: c.chain.asset.address.to_checksum(None),
        max_input_bytes: 4096,
        ..SalePolicy::default()
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// A `base-x402-direct` gateway selling merkle with a 5 % fee (changed by `policy`), paying out of
/// the facilitator's wallet (`pay_to`) to one worker paid at `worker`.
struct Direct {
    url: String,
    gw: Arc<Gateway>,
    outbox: Outbox,
    pay_to: Address,
    worker: Address,
    _net: Network,
}

async fn direct_gateway(
    dir: &std::path::Path,
    c: &Chain,
    policy: impl FnOnce(SalePolicy) -> SalePolicy,
) -> Direct {
    let pay_to = c.facilitator.address();
    let worker = c.others[1].address();
    let net = network(dir, worker).await;
    let outbox = Outbox::open(&dir.join("outbox.redb")).unwrap();
    let rail = Arc::new(BaseDirect::new(
        c.chain.clone(),
        &c.facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    ));
    let (url, gw) = serve(
        dir,
        &net.gateway_node,
        rail,
        vec![merkle_offer(&net.gateway_node)],
        trust_publisher(&["merkle"]),
        policy(SalePolicy {
            gateway_fee: GatewayFee::Bps(500),
            ..self::policy(c, pay_to)
        }),
    )
    .await;
    Direct {
        url,
        gw,
        outbox,
        pay_to,
        worker,
        _net: net,
    }
}

async fn post_task(url: &str, body: &Value, payment: Option<&PaymentPayload>) -> Reply {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/tasks"))
        .json(body);
    if let Some(p) = payment {
        req = req.header(PAYMENT_SIGNATURE, b64(p));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

fn challenge_of(r: &Reply) -> PaymentRequired {
    assert_eq!(r.status, 402, "{}", r.body);
    unb64(r.headers[PAYMENT_REQUIRED].to_str().unwrap())
}

fn with_payment_id(mut p: PaymentPayload, id: &str) -> PaymentPayload {
    let mut v = serde_json::to_value(&p).unwrap();
    v["extensions"] = json!({"payment-identifier": {"info": {"id": id}}});
    p = serde_json::from_value(v).unwrap();
    p
}

/// `base-x402-direct`: discovery, a paid merkle task end to end with the money on chain (buyer
/// −price, worker +net, gateway +fee), and every way a payment is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_rail_sells_a_task_and_refuses_bad_payments() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    // payTo is the facilitator's wallet: it pays the worker's net out of what it received.
    let Direct {
        url,
        gw,
        pay_to,
        worker,
        _net,
        ..
    } = direct_gateway(tmp.path(), &c, |p| p).await;
    let http = reqwest::Client::new();

    // Discovery.
    let health: Value = common::get_json(&format!("{url}/health")).await;
    assert_eq!(health["status"], "ok");
    let wk: Value = common::get_json(&format!("{url}/.well-known/d402-gateway.json")).await;
    assert_eq!(wk["capabilities"][0]["id"], MERKLE);
    assert_eq!(wk["capabilities"][0]["price"], PRICE.to_string());
    assert_eq!(wk["capabilities"][0]["mode"], "single");
    assert_eq!(wk["paymentRails"][0]["name"], "base-x402-direct");
    assert_eq!(wk["paymentRails"][0]["network"], "eip155:31337");
    let spec: Value = common::get_json(&format!("{url}/openapi.json")).await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    assert!(spec["paths"]["/tasks"]["post"].is_object());

    // 402 with a v2 challenge; the client's own "price" is ignored (server-owned policy).
    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("leaf-1")).unwrap(), "price": "1"});
    let r = post_task(&url, &body, None).await;
    let required = challenge_of(&r);
    assert_eq!(required.accepts.len(), 1);
    let req = required.accepts[0].clone();
    assert_eq!(req.scheme, "exact");
    assert_eq!(req.amount, PRICE.to_string());
    assert_eq!(req.network.to_string(), "eip155:31337");
    assert_eq!(req.extra.as_ref().unwrap()["name"], "Test USD");
    assert!(required.resource.unwrap().url.ends_with("/tasks"));

    // Pay: 200 with the validated result and a receipt; money moved buyer → payTo, the worker's
    // net is owed on delivery and paid payTo → worker in the next payout batch.
    let paid = Instant::now();
    let payment = with_payment_id(
        buyer::pay_exact(&c.buyer, &req, now()).unwrap(),
        "pay_0123456789abcdef",
    );
    let r = post_task(&url, &body, Some(&payment)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    eprintln!("paid merkle task on base-x402-direct: {:?}", paid.elapsed());
    assert_eq!(r.body["status"], "delivered");
    assert_eq!(r.body["result"]["valid"], true, "{}", r.body);
    assert!(r.body["receipt"]["signature"].is_string());
    assert!(r.body["verdict"]["signature"].is_string());
    let pr: Value = unb64(r.headers[api::PAYMENT_RESPONSE].to_str().unwrap());
    assert_eq!(pr["success"], true);
    const FEE: u128 = PRICE * 500 / 10_000;
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS - PRICE);
    let owed = &r.body["payment"]["workerPay"];
    assert_eq!(owed["shares"][0]["to"], worker.to_checksum(None), "{owed}");
    assert_eq!(owed["shares"][0]["amount"], (PRICE - FEE).to_string());
    let task_url = r.body["url"].as_str().unwrap().to_string();
    let pay = common::worker_paid(&task_url).await;
    assert_eq!(pay["txHashes"].as_array().unwrap().len(), 1, "{pay}");
    assert_eq!(c.balance(worker).await, PRICE - FEE);
    assert_eq!(c.balance(pay_to).await, FEE);
    let got: Value = common::get_json(&task_url).await;
    assert_eq!(got["status"], "delivered");
    let result: Value = common::get_json(&format!("{task_url}/result")).await;
    assert_eq!(result["valid"], true);
    let receipt = http
        .get(format!("{task_url}/receipt"))
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), 200);

    // Same payment-identifier, same payload: the stored response, charged once.
    let again = post_task(&url, &body, Some(&payment)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["x-d402-idempotent-replay"], "true");
    assert_eq!(again.body["taskId"], r.body["taskId"]);
    assert_eq!(c.balance(pay_to).await, FEE);
    assert_eq!(c.balance(worker).await, PRICE - FEE);

    // Same id, different payload: 409.
    let other = with_payment_id(
        buyer::pay_exact(&c.buyer, &req, now()).unwrap(),
        "pay_0123456789abcdef",
    );
    let conflict = post_task(&url, &body, Some(&other)).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.body["code"], "payment_identifier_conflict");

    // The same payment without the id: a replay, refused with a fresh challenge.
    let mut bare = payment.clone();
    bare.extensions = Default::default();
    let replay = post_task(&url, &body, Some(&bare)).await;
    assert_eq!(replay.status, 402);
    assert_eq!(replay.body["code"], "authorization_already_used");
    assert_eq!(
        challenge_of(&replay).error.as_deref(),
        Some("authorization_already_used")
    );

    // Refusals, each with its x402 reason; nothing moves.
    let under = {
        let mut cheaper = req.clone();
        cheaper.amount = (PRICE - 1).to_string();
        let mut p = buyer::pay_exact(&c.buyer, &cheaper, now()).unwrap();
        p.accepted = req.clone();
        p
    };
    let wrong_asset = {
        let mut r2 = req.clone();
        r2.asset = c.others[5].address().to_checksum(None);
        buyer::pay_exact(&c.buyer, &r2, now()).unwrap()
    };
    let wrong_network = {
        let mut r2 = req.clone();
        r2.network = "eip155:8453".parse().unwrap();
        buyer::pay_exact(&c.buyer, &r2, now()).unwrap()
    };
    let expired = buyer::sign_authorization(
        &c.buyer,
        &req,
        AuthorizationKind::Transfer,
        now() - 4000,
        now() - 3000,
        buyer::random_nonce().unwrap(),
    )
    .unwrap();
    let bad_signature = {
        let mut p = buyer::pay_exact(&c.buyer, &req, now()).unwrap();
        let sig = p.payload["signature"].as_str().unwrap().to_string();
        // Change one hex digit of `r`: the signature then recovers to someone else (or no one).
        let digit = if &sig[10..11] == "a" { "b" } else { "a" };
        p.payload["signature"] = json!(format!("{}{digit}{}", &sig[..10], &sig[11..]));
        p
    };
    for (name, p, reason) in [
        (
            "underpayment",
            under,
            "invalid_exact_evm_payload_authorization_value",
        ),
        ("wrong asset", wrong_asset, "asset_mismatch"),
        ("wrong network", wrong_network, "invalid_network"),
        (
            "expired",
            expired,
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "bad signature",
            bad_signature,
            "invalid_exact_evm_payload_signature",
        ),
    ] {
        let r = post_task(&url, &body, Some(&p)).await;
        assert_eq!(r.status, 402, "{name}: {}", r.body);
        assert_eq!(r.body["code"], reason, "{name}: {}", r.body);
        assert_eq!(challenge_of(&r).error.as_deref(), Some(reason), "{name}");
    }
    assert_eq!(c.balance(pay_to).await, FEE);
    assert_eq!(c.balance(worker).await, PRICE - FEE);

    // Server-owned input policy: loopback URLs and oversize bodies are refused before a challenge.
    let r = post_task(
        &url,
        &json!({"capability": PAGE, "input": {"url": "http://127.0.0.1/"}}),
        None,
    )
    .await;
    assert_eq!(r.status, 404, "page is not sold here: {}", r.body);
    let big = json!({"capability": MERKLE, "input": {"x": "a".repeat(10_000)}});
    let r = post_task(&url, &big, None).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("d402_replay_rejections_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("d402_payment_id_conflicts_total 1"),
        "{metrics}"
    );
    // What an operator's monitor makes of it: the replay and the reused payment-identifier
    // (the stored response and the 409) are events; nothing is stuck or owed.
    let snapshot = gw.ops_snapshot().unwrap();
    assert_eq!(snapshot.tasks_in_flight, 0);
    assert!(snapshot.pending_settlements.is_empty(), "{snapshot:?}");
    let alerts = d402_gateway::ops::evaluate(
        &snapshot,
        snapshot.written_ms,
        &Default::default(),
        &Default::default(),
        &[],
    );
    let codes: Vec<&str> = alerts.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["replay-rejections", "duplicate-payment-attempts"]);
    assert!(alerts[1].message.starts_with("2 "), "{}", alerts[1].message);
    eprintln!("direct rail test: {:?}", t0.elapsed());
}

/// `base-x402-direct` under load: the worker pay of tasks delivered within one payout window
/// goes out as one transfer per worker for the whole batch, not one per task, and every task
/// shows the batch that paid it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_rail_pays_workers_in_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let Direct {
        url,
        gw,
        outbox,
        pay_to,
        worker,
        _net,
    } = direct_gateway(tmp.path(), &c, |p| SalePolicy {
        payout_window: Duration::from_secs(3),
        ..p
    })
    .await;
    const TASKS: usize = 4;
    const NET: u128 = PRICE - PRICE * 500 / 10_000;
    let mut paid = Vec::new();
    for i in 0..TASKS {
        let url = url.clone();
        let buyer = c.buyer.clone();
        paid.push(tokio::spawn(async move {
            let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input(&format!("leaf-b{i}"))).unwrap()});
            let req = challenge_of(&post_task(&url, &body, None).await).accepts[0].clone();
            let payment = buyer::pay_exact(&buyer, &req, now()).unwrap();
            post_task(&url, &body, Some(&payment)).await
        }));
    }
    let mut batches = std::collections::BTreeSet::new();
    let mut transactions = std::collections::BTreeSet::new();
    for p in paid {
        let r = p.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let pay = common::worker_paid(r.body["url"].as_str().unwrap()).await;
        assert_eq!(pay["shares"][0]["amount"], NET.to_string(), "{pay}");
        batches.insert(pay["batch"].as_str().unwrap().to_string());
        for tx in pay["txHashes"].as_array().unwrap() {
            transactions.insert(tx.as_str().unwrap().to_string());
        }
    }
    assert_eq!(c.balance(worker).await, NET * TASKS as u128);
    assert_eq!(c.balance(pay_to).await, (PRICE - NET) * TASKS as u128);
    // Fewer payouts than tasks: one transfer per worker per batch.
    assert_eq!(
        batches.len(),
        transactions.len(),
        "{batches:?} {transactions:?}"
    );
    assert!(transactions.len() < TASKS, "{transactions:?}");
    let payouts: Vec<_> = outbox
        .all()
        .unwrap()
        .into_iter()
        .filter(|r| r.id.starts_with("payout:"))
        .collect();
    assert_eq!(payouts.len(), transactions.len());
    // Paying again finds nothing owed and pays nobody twice.
    assert_eq!(gw.pay_owed().await.unwrap(), 0);
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "d402_tasks_in_flight 0",
        "d402_worker_pay_owed_atomic 0",
        "d402_payout_batches_unpaid 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}: {metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("d402_payout_batches_paid_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(gw.store.owed().unwrap().is_empty());
    assert!(gw.store.unpaid_batches().unwrap().is_empty());
    assert_eq!(c.balance(worker).await, NET * TASKS as u128);
}

/// The incident switch (seed 000, "Incident shutdown"): while its file exists no challenge is
/// issued and no new payment is taken, even one signed against an earlier challenge; a paid
/// task's stored answer is still given and its worker pay still goes out. Removed, selling
/// resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_incident_switch_stops_new_sales_while_paid_work_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let switch = tmp.path().join("INCIDENT");
    let Direct {
        url,
        gw,
        pay_to,
        worker,
        _net,
        ..
    } = direct_gateway(tmp.path(), &c, |p| SalePolicy {
        payout_window: Duration::from_secs(2),
        incident_file: Some(switch.clone()),
        ..p
    })
    .await;
    let body = |leaf: &str| json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input(leaf)).unwrap()});
    let req = challenge_of(&post_task(&url, &body("i-1"), None).await).accepts[0].clone();
    let paid = with_payment_id(
        buyer::pay_exact(&c.buyer, &req, now()).unwrap(),
        "pay_incident_0123456789",
    );
    let r = post_task(&url, &body("i-1"), Some(&paid)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Signed against a challenge issued before the switch, sent after it.
    let unsent = buyer::pay_exact(&c.buyer, &req, now()).unwrap();

    std::fs::write(&switch, b"").unwrap();
    let health: Value = common::get_json(&format!("{url}/health")).await;
    assert_eq!(health["incident"], true);
    let r = post_task(&url, &body("i-2"), None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["code"], "incident_shutdown");
    assert!(!r.headers.contains_key(PAYMENT_REQUIRED));
    let r = post_task(&url, &body("i-2"), Some(&unsent)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // Nor does the gateway settle for other x402 servers.
    let settle = reqwest::Client::new()
        .post(format!("{url}/x402/settle"))
        .json(&json!({"x402Version": 2, "paymentPayload": unsent, "paymentRequirements": req}))
        .send()
        .await
        .unwrap();
    assert_eq!(settle.status(), 503);
    assert_eq!(
        c.balance(c.buyer.address()).await,
        BUYER_FUNDS - PRICE,
        "nothing new taken"
    );
    // The paid task's retry is still answered, and its worker is still paid.
    let again = post_task(&url, &body("i-1"), Some(&paid)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.headers["x-d402-idempotent-replay"], "true");
    common::worker_paid(again.body["url"].as_str().unwrap()).await;
    assert_eq!(c.balance(worker).await, PRICE - PRICE * 500 / 10_000);
    assert_eq!(c.balance(pay_to).await, PRICE * 500 / 10_000);
    assert!(gw.incident());

    // Switched off: challenges again.
    std::fs::remove_file(&switch).unwrap();
    let r = post_task(&url, &body("i-2"), None).await;
    assert_eq!(r.status, 402, "{}", r.body);
}

/// `base-x402-direct`, a paid task that fails (its output is over the gateway's limit): the
/// buyer is paid back in full out of `payTo`, the task ends `refunded`, the worker is not paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_rail_refunds_a_failed_task() {
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let Direct {
        url,
        gw,
        outbox,
        pay_to,
        worker,
        _net,
    } = direct_gateway(tmp.path(), &c, |p| SalePolicy {
        max_output_bytes: 1,
        ..p
    })
    .await;
    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("leaf-r")).unwrap()});
    let req = challenge_of(&post_task(&url, &body, None).await).accepts[0].clone();
    let payment = buyer::pay_exact(&c.buyer, &req, now()).unwrap();
    let r = post_task(&url, &body, Some(&payment)).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["status"], "refunded", "{}", r.body);
    assert!(r.body["result"].is_null());
    assert!(
        r.body["error"].as_str().unwrap().contains("exceeds"),
        "{}",
        r.body
    );
    let refund = &r.body["payment"]["refund"];
    assert_eq!(
        refund["payouts"][0]["to"],
        c.buyer.address().to_checksum(None)
    );
    assert_eq!(refund["payouts"][0]["amount"], PRICE.to_string());
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS);
    assert_eq!(c.balance(pay_to).await, 0);
    assert_eq!(c.balance(worker).await, 0);
    // The refund went through the outbox, confirmed; resuming again pays nothing more.
    let refunds: Vec<_> = outbox
        .all()
        .unwrap()
        .into_iter()
        .filter(|r| r.id.starts_with("payout:"))
        .collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].state, d402_rails::SettlementState::Confirmed);
    assert_eq!(gw.resume().await.unwrap(), 0, "nothing is left in flight");
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS);
}

/// `base-task-escrow` with a commission-bearing capability: the escrow is funded by the
/// buyer's authorization, and after the validator accepts, worker, creator and gateway are paid
/// the split on chain. A safety cap that the next challenge would exceed refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn escrow_rail_pays_the_split_and_caps_refuse_challenges() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let worker = c.others[1].address();
    let creator = c.others[2].address();
    let gateway_wallet = c.others[3].address();
    let release_signer = c.others[4].clone();
    let escrow = BaseTaskEscrow::deploy(
        &c.anvil.provider(&c.deployer),
        c.chain.asset.address,
        release_signer.address(),
    )
    .await
    .unwrap();
    // The escrow's validator-role key is on the validator node, which signs the release of the
    // work it accepts; the gateway holds no key.
    let net = network_with_release(
        tmp.path(),
        worker,
        Some(Arc::new(EscrowReleaseSigner::new(release_signer.clone()))),
    )
    .await;
    let outbox = Outbox::open(&tmp.path().join("outbox.redb")).unwrap();
    // Room for exactly one open escrow.
    let caps = SafetyCaps {
        max_open_task_escrow_budget: Some(Atomic::new(PRICE)),
        ..SafetyCaps::default()
    };
    let rail = Arc::new(BaseTaskEscrow::new(
        c.chain.clone(),
        escrow,
        release_signer.address(),
        &c.facilitator,
        gateway_wallet,
        outbox.clone(),
        caps,
    ));
    let offer = merkle_with_commission(&net.gateway_node, 1_000, Some(creator), true);
    let mut p = policy(&c, gateway_wallet);
    p.gateway_fee = GatewayFee::Bps(500);
    let (url, _gw) = serve(
        tmp.path(),
        &net.gateway_node,
        rail,
        vec![offer],
        trust_publisher(&["merkle"]),
        p,
    )
    .await;

    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("leaf-e")).unwrap()});
    let r = post_task(&url, &body, None).await;
    let req = challenge_of(&r).accepts[0].clone();
    assert_eq!(req.scheme, "d402-task-escrow");
    let payment = buyer::pay_escrow(&c.buyer, &req, now()).unwrap();

    // The money is bound to this task's input: paying it for another input is refused.
    let other = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("leaf-x")).unwrap()});
    let r = post_task(&url, &other, Some(&payment)).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.body["code"], "invalid_payment_requirements");

    let paid = Instant::now();
    let r = post_task(&url, &body, Some(&payment)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    eprintln!("paid merkle task on base-task-escrow: {:?}", paid.elapsed());
    assert_eq!(r.body["result"]["valid"], true);
    assert_eq!(
        r.body["verdict"]["release"]["workers"],
        json!([worker.to_checksum(None)]),
        "the validator signed the release: {}",
        r.body
    );
    assert!(
        r.body["payment"]["release"]["txHashes"][0].is_string(),
        "{}",
        r.body
    );
    // 10,000: creator 10 % = 1,000; gateway 5 % = 500; worker the rest.
    assert_eq!(c.balance(creator).await, 1_000);
    assert_eq!(c.balance(gateway_wallet).await, 500);
    assert_eq!(c.balance(worker).await, 8_500);
    assert_eq!(c.balance(escrow).await, 0);
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS - PRICE);

    // Replaying the funded payment is refused.
    let r = post_task(&url, &body, Some(&payment)).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.body["code"], "authorization_already_used");

    // The cap holds one open escrow: the released one no longer counts, so a second challenge
    // is issued; once that one is funded, a third would exceed the cap and is refused.
    let body2 = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("leaf-2")).unwrap()});
    let r = post_task(&url, &body2, None).await;
    let req2 = challenge_of(&r).accepts[0].clone();
    let funded = {
        // Fund the second escrow through the facilitator API, as another x402 server would:
        // the task stays open (nothing releases it).
        let payment2 = buyer::pay_escrow(&c.buyer, &req2, now()).unwrap();
        let res: Value = reqwest::Client::new()
            .post(format!("{url}/x402/settle"))
            .json(
                &json!({"x402Version": 2, "paymentPayload": payment2, "paymentRequirements": req2}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res
    };
    assert_eq!(funded["success"], true, "{funded}");
    let r = post_task(&url, &body2, None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["code"], "challenge_refused");
    assert!(r.headers.get(PAYMENT_REQUIRED).is_none());
    eprintln!("escrow rail test: {:?}", t0.elapsed());
}

/// Registration policy comes before any challenge: an untrusted namespace, an unsigned
/// registration when signatures are required, a commission above the cap, and a
/// commission-bearing capability on a direct rail are each refused with no challenge issued;
/// a task budget cap below the price refuses the challenge too. Needs no chain: nothing gets
/// as far as the rail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refusals_issue_no_challenge() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(tmp.path(), "gateway", &[], None, &[]).await;
    let chain = EvmChain {
        rpc_url: "http://127.0.0.1:9".parse().unwrap(),
        chain_id: 31337,
        asset: d402_rails::evm::Asset {
            address: Address::repeat_byte(7),
            name: "Test USD".into(),
            version: "2".into(),
            decimals: 6,
        },
    };
    let key = PrivateKeySigner::random();
    let creator = Address::repeat_byte(9);
    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("l")).unwrap()});
    let cases: Vec<(&str, Offer, AcceptancePolicy, SafetyCaps)> = vec![
        (
            "untrusted_namespace",
            merkle_offer(&node),
            trust_publisher(&["other"]),
            SafetyCaps::default(),
        ),
        (
            "unsigned_registration",
            merkle_with_commission(&node, 0, None, false),
            trust_publisher(&["merkle"]),
            SafetyCaps::default(),
        ),
        (
            "commission_above_cap",
            merkle_with_commission(&node, 2_500, Some(creator), true),
            trust_publisher(&["merkle"]),
            SafetyCaps::default(),
        ),
        (
            "commission_needs_split_settlement",
            merkle_with_commission(&node, 1_000, Some(creator), true),
            trust_publisher(&["merkle"]),
            SafetyCaps::default(),
        ),
        (
            "challenge_refused",
            merkle_offer(&node),
            trust_publisher(&["merkle"]),
            SafetyCaps {
                max_task_budget: Some(Atomic::new(PRICE - 1)),
                ..SafetyCaps::default()
            },
        ),
    ];
    for (i, (code, offer, acceptance, caps)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let outbox = Outbox::open(&dir.join("outbox.redb")).unwrap();
        let rail = Arc::new(BaseDirect::new(chain.clone(), &key, outbox.clone(), caps));
        let p = SalePolicy {
            price: Atomic::new(PRICE),
            pay_to: Address::repeat_byte(1).to_checksum(None),
            ..SalePolicy::default()
        };
        let (url, _gw) = common::serve(&dir, &node, rail, vec![offer], acceptance, p).await;
        let r = post_task(&url, &body, None).await;
        assert_eq!(r.status, 403, "{code}: {}", r.body);
        assert_eq!(r.body["code"], code, "{}", r.body);
        assert!(
            r.headers.get(PAYMENT_REQUIRED).is_none(),
            "{code}: no challenge"
        );
    }
    let _ = Duration::ZERO;
}
