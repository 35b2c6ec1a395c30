//! The d402 gateway against the stock x402 v2 express server, side by side in one run, paid by
//! the same stock x402 client on the same anvil.
//!
//! Ours: a local d402 network in this process (bootstrap, two workers, a validator and a gateway
//! node, over real libp2p on 127.0.0.1) behind the gateway on `base-x402-direct`. Theirs:
//! `bench/x402-express/server.mjs`, an express app behind `@x402/express` with the stock
//! facilitator (`@x402/core` + `@x402/evm`) settling on the same chain. The load generator
//! (`bench/x402-express/load.mjs`, `@x402/fetch` + `@x402/evm`) is the same program for both.
//!
//! Two workloads: `merkle.verify_proof@1` (trivial: what is left is the price of a paid request)
//! and `web.page_to_markdown@1` with quorum 2 on pages frozen beforehand (the Rust book), which the
//! express side converts with turndown.
//!
//! ```sh
//! D402_SETUP_BENCH=1 scripts/setup.sh
//! cargo bench -p d402 --bench x402_express
//! ```
//!
//! Settings (environment): `D402_BENCH_REQUESTS` paid requests per side for merkle (default 1000),
//! `D402_BENCH_PAGE_REQUESTS` for pages (default 240), `D402_BENCH_CONCURRENCY` concurrent
//! buyers (default 8), `D402_BENCH_WARMUP` untimed paid requests per side first (default 16),
//! `D402_BENCH_ONLY` `merkle`, `page` or `batch` to run one workload (`merkle` includes the
//! batch-settlement sides).
//!
//! Two more sides for `merkle.verify_proof@1`, both paid by the stock batch-settlement client:
//! our gateway on `base-batch-settlement`, and the stock server on `batch-settlement` (its
//! scheme and facilitator in process, on our settlement contract at the canonical address, with
//! `rails/contracts/TryAggregate.sol` standing in for Multicall3, which the stock facilitator reads
//! through and anvil lacks).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, Result, bail};
use d402_core::{FrozenPages, Identity};
use d402_evm_chain::{Anvil, CHAIN_ID, TOKEN_NAME, TOKEN_VERSION};
use d402_gateway::gateway::api;
use d402_gateway::gateway::{Gateway, GatewayConfig, SalePolicy, TaskStore};
use d402_network_support::*;
use d402_node::Node;
use d402_rails::evm::batch::ledger::Ledger;
use d402_rails::evm::batch::rail::{BaseBatch, BatchPolicy};
use d402_rails::evm::direct::BaseDirect;
use d402_rails::{Atomic, Outbox, SafetyCaps};
use d402_registry::AcceptancePolicy;
use serde_json::{Value, json};

/// $0.01 of the 6-decimals test token, on both sides.
const PRICE: u128 = 10_000;
/// What a batch-settlement channel is opened with on both sides: 200 requests' worth, so that each
/// buyer deposits once over a run.
const MIN_DEPOSIT: u128 = 200 * PRICE;
/// Pages of the Rust book frozen for the page workload.
const PAGES: usize = 60;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process killed when dropped, so that a failed run leaves nothing behind.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where `scripts/setup.sh` installed the pinned npm packages (`D402_SETUP_BENCH=1`).
fn npm_folder() -> Result<PathBuf> {
    let tools = std::env::var_os("D402_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/d402-tools")))
        .context("neither D402_TOOLS nor HOME is set")?;
    let dir = tools.join("x402-express");
    let lock =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/x402-express/package-lock.json");
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    if installed != Some(std::fs::read(&lock)?)
        || !dir
            .join("node_modules/@x402/express/package.json")
            .is_file()
    {
        bail!(
            "the x402 express baseline is not installed (or is stale) in {}: run `D402_SETUP_BENCH=1 scripts/setup.sh`",
            dir.display()
        );
    }
    Ok(dir)
}

/// The scripts from the clone, beside a link to the installed `node_modules`, so that node
/// resolves the pinned packages for them.
fn scripts(work: &Path) -> Result<PathBuf> {
    let dir = work.join("js");
    std::fs::create_dir_all(&dir)?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/x402-express");
    for f in ["server.mjs", "load.mjs", "package.json"] {
        std::fs::copy(src.join(f), dir.join(f))?;
    }
    std::os::unix::fs::symlink(npm_folder()?.join("node_modules"), dir.join("node_modules"))?;
    Ok(dir)
}

