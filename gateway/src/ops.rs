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
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_snapshot_age: Duration::from_secs(60),
            stuck_grace: Duration::from_secs(120),
            max_pending: Duration::from_secs(300),
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
    fn condition(code: &str, severity: Severity, subject: Option<String>, message: String) -> Self {
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

/// One line of the alert file (and one webhook body): an alert that started, happened again
/// (an event), or cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    /// `firing` or `resolved`.
    pub status: String,
    pub at_ms: u64,
    pub gateway: String,
    #[serde(flatten)]
    pub alert: Alert,
}

/// What a monitor remembers between looks (in [`MONITOR_FILE`]), so that a restarted monitor
/// neither repeats the alerts it sent nor misses what happened while it was down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorState {
    /// The gateway process the counters below were read from.
    pub gateway_started_ms: u64,
    pub counters: BTreeMap<String, u64>,
    /// Conditions firing at the last look, by [`Alert::key`].
    pub firing: BTreeMap<String, Alert>,
    /// Reports the webhook did not take (it was down or refused them), oldest first: sent
    /// again before the next look's, so an outage delays alerts rather than losing them. At
    /// most [`UNDELIVERED_KEPT`], the newest.
    #[serde(default)]
    pub undelivered: Vec<AlertEvent>,
}

/// How many undelivered webhook reports a monitor keeps.
pub const UNDELIVERED_KEPT: usize = 1000;

impl MonitorState {
    pub fn load(path: &Path) -> Result<Self, OpsError> {
        Ok(read_json(path)?.unwrap_or_default())
    }

    pub fn save(&self, path: &Path) -> Result<(), OpsError> {
        write_json(path, self)
    }

    /// Keeps `failed` (in order) for the next delivery, dropping the oldest beyond
    /// [`UNDELIVERED_KEPT`]; returns how many were dropped.
    pub fn keep_undelivered(&mut self, failed: Vec<AlertEvent>) -> usize {
        self.undelivered.extend(failed);
        let over = self.undelivered.len().saturating_sub(UNDELIVERED_KEPT);
        self.undelivered.drain(..over);
        over
    }

    /// The counters to count events from for snapshot `s`: those of the last look if it was
    /// the same gateway process, else none (a restarted gateway counts from zero).
    pub fn baseline(&self, s: &OpsSnapshot) -> BTreeMap<String, u64> {
        if self.gateway_started_ms == s.started_ms {
            self.counters.clone()
        } else {
            BTreeMap::new()
        }
    }

