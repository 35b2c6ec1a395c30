//! `solana-channel` end to end on the real validator: the gateway is a real `d402 node` process
//! on `--payment solana-channel`, three workers (each paid at its own wallet) and a validator run
//! as real nodes in this process, the capability carries a 10 % creator commission, and the buyer
//! is `d402 client`'s channel wallet: it opens one channel in its first payment and pays every
//! later task with a voucher. The maintainer is a real `d402 solana-channel-maintainer` process.
//!
//! - 1,000 tasks: after the maintainer's withdrawals every claimant's balance on chain is the sum
//!   of its shares of the delivered tasks, to the unit; the channel's transactions are the
//!   opening, at most three roots and one withdrawal per claimant.
//! - `kill -9` of the gateway and of the maintainer at varied points of 50 paid tasks: after the
//!   restarts every delivered task is allocated exactly once and every claimant withdraws exactly
//!   its share.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use d402_core::Identity;
use d402_gateway::client::Buyer;
use d402_gateway::gateway::{TaskState, TaskStore};
use d402_gateway::solana_channel_wallet::SolanaChannelWallet;
use d402_network_support::*;
use d402_node::Offer;
use d402_rails::Atomic;
use d402_rails::solana::channel::ledger::Ledger;
use d402_registry::CreatorWallets;
use d402_registry::registration::{Terms, register};
use d402_solana_chain::SolanaChain;
use serde_json::Value;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

const PRICE: u64 = 10_000;
const CREATOR_BPS: u32 = 1_000;
const FEE_BPS: u16 = 500;

/// A `d402` process that can be killed with SIGKILL and started again with the same arguments.
struct Proc {
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Waits for the node's JSON line (a gateway) before returning from `start`.
    reports: bool,
}