fn hex_key(k: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::hex::encode(k.to_bytes()))
}

/// What `load.mjs` prints.
#[derive(Debug, Clone, serde::Deserialize)]
struct Load {
    requests: u64,
    seconds: f64,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    errors: u64,
    client_cpu_ms: Option<f64>,
    first_error: Option<String>,
}

/// A run's figures, with the CPU time each process spent on the timed requests.
struct Measured {
    load: Load,
    /// The server side: this process (gateway and every node) for ours, `server.mjs` for theirs.
    server_cpu_ms: f64,
    anvil_cpu_ms: f64,
}

impl Measured {
    fn per_request(&self, ms: f64) -> String {
        if self.load.requests == 0 {
            return "-".into();
        }
        format!("{:.1}", ms / self.load.requests as f64)
    }
}

/// CPU time (user + system) that process `pid` has used, in ms. `/proc` counts in USER_HZ ticks,
/// which Linux fixes at 100 a second.
fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 10.0
}

/// The pid of this process's child named `name` (anvil is started by `d402-evm-chain`, which
/// keeps its handle to itself).
fn child_named(name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
}

struct Bench {
    js: PathBuf,
    work: PathBuf,
    keys_file: PathBuf,
    asset: String,
    rpc: String,
    warmup: usize,
    anvil_pid: u32,
}

/// How the load generator pays: the stock `exact` client, or the stock batch-settlement client
/// (whose deposit is capped at 5 × its per-payment cap: the cap is set so that one deposit covers
/// a buyer's whole run).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pay {
    Exact,
    Batch,
}

impl Bench {
    /// Runs `load.mjs` against `url` + `path` with `bodies`: the warm-up requests, then
    /// `requests` timed paid requests, while the CPU time of `server_pid`, of anvil and of the
    /// client is counted.
    fn load(
        &self,
        name: &str,
        (url, server_pid): (&str, u32),
        path: &str,
        bodies: &[Value],
        requests: usize,
        pay: Pay,
    ) -> Result<Measured> {
        let (scheme, max_amount) = match pay {
            Pay::Exact => ("exact", PRICE),
            Pay::Batch => ("batch-settlement", MIN_DEPOSIT / 5),
        };
        let bodies_file = self.work.join(format!("{name}.bodies.json"));
        std::fs::write(&bodies_file, serde_json::to_vec(bodies)?)?;
        let run = |requests: usize, warmup: usize, offset: usize| -> Result<Load> {
            let out = Command::new("node")
                .arg(self.js.join("load.mjs"))
                .args(["--url", url, "--path", path])
                .arg("--bodies")
                .arg(&bodies_file)
                .arg("--keys")
                .arg(&self.keys_file)
                .args(["--requests", &requests.to_string()])
                .args(["--warmup", &warmup.to_string()])
                .args(["--offset", &offset.to_string()])
                .args(["--chain-id", &CHAIN_ID.to_string()])
                .args([
                    "--asset",
                    &self.asset,
                    "--max-amount",
                    &max_amount.to_string(),
                ])
                .args(["--scheme", scheme, "--rpc", &self.rpc])
                .stderr(Stdio::inherit())
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let last = text.lines().last().unwrap_or_default();
            serde_json::from_str(last)
                .with_context(|| format!("load.mjs for {name} ({}): {text}", out.status))
        };
        if self.warmup > 0 {
            run(0, self.warmup, 0)?;
        }
        let (server, anvil) = (cpu_ms(server_pid), cpu_ms(self.anvil_pid));
        let load = run(requests, 0, self.warmup)?;
        let measured = Measured {
            server_cpu_ms: cpu_ms(server_pid) - server,
            anvil_cpu_ms: cpu_ms(self.anvil_pid) - anvil,
            load,
        };
        eprintln!(
            "{name}: {:?}; server CPU {:.0} ms, anvil CPU {:.0} ms",
            measured.load, measured.server_cpu_ms, measured.anvil_cpu_ms
        );
        if let Some(e) = &measured.load.first_error {
            eprintln!("{name}: first error: {e}");
        }
        Ok(measured)
    }
}

