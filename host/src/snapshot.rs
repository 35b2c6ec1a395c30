//! The snapshotter that needs no browser and does touch the network: a plain HTTP fetch
//! ([`FetchSnapshotter`]). The trait and pages frozen beforehand live in [`d402_core::snapshot`]
//! (re-exported here); the Chromium snapshotter lives with the node.

use std::sync::Arc;

use url::Url;

pub(crate) use d402_core::snapshot::*;

use crate::egress::{Allowance, EgressPolicy, NetworkEgress, NetworkFailure, OutboundRequest};

/// Freezes a page with a plain HTTP GET: what `--snapshotter fetch` and `--fallback-to-fetch` use.
/// It sees the HTML the server sends, not what scripts build from it.
pub struct FetchSnapshotter {
    network: Arc<NetworkEgress>,
}

impl FetchSnapshotter {
    pub fn new(network: Arc<NetworkEgress>) -> Self {
        Self { network }
    }
}

impl Snapshotter for FetchSnapshotter {
    fn name(&self) -> &'static str {
        "fetch"
    }
    fn freeze(&self, url: &Url, limits: &SnapshotLimits) -> Result<FrozenHtml, SnapshotError> {
        let policy = EgressPolicy {
            allow_private_targets: limits.allow_private_targets,
            ..EgressPolicy::default()
        };
        let mut allowance = Allowance {
            requests: 6,
            bytes: limits.max_bytes,
            timeout: limits.timeout,
            policy_requests: 6,
            policy_bytes: limits.max_bytes,
        };
        let request = OutboundRequest {
            method: "GET".into(),
            url: url.clone(),
            headers: vec![("accept".into(), "text/html,application/xhtml+xml".into())],
            body: None,
        };
        let response = self
            .network
            .send(&policy, false, request, &mut allowance)?
            .map_err(SnapshotError::Network)?;
        if !(200..300).contains(&response.status) {
            return Err(SnapshotError::Network(NetworkFailure::Unavailable(
                format!("{url}: HTTP {}", response.status),
            )));
        }
        Ok(FrozenHtml {
            final_url: response.final_url.to_string(),
            html: String::from_utf8_lossy(&response.body).into_owned(),
        })
    }
}