    /// Takes in one look's alerts and returns what to report: conditions that started,
    /// every event, and conditions that cleared. `s` is the snapshot the alerts came from, if
    /// it could be read (its counters become the next baseline).
    pub fn advance(
        &mut self,
        gateway: &str,
        s: Option<&OpsSnapshot>,
        alerts: &[Alert],
        now_ms: u64,
    ) -> Vec<AlertEvent> {
        let event = |status: &str, alert: &Alert| AlertEvent {
            status: status.into(),
            at_ms: now_ms,
            gateway: gateway.into(),
            alert: alert.clone(),
        };
        let mut out = Vec::new();
        let mut firing = BTreeMap::new();
        for alert in alerts {
            if alert.event {
                out.push(event("firing", alert));
                continue;
            }
            if !self.firing.contains_key(&alert.key()) {
                out.push(event("firing", alert));
            }
            firing.insert(alert.key(), alert.clone());
        }
        for (key, alert) in &self.firing {
            if !firing.contains_key(key) {
                out.push(event("resolved", alert));
            }
        }
        self.firing = firing;
        if let Some(s) = s {
            self.gateway_started_ms = s.started_ms;
            self.counters = s.counters.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(now_ms: u64) -> OpsSnapshot {
        OpsSnapshot {
            label: "gw".into(),
            rail: "base-x402-direct".into(),
            network: "eip155:31337".into(),
            pay_to: "0xpay".into(),
            fee_payer: None,
            started_ms: 1_000,
            written_ms: now_ms - 1_000,
            incident: false,
            tasks_in_flight: 0,
            in_flight: Vec::new(),
            worker_pay_owed_atomic: "0".into(),
            unpaid_batches: Vec::new(),
            pending_settlements: Vec::new(),
            counters: BTreeMap::new(),
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    fn codes(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.code.as_str()).collect()
    }

    #[test]
    fn a_fresh_quiet_gateway_raises_nothing() {
        let s = snapshot(NOW);
        assert!(evaluate(&s, NOW, &Thresholds::default(), &BTreeMap::new(), &[]).is_empty());
    }

    #[test]
    fn each_stuck_thing_is_its_own_alert() {
        let t = Thresholds::default();
        let mut s = snapshot(NOW);
        s.written_ms = NOW - 61_000;
        s.incident = true;
        let now_unix = NOW / 1000;
        s.in_flight = vec![
            TaskInFlight {
                id: "late".into(),
                state: "refund_pending".into(),
                created_ms: 0,
                deadline_unix: now_unix - 121,
            },
            // Past its deadline, but within the grace the sweep has to end it.
            TaskInFlight {
                id: "in-grace".into(),
                state: "settled".into(),
                created_ms: 0,
                deadline_unix: now_unix - 100,
            },
        ];
        s.pending_settlements = vec![
            PendingSettlement {
                id: "old".into(),
                rail: "r".into(),
                state: "sent".into(),
                tx_hash: Some("0xabc".into()),
                created_unix: now_unix - 301,
                updated_unix: now_unix,
            },
            PendingSettlement {
                id: "new".into(),
                rail: "r".into(),
                state: "intent".into(),
                tx_hash: None,
                created_unix: now_unix - 10,
                updated_unix: now_unix,
            },
        ];
        s.unpaid_batches = vec![UnpaidBatch {
            id: "payout-batch-1".into(),
            created_ms: NOW - 301_000,
        }];
        let alerts = evaluate(&s, NOW, &t, &BTreeMap::new(), &[]);
        assert_eq!(
            codes(&alerts),
            [
                "gateway-not-reporting",
                "incident-switch-on",
                "stuck-task",
                "pending-settlement",
                "unpaid-payout-batch"
            ]
        );
        assert_eq!(alerts[2].subject.as_deref(), Some("late"));
        assert_eq!(alerts[3].subject.as_deref(), Some("old"));
        assert!(alerts[3].message.contains("0xabc"), "{}", alerts[3].message);
        assert!(alerts.iter().all(|a| !a.event));
    }

    #[test]
    fn counters_alert_on_what_is_new_since_the_baseline() {
        let mut s = snapshot(NOW);
        s.counters = BTreeMap::from([
            ("d402_replay_rejections_total".to_string(), 3),
            ("d402_idempotent_replays_total".to_string(), 1),
            ("d402_payment_id_conflicts_total".to_string(), 1),
            ("d402_payout_errors_total".to_string(), 0),
        ]);
        let t = Thresholds::default();
        let all = evaluate(&s, NOW, &t, &BTreeMap::new(), &[]);
        assert_eq!(
            codes(&all),
            ["replay-rejections", "duplicate-payment-attempts"]
        );
        assert!(all[0].message.starts_with("3 "), "{}", all[0].message);
        assert!(all[1].message.starts_with("2 "), "{}", all[1].message);
        assert!(all.iter().all(|a| a.event));
        let seen = s.counters.clone();
        assert!(evaluate(&s, NOW, &t, &seen, &[]).is_empty());
        s.counters.insert("d402_release_errors_total".into(), 1);
        let alerts = evaluate(&s, NOW, &t, &seen, &[]);
        assert_eq!(codes(&alerts), ["failed-finalizations"]);
        assert_eq!(alerts[0].severity, Severity::Critical);
    }

    #[test]
    fn balances_below_the_minimum_or_unknown_alert() {
        let s = snapshot(NOW);
        let balance = |atomic: Option<&str>, error: Option<&str>| Balance {
            chain: Chain::Solana,
            address: "Fee".into(),
            atomic: atomic.map(String::from),
            minimum_atomic: "5000000".into(),
            error: error.map(String::from),
        };
        let t = Thresholds::default();
        let ok = evaluate(
            &s,
            NOW,
            &t,
            &BTreeMap::new(),
            &[balance(Some("5000000"), None)],
        );
        assert!(ok.is_empty());
        let low = evaluate(
            &s,
            NOW,
            &t,
            &BTreeMap::new(),
            &[balance(Some("4000000"), None)],
        );
        assert_eq!(codes(&low), ["low-fee-payer-balance"]);
        assert!(low[0].message.contains("0.004 SOL"), "{}", low[0].message);
        assert!(low[0].message.contains("0.005"), "{}", low[0].message);
        let unknown = evaluate(
            &s,
            NOW,
            &t,
            &BTreeMap::new(),
            &[balance(None, Some("connection refused"))],
        );
        assert_eq!(codes(&unknown), ["balance-unknown"]);
    }

    #[test]
    fn a_condition_is_reported_when_it_starts_and_when_it_clears() {
        let mut m = MonitorState::default();
        let mut s = snapshot(NOW);
        let stuck = Alert::condition(
            "stuck-task",
            Severity::Critical,
            Some("t1".into()),
            "x".into(),
        );
        let replay = Alert {
            code: "replay-rejections".into(),
            severity: Severity::Warning,
            subject: None,
            message: "1 replayed".into(),
            event: true,
        };
        s.counters.insert("d402_replay_rejections_total".into(), 1);
        let first = m.advance("gw", Some(&s), &[stuck.clone(), replay.clone()], NOW);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|e| e.status == "firing"));
        assert_eq!(m.baseline(&s)["d402_replay_rejections_total"], 1);
        // Still stuck: not reported again.
        assert!(
            m.advance("gw", Some(&s), std::slice::from_ref(&stuck), NOW)
                .is_empty()
        );
        let cleared = m.advance("gw", Some(&s), &[], NOW);
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].status, "resolved");
        assert_eq!(cleared[0].alert.key(), "stuck-task:t1");
        // A restarted gateway counts from zero again.
        let mut restarted = s.clone();
        restarted.started_ms += 1;
        assert!(m.baseline(&restarted).is_empty());
        // And the state survives the monitor's own restart.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MONITOR_FILE);
        m.advance("gw", Some(&s), &[stuck], NOW);
        m.save(&path).unwrap();
        assert_eq!(MonitorState::load(&path).unwrap(), m);
    }

    #[test]
    fn undelivered_reports_wait_for_the_webhook_and_the_oldest_go_first_when_too_many() {
        let mut m = MonitorState::default();
        let report = |n: u64| AlertEvent {
            status: "firing".into(),
            at_ms: n,
            gateway: "gw".into(),
            alert: Alert::condition("stuck-task", Severity::Critical, None, n.to_string()),
        };
        assert_eq!(m.keep_undelivered(vec![report(1), report(2)]), 0);
        let over = (3..=UNDELIVERED_KEPT as u64 + 1).map(report).collect();
        assert_eq!(m.keep_undelivered(over), 1);
        assert_eq!(m.undelivered.len(), UNDELIVERED_KEPT);
        assert_eq!(m.undelivered[0].at_ms, 2, "the oldest went first");
        assert_eq!(
            m.undelivered.last().unwrap().at_ms,
            UNDELIVERED_KEPT as u64 + 1
        );
        // A state file from before the queue still loads.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MONITOR_FILE);
        std::fs::write(
            &path,
            br#"{"gatewayStartedMs":1,"counters":{},"firing":{}}"#,
        )
        .unwrap();
        assert!(MonitorState::load(&path).unwrap().undelivered.is_empty());
    }

    #[test]
    fn a_snapshot_round_trips_and_a_missing_one_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SNAPSHOT_FILE);
        assert!(matches!(
            OpsSnapshot::read(&path),
            Err(OpsError::NoSnapshot(p)) if p == path
        ));
        let s = snapshot(NOW);
        s.write(&path).unwrap();
        assert_eq!(OpsSnapshot::read(&path).unwrap(), s);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            OpsSnapshot::read(&path),
            Err(OpsError::Corrupt { .. })
        ));
    }

    #[test]
    fn coins_print_whole_units() {
        assert_eq!(coins(5_000_000, Chain::Solana), "0.005");
        assert_eq!(coins(2_000_000_000, Chain::Solana), "2");
        assert_eq!(coins(1, Chain::Evm), "0.000000000000000001");
    }
}
