//! `kill -9` the `base-batch-settlement` gateway between accepting vouchers and claiming them:
//! after the restarts every accepted voucher is claimed exactly once and nothing else is.
//!
//! The gateway is a real `d402 node` process on a real anvil (claims held back by an hour-long
//! window while it is being killed); bootstrap, worker and validator run in this process. A buyer
//! (`d402 client`'s channel wallet) buys 30 tasks one after another by deposit and vouchers,
//! riding out the kills: a request cut off is bought again, and a channel that got out of step
//! (the gateway committed a voucher whose answer never arrived) is put back in step by the
//! corrective 402. Then the gateway restarts with a short claim window, and the test checks the
//! chain against the gateway's own records: claimed on chain = charged in the ledger = the price
//! of every delivered task, and the worker paid its net for each.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_gateway::channel_wallet::ChannelWallet;
use d402_gateway::client::Buyer;
use d402_gateway::gateway::{TaskState, TaskStore};
use d402_network_support::*;
use d402_rails::Atomic;
use d402_rails::evm::batch::SETTLEMENT_ADDRESS;
use d402_rails::evm::batch::ledger::Ledger;
use d402_rails::evm::contracts::BatchSettlement;
use serde_json::Value;

const TASKS: usize = 30;
const PRICE: u128 = 10_000;
const FEE_BPS: u128 = 500;
const BUYER_FUNDS: u128 = 10_000_000;

