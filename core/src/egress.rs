//! The egress policy: which requests a capability may make, and which addresses are inward.
//!
//! The policy lives here, apart from the network client (`d402_host::egress`), so that the
//! snapshotter and the registry share it without compiling the sandbox.
//!
//! Two questions are asked of every request. *May this capability talk to this host?* (the
//! manifest's allowlist, checked on every redirect hop too) and *is this address outside the node's
//! own network?* (loopback, private, link-local, carrier-grade NAT and cloud metadata addresses are
//! refused **after** DNS resolution, so a public-looking name that resolves inward is refused as
//! well). The second check runs twice: once before the request, to give a typed refusal, and again
//! inside the HTTP client's resolver, so a name that changes its answer between the two lookups
//! (DNS rebinding) still cannot reach an inward address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::time::Duration;

use url::Url;

/// The egress rules of one task: from the manifest's permissions, capped by node policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Hosts `fetch` may reach: an exact name (`api.example.com`) or every subdomain and the name
    /// itself (`*.example.com`). Empty means `fetch` may reach nothing.
    pub allowed_hosts: Vec<String>,
    /// Whether `snapshot` may be used at all.
    pub allow_snapshot: bool,
    /// Whether loopback, private, link-local and metadata addresses may be reached. Off in
    /// production; tests and a local devnet turn it on explicitly.
    pub allow_private_targets: bool,
    /// Requests per task, counting snapshots and every redirect hop.
    pub max_requests: u32,
    /// Response bytes per task, bodies of fetches and snapshots together.
    pub max_response_bytes: u64,
    /// Upper bound for one request; the task's remaining wall time may cut it shorter.
    pub request_timeout: Duration,
}

impl Default for EgressPolicy {
    /// Nothing allowed: no hosts, no snapshots, no private targets.
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_snapshot: false,
            allow_private_targets: false,
            max_requests: 16,
            max_response_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a request was refused. A refusal stops the task; it is never handed to the capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenied {
    #[error("{url:?} is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("scheme `{0}` is refused: only http and https are allowed")]
    Scheme(String),
    #[error("host `{0}` is not in the capability's egress allowlist")]
    HostNotAllowed(String),
    #[error("`{host}` is {addr}, a {class} address")]
    InwardAddress {
        host: String,
        addr: IpAddr,
        class: AddressClass,
    },
    #[error("this capability is not permitted to take snapshots")]
    SnapshotNotPermitted,
}

/// A per-task egress budget that ran out. Like a refusal, this stops the task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error("more than {limit} requests")]
    Requests { limit: u32 },
    #[error("more than {limit} response bytes")]
    Bytes { limit: u64 },
}

/// An egress problem that ends the task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressViolation {
    #[error(transparent)]
    Denied(#[from] EgressDenied),
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
}

/// The kinds of address a capability may never reach by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    Private,
    LinkLocal,
    CloudMetadata,
    SharedNat,
    Unspecified,
    Multicast,
    Reserved,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::SharedNat => "shared (carrier-grade NAT)",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// Classifies an address that points into the node's own network, or `None` for a public one.
pub fn inward_class(addr: IpAddr) -> Option<AddressClass> {
    match addr {
        IpAddr::V4(v4) => inward_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return inward_v4(v4);
            }
            let seg = v6.segments();
            // NAT64 (64:ff9b::/96) embeds an IPv4 address that may point inward.
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return inward_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            if v6.is_loopback() {
                Some(AddressClass::Loopback)
            } else if v6.is_unspecified() {
                Some(AddressClass::Unspecified)
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some(AddressClass::CloudMetadata)
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some(AddressClass::Private)
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some(AddressClass::LinkLocal)
            } else if seg[0] & 0xff00 == 0xff00 {
                Some(AddressClass::Multicast)
            } else if seg[0] == 0 {
                // ::/8 other than the cases above (IPv4-compatible, reserved).
                Some(AddressClass::Reserved)
            } else {
                None
            }
        }
    }
}

fn inward_v4(v4: Ipv4Addr) -> Option<AddressClass> {
    let o = v4.octets();
    if v4.is_loopback() {
        Some(AddressClass::Loopback)
    } else if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200) {
        Some(AddressClass::CloudMetadata)
    } else if v4.is_link_local() {
        Some(AddressClass::LinkLocal)
    } else if v4.is_private() {
        Some(AddressClass::Private)
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some(AddressClass::SharedNat)
    } else if o[0] == 0 {
        Some(AddressClass::Unspecified)
    } else if v4.is_multicast() {
        Some(AddressClass::Multicast)
    } else if o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        // 240/4 and broadcast, IETF protocol assignments, benchmarking.
        Some(AddressClass::Reserved)
    } else {
        None
    }
}

