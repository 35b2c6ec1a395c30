//! A stock x402 v2 client buys from the gateway: `tests/x402-interop/pay.mjs` runs `@x402/fetch`'s
//! `wrapFetchWithPayment` with `@x402/evm`'s `exact` scheme (installed by `scripts/setup.sh`
//! under `~/.cache/d402-tools/x402-interop`, pinned by the folder's lock file) as a node child
//! process against a real gateway on anvil, selling `web.page_to_markdown@1` from a real local
//! network (two workers with the fetch snapshotter, a validator) over a page served on
//! loopback. The client gets the Markdown; the chain shows buyer −price, gateway +fee, and the
//! worker net shared by the two agreeing workers.

mod common;

use std::process::Command;
use std::sync::Arc;

use alloy::primitives::{Address, TxHash};
use alloy::providers::Provider;
use d402_evm_chain::Anvil;
use d402_gateway::gateway::SalePolicy;
use d402_loopback_server::LoopbackServer;
use d402_network_support::*;
use d402_rails::evm::direct::BaseDirect;
use d402_rails::{Atomic, GatewayFee, Outbox, SafetyCaps};
use d402_registry::AcceptancePolicy;
use serde_json::{Value, json};

const PRICE: u128 = 10_000; // $0.01 of a 6-decimals token
const FEE_BPS: u16 = 500;
const BUYER_FUNDS: u128 = 1_000_000;

