//! `solana-task-escrow` end to end on the real Solana validator with real nodes: the gateway (a
//! `d402 node` process) sells a commission-bearing proof check; `d402 client run --solana-wallet`
//! funds the task's escrow on d402's program with one partially signed transaction; the validator
//! node (a process holding `--solana-release-key`) signs the release inside its verdict and the
//! program pays worker, creator and gateway to the unit. Then a paid task fails (its worker is
//! gone): the escrow stays locked until its on-chain deadline and the buyer gets everything back.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use d402_core::Identity;
use d402_network_support::*;
use d402_node::Offer;
use d402_registry::CreatorWallets;
use d402_registry::registration::{Terms, register};
use d402_solana_chain::SolanaChain;
use serde_json::Value;
use solana_keypair::Keypair;
use solana_signer::Signer;

const BUYER_FUNDS: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_buys_on_solana_task_escrow_and_a_failed_task_is_refunded_after_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let chain = tokio::task::spawn_blocking(SolanaChain::start)
        .await
        .unwrap()
        .expect("the Solana test validator (scripts/test.sh builds it)");
    let mint = chain.create_mint(6).await.unwrap();
    let buyer = chain.funded_keypair(1_000_000_000).await.unwrap();
    chain
        .mint_to(&mint, &buyer.pubkey(), BUYER_FUNDS)
        .await
        .unwrap();
    let fee_payer = chain.funded_keypair(2_000_000_000).await.unwrap();
    let release_key = Keypair::new();
    let worker_wallet = Keypair::new().pubkey();
    let creator = Keypair::new().pubkey();

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.solana = Some(worker_wallet.to_string());
    let worker = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    // The validator node holds the release key; the gateway only knows its public key.
    let mut validator = Command::new(env!("CARGO_BIN_EXE_d402"));
    validator
        .arg("node")
        .args(["--label", "validator"])
        .args(["--state", dir.join("validator").to_str().unwrap()])
        .args(["--peer", &bootstrap.listen_addr().to_string()])
        .args(["--validate", MERKLE])
        .args([
            "--solana-release-key",
            &common::keypair_file(dir, "release.json", &release_key),
        ]);
    let (_validator, info) = common::spawn_node(validator);
    assert_eq!(
        info["solanaEscrowValidator"],
        release_key.pubkey().to_string()
    );

    // A proof check with a 10 % commission to a creator paid on Solana.
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let manifest = manifest(MERKLE, &bytes);
    let registration = register(
        &manifest,
        &Identity::from_seed([42; 32]),
        Terms {
            namespace: manifest.namespace().to_string(),
            namespace_proof: None,
            creator_commission_bps: 1_000,
            creator_wallets: CreatorWallets {
                solana: Some(creator.to_string()),
                evm: None,
            },
            issued_at: 1_767_225_600_000,
        },
    )
    .unwrap();
    let offer = Offer::publish(
        bootstrap.coordinator().store(),
        registration,
        manifest,
        &bytes,
    )
    .unwrap();
    let publish = dir.join("merkle");
    d402_gateway::published::write(&publish, &offer.registration, &offer.manifest, &bytes).unwrap();
    let owner = Identity::from_seed([42; 32]).public_id();

    let mut gateway = Command::new(env!("CARGO_BIN_EXE_d402"));
    gateway
        .arg("node")
        .args(["--label", "gateway"])
        .args(["--state", dir.join("gw").to_str().unwrap()])
        .args(["--peer", &bootstrap.listen_addr().to_string()])
        .args(["--http-host", "127.0.0.1", "--http-port", "0"])
        .args([
            "--payment",
            "solana-task-escrow",
            "--gateway-price",
            "$0.01",
        ])
        .args(["--gateway-fee-bps", "500"])
        .args(["--offer", MERKLE, "--publish", publish.to_str().unwrap()])
        .args(["--trust-namespace", &format!("merkle={owner}")])
        .args(["--max-creator-commission-bps", "2000"])
        .args(["--solana-rpc-url", chain.rpc_url()])
        .args(["--solana-mint", &mint.to_string()])
        .args([
            "--solana-fee-payer-key",
            &common::keypair_file(dir, "fee-payer.json", &fee_payer),
        ])
        .args([
            "--solana-escrow-validator",
            &release_key.pubkey().to_string(),
        ])
        // A short deadline, so that the failed task's refund comes within the test.
        .args(["--gateway-payment-timeout-secs", "20"])
        .args(["--gateway-task-timeout-secs", "5"])
        .args(["--gateway-refund-after-secs", "1"]);
    let (_gateway, info) = common::spawn_node(gateway);
    assert_eq!(info["sells"], serde_json::json!([MERKLE]), "{info}");
    let url = info["http"].as_str().unwrap().to_string();
    let probe = start(dir, "probe", &[&bootstrap], None, &[]).await;
    wait_discovered(&bootstrap, &[&worker, &probe]).await;

    let wallet = common::keypair_file(dir, "buyer.json", &buyer);
    let buy = |input: &str| {
        Command::new(env!("CARGO_BIN_EXE_d402"))
            .args(["client", "run", "--gateway", &url, "--capability", MERKLE])
            .args(["--input", input])
            .args(["--solana-wallet", &wallet])
            .args(["--solana-rpc-url", chain.rpc_url()])
            .args(["--max-spend", "$0.05"])
            .output()
            .unwrap()
    };
    let balance = |owner: solana_pubkey::Pubkey| {
        let chain = &chain;
        async move { chain.token_balance_of(&owner, &mint).await.unwrap() }
    };

    let r = common::bought(&buy(&merkle_input("escrow-leaf")));
    assert_eq!(r["result"]["valid"], true, "{r}");
    assert_eq!(r["payment"]["rail"], "solana-task-escrow", "{r}");
    // The validator signed the release inside its verdict, for the worker's wallet.
    assert_eq!(
        r["verdict"]["release"]["workers"],
        serde_json::json!([worker_wallet.to_string()]),
        "{r}"
    );
    // The split, to the unit: 10,000 less 10 % commission and 5 % fee.
    let task_url = r["url"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(30);
    while balance(worker_wallet).await != 8_500 {
        assert!(Instant::now() < until, "the release did not land");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(balance(creator).await, 1_000);
    assert_eq!(balance(fee_payer.pubkey()).await, 500);
    assert_eq!(balance(buyer.pubkey()).await, BUYER_FUNDS - 10_000);
    let task = common::get_json(&task_url).await;
    assert_eq!(task["status"], "delivered", "{task}");
    // The buyer paid no SOL: the gateway's fee payer paid fees and the escrow's rent, which the
    // release returned.
    assert_eq!(
        chain.sol_balance(&buyer.pubkey()).await.unwrap(),
        1_000_000_000
    );

    // A paid task whose worker is gone: it fails, and its escrow holds the money until the
    // deadline the program enforces, then the buyer has everything back.
    drop(worker);
    let started = Instant::now();
    let out = buy(&merkle_input("escrow-leaf-failing"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        balance(buyer.pubkey()).await,
        BUYER_FUNDS - 20_000,
        "{text}"
    );
    // The client reports the failed task (its JSON, with its URL) and exits non-zero.
    assert!(!out.status.success(), "{text}");
    let task_url = text
        .split("\"url\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no task url in {text}"))
        .to_string();
    let refunded = Instant::now() + Duration::from_secs(90);
    let task = loop {
        let t = common::get_json(&task_url).await;
        if t["status"] == "refunded" {
            break t;
        }
        assert!(Instant::now() < refunded, "no refund: {t}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        balance(buyer.pubkey()).await,
        BUYER_FUNDS - 10_000,
        "{task}"
    );
    // Not before the deadline: payment timeout + task timeout + refund delay after the challenge.
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "refunded after {:?}",
        started.elapsed()
    );
    let refund: &Value = &task["payment"]["refund"];
    assert_eq!(refund["rail"], "solana-task-escrow", "{task}");
    assert_eq!(refund["payouts"][0]["to"], buyer.pubkey().to_string());
    assert_eq!(refund["payouts"][0]["amount"], "10000");
    assert_eq!(
        balance(worker_wallet).await,
        8_500,
        "the worker is paid once"
    );
}