struct Gateway {
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Gateway {
    async fn start(&mut self, claim_window_ms: u64) {
        let mut args = self.args.clone();
        args.extend([
            "--gateway-claim-window-ms".into(),
            claim_window_ms.to_string(),
        ]);
        let mut child = Command::new(&self.binary)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            line
        })
        .await
        .unwrap();
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(info["http"].is_string(), "{info}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gauge from the gateway's `/metrics`.
async fn gauge(url: &str, name: &str) -> Option<u128> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_voucher_is_claimed_once_across_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start(5).await.expect("anvil (run scripts/setup.sh)");
    let mut keys = anvil.keys.clone();
    let deployer = keys.remove(0);
    let gateway_key = keys.remove(0);
    let buyer_key = keys.remove(0);
    let worker = keys.remove(0).address();
    let chain = anvil.deploy_test_usd(&deployer).await.unwrap();
    let token = chain.asset.address;
    anvil.install_batch_settlement().await.unwrap();
    anvil
        .mint(&deployer, token, buyer_key.address(), BUYER_FUNDS)
        .await
        .unwrap();

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.evm = Some(worker.to_checksum(None));
    let worker_node = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    wait_discovered(&bootstrap, &[&worker_node, &validator]).await;
    let publish = dir.join("merkle");
    let offer = merkle_offer(&bootstrap);
    d402_gateway::published::write(
        &publish,
        &offer.registration,
        &offer.manifest,
        &component(artifacts::MERKLE_VERIFY_COMPONENT),
    )
    .unwrap();
    let owner = Identity::from_seed([42; 32]).public_id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let state = dir.join("gw");
    let args: Vec<String> = [
        "node",
        "--label",
        "gateway",
        "--state",
        state.to_str().unwrap(),
        "--peer",
        &bootstrap.listen_addr().to_string(),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        &port.to_string(),
        "--payment",
        "base-batch-settlement",
        "--gateway-price",
        "$0.01",
        "--gateway-fee-bps",
        &FEE_BPS.to_string(),
        "--offer",
        MERKLE,
        "--publish",
        publish.to_str().unwrap(),
        "--trust-namespace",
        &format!("merkle={owner}"),
        "--evm-rpc-url",
        anvil.url.as_str(),
        "--evm-token",
        &token.to_string(),
        "--evm-token-name",
        d402_evm_chain::TOKEN_NAME,
        "--evm-token-version",
        d402_evm_chain::TOKEN_VERSION,
        "--facilitator-key",
        &alloy::hex::encode(gateway_key.to_bytes()),
        "--gateway-withdraw-delay-secs",
        "900",
        "--gateway-wait-ms",
        "10000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let built = std::env::var_os("D402_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_d402")));
    let binary = dir.join("d402");
    std::fs::copy(built, &binary).unwrap();
    let mut gateway = Gateway {
        binary,
        args,
        child: None,
    };
    gateway.start(3_600_000).await;

    // The buyer: 30 purchases, each retried until it is delivered.
    let buyer_url = url.clone();
    let wallet_dir = dir.join("buyer");
    let key = buyer_key.clone();
    let buying = tokio::spawn(async move {
        let mut buyer = Buyer::new(&buyer_url, key.clone(), None);
        buyer.channels = Some(ChannelWallet::new(&wallet_dir, key, Atomic::new(1_000_000)));
        buyer.patience = Duration::from_secs(60);
        let mut bought = 0;
        let mut attempts = 0;
        while bought < TASKS {
            attempts += 1;
            assert!(attempts < 400, "the buyer keeps failing");
            let input: Value =
                serde_json::from_str(&merkle_input(&format!("k{bought}-{attempts}"))).unwrap();
            match buyer.run(MERKLE, input).await {
                Ok(p) if p.task["status"] == "delivered" => bought += 1,
                other => {
                    if attempts % 20 == 1 {
                        eprintln!(
                            "buyer attempt {attempts}: {:?}",
                            other.map(|p| p.task["status"].clone())
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await
                }
            }
        }
        attempts
    });

    // Kills at varied moments while the buyer pays (a few hundred milliseconds apart, so that
    // they land inside requests: mid-verification, after the voucher is committed, mid-task),
    // each restart on the same state.
    let mut kills = 0;
    let pauses = [250u64, 420, 180, 610, 330, 520];
    while !buying.is_finished() && kills < pauses.len() {
        tokio::time::sleep(Duration::from_millis(pauses[kills])).await;
        gateway.kill();
        kills += 1;
        gateway.start(3_600_000).await;
    }
    let attempts = tokio::time::timeout(Duration::from_secs(300), buying)
        .await
        .unwrap()
        .unwrap();
    eprintln!("the buyer made {attempts} attempts for {TASKS} tasks across {kills} kills");
    assert!(kills >= 3, "the buyer finished before the kills");

    // One more kill with vouchers unclaimed, then a restart that claims them.
    assert!(gauge(&url, "d402_channel_unclaimed_atomic").await.unwrap() > 0);
    gateway.kill();
    gateway.start(500).await;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let settled = gauge(&url, "d402_channel_unclaimed_atomic").await == Some(0)
            && gauge(&url, "d402_tasks_in_flight").await == Some(0)
            && gauge(&url, "d402_worker_pay_owed_atomic").await == Some(0);
        if settled {
            break;
        }
        assert!(Instant::now() < until, "claims and payouts did not finish");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    gateway.kill();

    // The gateway's records against the chain.
    let tasks = TaskStore::open(&state.join("gateway").join("gateway.redb"))
        .unwrap()
        .all()
        .unwrap();
    let delivered = tasks
        .iter()
        .filter(|t| t.state == TaskState::Delivered)
        .count() as u128;
    assert!(delivered >= TASKS as u128, "{delivered} delivered");
    assert!(
        tasks.iter().all(|t| !t.state.in_flight()),
        "every task ended"
    );
    let ledger = Ledger::open(&state.join("gateway").join("batch-channels.redb")).unwrap();
    let channels = ledger.channels().unwrap();
    assert_eq!(channels.len(), 1, "one channel across every restart");
    let ch = &channels[0];
    let settlement = BatchSettlement::new(SETTLEMENT_ADDRESS, anvil.provider(&deployer));
    let on_chain = settlement.channels(ch.id).call().await.unwrap();
    assert_eq!(
        on_chain.totalClaimed,
        ch.charged.get(),
        "claimed once, exactly what was charged"
    );
    // A task that failed after its charge was claimed is paid back out of the wallet.
    let paid_back: u128 = tasks
        .iter()
        .filter_map(|t| t.refund.as_ref())
        .flat_map(|r| &r.payouts)
        .map(|p| p.amount.get())
        .sum();
    assert_eq!(
        ch.charged.get(),
        delivered * PRICE + paid_back,
        "charged = every delivered task, and any failed one claimed before it failed"
    );
    let fee = PRICE * FEE_BPS / 10_000;
    assert_eq!(
        anvil.balance(token, worker).await.unwrap(),
        delivered * (PRICE - fee)
    );
    assert_eq!(
        anvil.balance(token, gateway_key.address()).await.unwrap(),
        delivered * fee,
        "the wallet keeps the fees"
    );
    assert_eq!(
        anvil.balance(token, buyer_key.address()).await.unwrap(),
        BUYER_FUNDS - on_chain.balance + paid_back,
        "the buyer paid its deposits and nothing else"
    );
}
