//! `d402 ops-status` and `d402 ops-monitor` (seed 000, "Monitoring"): read the snapshot a
//! gateway publishes under `--state`, ask the chains for the fee payers' balances, and report
//! the alerts [`d402_gateway::ops::evaluate`] finds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use d402_gateway::ops::{
    self, Alert, Balance, Chain, MonitorState, OpsError, OpsSnapshot, Thresholds,
};
use d402_rails::Atomic;

/// The exit status when the look found alerts (0: none; 1: the look itself failed).
pub const ALERTS_EXIT: u8 = 3;

/// What both commands look at, and when something is an alert.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// The gateway node's `--state` folder (the snapshot is `STATE/gateway/ops.json`).
    #[arg(long)]
    state: PathBuf,
    /// A Solana wallet whose SOL balance to check (default: the gateway's fee payer, on a
    /// Solana rail).
    #[arg(long)]
    solana_address: Vec<String>,
    /// Alert when a checked Solana wallet holds less SOL than this.
    #[arg(long, default_value = "0.005")]
    min_solana_balance_sol: String,
    /// The Solana RPC to ask (default: the gateway's own).
    #[arg(long)]
    solana_rpc_url: Option<String>,
    /// An EVM wallet whose ETH balance to check (default: the gateway's facilitator, on a
    /// Base rail).
    #[arg(long)]
    evm_address: Vec<String>,
    /// Alert when a checked EVM wallet holds less ETH than this.
    #[arg(long, default_value = "0.001")]
    min_evm_balance_eth: String,
    /// The EVM RPC to ask (default: the gateway's own).
    #[arg(long)]
    evm_rpc_url: Option<String>,
    /// Alert when the gateway's snapshot is older than this (it is rewritten every sweep, 5 s).
    #[arg(long, default_value_t = 60)]
    max_snapshot_age_secs: u64,
    /// Alert on a task still in flight this long after its deadline.
    #[arg(long, default_value_t = 120)]
    stuck_grace_secs: u64,
    /// Alert on a settlement or payout batch pending longer than this.
    #[arg(long, default_value_t = 300)]
    max_pending_secs: u64,
    /// Critical when a payer's channel withdrawal ends within this while vouchers of the
    /// channel are unclaimed (a warning before).
    #[arg(long, default_value_t = 600)]
    withdrawal_warning_secs: u64,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    check: CheckArgs,
    /// How often to look.
    #[arg(long, default_value_t = 30_000)]
    interval_ms: u64,
    /// Append each alert that starts, recurs (an event) or clears to this file, one JSON
    /// object a line.
    #[arg(long)]
    alert_file: Option<PathBuf>,
    /// POST each of those alerts, as JSON, to this URL (https; http only to loopback).
    #[arg(long)]
    alert_webhook_url: Option<String>,
    /// Look once, report, and exit (with status 3 if anything is firing): for cron and tests.
    #[arg(long)]
    once: bool,
}

use d402_core::clock::now_ms;
use d402_rails::solana::channel::maintainer::MaintainerStatus;

