//! `base-x402-solana-channel` end to end, on anvil and the real Solana validator with real nodes:
//! the stock npm x402 `exact` client buys a commission-bearing `web.page_to_markdown@1` paying on
//! Base; the gateway (a real `d402 node` process) allocates the split into its own Solana channel;
//! `d402 solana-channel-maintainer` withdraws it for the creator and the two workers, to the unit.
//! Then the gateway is killed with SIGKILL between a second task's Base settlement and its Solana
//! allocation: after the restart that task is allocated exactly once.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_loopback_server::LoopbackServer;
use d402_network_support::*;
use d402_node::Offer;
use d402_rails::solana::channel::ledger::Ledger;
use d402_registry::CreatorWallets;
use d402_registry::registration::{Terms, register};
use d402_solana_chain::SolanaChain;
use serde_json::{Value, json};
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

const PRICE: u64 = 10_000;
const BUYER_FUNDS: u128 = 1_000_000;

const ARTICLE: &str = r#"<html><head><title>Paid on Base, split on Solana</title></head><body><main>
<h1>Paid on Base, split on Solana</h1>
<p>The buyer paid with a stock x402 client on Base; the creator and the workers are paid on Solana.</p>
</main></body></html>"#;

/// web.page_to_markdown@1 with a 10 % commission to `creator` on Solana.
fn commission_page(node: &d402_node::Node, creator: &Pubkey) -> Offer {
    let bytes = component(artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    let manifest = manifest(PAGE, &bytes);
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
    Offer::publish(node.coordinator().store(), registration, manifest, &bytes).unwrap()
}

struct Gateway {
    args: Vec<String>,
    /// Dropping it kills the process with SIGKILL.
    child: Option<common::Killed>,
}

impl Gateway {
    fn start(&mut self) -> String {
        let mut c = Command::new(env!("CARGO_BIN_EXE_d402"));
        c.args(&self.args);
        let (child, info) = common::spawn_node(c);
        self.child = Some(child);
        info["http"].as_str().unwrap().to_string()
    }

    fn kill(&mut self) {
        self.child.take();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_client_pays_on_base_and_the_split_is_withdrawn_on_solana() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = common::client_script(dir);
    let anvil = Anvil::start(4).await.expect("anvil (run scripts/setup.sh)");
    let [deployer, facilitator, buyer, ..] = &anvil.keys[..] else {
        unreachable!("four keys were asked for")
    };
    let base = anvil.deploy_test_usd(deployer).await.unwrap();
    let token = base.asset.address;
    anvil
        .mint(deployer, token, buyer.address(), BUYER_FUNDS)
        .await
        .unwrap();
    let sol = tokio::task::spawn_blocking(SolanaChain::start)
        .await
        .unwrap()
        .expect("validator");
    let mint = sol.create_mint(6).await.unwrap();
    // The gateway's Solana key funds its channel from its own tokens.
    let gateway_sol = sol.funded_keypair(5_000_000_000).await.unwrap();
    sol.mint_to(&mint, &gateway_sol.pubkey(), 10_000_000)
        .await
        .unwrap();
    let maintainer = sol.funded_keypair(5_000_000_000).await.unwrap();
    let creator = Keypair::new().pubkey();
    let workers = [Keypair::new().pubkey(), Keypair::new().pubkey()];

    let site = LoopbackServer::serving(ARTICLE.as_bytes().to_vec());
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut nodes = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let mut config = worker_config(&[PAGE], fetch_snapshotter());
        config.payout_wallets.solana = Some(w.to_string());
        config.payout_wallets.evm = Some(Address::repeat_byte(i as u8 + 1).to_checksum(None));
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
    let validator = start(dir, "validator", &[&bootstrap], None, &[PAGE]).await;
    wait_discovered(&bootstrap, &[&nodes[0], &nodes[1], &validator]).await;
    let publish = dir.join("page");
    let offer = commission_page(&bootstrap, &creator);
    d402_gateway::published::write(
        &publish,
        &offer.registration,
        &offer.manifest,
        &component(artifacts::PAGE_TO_MARKDOWN_COMPONENT),
    )
    .unwrap();
    let owner = Identity::from_seed([42; 32]).public_id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = dir.join("gw");
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut gateway = Gateway {
        args: s(&[
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
            "base-x402-solana-channel",
            "--gateway-price",
            "$0.01",
            "--gateway-fee-bps",
            "500",
            "--offer",
            PAGE,
            "--publish",
            publish.to_str().unwrap(),
            "--trust-namespace",
            &format!("web={owner}"),
            "--max-creator-commission-bps",
            "2000",
            "--allow-private-targets",
            "true",
            "--evm-rpc-url",
            anvil.url.as_str(),
            "--evm-token",
            &token.to_string(),
            "--evm-token-name",
            d402_evm_chain::TOKEN_NAME,
            "--evm-token-version",
            d402_evm_chain::TOKEN_VERSION,
            "--facilitator-key",
            &alloy::hex::encode(facilitator.to_bytes()),
            "--solana-rpc-url",
            sol.rpc_url(),
            "--solana-mint",
            &mint.to_string(),
            "--solana-fee-payer-key",
            &common::keypair_file(dir, "gateway-sol.json", &gateway_sol),
            "--solana-channel-maintainer",
            &maintainer.pubkey().to_string(),
            // Two tasks' worth: the third challenge waits for a top-up.
            "--gateway-channel-deposit",
            "$0.02",
            "--gateway-root-interval-ms",
            "0",
            "--gateway-wait-ms",
            "60000",
            "--gateway-task-timeout-secs",
            "90",
        ]),
        child: None,
    };
    let url = gateway.start();
    let about = common::get_json(&format!("{url}/.well-known/d402-gateway.json")).await;
    assert_eq!(
        about["paymentRails"][0]["name"], "base-x402-solana-channel",
        "{about}"
    );

    let pay = |page: &str| {
        let body = json!({
            "capability": PAGE,
            "input": {"url": site.url("127.0.0.1", page)},
        });
        let args = [
            "--url".to_string(),
            url.clone(),
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
        let script = script.clone();
        std::thread::spawn(move || {
            Command::new("node")
                .arg(&script)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .expect("node runs (run scripts/setup.sh)")
        })
    };
    let out = pay("/article").join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"]["status"], "delivered", "{reply}");
    assert!(
        reply["body"]["result"]["markdown"]
            .as_str()
            .unwrap_or_default()
            .contains("paid on Solana"),
        "{reply}"
    );
    assert_eq!(
        anvil.balance(token, buyer.address()).await.unwrap(),
        BUYER_FUNDS - u128::from(PRICE),
        "paid on Base with the stock client"
    );

    // Second task: SIGKILL once its payment has settled on Base, before its split is allocated.
    let before = anvil.balance(token, buyer.address()).await.unwrap();
    let client = pay("/article?second");
    let until = Instant::now() + Duration::from_secs(60);
    while anvil.balance(token, buyer.address()).await.unwrap() == before {
        assert!(Instant::now() < until, "the second payment never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.kill();
    let _ = client.join();
    let charged_at_kill = {
        let ledger = Ledger::open(&state.join("gateway").join("solana-channels.redb")).unwrap();
        ledger.channels().unwrap()[0].charged
    };
    assert_eq!(
        charged_at_kill, PRICE,
        "killed between the second task's Base settlement and its Solana allocation"
    );
    let url = gateway.start();

    // Two tasks used the deposit up: a third challenge is refused with the reason, until the
    // gateway's upkeep tops the channel up (within the caps) on its next sweep.
    let http = reqwest::Client::new();
    let challenge = || {
        http.post(format!("{url}/tasks"))
            .json(&json!({"capability": PAGE, "input": {"url": site.url("127.0.0.1", "/a")}}))
            .send()
    };
    let headroom = || async {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("d402_channel_headroom_atomic "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    // The resumed second task is allocated first (the headroom falls to nothing).
    let until = Instant::now() + Duration::from_secs(60);
    while headroom().await != Some(0) {
        assert!(
            Instant::now() < until,
            "the second task was never allocated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = challenge().await.unwrap();
    let status = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("challenge_refused")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("Solana channel"),
        "{body}"
    );
    // Under the incident switch the gateway funds nothing: a sweep later (5 s) the channel is
    // still empty; off again, the next sweep tops it up.
    let incident = state.join("gateway").join("INCIDENT");
    std::fs::write(&incident, b"").unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        headroom().await,
        Some(0),
        "no top-up under the incident switch"
    );
    std::fs::remove_file(&incident).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while challenge().await.unwrap().status().as_u16() != 402 {
        assert!(Instant::now() < until, "the channel was never topped up");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(headroom().await, Some(20_000), "topped up by one deposit");

    // The maintainer withdraws each claimant's share; two tasks' split, to the unit.
    let claimants: Vec<String> = workers
        .iter()
        .chain([&creator, &gateway_sol.pubkey()])
        .map(|k| k.to_string())
        .collect();
    let expected = [
        (workers[0], 2 * 4_250u64),
        (workers[1], 2 * 4_250),
        (creator, 2 * 1_000),
        // What it kept of its 10,000,000 after depositing twice 20,000 in its channel, and its
        // two fees.
        (gateway_sol.pubkey(), 10_000_000 - 2 * 20_000 + 2 * 500),
    ];
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_d402"))
            .args([
                "solana-channel-maintainer",
                "--state",
                state.to_str().unwrap(),
            ])
            .args(["--claimants", &claimants.join(",")])
            .args(["--solana-rpc-url", sol.rpc_url()])
            .args([
                "--solana-fee-payer-key",
                &common::keypair_file(dir, "maintainer.json", &maintainer),
            ])
            .arg("--once")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut done = true;
        for (who, amount) in expected {
            let got = sol.token_balance_of(&who, &mint).await.unwrap_or(0);
            assert!(got <= amount, "{who} got {got} of {amount}: paid twice");
            done &= got == amount;
        }
        if done {
            break;
        }
        assert!(Instant::now() < until, "withdrawals did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    gateway.kill();
    let ledger = Ledger::open(&state.join("gateway").join("solana-channels.redb")).unwrap();
    let ch = &ledger.channels().unwrap()[0];
    assert_eq!(ch.charged, 2 * PRICE, "each task charged once");
    assert_eq!(ch.deposit, 2 * 20_000, "the opening and one top-up");
    assert_eq!(ch.payer, gateway_sol.pubkey().to_string());
    let allocated: u64 = ledger
        .allocations(&ch.channel)
        .unwrap()
        .iter()
        .map(|(_, a)| a)
        .sum();
    assert_eq!(allocated, 2 * PRICE, "each task allocated once");
}

/// Gas, transactions, fees and rent per 1,000 tasks: `base-x402-solana-channel` and
/// `solana-task-escrow` beside `base-task-escrow`, one run on one anvil, validator and network (a commission-bearing proof
/// check, 10 % creator commission, 5 % fee; `d402 client` buying 30 tasks on each, one after
/// another). Gas is every Base transaction's `gasUsed` from its receipt, by sender; Solana fees
/// are the chain's own record of each transaction. For BENCHMARKS.md:
/// `cargo test -p d402 --test hybrid_channel -- --ignored --nocapture per_thousand`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it by name"]
async fn per_thousand_hybrid_vs_task_escrow() {
    use alloy::providers::Provider;
    const N: u64 = 30;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start(6).await.expect("anvil");
    let [deployer, escrow_key, hybrid_key, release, buyer, ..] = &anvil.keys[..] else {
        unreachable!()
    };
    let base = anvil.deploy_test_usd(deployer).await.unwrap();
    let token = base.asset.address;
    anvil
        .mint(deployer, token, buyer.address(), 10_000_000)
        .await
        .unwrap();
    let escrow = d402_rails::evm::escrow::BaseTaskEscrow::deploy(
        &anvil.provider(deployer),
        token,
        release.address(),
    )
    .await
    .unwrap();
    let sol = tokio::task::spawn_blocking(SolanaChain::start)
        .await
        .unwrap()
        .expect("validator");
    let mint = sol.create_mint(6).await.unwrap();
    let gateway_sol = sol.funded_keypair(5_000_000_000).await.unwrap();
    sol.mint_to(&mint, &gateway_sol.pubkey(), 10_000_000)
        .await
        .unwrap();
    let maintainer = sol.funded_keypair(5_000_000_000).await.unwrap();
    let creator_sol = Keypair::new().pubkey();
    let creator_evm = Address::repeat_byte(0xc1);
    let worker_sol = Keypair::new().pubkey();
    let worker_evm = Address::repeat_byte(0xa1);

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.solana = Some(worker_sol.to_string());
    config.payout_wallets.evm = Some(worker_evm.to_checksum(None));
    let worker = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    wait_discovered(&bootstrap, &[&worker, &validator]).await;
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
                solana: Some(creator_sol.to_string()),
                evm: Some(creator_evm.to_checksum(None)),
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
    let gateway = |label: &str, extra: &[String]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_d402"));
        c.arg("node")
            .args(["--label", label])
            .args(["--state", dir.join(label).to_str().unwrap()])
            .args(["--peer", &bootstrap.listen_addr().to_string()])
            .args(["--http-host", "127.0.0.1", "--http-port", "0"])
            .args(["--gateway-price", "$0.01", "--gateway-fee-bps", "500"])
            .args(["--offer", MERKLE, "--publish", publish.to_str().unwrap()])
            .args(["--trust-namespace", &format!("merkle={owner}")])
            .args(["--max-creator-commission-bps", "2000"])
            .args(["--evm-rpc-url", anvil.url.as_str()])
            .args(["--evm-token", &token.to_string()])
            .args(["--evm-token-name", d402_evm_chain::TOKEN_NAME])
            .args(["--evm-token-version", d402_evm_chain::TOKEN_VERSION])
            .args(extra);
        common::spawn_node(c)
    };
    let (_escrow_gw, info) = gateway(
        "gw-escrow",
        &[
            "--payment".into(),
            "base-task-escrow".into(),
            "--escrow-address".into(),
            escrow.to_string(),
            "--facilitator-key".into(),
            alloy::hex::encode(escrow_key.to_bytes()),
            "--release-key".into(),
            alloy::hex::encode(release.to_bytes()),
        ],
    );
    let escrow_url = info["http"].as_str().unwrap().to_string();
    let (_hybrid_gw, info) = gateway(
        "gw-hybrid",
        &[
            "--payment".into(),
            "base-x402-solana-channel".into(),
            "--facilitator-key".into(),
            alloy::hex::encode(hybrid_key.to_bytes()),
            "--solana-rpc-url".into(),
            sol.rpc_url().into(),
            "--solana-mint".into(),
            mint.to_string(),
            "--solana-fee-payer-key".into(),
            common::keypair_file(dir, "gateway-sol.json", &gateway_sol),
            "--solana-channel-maintainer".into(),
            maintainer.pubkey().to_string(),
            "--gateway-channel-deposit".into(),
            "$1".into(),
            "--gateway-root-interval-ms".into(),
            "0".into(),
        ],
    );
    let hybrid_url = info["http"].as_str().unwrap().to_string();
    // solana-task-escrow, its own fee payer; the release key here (signing in the validator
    // node instead changes no transaction).
    let escrow_sol = sol.funded_keypair(5_000_000_000).await.unwrap();
    let release_sol = Keypair::new();
    let sol_buyer = sol.funded_keypair(1_000_000_000).await.unwrap();
    sol.mint_to(&mint, &sol_buyer.pubkey(), 10_000_000)
        .await
        .unwrap();
    let (_sol_escrow_gw, info) = gateway(
        "gw-sol-escrow",
        &[
            "--payment".into(),
            "solana-task-escrow".into(),
            "--solana-rpc-url".into(),
            sol.rpc_url().into(),
            "--solana-mint".into(),
            mint.to_string(),
            "--solana-fee-payer-key".into(),
            common::keypair_file(dir, "escrow-sol.json", &escrow_sol),
            "--solana-release-key".into(),
            common::keypair_file(dir, "release-sol.json", &release_sol),
        ],
    );
    let sol_escrow_url = info["http"].as_str().unwrap().to_string();

    let provider = anvil.provider(deployer);
    // Base gas and transactions by sender over blocks (from, to].
    let gas_by_sender = |from: u64, to: u64| {
        let provider = provider.clone();
        async move {
            let mut by = std::collections::BTreeMap::<Address, (u64, u64)>::new();
            for n in from + 1..=to {
                let block = provider
                    .get_block_by_number(n.into())
                    .await
                    .unwrap()
                    .unwrap();
                for hash in block.transactions.hashes() {
                    let r = provider
                        .get_transaction_receipt(hash)
                        .await
                        .unwrap()
                        .unwrap();
                    let e = by.entry(r.from).or_default();
                    e.0 += 1;
                    e.1 += r.gas_used;
                }
            }
            by
        }
    };
    let run = |url: String| {
        let key = buyer.clone();
        async move {
            let b = d402_gateway::client::Buyer::new(&url, key, None);
            for i in 0..N {
                let input: Value =
                    serde_json::from_str(&merkle_input(&format!("{url}{i}"))).unwrap();
                let p = b.run(MERKLE, input).await.expect("bought");
                assert_eq!(p.task["status"], "delivered", "{}", p.task);
            }
        }
    };
    let b0 = provider.get_block_number().await.unwrap();
    run(escrow_url).await;
    // The escrow releases after delivery; give the last one time to land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b1 = provider.get_block_number().await.unwrap();
    let (sol_gw0, sol_m0) = (
        sol.sol_balance(&gateway_sol.pubkey()).await.unwrap(),
        sol.sol_balance(&maintainer.pubkey()).await.unwrap(),
    );
    run(hybrid_url).await;
    let b2 = provider.get_block_number().await.unwrap();
    // The root, then the maintainer's withdrawals for the worker, the creator and the fee.
    let state = dir.join("gw-hybrid");
    let claimants = [worker_sol, creator_sol, gateway_sol.pubkey()]
        .map(|k| k.to_string())
        .join(",");
    let until = Instant::now() + Duration::from_secs(60);
    while sol.token_balance_of(&creator_sol, &mint).await.unwrap_or(0) < N * 1_000 {
        assert!(Instant::now() < until, "withdrawals did not finish");
        let out = Command::new(env!("CARGO_BIN_EXE_d402"))
            .args([
                "solana-channel-maintainer",
                "--state",
                state.to_str().unwrap(),
            ])
            .args(["--claimants", &claimants])
            .args(["--solana-rpc-url", sol.rpc_url()])
            .args([
                "--solana-fee-payer-key",
                &common::keypair_file(dir, "maintainer.json", &maintainer),
            ])
            .arg("--once")
            .output()
            .unwrap();
        assert!(out.status.success());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // solana-task-escrow: every transaction the escrow gateway's fee payer sent (the buyer's
    // fundings it co-signed, the releases), and the lamports it spent net of the rent the
    // releases returned.
    let b = d402_gateway::client::Buyer::with_wallets(
        &sol_escrow_url,
        None,
        Some(d402_gateway::client::SolanaPayer {
            keypair: sol_buyer.insecure_clone(),
            rpc_url: sol.rpc_url().to_string(),
        }),
        None,
    );
    let buy = |i: String| {
        let b = &b;
        async move {
            let input: Value = serde_json::from_str(&merkle_input(&i)).unwrap();
            let p = b.run(MERKLE, input).await.expect("bought");
            assert_eq!(p.task["status"], "delivered", "{}", p.task);
        }
    };
    // Steady state: the first task creates the payees' token accounts (a one-off per payee).
    buy("sol-escrow-warm-up".into()).await;
    let (esc0, buyer_sol0) = (
        sol.sol_balance(&escrow_sol.pubkey()).await.unwrap(),
        sol.sol_balance(&sol_buyer.pubkey()).await.unwrap(),
    );
    let rpc = sol.rpc();
    let signatures = |key: Pubkey| {
        let rpc = &rpc;
        async move {
            rpc.get_signatures_for_address_with_config(
                &key,
                solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config {
                    commitment: Some(solana_commitment_config::CommitmentConfig::confirmed()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .len() as u64
        }
    };
    let sigs0 = signatures(escrow_sol.pubkey()).await;
    for i in 0..N {
        buy(format!("sol-escrow-{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sol_escrow_txs = signatures(escrow_sol.pubkey()).await - sigs0;
    let sol_escrow_spent = esc0 - sol.sol_balance(&escrow_sol.pubkey()).await.unwrap();
    assert_eq!(
        sol.sol_balance(&sol_buyer.pubkey()).await.unwrap(),
        buyer_sol0,
        "the buyer pays no SOL"
    );
    let escrow_gas = gas_by_sender(b0, b1).await;
    let hybrid_gas = gas_by_sender(b1, b2).await;
    let per_thousand = |x: u64| x * 1_000 / N;
    let sum = |m: &std::collections::BTreeMap<Address, (u64, u64)>| {
        m.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1))
    };
    let (etx, egas) = sum(&escrow_gas);
    let (htx, hgas) = sum(&hybrid_gas);
    let sol_spent = sol_gw0 - sol.sol_balance(&gateway_sol.pubkey()).await.unwrap() + sol_m0
        - sol.sol_balance(&maintainer.pubkey()).await.unwrap();
    println!(
        "per 1,000 tasks (measured over {N} each):\n\
         | base-task-escrow per 1,000 | {} Base tx | {} gas | 0 Solana tx |\n\
         | base-x402-solana-channel per 1,000 | {} Base tx | {} gas | Solana: {} lamports spent over the run (fees and rent, not scaled) |\n\
         | solana-task-escrow per 1,000 | 0 Base tx | 0 gas | Solana: {} tx, {} lamports (fees, steady state: the escrow's and the vault's rent came back at each release) |",
        per_thousand(etx),
        per_thousand(egas),
        per_thousand(htx),
        per_thousand(hgas),
        sol_spent,
        per_thousand(sol_escrow_txs),
        per_thousand(sol_escrow_spent),
    );
    println!("escrow run, by sender: {escrow_gas:?}\nhybrid run, by sender: {hybrid_gas:?}");
}
