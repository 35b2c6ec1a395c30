//! The gateway role of `d402 node` (seed 001, "Run a gateway"): turns the gateway flags into a
//! [`d402_gateway::gateway::Gateway`] on a rail and serves its HTTP API beside the node.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, anyhow, bail};
use d402_gateway::gateway::policy::SnapshotCheckPolicy;
use d402_gateway::gateway::{Gateway, GatewayConfig, OpsReporting, SalePolicy, TaskStore, api};
use d402_gateway::ops::{Chain, FeePayer};
use d402_gateway::published;
use d402_node::{Node, Offer};
use d402_rails::evm::batch::ledger::Ledger;
use d402_rails::evm::batch::rail::{BaseBatch, BatchPolicy, check_withdraw_delay};
use d402_rails::evm::direct::BaseDirect;
use d402_rails::evm::escrow::BaseTaskEscrow;
use d402_rails::evm::{Asset, EvmChain};
use d402_rails::{Atomic, GatewayFee, Outbox, Rail, SafetyCaps};
use d402_registry::{AcceptancePolicy, Manifest, Registration};

/// The payment rails a gateway can sell on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentRail {
    #[default]
    BaseX402Direct,
    BaseTaskEscrow,
    SolanaDirect,
    /// x402 `batch-settlement`: the buyer deposits once into a channel and pays each task with a
    /// cumulative voucher; the gateway claims many channels in one transaction.
    BaseBatchSettlement,
    /// x402 `exact` on Base (any stock client pays it), the split paid on Solana through a
    /// channel the gateway funds: commission-bearing capabilities are sold.
    BaseX402SolanaChannel,
    /// A channel on d402's own Solana program: the buyer opens it in its first payment and
    /// pays each task with a cumulative voucher; each task's split is allocated to its claimants
    /// and paid by roots and withdrawals.
    SolanaChannel,
    /// A per-task escrow on d402's Solana program: the buyer funds it in one partially signed
    /// transaction; the validator's signature releases the split, the on-chain deadline refunds.
    SolanaTaskEscrow,
}

/// Everything the gateway role needs, resolved from the flags.
pub struct GatewaySettings {
    pub http_host: String,
    pub http_port: u16,
    pub rail: PaymentRail,
    pub price: String,
    pub budget: Option<String>,
    pub fee_bps: u16,
    pub sells: Vec<String>,
    pub publish: Vec<PathBuf>,
    pub acceptance: AcceptancePolicy,
    pub evm_rpc_url: Option<String>,
    pub evm_token: Option<String>,
    pub evm_token_name: String,
    pub evm_token_version: String,
    pub evm_token_decimals: u8,
    pub escrow: Option<String>,
    pub escrow_validator: Option<String>,
    pub facilitator_key: Option<String>,
    pub release_key: Option<String>,
    pub solana_release_key: Option<String>,
    pub solana_escrow_validator: Option<String>,
    pub gateway_wallet: Option<String>,
    pub solana_rpc_url: Option<String>,
    pub solana_mint: Option<String>,
    pub solana_mint_decimals: u8,
    pub solana_fee_payer_key: Option<String>,
    pub solana_gateway_wallet: Option<String>,
    pub allow_private_targets: bool,
    pub wait_ms: u64,
    /// `None`: the [`SalePolicy`] default.
    pub payment_timeout_secs: Option<u64>,
    pub task_timeout_secs: Option<u64>,
    pub refund_after_secs: Option<u64>,
    pub payout_window_ms: Option<u64>,
    /// base-batch-settlement; `None`: the [`BatchPolicy`] default.
    pub claim_window_ms: Option<u64>,
    pub withdraw_delay_secs: Option<u64>,
    /// solana-channel: the maintainer's key, the root interval and the close grace.
    pub solana_channel_maintainer: Option<String>,
    pub root_interval_ms: Option<u64>,
    pub channel_grace_secs: Option<u64>,
    /// base-x402-solana-channel: what each opening or top-up of the gateway's channel deposits.
    pub channel_deposit: Option<String>,
    /// The incident switch file; `None`: `STATE/gateway/INCIDENT`.
    pub incident_file: Option<PathBuf>,
    /// `--snapshot-check`: `None` when off.
    pub snapshot_check: Option<SnapshotCheckPolicy>,
    pub min_worker_score: Option<f64>,
    pub min_worker_bond: Option<String>,
    pub worker_bond_contract: Option<String>,
}

