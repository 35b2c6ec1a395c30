//! `d402 node`: run a node of the peer network. With `--offer` it is a worker, with `--validate`
//! a validator, with neither a bootstrap. Settings come from flags, or from a TOML file given with
//! `--config` (same names as the flags, e.g. `offer = ["web.page_to_markdown@1"]`); flags win.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use d402_host::egress::NetworkEgress;
use d402_host::{FetchSnapshotter, FrozenPages, Snapshotter};
use d402_node::Multiaddr;
use d402_node::{Node, NodeConfig, WorkerConfig, peer_addr};
use d402_registry::CreatorWallets;
use d402_registry::wallet::{check_solana, normalize_evm};
use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter, FallbackSnapshotter};
use serde::Deserialize;

/// Flags of `d402 node` (seed 001's names). Every flag may also be set in the `--config` file.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeArgs {
    /// A TOML file with any of these settings; flags given on the command line win.
    #[arg(long, value_name = "FILE.toml")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// A name for logs and the progress line.
    #[arg(long)]
    label: Option<String>,
    /// State folder: node key, peer and reputation database, content store [default: .d402/node].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    host: Option<String>,
    /// Address peers should dial, when the listen address is not reachable as such.
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// TCP port for the peer network [default: 0, any free port].
    #[arg(long)]
    port: Option<u16>,
    /// A peer to join through: HOST:PORT or a multiaddr (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(default)]
    peer: Vec<String>,
    /// A capability this worker sells, ID@VERSION (repeatable).
    #[arg(long, value_name = "ID@VERSION")]
    #[serde(default)]
    offer: Vec<String>,
    /// A capability this node validates, ID@VERSION (repeatable).
    #[arg(long, value_name = "ID@VERSION")]
    #[serde(default)]
    validate: Vec<String>,
    /// How workers freeze pages [default: chromium].
    #[arg(long, value_enum)]
    snapshotter: Option<SnapshotterKind>,
    /// With the chromium snapshotter: fall back to a plain fetch when the browser fails
    /// [default: false].
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    fallback_to_fetch: Option<bool>,
    /// Where this worker is paid on Solana.
    #[arg(long, value_name = "WALLET")]
    solana_payout_wallet: Option<String>,
    /// Where this worker is paid on EVM chains (EIP-55 checksummed or single-case).
    #[arg(long, value_name = "0xADDRESS")]
    evm_payout_wallet: Option<String>,
    /// Price per task, in the rail's atomic units [default: 1].
    #[arg(long, value_name = "N")]
    price: Option<u64>,
    /// Let capabilities reach loopback and private addresses (local networks only).
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    allow_private_targets: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SnapshotterKind {
    #[value(alias = "playwright")]
    #[serde(alias = "playwright")]
    Chromium,
    Fetch,
    None,
}

impl NodeArgs {
    /// Fills what the command line left unset from the config file.
    fn merged(self) -> anyhow::Result<NodeArgs> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: NodeArgs =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
        let list = |flag: Vec<String>, file: Vec<String>| if flag.is_empty() { file } else { flag };
        Ok(NodeArgs {
            config: self.config,
            label: self.label.or(file.label),
            state: self.state.or(file.state),
            host: self.host.or(file.host),
            advertise_host: self.advertise_host.or(file.advertise_host),
            port: self.port.or(file.port),
            peer: list(self.peer, file.peer),
            offer: list(self.offer, file.offer),
            validate: list(self.validate, file.validate),
            snapshotter: self.snapshotter.or(file.snapshotter),
            fallback_to_fetch: self.fallback_to_fetch.or(file.fallback_to_fetch),
            solana_payout_wallet: self.solana_payout_wallet.or(file.solana_payout_wallet),
            evm_payout_wallet: self.evm_payout_wallet.or(file.evm_payout_wallet),
            price: self.price.or(file.price),
            allow_private_targets: self.allow_private_targets.or(file.allow_private_targets),
        })
    }
}

