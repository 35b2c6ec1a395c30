//! `d402 solana-channel-maintainer` (seed 001, "Channel maintenance"): publishes the roots a
//! gateway signed, retries withdrawals for the named claimants and reclaims rent, every
//! `--interval-ms`, until stopped. It never closes a channel and holds no funds: its only key pays
//! transaction fees.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use d402_rails::solana::channel::maintainer::Maintainer;

#[derive(clap::Args, Debug)]
pub struct MaintainerArgs {
    /// The gateway node's `--state` folder (roots are read from
    /// `STATE/gateway/solana-channel-roots`; the maintainer keeps its own files in
    /// `STATE/solana-channel-maintainer`).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// The claimants whose withdrawals to crank: workers, creators, the gateway's fee wallet
    /// (base58, comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',', required = true)]
    claimants: Vec<String>,
    /// How often to look.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    interval_ms: u64,
    /// The cluster's JSON-RPC URL.
    #[arg(long, value_name = "URL")]
    solana_rpc_url: String,
    /// The key that pays the maintainer's transaction fees and claim rent (a `solana-keygen`
    /// JSON file, or base58). It can move no channel funds.
    #[arg(long, value_name = "FILE|BASE58")]
    solana_fee_payer_key: String,
    /// One round, then exit (for cron and tests).
    #[arg(long)]
    once: bool,
}

pub fn run(args: MaintainerArgs) -> anyhow::Result<std::process::ExitCode> {
    let claimants = args
        .claimants
        .iter()
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|_| anyhow!("--claimants: {c:?} is not a base58 public key"))
        })
        .collect::<anyhow::Result<Vec<solana_pubkey::Pubkey>>>()?;
    let fee_payer =
        crate::serve::load_solana_keypair("--solana-fee-payer-key", &args.solana_fee_payer_key)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let rpc = Arc::new(
            solana_rpc_client::nonblocking::rpc_client::RpcClient::new_with_commitment(
                args.solana_rpc_url.clone(),
                solana_commitment_config::CommitmentConfig::confirmed(),
            ),
        );
        let mut maintainer = Maintainer::open(
            &args.state,
            rpc,
            Arc::new(fee_payer),
            claimants,
            args.interval_ms,
        )
        .map_err(|e| anyhow!("{e}"))?;
        maintainer
            .reconcile()
            .await
            .map_err(|e| anyhow!("finishing the last run's transactions: {e}"))?;
        let mut stop = crate::signal::Stop::install();
        loop {
            let status = maintainer.round().await.map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "round {}: {} channels, {} roots published, {} withdrawals, {} reclaims, {} failures",
                status.rounds,
                status.channels,
                status.published.len(),
                status.withdrawn.len(),
                status.reclaimed.len(),
                status.failures.len()
            );
            for f in &status.failures {
                eprintln!(
                    "  {} {}{}: {}",
                    f.action,
                    f.channel,
                    f.claimant
                        .as_deref()
                        .map(|c| format!(" for {c}"))
                        .unwrap_or_default(),
                    f.error
                );
            }
            if args.once {
                return anyhow::Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(args.interval_ms)) => {}
                _ = stop.requested() => return anyhow::Ok(()),
            }
        }
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