/// A private key from a file holding hex, or from hex given directly.
pub fn load_key(flag: &str, value: &str) -> anyhow::Result<PrivateKeySigner> {
    let text = if Path::new(value).is_file() {
        std::fs::read_to_string(value).with_context(|| format!("{flag}: reading {value}"))?
    } else {
        value.to_string()
    };
    text.trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| anyhow!("{flag}: not a secp256k1 private key (hex)"))
}

fn address(flag: &str, value: &str) -> anyhow::Result<Address> {
    value
        .parse::<Address>()
        .map_err(|_| anyhow!("{flag} {value:?}: not an EVM address"))
}

/// Reads a published capability from `dir`: `registration.json`, `manifest.json` and
/// `component.wasm` (what `d402 capability register --wasm` produces, under these names).
pub fn read_published(node: &Node, dir: &Path) -> anyhow::Result<Offer> {
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .with_context(|| format!("--publish: reading {}", dir.join(name).display()))
    };
    let registration = Registration::from_json(&read(published::REGISTRATION)?)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let manifest = Manifest::from_json(&read(published::MANIFEST)?)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let component = read(published::COMPONENT)?;
    Offer::publish(
        node.coordinator().store(),
        registration,
        manifest,
        &component,
    )
    .map_err(|e| anyhow!("{}: {e}", dir.display()))
}

/// A rail and what the gateway prices in: the asset, its decimals, where payments go, and the
/// escrow release key if the rail has one.
struct BuiltRail {
    rail: Arc<dyn Rail>,
    pay_to: String,
    asset: String,
    decimals: u8,
    /// The wallet paying the rail's transaction fees, for `d402 ops-status`.
    fee_payer: FeePayer,
}

/// Builds the rail, the gateway and its listener; returns the gateway and the bound listener
/// (so the caller can print the real port before serving).
pub async fn start(
    node: &Node,
    state: &Path,
    s: GatewaySettings,
) -> anyhow::Result<(Arc<Gateway>, tokio::net::TcpListener)> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let outbox = Outbox::open(&state.join("outbox.redb")).map_err(|e| anyhow!("{e}"))?;
    let built = build_rail(&s, state, outbox).await?;
    let unverifiable_workers = unverifiable_workers(&s, built.decimals)?;
    // A capability is sold only if it names a wallet on the chain this rail pays the split on.
    let mut acceptance = s.acceptance;
    acceptance.required_rails =
        d402_registry::wallet::Rail::of_namespace(built.rail.payout_network().namespace())
            .into_iter()
            .collect();
    let decimals = built.decimals;
    let price = Atomic::parse_price(&s.price, decimals).context("--gateway-price")?;
    let budget = match &s.budget {
        Some(b) => Atomic::parse_price(b, decimals).context("--gateway-budget")?,
        None => price,
    };
    if budget > price {
        bail!("--gateway-budget ({budget}) is more than --gateway-price ({price})");
    }
    let BuiltRail {
        rail,
        pay_to,
        asset,
        decimals,
        fee_payer,
    } = built;

    let mut offers = Vec::new();
    for dir in &s.publish {
        offers.push(read_published(node, dir)?);
    }
    for want in &s.sells {
        if !offers.iter().any(|o| &o.capability() == want) {
            bail!("--offer {want}: no --publish directory holds it");
        }
    }
    if !s.sells.is_empty() {
        offers.retain(|o| s.sells.contains(&o.capability()));
    }
    let listener = tokio::net::TcpListener::bind((s.http_host.as_str(), s.http_port))
        .await
        .with_context(|| format!("binding {}:{}", s.http_host, s.http_port))?;
    let local = listener.local_addr()?;
    let store = TaskStore::open(&state.join("gateway.redb")).map_err(|e| anyhow!("{e}"))?;
    let defaults = SalePolicy::default();
    let secs = std::time::Duration::from_secs;
    let policy = SalePolicy {
        max_timeout_seconds: s
            .payment_timeout_secs
            .unwrap_or(defaults.max_timeout_seconds),
        task_deadline: s.task_timeout_secs.map_or(defaults.task_deadline, secs),
        refund_after: s.refund_after_secs.map_or(defaults.refund_after, secs),
        price,
        worker_budget: budget,
        gateway_fee: GatewayFee::Bps(s.fee_bps),
        pay_to,
        allow_private_targets: s.allow_private_targets,
        asset,
        decimals,
        wait: std::time::Duration::from_millis(s.wait_ms),
        payout_window: s
            .payout_window_ms
            .map_or(defaults.payout_window, std::time::Duration::from_millis),
        incident_file: Some(
            s.incident_file
                .clone()
                .unwrap_or_else(|| state.join("INCIDENT")),
        ),
        snapshot_check: s.snapshot_check,
        unverifiable_workers,
        ..defaults
    };
    if s.snapshot_check.is_some()
        && !offers
            .iter()
            .any(|o| o.capability() == d402_gateway::gateway::policy::SNAPSHOT_COMPARATOR)
    {
        bail!(
            "--snapshot-check: the comparator {} must be published on this gateway (--publish its folder)",
            d402_gateway::gateway::policy::SNAPSHOT_COMPARATOR
        );
    }
    let gw = Arc::new(Gateway::new(
        GatewayConfig {
            policy,
            acceptance,
            rail,
            public_url: format!("http://{local}"),
            label: node.label().to_string(),
            ops: Some(OpsReporting {
                snapshot: state.join(d402_gateway::ops::SNAPSHOT_FILE),
                fee_payer: Some(fee_payer),
            }),
        },
        node.coordinator().clone(),
        offers,
        store,
    ));
    gw.resume()
        .await
        .map_err(|e| anyhow!("resuming tasks: {e}"))?;
    Ok((gw, listener))
}