fn ip_addr(host: &str, port: u16) -> anyhow::Result<Multiaddr> {
    let addr = peer_addr(&format!("{host}:{port}")).map_err(|e| anyhow!("{e}"))?;
    Ok(addr)
}

fn capability_list(flag: &str, values: &[String]) -> anyhow::Result<BTreeSet<String>> {
    values
        .iter()
        .map(|v| match v.split_once('@') {
            Some((id, version)) if !id.is_empty() && version.parse::<u32>().is_ok() => {
                Ok(v.clone())
            }
            _ => bail!("--{flag} {v:?}: expected ID@VERSION, e.g. web.page_to_markdown@1"),
        })
        .collect()
}

pub fn run(args: NodeArgs) -> anyhow::Result<std::process::ExitCode> {
    let args = args.merged()?;
    let label = args.label.clone().unwrap_or_else(|| "node".into());
    let state = args.state.clone().unwrap_or_else(|| ".d402/node".into());
    let host = args.host.clone().unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.unwrap_or(0);
    let listen = ip_addr(&host, port).context("--host/--port")?;
    let advertise = match &args.advertise_host {
        Some(h) => Some(ip_addr(h, port).context("--advertise-host")?),
        None => None,
    };
    let peers = args
        .peer
        .iter()
        .map(|p| peer_addr(p).map_err(|e| anyhow!("--peer: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let offers = capability_list("offer", &args.offer)?;
    let validate = capability_list("validate", &args.validate)?;
    let mut payout = CreatorWallets::default();
    if let Some(w) = &args.solana_payout_wallet {
        check_solana(w).map_err(|e| anyhow!("--solana-payout-wallet: {e}"))?;
        payout.solana = Some(w.clone());
    }
    if let Some(w) = &args.evm_payout_wallet {
        payout.evm = Some(normalize_evm(w).map_err(|e| anyhow!("--evm-payout-wallet: {e}"))?);
    }

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let worker = if offers.is_empty() {
            None
        } else {
            let snapshotter = snapshotter(
                args.snapshotter.unwrap_or(SnapshotterKind::Chromium),
                args.fallback_to_fetch.unwrap_or(false),
            )?;
            let mut config = WorkerConfig::new(offers.clone(), snapshotter);
            config.payout_wallets = payout;
            config.price = args.price.unwrap_or(1);
            config.allow_private_targets = args.allow_private_targets.unwrap_or(false);
            Some(config)
        };
        let mut config = NodeConfig::new(label.clone(), state);
        config.listen = listen;
        config.advertise = advertise;
        config.peers = peers;
        config.worker = worker;
        config.validate = validate.clone();
        let node = Node::start(config).await?;
        let role = match (offers.is_empty(), validate.is_empty()) {
            (true, true) => "bootstrap",
            (false, true) => "worker",
            (true, false) => "validator",
            (false, false) => "worker+validator",
        };
        // One JSON line other tools (and `--peer`) can use.
        println!(
            "{}",
            serde_json::json!({
                "label": label,
                "role": role,
                "peerId": node.peer_id().to_string(),
                "listen": node.listen_addr().to_string(),
                "publicKey": node.public_id(),
                "offers": offers,
                "validates": validate,
            })
        );
        eprintln!(
            "{label}: {role} listening on {} (Ctrl-C stops)",
            node.listen_addr()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("{label}: stopping");
        node.shutdown();
        anyhow::Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn snapshotter(kind: SnapshotterKind, fallback: bool) -> anyhow::Result<Arc<dyn Snapshotter>> {
    let fetch = FetchSnapshotter::new(Arc::new(NetworkEgress::new()));
    Ok(match kind {
        SnapshotterKind::Fetch => Arc::new(fetch),
        SnapshotterKind::None => Arc::new(FrozenPages::new()),
        SnapshotterKind::Chromium => {
            let chromium = ChromiumSnapshotter::launch(ChromiumConfig::default())?;
            if fallback {
                Arc::new(FallbackSnapshotter {
                    primary: chromium,
                    fallback: fetch,
                })
            } else {
                Arc::new(chromium)
            }
        }
    })
}
