//! Server-owned sale policy: what the gateway sells, for how much, how it is run and what input
//! it accepts. Nothing here comes from the buyer (DESIGN.md §9): a client names a capability and
//! an input, and the gateway decides price, mode, fanout, quorum, URL and size limits.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use d402_node::wire::ComparatorRef;
use d402_node::{Mode, Offer};
use d402_rails::{Atomic, GatewayFee, Rail};
use d402_registry::{AcceptancePolicy, Accepted};

/// How the gateway prices and runs every task.
#[derive(Debug, Clone)]
pub struct SalePolicy {
    /// Gross price of one task, in the asset's atomic units (`--gateway-price`).
    pub price: Atomic,
    /// Most the workers of one task may be paid (`--gateway-budget`); at most the price.
    pub worker_budget: Atomic,
    /// The gateway's own cut: released to it from escrow, or kept in `payTo` on a direct rail
    /// while the worker's net is paid out.
    pub gateway_fee: GatewayFee,
    /// Where direct payments go (`payTo` on `base-x402-direct`): the gateway operator's wallet,
    /// which pays workers and refunds out of what it received, so on a direct rail it must be
    /// the facilitator key's wallet.
    pub pay_to: String,
    /// How long a buyer's signed payment stays valid.
    pub max_timeout_seconds: u64,
    /// Time the network gets for one task.
    pub task_deadline: Duration,
    /// How long `POST /tasks` waits for the result before answering 202.
    pub wait: Duration,
    /// Escrow rails: how long after the task deadline the escrow may be refunded.
    pub refund_after: Duration,
    /// How often in-flight tasks nothing is driving (a refund that failed, a release that
    /// stopped on a chain error) are picked up again.
    pub sweep_every: Duration,
    /// Direct rails: how long delivered tasks' worker pay accumulates before it is paid out,
    /// one transfer per worker for the whole batch (`--gateway-payout-window-ms`). Longer
    /// means fewer transactions and a later payout.
    pub payout_window: Duration,
    /// The incident switch (DESIGN §12, seed 000 "Incident shutdown"): while this file exists,
    /// no challenge is issued and no new payment is taken, and paid work (tasks in flight,
    /// refunds, worker pay owed) still finishes. `None`: no switch.
    pub incident_file: Option<std::path::PathBuf>,
    pub max_input_bytes: usize,
    pub max_output_bytes: usize,
    /// Whether inputs may name loopback and private addresses (a local devnet only).
    pub allow_private_targets: bool,
    /// The asset prices are in (token address) and its decimals, for display.
    pub asset: String,
    pub decimals: u8,
    /// Honest snapshots (`--snapshot-check`): on a sample of the tasks whose page one worker
    /// froze for everyone, an independent worker freezes it again and the validator compares.
    pub snapshot_check: Option<SnapshotCheckPolicy>,
    /// Who may be leased for work nobody can re-execute exactly (non-verifiable and scoreable
    /// offers): a reputation floor (`--min-worker-score`) and a minimum bond
    /// (`--min-worker-bond`, a [`crate::worker_gate::BondGate`]).
    pub unverifiable_workers: d402_node::WorkerPolicy,
}

/// The `--snapshot-check` policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotCheckPolicy {
    /// The share of frozen tasks checked, in (0, 1].
    pub rate: f64,
    /// The score, in millionths, the agreed output and the independent one must reach with
    /// [`SNAPSHOT_COMPARATOR`].
    pub threshold: u32,
    pub on_failure: SnapshotFailure,
}

/// The comparator the snapshot check runs: it must be among the gateway's published offers.
pub const SNAPSHOT_COMPARATOR: &str = "compare.text_similarity@1";

/// What a failed snapshot check does to the task (`--snapshot-check-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotFailure {
    /// The task fails and the buyer is refunded.
    #[default]
    Refund,
    /// The output is delivered, marked `disputed`, and the payment completes.
    DeliverDisputed,
}

impl Default for SalePolicy {
    fn default() -> Self {
        Self {
            price: Atomic::new(10_000),
            worker_budget: Atomic::new(10_000),
            gateway_fee: GatewayFee::Bps(0),
            pay_to: String::new(),
            max_timeout_seconds: 300,
            task_deadline: Duration::from_secs(60),
            wait: Duration::from_secs(30),
            refund_after: Duration::from_secs(30),
            sweep_every: Duration::from_secs(5),
            payout_window: Duration::from_secs(1),
            incident_file: None,
            max_input_bytes: 64 * 1024,
            max_output_bytes: 1 << 20,
            allow_private_targets: false,
            asset: String::new(),
            decimals: 6,
            snapshot_check: None,
            unverifiable_workers: d402_node::WorkerPolicy::default(),
        }
    }
}

/// A capability as the gateway sells it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub offer: Offer,
    pub accepted: Accepted,
    pub mode: Mode,
    pub fanout: usize,
    pub quorum: usize,
    /// For a scoreable capability: the comparator the validator runs, one of this gateway's
    /// own offers.
    pub comparator: Option<ComparatorRef>,
}

/// A capability the gateway will not sell, and why: no challenge is ever issued for it.
#[derive(Debug, Clone)]
pub struct Refused {
    pub capability: String,
    pub code: &'static str,
    pub reason: String,
}

