//! `d402 node`: run a node of the peer network. With `--offer` it is a worker, with `--validate`
//! a validator, with neither a bootstrap. Settings come from flags, or from a TOML file given with
//! `--config` (same names as the flags, e.g. `offer = ["web.page_to_markdown@1"]`); flags win.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use d402_core::{FrozenPages, Snapshotter};
use d402_host::FetchSnapshotter;
use d402_host::egress::NetworkEgress;
use d402_node::Multiaddr;
use d402_node::{Node, NodeConfig, WorkerConfig, peer_addr};
use d402_registry::wallet::{check_solana, normalize_evm};
use d402_registry::{AcceptancePolicy, CreatorWallets};
use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter, FallbackSnapshotter};
use serde::Deserialize;

use crate::serve;
use d402_gateway::gateway::policy::{SnapshotCheckPolicy, SnapshotFailure};
use d402_gateway::release::{EscrowReleaseSigner, ReleaseSigners, SolanaEscrowReleaseSigner};

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
    /// Gateway: address of the HTTP API [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    http_host: Option<String>,
    /// Gateway: port of the HTTP API; setting it makes this node a gateway (0: any free port).
    #[arg(long)]
    http_port: Option<u16>,
    /// Gateway: the rail buyers pay on.
    #[arg(long, value_enum)]
    payment: Option<serve::PaymentRail>,
    /// Gateway: gross price of one task, e.g. '$0.01'.
    #[arg(long, value_name = "PRICE")]
    gateway_price: Option<String>,
    /// Gateway: most the workers of one task are paid, e.g. 0.01 [default: the price].
    #[arg(long, value_name = "AMOUNT")]
    gateway_budget: Option<String>,
    /// Gateway: the gateway's fee on split rails, in basis points [default: 0].
    #[arg(long, value_name = "BPS")]
    gateway_fee_bps: Option<u16>,
    /// Gateway: refuse capabilities without a registration (always true: a gateway sells
    /// registered capabilities only) [default: true].
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    require_capability_registration: Option<bool>,
    /// Gateway: refuse registrations whose publisher signature does not verify [default: true].
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    require_signed_capability_registration: Option<bool>,
    /// Gateway: the creator commission cap [default: D402_MAX_CREATOR_COMMISSION_BPS or 2000].
    #[arg(long, value_name = "BPS")]
    max_creator_commission_bps: Option<u32>,
    /// Gateway: a trusted namespace and its owner, NAMESPACE=ed25519:<hex> (repeatable).
    #[arg(long, value_name = "NS=OWNER")]
    #[serde(default)]
    trust_namespace: Vec<String>,
    /// Gateway: sell only this exact manifest CID (repeatable).
    #[arg(long, value_name = "CID")]
    #[serde(default)]
    accept_manifest_cid: Vec<String>,
    /// Gateway: sell only manifests naming this implementation CID (repeatable).
    #[arg(long, value_name = "CID")]
    #[serde(default)]
    accept_implementation_cid: Vec<String>,
    /// Gateway: a published capability to serve to workers and sell: a directory holding
    /// registration.json, manifest.json and component.wasm (repeatable).
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    publish: Vec<PathBuf>,
    /// Gateway: the EVM chain's JSON-RPC URL.
    #[arg(long, value_name = "URL")]
    evm_rpc_url: Option<String>,
    /// Gateway: the EIP-3009 token prices are paid in.
    #[arg(long, value_name = "0xADDRESS")]
    evm_token: Option<String>,
    /// Gateway: the token's EIP-712 domain name [default: USD Coin].
    #[arg(long)]
    evm_token_name: Option<String>,
    /// Gateway: the token's EIP-712 domain version [default: 2].
    #[arg(long)]
    evm_token_version: Option<String>,
    /// Gateway: the token's decimals [default: 6].
    #[arg(long)]
    evm_token_decimals: Option<u8>,
    /// Gateway, base-task-escrow: the TaskEscrow contract.
    #[arg(long, value_name = "0xADDRESS")]
    escrow_address: Option<String>,
    /// Gateway, base-task-escrow: the escrow's release signer address.
    #[arg(long, value_name = "0xADDRESS")]
    escrow_validator: Option<String>,
    /// Gateway: the key that submits settlements and pays their gas (file or hex).
    #[arg(long, value_name = "FILE|HEX")]
    facilitator_key: Option<String>,
    /// The `base-task-escrow` validator-role key that signs split releases (file or hex). On a
    /// validator node (`--validate`) it signs the release of the work it accepts, inside its
    /// verdict: the production set-up, where the gateway runs with `--escrow-validator` and no
    /// key. On a gateway it signs there instead (one process holding everything: development).
    #[arg(long, value_name = "FILE|HEX")]
    release_key: Option<String>,
    /// The `solana-task-escrow` validator-role key (a `solana-keygen` JSON file, or base58): on
    /// a validator node it signs the release of the work it accepts, inside its verdict (the
    /// gateway then runs with `--solana-escrow-validator`); on a gateway it signs there
    /// (development).
    #[arg(long, value_name = "FILE|BASE58")]
    solana_release_key: Option<String>,
    /// Gateway, solana-task-escrow: the public key whose signature releases a task's escrow (the
    /// validator node's `--solana-release-key`).
    #[arg(long, value_name = "PUBKEY")]
    solana_escrow_validator: Option<String>,
    /// Gateway: where direct payments and gateway fees go [default: the facilitator address].
    /// On base-x402-direct it must be the facilitator address (workers are paid out of it).
    #[arg(long, value_name = "0xADDRESS")]
    gateway_wallet: Option<String>,
    /// Gateway, solana-direct: the cluster's JSON-RPC URL.
    #[arg(long, value_name = "URL")]
    solana_rpc_url: Option<String>,
    /// Gateway, solana-direct: the SPL mint prices are paid in (USDC on mainnet).
    #[arg(long, value_name = "MINT")]
    solana_mint: Option<String>,
    /// Gateway, solana-direct: the mint's decimals [default: 6].
    #[arg(long)]
    solana_mint_decimals: Option<u8>,
    /// Gateway, solana-direct: the fee payer that co-signs and pays for buyers' transfers (a
    /// `solana-keygen` JSON file, or base58).
    #[arg(long, value_name = "FILE|BASE58")]
    solana_fee_payer_key: Option<String>,
    /// Gateway, solana-direct: whose token account receives payments [default: the fee payer].
    /// It must be the fee payer's wallet (workers and refunds are paid out of it).
    #[arg(long, value_name = "PUBKEY")]
    solana_gateway_wallet: Option<String>,
    /// Gateway: how long POST /tasks waits for a result before answering 202 [default: 30000].
    #[arg(long, value_name = "MS")]
    gateway_wait_ms: Option<u64>,
    /// Gateway: how long a buyer's signed payment stays valid, in seconds [default: 300].
    #[arg(long, value_name = "SECS")]
    gateway_payment_timeout_secs: Option<u64>,
    /// Gateway: how long the network gets to run one task, in seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    gateway_task_timeout_secs: Option<u64>,
    /// Gateway, escrow rails: how long after the task timeout an unfinished task's escrow is
    /// refunded, in seconds; its deadline is payment timeout + task timeout + this after the
    /// challenge [default: 30].
    #[arg(long, value_name = "SECS")]
    gateway_refund_after_secs: Option<u64>,
    /// Gateway, direct rails: how long delivered tasks' worker pay accumulates before it is paid
    /// out, one transfer per worker for the whole batch [default: 1000].
    #[arg(long, value_name = "MS")]
    gateway_payout_window_ms: Option<u64>,
    /// Gateway, base-batch-settlement: claim accepted vouchers once the oldest unclaimed one is
    /// this old (many channels per claim transaction), in milliseconds [default: 60000].
    #[arg(long, value_name = "MS")]
    gateway_claim_window_ms: Option<u64>,
    /// Gateway, base-batch-settlement: the payer's withdraw delay its channels carry, in seconds
    /// (900 to 2592000) [default: 86400].
    #[arg(long, value_name = "SECS")]
    gateway_withdraw_delay_secs: Option<u64>,
    /// Gateway, solana-channel: the channels' maintainer, which may publish roots and crank
    /// withdrawals but holds no funds [default: the fee payer].
    #[arg(long, value_name = "PUBKEY")]
    solana_channel_maintainer: Option<String>,
    /// Gateway, solana-channel: publish a root once the oldest allocation not in one is this
    /// old, in milliseconds [default: 30000].
    #[arg(long, value_name = "MS")]
    gateway_root_interval_ms: Option<u64>,
    /// Gateway, solana-channel: the grace between a close request and the close its channels
    /// carry, in seconds [default: 86400].
    #[arg(long, value_name = "SECS")]
    gateway_channel_grace_secs: Option<u64>,
    /// Gateway, base-x402-solana-channel: what each opening or top-up of the gateway's own
    /// Solana channel deposits, e.g. '$10' (within the channel caps) [default: $10].
    #[arg(long, value_name = "PRICE")]
    gateway_channel_deposit: Option<String>,
    /// Gateway: the incident switch. While this file exists the gateway issues no challenge and
    /// takes no new payment; paid tasks, refunds and worker pay still finish
    /// [default: STATE/gateway/INCIDENT].
    #[arg(long, value_name = "FILE")]
    incident_file: Option<PathBuf>,
    /// Gateway: honest snapshots. `off`, or the share of tasks (0 to 1) whose frozen page an
    /// independent worker freezes again, the validator comparing the two outputs with
    /// compare.text_similarity@1 (which must be --publish'ed) [default: off].
    #[arg(long, value_name = "off|RATE")]
    snapshot_check: Option<String>,
    /// Gateway: the score (0 to 1) the agreed output and the independent one must reach
    /// [default: 0.8].
    #[arg(long, value_name = "SCORE")]
    snapshot_check_threshold: Option<f64>,
    /// Gateway: what a failed snapshot check does: `refund` the buyer, or `deliver-disputed`
    /// (the output delivered, marked `disputed`) [default: refund].
    #[arg(long, value_name = "refund|deliver-disputed")]
    snapshot_check_failure: Option<String>,
    /// Gateway: the least reputation score (0 to 1; a newcomer has 0.5) a worker needs to be
    /// leased for non-verifiable and scoreable offers [default: none].
    #[arg(long, value_name = "SCORE")]
    min_worker_score: Option<f64>,
    /// Gateway: the least bond (e.g. '$5', in the price's token) a worker needs in
    /// --worker-bond-contract to be leased for non-verifiable and scoreable offers
    /// [default: none].
    #[arg(long, value_name = "PRICE")]
    min_worker_bond: Option<String>,
    /// Gateway: the WorkerBond contract --min-worker-bond reads (on --evm-rpc-url).
    #[arg(long, value_name = "0xADDRESS")]
    worker_bond_contract: Option<String>,
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
            http_host: self.http_host.or(file.http_host),
            http_port: self.http_port.or(file.http_port),
            payment: self.payment.or(file.payment),
            gateway_price: self.gateway_price.or(file.gateway_price),
            gateway_budget: self.gateway_budget.or(file.gateway_budget),
            gateway_fee_bps: self.gateway_fee_bps.or(file.gateway_fee_bps),
            require_capability_registration: self
                .require_capability_registration
                .or(file.require_capability_registration),
            require_signed_capability_registration: self
                .require_signed_capability_registration
                .or(file.require_signed_capability_registration),
            max_creator_commission_bps: self
                .max_creator_commission_bps
                .or(file.max_creator_commission_bps),
            trust_namespace: list(self.trust_namespace, file.trust_namespace),
            accept_manifest_cid: list(self.accept_manifest_cid, file.accept_manifest_cid),
            accept_implementation_cid: list(
                self.accept_implementation_cid,
                file.accept_implementation_cid,
            ),
            publish: if self.publish.is_empty() {
                file.publish
            } else {
                self.publish
            },
            evm_rpc_url: self.evm_rpc_url.or(file.evm_rpc_url),
            evm_token: self.evm_token.or(file.evm_token),
            evm_token_name: self.evm_token_name.or(file.evm_token_name),
            evm_token_version: self.evm_token_version.or(file.evm_token_version),
            evm_token_decimals: self.evm_token_decimals.or(file.evm_token_decimals),
            escrow_address: self.escrow_address.or(file.escrow_address),
            escrow_validator: self.escrow_validator.or(file.escrow_validator),
            facilitator_key: self.facilitator_key.or(file.facilitator_key),
            release_key: self.release_key.or(file.release_key),
            solana_release_key: self.solana_release_key.or(file.solana_release_key),
            solana_escrow_validator: self
                .solana_escrow_validator
                .or(file.solana_escrow_validator),
            gateway_wallet: self.gateway_wallet.or(file.gateway_wallet),
            solana_rpc_url: self.solana_rpc_url.or(file.solana_rpc_url),
            solana_mint: self.solana_mint.or(file.solana_mint),
            solana_mint_decimals: self.solana_mint_decimals.or(file.solana_mint_decimals),
            solana_fee_payer_key: self.solana_fee_payer_key.or(file.solana_fee_payer_key),
            solana_gateway_wallet: self.solana_gateway_wallet.or(file.solana_gateway_wallet),
            gateway_wait_ms: self.gateway_wait_ms.or(file.gateway_wait_ms),
            gateway_payment_timeout_secs: self
                .gateway_payment_timeout_secs
                .or(file.gateway_payment_timeout_secs),
            gateway_task_timeout_secs: self
                .gateway_task_timeout_secs
                .or(file.gateway_task_timeout_secs),
            gateway_refund_after_secs: self
                .gateway_refund_after_secs
                .or(file.gateway_refund_after_secs),
            gateway_payout_window_ms: self
                .gateway_payout_window_ms
                .or(file.gateway_payout_window_ms),
            gateway_claim_window_ms: self
                .gateway_claim_window_ms
                .or(file.gateway_claim_window_ms),
            gateway_withdraw_delay_secs: self
                .gateway_withdraw_delay_secs
                .or(file.gateway_withdraw_delay_secs),
            solana_channel_maintainer: self
                .solana_channel_maintainer
                .or(file.solana_channel_maintainer),
            gateway_root_interval_ms: self
                .gateway_root_interval_ms
                .or(file.gateway_root_interval_ms),
            gateway_channel_grace_secs: self
                .gateway_channel_grace_secs
                .or(file.gateway_channel_grace_secs),
            gateway_channel_deposit: self
                .gateway_channel_deposit
                .or(file.gateway_channel_deposit),
            incident_file: self.incident_file.or(file.incident_file),
            snapshot_check: self.snapshot_check.or(file.snapshot_check),
            snapshot_check_threshold: self
                .snapshot_check_threshold
                .or(file.snapshot_check_threshold),
            snapshot_check_failure: self.snapshot_check_failure.or(file.snapshot_check_failure),
            min_worker_score: self.min_worker_score.or(file.min_worker_score),
            min_worker_bond: self.min_worker_bond.or(file.min_worker_bond),
            worker_bond_contract: self.worker_bond_contract.or(file.worker_bond_contract),
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
    let gateway = gateway_settings(&args, &offers)?;
    // On a gateway, --offer names what it sells (seed 001); the work is done by workers.
    let offers = if gateway.is_some() {
        BTreeSet::new()
    } else {
        offers
    };
    let validate = capability_list("validate", &args.validate)?;
    let mut payout = CreatorWallets::default();
    if let Some(w) = &args.solana_payout_wallet {
        check_solana(w).map_err(|e| anyhow!("--solana-payout-wallet: {e}"))?;
        payout.solana = Some(w.clone());
    }
    if let Some(w) = &args.evm_payout_wallet {
        payout.evm = Some(normalize_evm(w).map_err(|e| anyhow!("--evm-payout-wallet: {e}"))?);
    }

    let gateway_state = std::path::Path::new(&state).join("gateway");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        // Listening for a stop from the start: a SIGTERM right after the start line is honoured.
        let mut stop = crate::signal::Stop::install();
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
        // A validator signs the releases of the escrow rails it holds keys for.
        let mut signers: Vec<Arc<dyn d402_node::ReleaseSigner>> = Vec::new();
        let mut escrow_validator = None;
        let mut solana_escrow_validator = None;
        if !validate.is_empty() {
            if let Some(key) = &args.release_key {
                let signer = EscrowReleaseSigner::new(serve::load_key("--release-key", key)?);
                escrow_validator = Some(signer.address().to_checksum(None));
                signers.push(Arc::new(signer));
            }
            if let Some(key) = &args.solana_release_key {
                let signer = SolanaEscrowReleaseSigner::new(serve::load_solana_keypair(
                    "--solana-release-key",
                    key,
                )?);
                solana_escrow_validator = Some(signer.public_key().to_string());
                signers.push(Arc::new(signer));
            }
        }
        config.release_signer = ReleaseSigners::of(signers);
        let node = Node::start(config).await?;
        let mut http = None;
        if let Some(settings) = gateway {
            let (gw, listener) = serve::start(&node, &gateway_state, settings).await?;
            let addr = listener.local_addr()?;
            let sold: Vec<String> = gw.listings.keys().cloned().collect();
            for r in gw.refused.values() {
                eprintln!("{label}: not selling {}: {}", r.capability, r.reason);
            }
            http = Some((gw, listener, addr, sold));
        }
        let role = match (offers.is_empty(), validate.is_empty()) {
            _ if http.is_some() => "gateway",
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
                "escrowValidator": escrow_validator,
                "solanaEscrowValidator": solana_escrow_validator,
                "http": http.as_ref().map(|(_, _, a, _)| format!("http://{a}")),
                "sells": http.as_ref().map(|(_, _, _, s)| s.clone()),
            })
        );
        eprintln!(
            "{label}: {role} listening on {} (Ctrl-C stops)",
            node.listen_addr()
        );
        match http {
            Some((gw, listener, _, _)) => serve::serve(gw, listener, stop).await?,
            None => stop.requested().await,
        }
        eprintln!("{label}: stopping");
        node.shutdown();
        anyhow::Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The gateway settings, when `--http-port` makes this node a gateway.
