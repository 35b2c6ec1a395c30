//! `d402 devnet`: the whole market on this machine, in one command.
//!
//! It starts anvil (test token + `TaskEscrow`) and a Solana test validator (a USDC-like mint),
//! funds test wallets, serves a few sample pages on loopback, publishes the example
//! capabilities, and starts a bootstrap, a gateway, workers and a validator as real `d402 node`
//! processes talking over libp2p. Then a paying client buys tasks through the gateway and prints
//! what happened and where the money went. `--keep-running` skips the client and stays up.
//! Either way `devnet.json` in the state folder says how to reach everything (gateway URL, RPC
//! URLs, network ids, token addresses, funded buyer keys), the way anvil prints its accounts.
//!
//! Everything here is local and throw-away: the state folder is recreated on each start, and
//! the devnet's URL policy lets workers read loopback pages, which production defaults refuse.
//!
//! A crate of its own so that the local-chain launchers (`evm-chain`, `solana-chain`, which the
//! tests reuse as dev-dependencies) and the example components belong to the devnet, not to the
//! gateway. It is an application more than a library (the binary and the tests are its only
//! users, and its errors are reports for a person), so it speaks `anyhow` like the binary.

mod catalog;
mod chains;
mod incident_drill;
mod pages;
mod progress;
mod supervisor;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use anyhow::{Context, anyhow, bail};
use d402_gateway::client::{Buyer, SolanaPayer, discover};
use d402_node::{Node, NodeConfig};
use d402_rails::Atomic;
use serde_json::{Value, json};
use solana_signer::Signer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use progress::Steps;
use supervisor::Supervisor;

/// Arguments of `d402 devnet`.
#[derive(clap::Args)]
pub struct DevnetArgs {
    /// The devnet's state folder: node states, logs, published capabilities and `devnet.json`.
    /// Recreated on every start.
    #[arg(long, value_name = "DIR", default_value = ".d402/devnet")]
    state: PathBuf,
    /// Start everything and stay up until Ctrl-C instead of running the demo client.
    #[arg(long)]
    keep_running: bool,
    /// The gateway's HTTP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = 8402)]
    http_port: u16,
    /// How many workers to start (the scored page conversion's quorum of three needs three).
    #[arg(long, value_name = "N", default_value_t = 3)]
    workers: usize,
    /// How many funded test buyers to create on each chain.
    #[arg(long, value_name = "N", default_value_t = 2)]
    buyers: usize,
    /// The price of one task.
    #[arg(long, value_name = "PRICE", default_value = "$0.01")]
    price: String,
    /// Whether to start the Solana test validator (needs the `d402-solana-validator` binary:
    /// `scripts/devnet.sh` builds it).
    #[arg(long, value_name = "true|false", default_value_t = true, action = clap::ArgAction::Set)]
    solana: bool,
    /// How workers freeze pages: `chromium` (headless Debian Chromium, runs the page's scripts)
    /// or `fetch` (a plain GET).
    #[arg(long, value_name = "KIND", default_value = "chromium")]
    snapshotter: String,
}

/// A `d402 node` child process; the process itself is in the [`Supervisor`]'s charge.
struct NodeProcess {
    label: String,
    /// The node's `--state` folder.
    state: PathBuf,
    /// The JSON line the node printed at start (peer id, listen address, role, HTTP URL).
    info: Value,
}

impl NodeProcess {
    fn listen(&self) -> String {
        self.info["listen"].as_str().unwrap_or_default().to_string()
    }
}

/// The state folder is deleted and recreated; refuse to do that to a folder that is not a devnet's.
fn fresh_state(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join("devnet.json").exists() && !dir.join("logs").exists() {
            bail!(
                "--state {}: not empty and not a devnet folder; refusing to delete it",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))
}