/// Serves the API until Ctrl-C or SIGTERM.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    mut stop: crate::signal::Stop,
) -> anyhow::Result<()> {
    api::serve(gw, listener, async move { stop.requested().await })
        .await
        .context("serving HTTP")
}

/// The one place that knows the rails by name: builds the rail `--payment` names from the
/// flags. Everything after it asks the rail.
async fn build_rail(
    s: &GatewaySettings,
    state: &Path,
    outbox: Outbox,
) -> anyhow::Result<BuiltRail> {
    match s.rail {
        PaymentRail::BaseX402Direct => base_direct(evm_chain(s).await?, outbox),
        PaymentRail::BaseBatchSettlement => {
            base_batch_settlement(s, state, evm_chain(s).await?, outbox).await
        }
        PaymentRail::BaseTaskEscrow => base_task_escrow(s, evm_chain(s).await?, outbox),
        PaymentRail::SolanaDirect => solana_direct(s, outbox).await,
        PaymentRail::SolanaChannel => solana_channel(s, state, outbox).await,
        PaymentRail::BaseX402SolanaChannel => {
            base_x402_solana_channel(s, state, evm_chain(s).await?, outbox).await
        }
        PaymentRail::SolanaTaskEscrow => solana_task_escrow(s, outbox).await,
    }
}

/// The EVM chain behind `--evm-rpc-url`, the facilitator key paying its gas, the wallet paid.
struct EvmSetup {
    chain: EvmChain,
    facilitator: PrivateKeySigner,
    wallet: Address,
    caps: SafetyCaps,
}

impl EvmSetup {
    fn built(self, rail: Arc<dyn Rail>) -> BuiltRail {
        BuiltRail {
            rail,
            pay_to: self.wallet.to_checksum(None),
            asset: self.chain.asset.address.to_checksum(None),
            decimals: self.chain.asset.decimals,
            fee_payer: FeePayer {
                chain: Chain::Evm,
                address: self.facilitator.address().to_checksum(None),
                rpc_url: self.chain.rpc_url.to_string(),
            },
        }
    }
}

