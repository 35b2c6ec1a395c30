//! Worker pay owed on a direct rail survives `kill -9`: a real gateway process on
//! `base-x402-direct` delivers paid tasks, is killed before its payout batch goes out, and on
//! restart with the same state pays each worker exactly what it is owed, once; killed and
//! restarted again, it pays nobody twice.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_network_support::*;

const PRICE: u128 = 10_000;
const FEE: u128 = 500;
const TASKS: u128 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owed_worker_pay_is_paid_once_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start(4).await.expect("anvil (run scripts/setup.sh)");
    let (deployer, facilitator, buyer) = (&anvil.keys[0], &anvil.keys[1], &anvil.keys[2]);
    let worker_wallet = anvil.keys[3].address();
    let chain = anvil.deploy_test_usd(deployer).await.unwrap();
    let token = chain.asset.address;
    anvil
        .mint(deployer, token, buyer.address(), 1_000_000)
        .await
        .unwrap();

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.evm = Some(worker_wallet.to_checksum(None));
    let worker = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    wait_discovered(&bootstrap, &[&worker, &validator]).await;
    let publish = dir.join("merkle");
    let offer = merkle_offer(&bootstrap);
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    d402_gateway::published::write(&publish, &offer.registration, &offer.manifest, &bytes).unwrap();
    let owner = Identity::from_seed([42; 32]).public_id();
    let facilitator_hex = alloy::hex::encode(facilitator.to_bytes());
    let pay_to = facilitator.address();

    // The gateway process on `state`, paying out every `window_ms`; returns it and its URL.
    let gateway = |state: &Path, window_ms: u64| {
        let mut node = Command::new(env!("CARGO_BIN_EXE_d402"));
        node.arg("node")
            .args(["--label", "gateway", "--state", state.to_str().unwrap()])
            .args(["--peer", &bootstrap.listen_addr().to_string()])
            .args(["--http-host", "127.0.0.1", "--http-port", "0"])
            .args(["--payment", "base-x402-direct", "--gateway-price", "$0.01"])
            .args(["--gateway-fee-bps", "500"])
            .args(["--gateway-payout-window-ms", &window_ms.to_string()])
            .args(["--offer", MERKLE, "--publish", publish.to_str().unwrap()])
            .args(["--trust-namespace", &format!("merkle={owner}")])
            .args(["--evm-rpc-url", anvil.url.as_str()])
            .args(["--evm-token", &token.to_string()])
            .args(["--evm-token-name", "Test USD", "--evm-token-version", "2"])
            .args(["--facilitator-key", &facilitator_hex]);
        let (process, info) = common::spawn_node(node);
        (process, info["http"].as_str().unwrap().to_string())
    };
    let balance = |who| {
        let anvil = &anvil;
        async move { anvil.balance(token, who).await.unwrap() }
    };

    // A payout window far longer than the test: the tasks are delivered, their pay only owed.
    let state = dir.join("gw");
    let (mut first, url) = gateway(&state, 600_000);
    let buyer_hex = alloy::hex::encode(buyer.to_bytes());
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let out = Command::new(env!("CARGO_BIN_EXE_d402"))
            .args(["client", "run", "--gateway", &url, "--capability", MERKLE])
            .args(["--input", &merkle_input(&format!("owed-{i}"))])
            .args(["--wallet", &buyer_hex, "--max-spend", "$0.05"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["payment"]["workerPay"]["state"], "owed", "{r}");
        tasks.push(r["taskId"].as_str().unwrap().to_string());
    }
    assert_eq!(balance(pay_to).await, TASKS * PRICE);
    assert_eq!(balance(worker_wallet).await, 0);

    // Killed with the pay owed: nothing is lost.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drop(first);
    let (second, url) = gateway(&state, 100);
    for id in &tasks {
        let pay = common::worker_paid(&format!("{url}/tasks/{id}")).await;
        assert_eq!(pay["state"], "paid");
    }
    assert_eq!(balance(worker_wallet).await, TASKS * (PRICE - FEE));

    // Killed and restarted again: the paid batch is not paid again.
    drop(second);
    let (_third, _) = gateway(&state, 100);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(balance(worker_wallet).await, TASKS * (PRICE - FEE));
    assert_eq!(balance(pay_to).await, TASKS * FEE);
    assert_eq!(balance(buyer.address()).await, 1_000_000 - TASKS * PRICE);
}