/// Starts `d402 node ARGS` with its stderr in `logs/LABEL.log`, hands it to `supervisor`, and
/// waits for its start line.
async fn spawn_node(
    supervisor: &Supervisor,
    state: &Path,
    label: &str,
    args: &[String],
) -> anyhow::Result<NodeProcess> {
    let exe = std::env::current_exe().context("locating the d402 binary")?;
    let node_state = state.join("nodes").join(label);
    let log_path = state.join("logs").join(format!("{label}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = Command::new(exe)
        .arg("node")
        .args(["--label", label])
        .args(["--state", &node_state.to_string_lossy()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{label}: no stdout"))?;
    supervisor.adopt(label, child);
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .map_err(|_| {
            anyhow!(
                "{label} did not start within 2 minutes (see {})",
                log_path.display()
            )
        })?
        .with_context(|| format!("reading {label}'s start line"))?
        .ok_or_else(|| anyhow!("{label} exited at start (see {})", log_path.display()))?;
    let info: Value = serde_json::from_str(&line)
        .with_context(|| format!("{label} printed {line:?} instead of its start line"))?;
    // Keep reading so the pipe never fills; a node prints one line, but be safe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(NodeProcess {
        label: label.to_string(),
        state: node_state,
        info,
    })
}

/// Waits until the network has `workers` workers offering each capability and a validator for
/// each, as seen from a probe node of our own (what the gateway will see when it looks).
async fn wait_for_network(state: &Path, bootstrap: &str, workers: usize) -> anyhow::Result<Node> {
    let mut config = NodeConfig::new("devnet-probe", state.join("nodes").join("devnet-probe"));
    config.peers =
        vec![d402_node::peer_addr(bootstrap).map_err(|e| anyhow!("bootstrap address: {e}"))?];
    let probe = Node::start(config).await?;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = true;
        for example in &catalog::EXAMPLES {
            let offers = probe
                .net()
                .find_providers(&d402_node::coordinator::offer_key(example.capability))
                .await
                .unwrap_or_default();
            let validators = probe
                .net()
                .find_providers(&d402_node::coordinator::validator_key(example.capability))
                .await
                .unwrap_or_default();
            ready &= offers.len() >= workers && !validators.is_empty();
        }
        if ready {
            return Ok(probe);
        }
        if Instant::now() > until {
            bail!("the workers and the validator were not all discoverable within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs the devnet until it is done (or, with `--keep-running`, until `stop` resolves: the
/// binary passes Ctrl-C or `SIGTERM`), then stops every node it started.
pub fn run(
    args: DevnetArgs,
    stop: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> anyhow::Result<std::process::ExitCode> {
    if args.workers < catalog::LIVE_PAGE_QUORUM as usize {
        bail!(
            "--workers {}: the scored page conversion needs a quorum of {}",
            args.workers,
            catalog::LIVE_PAGE_QUORUM
        );
    }
    if !matches!(args.snapshotter.as_str(), "chromium" | "fetch") {
        bail!(
            "--snapshotter {:?}: expected chromium or fetch",
            args.snapshotter
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let supervisor = Arc::new(Supervisor::default());
    runtime.block_on(async {
        // Listened for from here, before anything is started.
        let stop = stop();
        let outcome = tokio::select! {
            r = devnet(args, Arc::clone(&supervisor)) => r,
            _ = stop => {
                eprintln!("\nstopping the devnet");
                Ok(())
            }
        };
        // Whatever ended the devnet, its nodes get a SIGTERM and a grace period, then are killed.
        for label in supervisor.stop_all(supervisor::GRACE).await {
            eprintln!(
                "{label} did not stop within {:?}: killed",
                supervisor::GRACE
            );
        }
        outcome
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn devnet(args: DevnetArgs, supervisor: Arc<Supervisor>) -> anyhow::Result<()> {
    let state = args.state.clone();
    let sol = usize::from(args.solana);
    // The demo steps: the Base buyer, the batch-settlement buyer, and with Solana the direct
    // buyer, the channel buyer, the hybrid (Base payment, Solana split) buyer, the task escrow
    // buyer and the channels' incident drill.
    let total = 6 + sol + if args.keep_running { 0 } else { 3 + 5 * sol };
    let mut steps = Steps::new(total);
    let started = Instant::now();

    steps
        .run("preparing the state folder", async { fresh_state(&state) })
        .await?;
    let evm = steps
        .run(
            "starting anvil, deploying the test token and TaskEscrow",
            chains::evm(args.buyers, args.workers),
        )
        .await?;
    steps.detail(format_args!(
        "anvil {} (eip155:{}), token {}, escrow {}",
        evm.anvil.url, evm.chain.chain_id, evm.chain.asset.address, evm.escrow
    ));
    let solana = if args.solana {
        let s = steps
            .run(
                "starting the Solana test validator, creating a USDC-like mint",
                chains::solana(args.buyers, args.workers),
            )
            .await?;
        steps.detail(format_args!(
            "solana {} ({}), mint {}",
            s.chain.rpc_url(),
            s.chain.caip2(),
            s.mint
        ));
        Some(s)
    } else {
        None
    };
    let pages_url = steps
        .run("serving the sample pages on loopback", pages::serve())
        .await?;
    steps.detail(&pages_url);

    let publisher = d402_core::Identity::generate()?;
    let published = steps
        .run("publishing the example capabilities", async {
            catalog::write(
                &state.join("published"),
                &publisher,
                &evm.creator.address().to_checksum(None),
                solana
                    .as_ref()
                    .map(|s| s.creator.pubkey().to_string())
                    .as_deref(),
                d402_core::clock::now_ms(),
            )
        })
        .await?;
    for e in &catalog::EXAMPLES {
        steps.detail(format_args!(
            "{} (creator commission {} bps)",
            e.capability, e.commission_bps
        ));
    }

    let offers: Vec<String> = catalog::EXAMPLES
        .iter()
        .map(|e| e.capability.to_string())
        .collect();
    let nodes = steps
        .run(
            &format!(
                "starting a bootstrap, {} workers, a validator and the gateways",
                args.workers
            ),
            start_nodes(
                &supervisor,
                &args,
                &state,
                (&evm, solana.as_ref()),
                &published,
                &offers,
                &publisher,
            ),
        )
        .await?;
    for n in &nodes {
        steps.detail(format_args!(
            "{:<10} {} {}",
            n.label,
            n.info["peerId"].as_str().unwrap_or_default(),
            n.info["http"].as_str().unwrap_or_default()
        ));
    }
    let http_of = |label: &str| {
        nodes
            .iter()
            .find(|n| n.label == label)
            .and_then(|n| n.info["http"].as_str().map(str::to_string))
    };
    let gateway_url =
        http_of("gateway").ok_or_else(|| anyhow!("the gateway printed no HTTP address"))?;
    let solana_gateway_url = http_of("gateway-solana");
    let channel_gateway_url = http_of("gateway-solana-channel");
    let hybrid_gateway_url = http_of("gateway-hybrid");
    let escrow_gateway_url = http_of("gateway-solana-escrow");
    let batch_gateway_url = http_of("gateway-batch");
    let probe = steps
        .run(
            "waiting for the workers and the validator to be discoverable",
            wait_for_network(&state, &nodes[0].listen(), args.workers),
        )
        .await?;

    let devnet_json = state.join("devnet.json");
    let gateways = gateway_listing(&nodes).await?;
    let description = describe(
        (&gateway_url, solana_gateway_url.as_deref()),
        &gateways,
        &pages_url,
        &evm,
        solana.as_ref(),
        &nodes,
    );
    std::fs::write(&devnet_json, serde_json::to_vec_pretty(&description)?)
        .with_context(|| format!("writing {}", devnet_json.display()))?;
    eprintln!(
        "\nThe devnet is up in {:.1} s, details in {}. Its gateways:",
        started.elapsed().as_secs_f64(),
        devnet_json.display()
    );
    for g in &gateways {
        let list = |key: &str| {
            g[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        eprintln!(
            "  {} {} (x402 scheme {} on {}): sells {}",
            g["url"].as_str().unwrap_or_default(),
            g["payment"].as_str().unwrap_or_default(),
            list("schemes"),
            g["network"].as_str().unwrap_or_default(),
            list("capabilities"),
        );
    }
    eprintln!(
        "Their health: d402 ops-status --state {}/<gateway>",
        state.join("nodes").display()
    );

    if args.keep_running {
        eprintln!("Ctrl-C (or SIGTERM) stops everything.");
        std::future::pending::<()>().await;
    }
    steps
        .run_printing(
            "running the demo client",
            demo(&gateway_url, &pages_url, &evm),
        )
        .await?;
    steps
        .run_printing(
            "buying a scored page conversion (a quorum of three, compared by score)",
            demo_scored(&gateway_url, &pages_url, &evm),
        )
        .await?;
    if let Some(url) = &batch_gateway_url {
        steps
            .run_printing(
                "buying 20 tasks through a batch-settlement channel",
                demo_batch(url, &evm, &state),
            )
            .await?;
    }
    if let (Some(sol), Some(url)) = (&solana, &solana_gateway_url) {
        steps
            .run_printing(
                "paying the Solana gateway from a Solana wallet",
                demo_solana(url, sol),
            )
            .await?;
    }
    if let (Some(sol), Some(url)) = (&solana, &channel_gateway_url) {
        steps
            .run_printing(
                "buying commission-bearing work through a Solana channel",
                demo_solana_channel(url, &pages_url, sol, &state),
            )
            .await?;
    }
    if let (Some(sol), Some(url)) = (&solana, &hybrid_gateway_url) {
        steps
            .run_printing(
                "paying on Base, the split withdrawn on Solana",
                demo_hybrid(url, &pages_url, &evm, sol),
            )
            .await?;
    }
    if let (Some(sol), Some(url)) = (&solana, &escrow_gateway_url) {
        steps
            .run_printing(
                "buying one task on solana-task-escrow",
                demo_solana_escrow(url, &pages_url, sol),
            )
            .await?;
    }
    if let Some(sol) = &solana {
        steps
            .run_printing(
                "winding the Solana channels down with the incident steps",
                async {
                    for label in ["gateway-solana-channel", "gateway-hybrid"] {
                        let key = state.join("keys").join(format!("{label}-solana.json"));
                        incident_drill::run(&supervisor, &state, sol, label, &key).await?;
                    }
                    anyhow::Ok(())
                },
            )
            .await?;
    }
    probe.shutdown();
    drop(nodes);
    Ok(())
}

async fn start_nodes(
    supervisor: &Arc<Supervisor>,
    args: &DevnetArgs,
    state: &Path,
    (evm, solana): (&chains::Evm, Option<&chains::Solana>),
    published: &[PathBuf],
    offers: &[String],
    publisher: &d402_core::Identity,
) -> anyhow::Result<Vec<NodeProcess>> {
    let s = |v: &str| v.to_string();
    let mut nodes = vec![spawn_node(supervisor, state, "bootstrap", &[]).await?];
    let bootstrap = nodes[0].listen();
    // Workers start in parallel: each launches its own Chromium.
    let mut starting = Vec::new();
    for i in 0..args.workers {
        let mut a = vec![s("--peer"), bootstrap.clone()];
        for o in offers {
            a.extend([s("--offer"), o.clone()]);
        }
        a.extend([s("--snapshotter"), args.snapshotter.clone()]);
        a.extend([s("--fallback-to-fetch"), s("true")]);
        a.extend([s("--allow-private-targets"), s("true")]);
        a.extend([
            s("--evm-payout-wallet"),
            evm.workers[i].address().to_checksum(None),
        ]);
        if let Some(sol) = solana {
            a.extend([
                s("--solana-payout-wallet"),
                sol.workers[i].pubkey().to_string(),
            ]);
        }
        let label = format!("worker-{}", i + 1);
        let state = state.to_path_buf();
        let supervisor = Arc::clone(supervisor);
        starting.push(tokio::spawn(async move {
            spawn_node(&supervisor, &state, &label, &a).await
        }));
    }
    // Keys go through files, never the command line (other users can read it).
    let keys = state.join("keys");
    std::fs::create_dir_all(&keys)?;
    // The escrow's validator-role key lives on the validator node, which signs the release of
    // the work it accepts; the gateway, facing HTTP, holds no such key (seed 000, key custody).
    let release = write_key(&keys.join("release.key"), evm.release.to_bytes().as_slice())?;
    let mut v = vec![s("--peer"), bootstrap.clone()];
    for o in offers {
        v.extend([s("--validate"), o.clone()]);
    }
    v.extend([s("--release-key"), release]);
    if let Some(sol) = solana {
        let release = write_key_json(&keys.join("solana-release.json"), &sol.release.to_bytes())?;
        v.extend([s("--solana-release-key"), release]);
    }
    starting.push({
        let state = state.to_path_buf();
        let supervisor = Arc::clone(supervisor);
        tokio::spawn(async move { spawn_node(&supervisor, &state, "validator", &v).await })
    });
    for s in starting {
        nodes.push(s.await.context("starting a node")??);
    }

    // What every gateway shares: the network, the price, the policy, what it sells.
    let mut common = vec![s("--peer"), bootstrap];
    common.extend([s("--http-host"), s("127.0.0.1")]);
    common.extend([s("--gateway-price"), args.price.clone()]);
    common.extend([s("--gateway-fee-bps"), s("500")]);
    common.extend([s("--require-signed-capability-registration"), s("true")]);
    common.extend([s("--max-creator-commission-bps"), s("2000")]);
    for ns in catalog::NAMESPACES {
        common.extend([
            s("--trust-namespace"),
            format!("{ns}={}", publisher.public_id()),
        ]);
    }
    for o in offers {
        common.extend([s("--offer"), o.clone()]);
    }
    for p in published {
        common.extend([s("--publish"), p.to_string_lossy().into_owned()]);
    }
    common.extend([s("--evm-rpc-url"), evm.anvil.url.to_string()]);
    common.extend([s("--evm-token"), evm.chain.asset.address.to_string()]);
    common.extend([s("--evm-token-name"), evm.chain.asset.name.clone()]);
    common.extend([s("--evm-token-version"), evm.chain.asset.version.clone()]);
    common.extend([s("--allow-private-targets"), s("true")]);
    // Gateway ports follow the first: escrow, Solana direct, Base exact, Base batch settlement.
    let port = |offset: u16| {
        if args.http_port == 0 {
            0
        } else {
            args.http_port + offset
        }
    };

    let mut g = common.clone();
    g.extend([s("--escrow-address"), evm.escrow.to_string()]);
    let facilitator = write_key(
        &keys.join("facilitator.key"),
        evm.facilitator.to_bytes().as_slice(),
    )?;
    g.extend([s("--facilitator-key"), facilitator]);
    g.extend([
        s("--escrow-validator"),
        evm.release.address().to_checksum(None),
    ]);
    g.extend([s("--http-port"), port(0).to_string()]);
    g.extend([s("--payment"), s("base-task-escrow")]);
    nodes.push(spawn_node(supervisor, state, "gateway", &g).await?);

    if let Some(sol) = solana {
        // Direct rails never carry a creator commission, so this gateway sells only the
        // commission-free capabilities; the others are listed as refused.
        let fee_payer = write_key_json(
            &keys.join("solana-fee-payer.json"),
            &sol.fee_payer.to_bytes(),
        )?;
        let mut g = common.clone();
        g.extend([s("--http-port"), port(1).to_string()]);
        g.extend([s("--payment"), s("solana-direct")]);
        g.extend([s("--solana-rpc-url"), sol.chain.rpc_url().to_string()]);
        g.extend([s("--solana-mint"), sol.mint.to_string()]);
        g.extend([s("--solana-fee-payer-key"), fee_payer]);
        g.extend([
            s("--solana-gateway-wallet"),
            sol.fee_payer.pubkey().to_string(),
        ]);
        nodes.push(spawn_node(supervisor, state, "gateway-solana", &g).await?);

        // solana-channel: split settlement, so it sells the commission-bearing capabilities too.
        // A buyer opens one channel and pays each task with a voucher; roots every 5 s; the
        // maintainer publishes them too and cranks every claimant's withdrawal.
        let mut g = common.clone();
        g.extend([s("--http-port"), port(4).to_string()]);
        g.extend([s("--payment"), s("solana-channel")]);
        nodes.push(
            channel_gateway(
                supervisor,
                state,
                sol,
                "gateway-solana-channel",
                &g,
                &sol.channel_authority,
            )
            .await?,
        );

        // base-x402-solana-channel: any stock `exact` client pays on Base; the split, creator
        // commission included, is allocated into a channel the gateway funds on Solana, and the
        // maintainer withdraws it for every claimant.
        let hybrid_facilitator = write_key(
            &keys.join("hybrid-facilitator.key"),
            evm.hybrid_facilitator.to_bytes().as_slice(),
        )?;
        let mut g = common.clone();
        g.extend([s("--facilitator-key"), hybrid_facilitator]);
        g.extend([s("--http-port"), port(5).to_string()]);
        g.extend([s("--payment"), s("base-x402-solana-channel")]);
        g.extend([s("--gateway-channel-deposit"), s("$5")]);
        nodes.push(
            channel_gateway(
                supervisor,
                state,
                sol,
                "gateway-hybrid",
                &g,
                &sol.hybrid_key,
            )
            .await?,
        );
    }

    if let Some(sol) = solana {
        // solana-task-escrow: each task's payment held by d402's program until the validator
        // node's signed release (or the deadline, for a refund); it sells commission-bearing work.
        let fee_payer = write_key_json(
            &keys.join("solana-escrow-fee-payer.json"),
            &sol.escrow_fee_payer.to_bytes(),
        )?;
        let mut g = common.clone();
        g.extend([s("--http-port"), port(6).to_string()]);
        g.extend([s("--payment"), s("solana-task-escrow")]);
        g.extend([s("--solana-rpc-url"), sol.chain.rpc_url().to_string()]);
        g.extend([s("--solana-mint"), sol.mint.to_string()]);
        g.extend([s("--solana-fee-payer-key"), fee_payer]);
        g.extend([
            s("--solana-escrow-validator"),
            sol.release.pubkey().to_string(),
        ]);
        nodes.push(spawn_node(supervisor, state, "gateway-solana-escrow", &g).await?);
    }

    // The x402 `exact` scheme on Base, which any stock x402 client pays: a direct rail, so it
    // sells the commission-free capabilities. Its own facilitator key: two gateways sending from
    // one account would race for its nonces.
    let direct_facilitator = write_key(
        &keys.join("direct-facilitator.key"),
        evm.direct_facilitator.to_bytes().as_slice(),
    )?;
    let mut g = common.clone();
    g.extend([s("--facilitator-key"), direct_facilitator]);
    g.extend([s("--http-port"), port(2).to_string()]);
    g.extend([s("--payment"), s("base-x402-direct")]);
    nodes.push(spawn_node(supervisor, state, "gateway-exact", &g).await?);

    // x402 `batch-settlement` on Base: a buyer deposits once and pays each task with a voucher;
    // the gateway claims every few seconds. A direct rail too (one payee), with its own key.
    let batch_facilitator = write_key(
        &keys.join("batch-facilitator.key"),
        evm.batch_facilitator.to_bytes().as_slice(),
    )?;
    let mut g = common;
    g.extend([s("--facilitator-key"), batch_facilitator]);
    g.extend([s("--http-port"), port(3).to_string()]);
    g.extend([s("--payment"), s("base-batch-settlement")]);
    g.extend([s("--gateway-claim-window-ms"), s("5000")]);
    g.extend([s("--gateway-withdraw-delay-secs"), s("900")]);
    nodes.push(spawn_node(supervisor, state, "gateway-batch", &g).await?);
    Ok(nodes)
}

/// A gateway paying splits through Solana channels (`args` name its rail and port), with `key`
/// as its Solana settlement key, and a `d402 solana-channel-maintainer` over its state cranking
/// every claimant's withdrawal (the workers, the creator, the gateway's fee).
async fn channel_gateway(
    supervisor: &Arc<Supervisor>,
    state: &Path,
    sol: &chains::Solana,
    label: &str,
    args: &[String],
    key: &solana_keypair::Keypair,
) -> anyhow::Result<NodeProcess> {
    let s = |v: &str| v.to_string();
    let keys = state.join("keys");
    let key_file = write_key_json(&keys.join(format!("{label}-solana.json")), &key.to_bytes())?;
    let mut g = args.to_vec();
    g.extend([s("--solana-rpc-url"), sol.chain.rpc_url().to_string()]);
    g.extend([s("--solana-mint"), sol.mint.to_string()]);
    g.extend([s("--solana-fee-payer-key"), key_file]);
    g.extend([
        s("--solana-channel-maintainer"),
        sol.maintainer.pubkey().to_string(),
    ]);
    g.extend([s("--gateway-root-interval-ms"), s("5000")]);
    // A short close grace, so that the demo's incident drill closes the channels in seconds.
    g.extend([s("--gateway-channel-grace-secs"), s("5")]);
    let gateway = spawn_node(supervisor, state, label, &g).await?;
    let maintainer = write_key_json(
        &keys.join(format!("{label}-maintainer.json")),
        &sol.maintainer.to_bytes(),
    )?;
    let mut claimants: Vec<String> = sol.workers.iter().map(|w| w.pubkey().to_string()).collect();
    claimants.push(sol.creator.pubkey().to_string());
    claimants.push(key.pubkey().to_string());
    spawn_maintainer(
        supervisor,
        state,
        &format!("{label}-maintainer"),
        &gateway.state,
        &[
            s("--claimants"),
            claimants.join(","),
            s("--interval-ms"),
            s("3000"),
            s("--solana-rpc-url"),
            sol.chain.rpc_url().to_string(),
            s("--solana-fee-payer-key"),
            maintainer,
        ],
    )?;
    Ok(gateway)
}

/// Starts `d402 solana-channel-maintainer` over a gateway node's state, supervised like the
/// nodes; its log is `logs/solana-channel-maintainer.log`.
fn spawn_maintainer(
    supervisor: &Supervisor,
    state: &Path,
    label: &str,
    gateway_state: &Path,
    args: &[String],
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the d402 binary")?;
    let log_path = state.join("logs").join(format!("{label}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(exe)
        .arg("solana-channel-maintainer")
        .args(["--state", &gateway_state.to_string_lossy()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    supervisor.adopt(label, child);
    Ok(())
}

/// Writes a hex key readable by its owner only; returns the path for `--…-key`.
fn write_key(path: &Path, key: &[u8]) -> anyhow::Result<String> {
    write_key_bytes(path, alloy::hex::encode(key).as_bytes())
}

fn write_key_bytes(path: &Path, text: &[u8]) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text)?;
    Ok(path.to_string_lossy().into_owned())
}

/// Writes a Solana keypair as `solana-keygen` does (a JSON array of its 64 bytes), owner-only.
fn write_key_json(path: &Path, keypair: &[u8]) -> anyhow::Result<String> {
    write_key_bytes(path, serde_json::to_string(keypair)?.as_bytes())
}

/// Each gateway as `devnet.json` lists it, read from the gateway's own description
/// (`/.well-known/d402-gateway.json`), so the list says what the gateways really accept and sell.
async fn gateway_listing(nodes: &[NodeProcess]) -> anyhow::Result<Vec<Value>> {
    let http = reqwest::Client::new();
    let mut gateways = Vec::new();
    for node in nodes {
        let Some(url) = node.info["http"].as_str() else {
            continue;
        };
        let about = discover(&http, url)
            .await
            .with_context(|| format!("describing {}", node.label))?;
        let rails = about["paymentRails"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ids = |key: &str| -> Vec<Value> {
            about[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["id"].as_str().map(|id| json!(id)))
                .collect()
        };
        gateways.push(json!({
            "label": node.label,
            "url": url,
            "payment": rails.first().map(|r| r["name"].clone()).unwrap_or(Value::Null),
            "schemes": rails.iter().map(|r| r["scheme"].clone()).collect::<Vec<_>>(),
            "network": rails.first().map(|r| r["network"].clone()).unwrap_or(Value::Null),
            "asset": rails.first().map(|r| r["asset"].clone()).unwrap_or(Value::Null),
            "capabilities": ids("capabilities"),
            "refused": ids("refused"),
            "opsState": node.state.display().to_string(),
        }));
    }
    Ok(gateways)
}

/// `devnet.json`: everything another client needs to use this devnet.
fn describe(
    (gateway, solana_gateway): (&str, Option<&str>),
    gateways: &[Value],
    pages: &str,
    evm: &chains::Evm,
    solana: Option<&chains::Solana>,
    nodes: &[NodeProcess],
) -> Value {
    json!({
        // Every gateway: its URL, its rail (`payment`), the x402 schemes and network it accepts,
        // and what it sells. A stock x402 client pays a gateway whose schemes include `exact`.
        "gateways": gateways,
        "gateway": gateway,
        "pages": pages::PAGES.iter().map(|(p, _)| format!("{pages}{p}")).collect::<Vec<_>>(),
        "capabilities": catalog::EXAMPLES.iter().map(|e| e.capability).collect::<Vec<_>>(),
        "evm": {
            "rpcUrl": evm.anvil.url.to_string(),
            "chainId": evm.chain.chain_id,
            "network": evm.chain.network().to_string(),
            "token": {
                "address": evm.chain.asset.address.to_checksum(None),
                "name": evm.chain.asset.name,
                "version": evm.chain.asset.version,
                "decimals": evm.chain.asset.decimals,
            },
            "taskEscrow": evm.escrow.to_checksum(None),
            // x402 batch-settlement's contracts, at the canonical addresses the stock client uses.
            "batchSettlement": d402_rails::evm::batch::SETTLEMENT_ADDRESS.to_checksum(None),
            "erc3009DepositCollector": d402_rails::evm::batch::ERC3009_COLLECTOR_ADDRESS.to_checksum(None),
            "gatewayWallet": evm.facilitator.address().to_checksum(None),
            "creatorWallet": evm.creator.address().to_checksum(None),
            "workerWallets": evm.workers.iter().map(|w| w.address().to_checksum(None)).collect::<Vec<_>>(),
            "buyers": evm.buyer_wallets(),
        },
        "solana": solana.map(|s| json!({
            "gateway": solana_gateway,
            "rpcUrl": s.chain.rpc_url(),
            "network": s.chain.caip2(),
            "genesisHash": s.chain.genesis_hash().to_string(),
            "mint": s.mint.to_string(),
            "decimals": 6,
            "gatewayWallet": s.fee_payer.pubkey().to_string(),
            "channelProgram": d402_rails::solana::channel::program::ID.to_string(),
            "channelAuthority": s.channel_authority.pubkey().to_string(),
            "channelMaintainer": s.maintainer.pubkey().to_string(),
            "creatorWallet": s.creator.pubkey().to_string(),
            "workerWallets": s.workers.iter().map(|w| w.pubkey().to_string()).collect::<Vec<_>>(),
            "buyers": s.buyer_wallets(),
        })),
        "nodes": nodes.iter().map(|n| n.info.clone()).collect::<Vec<_>>(),
        // What `d402 ops-status --state` and `d402 ops-monitor --state` take.
        "opsState": {
            "gateway": nodes.iter().find(|n| n.label == "gateway").map(|n| n.state.display().to_string()),
            "gatewaySolana": nodes.iter().find(|n| n.label == "gateway-solana").map(|n| n.state.display().to_string()),
            "gatewayExact": nodes.iter().find(|n| n.label == "gateway-exact").map(|n| n.state.display().to_string()),
            "gatewaySolanaChannel": nodes.iter().find(|n| n.label == "gateway-solana-channel").map(|n| n.state.display().to_string()),
            "gatewayHybrid": nodes.iter().find(|n| n.label == "gateway-hybrid").map(|n| n.state.display().to_string()),
            "gatewaySolanaEscrow": nodes.iter().find(|n| n.label == "gateway-solana-escrow").map(|n| n.state.display().to_string()),
        },
    })
}

/// The demo: discover, buy a page conversion and a proof check, and show where the money went.
async fn demo(gateway: &str, pages: &str, evm: &chains::Evm) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let about = discover(&http, gateway).await?;
    let buyer_key = evm
        .buyers
        .first()
        .ok_or_else(|| anyhow!("no test buyer"))?
        .clone();
    let buyer_address = buyer_key.address();
    let token = evm.chain.asset.address;
    let mut watched: Vec<(String, Address)> = vec![
        ("buyer".into(), buyer_address),
        ("gateway".into(), evm.facilitator.address()),
        ("creator".into(), evm.creator.address()),
    ];
    for (i, w) in evm.workers.iter().enumerate() {
        watched.push((format!("worker-{}", i + 1), w.address()));
    }
    let before = balances(evm, token, &watched).await?;
    println!(
        "gateway {gateway} sells: {}",
        about["capabilities"]
            .as_array()
            .map(|c| c
                .iter()
                .filter_map(|c| c["id"].as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );

    let buyer = Buyer::new(gateway, buyer_key, Some(Atomic::new(1_000_000)));
    let page = format!("{pages}{}", pages::PAGES[1].0);
    println!("\n→ {} on {page}", catalog::PAGE_TO_MARKDOWN);
    let bought = buyer
        .run(catalog::PAGE_TO_MARKDOWN, json!({ "url": page }))
        .await
        .context("buying web.page_to_markdown@1")?;
    print_purchase(&bought.task, bought.paid);

    let leaf = "d402 devnet";
    let root = d402_cap_merkle_verify::leaf_hash(leaf.as_bytes());
    let input =
        json!({"leaf": alloy::hex::encode(leaf), "proof": [], "root": alloy::hex::encode(root)});
    println!("\n→ {} on a one-leaf tree", catalog::MERKLE_VERIFY);
    let bought = buyer
        .run(catalog::MERKLE_VERIFY, input)
        .await
        .context("buying merkle.verify_proof@1")?;
    print_purchase(&bought.task, bought.paid);

    let after = balances(evm, token, &watched).await?;
    println!("\nTest USD balances on anvil (atomic units, 6 decimals):");
    for ((who, _), (b, a)) in watched.iter().zip(before.iter().zip(after.iter())) {
        let delta = *a as i128 - *b as i128;
        println!("  {who:<10} {a:>14}  ({delta:+})");
    }
    Ok(())
}

/// Buys `web.page_to_markdown_live@1` on the live page: three workers each freeze their own copy,
/// and the validator's comparator scores the three conversions against each other.
async fn demo_scored(gateway: &str, pages: &str, evm: &chains::Evm) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let about = discover(&http, gateway).await?;
    let listed = about["capabilities"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == catalog::LIVE_PAGE_TO_MARKDOWN))
        .ok_or_else(|| anyhow!("{gateway} does not sell {}", catalog::LIVE_PAGE_TO_MARKDOWN))?;
    println!(
        "{} is {} (assurance {}), compared by {} at {}",
        catalog::LIVE_PAGE_TO_MARKDOWN,
        listed["validation"].as_str().unwrap_or_default(),
        listed["assurance"].as_str().unwrap_or_default(),
        listed["comparator"]["id"].as_str().unwrap_or_default(),
        listed["comparator"]["threshold"]
    );
    let buyer_key = evm
        .buyers
        .first()
        .ok_or_else(|| anyhow!("no test buyer"))?
        .clone();
    let buyer = Buyer::new(gateway, buyer_key, Some(Atomic::new(1_000_000)));
    let page = format!("{pages}{}", pages::LIVE_PATH);
    println!("\n→ {} on {page}", catalog::LIVE_PAGE_TO_MARKDOWN);
    let bought = buyer
        .run(catalog::LIVE_PAGE_TO_MARKDOWN, json!({ "url": page }))
        .await
        .with_context(|| format!("buying {}", catalog::LIVE_PAGE_TO_MARKDOWN))?;
    print_purchase(&bought.task, bought.paid);
    let task = &bought.task;
    println!(
        "  assurance: {}",
        task["assurance"].as_str().unwrap_or_default()
    );
    let scoring = &task["verdict"]["scoring"];
    println!(
        "  compared by {} ({}), threshold {}:",
        scoring["comparator"].as_str().unwrap_or_default(),
        short(scoring["implementation"].as_str()),
        scoring["threshold"]
    );
    for row in scoring["scores"].as_array().into_iter().flatten() {
        println!("  scores: {row}");
    }
    Ok(())
}

/// Buys 20 proof checks from the base-batch-settlement gateway through one channel (one deposit,
/// then vouchers), waits for the gateway's claim, and counts the on-chain transactions they took.
async fn demo_batch(gateway: &str, evm: &chains::Evm, state: &Path) -> anyhow::Result<()> {
    const TASKS: usize = 20;
    let key = evm
        .buyers
        .get(1)
        .or(evm.buyers.first())
        .ok_or_else(|| anyhow!("no test buyer"))?
        .clone();
    let gateway_key = evm.batch_facilitator.address();
    let txs = |who: Address| evm.anvil.tx_count(who);
    let (buyer_before, gateway_before) = (txs(key.address()).await?, txs(gateway_key).await?);
    let mut buyer = Buyer::new(gateway, key.clone(), Some(Atomic::new(1_000_000)));
    buyer.channels = Some(d402_gateway::channel_wallet::ChannelWallet::new(
        &state.join("demo-buyer"),
        key.clone(),
        Atomic::new(1_000_000),
    ));
    println!(
        "\n→ {TASKS} × {} through {gateway} (base-batch-settlement)",
        catalog::MERKLE_VERIFY
    );
    let mut paid = 0u128;
    for i in 0..TASKS {
        let leaf = format!("d402 devnet channel {i}");
        let root = d402_cap_merkle_verify::leaf_hash(leaf.as_bytes());
        let input = json!({"leaf": alloy::hex::encode(&leaf), "proof": [], "root": alloy::hex::encode(root)});
        let bought = buyer
            .run(catalog::MERKLE_VERIFY, input)
            .await
            .with_context(|| format!("buying task {} of {TASKS} by channel", i + 1))?;
        paid += bought.paid.get();
    }
    // The gateway claims on its window (a few seconds here) and sweeps to its wallet.
    let channels = buyer
        .channels
        .as_ref()
        .map(|w| w.channels())
        .transpose()?
        .unwrap_or_default();
    let id: alloy::primitives::B256 = channels
        .keys()
        .next()
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| anyhow!("the demo buyer has no channel"))?;
    let settlement = d402_rails::evm::contracts::BatchSettlement::new(
        d402_rails::evm::batch::SETTLEMENT_ADDRESS,
        evm.anvil.provider(&key),
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while settlement.channels(id).call().await?.totalClaimed < paid {
        if std::time::Instant::now() > until {
            bail!("the gateway did not claim the channel within 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let buyer_txs = txs(key.address()).await? - buyer_before;
    let gateway_txs = txs(gateway_key).await? - gateway_before;
    println!(
        "  {TASKS} tasks paid {paid} atomic units by channel: {} on-chain transactions \
         ({buyer_txs} from the buyer; {gateway_txs} from the gateway: the deposit, the claim, \
         the sweep and the worker payouts sent so far); paying per task takes {TASKS} transfers \
         before any payout",
        buyer_txs + gateway_txs
    );
    Ok(())
}

/// Buys a proof check from the solana-direct gateway with a Solana test wallet.
async fn demo_solana(gateway: &str, sol: &chains::Solana) -> anyhow::Result<()> {
    let buyer = sol
        .buyers
        .first()
        .ok_or_else(|| anyhow!("no Solana test buyer"))?;
    let keypair = solana_keypair::Keypair::try_from(buyer.to_bytes().as_slice())
        .map_err(|e| anyhow!("copying the buyer keypair: {e}"))?;
    let mut who = vec![
        ("buyer".to_string(), buyer.pubkey()),
        ("gateway".to_string(), sol.fee_payer.pubkey()),
    ];
    for (i, w) in sol.workers.iter().enumerate() {
        who.push((format!("worker-{}", i + 1), w.pubkey()));
    }
    let mut before = Vec::new();
    for (_, k) in &who {
        before.push(sol.chain.token_balance_of(k, &sol.mint).await?);
    }
    let client = Buyer::with_wallets(
        gateway,
        None,
        Some(SolanaPayer {
            keypair,
            rpc_url: sol.chain.rpc_url().to_string(),
        }),
        Some(Atomic::new(1_000_000)),
    );
    let leaf = "d402 devnet on Solana";
    let root = d402_cap_merkle_verify::leaf_hash(leaf.as_bytes());
    let input =
        json!({"leaf": alloy::hex::encode(leaf), "proof": [], "root": alloy::hex::encode(root)});
    println!(
        "\n→ {} through {gateway} (solana-direct)",
        catalog::MERKLE_VERIFY
    );
    let bought = client
        .run(catalog::MERKLE_VERIFY, input)
        .await
        .context("buying merkle.verify_proof@1 on Solana")?;
    print_purchase(&bought.task, bought.paid);
    // A direct rail pays the worker its net in the gateway's next payout batch, about a second
    // after delivery.
    if let Some(url) = bought.task["url"].as_str() {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let task: Value = reqwest::get(url).await?.json().await?;
            let pay = &task["payment"]["workerPay"];
            if pay["state"] == "paid" {
                println!(
                    "  worker pay: paid in batch {} (tx {})",
                    pay["batch"].as_str().unwrap_or_default(),
                    pay["txHashes"][0].as_str().unwrap_or_default()
                );
                break;
            }
            if std::time::Instant::now() > until {
                println!("  worker pay: still owed after 30 s (the gateway retries it)");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    println!("\nSPL token balances on the Solana test validator (atomic units, 6 decimals):");
    for ((name, k), b) in who.iter().zip(before) {
        let a = sol.chain.token_balance_of(k, &sol.mint).await?;
        println!("  {name:<10} {a:>14}  ({:+})", a as i128 - b as i128);
    }
    Ok(())
}

/// Buys a commission-bearing page conversion from the solana-task-escrow gateway with a Solana
/// wallet: the buyer funds the task's escrow on d402's program, the validator node signs the
/// release in its verdict, the program pays workers, creator and gateway.
async fn demo_solana_escrow(
    gateway: &str,
    pages: &str,
    sol: &chains::Solana,
) -> anyhow::Result<()> {
    let buyer = sol
        .buyers
        .first()
        .ok_or_else(|| anyhow!("no Solana test buyer"))?;
    let keypair = solana_keypair::Keypair::try_from(buyer.to_bytes().as_slice())
        .map_err(|e| anyhow!("copying the buyer keypair: {e}"))?;
    let mut who = vec![
        ("buyer".to_string(), buyer.pubkey()),
        ("creator".to_string(), sol.creator.pubkey()),
        ("gateway".to_string(), sol.escrow_fee_payer.pubkey()),
    ];
    for (i, w) in sol.workers.iter().enumerate() {
        who.push((format!("worker-{}", i + 1), w.pubkey()));
    }
    let mut before = Vec::new();
    for (_, k) in &who {
        before.push(sol.chain.token_balance_of(k, &sol.mint).await?);
    }
    let client = Buyer::with_wallets(
        gateway,
        None,
        Some(SolanaPayer {
            keypair,
            rpc_url: sol.chain.rpc_url().to_string(),
        }),
        Some(Atomic::new(1_000_000)),
    );
    let page = format!("{pages}{}", pages::PAGES[0].0);
    println!(
        "\n→ {} on {page} through {gateway} (solana-task-escrow: the escrow is funded by this payment)",
        catalog::PAGE_TO_MARKDOWN
    );
    let bought = client
        .run(catalog::PAGE_TO_MARKDOWN, json!({ "url": page }))
        .await
        .context("buying web.page_to_markdown@1 on solana-task-escrow")?;
    print_purchase(&bought.task, bought.paid);
    let release = &bought.task["payment"]["release"];
    println!(
        "  released by the validator's signature: tx {}",
        release["txHashes"][0].as_str().unwrap_or("(pending)")
    );
    println!("\nSPL token balances after the task escrow (atomic units):");
    for ((name, k), b) in who.iter().zip(before) {
        let a = sol.chain.token_balance_of(k, &sol.mint).await?;
        println!("  {name:<10} {a:>14}  ({:+})", a as i128 - b as i128);
    }
    Ok(())
}

/// Buys a page conversion (10 % creator commission, two workers) and five proof checks from the
/// solana-channel gateway through one channel, then waits for the root and the maintainer's
/// withdrawals and shows each claimant's balance on Solana.
async fn demo_solana_channel(
    gateway: &str,
    pages: &str,
    sol: &chains::Solana,
    state: &Path,
) -> anyhow::Result<()> {
    let buyer = sol
        .buyers
        .get(1)
        .or(sol.buyers.first())
        .ok_or_else(|| anyhow!("no Solana test buyer"))?;
    let keypair = solana_keypair::Keypair::try_from(buyer.to_bytes().as_slice())
        .map_err(|e| anyhow!("copying the buyer keypair: {e}"))?;
    let mut who = vec![
        ("buyer".to_string(), buyer.pubkey()),
        ("gateway".to_string(), sol.channel_authority.pubkey()),
        ("creator".to_string(), sol.creator.pubkey()),
    ];
    for (i, w) in sol.workers.iter().enumerate() {
        who.push((format!("worker-{}", i + 1), w.pubkey()));
    }
    let balances = || async {
        let mut out = Vec::new();
        for (_, k) in &who {
            out.push(sol.chain.token_balance_of(k, &sol.mint).await?);
        }
        anyhow::Ok(out)
    };
    let before = balances().await?;
    let mut client = Buyer::with_wallets(gateway, None, None, Some(Atomic::new(1_000_000)));
    client.solana_channels = Some(
        d402_gateway::solana_channel_wallet::SolanaChannelWallet::new(
            &state.join("demo-solana-channel-buyer"),
            keypair,
            sol.chain.rpc_url(),
            Atomic::new(2_000_000),
        ),
    );
    let page = format!("{pages}{}", pages::PAGES[1].0);
    println!(
        "\n→ {} on {page} through {gateway} (solana-channel: the opening rides on this payment)",
        catalog::PAGE_TO_MARKDOWN
    );
    let bought = client
        .run(catalog::PAGE_TO_MARKDOWN, json!({ "url": page }))
        .await
        .context("buying web.page_to_markdown@1 by Solana channel")?;
    print_purchase(&bought.task, bought.paid);
    let mut paid = bought.paid.get();
    println!("\n→ 5 × {} by voucher", catalog::MERKLE_VERIFY);
    for i in 0..5 {
        let leaf = format!("d402 devnet solana channel {i}");
        let root = d402_cap_merkle_verify::leaf_hash(leaf.as_bytes());
        let input = json!({"leaf": alloy::hex::encode(&leaf), "proof": [], "root": alloy::hex::encode(root)});
        paid += client
            .run(catalog::MERKLE_VERIFY, input)
            .await
            .with_context(|| format!("buying proof check {} by voucher", i + 1))?
            .paid
            .get();
    }
    // The gateway publishes a root within its interval; the maintainer withdraws for every
    // claimant on its next round.
    println!("  waiting for the root and the maintainer's withdrawals…");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut after = balances().await?;
    loop {
        let paid_out: u64 = after.iter().zip(&before).skip(1).map(|(a, b)| a - b).sum();
        if u128::from(paid_out) >= paid {
            break;
        }
        if std::time::Instant::now() > until {
            println!(
                "  not all withdrawn after 60 s ({paid_out} of {paid}): the maintainer retries"
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        after = balances().await?;
    }
    println!(
        "\nSPL token balances after the maintainer's withdrawals (atomic units; the buyer's \
         deposit stays in its channel's vault, its own until spent):"
    );
    for ((name, _), (b, a)) in who.iter().zip(before.iter().zip(&after)) {
        println!("  {name:<10} {a:>14}  ({:+})", *a as i128 - *b as i128);
    }
    Ok(())
}

/// Buys a commission-bearing page conversion from the hybrid gateway with a Base wallet (x402
/// `exact`, as any stock client pays), then waits for the root and the maintainer's withdrawals
/// and shows the creator's and the workers' shares arriving on Solana.
async fn demo_hybrid(
    gateway: &str,
    pages: &str,
    evm: &chains::Evm,
    sol: &chains::Solana,
) -> anyhow::Result<()> {
    let key = evm
        .buyers
        .get(1)
        .or(evm.buyers.first())
        .ok_or_else(|| anyhow!("no test buyer"))?
        .clone();
    let mut who = vec![("creator".to_string(), sol.creator.pubkey())];
    for (i, w) in sol.workers.iter().enumerate() {
        who.push((format!("worker-{}", i + 1), w.pubkey()));
    }
    let balances = || async {
        let mut out = Vec::new();
        for (_, k) in &who {
            out.push(sol.chain.token_balance_of(k, &sol.mint).await?);
        }
        anyhow::Ok(out)
    };
    let before = balances().await?;
    let base_before = evm
        .anvil
        .balance(evm.chain.asset.address, key.address())
        .await?;
    let client = Buyer::new(gateway, key.clone(), Some(Atomic::new(1_000_000)));
    let page = format!("{pages}{}", pages::PAGES[0].0);
    println!(
        "\n→ {} on {page} through {gateway} (base-x402-solana-channel: x402 exact on Base)",
        catalog::PAGE_TO_MARKDOWN
    );
    let bought = client
        .run(catalog::PAGE_TO_MARKDOWN, json!({ "url": page }))
        .await
        .context("buying web.page_to_markdown@1 on the hybrid rail")?;
    print_purchase(&bought.task, bought.paid);
    let base_after = evm
        .anvil
        .balance(evm.chain.asset.address, key.address())
        .await?;
    println!(
        "  the buyer paid {} atomic units on Base (anvil)",
        base_before.saturating_sub(base_after)
    );
    println!("  waiting for the root and the maintainer's withdrawals on Solana…");
    // The creator's 10 % and the workers' net (the gateway keeps its fee as a claimant too).
    let owed = bought.paid.get() as u64 * 95 / 100;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut after = balances().await?;
    loop {
        let paid_out: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
        if paid_out >= owed {
            break;
        }
        if std::time::Instant::now() > until {
            println!(
                "  not all withdrawn after 60 s ({paid_out} of {owed}): the maintainer retries"
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        after = balances().await?;
    }
    println!("\nSPL token balances on Solana after the hybrid purchase (atomic units):");
    for ((name, _), (b, a)) in who.iter().zip(before.iter().zip(&after)) {
        println!("  {name:<10} {a:>14}  ({:+})", *a as i128 - *b as i128);
    }
    Ok(())
}

async fn balances(
    evm: &chains::Evm,
    token: Address,
    who: &[(String, Address)],
) -> anyhow::Result<Vec<u128>> {
    let mut out = Vec::new();
    for (_, a) in who {
        out.push(evm.anvil.balance(token, *a).await?);
    }
    Ok(out)
}

fn print_purchase(task: &Value, paid: Atomic) {
    println!(
        "  task {} {} (paid {paid} atomic units on {})",
        task["taskId"].as_str().unwrap_or_default(),
        task["status"].as_str().unwrap_or_default(),
        task["payment"]["rail"].as_str().unwrap_or_default()
    );
    let result = &task["result"];
    let text = result["markdown"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| result.to_string());
    for line in text.lines().take(12) {
        println!("  │ {line}");
    }
    for r in task["receipts"].as_array().into_iter().flatten() {
        println!(
            "  receipt: worker {} output {} canonical {}",
            short(r["worker"].as_str()),
            short(r["output"].as_str()),
            short(r["canonicalOutput"].as_str())
        );
    }
    if let Some(v) = task["verdict"].as_object() {
        let count = |k: &str| v.get(k).and_then(|a| a.as_array()).map_or(0, Vec::len);
        println!(
            "  verdict by validator {}: {} claim(s) accepted, {} rejected",
            short(v.get("validator").and_then(|x| x.as_str())),
            count("accepted"),
            count("rejected")
        );
    }
}

fn short(s: Option<&str>) -> String {
    match s {
        Some(s) if s.len() > 20 => format!("{}…{}", &s[..12], &s[s.len() - 6..]),
        Some(s) => s.to_string(),
        None => "-".into(),
    }
}