fn gateway_settings(
    args: &NodeArgs,
    sells: &BTreeSet<String>,
) -> anyhow::Result<Option<serve::GatewaySettings>> {
    let Some(http_port) = args.http_port else {
        return Ok(None);
    };
    if args.require_capability_registration == Some(false) {
        bail!(
            "--require-capability-registration false: a gateway sells registered capabilities only"
        );
    }
    let mut acceptance = AcceptancePolicy::from_env().map_err(|e| anyhow!("{e}"))?;
    if let Some(bps) = args.max_creator_commission_bps {
        acceptance.max_creator_commission_bps = bps;
    }
    acceptance.require_signature = args.require_signed_capability_registration.unwrap_or(true);
    let rail = args.payment.unwrap_or_default();
    for t in &args.trust_namespace {
        let (ns, owner) = t
            .split_once('=')
            .ok_or_else(|| anyhow!("--trust-namespace {t:?}: expected NAMESPACE=ed25519:<hex>"))?;
        acceptance = acceptance.trust(ns, owner);
    }
    let cids =
        |flag: &str, v: &[String]| -> anyhow::Result<Option<BTreeSet<d402_core::ContentId>>> {
            if v.is_empty() {
                return Ok(None);
            }
            v.iter()
                .map(|c| c.parse().map_err(|_| anyhow!("--{flag} {c:?}: not a CID")))
                .collect::<anyhow::Result<_>>()
                .map(Some)
        };
    acceptance.accepted_manifest_cids = cids("accept-manifest-cid", &args.accept_manifest_cid)?;
    acceptance.accepted_implementation_cids =
        cids("accept-implementation-cid", &args.accept_implementation_cid)?;
    Ok(Some(serve::GatewaySettings {
        http_host: args.http_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
        http_port,
        rail,
        price: args.gateway_price.clone().unwrap_or_else(|| "$0.01".into()),
        budget: args.gateway_budget.clone(),
        fee_bps: args.gateway_fee_bps.unwrap_or(0),
        sells: sells.iter().cloned().collect(),
        publish: args.publish.clone(),
        acceptance,
        evm_rpc_url: args.evm_rpc_url.clone(),
        evm_token: args.evm_token.clone(),
        evm_token_name: args
            .evm_token_name
            .clone()
            .unwrap_or_else(|| "USD Coin".into()),
        evm_token_version: args.evm_token_version.clone().unwrap_or_else(|| "2".into()),
        evm_token_decimals: args.evm_token_decimals.unwrap_or(6),
        escrow: args.escrow_address.clone(),
        escrow_validator: args.escrow_validator.clone(),
        facilitator_key: args.facilitator_key.clone(),
        release_key: args.release_key.clone(),
        solana_release_key: args.solana_release_key.clone(),
        solana_escrow_validator: args.solana_escrow_validator.clone(),
        gateway_wallet: args.gateway_wallet.clone(),
        solana_rpc_url: args.solana_rpc_url.clone(),
        solana_mint: args.solana_mint.clone(),
        solana_mint_decimals: args.solana_mint_decimals.unwrap_or(6),
        solana_fee_payer_key: args.solana_fee_payer_key.clone(),
        solana_gateway_wallet: args.solana_gateway_wallet.clone(),
        allow_private_targets: args.allow_private_targets.unwrap_or(false),
        wait_ms: args.gateway_wait_ms.unwrap_or(30_000),
        payment_timeout_secs: args.gateway_payment_timeout_secs,
        task_timeout_secs: args.gateway_task_timeout_secs,
        refund_after_secs: args.gateway_refund_after_secs,
        payout_window_ms: args.gateway_payout_window_ms,
        claim_window_ms: args.gateway_claim_window_ms,
        withdraw_delay_secs: args.gateway_withdraw_delay_secs,
        solana_channel_maintainer: args.solana_channel_maintainer.clone(),
        root_interval_ms: args.gateway_root_interval_ms,
        channel_grace_secs: args.gateway_channel_grace_secs,
        channel_deposit: args.gateway_channel_deposit.clone(),
        incident_file: args.incident_file.clone(),
        snapshot_check: snapshot_check(args)?,
        min_worker_score: args.min_worker_score,
        min_worker_bond: args.min_worker_bond.clone(),
        worker_bond_contract: args.worker_bond_contract.clone(),
    }))
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

/// `--snapshot-check`, `--snapshot-check-threshold` and `--snapshot-check-failure`.
fn snapshot_check(args: &NodeArgs) -> anyhow::Result<Option<SnapshotCheckPolicy>> {
    let rate = match args.snapshot_check.as_deref() {
        None | Some("off") => return Ok(None),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0 && *r <= 1.0)
            .ok_or_else(|| {
                anyhow::anyhow!("--snapshot-check {text:?}: `off` or a rate in (0, 1]")
            })?,
    };
    let threshold = args.snapshot_check_threshold.unwrap_or(0.8);
    if !(0.0..=1.0).contains(&threshold) {
        anyhow::bail!("--snapshot-check-threshold {threshold}: a score from 0 to 1");
    }
    let on_failure = match args.snapshot_check_failure.as_deref() {
        None | Some("refund") => SnapshotFailure::Refund,
        Some("deliver-disputed") => SnapshotFailure::DeliverDisputed,
        Some(other) => {
            anyhow::bail!("--snapshot-check-failure {other:?}: `refund` or `deliver-disputed`")
        }
    };
    Ok(Some(SnapshotCheckPolicy {
        rate,
        threshold: (threshold * f64::from(d402_registry::validation::SCORE_MAX)).round() as u32,
        on_failure,
    }))
}