/// Checks `offer` against the acceptance policy and the rail: registration checks come before
/// any challenge, and a commission-bearing capability is only sold on a split-settlement rail.
/// A scoreable capability is sold only when its comparator is among `comparators` (the
/// gateway's own offers), so that no buyer pays for work nobody can compare.
pub fn list(
    policy: &AcceptancePolicy,
    rail: &dyn Rail,
    offer: Offer,
    comparators: &BTreeMap<String, ComparatorRef>,
) -> Result<Listing, Refused> {
    let capability = offer.capability();
    let accepted = policy
        .check(&offer.registration, &offer.manifest)
        .map_err(|e| Refused {
            capability: capability.clone(),
            code: refusal_code(&e),
            reason: e.to_string(),
        })?;
    if accepted.creator_commission_bps > 0 && !rail.splits_commission() {
        return Err(Refused {
            capability,
            code: "commission_needs_split_settlement",
            reason: format!(
                "a {} bps creator commission cannot be paid on a direct rail: use split settlement (base-task-escrow)",
                accepted.creator_commission_bps
            ),
        });
    }
    let comparator = match &offer.manifest.validation.comparator {
        Some(wanted) => Some(comparators.get(wanted).cloned().ok_or_else(|| Refused {
            capability: capability.clone(),
            code: "comparator_unavailable",
            reason: format!(
                "its comparator {wanted} is not published on this gateway (--publish it)"
            ),
        })?),
        None => None,
    };
    let quorum = offer.manifest.validation.quorum.max(1) as usize;
    let mode = if quorum > 1 {
        Mode::Quorum
    } else {
        Mode::Single
    };
    Ok(Listing {
        offer,
        accepted,
        mode,
        fanout: quorum,
        quorum,
        comparator,
    })
}

fn refusal_code(e: &d402_registry::PolicyRefusal) -> &'static str {
    use d402_registry::PolicyRefusal::*;
    match e {
        InvalidRegistration(_) => "invalid_registration",
        InvalidManifest(_) => "invalid_manifest",
        BadSignature(_) => "unsigned_registration",
        ManifestCidMismatch { .. } => "manifest_cid_mismatch",
        NamespaceMismatch { .. } => "namespace_mismatch",
        UntrustedNamespace { .. } => "untrusted_namespace",
        MissingNamespaceProof { .. } => "missing_namespace_proof",
        NamespaceOwnerMismatch { .. } => "namespace_owner_mismatch",
        BadNamespaceProof { .. } => "bad_namespace_proof",
        CommissionAboveCap { .. } => "commission_above_cap",
        MissingCreatorWallet { .. } => "missing_creator_wallet",
        ManifestNotAccepted { .. } => "manifest_not_accepted",
        ImplementationNotAccepted { .. } => "implementation_not_accepted",
        Canonical(_) => "invalid_registration",
    }
}

/// Why an input is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputRefusal {
    #[error("input is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("input must be a JSON object")]
    NotAnObject,
    #[error("url {url:?} refused: {why}")]
    Url { url: String, why: &'static str },
}

impl SalePolicy {
    /// Checks an input against the size and URL policy; returns its canonical text.
    pub fn check_input(&self, input: &serde_json::Value) -> Result<String, InputRefusal> {
        if !input.is_object() {
            return Err(InputRefusal::NotAnObject);
        }
        let text = input.to_string();
        if text.len() > self.max_input_bytes {
            return Err(InputRefusal::TooLarge {
                size: text.len(),
                max: self.max_input_bytes,
            });
        }
        if let Some(url) = input.get("url") {
            let raw = url.as_str().unwrap_or_default();
            self.check_url(raw).map_err(|why| InputRefusal::Url {
                url: raw.to_string(),
                why,
            })?;
        }
        Ok(text)
    }

    /// The URL policy: http(s) only; loopback, private, link-local and unspecified addresses
    /// (and `localhost`) only when `allow_private_targets` is on. Names that resolve to private
    /// addresses are caught again by the workers' egress policy at connect time.
    pub fn check_url(&self, raw: &str) -> Result<(), &'static str> {
        let url = url::Url::parse(raw).map_err(|_| "not a URL")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("only http and https are allowed");
        }
        if self.allow_private_targets {
            return Ok(());
        }
        match url.host() {
            None => Err("no host"),
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    Err("loopback targets are not allowed")
                } else {
                    Ok(())
                }
            }
            Some(url::Host::Ipv4(ip)) => public_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => public_ip(IpAddr::V6(ip)),
        }
    }
}

fn public_ip(ip: IpAddr) -> Result<(), &'static str> {
    let private = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| public_ip(IpAddr::V4(v4)).is_err())
        }
    };
    if private {
        Err("private and loopback targets are not allowed")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy_refuses_private_targets_unless_allowed() {
        let mut p = SalePolicy::default();
        for bad in [
            "http://127.0.0.1/",
            "http://localhost:8080/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "file:///etc/passwd",
            "http://169.254.169.254/latest",
        ] {
            assert!(p.check_url(bad).is_err(), "{bad}");
        }
        assert!(p.check_url("https://doc.rust-lang.org/book/").is_ok());
        p.allow_private_targets = true;
        assert!(p.check_url("http://127.0.0.1:9/").is_ok());
        assert!(p.check_url("ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn inputs_are_capped_and_must_be_objects() {
        let p = SalePolicy {
            max_input_bytes: 10,
            ..SalePolicy::default()
        };
        assert_eq!(
            p.check_input(&serde_json::json!([1])),
            Err(InputRefusal::NotAnObject)
        );
        assert!(matches!(
            p.check_input(&serde_json::json!({"a": "0123456789"})),
            Err(InputRefusal::TooLarge { .. })
        ));
        assert_eq!(p.check_input(&serde_json::json!({})).unwrap(), "{}");
    }
}