/// Parses a URL and applies the scheme rule.
pub fn parse_url(raw: &str) -> Result<Url, EgressDenied> {
    let url = Url::parse(raw).map_err(|e| EgressDenied::InvalidUrl {
        url: raw.chars().take(200).collect(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(EgressDenied::Scheme(other.to_string())),
    }
    if url.host().is_none() {
        return Err(EgressDenied::InvalidUrl {
            url: raw.chars().take(200).collect(),
            reason: "no host".into(),
        });
    }
    Ok(url)
}

impl EgressPolicy {
    /// Whether the allowlist admits `host` (a name or an IP literal as written in the URL).
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
                None => host == pattern || pattern == "*",
            }
        })
    }
}

/// Resolves the URL's host and refuses it if any address it resolves to points inward.
///
/// Returns `Ok(false)` if the name does not resolve at all: that is the target being unavailable,
/// not a policy refusal, and the capability is told so.
pub fn check_target(url: &Url, allow_private: bool) -> Result<bool, EgressDenied> {
    if allow_private {
        return Ok(true);
    }
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(url::Host::Domain(name)) => match (name, port).to_socket_addrs() {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => return Ok(false),
        },
        None => return Ok(false),
    };
    for addr in addrs {
        if let Some(class) = inward_class(addr) {
            return Err(EgressDenied::InwardAddress { host, addr, class });
        }
    }
    Ok(true)
}

/// A request that failed for a reason the capability may handle (and that is recorded as evidence).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "message")]
pub enum NetworkFailure {
    Unavailable(String),
    Timeout(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_inward_addresses() {
        let cases = [
            ("127.0.0.1", Some(AddressClass::Loopback)),
            ("10.0.0.1", Some(AddressClass::Private)),
            ("172.16.5.4", Some(AddressClass::Private)),
            ("192.168.1.1", Some(AddressClass::Private)),
            ("169.254.169.254", Some(AddressClass::CloudMetadata)),
            ("169.254.1.1", Some(AddressClass::LinkLocal)),
            ("100.64.0.1", Some(AddressClass::SharedNat)),
            ("0.0.0.0", Some(AddressClass::Unspecified)),
            ("::1", Some(AddressClass::Loopback)),
            ("::ffff:127.0.0.1", Some(AddressClass::Loopback)),
            ("64:ff9b::a00:1", Some(AddressClass::Private)),
            ("fd00:ec2::254", Some(AddressClass::CloudMetadata)),
            ("fc00::1", Some(AddressClass::Private)),
            ("fe80::1", Some(AddressClass::LinkLocal)),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
        ];
        for (addr, class) in cases {
            assert_eq!(inward_class(addr.parse().unwrap()), class, "{addr}");
        }
    }

    #[test]
    fn only_http_and_https() {
        assert!(
            matches!(parse_url("file:///etc/passwd"), Err(EgressDenied::Scheme(s)) if s == "file")
        );
        assert!(matches!(
            parse_url("gopher://x/"),
            Err(EgressDenied::Scheme(_))
        ));
        assert!(matches!(
            parse_url("not a url"),
            Err(EgressDenied::InvalidUrl { .. })
        ));
        assert!(parse_url("https://example.com/a").is_ok());
    }

    #[test]
    fn allowlist_matches_names_and_subdomains_only() {
        let policy = EgressPolicy {
            allowed_hosts: vec!["api.example.com".into(), "*.docs.rs".into()],
            ..Default::default()
        };
        assert!(policy.host_allowed("api.example.com"));
        assert!(policy.host_allowed("API.example.com."));
        assert!(policy.host_allowed("docs.rs"));
        assert!(policy.host_allowed("a.b.docs.rs"));
        assert!(!policy.host_allowed("example.com"));
        assert!(!policy.host_allowed("evildocs.rs"));
        assert!(!policy.host_allowed("api.example.com.evil.net"));
    }

    #[test]
    fn refuses_inward_targets_before_connecting() {
        for raw in [
            "http://127.0.0.1/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
            "http://[::1]/",
        ] {
            let url = parse_url(raw).unwrap();
            let err = check_target(&url, false).unwrap_err();
            assert!(
                matches!(err, EgressDenied::InwardAddress { .. }),
                "{raw}: {err}"
            );
        }
        // Explicitly allowed (tests, devnet): no refusal.
        assert!(check_target(&parse_url("http://127.0.0.1/").unwrap(), true).unwrap());
    }
}
