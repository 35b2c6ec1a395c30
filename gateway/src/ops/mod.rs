//! Operations (DESIGN.md §12, seed 000 "Monitoring"): what `d402 ops-status` and
//! `d402 ops-monitor` read, and when they alert.
//!
//! A running gateway keeps its redb databases locked, and a monitor must never be the reason a
//! gateway cannot restart. So the gateway publishes what an operator watches as a snapshot,
//! `STATE/gateway/ops.json`, rewritten (write, then rename) after every sweep, and the tools read
//! only that file. A snapshot that stops changing is itself an alert: the gateway is down or its
//! sweep is stuck.
//!
//! [`evaluate`] turns a snapshot, the fee payers' balances and the counters last seen into
//! [`Alert`]s. Conditions (a stuck task, a low balance) hold until they clear; events (a replay
//! refused, a release that failed) are counted since the last look. [`MonitorState`] remembers
//! what was firing, so a monitor reports each condition once when it starts and once when it
//! clears, not on every tick.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod alerts;
mod monitor;
#[cfg(test)]
mod tests;

pub use alerts::*;
pub use monitor::*;

/// The snapshot's file name under the gateway's state folder (`STATE/gateway/`).
pub const SNAPSHOT_FILE: &str = "ops.json";
/// Where `d402 ops-monitor` keeps what it last saw, beside the snapshot.
pub const MONITOR_FILE: &str = "ops-monitor.json";
/// At most this many tasks, settlements and batches are listed in a snapshot (the oldest);
/// the totals are exact.
pub const LISTED: usize = 100;

/// Why a snapshot or the monitor's state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(
        "no operations snapshot at {0}: is a gateway running with this --state (it writes one every sweep)?"
    )]
    NoSnapshot(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a d402 operations file: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The chain a wallet lives on, for its balance check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Evm,
    Solana,
}

impl Chain {
    /// The native coin's decimals: wei per ether, lamports per SOL.
    pub fn decimals(self) -> u8 {
        match self {
            Chain::Evm => 18,
            Chain::Solana => 9,
        }
    }

    pub fn coin(self) -> &'static str {
        match self {
            Chain::Evm => "ETH",
            Chain::Solana => "SOL",
        }
    }
}

/// The wallet that pays the gateway's transaction fees (the facilitator key on Base, the fee
/// payer on Solana): when it runs dry, settlements, payouts and refunds stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeePayer {
    pub chain: Chain,
    pub address: String,
    pub rpc_url: String,
}

/// One task in flight, as the snapshot lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInFlight {
    pub id: String,
    pub state: String,
    pub created_ms: u64,
    /// Unix seconds after which the task should have ended (its escrow refundable).
    pub deadline_unix: u64,
}

/// One settlement the rail's outbox holds in flight: sent, or about to be, and not yet seen
/// on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSettlement {
    pub id: String,
    pub rail: String,
    pub state: String,
    pub tx_hash: Option<String>,
    pub created_unix: u64,
    pub updated_unix: u64,
}

/// A payout batch opened and not yet paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnpaidBatch {
    pub id: String,
    pub created_ms: u64,
}

/// What a gateway publishes for its operators after every sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpsSnapshot {
    pub label: String,
    pub rail: String,
    pub network: String,
    pub pay_to: String,
    pub fee_payer: Option<FeePayer>,
    /// When this gateway process started: counters count from here.
    pub started_ms: u64,
    pub written_ms: u64,
    pub incident: bool,
    pub tasks_in_flight: u64,
    /// The oldest tasks in flight, oldest first (at most [`LISTED`]).
    pub in_flight: Vec<TaskInFlight>,
    /// Worker pay of delivered tasks not yet paid out, in the asset's atomic units (a decimal
    /// string: JSON numbers lose precision past 2^53).
    pub worker_pay_owed_atomic: String,
    pub unpaid_batches: Vec<UnpaidBatch>,
    pub pending_settlements: Vec<PendingSettlement>,
    /// A channel rail's unclaimed voucher value and running withdrawal clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<d402_rails::ChannelBook>,
    /// The `/metrics` counters, by their Prometheus names.
    pub counters: BTreeMap<String, u64>,
}

impl OpsSnapshot {
    /// Writes the snapshot to `path` so that a reader sees the old file or the new one, never
    /// half of one.
    pub fn write(&self, path: &Path) -> Result<(), OpsError> {
        write_json(path, self)
    }

    pub fn read(path: &Path) -> Result<Self, OpsError> {
        read_json(path)?.ok_or_else(|| OpsError::NoSnapshot(path.to_path_buf()))
    }
}

/// Writes `value` to `path` as JSON through a temporary file and a rename, so a reader sees
/// the old file or the new one, never half of one.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), OpsError> {
    let io = |source| OpsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    // Plain data: serialising it cannot fail.
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, OpsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OpsError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| OpsError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}
