//! What `d402 ops-monitor` remembers between looks ([`MonitorState`]), so that it reports each
//! condition once when it starts and once when it clears, not on every tick.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alerts::Alert;
use std::path::Path;

use super::{OpsError, OpsSnapshot, read_json, write_json};

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
