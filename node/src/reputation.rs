//! Worker reputation as the coordinator sees it: how often a worker's claims were accepted,
//! rejected (outvoted or failed validation), timed out, or came with objects that did not match
//! their CID; and how fast it answered. Persisted in [`crate::state::NodeState`].
//!
//! Reputation decides two things: the order bids are taken in (best score first, then lower
//! latency), and exclusion. A worker caught lying a few times is not chosen again, which is what
//! makes adding nodes harder to exploit: a cheater pays for each lie with future work.

use serde::{Deserialize, Serialize};

/// Lies (rejected claims and wrong objects) a worker may tell before it is excluded, as long as
/// they are a small share of its work.
pub const LIES_TOLERATED: u64 = 2;
/// Timeouts tolerated before a worker that mostly times out is excluded.
pub const TIMEOUTS_TOLERATED: u64 = 4;

/// One worker's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Standing {
    pub accepted: u64,
    pub rejected: u64,
    pub timed_out: u64,
    /// Objects served whose bytes did not match the CID asked for.
    pub bad_objects: u64,
    pub latency_ms_total: u64,
    pub latency_samples: u64,
}

/// Something that happened with a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReputationEvent {
    /// Its claim was in the accepted quorum / matched validation, after `latency_ms`.
    Accepted { latency_ms: u64 },
    /// Its claim was outvoted or failed validation.
    Rejected,
    /// It did not answer its lease in time (or its connection died).
    TimedOut,
    /// It served bytes that do not hash to the CID requested.
    BadObject,
}

impl Standing {
    pub fn apply(&mut self, event: ReputationEvent) {
        match event {
            ReputationEvent::Accepted { latency_ms } => {
                self.accepted += 1;
                self.latency_ms_total = self.latency_ms_total.saturating_add(latency_ms);
                self.latency_samples += 1;
            }
            ReputationEvent::Rejected => self.rejected += 1,
            ReputationEvent::TimedOut => self.timed_out += 1,
            ReputationEvent::BadObject => self.bad_objects += 1,
        }
    }

    pub fn lies(&self) -> u64 {
        self.rejected + self.bad_objects
    }

    /// Whether the worker is no longer offered work.
    pub fn excluded(&self) -> bool {
        let lies = self.lies();
        (lies > LIES_TOLERATED && lies * 10 > self.accepted)
            || (self.timed_out > TIMEOUTS_TOLERATED && self.timed_out > self.accepted)
    }

    /// A score in (0, 1]: 1 for a worker with only accepted work, falling with each lie (weighted
    /// ×3) and timeout (×2). A newcomer scores 0.5, so honest history beats a clean slate.
    pub fn score(&self) -> f64 {
        let good = self.accepted as f64 + 1.0;
        let bad = 3.0 * self.lies() as f64 + 2.0 * self.timed_out as f64 + 1.0;
        good / (good + bad)
    }

    pub fn mean_latency_ms(&self) -> Option<u64> {
        self.latency_ms_total.checked_div(self.latency_samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lies_exclude_a_worker_and_honest_work_ranks_higher() {
        let mut liar = Standing::default();
        let mut honest = Standing::default();
        for _ in 0..=LIES_TOLERATED {
            assert!(!liar.excluded());
            liar.apply(ReputationEvent::Rejected);
            honest.apply(ReputationEvent::Accepted { latency_ms: 10 });
        }
        assert!(liar.excluded());
        assert!(!honest.excluded());
        assert!(honest.score() > Standing::default().score());
        assert!(Standing::default().score() > liar.score());
    }

    #[test]
    fn rare_mistakes_in_a_long_honest_history_do_not_exclude() {
        let mut worker = Standing {
            accepted: 1000,
            ..Default::default()
        };
        for _ in 0..5 {
            worker.apply(ReputationEvent::BadObject);
        }
        assert!(!worker.excluded());
    }

    #[test]
    fn mostly_timing_out_excludes() {
        let mut worker = Standing::default();
        for _ in 0..=TIMEOUTS_TOLERATED {
            worker.apply(ReputationEvent::TimedOut);
        }
        assert!(worker.excluded());
        assert_eq!(worker.mean_latency_ms(), None);
    }
}
