//! `d402 node --http-port …` as a real gateway process on anvil, and `d402 client` as a real
//! buyer process: the client pays within its spend cap and prints the validated result, and
//! refuses to pay above it; the gateway pays the worker its net out of `payTo` and keeps its fee.
//! It buys a proof check and a page conversion (quorum of two, a page served on loopback).

mod common;

use std::process::{Command, Stdio};

use common::Killed;

use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_loopback_server::LoopbackServer;
use d402_network_support::*;

const ARTICLE: &str = r#"<html><head><title>Bought from the command line</title></head><body><main>
<h1>Bought from the command line</h1>
<p>This page was converted by two workers on a d402 network and paid for by d402 client, which
answered the gateway's x402 challenge with an EIP-3009 authorization.</p>
</main></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_process_sells_to_the_client_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start(4).await.expect("anvil (run scripts/setup.sh)");
    let (deployer, facilitator, buyer) = (&anvil.keys[0], &anvil.keys[1], &anvil.keys[2]);
    let chain = anvil.deploy_test_usd(deployer).await.unwrap();
    let token = chain.asset.address;
    anvil
        .mint(deployer, token, buyer.address(), 1_000_000)
        .await
        .unwrap();

    // Workers and a validator in process; the gateway joins them through the bootstrap.
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let worker_wallet = anvil.keys[3].address();
    // Two workers (a page needs a quorum of two), paid at the same wallet.
    let mut workers = Vec::new();
    for label in ["worker-1", "worker-2"] {
        let mut config = worker_config(&[MERKLE, PAGE], fetch_snapshotter());
        config.payout_wallets.evm = Some(worker_wallet.to_checksum(None));
        workers.push(start(dir, label, &[&bootstrap], Some(config), &[]).await);
    }
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE, PAGE]).await;
    wait_discovered(&bootstrap, &[&workers[0], &workers[1], &validator]).await;
    let site = LoopbackServer::serving(ARTICLE.as_bytes().to_vec());

    // What a capability author hands a gateway operator: registration, manifest, component.
    let publish = dir.join("merkle");
    let offer = merkle_offer(&bootstrap);
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    d402_gateway::published::write(&publish, &offer.registration, &offer.manifest, &bytes).unwrap();
    let publish_page = dir.join("page");
    let page = page_offer(&bootstrap);
    let bytes = component(artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    d402_gateway::published::write(&publish_page, &page.registration, &page.manifest, &bytes)
        .unwrap();
    let owner = Identity::from_seed([42; 32]).public_id();
    // payTo defaults to the facilitator's wallet, which pays the workers out of it.
    let pay_to = facilitator.address();

    let facilitator_hex = alloy::hex::encode(facilitator.to_bytes());
    let gateway = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_d402"));
        c.arg("node")
            .args([
                "--label",
                "gateway-1",
                "--state",
                dir.join("gw").to_str().unwrap(),
            ])
            .args(["--peer", &bootstrap.listen_addr().to_string()])
            .args(["--http-host", "127.0.0.1", "--http-port", "0"])
            .args([
                "--payment",
                "base-x402-direct",
                "--gateway-price",
                "$0.01",
                "--gateway-budget",
                "0.01",
                "--gateway-fee-bps",
                "500",
            ])
            .args([
                "--offer",
                MERKLE,
                "--require-capability-registration",
                "true",
            ])
            .args([
                "--require-signed-capability-registration",
                "true",
                "--max-creator-commission-bps",
                "2000",
            ])
            .args(["--trust-namespace", &format!("merkle={owner}")])
            .args(["--publish", publish.to_str().unwrap()])
            .args([
                "--offer",
                PAGE,
                "--trust-namespace",
                &format!("web={owner}"),
            ])
            .args(["--publish", publish_page.to_str().unwrap()])
            // The page is on loopback: allowed here, as on a local devnet.
            .args(["--allow-private-targets", "true"])
            .args([
                "--evm-rpc-url",
                anvil.url.as_str(),
                "--evm-token",
                &token.to_string(),
            ])
            .args(["--evm-token-name", "Test USD", "--evm-token-version", "2"])
            .args(["--facilitator-key", &facilitator_hex]);
        c
    };
    // A payTo the facilitator key cannot pay out of is refused at start (within seconds: a
    // gateway that started anyway would serve until killed).
    let mut refused = Killed(
        gateway()
            .args(["--gateway-wallet", &worker_wallet.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway started with a payTo it cannot pay out of"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("is not the facilitator key's address"),
        "{stderr}"
    );

    let (gateway_process, info) = common::spawn_node(gateway());
    assert_eq!(info["role"], "gateway");
    assert_eq!(info["sells"], serde_json::json!([MERKLE, PAGE]), "{info}");
    let url = info["http"].as_str().unwrap().to_string();
    let gw_node = start(dir, "probe", &[&bootstrap], None, &[]).await;
    wait_discovered(&bootstrap, &[&gw_node]).await;

    let d402 = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_d402"))
            .arg("client")
            .args(args)
            .output()
            .unwrap()
    };
    let out = d402(&["discover", "--gateway", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["capabilities"][0]["price"], "10000");

    let buyer_hex = alloy::hex::encode(buyer.to_bytes());
    let input = merkle_input("cli-leaf");
    // Above the spend cap: nothing is paid.
    let buy = |capability: &str, input: &str, max_spend: &str| {
        d402(&[
            "run",
            "--gateway",
            &url,
            "--capability",
            capability,
            "--input",
            input,
            "--wallet",
            &buyer_hex,
            "--max-spend",
            max_spend,
        ])
    };
    let out = buy(MERKLE, &input, "$0.005");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spend cap"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(anvil.balance(token, pay_to).await.unwrap(), 0);

    let r = common::bought(&buy(MERKLE, &input, "$0.05"));
    assert_eq!(r["result"]["valid"], true, "{r}");
    assert!(r["receipt"]["signature"].is_string());
    // Buyer −price, gateway +fee (5 %), and the worker +net in the gateway's next payout batch.
    common::worker_paid(r["url"].as_str().unwrap()).await;
    assert_eq!(anvil.balance(token, worker_wallet).await.unwrap(), 9_500);
    assert_eq!(anvil.balance(token, pay_to).await.unwrap(), 500);
    assert_eq!(
        anvil.balance(token, buyer.address()).await.unwrap(),
        990_000
    );

    // A page conversion: two workers convert the one frozen page, and share the net.
    let page_input = serde_json::json!({"url": site.url("127.0.0.1", "/article")}).to_string();
    let r = common::bought(&buy(PAGE, &page_input, "$0.05"));
    let markdown = r["result"]["markdown"].as_str().unwrap_or_default();
    assert!(markdown.contains("paid for by d402 client"), "{r}");
    assert_eq!(site.count(), 1, "the page is frozen once for both workers");
    common::worker_paid(r["url"].as_str().unwrap()).await;
    assert_eq!(anvil.balance(token, worker_wallet).await.unwrap(), 19_000);
    assert_eq!(anvil.balance(token, pay_to).await.unwrap(), 1_000);
    assert_eq!(
        anvil.balance(token, buyer.address()).await.unwrap(),
        980_000
    );

    // Operations: `d402 ops-status` and `d402 ops-monitor` read the snapshot the gateway
    // rewrites every sweep, and ask anvil for the facilitator's ETH.
    let gw_state = dir.join("gw");
    let ops = |command: &str, args: &[&str]| common::ops(command, &gw_state, args);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report = loop {
        let (code, stdout, stderr) = ops("ops-status", &[]);
        let report: serde_json::Value =
            serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        let counters = &report["snapshot"]["counters"];
        if counters["d402_tasks_delivered_total"] == 2
            && counters["d402_payout_batches_paid_total"] == 2
        {
            assert_eq!(code, Some(0), "{report:#}\n{stderr}");
            break report;
        }
        assert!(
            std::time::Instant::now() < until,
            "the snapshot never showed both tasks: {report:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["snapshot"]["rail"], "base-x402-direct");
    assert_eq!(report["snapshot"]["tasksInFlight"], 0);
    assert_eq!(report["snapshot"]["workerPayOwedAtomic"], "0");
    let balance = &report["balances"][0];
    assert_eq!(balance["chain"], "evm");
    assert_eq!(balance["address"], facilitator.address().to_checksum(None));
    let wei: u128 = balance["atomic"].as_str().unwrap().parse().unwrap();
    assert!(wei > 1_000_000_000_000_000, "{balance}");

    // A minimum the facilitator cannot meet: an alert, and exit status 3.
    let (code, stdout, _) = ops("ops-status", &["--min-evm-balance-eth", "1000000"]);
    assert_eq!(code, Some(3));
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        report["alerts"][0]["code"], "low-fee-payer-balance",
        "{report:#}"
    );

    // The monitor reports the alert once when it starts, not again while it holds, and once
    // when it clears: to the file and to the webhook.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |axum::Json(body): axum::Json<serde_json::Value>| async move {
                sink.lock().unwrap().push(body);
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let alert_file = dir.join("ops-alerts.jsonl");
    // A webhook that is down: nothing listens on this port any more.
    let dead_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let monitor = |hook: &str, extra: &[&str]| {
        let mut args = vec![
            "--once",
            "--alert-file",
            alert_file.to_str().unwrap(),
            "--alert-webhook-url",
            hook,
        ];
        args.extend_from_slice(extra);
        ops("ops-monitor", &args).0
    };
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&alert_file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let low = ["--min-evm-balance-eth", "1000000"];
    // The first report finds the webhook down: it is in the file, and kept for the webhook.
    assert_eq!(
        tokio::task::block_in_place(|| monitor(&dead_url, &low)),
        Some(3)
    );
    assert!(received.lock().unwrap().is_empty());
    // The webhook is back: it gets the report it missed, and nothing is reported twice.
    assert_eq!(
        tokio::task::block_in_place(|| monitor(&hook_url, &low)),
        Some(3)
    );
    let seen = lines();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "firing");
    assert_eq!(seen[0]["code"], "low-fee-payer-balance");
    assert_eq!(seen[0]["gateway"], "gateway-1");
    assert_eq!(*received.lock().unwrap(), seen);
    assert_eq!(
        tokio::task::block_in_place(|| monitor(&hook_url, &[])),
        Some(0)
    );
    let seen = lines();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1]["status"], "resolved");
    assert_eq!(seen[1]["code"], "low-fee-payer-balance");
    assert_eq!(
        *received.lock().unwrap(),
        seen,
        "the webhook got what the file got"
    );

    // A stopped gateway stops rewriting its snapshot.
    drop(gateway_process);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (code, stdout, _) = ops("ops-status", &["--max-snapshot-age-secs", "1"]);
    assert_eq!(code, Some(3));
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        report["alerts"][0]["code"], "gateway-not-reporting",
        "{report:#}"
    );
}