async fn evm_chain(s: &GatewaySettings) -> anyhow::Result<EvmSetup> {
    let rpc = s
        .evm_rpc_url
        .as_deref()
        .ok_or_else(|| anyhow!("--payment {:?} needs --evm-rpc-url", s.rail))?;
    let rpc: url::Url = rpc.parse().context("--evm-rpc-url")?;
    let token = address(
        "--evm-token",
        s.evm_token
            .as_deref()
            .ok_or_else(|| anyhow!("the gateway needs --evm-token"))?,
    )?;
    let chain_id = ProviderBuilder::new()
        .connect_http(rpc.clone())
        .get_chain_id()
        .await
        .with_context(|| format!("asking {rpc} for its chain id"))?;
    let chain = EvmChain {
        rpc_url: rpc,
        chain_id,
        asset: Asset {
            address: token,
            name: s.evm_token_name.clone(),
            version: s.evm_token_version.clone(),
            decimals: s.evm_token_decimals,
        },
    };
    let facilitator = load_key(
        "--facilitator-key",
        s.facilitator_key.as_deref().ok_or_else(|| {
            anyhow!("the gateway needs --facilitator-key (it pays settlement gas)")
        })?,
    )?;
    let wallet = match &s.gateway_wallet {
        Some(w) => address("--gateway-wallet", w)?,
        None => facilitator.address(),
    };
    let caps = SafetyCaps::from_env(s.evm_token_decimals).map_err(|e| anyhow!("{e}"))?;
    Ok(EvmSetup {
        chain,
        facilitator,
        wallet,
        caps,
    })
}

/// `base-x402-direct`: the buyer pays `payTo`; workers are paid, and failed tasks refunded, out
/// of that wallet with the facilitator key, so they must be one wallet.
fn base_direct(evm: EvmSetup, outbox: Outbox) -> anyhow::Result<BuiltRail> {
    if evm.wallet != evm.facilitator.address() {
        bail!(
            "--gateway-wallet {} is not the facilitator key's address {}: on base-x402-direct the gateway pays workers and refunds out of payTo with that key",
            evm.wallet,
            evm.facilitator.address()
        );
    }
    let rail = BaseDirect::new(
        evm.chain.clone(),
        &evm.facilitator,
        outbox,
        evm.caps.clone(),
    );
    Ok(evm.built(Arc::new(rail)))
}

/// `base-batch-settlement`: the settlement contracts at their canonical addresses; the
/// facilitator key is the receiver authorizer and must be the wallet paid (it pays workers).
async fn base_batch_settlement(
    s: &GatewaySettings,
    state: &Path,
    evm: EvmSetup,
    outbox: Outbox,
) -> anyhow::Result<BuiltRail> {
    if evm.wallet != evm.facilitator.address() {
        bail!(
            "--gateway-wallet {} is not the facilitator key's address {}: on base-batch-settlement that key claims the channels and pays workers out of the wallet",
            evm.wallet,
            evm.facilitator.address()
        );
    }
    let code = ProviderBuilder::new()
        .connect_http(evm.chain.rpc_url.clone())
        .get_code_at(d402_rails::evm::batch::SETTLEMENT_ADDRESS)
        .await
        .context("reading the settlement contract's code")?;
    if code.is_empty() {
        bail!(
            "no batch-settlement contract at {} on {}: deploy it there (on anvil, `d402 devnet` places it)",
            d402_rails::evm::batch::SETTLEMENT_ADDRESS,
            evm.chain.rpc_url
        );
    }
    let mut policy = BatchPolicy::default();
    if let Some(ms) = s.claim_window_ms {
        policy.claim_window = std::time::Duration::from_millis(ms);
    }
    if let Some(secs) = s.withdraw_delay_secs {
        check_withdraw_delay(secs).map_err(|e| anyhow!("--gateway-withdraw-delay-secs: {e}"))?;
        policy.withdraw_delay = secs;
    }
    let ledger = Ledger::open(&state.join("batch-channels.redb")).map_err(|e| anyhow!("{e}"))?;
    let rail = BaseBatch::new(
        evm.chain.clone(),
        &evm.facilitator,
        outbox,
        ledger,
        evm.caps.clone(),
        policy,
    );
    Ok(evm.built(Arc::new(rail)))
}