/// Starts `bench/x402-express/server.mjs` selling on `scheme` with `key` as its facilitator,
/// paid into `pay_to`; returns the process (killed when dropped), its URL and its pid.
fn start_server(
    js: &Path,
    (rpc, asset): (&str, &str),
    (key, pay_to): (&PrivateKeySigner, Address),
    pages_file: &Path,
    scheme: &str,
) -> Result<(Killed, String, u32)> {
    let mut child = Command::new("node")
        .arg(js.join("server.mjs"))
        .args(["--rpc", rpc])
        .args(["--chain-id", &CHAIN_ID.to_string()])
        .args(["--asset", asset])
        .args(["--asset-name", TOKEN_NAME, "--asset-version", TOKEN_VERSION])
        .args(["--price", &PRICE.to_string()])
        .args(["--facilitator-key", &hex_key(key)])
        .args(["--pay-to", &pay_to.to_checksum(None)])
        .args([
            "--scheme",
            scheme,
            "--min-deposit",
            &MIN_DEPOSIT.to_string(),
        ])
        .arg("--pages")
        .arg(pages_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("node (run scripts/setup.sh)")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server.mjs stdout")?).read_line(&mut line)?;
    let pid = child.id();
    let killed = Killed(child);
    let url = serde_json::from_str::<Value>(&line)
        .with_context(|| format!("server.mjs said {line:?}"))?["url"]
        .as_str()
        .context("server.mjs printed no url")?
        .to_string();
    Ok((killed, url, pid))
}

/// A local d402 network: bootstrap, two workers selling both capabilities (pages served from
/// `pages`, no network access), a validator for both, and the gateway's own node.
async fn network(dir: &Path, pages: &FrozenPages, payout: Address) -> (Vec<Node>, Node) {
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut nodes = vec![];
    for label in ["worker-1", "worker-2"] {
        let mut config = worker_config(&[MERKLE, PAGE], Arc::new(pages.clone()));
        // `base-x402-direct` pays each worker its net out of `payTo` once its task is validated.
        config.payout_wallets.evm = Some(payout.to_checksum(None));
        nodes.push(start(dir, label, &[&bootstrap], Some(config), &[]).await);
    }
    nodes.push(start(dir, "validator", &[&bootstrap], None, &[MERKLE, PAGE]).await);
    let gateway = start(dir, "gateway", &[&bootstrap], None, &[]).await;
    let mut everyone: Vec<&Node> = nodes.iter().collect();
    everyone.push(&bootstrap);
    everyone.push(&gateway);
    for n in &everyone {
        wait_discovered(n, &everyone).await;
    }
    nodes.push(bootstrap);
    (nodes, gateway)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter or `--list` from the test harness means nothing here.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let requests = env_usize("D402_BENCH_REQUESTS", 1000);
    let page_requests = env_usize("D402_BENCH_PAGE_REQUESTS", 240);
    let concurrency = env_usize("D402_BENCH_CONCURRENCY", 8).max(1);
    let warmup = env_usize("D402_BENCH_WARMUP", 16);
    let tmp = tempfile::tempdir()?;
    let work = tmp.path().to_path_buf();
    let js = scripts(&work)?;
    let t0 = Instant::now();

    // The chain: one token, a facilitator key and a payee per side, and the buyers.
    let anvil = Anvil::start_with(7 + concurrency, &["--prune-history", "256"])
        .await
        .context("anvil (run scripts/setup.sh)")?;
    let keys = anvil.keys.clone();
    let (deployer, our_facilitator, their_facilitator) = (&keys[0], &keys[1], &keys[2]);
    // `base-x402-direct` pays workers and refunds out of `payTo` with the facilitator's key, so
    // on our side the two are one wallet; keys[3] is the workers' payout wallet.
    let (our_pay_to, their_pay_to) = (our_facilitator.address(), keys[4].address());
    let worker_wallet = keys[3].address();
    // keys[5] and keys[6]: the batch-settlement sides' facilitators (ours is its wallet too).
    let (our_batch_key, their_batch_key) = (&keys[5], &keys[6]);
    let buyers = &keys[7..];
    let chain = anvil.deploy_test_usd(deployer).await?;
    let token = chain.asset.address;
    let per_buyer =
        PRICE * (2 * (requests + page_requests + 2 * warmup) as u128 + 10) + 4 * MIN_DEPOSIT;
    for b in buyers {
        anvil.mint(deployer, token, b.address(), per_buyer).await?;
    }
    let keys_file = work.join("buyers.json");
    std::fs::write(
        &keys_file,
        serde_json::to_vec(&buyers.iter().map(hex_key).collect::<Vec<_>>())?,
    )?;

    // The frozen pages, under the URLs they are published at.
    let book = d402_corpus::book_pages(PAGES);
    let mut frozen = FrozenPages::new();
    let mut page_files = serde_json::Map::new();
    let mut urls = vec![];
    for path in &book {
        let url = d402_corpus::book_url(path);
        frozen.insert(&url, std::fs::read_to_string(path)?)?;
        page_files.insert(url.clone(), json!(path));
        urls.push(url);
    }
    let pages_file = work.join("pages.json");
    std::fs::write(&pages_file, serde_json::to_vec(&page_files)?)?;

    // Ours.
    let (_nodes, gateway_node) = network(&work, &frozen, worker_wallet).await;
    let outbox = Outbox::open(&work.join("outbox.redb"))?;
    let rail = Arc::new(BaseDirect::new(
        chain.clone(),
        our_facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    ));
    let publisher = Identity::from_seed([42; 32]).public_id();
    let mut acceptance = AcceptancePolicy::default()
        .trust("merkle", &publisher)
        .trust("web", &publisher);
    acceptance.required_rails = vec![d402_registry::wallet::Rail::Evm];
    let acceptance_for_batch = acceptance.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ours = format!("http://{}", listener.local_addr()?);
    let gateway = Arc::new(Gateway::new(
        GatewayConfig {
            policy: SalePolicy {
                price: Atomic::new(PRICE),
                worker_budget: Atomic::new(PRICE),
                pay_to: our_pay_to.to_checksum(None),
                asset: token.to_checksum(None),
                ..SalePolicy::default()
            },
            acceptance,
            rail,
            public_url: ours.clone(),
            label: "gateway".into(),
            ops: None,
        },
        gateway_node.coordinator().clone(),
        vec![merkle_offer(&gateway_node), page_offer(&gateway_node)],
        TaskStore::open(&work.join("gateway-tasks.redb"))?,
    ));
    // Resuming starts the sweep and the payer that pays workers their net in batches.
    gateway.resume().await?;
    tokio::spawn(api::serve(gateway, listener, std::future::pending::<()>()));

    // Ours on base-batch-settlement: a second gateway on the same node, its own key and wallet.
    anvil.install_batch_settlement().await?;
    anvil.install_multicall3().await?;
    let batch_rail = Arc::new(BaseBatch::new(
        chain.clone(),
        our_batch_key,
        Outbox::open(&work.join("batch-outbox.redb"))?,
        Ledger::open(&work.join("batch-channels.redb"))?,
        SafetyCaps::default(),
        BatchPolicy {
            withdraw_delay: 900,
            min_deposit: Atomic::new(MIN_DEPOSIT),
            claim_window: std::time::Duration::from_secs(5),
            ..BatchPolicy::default()
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ours_batch = format!("http://{}", listener.local_addr()?);
    let batch_gateway = Arc::new(Gateway::new(
        GatewayConfig {
            policy: SalePolicy {
                price: Atomic::new(PRICE),
                worker_budget: Atomic::new(PRICE),
                pay_to: our_batch_key.address().to_checksum(None),
                asset: token.to_checksum(None),
                ..SalePolicy::default()
            },
            acceptance: acceptance_for_batch,
            rail: batch_rail.clone(),
            public_url: ours_batch.clone(),
            label: "gateway-batch".into(),
            ops: None,
        },
        gateway_node.coordinator().clone(),
        vec![merkle_offer(&gateway_node)],
        TaskStore::open(&work.join("gateway-batch-tasks.redb"))?,
    ));
    batch_gateway.resume().await?;
    tokio::spawn(api::serve(
        batch_gateway,
        listener,
        std::future::pending::<()>(),
    ));

    // Theirs: the stock express server with `exact`, and again with `batch-settlement`.
    let server = |key: &PrivateKeySigner, pay_to: Address, scheme: &str| {
        start_server(
            &js,
            (anvil.url.as_str(), &token.to_checksum(None)),
            (key, pay_to),
            &pages_file,
            scheme,
        )
    };
    let (_server, theirs, server_pid) = server(their_facilitator, their_pay_to, "exact")?;
    let (_batch_server, theirs_batch, batch_server_pid) = server(
        their_batch_key,
        their_batch_key.address(),
        "batch-settlement",
    )?;
    eprintln!(
        "set up in {:.1?}: gateway {ours} (batch {ours_batch}), express {theirs} (batch {theirs_batch}); {concurrency} buyers, {warmup} warm-up requests per side",
        t0.elapsed()
    );

    let bench = Bench {
        js,
        work: work.clone(),
        keys_file,
        asset: token.to_checksum(None),
        rpc: anvil.url.to_string(),
        warmup,
        anvil_pid: child_named("anvil").context("anvil's pid")?,
    };
    let (ours, theirs) = (
        (ours.as_str(), std::process::id()),
        (theirs.as_str(), server_pid),
    );
    // Distinct inputs per request on both sides, so that nothing can be answered from a cache.
    let leaves = requests + warmup;
    let merkle_inputs: Vec<Value> = (0..leaves)
        .map(|i| serde_json::from_str(&merkle_input(&format!("leaf-{i}"))).unwrap())
        .collect();
    let ours_merkle: Vec<Value> = merkle_inputs
        .iter()
        .map(|input| json!({"capability": MERKLE, "input": input}))
        .collect();
    let ours_page: Vec<Value> = urls
        .iter()
        .map(|url| json!({"capability": PAGE, "input": {"url": url}}))
        .collect();
    let theirs_page: Vec<Value> = urls.iter().map(|url| json!({"url": url})).collect();

    let only = std::env::var("D402_BENCH_ONLY").unwrap_or_default();
    let mut rows = vec![];
    if only.is_empty() || only == "merkle" {
        rows.push((
            MERKLE,
            bench.load(
                "ours-merkle",
                ours,
                "/tasks",
                &ours_merkle,
                requests,
                Pay::Exact,
            )?,
            bench.load(
                "express-merkle",
                theirs,
                "/merkle",
                &merkle_inputs,
                requests,
                Pay::Exact,
            )?,
        ));
    }
    if only.is_empty() || only == "page" {
        rows.push((
            PAGE,
            bench.load(
                "ours-page",
                ours,
                "/tasks",
                &ours_page,
                page_requests,
                Pay::Exact,
            )?,
            bench.load(
                "express-page",
                theirs,
                "/markdown",
                &theirs_page,
                page_requests,
                Pay::Exact,
            )?,
        ));
    }

    // batch-settlement, both sides paid by the stock batch-settlement client: one deposit per
    // buyer, then vouchers; claims and sweeps counted with everything else each side sent.
    let mut batch = None;
    if only.is_empty() || only == "merkle" || only == "batch" {
        let txs = |who: Address| anvil.tx_count(who);
        let buyer_txs = || async {
            let mut n = 0;
            for b in buyers {
                n += anvil.tx_count(b.address()).await?;
            }
            anyhow::Ok(n)
        };
        let (our0, their0, buyers0) = (
            txs(our_batch_key.address()).await?,
            txs(their_batch_key.address()).await?,
            buyer_txs().await?,
        );
        let ours_b = bench.load(
            "ours-batch",
            (ours_batch.as_str(), std::process::id()),
            "/tasks",
            &ours_merkle,
            requests,
            Pay::Batch,
        )?;
        let theirs_b = bench.load(
            "express-batch",
            (theirs_batch.as_str(), batch_server_pid),
            "/merkle",
            &merkle_inputs,
            requests,
            Pay::Batch,
        )?;
        // What is still unclaimed is claimed now on both sides, and our workers' pay goes out.
        batch_rail.claim_all().await?;
        let claimed: Value = reqwest::Client::new()
            .post(format!("{theirs_batch}/admin/claim"))
            .send()
            .await?
            .json()
            .await?;
        eprintln!("express-batch claim: {claimed}");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        batch = Some((
            ours_b,
            theirs_b,
            txs(our_batch_key.address()).await? - our0,
            txs(their_batch_key.address()).await? - their0,
            buyer_txs().await? - buyers0,
        ));
    }

    println!();
    println!(
        "{concurrency} concurrent buyers (stock @x402/fetch), {warmup} warm-up requests per side, same anvil"
    );
    println!(
        "| workload | server | paid requests | seconds | req/s | p50 ms | p99 ms | errors | CPU ms/request: server, anvil, client |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for (what, ours, theirs) in &rows {
        for (server, m) in [("d402 gateway", ours), ("@x402/express", theirs)] {
            let l = &m.load;
            println!(
                "| {what} | {server} | {} | {:.1} | {:.1} | {} | {} | {} | {}, {}, {} |",
                l.requests,
                l.seconds,
                l.rps,
                ms(l.p50_ms),
                ms(l.p99_ms),
                l.errors,
                m.per_request(m.server_cpu_ms),
                m.per_request(m.anvil_cpu_ms),
                m.per_request(l.client_cpu_ms.unwrap_or(0.0)),
            );
        }
    }
    println!();
    println!(
        "| workload | req/s ours/theirs (goal ≥ 5) | p50 ours/theirs (goal ≤ 0.33) | p99 ours/theirs |"
    );
    println!("|---|---:|---:|---:|");
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    for (what, ours, theirs) in &rows {
        println!(
            "| {what} | {} | {} | {} |",
            ratio(Some(ours.load.rps), Some(theirs.load.rps)),
            ratio(ours.load.p50_ms, theirs.load.p50_ms),
            ratio(ours.load.p99_ms, theirs.load.p99_ms)
        );
    }
    if let Some((ours_b, theirs_b, our_txs, their_txs, buyer_txs)) = &batch {
        let exact_theirs = rows.iter().find(|r| r.0 == MERKLE).map(|r| &r.2);
        println!();
        println!(
            "{MERKLE}, batch-settlement (stock @x402/evm batch-settlement client on both sides)"
        );
        println!(
            "| server | paid requests | seconds | req/s | p50 ms | p99 ms | errors | CPU ms/request: server, anvil, client |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---|");
        for (server, m) in [
            ("d402 gateway, base-batch-settlement", ours_b),
            ("@x402/express, batch-settlement", theirs_b),
        ] {
            let l = &m.load;
            println!(
                "| {server} | {} | {:.1} | {:.1} | {} | {} | {} | {}, {}, {} |",
                l.requests,
                l.seconds,
                l.rps,
                ms(l.p50_ms),
                ms(l.p99_ms),
                l.errors,
                m.per_request(m.server_cpu_ms),
                m.per_request(m.anvil_cpu_ms),
                m.per_request(l.client_cpu_ms.unwrap_or(0.0)),
            );
        }
        println!();
        println!("| ratio | figure | goal |");
        println!("|---|---:|---|");
        if let Some(t) = exact_theirs {
            println!(
                "| req/s ours (batch) / stock exact server | {} | ≥ 5 |",
                ratio(Some(ours_b.load.rps), Some(t.load.rps))
            );
            println!(
                "| p50 ours (batch) / stock exact server | {} | ≤ 0.2 |",
                ratio(ours_b.load.p50_ms, t.load.p50_ms)
            );
        }
        println!(
            "| req/s ours (batch) / stock batch-settlement server | {} | ≥ 1.5 |",
            ratio(Some(ours_b.load.rps), Some(theirs_b.load.rps))
        );
        let paid = (requests + warmup) as f64;
        let per_1000 = |n: u64| n as f64 * 1000.0 / paid;
        println!();
        println!(
            "base-batch-settlement: {:.1} on-chain transactions per 1,000 paid requests ({our_txs} from the gateway: deposits, claims, sweeps, worker payouts; {buyer_txs} from the {concurrency} buyers; {} paid requests)",
            per_1000(*our_txs + *buyer_txs),
            requests + warmup
        );
        println!(
            "stock batch-settlement server: {:.1} on-chain transactions per 1,000 paid requests ({their_txs} from its facilitator: deposits, claims, the sweep)",
            per_1000(*their_txs)
        );
    }
    let their_income = anvil.balance(token, their_pay_to).await?;
    let workers_paid = anvil.balance(token, worker_wallet).await?;
    // Worker pay goes out in batches: count the payout transactions the gateway sent.
    let payout_transactions = outbox
        .all()?
        .iter()
        .filter(|r| r.id.starts_with("payout:"))
        .count();
    let our_income = anvil.balance(token, our_pay_to).await? + workers_paid;
    println!();
    println!(
        "settled on chain: d402 gateway {} payments ({} tasks' worker pay, in {} payout transactions), express {} payments; whole run {:.1?}",
        our_income / PRICE,
        workers_paid / PRICE,
        payout_transactions,
        their_income / PRICE,
        t0.elapsed()
    );
    Ok(())
}