const ARTICLE: &str = r#"<html><head><title>Paid in x402</title></head><body><main>
<h1>Paid in x402</h1>
<p>This page was bought by a stock x402 client from a d402 gateway, which sold it as a
sandboxed web.page_to_markdown task to workers on a peer-to-peer network.</p>
<p>The buyer signed an EIP-3009 authorization; the gateway settled it on a local chain and paid
the worker its net out of the payee's wallet, keeping its fee.</p>
</main></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_x402_client_buys_page_to_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = common::client_script(dir);

    let anvil = Anvil::start(6).await.expect("anvil (run scripts/setup.sh)");
    let [deployer, facilitator, buyer, wallet_a, wallet_b, ..] = &anvil.keys[..] else {
        unreachable!("six keys were asked for")
    };
    let chain = anvil.deploy_test_usd(deployer).await.unwrap();
    let token = chain.asset.address;
    anvil
        .mint(deployer, token, buyer.address(), BUYER_FUNDS)
        .await
        .unwrap();
    let balance = |who: Address| {
        let anvil = &anvil;
        async move { anvil.balance(token, who).await.unwrap() }
    };

    // The network: two page workers (the capability is validated by a quorum of two), each paid
    // at its own wallet, a validator, and the gateway's node.
    let site = LoopbackServer::serving(ARTICLE.as_bytes().to_vec());
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut workers = Vec::new();
    for (label, wallet) in [("worker-a", wallet_a), ("worker-b", wallet_b)] {
        let mut config = worker_config(&[PAGE], fetch_snapshotter());
        config.payout_wallets.evm = Some(wallet.address().to_checksum(None));
        workers.push(start(dir, label, &[&bootstrap], Some(config), &[]).await);
    }
    let validator = start(dir, "validator", &[&bootstrap], None, &[PAGE]).await;
    let gateway_node = start(dir, "gateway", &[&bootstrap], None, &[]).await;
    let everyone = [
        &bootstrap,
        &workers[0],
        &workers[1],
        &validator,
        &gateway_node,
    ];
    for n in everyone {
        wait_discovered(n, &everyone).await;
    }

    // The gateway, on base-x402-direct: payTo is the facilitator's wallet.
    let pay_to = facilitator.address();
    let outbox = Outbox::open(&dir.join("outbox.redb")).unwrap();
    let rail = Arc::new(BaseDirect::new(
        chain.clone(),
        facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    ));
    let acceptance = AcceptancePolicy::default()
        .trust("web", &d402_core::Identity::from_seed([42; 32]).public_id());
    let policy = SalePolicy {
        price: Atomic::new(PRICE),
        worker_budget: Atomic::new(PRICE),
        gateway_fee: GatewayFee::Bps(FEE_BPS),
        pay_to: pay_to.to_checksum(None),
        asset: token.to_checksum(None),
        allow_private_targets: true,
        wait: std::time::Duration::from_secs(90),
        task_deadline: std::time::Duration::from_secs(90),
        ..SalePolicy::default()
    };
    let (url, gw) = common::serve(
        dir,
        &gateway_node,
        rail,
        vec![page_offer(&gateway_node)],
        acceptance,
        policy,
    )
    .await;
    assert!(gw.refused.is_empty(), "{:?}", gw.refused);
    gw.resume().await.unwrap();

    // The stock client pays and gets the Markdown.
    let body = json!({
        "capability": PAGE,
        "input": {"url": site.url("127.0.0.1", "/article")},
    });
    let args = [
        "--url".to_string(),
        url,
        "--key".into(),
        alloy::hex::encode_prefixed(buyer.to_bytes()),
        "--rpc".into(),
        anvil.url.to_string(),
        "--chain-id".into(),
        d402_evm_chain::CHAIN_ID.to_string(),
        "--asset".into(),
        token.to_checksum(None),
        "--max-amount".into(),
        PRICE.to_string(),
        "--body".into(),
        body.to_string(),
    ];
    let started = std::time::Instant::now();
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").arg(&script).args(&args).output())
            .await
            .unwrap()
            .expect("node runs (run scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    eprintln!("stock x402 client bought {PAGE} in {:?}", started.elapsed());
    let reply: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: stdout: {stdout}\nstderr: {stderr}"));
    eprintln!("the client's HTTP exchanges: {}", reply["exchanges"]);
    let statuses: Vec<_> = reply["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!(402), json!(200)],
        "one challenge, one payment"
    );
    assert_eq!(reply["status"], 200, "{reply}");
    let task = &reply["body"];
    assert_eq!(task["status"], "delivered", "{task}");
    let markdown = task["result"]["markdown"]
        .as_str()
        .unwrap_or_else(|| panic!("{task}"));
    assert!(markdown.contains("Paid in x402"), "{markdown}");
    assert!(
        markdown.contains("bought by a stock x402 client"),
        "{markdown}"
    );

    // PAYMENT-RESPONSE, decoded by the stock client, names the settlement transaction.
    let pr = &reply["paymentResponse"];
    assert_eq!(pr["success"], true, "{pr}");
    assert_eq!(pr["network"], "eip155:31337");
    assert_eq!(
        pr["payer"].as_str().unwrap().to_lowercase(),
        buyer.address().to_string().to_lowercase()
    );
    let tx: TxHash = pr["transaction"].as_str().unwrap().parse().unwrap();
    let receipt = anvil
        .provider(deployer)
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .expect("the settlement is on chain");
    assert!(receipt.status());
    assert_eq!(
        receipt.to,
        Some(token),
        "a transferWithAuthorization on the token"
    );

    // The split on chain: buyer −price, payTo +fee, and the worker net shared by the quorum's
    // two agreeing workers, paid out of payTo in the gateway's next payout batch.
    let fee = PRICE * u128::from(FEE_BPS) / 10_000;
    let task_url = task["url"].as_str().unwrap().to_string();
    let pay = common::worker_paid(&task_url).await;
    let shares = pay["shares"].as_array().unwrap();
    assert_eq!(shares.len(), 2, "{pay}");
    assert_eq!(balance(buyer.address()).await, BUYER_FUNDS - PRICE);
    assert_eq!(balance(pay_to).await, fee);
    let net = PRICE - fee;
    for wallet in [wallet_a.address(), wallet_b.address()] {
        let share = shares
            .iter()
            .find(|s| s["to"].as_str().unwrap().parse::<Address>().unwrap() == wallet)
            .unwrap_or_else(|| panic!("{wallet} has no share: {pay}"));
        let amount: u128 = share["amount"].as_str().unwrap().parse().unwrap();
        assert!(amount >= net / 2, "{pay}");
        assert_eq!(balance(wallet).await, amount, "{pay}");
    }
    assert_eq!(
        balance(wallet_a.address()).await + balance(wallet_b.address()).await,
        net,
        "the net is paid once, shared"
    );
}
