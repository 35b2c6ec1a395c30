//! When what an operator watches is an alert: [`evaluate`] turns a snapshot, the fee payers'
//! balances and the counters last seen into [`Alert`]s. Conditions (a stuck task, a low balance)
//! hold until they clear; events (a replay refused, a release that failed) are counted since the
//! last look.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Chain, OpsError, OpsSnapshot};

/// A wallet's native balance against the operator's minimum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub chain: Chain,
    pub address: String,
    /// In wei or lamports; `None` when the chain could not be asked (see `error`).
    pub atomic: Option<String>,
    pub minimum_atomic: String,
    pub error: Option<String>,
}

/// When a condition becomes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A snapshot older than this means the gateway stopped reporting.
    pub max_snapshot_age: Duration,
    /// A task still in flight this long after its deadline is stuck (its sweep should have
    /// delivered or refunded it).
    pub stuck_grace: Duration,
    /// A settlement or payout batch pending longer than this is stuck.
    pub max_pending: Duration,
    /// A payer's withdrawal that ends within this while its channel still owes a claim is
    /// critical: once it ends the unclaimed vouchers are lost.
    pub withdrawal_warning: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_snapshot_age: Duration::from_secs(60),
            stuck_grace: Duration::from_secs(120),
            max_pending: Duration::from_secs(300),
            withdrawal_warning: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Money is stuck or about to be: act now.
    Critical,
    /// Worth a look: refused attacks, retries, a deliberate shutdown.
    Warning,
}

/// One alert. `subject` names what it is about (a task, a settlement, a wallet) so that two
/// stuck tasks are two alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub code: String,
    pub severity: Severity,
    pub subject: Option<String>,
    pub message: String,
    /// An event counted since the last look (reported each time it happens) rather than a
    /// condition (reported when it starts and when it clears).
    pub event: bool,
}

impl Alert {
    pub(super) fn condition(
        code: &str,
        severity: Severity,
        subject: Option<String>,
        message: String,
    ) -> Self {
        Alert {
            code: code.into(),
            severity,
            subject,
            message,
            event: false,
        }
    }

    /// What identifies the alert from one look to the next.
    pub fn key(&self) -> String {
        match &self.subject {
            Some(s) => format!("{}:{s}", self.code),
            None => self.code.clone(),
        }
    }
}

/// The alert for a gateway whose snapshot cannot be read at all.
pub fn unreadable(error: &OpsError) -> Alert {
    Alert::condition(
        "gateway-not-reporting",
        Severity::Critical,
        None,
        error.to_string(),
    )
}

/// Counter-driven alerts: (code, severity, counters summed, what happened).
const EVENTS: &[(&str, Severity, &[&str], &str)] = &[
    (
        "replay-rejections",
        Severity::Warning,
        &["d402_replay_rejections_total"],
        "replayed payments refused",
    ),
    (
        "duplicate-payment-attempts",
        Severity::Warning,
        &[
            "d402_idempotent_replays_total",
            "d402_payment_id_conflicts_total",
        ],
        "payments sent again under a payment-identifier already used",
    ),
    (
        "failed-finalizations",
        Severity::Critical,
        &["d402_release_errors_total", "d402_refund_errors_total"],
        "releases or refunds that failed (retried by the sweep)",
    ),
    (
        "failed-payouts",
        Severity::Critical,
        &["d402_payout_errors_total"],
        "worker payout batches that failed (retried every sweep)",
    ),
];

