//! The incident steps for a gateway's Solana channels (seed 000, "Incident shutdown"), each run on
//! its own by the operator, in order, with the gateway stopped (its ledger is read here):
//!
//! 1. [`Step::FinalRoots`]: the authority signs and publishes a root over everything allocated;
//! 2. [`Step::Withdraw`]: every claimant under each channel's root is paid (anyone may crank it);
//! 3. [`Step::RequestClose`]: the authority starts each channel's grace period;
//! 4. [`Step::Close`]: once the grace is over, each channel returns what no root allocated to its
//!    payer;
//! 5. [`Step::Reclaim`]: the claims' rent back to whoever paid it, then the vault's and the
//!    channel's to the payer.
//!
//! Every step is idempotent: run again, it does only what is still to do, and reports what it did
//! and what is not possible yet (a grace period still running, a claimant not yet withdrawn).

use std::str::FromStr;
use std::sync::Arc;

use d402_program::channel::ChannelStage;
use d402_program::instruction as ix;
use d402_program::merkle::Tree;
use serde::Serialize;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

use super::ledger::Ledger;
use super::roots::{ChannelChain, ChannelError, sign_root};
use crate::solana::submit::EntryKind;

/// One incident step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    FinalRoots,
    Withdraw,
    RequestClose,
    Close,
    Reclaim,
}

/// What a step did on one channel.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelReport {
    pub channel: String,
    /// Transactions sent.
    pub sent: Vec<String>,
    /// Why nothing (more) could be done now, if so.
    pub waiting: Option<String>,
    pub errors: Vec<String>,
}

/// Runs `step` over every channel in `ledger`. `authority` signs roots and close requests (the
/// gateway's settlement key, also the fee payer of `chain`).
pub async fn run(
    step: Step,
    ledger: &Ledger,
    chain: &ChannelChain,
    authority: &Arc<Keypair>,
) -> Result<Vec<ChannelReport>, ChannelError> {
    let mut reports = Vec::new();
    for record in ledger.channels()? {
        let channel = Pubkey::from_str(&record.channel)
            .map_err(|_| ChannelError::Key(record.channel.clone()))?;
        let mut report = ChannelReport {
            channel: record.channel.clone(),
            ..ChannelReport::default()
        };
        let state = match chain.state(&channel).await {
            Ok(s) => s,
            Err(e) => {
                // Reclaimed already (the account is gone) or never opened.
                report.waiting = Some(format!("no channel account on chain: {e}"));
                reports.push(report);
                continue;
            }
        };
        let note = |r: Result<Option<solana_signature::Signature>, ChannelError>,
                    report: &mut ChannelReport| match r {
            Ok(Some(sig)) => report.sent.push(sig.to_string()),
            Ok(None) => {}
            Err(e) => report.errors.push(e.to_string()),
        };
        match step {
            Step::FinalRoots => {
                if state.stage == ChannelStage::Closed {
                    report.waiting = Some("closed: no root can be published".into());
                } else {
                    match sign_root(ledger, authority, &channel, state.seq + 1, state.allocated) {
                        Ok(Some(signed)) => note(
                            chain
                                .publish(&signed, &state.payer, &state.authority, &state.vault)
                                .await
                                .map(Some),
                            &mut report,
                        ),
                        Ok(None) => report.waiting = Some("the chain's root is final".into()),
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Step::Withdraw | Step::Reclaim => {
                let claimants = match claimants_under_root(ledger, &channel, &state.root) {
                    Ok(c) => c,
                    Err(e) => {
                        report.errors.push(e.to_string());
                        reports.push(report);
                        continue;
                    }
                };
                for claimant in &claimants {
                    let r = if step == Step::Withdraw {
                        chain.withdraw(ledger, &channel, claimant).await
                    } else {
                        chain.reclaim_claim(ledger, &channel, claimant).await
                    };
                    note(r, &mut report);
                }
                if step == Step::Reclaim {
                    if state.stage != ChannelStage::Closed {
                        report.waiting = Some("not closed yet: run close first".into());
                    } else if state.withdrawn < state.allocated {
                        report.waiting = Some(format!(
                            "{} of {} allocated not withdrawn yet: run withdraw first",
                            state.allocated - state.withdrawn,
                            state.allocated
                        ));
                    } else {
                        note(chain.reclaim_channel(&channel).await, &mut report);
                    }
                }
            }
            Step::RequestClose => match state.stage {
                ChannelStage::Open => note(
                    chain
                        .send_signed(
                            &[ix::request_close(&channel, &authority.pubkey())],
                            EntryKind::ChannelClose,
                            &format!("request-close:{channel}"),
                        )
                        .await
                        .map(Some),
                    &mut report,
                ),
                _ => report.waiting = Some("already closing or closed".into()),
            },
            Step::Close => {
                // By the chain's clock, which the program checks, not this machine's.
                let now = match chain.chain_time().await {
                    Ok(t) => t,
                    Err(e) => {
                        report.errors.push(e.to_string());
                        reports.push(report);
                        continue;
                    }
                };
                let due = state.close_at.saturating_add(state.grace_secs as i64);
                match state.stage {
                    ChannelStage::Open => {
                        report.waiting = Some("no close requested: run request-close".into())
                    }
                    ChannelStage::Closed => report.waiting = Some("closed".into()),
                    ChannelStage::Closing if now < due => {
                        report.waiting = Some(format!(
                            "the grace period ends in {} s (unix {due})",
                            due - now
                        ))
                    }
                    ChannelStage::Closing => {
                        let payer_token =
                            spl_associated_token_account_interface::address::get_associated_token_address(
                                &state.payer,
                                &state.mint,
                            );
                        note(
                            chain
                                .send_signed(
                                    &[ix::close(&channel, &state.vault, &payer_token)],
                                    EntryKind::ChannelClose,
                                    &format!("close:{channel}"),
                                )
                                .await
                                .map(Some),
                            &mut report,
                        )
                    }
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The claimants the chain's current root (`root`) names, from the kept root with that hash.
fn claimants_under_root(
    ledger: &Ledger,
    channel: &Pubkey,
    root: &[u8; 32],
) -> Result<Vec<Pubkey>, ChannelError> {
    if *root == [0u8; 32] {
        return Ok(Vec::new());
    }
    let hex_root = hex::encode(root);
    let signed = ledger
        .root(&channel.to_string(), &hex_root)?
        .ok_or_else(|| ChannelError::UnknownRoot {
            channel: channel.to_string(),
            root: hex_root,
        })?;
    let leaves = signed
        .allocations
        .iter()
        .map(|(w, a)| {
            Pubkey::from_str(w)
                .map(|k| (k, *a))
                .map_err(|_| ChannelError::Key(w.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tree = Tree::new(leaves.clone());
    debug_assert_eq!(tree.root(), *root);
    Ok(leaves.into_iter().map(|(k, _)| k).collect())
}
