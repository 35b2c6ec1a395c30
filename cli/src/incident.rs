//! `d402 solana-channel-incident` (seed 000, "Incident shutdown"): the steps that wind a gateway's
//! Solana channels down, run one by one, in order, with the gateway stopped (see
//! `d402_rails::solana::channel::incident`). Each prints a JSON report per channel and can be run
//! again: it does only what is still to do.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use d402_rails::Outbox;
use d402_rails::solana::channel::incident::{self, Step};
use d402_rails::solana::channel::ledger::Ledger;
use d402_rails::solana::channel::roots::ChannelChain;
use d402_rails::solana::submit::Submitter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StepArg {
    /// 1. Sign and publish a root over everything allocated.
    FinalRoots,
    /// 2. Pay every claimant under each channel's root.
    Withdraw,
    /// 3. Start each channel's grace period (the authority's request).
    RequestClose,
    /// 4. After the grace period: the unallocated remainder back to each payer.
    Close,
    /// 5. The claims', vaults' and channels' rent back.
    Reclaim,
}

#[derive(clap::Args, Debug)]
pub struct IncidentArgs {
    /// The gateway node's `--state` folder (the gateway must be stopped: its ledger is read).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    #[arg(long, value_enum)]
    step: StepArg,
    /// The cluster's JSON-RPC URL.
    #[arg(long, value_name = "URL")]
    solana_rpc_url: String,
    /// The gateway's settlement key (its `--solana-fee-payer-key`): the channels' authority,
    /// which signs the final roots and the close requests, and pays the fees.
    #[arg(long, value_name = "FILE|BASE58")]
    solana_fee_payer_key: String,
}

pub fn run(args: IncidentArgs) -> anyhow::Result<std::process::ExitCode> {
    let step = match args.step {
        StepArg::FinalRoots => Step::FinalRoots,
        StepArg::Withdraw => Step::Withdraw,
        StepArg::RequestClose => Step::RequestClose,
        StepArg::Close => Step::Close,
        StepArg::Reclaim => Step::Reclaim,
    };
    let authority = Arc::new(crate::serve::load_solana_keypair(
        "--solana-fee-payer-key",
        &args.solana_fee_payer_key,
    )?);
    let gateway = args.state.join("gateway");
    let locked = |what: &str, e: String| {
        if e.contains("already open") || e.contains("lock") {
            anyhow!("{what} is locked: the gateway is still running; stop it first ({e})")
        } else {
            anyhow!("{what}: {e}")
        }
    };
    let ledger_path = gateway.join("solana-channels.redb");
    if !ledger_path.is_file() {
        anyhow::bail!(
            "{} does not exist: no Solana channel was ever opened at this gateway",
            ledger_path.display()
        );
    }
    let ledger =
        Ledger::open(&ledger_path).map_err(|e| locked("the channel ledger", e.to_string()))?;
    let outbox = Outbox::open(&gateway.join("outbox.redb"))
        .map_err(|e| locked("the gateway's outbox", e.to_string()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let reports = runtime.block_on(async {
        let rpc = Arc::new(
            solana_rpc_client::nonblocking::rpc_client::RpcClient::new_with_commitment(
                args.solana_rpc_url.clone(),
                solana_commitment_config::CommitmentConfig::confirmed(),
            ),
        );
        let submitter = Submitter::new(
            Arc::clone(&rpc),
            outbox,
            d402_rails::solana::channel::rail::NAME,
        );
        // Whatever a previous step left in flight is brought to its verdict first.
        submitter
            .reconcile()
            .await
            .map_err(|e| anyhow!("finishing earlier transactions: {e}"))?;
        let chain = ChannelChain::new(rpc, submitter, Arc::clone(&authority));
        incident::run(step, &ledger, &chain, &authority)
            .await
            .map_err(|e| anyhow!("{e}"))
    })?;
    println!("{}", serde_json::to_string_pretty(&reports)?);
    let failed = reports.iter().any(|r| !r.errors.is_empty());
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