/// `base-task-escrow` at `--escrow-address`: releases signed here with `--release-key`, or by
/// the validator holding the escrow's validator key (`--escrow-validator`).
fn base_task_escrow(
    s: &GatewaySettings,
    evm: EvmSetup,
    outbox: Outbox,
) -> anyhow::Result<BuiltRail> {
    let escrow = address(
        "--escrow-address",
        s.escrow
            .as_deref()
            .ok_or_else(|| anyhow!("base-task-escrow needs --escrow-address"))?,
    )?;
    let release = s
        .release_key
        .as_deref()
        .map(|k| load_key("--release-key", k))
        .transpose()?;
    let validator = match (&s.escrow_validator, &release) {
        (Some(v), _) => address("--escrow-validator", v)?,
        (None, Some(k)) => k.address(),
        (None, None) => bail!("base-task-escrow needs --escrow-validator or --release-key"),
    };
    let rail = BaseTaskEscrow::new(
        evm.chain.clone(),
        escrow,
        validator,
        &evm.facilitator,
        evm.wallet,
        outbox,
        evm.caps.clone(),
    );
    // With the key here, releases are signed at delivery; without, by the validator.
    let rail = match release {
        Some(key) => rail.with_release_key(key),
        None => rail,
    };
    Ok(evm.built(Arc::new(rail)))
}

/// `solana-direct` on the cluster behind `--solana-rpc-url`: the gateway's fee payer co-signs
/// the buyer's transfer to its own token account (`--solana-gateway-wallet`, which must be the
/// fee payer's wallet), and pays workers and refunds out of it.
/// The Solana cluster behind `--solana-rpc-url` as a Solana rail needs it: the mint, the fee
/// payer, the CAIP-2 network and the caps.
struct SolanaSetup {
    rpc: Arc<solana_rpc_client::nonblocking::rpc_client::RpcClient>,
    url: String,
    mint: solana_pubkey::Pubkey,
    decimals: u8,
    fee_payer: solana_keypair::Keypair,
    network: d402_rails::rail::ChainId,
    caps: SafetyCaps,
}

impl SolanaSetup {
    async fn new(s: &GatewaySettings, rail: &str) -> anyhow::Result<Self> {
        let url = s
            .solana_rpc_url
            .clone()
            .ok_or_else(|| anyhow!("--payment {rail} needs --solana-rpc-url"))?;
        let mint: solana_pubkey::Pubkey = s
            .solana_mint
            .as_deref()
            .ok_or_else(|| anyhow!("--payment {rail} needs --solana-mint"))?
            .parse()
            .map_err(|_| anyhow!("--solana-mint: not a base58 public key"))?;
        let fee_payer = load_solana_keypair(
            "--solana-fee-payer-key",
            s.solana_fee_payer_key.as_deref().ok_or_else(|| {
                anyhow!("--payment {rail} needs --solana-fee-payer-key (it pays the fees)")
            })?,
        )?;
        let rpc = Arc::new(
            solana_rpc_client::nonblocking::rpc_client::RpcClient::new_with_commitment(
                url.clone(),
                solana_commitment_config::CommitmentConfig::confirmed(),
            ),
        );
        let genesis = rpc
            .get_genesis_hash()
            .await
            .with_context(|| format!("reading the genesis hash from {url}"))?;
        let network = d402_rails::solana::caip2(&genesis)
            .parse()
            .map_err(|e| anyhow!("network id: {e:?}"))?;
        let decimals = s.solana_mint_decimals;
        let caps = SafetyCaps::from_env(decimals).map_err(|e| anyhow!("{e}"))?;
        Ok(SolanaSetup {
            rpc,
            url,
            mint,
            decimals,
            fee_payer,
            network,
            caps,
        })
    }