impl Proc {
    async fn start(&mut self, extra: &[String]) {
        let mut args = self.args.clone();
        args.extend(extra.iter().cloned());
        let mut child = Command::new(&self.binary)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        if !self.reports {
            std::thread::spawn(move || std::io::copy(&mut { stdout }, &mut std::io::sink()));
            return;
        }
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

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// merkle.verify_proof@1 with a commission to `creator` on Solana, at a quorum of three.
fn commission_offer(node: &d402_node::Node, creator: &Pubkey) -> Offer {
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let mut manifest = manifest(MERKLE, &bytes);
    // Every task runs on all three workers, which share its worker net.
    manifest.validation.quorum = 3;
    let registration = register(
        &manifest,
        &Identity::from_seed([42; 32]),
        Terms {
            namespace: manifest.namespace().to_string(),
            namespace_proof: None,
            creator_commission_bps: CREATOR_BPS,
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

/// The market of one test: chain, network, gateway and maintainer processes, the buyer.
struct Market {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    chain: SolanaChain,
    mint: Pubkey,
    buyer: Keypair,
    creator: Pubkey,
    fee_wallet: Pubkey,
    maintainer_key: Pubkey,
    workers: Vec<Pubkey>,
    gateway: Proc,
    maintainer: Proc,
    url: String,
    _nodes: Vec<d402_node::Node>,
}

impl Market {
    async fn new() -> Market {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let chain = tokio::task::spawn_blocking(SolanaChain::start)
            .await
            .unwrap()
            .expect("the Solana test validator (scripts/test.sh builds it)");
        let mint = chain.create_mint(6).await.unwrap();
        let buyer = chain.funded_keypair(1_000_000_000).await.unwrap();
        chain
            .mint_to(&mint, &buyer.pubkey(), 100_000_000)
            .await
            .unwrap();
        let fee_payer = chain.funded_keypair(10_000_000_000).await.unwrap();
        let maintainer_key = chain.funded_keypair(10_000_000_000).await.unwrap();
        let creator = Keypair::new().pubkey();
        let workers: Vec<Pubkey> = (0..3).map(|_| Keypair::new().pubkey()).collect();

        let bootstrap = start(&dir, "bootstrap", &[], None, &[]).await;
        let mut nodes = Vec::new();
        for (i, w) in workers.iter().enumerate() {
            let mut config = worker_config(&[MERKLE], fetch_snapshotter());
            config.payout_wallets.solana = Some(w.to_string());
            nodes.push(
                start(
                    &dir,
                    &format!("worker-{i}"),
                    &[&bootstrap],
                    Some(config),
                    &[],
                )
                .await,
            );
        }
        let validator = start(&dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
        let refs: Vec<&d402_node::Node> = nodes.iter().chain([&validator]).collect();
        wait_discovered(&bootstrap, &refs).await;
        let publish = dir.join("merkle");
        let offer = commission_offer(&bootstrap, &creator);
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
        let fee_payer_file = common::keypair_file(&dir, "fee-payer.json", &fee_payer);
        let maintainer_file = common::keypair_file(&dir, "maintainer.json", &maintainer_key);
        let built = std::env::var_os("D402_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_d402")));
        let binary = dir.join("d402");
        std::fs::copy(built, &binary).unwrap();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let gateway = Proc {
            binary: binary.clone(),
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
                "solana-channel",
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
                "--max-creator-commission-bps",
                "2000",
                "--solana-rpc-url",
                chain.rpc_url(),
                "--solana-mint",
                &mint.to_string(),
                "--solana-fee-payer-key",
                &fee_payer_file,
                "--solana-channel-maintainer",
                &maintainer_key.pubkey().to_string(),
                "--gateway-wait-ms",
                "10000",
            ]),
            child: None,
            reports: true,
        };
        let mut claimants: Vec<String> = workers.iter().map(|w| w.to_string()).collect();
        claimants.push(creator.to_string());
        claimants.push(fee_payer.pubkey().to_string());
        let maintainer = Proc {
            binary,
            args: s(&[
                "solana-channel-maintainer",
                "--state",
                state.to_str().unwrap(),
                "--claimants",
                &claimants.join(","),
                "--solana-rpc-url",
                chain.rpc_url(),
                "--solana-fee-payer-key",
                &maintainer_file,
            ]),
            child: None,
            reports: false,
        };
        nodes.push(validator);
        nodes.push(bootstrap);
        Market {
            _tmp: tmp,
            dir,
            chain,
            mint,
            buyer,
            creator,
            fee_wallet: fee_payer.pubkey(),
            maintainer_key: maintainer_key.pubkey(),
            workers,
            gateway,
            maintainer,
            url,
            _nodes: nodes,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.join("gw")
    }

    /// The buyer's client, depositing `deposit` at the opening.
    fn buyer(&self, deposit: u64) -> Buyer {
        let mut b = Buyer::with_wallets(&self.url, None, None, None);
        b.solana_channels = Some(
            SolanaChannelWallet::new(
                &self.dir.join("buyer"),
                self.buyer.insecure_clone(),
                self.chain.rpc_url(),
                Atomic::new(20_000_000),
            )
            .depositing(Atomic::new(deposit.into())),
        );
        b.patience = Duration::from_secs(60);
        b
    }

    /// Runs the maintainer once (`--once`), to its end.
    fn maintain_once(&self) {
        let mut c = Command::new(&self.maintainer.binary);
        c.args(&self.maintainer.args).arg("--once");
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What each claimant is owed by the gateway's own task records: per delivered task, the
    /// worker net shared by its workers, the creator's commission, the gateway's fee.
    fn owed_by_tasks(&self) -> (usize, BTreeMap<String, u64>) {
        let tasks = TaskStore::open(&self.state().join("gateway").join("gateway.redb"))
            .unwrap()
            .all()
            .unwrap();
        assert!(
            tasks.iter().all(|t| !t.state.in_flight()),
            "every task ended"
        );
        let mut owed = BTreeMap::<String, u64>::new();
        let mut delivered = 0;
        for t in tasks.iter().filter(|t| t.state == TaskState::Delivered) {
            delivered += 1;
            let split = t.split.expect("the split is fixed at payment");
            for p in d402_rails::shares(split.worker, &t.worker_wallets) {
                *owed.entry(p.to).or_default() += p.amount.get() as u64;
            }
            *owed.entry(self.creator.to_string()).or_default() += split.creator.get() as u64;
            *owed.entry(self.fee_wallet.to_string()).or_default() += split.gateway.get() as u64;
        }
        (delivered, owed)
    }

    /// Until the maintainer has withdrawn everything the ledger allocated (maintainer rounds in
    /// between), then checks each claimant's balance against `owed`.
    async fn withdrawn_to_the_unit(&self, owed: &BTreeMap<String, u64>) {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            self.maintain_once();
            let mut all = true;
            for (who, amount) in owed {
                let k: Pubkey = who.parse().unwrap();
                let got = self
                    .chain
                    .token_balance_of(&k, &self.mint)
                    .await
                    .unwrap_or(0);
                assert!(got <= *amount, "{who} got {got}, owed {amount}: paid twice");
                all &= got == *amount;
            }
            if all {
                return;
            }
            assert!(Instant::now() < until, "withdrawals did not finish");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Buys `n` tasks one after another (`pace` apart), each retried until it is delivered; returns
/// the attempts.
async fn buy(buyer: Buyer, n: usize, tag: &'static str, pace: Duration) -> usize {
    let mut bought = 0;
    let mut attempts = 0;
    while bought < n {
        attempts += 1;
        assert!(attempts < n + 200, "the buyer keeps failing");
        let input: Value =
            serde_json::from_str(&merkle_input(&format!("{tag}{bought}-{attempts}"))).unwrap();
        match buyer.run(MERKLE, input).await {
            Ok(p) if p.task["status"] == "delivered" => {
                bought += 1;
                tokio::time::sleep(pace).await;
            }
            other => {
                if attempts % 10 == 1 {
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
}

/// The fees (lamports) of the transactions `who` paid for or signed, as the chain recorded them.
async fn fees_of(chain: &SolanaChain, who: &Pubkey) -> Vec<u64> {
    let rpc = chain.rpc();
    let sigs = rpc
        .get_signatures_for_address_with_config(
            who,
            solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config {
                commitment: Some(solana_commitment_config::CommitmentConfig::confirmed()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut fees = Vec::new();
    for s in sigs {
        let sig: solana_signature::Signature = s.signature.parse().unwrap();
        let tx = rpc
            .get_transaction_with_config(
                &sig,
                solana_rpc_client_api::config::RpcTransactionConfig {
                    commitment: Some(solana_commitment_config::CommitmentConfig::confirmed()),
                    max_supported_transaction_version: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        fees.push(tx.transaction.meta.map_or(0, |m| m.fee));
    }
    fees
}

/// The channel's transactions on chain: everything that touched its vault (the opening, top-ups,
/// roots, withdrawals).
async fn channel_transactions(chain: &SolanaChain, channel: &Pubkey, mint: &Pubkey) -> usize {
    let vault = d402_rails::solana::channel::payer::vault_of(channel, mint);
    chain
        .rpc()
        .get_signatures_for_address_with_config(
            &vault,
            solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config {
                commitment: Some(solana_commitment_config::CommitmentConfig::confirmed()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .iter()
        .filter(|s| s.err.is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_tasks_one_opening_few_roots_one_withdrawal_each() {
    let mut m = Market::new().await;
    // Roots wait for the end of the run: one root then carries every task.
    m.gateway
        .start(&["--gateway-root-interval-ms".into(), "3600000".into()])
        .await;
    let lamports = |k: Pubkey| {
        let chain = &m.chain;
        async move { chain.sol_balance(&k).await.unwrap() }
    };
    let (gateway_sol, maintainer_sol) = (
        lamports(m.fee_wallet).await,
        lamports(m.maintainer_key).await,
    );
    let t0 = Instant::now();
    // The buyer funds its channel once for the whole run.
    let attempts = buy(m.buyer(1_000 * PRICE), 1_000, "t", Duration::ZERO).await;
    eprintln!("1,000 tasks in {:?} ({attempts} attempts)", t0.elapsed());
    assert_eq!(attempts, 1_000, "no payment was refused");
    m.gateway.kill();
    let (delivered, owed) = m.owed_by_tasks();
    m.gateway
        .start(&["--gateway-root-interval-ms".into(), "0".into()])
        .await;
    assert_eq!(delivered, 1_000);
    let total: u64 = owed.values().sum();
    assert_eq!(total, 1_000 * PRICE, "every delivered task split in full");
    assert_eq!(owed[&m.creator.to_string()], 1_000 * PRICE / 10);
    for w in &m.workers {
        assert!(owed.contains_key(&w.to_string()), "every worker worked");
    }
    m.withdrawn_to_the_unit(&owed).await;
    m.gateway.kill();

    let ledger = Ledger::open(&m.state().join("gateway").join("solana-channels.redb")).unwrap();
    let channels = ledger.channels().unwrap();
    assert_eq!(channels.len(), 1, "one channel");
    let ch: Pubkey = channels[0].channel.parse().unwrap();
    assert_eq!(channels[0].charged, 1_000 * PRICE);
    let roots = ledger.roots(&channels[0].channel).unwrap().len();
    let txs = channel_transactions(&m.chain, &ch, &m.mint).await;
    eprintln!(
        "transactions on the channel: {txs} (1 opening, {roots} roots, {} withdrawals)",
        owed.len()
    );
    assert!(roots <= 3, "{roots} roots");
    eprintln!(
        "fees paid by the gateway's key, per transaction: {:?}; by the maintainer's: {:?}",
        fees_of(&m.chain, &m.fee_wallet).await,
        fees_of(&m.chain, &m.maintainer_key).await
    );
    // What the 1,000 tasks cost in SOL (fees and rent) for BENCHMARKS.md.
    let spent = |before: u64, after: u64| before.saturating_sub(after);
    eprintln!(
        "SOL spent for 1,000 tasks: gateway {} lamports (the opening's fee and the channel's and \
         vault's rent, the roots' fees), maintainer {} lamports (withdrawal fees, claim and token \
         account rent)",
        spent(gateway_sol, lamports(m.fee_wallet).await),
        spent(maintainer_sol, lamports(m.maintainer_key).await)
    );
    assert_eq!(
        txs,
        1 + roots + owed.len(),
        "opening + roots + one withdrawal each"
    );
    // The buyer paid what was charged and nothing else; the rest of its deposit stays in the
    // vault, its own.
    let deposit = channels[0].deposit;
    assert_eq!(
        m.chain
            .token_balance_of(&m.buyer.pubkey(), &m.mint)
            .await
            .unwrap(),
        100_000_000 - deposit
    );
    let vault = d402_rails::solana::channel::payer::vault_of(&ch, &m.mint);
    assert_eq!(
        m.chain.token_balance(&vault).await.unwrap(),
        Some(deposit - 1_000 * PRICE)
    );

    // The same from the command line: `d402 client run --scheme solana-channel` opens a channel of
    // its own (kept under its --state) in its first payment.
    drop(ledger);
    m.gateway
        .start(&["--gateway-root-interval-ms".into(), "3600000".into()])
        .await;
    let wallet = common::keypair_file(&m.dir, "cli-buyer.json", &m.buyer);
    let cli_state = m.dir.join("cli-buyer");
    let out = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(["client", "run", "--gateway", &m.url, "--capability", MERKLE])
        .args(["--input", &merkle_input("from the command line")])
        .args([
            "--solana-wallet",
            &wallet,
            "--solana-rpc-url",
            m.chain.rpc_url(),
        ])
        .args(["--scheme", "solana-channel", "--max-spend", "$0.05"])
        .args(["--state", cli_state.to_str().unwrap()])
        .output()
        .unwrap();
    let r = common::bought(&out);
    assert_eq!(r["payment"]["rail"], "solana-channel", "{r}");
    assert_eq!(r["result"]["valid"], true, "{r}");
    let kept: Value =
        serde_json::from_slice(&std::fs::read(cli_state.join("solana-channels.json")).unwrap())
            .unwrap();
    let entry = kept.as_object().unwrap().values().next().unwrap();
    assert_eq!(
        (entry["opened"].clone(), entry["charged"].clone()),
        (Value::Bool(true), Value::from(PRICE))
    );
    assert_ne!(
        entry["channel"], channels[0].channel,
        "a channel of its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_gateway_and_maintainer_allocates_each_task_once() {
    let mut m = Market::new().await;
    let interval = ["--gateway-root-interval-ms".to_string(), "1000".to_string()];
    m.gateway.start(&interval).await;
    let every = ["--interval-ms".to_string(), "400".to_string()];
    m.maintainer.start(&every).await;
    // The opening deposits the gateway's minimum.
    let buying = tokio::spawn(buy(m.buyer(0), 50, "k", Duration::from_millis(300)));
    // Kills at varied moments while the buyer pays, each restart on the same state: the
    // maintainer every second or so (mid-publication, mid-withdrawal), the gateway once its sweep
    // has had time to sign and publish a root (mid-request, mid-allocation, mid-root).
    let t0 = Instant::now();
    let gateway_kills_at = [2_100u64, 7_300, 13_900, 20_700, 27_400];
    let maintainer_pauses = [700u64, 1_150, 450, 1_300, 820, 960, 610];
    let (mut gateway_kills, mut maintainer_kills) = (0, 0);
    while !buying.is_finished() {
        tokio::time::sleep(Duration::from_millis(
            maintainer_pauses[maintainer_kills % maintainer_pauses.len()],
        ))
        .await;
        m.maintainer.kill();
        m.maintainer.start(&every).await;
        maintainer_kills += 1;
        if gateway_kills < gateway_kills_at.len()
            && t0.elapsed() >= Duration::from_millis(gateway_kills_at[gateway_kills])
        {
            m.gateway.kill();
            m.gateway.start(&interval).await;
            gateway_kills += 1;
        }
    }
    let kills = gateway_kills + maintainer_kills;
    let attempts = tokio::time::timeout(Duration::from_secs(300), buying)
        .await
        .unwrap()
        .unwrap();
    eprintln!("the buyer made {attempts} attempts for 50 tasks across {kills} kills");
    assert!(
        gateway_kills >= 2 && maintainer_kills >= 6,
        "the buyer finished before the kills"
    );
    m.maintainer.kill();
    m.gateway.kill();
    let (delivered, owed) = m.owed_by_tasks();
    m.gateway
        .start(&["--gateway-root-interval-ms".into(), "0".into()])
        .await;
    assert!(delivered >= 50, "{delivered} delivered");
    m.withdrawn_to_the_unit(&owed).await;
    m.gateway.kill();

    // Every delivered task's charge is allocated once; the ledger's allocations are the tasks'.
    let ledger = Ledger::open(&m.state().join("gateway").join("solana-channels.redb")).unwrap();
    let channels = ledger.channels().unwrap();
    assert_eq!(channels.len(), 1, "one channel across every restart");
    let allocations: BTreeMap<String, u64> = ledger
        .allocations(&channels[0].channel)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        allocations, owed,
        "allocated exactly once per delivered task"
    );
    let tasks = TaskStore::open(&m.state().join("gateway").join("gateway.redb"))
        .unwrap()
        .all()
        .unwrap();
    for t in tasks.iter().filter(|t| t.state == TaskState::Delivered) {
        let charge = ledger.charge_of(&t.verified.settlement_id).unwrap();
        assert!(
            charge.is_some_and(|c| c.allocated && !c.reversed),
            "task {} allocated",
            t.id
        );
    }
    assert!(
        ledger.roots(&channels[0].channel).unwrap().len() >= 2,
        "roots were published while the processes were being killed"
    );
    // Charged = every delivered task (a failed one's charge was given back).
    assert_eq!(channels[0].charged, delivered as u64 * PRICE);
}

/// Paid requests per second, `solana-channel` against `solana-direct`, in one run on one network
/// (one worker, a validator, a commission-free proof check; one buyer paying one task after
/// another). For BENCHMARKS.md:
/// `cargo test -p d402 --test solana_channel_gateway -- --ignored --nocapture requests_per_second`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it by name"]
async fn requests_per_second_channel_vs_direct() {
    const N: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let chain = tokio::task::spawn_blocking(SolanaChain::start)
        .await
        .unwrap()
        .expect("validator");
    let mint = chain.create_mint(6).await.unwrap();
    let buyer = chain.funded_keypair(1_000_000_000).await.unwrap();
    chain
        .mint_to(&mint, &buyer.pubkey(), 100_000_000)
        .await
        .unwrap();
    let direct_key = chain.funded_keypair(10_000_000_000).await.unwrap();
    chain.create_ata(&direct_key.pubkey(), &mint).await.unwrap();
    let channel_key = chain.funded_keypair(10_000_000_000).await.unwrap();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.solana = Some(Keypair::new().pubkey().to_string());
    let worker = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    wait_discovered(&bootstrap, &[&worker, &validator]).await;
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
    let gateway = |label: &str, rail: &str, key: &Keypair| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_d402"));
        c.arg("node")
            .args(["--label", label])
            .args(["--state", dir.join(label).to_str().unwrap()])
            .args(["--peer", &bootstrap.listen_addr().to_string()])
            .args(["--http-host", "127.0.0.1", "--http-port", "0"])
            .args(["--payment", rail, "--gateway-price", "$0.01"])
            .args(["--gateway-fee-bps", "500"])
            .args(["--offer", MERKLE, "--publish", publish.to_str().unwrap()])
            .args(["--trust-namespace", &format!("merkle={owner}")])
            .args(["--solana-rpc-url", chain.rpc_url()])
            .args(["--solana-mint", &mint.to_string()])
            .args([
                "--solana-fee-payer-key",
                &common::keypair_file(dir, &format!("{label}.json"), key),
            ]);
        common::spawn_node(c)
    };
    let (_direct, info) = gateway("gw-direct", "solana-direct", &direct_key);
    let direct_url = info["http"].as_str().unwrap().to_string();
    let (_channel, info) = gateway("gw-channel", "solana-channel", &channel_key);
    let channel_url = info["http"].as_str().unwrap().to_string();

    let run = |buyer: Buyer, tag: &'static str| async move {
        // Warm: the first purchase (the opening, on a channel) is not timed.
        buy_one(&buyer, tag, 0).await;
        let t0 = Instant::now();
        for i in 1..=N {
            buy_one(&buyer, tag, i).await;
        }
        N as f64 / t0.elapsed().as_secs_f64()
    };
    let direct = Buyer::with_wallets(
        &direct_url,
        None,
        Some(d402_gateway::client::SolanaPayer {
            keypair: buyer.insecure_clone(),
            rpc_url: chain.rpc_url().to_string(),
        }),
        None,
    );
    let mut channel = Buyer::with_wallets(&channel_url, None, None, None);
    channel.solana_channels = Some(SolanaChannelWallet::new(
        &dir.join("buyer"),
        buyer.insecure_clone(),
        chain.rpc_url(),
        Atomic::new(20_000_000),
    ));
    let direct_rps = run(direct, "d").await;
    let channel_rps = run(channel, "c").await;
    println!(
        "paid requests per second over {N} sequential tasks: solana-direct {direct_rps:.1}, \
         solana-channel {channel_rps:.1} ({:.2}x)",
        channel_rps / direct_rps
    );
}

async fn buy_one(buyer: &Buyer, tag: &str, i: usize) {
    let input: Value = serde_json::from_str(&merkle_input(&format!("{tag}{i}"))).unwrap();
    let p = buyer.run(MERKLE, input).await.expect("bought");
    assert_eq!(p.task["status"], "delivered", "{}", p.task);
}

/// The incident sequence (seed 000) on a stopped gateway, one command per step: every claimant is
/// paid, every claim and the channel's accounts are reclaimed, and the payer holds the
/// unallocated remainder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_steps_pay_everyone_close_and_reclaim() {
    let mut m = Market::new().await;
    m.gateway
        .start(&[
            "--gateway-root-interval-ms".into(),
            "3600000".into(),
            "--gateway-channel-grace-secs".into(),
            "0".into(),
        ])
        .await;
    let attempts = buy(m.buyer(0), 5, "i", Duration::ZERO).await;
    assert_eq!(attempts, 5);
    m.gateway.kill();
    let (_, owed) = m.owed_by_tasks();
    let fee_payer = m.dir.join("fee-payer.json");
    let step = |name: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_d402"))
            .args(["solana-channel-incident", "--step", name])
            .args(["--state", m.state().to_str().unwrap()])
            .args(["--solana-rpc-url", m.chain.rpc_url()])
            .args(["--solana-fee-payer-key", fee_payer.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{name}: {reports}");
        reports[0].clone()
    };
    // Out of order first: nothing to close before a close request.
    assert!(
        step("close")["waiting"]
            .as_str()
            .unwrap()
            .contains("request-close")
    );
    assert_eq!(step("final-roots")["sent"].as_array().unwrap().len(), 1);
    assert_eq!(
        step("withdraw")["sent"].as_array().unwrap().len(),
        owed.len()
    );
    // Idempotent: run again, nothing is left to withdraw.
    assert!(step("withdraw")["sent"].as_array().unwrap().is_empty());
    for (who, amount) in &owed {
        let k: Pubkey = who.parse().unwrap();
        assert_eq!(
            m.chain.token_balance_of(&k, &m.mint).await.unwrap(),
            *amount,
            "{who}"
        );
    }
    let ledger = Ledger::open(&m.state().join("gateway").join("solana-channels.redb")).unwrap();
    let ch = ledger.channels().unwrap()[0].clone();
    drop(ledger);
    let channel: Pubkey = ch.channel.parse().unwrap();
    assert_eq!(step("request-close")["sent"].as_array().unwrap().len(), 1);
    assert_eq!(step("close")["sent"].as_array().unwrap().len(), 1);
    // The payer holds everything it did not spend: its deposit's unallocated remainder is back.
    assert_eq!(
        m.chain
            .token_balance_of(&m.buyer.pubkey(), &m.mint)
            .await
            .unwrap(),
        100_000_000 - 5 * PRICE
    );
    let reclaim = step("reclaim");
    assert_eq!(
        reclaim["sent"].as_array().unwrap().len(),
        owed.len() + 1,
        "every claim and the channel: {reclaim}"
    );
    let rpc = m.chain.rpc();
    assert!(
        rpc.get_account(&channel).await.is_err(),
        "channel reclaimed"
    );
    let vault = d402_rails::solana::channel::payer::vault_of(&channel, &m.mint);
    assert!(rpc.get_account(&vault).await.is_err(), "vault reclaimed");
    for who in owed.keys() {
        let k: Pubkey = who.parse().unwrap();
        let claim = d402_rails::solana::channel::program::channel::claim_address(&channel, &k);
        assert!(
            rpc.get_account(&claim).await.is_err(),
            "claim of {who} reclaimed"
        );
    }
    // Everything done: a step run again reports the channel gone and sends nothing.
    assert!(step("reclaim")["sent"].as_array().unwrap().is_empty());
}
