//! Snapshotters: how a page is frozen into HTML that every worker and validator then shares.
//!
//! The host asks a [`Snapshotter`] for a page only after the task's policy allows snapshots and the
//! URL's scheme; a snapshotter that touches the network applies the address policy itself (see
//! [`crate::egress`]). The Chromium snapshotter lives with the node; this crate has the two that need
//! no browser: pages frozen beforehand ([`FrozenPages`]) and a plain HTTP fetch ([`FetchSnapshotter`]).

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

use crate::egress::{BudgetExceeded, EgressViolation, NetworkFailure};

/// A page as frozen: its final URL and HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenHtml {
    pub final_url: String,
    pub html: String,
}

/// What the snapshotter may spend on one page.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    pub timeout: Duration,
    pub max_bytes: u64,
    pub allow_private_targets: bool,
}

/// Why a page could not be frozen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotError {
    /// The policy refused the page (or a redirect of it): ends the task.
    #[error(transparent)]
    Violation(#[from] EgressViolation),
    /// The page could not be had: the capability is told, and the failure is recorded.
    #[error("{0:?}")]
    Network(NetworkFailure),
}

/// Freezes pages. One per node, shared by its tasks.
pub trait Snapshotter: Send + Sync {
    /// Its name in evidence records (`chromium`, `fetch`, `frozen`).
    fn name(&self) -> &'static str;
    /// Loads `url` and returns its HTML as it stood when frozen.
    fn freeze(&self, url: &Url, limits: &SnapshotLimits) -> Result<FrozenHtml, SnapshotError>;
}

/// Pages frozen beforehand (`d402 run --snapshot URL=FILE`): no network access at all.
#[derive(Debug, Default, Clone)]
pub struct FrozenPages {
    pages: HashMap<String, String>,
}

impl FrozenPages {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a page under `url` (normalised the way the host normalises snapshot URLs).
    pub fn insert(&mut self, url: &str, html: String) -> Result<(), url::ParseError> {
        let url = Url::parse(url)?;
        self.pages.insert(url.to_string(), html);
        Ok(())
    }
}

impl Snapshotter for FrozenPages {
    fn name(&self) -> &'static str {
        "frozen"
    }
    fn freeze(&self, url: &Url, limits: &SnapshotLimits) -> Result<FrozenHtml, SnapshotError> {
        let html = self.pages.get(url.as_str()).ok_or_else(|| {
            SnapshotError::Network(NetworkFailure::Unavailable(format!(
                "no frozen page was provided for {url}"
            )))
        })?;
        if html.len() as u64 > limits.max_bytes {
            return Err(EgressViolation::Budget(BudgetExceeded::Bytes {
                limit: limits.max_bytes,
            })
            .into());
        }
        Ok(FrozenHtml {
            final_url: url.to_string(),
            html: html.clone(),
        })
    }
}