    /// Checks that d402's program is deployed on the cluster (the channel rails run on it) and
    /// returns the channels' maintainer (`--solana-channel-maintainer`, else the fee payer).
    async fn channel_program(&self, s: &GatewaySettings) -> anyhow::Result<solana_pubkey::Pubkey> {
        use solana_signer::Signer;
        let id = d402_rails::solana::channel::program::ID;
        let program = self
            .rpc
            .get_account(&id)
            .await
            .with_context(|| format!("d402-program {id} is not deployed on {}", self.url))?;
        if !program.executable {
            bail!("{id} on {} is not an executable program", self.url);
        }
        match &s.solana_channel_maintainer {
            Some(m) => m
                .parse()
                .map_err(|_| anyhow!("--solana-channel-maintainer {m:?}: not a base58 public key")),
            None => Ok(self.fee_payer.pubkey()),
        }
    }

    /// The cluster's rent for a channel account.
    async fn channel_rent(&self) -> anyhow::Result<u64> {
        self.rpc
            .get_minimum_balance_for_rent_exemption(
                d402_rails::solana::channel::program::channel::CHANNEL_LEN,
            )
            .await
            .context("reading the rent of a channel account")
    }

    fn fee_payer_info(&self) -> FeePayer {
        use solana_signer::Signer;
        FeePayer {
            chain: Chain::Solana,
            address: self.fee_payer.pubkey().to_string(),
            rpc_url: self.url.clone(),
        }
    }
}

async fn solana_direct(s: &GatewaySettings, outbox: Outbox) -> anyhow::Result<BuiltRail> {
    use d402_rails::solana::direct::{DirectConfig, SolanaDirect};
    use d402_rails::solana::submit::Submitter;
    use solana_signer::Signer;

    let sol = SolanaSetup::new(s, "solana-direct").await?;
    let pay_to = match &s.solana_gateway_wallet {
        Some(w) => w
            .parse::<solana_pubkey::Pubkey>()
            .map_err(|_| anyhow!("--solana-gateway-wallet {w:?}: not a base58 public key"))?,
        None => sol.fee_payer.pubkey(),
    };
    // As on base-x402-direct: workers are paid, and failed tasks refunded, out of `payTo` with
    // the fee payer's key, so they must be one wallet.
    if pay_to != sol.fee_payer.pubkey() {
        bail!(
            "--solana-gateway-wallet {pay_to} is not the fee payer's public key {}: on solana-direct the gateway pays workers and refunds out of payTo with that key",
            sol.fee_payer.pubkey()
        );
    }
    let fee_payer_info = sol.fee_payer_info();
    let submitter = Submitter::new(sol.rpc, outbox, d402_rails::solana::direct::NAME);
    let rail = SolanaDirect::new(
        DirectConfig::new(sol.network, sol.mint, sol.decimals),
        Arc::new(sol.fee_payer),
        submitter,
        sol.caps,
    );
    Ok(BuiltRail {
        rail: Arc::new(rail),
        pay_to: pay_to.to_string(),
        asset: sol.mint.to_string(),
        decimals: sol.decimals,
        fee_payer: fee_payer_info,
    })
}

/// `solana-task-escrow` on d402's program: the fee payer co-signs fundings (paying the escrow's
/// rent, returned at release or refund) and sends releases and refunds; the gateway's fee goes to
/// `--solana-gateway-wallet` [default: the fee payer]. Releases are signed by the validator node
/// (`--solana-escrow-validator` names its key) or, in development, here (`--solana-release-key`).
async fn solana_task_escrow(s: &GatewaySettings, outbox: Outbox) -> anyhow::Result<BuiltRail> {
    use d402_rails::solana::escrow::{EscrowConfig, NAME, SolanaTaskEscrow};
    use d402_rails::solana::submit::Submitter;
    use solana_signer::Signer;

    let sol = SolanaSetup::new(s, NAME).await?;
    sol.channel_program(s).await?;
    let wallet = match &s.solana_gateway_wallet {
        Some(w) => w
            .parse::<solana_pubkey::Pubkey>()
            .map_err(|_| anyhow!("--solana-gateway-wallet {w:?}: not a base58 public key"))?,
        None => sol.fee_payer.pubkey(),
    };
    let release = s
        .solana_release_key
        .as_deref()
        .map(|k| load_solana_keypair("--solana-release-key", k))
        .transpose()?;
    let validator = match (&s.solana_escrow_validator, &release) {
        (Some(v), _) => v
            .parse::<solana_pubkey::Pubkey>()
            .map_err(|_| anyhow!("--solana-escrow-validator {v:?}: not a base58 public key"))?,
        (None, Some(k)) => k.pubkey(),
        (None, None) => {
            bail!("solana-task-escrow needs --solana-escrow-validator or --solana-release-key")
        }
    };
    let fee_payer_info = sol.fee_payer_info();
    let rail = SolanaTaskEscrow::new(
        EscrowConfig::new(sol.network, sol.mint, sol.decimals, validator, wallet),
        Arc::new(sol.fee_payer),
        Submitter::new(sol.rpc, outbox, NAME),
        sol.caps,
    );
    let rail = match release {
        Some(key) => rail.with_release_key(Arc::new(key)),
        None => rail,
    };
    Ok(BuiltRail {
        rail: Arc::new(rail),
        pay_to: wallet.to_string(),
        asset: sol.mint.to_string(),
        decimals: sol.decimals,
        fee_payer: fee_payer_info,
    })
}

