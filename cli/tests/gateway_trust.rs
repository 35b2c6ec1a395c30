//! Trust beyond exact re-execution, sold over HTTP: a real anvil with the test token, real nodes
//! on 127.0.0.1, a buyer paying x402 `exact` challenges on `base-x402-direct`.
//! - A scoreable capability (the live page conversion, quorum 3) with one worker degrading its
//!   output: delivered with assurance `scored`, the outlier rejected and never paid.
//! - `--snapshot-check 1.0` on a scripted page served on loopback, with a worker that alters
//!   pages before freezing them and is leased first: refunded on chain under the `refund`
//!   policy, delivered marked `disputed` under `deliver-disputed`.
//! - A non-verifiable capability sold only to workers with a bond in `WorkerBond` on anvil.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use base64::Engine;
use d402_core::Identity;
use d402_gateway::gateway::api::{PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use d402_gateway::gateway::policy::{SnapshotCheckPolicy, SnapshotFailure};
use d402_gateway::gateway::{Gateway, SalePolicy};
use d402_gateway::worker_gate::BondGate;
use d402_loopback_server::{LoopbackServer, Reply as Page};
use d402_network_support::*;
use d402_node::{Fault, Node, Offer};
use d402_rails::evm::bond::WorkerBonds;
use d402_rails::evm::buyer;
use d402_rails::evm::direct::BaseDirect;
use d402_rails::{Atomic, Outbox, PaymentPayload, PaymentRequired, SafetyCaps};
use d402_registry::AcceptancePolicy;
use serde_json::{Value, json};

use common::{BUYER_FUNDS, Chain, chain};

const PRICE: u128 = 10_000;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Bootstrap, two honest workers and one `fault`y (cheapest, so leased first), each paid at
/// its own wallet, a validator of `capability`, and `gateways` gateway nodes (each with its own
/// reputation book).
struct Network {
    nodes: Vec<Node>,
    gateways: Vec<Node>,
    wallets: Vec<Address>,
    faulty: d402_node::PeerId,
}

async fn network(
    dir: &std::path::Path,
    c: &Chain,
    capability: &str,
    fault: Option<Fault>,
    gateways: usize,
) -> Network {
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut nodes = Vec::new();
    let mut wallets = Vec::new();
    for i in 0..3 {
        let mut config = worker_config(&[capability], fetch_snapshotter());
        let wallet = c.others[i].address();
        config.payout_wallets.evm = Some(wallet.to_checksum(None));
        if i == 2 {
            config.fault = fault;
            config.price = 0;
        }
        wallets.push(wallet);
        nodes.push(
            start(
                dir,
                &format!("worker-{i}"),
                &[&bootstrap],
                Some(config),
                &[],
            )
            .await,
        );
    }
    let faulty = nodes[2].peer_id();
    nodes.push(start(dir, "validator", &[&bootstrap], None, &[capability]).await);
    let mut gateway_nodes = Vec::new();
    for i in 0..gateways {
        gateway_nodes.push(start(dir, &format!("gateway-{i}"), &[&bootstrap], None, &[]).await);
    }
    nodes.push(bootstrap);
    let everyone: Vec<&Node> = nodes.iter().chain(&gateway_nodes).collect();
    for n in &everyone {
        wait_discovered(n, &everyone).await;
    }
    Network {
        nodes,
        gateways: gateway_nodes,
        wallets,
        faulty,
    }
}

fn acceptance() -> AcceptancePolicy {
    let publisher = Identity::from_seed([42; 32]).public_id();
    let mut p = AcceptancePolicy::default()
        .trust("web", &publisher)
        .trust("merkle", &publisher)
        .trust("compare", &publisher);
    p.required_rails = vec![d402_registry::wallet::Rail::Evm];
    p
}

/// A `base-x402-direct` gateway on `node` selling `offers` (plus the text comparator).
async fn gateway(
    dir: &std::path::Path,
    c: &Chain,
    node: &Node,
    offer: Offer,
    policy: impl FnOnce(SalePolicy) -> SalePolicy,
) -> (String, Arc<Gateway>) {
    std::fs::create_dir_all(dir).unwrap();
    let rail = Arc::new(BaseDirect::new(
        c.chain.clone(),
        &c.facilitator,
        Outbox::open(&dir.join("outbox.redb")).unwrap(),
        SafetyCaps::default(),
    ));
    let comparator = comparator_offer(node, artifacts::COMPARE_TEXT_COMPONENT);
    let (url, gw) = common::serve(
        dir,
        node,
        rail,
        vec![offer, comparator],
        acceptance(),
        policy(SalePolicy {
            price: Atomic::new(PRICE),
            worker_budget: Atomic::new(PRICE),
            pay_to: c.facilitator.address().to_checksum(None),
            asset: c.chain.asset.address.to_checksum(None),
            allow_private_targets: true,
            task_deadline: Duration::from_secs(60),
            wait: Duration::from_secs(60),
            ..SalePolicy::default()
        }),
    )
    .await;
    gw.resume().await.unwrap();
    (url, gw)
}

/// How the gateway at `url` lists `capability` in its well-known document.
async fn listed(url: &str, capability: &str) -> Value {
    let about: Value = reqwest::get(format!("{url}/.well-known/d402-gateway.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    about["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == capability)
        .cloned()
        .unwrap_or_else(|| panic!("{capability} not in {about}"))
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn post_task(url: &str, body: &Value, payment: Option<&PaymentPayload>) -> Reply {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/tasks"))
        .json(body);
    if let Some(p) = payment {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(p).unwrap());
        req = req.header(PAYMENT_SIGNATURE, encoded);
    }
    let res = req.send().await.unwrap();
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.json().await.unwrap_or(Value::Null),
    }
}

/// Pays for `body` on the gateway at `url`: the challenge, then the paid request.
async fn buy(c: &Chain, url: &str, body: &Value) -> Reply {
    let challenge = post_task(url, body, None).await;
    assert_eq!(challenge.status, 402, "{}", challenge.body);
    let required: PaymentRequired = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(challenge.headers[PAYMENT_REQUIRED].to_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let payment = buyer::pay_exact(&c.buyer, &required.accepts[0], now()).unwrap();
    post_task(url, body, Some(&payment)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_sells_scoreable_work_and_the_outlier_is_not_paid() {
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let net = network(tmp.path(), &c, LIVE_PAGE, Some(Fault::DegradeOutput), 1).await;
    let node = &net.gateways[0];
    let (url, _gw) = gateway(
        &tmp.path().join("gw"),
        &c,
        node,
        live_page_offer(node),
        |p| p,
    )
    .await;

    // The well-known document says how the capability is checked.
    let listed = listed(&url, LIVE_PAGE).await;
    assert_eq!(listed["validation"], "scoreable", "{listed}");
    assert_eq!(listed["assurance"], "scored", "{listed}");
    assert_eq!(listed["comparator"]["id"], COMPARE_TEXT, "{listed}");
    assert_eq!(
        listed["comparator"]["threshold"], LIVE_PAGE_THRESHOLD,
        "{listed}"
    );
    assert_eq!(listed["quorum"], 3, "{listed}");

    let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let site = LoopbackServer::start(move |_| {
        Page::Html(
            dynamic_article(loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst)).into_bytes(),
        )
    });
    let body = json!({"capability": LIVE_PAGE, "input": {"url": site.url("127.0.0.1", "/")}});
    let r = buy(&c, &url, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "delivered", "{}", r.body);
    assert_eq!(r.body["assurance"], "scored", "{}", r.body);
    assert!(r.body["disputed"].is_null(), "{}", r.body);
    let markdown = r.body["result"]["markdown"].as_str().unwrap();
    assert!(!markdown.contains("cheap watches"), "{markdown}");
    let verdict = &r.body["verdict"];
    assert_eq!(verdict["assurance"], "scored");
    assert_eq!(
        verdict["accepted"].as_array().unwrap().len(),
        2,
        "{verdict}"
    );
    assert_eq!(
        verdict["rejected"].as_array().unwrap().len(),
        1,
        "{verdict}"
    );
    assert_eq!(
        verdict["scoring"]["scores"].as_array().unwrap().len(),
        3,
        "{verdict}"
    );
    assert_eq!(r.body["receipts"].as_array().unwrap().len(), 2);

    // The two agreeing workers share the worker pay; the outlier gets nothing.
    let until = Instant::now() + Duration::from_secs(30);
    while c.balance(net.wallets[0]).await + c.balance(net.wallets[1]).await == 0 {
        assert!(Instant::now() < until, "the worker pay was never sent");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(c.balance(net.wallets[0]).await > 0);
    assert!(c.balance(net.wallets[1]).await > 0);
    assert_eq!(c.balance(net.wallets[2]).await, 0, "the outlier was paid");
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS - PRICE);
    drop(net.nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_snapshot_check_catches_a_lying_snapshotter() {
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let net = network(tmp.path(), &c, PAGE, Some(Fault::AlterPage), 2).await;
    let check = |on_failure| {
        move |p: SalePolicy| SalePolicy {
            snapshot_check: Some(SnapshotCheckPolicy {
                rate: 1.0,
                threshold: 800_000,
                on_failure,
            }),
            ..p
        }
    };
    let site = LoopbackServer::serving(SCRIPTED_PAGE.as_bytes().to_vec());
    let body = json!({"capability": PAGE, "input": {"url": site.url("127.0.0.1", "/")}});

    // `refund`: the task fails and the buyer gets the price back on chain.
    let node = &net.gateways[0];
    let (url, gw) = gateway(
        &tmp.path().join("gw-refund"),
        &c,
        node,
        page_offer(node),
        check(SnapshotFailure::Refund),
    )
    .await;
    let r = buy(&c, &url, &body).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["status"], "refunded", "{}", r.body);
    assert!(r.body["result"].is_null(), "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("snapshot check"),
        "{}",
        r.body
    );
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS);
    let standing = node.coordinator().standing(&net.faulty);
    assert!(
        standing.rejected >= 1,
        "the freezer's standing: {standing:?}"
    );
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("d402_snapshot_checks_failed_total 1"),
        "{metrics}"
    );
    drop(gw);

    // `deliver-disputed` (another gateway node, whose reputation book still trusts the liar):
    // the output is delivered, marked disputed, and paid for.
    let node = &net.gateways[1];
    let (url, _gw) = gateway(
        &tmp.path().join("gw-deliver"),
        &c,
        node,
        page_offer(node),
        check(SnapshotFailure::DeliverDisputed),
    )
    .await;
    let r = buy(&c, &url, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "delivered", "{}", r.body);
    let disputed = r.body["disputed"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r.body));
    assert!(disputed.contains("snapshot check"), "{disputed}");
    let check = &r.body["verdict"]["snapshotCheck"];
    assert_eq!(check["passed"], false, "{check}");
    assert_eq!(check["comparator"], COMPARE_TEXT, "{check}");
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS - PRICE);
    drop(net.nodes);
}