impl CheckArgs {
    fn snapshot_path(&self) -> PathBuf {
        self.state.join("gateway").join(ops::SNAPSHOT_FILE)
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_snapshot_age: Duration::from_secs(self.max_snapshot_age_secs),
            stuck_grace: Duration::from_secs(self.stuck_grace_secs),
            max_pending: Duration::from_secs(self.max_pending_secs),
            withdrawal_warning: Duration::from_secs(self.withdrawal_warning_secs),
        }
    }

    /// The minimum balances in wei and lamports, checked before anything is asked.
    fn minimums(&self) -> anyhow::Result<(u128, u128)> {
        let parse = |flag: &str, value: &str, chain: Chain| {
            Atomic::parse_price(value, chain.decimals())
                .map(|a| a.get())
                .map_err(|e| anyhow!("{flag} {value:?}: {e}"))
        };
        Ok((
            parse(
                "--min-evm-balance-eth",
                &self.min_evm_balance_eth,
                Chain::Evm,
            )?,
            parse(
                "--min-solana-balance-sol",
                &self.min_solana_balance_sol,
                Chain::Solana,
            )?,
        ))
    }

    /// The wallets to check: those named, and the snapshot's fee payer.
    fn wallets(&self, s: Option<&OpsSnapshot>) -> Vec<(Chain, String, Option<String>)> {
        let mut out = Vec::new();
        let fee_payer = s.and_then(|s| s.fee_payer.as_ref());
        let gateway_rpc = |chain| {
            fee_payer
                .filter(|f| f.chain == chain)
                .map(|f| f.rpc_url.clone())
        };
        let evm_rpc = self.evm_rpc_url.clone().or_else(|| gateway_rpc(Chain::Evm));
        let solana_rpc = self
            .solana_rpc_url
            .clone()
            .or_else(|| gateway_rpc(Chain::Solana));
        if let Some(f) = fee_payer {
            let rpc = match f.chain {
                Chain::Evm => evm_rpc.clone(),
                Chain::Solana => solana_rpc.clone(),
            };
            out.push((f.chain, f.address.clone(), rpc));
        }
        for a in &self.evm_address {
            out.push((Chain::Evm, a.clone(), evm_rpc.clone()));
        }
        for a in &self.solana_address {
            out.push((Chain::Solana, a.clone(), solana_rpc.clone()));
        }
        out.sort();
        out.dedup();
        out
    }

    /// One look: the snapshot (if readable), the balances, and the alerts they call for.
    async fn look(
        &self,
        baseline: impl FnOnce(&OpsSnapshot) -> std::collections::BTreeMap<String, u64>,
    ) -> anyhow::Result<Look> {
        let (min_evm, min_solana) = self.minimums()?;
        let now = now_ms();
        let snapshot = OpsSnapshot::read(&self.snapshot_path());
        let mut balances = Vec::new();
        for (chain, address, rpc) in self.wallets(snapshot.as_ref().ok()) {
            let minimum = match chain {
                Chain::Evm => min_evm,
                Chain::Solana => min_solana,
            };
            let got = match rpc {
                Some(rpc) => balance(chain, &address, &rpc).await,
                None => Err(format!(
                    "no RPC URL to ask (--{}-rpc-url)",
                    match chain {
                        Chain::Evm => "evm",
                        Chain::Solana => "solana",
                    }
                )),
            };
            balances.push(Balance {
                chain,
                address,
                atomic: got.as_ref().ok().map(u128::to_string),
                minimum_atomic: minimum.to_string(),
                error: got.err(),
            });
        }
        let mut alerts = match &snapshot {
            Ok(s) => ops::evaluate(s, now, &self.thresholds(), &baseline(s), &balances),
            Err(e) => {
                // The balances still matter while the gateway is down.
                let mut alerts = vec![ops::unreadable(e)];
                alerts.extend(ops::balance_alerts(&balances));
                alerts
            }
        };
        // A channel maintainer running over this state folder reports its rounds beside it.
        if let Ok(m) = MaintainerStatus::read(&self.state) {
            alerts.extend(ops::maintainer_alerts(&m, now, &self.thresholds()));
        }
        Ok(Look {
            now,
            snapshot,
            balances,
            alerts,
        })
    }
}

struct Look {
    now: u64,
    snapshot: Result<OpsSnapshot, OpsError>,
    balances: Vec<Balance>,
    alerts: Vec<Alert>,
}