/// `solana-channel` on d402's program: the fee payer is the channels' authority (it signs roots)
/// and the gateway fee's claimant; the program must be deployed on the cluster.
async fn solana_channel(
    s: &GatewaySettings,
    state: &Path,
    outbox: Outbox,
) -> anyhow::Result<BuiltRail> {
    use d402_rails::solana::channel::ledger::Ledger as ChannelLedger;
    use d402_rails::solana::channel::rail::{ChannelPolicy, SolanaChannel};
    use d402_rails::solana::submit::Submitter;
    use solana_signer::Signer;

    let sol = SolanaSetup::new(s, "solana-channel").await?;
    if s.solana_gateway_wallet
        .as_deref()
        .is_some_and(|w| w != sol.fee_payer.pubkey().to_string())
    {
        bail!(
            "--solana-gateway-wallet: on solana-channel the gateway's fee is claimed by the fee payer's key {}",
            sol.fee_payer.pubkey()
        );
    }
    let maintainer = sol.channel_program(s).await?;
    let mut policy = ChannelPolicy::new(maintainer);
    if let Some(ms) = s.root_interval_ms {
        policy.root_interval = std::time::Duration::from_millis(ms);
    }
    if let Some(secs) = s.channel_grace_secs {
        policy.grace_secs = secs;
    }
    let rent = sol.channel_rent().await?;
    let ledger =
        ChannelLedger::open(&state.join("solana-channels.redb")).map_err(|e| anyhow!("{e}"))?;
    let fee_payer_info = sol.fee_payer_info();
    let pay_to = sol.fee_payer.pubkey().to_string();
    let submitter = Submitter::new(sol.rpc, outbox, d402_rails::solana::channel::rail::NAME);
    let rail = SolanaChannel::new(
        sol.network,
        sol.mint,
        Arc::new(sol.fee_payer),
        submitter,
        ledger,
        sol.caps,
        policy,
        rent,
        state.join(d402_rails::solana::channel::rail::ROOTS_DIR),
    );
    Ok(BuiltRail {
        rail: Arc::new(rail),
        pay_to,
        asset: sol.mint.to_string(),
        decimals: sol.decimals,
        fee_payer: fee_payer_info,
    })
}