/// Every alert the snapshot, the balances and the counters since `baseline` call for, at
/// `now_ms`. `baseline` is what the counters were at the last look (empty: since the gateway
/// started).
pub fn evaluate(
    s: &OpsSnapshot,
    now_ms: u64,
    t: &Thresholds,
    baseline: &BTreeMap<String, u64>,
    balances: &[Balance],
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let age = Duration::from_millis(now_ms.saturating_sub(s.written_ms));
    if age > t.max_snapshot_age {
        alerts.push(Alert::condition(
            "gateway-not-reporting",
            Severity::Critical,
            None,
            format!(
                "gateway {} last wrote its snapshot {}s ago (limit {}s): it is down or its sweep is stuck",
                s.label,
                age.as_secs(),
                t.max_snapshot_age.as_secs()
            ),
        ));
    }
    if s.incident {
        alerts.push(Alert::condition(
            "incident-switch-on",
            Severity::Warning,
            None,
            format!(
                "gateway {} is refusing new payments (incident switch)",
                s.label
            ),
        ));
    }
    let now_unix = now_ms / 1000;
    for task in &s.in_flight {
        let due = task.deadline_unix.saturating_add(t.stuck_grace.as_secs());
        if now_unix > due {
            alerts.push(Alert::condition(
                "stuck-task",
                Severity::Critical,
                Some(task.id.clone()),
                format!(
                    "task {} is still {} {}s after its deadline",
                    task.id,
                    task.state,
                    now_unix - task.deadline_unix
                ),
            ));
        }
    }
    for w in s.channels.iter().flat_map(|c| &c.withdrawals) {
        let left = w.ends_unix.saturating_sub(now_unix);
        let severity = if left < t.withdrawal_warning.as_secs() {
            Severity::Critical
        } else {
            Severity::Warning
        };
        alerts.push(Alert::condition(
            "channel-withdrawal",
            severity,
            Some(w.channel.clone()),
            format!(
                "the payer of channel {} is withdrawing in {left}s while {} atomic units of its vouchers are unclaimed (the gateway claims them on its next upkeep)",
                w.channel, w.unclaimed
            ),
        ));
    }
    for u in s.channels.iter().flat_map(|c| &c.unpublished) {
        let age = Duration::from_millis(now_ms.saturating_sub(u.since_ms));
        if age > t.max_pending {
            alerts.push(Alert::condition(
                "channel-root-stale",
                Severity::Critical,
                Some(u.channel.clone()),
                format!(
                    "channel {} has {} atomic units allocated that no published root carries, for {}s: its claimants cannot withdraw them (is the gateway's root publication failing?)",
                    u.channel,
                    u.amount,
                    age.as_secs()
                ),
            ));
        }
    }
    for p in &s.pending_settlements {
        let pending = now_unix.saturating_sub(p.created_unix);
        if pending > t.max_pending.as_secs() {
            alerts.push(Alert::condition(
                "pending-settlement",
                Severity::Critical,
                Some(p.id.clone()),
                format!(
                    "settlement {} on {} has been {} for {pending}s (last transaction: {})",
                    p.id,
                    p.rail,
                    p.state,
                    p.tx_hash.as_deref().unwrap_or("none")
                ),
            ));
        }
    }
    for b in &s.unpaid_batches {
        let pending = Duration::from_millis(now_ms.saturating_sub(b.created_ms));
        if pending > t.max_pending {
            alerts.push(Alert::condition(
                "unpaid-payout-batch",
                Severity::Critical,
                Some(b.id.clone()),
                format!(
                    "payout batch {} has been unpaid for {}s",
                    b.id,
                    pending.as_secs()
                ),
            ));
        }
    }
    for (code, severity, counters, what) in EVENTS {
        let new: u64 = counters
            .iter()
            .map(|c| {
                let now = s.counters.get(*c).copied().unwrap_or(0);
                now.saturating_sub(baseline.get(*c).copied().unwrap_or(0))
            })
            .sum();
        if new > 0 {
            alerts.push(Alert {
                code: (*code).into(),
                severity: *severity,
                subject: None,
                message: format!("{new} {what} on gateway {}", s.label),
                event: true,
            });
        }
    }
    alerts.extend(balance_alerts(balances));
    alerts
}

/// The alerts a channel maintainer's last round calls for (`STATE/solana-channel-maintainer/
/// status.json`): a withdrawal it could not crank is critical (a claimant is not being paid), any
/// other failure a warning, and a maintainer that stopped writing its status is critical.
pub fn maintainer_alerts(
    m: &d402_rails::solana::channel::maintainer::MaintainerStatus,
    now_ms: u64,
    t: &Thresholds,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let limit = t
        .max_snapshot_age
        .max(Duration::from_millis(m.interval_ms.saturating_mul(3)));
    let age = Duration::from_millis(now_ms.saturating_sub(m.written_ms));
    if age > limit {
        alerts.push(Alert::condition(
            "maintainer-not-reporting",
            Severity::Critical,
            None,
            format!(
                "the channel maintainer last finished a round {}s ago (limit {}s)",
                age.as_secs(),
                limit.as_secs()
            ),
        ));
    }
    for f in &m.failures {
        let (code, severity) = match f.action.as_str() {
            "withdraw" => ("channel-withdrawal-failed", Severity::Critical),
            _ => ("channel-maintenance-failed", Severity::Warning),
        };
        let subject = match &f.claimant {
            Some(c) => format!("{}:{c}", f.channel),
            None => format!("{}:{}", f.channel, f.action),
        };
        alerts.push(Alert::condition(
            code,
            severity,
            Some(subject),
            format!(
                "the maintainer's {} on channel {}{} failed: {}",
                f.action,
                f.channel,
                f.claimant
                    .as_deref()
                    .map(|c| format!(" for {c}"))
                    .unwrap_or_default(),
                f.error
            ),
        ));
    }
    alerts
}

/// The alerts for wallets below their minimum, or whose balance could not be read.
pub fn balance_alerts(balances: &[Balance]) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for b in balances {
        let subject = Some(format!("{}:{}", serde_plain(b.chain), b.address));
        match (&b.atomic, &b.error) {
            (_, Some(e)) => alerts.push(Alert::condition(
                "balance-unknown",
                Severity::Critical,
                subject,
                format!(
                    "the {} balance of {} is unknown: {e}",
                    b.chain.coin(),
                    b.address
                ),
            )),
            (Some(have), None) => {
                let have_n: u128 = have.parse().unwrap_or(0);
                let min_n: u128 = b.minimum_atomic.parse().unwrap_or(0);
                if have_n < min_n {
                    alerts.push(Alert::condition(
                        "low-fee-payer-balance",
                        Severity::Critical,
                        subject,
                        format!(
                            "{} holds {} {}, below the minimum of {}",
                            b.address,
                            coins(have_n, b.chain),
                            b.chain.coin(),
                            coins(min_n, b.chain)
                        ),
                    ));
                }
            }
            (None, None) => {}
        }
    }
    alerts
}

fn serde_plain(chain: Chain) -> &'static str {
    match chain {
        Chain::Evm => "evm",
        Chain::Solana => "solana",
    }
}

/// `atomic` in whole coins, e.g. `0.004` (trailing zeros dropped).
pub fn coins(atomic: u128, chain: Chain) -> String {
    let scale = 10u128.pow(u32::from(chain.decimals()));
    let frac = format!(
        "{:0width$}",
        atomic % scale,
        width = chain.decimals() as usize
    );
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        (atomic / scale).to_string()
    } else {
        format!("{}.{frac}", atomic / scale)
    }
}
