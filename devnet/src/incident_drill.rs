//! The channel incident drill the devnet runs last (seed 000, "Incident shutdown"): a Solana
//! channel gateway and its maintainer are stopped, and the operator's five steps run one by one
//! (`d402 solana-channel-incident --step final-roots|withdraw|request-close|close|reclaim`, the
//! README's incident section) until every claimant is paid, every claim account reclaimed, every
//! channel closed and reclaimed, and each payer holds its unallocated remainder. What it finds on
//! chain is checked here, not taken from the steps' reports.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use d402_rails::solana::channel::ledger::Ledger;
use d402_rails::solana::channel::program::channel::claim_address;
use serde_json::Value;
use solana_pubkey::Pubkey;

use crate::chains;
use crate::supervisor::{GRACE, Supervisor};

/// Runs the drill on the channel gateway `label`, whose Solana settlement key is in `key_file`.
pub async fn run(
    supervisor: &Supervisor,
    state: &Path,
    sol: &chains::Solana,
    label: &str,
    key_file: &Path,
) -> anyhow::Result<()> {
    let maintainer = format!("{label}-maintainer");
    supervisor.stop_some(&[label, &maintainer], GRACE).await;
    let node_state = state.join("nodes").join(label);
    let (channels, allocations) = {
        let ledger = Ledger::open(&node_state.join("gateway").join("solana-channels.redb"))
            .with_context(|| format!("{label}: reading its channel ledger"))?;
        let channels = ledger.channels()?;
        let mut allocations = Vec::new();
        for c in &channels {
            allocations.push(ledger.allocations(&c.channel)?);
        }
        (channels, allocations)
    };
    if channels.is_empty() {
        bail!("{label} opened no channel: nothing to wind down");
    }
    let mut payer_before = Vec::new();
    for c in &channels {
        let payer = Pubkey::from_str(&c.payer)?;
        payer_before.push(sol.chain.token_balance_of(&payer, &sol.mint).await?);
    }

    let step = |name: &'static str| {
        let node_state = node_state.clone();
        let rpc = sol.chain.rpc_url().to_string();
        let key = key_file.to_path_buf();
        async move {
            let exe = std::env::current_exe().context("locating the d402 binary")?;
            let out = tokio::process::Command::new(exe)
                .arg("solana-channel-incident")
                .args(["--state", &node_state.to_string_lossy()])
                .args(["--step", name])
                .args(["--solana-rpc-url", &rpc])
                .args(["--solana-fee-payer-key", &key.to_string_lossy()])
                .output()
                .await
                .with_context(|| format!("running --step {name}"))?;
            if !out.status.success() {
                bail!(
                    "--step {name} failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let reports: Vec<Value> = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("--step {name}: its report"))?;
            anyhow::Ok(reports)
        }
    };
    let sent = |reports: &[Value]| -> usize {
        reports
            .iter()
            .map(|r| r["sent"].as_array().map_or(0, Vec::len))
            .sum()
    };
    for name in ["final-roots", "withdraw", "request-close"] {
        let reports = step(name).await?;
        println!(
            "  {label}: --step {name}: {} transaction(s)",
            sent(&reports)
        );
    }
    // The close waits for each channel's grace period; the reclaim, for the close.
    for name in ["close", "reclaim"] {
        let until = Instant::now() + Duration::from_secs(120);
        let mut total = 0;
        loop {
            let reports = step(name).await?;
            total += sent(&reports);
            let done = reports.iter().all(|r| match name {
                "close" => r["waiting"].is_null(),
                _ => r["waiting"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("no channel account")),
            });
            if done {
                break;
            }
            if Instant::now() > until {
                bail!("--step {name} still waiting after 120 s: {reports:?}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!("  {label}: --step {name}: {total} transaction(s)");
    }

    // What the chain says now. A claim account is reclaimed only once its claimant withdrew all
    // its final root allocated it, so no claim account left means every claimant was paid.
    let rpc = sol.chain.rpc();
    for ((c, alloc), before) in channels.iter().zip(&allocations).zip(payer_before) {
        let channel = Pubkey::from_str(&c.channel)?;
        let exists = |key: Pubkey| {
            let rpc = &rpc;
            async move {
                rpc.get_account_with_commitment(&key, rpc.commitment())
                    .await
                    .map(|r| r.value.is_some())
                    .map_err(|e| anyhow!("{e}"))
            }
        };
        if exists(channel).await? {
            bail!("{label}: channel {channel} still exists after the reclaim");
        }
        let vault = Pubkey::from_str(&c.vault)?;
        if exists(vault).await? {
            bail!("{label}: the vault of {channel} still exists");
        }
        let mut claims = 0;
        for (claimant, _) in alloc {
            let claim = claim_address(&channel, &Pubkey::from_str(claimant)?);
            if exists(claim).await? {
                bail!("{label}: the claim of {claimant} on {channel} was not reclaimed");
            }
            claims += 1;
        }
        let allocated: u64 = alloc.iter().map(|(_, a)| a).sum();
        let payer = Pubkey::from_str(&c.payer)?;
        let back = sol.chain.token_balance_of(&payer, &sol.mint).await? - before;
        let remainder = c.deposit.saturating_sub(allocated);
        if back != remainder {
            bail!(
                "{label}: the payer of {channel} got {back} back, its unallocated remainder is {remainder}"
            );
        }
        println!(
            "  {label}: channel {channel} closed and reclaimed: {claims} claimant(s) paid {allocated} \
             in all, {claims} claim account(s) reclaimed, the payer got its unallocated {remainder} back"
        );
    }
    Ok(())
}
