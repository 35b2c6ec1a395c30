//! The gateway on `solana-direct` as a real `d402 node` process against a real Solana test
//! validator, and `d402 client run --solana-wallet` as a real buyer process: the buyer's
//! partially signed transfer is co-signed by the gateway's fee payer and lands on chain, and
//! the gateway pays the worker its net out of its own wallet. It buys a proof check and a page
//! conversion (quorum of two, a page served on loopback).

mod common;

use std::process::Command;

use d402_core::Identity;
use d402_loopback_server::LoopbackServer;
use d402_network_support::*;
use d402_solana_chain::SolanaChain;
use solana_keypair::Keypair;
use solana_signer::Signer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn solana_gateway_sells_to_the_solana_client() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let chain = tokio::task::spawn_blocking(SolanaChain::start)
        .await
        .unwrap()
        .expect("the Solana test validator (scripts/test.sh builds it)");
    let mint = chain.create_mint(6).await.unwrap();
    let buyer = chain.funded_keypair(1_000_000_000).await.unwrap();
    chain
        .mint_to(&mint, &buyer.pubkey(), 1_000_000)
        .await
        .unwrap();
    // The fee payer is the gateway's wallet: it is paid into it and pays workers out of it.
    let fee_payer = chain.funded_keypair(1_000_000_000).await.unwrap();
    chain.create_ata(&fee_payer.pubkey(), &mint).await.unwrap();
    let worker_wallet = Keypair::new().pubkey();

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    // Two workers (a page needs a quorum of two), paid at the same wallet.
    let mut workers = Vec::new();
    for label in ["worker-1", "worker-2"] {
        let mut config = worker_config(&[MERKLE, PAGE], fetch_snapshotter());
        config.payout_wallets.solana = Some(worker_wallet.to_string());
        workers.push(start(dir, label, &[&bootstrap], Some(config), &[]).await);
    }
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE, PAGE]).await;
    wait_discovered(&bootstrap, &[&workers[0], &workers[1], &validator]).await;
    let site = LoopbackServer::serving(
        b"<html><head><title>Paid on Solana</title></head><body><main><h1>Paid on Solana</h1>\n<p>This page was converted by two d402 workers for a buyer who paid with a partially signed SPL transfer.</p></main></body></html>".to_vec(),
    );

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

    let fee_payer_file = common::keypair_file(dir, "fee-payer.json", &fee_payer);
    let gateway = |state: &str, wallet: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_d402"));
        c.arg("node")
            .args(["--label", "gateway-sol"])
            .args(["--state", dir.join(state).to_str().unwrap()])
            .args(["--peer", &bootstrap.listen_addr().to_string()])
            .args(["--http-host", "127.0.0.1", "--http-port", "0"])
            .args(["--payment", "solana-direct", "--gateway-price", "$0.01"])
            .args(["--gateway-fee-bps", "500"])
            .args(["--offer", MERKLE, "--publish", publish.to_str().unwrap()])
            .args(["--trust-namespace", &format!("merkle={owner}")])
            .args(["--offer", PAGE, "--publish", publish_page.to_str().unwrap()])
            .args(["--trust-namespace", &format!("web={owner}")])
            .args(["--allow-private-targets", "true"])
            .args(["--solana-rpc-url", chain.rpc_url()])
            .args(["--solana-mint", &mint.to_string()])
            .args(["--solana-fee-payer-key", &fee_payer_file])
            .args(["--solana-gateway-wallet", wallet]);
        c
    };

    // A payTo the fee payer's key cannot pay out of is refused at start.
    let out = gateway("gw-refused", &Keypair::new().pubkey().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the fee payer's public key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pay_to = fee_payer.pubkey();
    let (_gateway, info) = common::spawn_node(gateway("gw", &pay_to.to_string()));
    assert_eq!(info["sells"], serde_json::json!([MERKLE, PAGE]), "{info}");
    let url = info["http"].as_str().unwrap().to_string();
    let probe = start(dir, "probe", &[&bootstrap], None, &[]).await;
    wait_discovered(&bootstrap, &[&probe]).await;

    let wallet = common::keypair_file(dir, "buyer.json", &buyer);
    let buy = |capability: &str, input: &str, max_spend: &str| {
        Command::new(env!("CARGO_BIN_EXE_d402"))
            .args([
                "client",
                "run",
                "--gateway",
                &url,
                "--capability",
                capability,
            ])
            .args(["--input", input])
            .args([
                "--solana-wallet",
                &wallet,
                "--solana-rpc-url",
                chain.rpc_url(),
            ])
            .args(["--max-spend", max_spend])
            .output()
            .unwrap()
    };
    let balance = |owner: solana_pubkey::Pubkey| {
        let chain = &chain;
        async move { chain.token_balance_of(&owner, &mint).await.unwrap() }
    };

    // Above the spend cap: nothing is signed, nothing moves.
    let leaf = merkle_input("solana-leaf");
    let out = buy(MERKLE, &leaf, "$0.005");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spend cap"));
    assert_eq!(balance(pay_to).await, 0);

    let fee_payer_sol = chain.sol_balance(&fee_payer.pubkey()).await.unwrap();
    let r = common::bought(&buy(MERKLE, &leaf, "$0.05"));
    assert_eq!(r["result"]["valid"], true, "{r}");
    assert_eq!(r["payment"]["rail"], "solana-direct", "{r}");
    assert!(r["receipt"]["signature"].is_string());
    // The split: the worker's net paid out of the gateway's wallet in the next payout batch,
    // the 5 % fee kept.
    assert_eq!(balance(buyer.pubkey()).await, 990_000);
    common::worker_paid(r["url"].as_str().unwrap()).await;
    assert_eq!(balance(worker_wallet).await, 9_500);
    assert_eq!(balance(pay_to).await, 500);

    // A page conversion: two workers convert the one frozen page, and share the net.
    let page_input = serde_json::json!({"url": site.url("127.0.0.1", "/article")}).to_string();
    let r = common::bought(&buy(PAGE, &page_input, "$0.05"));
    let markdown = r["result"]["markdown"].as_str().unwrap_or_default();
    assert!(markdown.contains("partially signed SPL transfer"), "{r}");
    assert_eq!(site.count(), 1, "the page is frozen once for both workers");
    assert_eq!(balance(buyer.pubkey()).await, 980_000);
    common::worker_paid(r["url"].as_str().unwrap()).await;
    assert_eq!(balance(worker_wallet).await, 19_000);
    assert_eq!(balance(pay_to).await, 1_000);

    // The gateway paid the transaction fees; the buyer paid no SOL.
    assert!(chain.sol_balance(&fee_payer.pubkey()).await.unwrap() < fee_payer_sol);
    assert_eq!(
        chain.sol_balance(&buyer.pubkey()).await.unwrap(),
        1_000_000_000
    );

    // `d402 ops-status` checks the fee payer's SOL on the gateway's own cluster (1 SOL funded,
    // a few fees spent): above a 0.005 SOL minimum, below a 2 SOL one.
    let ops_status = |min: &str| {
        let (code, stdout, stderr) = common::ops(
            "ops-status",
            &dir.join("gw"),
            &["--min-solana-balance-sol", min],
        );
        let report: serde_json::Value =
            serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        (code, report)
    };
    let (code, report) = ops_status("0.005");
    let balance = &report["balances"][0];
    assert_eq!(balance["chain"], "solana", "{report:#}");
    assert_eq!(balance["address"], fee_payer.pubkey().to_string());
    let lamports: u64 = balance["atomic"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        lamports,
        chain.sol_balance(&fee_payer.pubkey()).await.unwrap()
    );
    assert_eq!(report["snapshot"]["rail"], "solana-direct");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    let (code, report) = ops_status("2");
    assert_eq!(code, Some(3));
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "low-fee-payer-balance"),
        "{report:#}"
    );
}