/// `base-x402-solana-channel`: the payment as on `base-x402-direct` (the facilitator key is the
/// Base wallet, refunds come out of it), the split through a channel of d402's program that the
/// Solana key (`--solana-fee-payer-key`, holding the mint's tokens) funds, authorises and pays the
/// fees of.
async fn base_x402_solana_channel(
    s: &GatewaySettings,
    state: &Path,
    evm: EvmSetup,
    outbox: Outbox,
) -> anyhow::Result<BuiltRail> {
    use d402_rails::hybrid::{BaseX402SolanaChannel, HybridPolicy};
    use d402_rails::solana::channel::ledger::Ledger as ChannelLedger;
    use d402_rails::solana::submit::Submitter;

    if evm.wallet != evm.facilitator.address() {
        bail!(
            "--gateway-wallet {} is not the facilitator key's address {}: refunds are paid out of the wallet with that key",
            evm.wallet,
            evm.facilitator.address()
        );
    }
    let sol = SolanaSetup::new(s, "base-x402-solana-channel").await?;
    let maintainer = sol.channel_program(s).await?;
    let deposit = Atomic::parse_price(s.channel_deposit.as_deref().unwrap_or("$10"), sol.decimals)
        .context("--gateway-channel-deposit")?;
    let deposit = u64::try_from(deposit.get())
        .map_err(|_| anyhow!("--gateway-channel-deposit is too large"))?;
    let mut policy = HybridPolicy::new(maintainer, deposit);
    if let Some(ms) = s.root_interval_ms {
        policy.root_interval = std::time::Duration::from_millis(ms);
    }
    if let Some(secs) = s.channel_grace_secs {
        policy.grace_secs = secs;
    }
    let rent = sol.channel_rent().await?;
    let ledger =
        ChannelLedger::open(&state.join("solana-channels.redb")).map_err(|e| anyhow!("{e}"))?;
    let base = BaseDirect::new(
        evm.chain.clone(),
        &evm.facilitator,
        outbox.clone(),
        evm.caps.clone(),
    );
    let submitter = Submitter::new(sol.rpc, outbox, d402_rails::hybrid::NAME);
    let rail = BaseX402SolanaChannel::new(
        base,
        sol.network,
        sol.mint,
        Arc::new(sol.fee_payer),
        submitter,
        ledger,
        sol.caps,
        policy,
        rent,
        state.join(d402_rails::solana::channel::rail::ROOTS_DIR),
    );
    // Open the channel now, so the first challenge is not refused for want of one.
    rail.maintain()
        .await
        .context("opening the gateway's Solana channel")?;
    Ok(evm.built(Arc::new(rail)))
}

/// A Solana keypair from a file holding `solana-keygen`'s JSON array of 64 bytes, or base58 of
/// those bytes, or that text given directly.
pub fn load_solana_keypair(flag: &str, value: &str) -> anyhow::Result<solana_keypair::Keypair> {
    let text = if Path::new(value).is_file() {
        std::fs::read_to_string(value).with_context(|| format!("{flag}: reading {value}"))?
    } else {
        value.to_string()
    };
    let text = text.trim();
    let bytes: Vec<u8> = if text.starts_with('[') {
        serde_json::from_str(text).map_err(|_| anyhow!("{flag}: not a JSON array of bytes"))?
    } else {
        bs58::decode(text)
            .into_vec()
            .map_err(|_| anyhow!("{flag}: not a Solana keypair (base58 or JSON bytes)"))?
    };
    solana_keypair::Keypair::try_from(bytes.as_slice())
        .map_err(|_| anyhow!("{flag}: not a 64-byte Solana keypair"))
}

/// `--min-worker-score`, `--min-worker-bond` and `--worker-bond-contract`.
fn unverifiable_workers(
    s: &GatewaySettings,
    decimals: u8,
) -> anyhow::Result<d402_node::WorkerPolicy> {
    if let Some(score) = s.min_worker_score
        && !(0.0..=1.0).contains(&score)
    {
        bail!("--min-worker-score {score}: a score from 0 to 1");
    }
    let gate: Option<Arc<dyn d402_node::WorkerGate>> =
        match (&s.min_worker_bond, &s.worker_bond_contract) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                bail!("--min-worker-bond and --worker-bond-contract go together")
            }
            (Some(minimum), Some(contract)) => {
                let minimum =
                    Atomic::parse_price(minimum, decimals).context("--min-worker-bond")?;
                let rpc = s
                    .evm_rpc_url
                    .as_deref()
                    .ok_or_else(|| anyhow!("--min-worker-bond reads bonds on --evm-rpc-url"))?;
                let provider = ProviderBuilder::new()
                    .connect_http(rpc.parse().context("--evm-rpc-url")?)
                    .erased();
                Some(Arc::new(d402_gateway::worker_gate::BondGate {
                    bonds: d402_rails::evm::bond::WorkerBonds::new(
                        provider,
                        address("--worker-bond-contract", contract)?,
                    ),
                    minimum: minimum.get(),
                }))
            }
        };
    Ok(d402_node::WorkerPolicy {
        min_score: s.min_worker_score,
        gate,
    })
}