/// A non-verifiable capability behind `--min-worker-bond`: while no worker has bonded, no bid is
/// taken and the buyer is refunded; once one worker bonds, it alone is leased, and the result is
/// delivered with assurance `reputation`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_verifiable_work_goes_only_to_bonded_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let c = chain().await;
    let net = network(tmp.path(), &c, MERKLE, None, 1).await;
    let node = &net.gateways[0];
    let bonds = WorkerBonds::deploy(
        &c.chain.provider(&c.facilitator),
        c.chain.asset.address,
        c.facilitator.address(),
        3_600,
    )
    .await
    .unwrap();
    const MINIMUM: u128 = 1_000_000;
    let gate = BondGate {
        bonds: WorkerBonds::new(c.chain.provider(&c.facilitator), bonds),
        minimum: MINIMUM,
    };
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let mut manifest = manifest(MERKLE, &bytes);
    manifest.validation.class = d402_registry::ValidationClass::NonVerifiable;
    manifest.validation.canonicalizer = None;
    let offer = publish(node, manifest, &bytes);
    let (url, _gw) = gateway(&tmp.path().join("gw"), &c, node, offer, |p| SalePolicy {
        unverifiable_workers: d402_node::WorkerPolicy {
            min_score: Some(0.5),
            gate: Some(Arc::new(gate)),
        },
        ..p
    })
    .await;
    let listed = listed(&url, MERKLE).await;
    assert_eq!(listed["validation"], "non-verifiable", "{listed}");
    assert_eq!(listed["assurance"], "reputation", "{listed}");

    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("bonded")).unwrap()});
    let r = buy(&c, &url, &body).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["status"], "refunded", "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("3 excluded"),
        "{}",
        r.body
    );
    assert_eq!(c.balance(c.buyer.address()).await, BUYER_FUNDS);

    // Worker 1 bonds the minimum: it is the only one leased from now on.
    let worker = &c.others[1];
    c.anvil
        .mint(
            &c.deployer,
            c.chain.asset.address,
            worker.address(),
            MINIMUM,
        )
        .await
        .unwrap();
    WorkerBonds::new(c.chain.provider(worker), bonds)
        .bond(MINIMUM)
        .await
        .unwrap();
    for round in 0..2 {
        let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input(&format!("bonded-{round}"))).unwrap()});
        let r = buy(&c, &url, &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["assurance"], "reputation", "{}", r.body);
        assert_eq!(
            r.body["receipt"]["worker"],
            net.nodes[1].public_id(),
            "only the bonded worker is leased: {}",
            r.body
        );
    }
}