/// A wallet's native balance in wei or lamports.
async fn balance(chain: Chain, address: &str, rpc: &str) -> Result<u128, String> {
    let ask = async {
        match chain {
            Chain::Evm => {
                use alloy::providers::{Provider, ProviderBuilder};
                let url: url::Url = rpc.parse().map_err(|e| format!("{rpc}: {e}"))?;
                let who: alloy::primitives::Address = address
                    .parse()
                    .map_err(|_| format!("{address:?} is not an EVM address"))?;
                let wei = ProviderBuilder::new()
                    .connect_http(url)
                    .get_balance(who)
                    .await
                    .map_err(|e| format!("{rpc}: {e}"))?;
                Ok(u128::try_from(wei).unwrap_or(u128::MAX))
            }
            Chain::Solana => {
                let who: solana_pubkey::Pubkey = address
                    .parse()
                    .map_err(|_| format!("{address:?} is not a Solana address"))?;
                // Confirmed, as the gateway itself reads the chain: finalized lags ~13 s.
                let client =
                    solana_rpc_client::nonblocking::rpc_client::RpcClient::new_with_commitment(
                        rpc.to_string(),
                        solana_commitment_config::CommitmentConfig::confirmed(),
                    );
                let lamports = client
                    .get_balance(&who)
                    .await
                    .map_err(|e| format!("{rpc}: {e}"))?;
                Ok(u128::from(lamports))
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), ask).await {
        Ok(r) => r,
        Err(_) => Err(format!("{rpc} did not answer within 15 s")),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `d402 ops-status`: one look, printed as JSON; exit status 3 when anything is alerting.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let look = runtime()?.block_on(args.check.look(|_| Default::default()))?;
    let snapshot = match &look.snapshot {
        Ok(s) => serde_json::to_value(s)?,
        Err(OpsError::NoSnapshot(_)) => serde_json::Value::Null,
        Err(e) => bail!("{e}"),
    };
    let report = serde_json::json!({
        "ok": look.alerts.is_empty(),
        "checkedMs": look.now,
        "snapshotAgeMs": look.snapshot.as_ref().ok().map(|s| look.now.saturating_sub(s.written_ms)),
        "snapshot": snapshot,
        "balances": look.balances,
        "alerts": look.alerts,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    for a in &look.alerts {
        eprintln!(
            "{}: {}: {}",
            format!("{:?}", a.severity).to_lowercase(),
            a.code,
            a.message
        );
    }
    Ok(if look.alerts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ALERTS_EXIT)
    })
}

/// `d402 ops-monitor`: looks every `--interval-ms`, and reports each alert when it starts,
/// each event when it happens, and each condition when it clears, to `--alert-file` and
/// `--alert-webhook-url`. What it has reported survives its restart (`ops-monitor.json`).
pub fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let webhook = args
        .alert_webhook_url
        .as_deref()
        .map(webhook_url)
        .transpose()?;
    args.check.minimums()?;
    let state_path = args.check.state.join("gateway").join(ops::MONITOR_FILE);
    if let Some(dir) = state_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the webhook client")?;
    let mut state = MonitorState::load(&state_path)?;
    runtime()?.block_on(async {
        loop {
            let look = args.check.look(|s| state.baseline(s)).await?;
            let gateway = look
                .snapshot
                .as_ref()
                .map(|s| s.label.clone())
                .unwrap_or_else(|_| args.check.state.display().to_string());
            let events = state.advance(
                &gateway,
                look.snapshot.as_ref().ok(),
                &look.alerts,
                look.now,
            );
            if let Some(file) = &args.alert_file {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .with_context(|| format!("--alert-file {}", file.display()))?;
                for event in &events {
                    let line = serde_json::to_string(event)?;
                    writeln!(f, "{line}").with_context(|| format!("writing {}", file.display()))?;
                }
            }
            if let Some(url) = &webhook {
                // Reports the webhook missed before go first, in order; a webhook that is down
                // does not stop the monitor, and what it misses waits for the next look.
                let mut due = std::mem::take(&mut state.undelivered);
                due.extend(events);
                let mut failed = Vec::new();
                for report in due {
                    if !failed.is_empty() {
                        failed.push(report);
                        continue;
                    }
                    let sent = http
                        .post(url.clone())
                        .json(&report)
                        .send()
                        .await
                        .and_then(|r| r.error_for_status());
                    if let Err(e) = sent {
                        eprintln!("ops-monitor: webhook {url}: {e} (kept for the next look)");
                        failed.push(report);
                    }
                }
                let dropped = state.keep_undelivered(failed);
                if dropped > 0 {
                    eprintln!("ops-monitor: webhook {url}: {dropped} old report(s) dropped");
                }
            }
            // Saved once reported: a monitor killed before this reports the same again.
            state.save(&state_path)?;
            let firing: Vec<&str> = look.alerts.iter().map(|a| a.code.as_str()).collect();
            eprintln!(
                "ops-monitor: {gateway}: {} alert(s) firing{}{}",
                firing.len(),
                if firing.is_empty() { "" } else { ": " },
                firing.join(", ")
            );
            if args.once {
                return Ok(if look.alerts.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(ALERTS_EXIT)
                });
            }
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    })
}

/// The webhook URL: https, or http to a loopback address (a local receiver).
fn webhook_url(value: &str) -> anyhow::Result<url::Url> {
    let url: url::Url = value
        .parse()
        .with_context(|| format!("--alert-webhook-url {value:?}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => bail!(
            "--alert-webhook-url {value}: alerts go over https (plain http only to a loopback receiver)"
        ),
    }
}
