//! Egress: the only way a capability's requests leave the node: the network client that applies
//! the policy of [`d402_core::egress`] (re-exported here) on every request and every redirect hop.
//!
//! The address check runs twice: once before the request, to give a typed refusal, and again
//! inside the HTTP client's resolver, so a name that changes its answer between the two lookups
//! (DNS rebinding) still cannot reach an inward address.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

pub(crate) use d402_core::egress::*;

/// A request for the network, already past the policy checks of the task.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// What came back: the final URL after redirects, status, headers and the body.
#[derive(Debug, Clone)]
pub struct InboundResponse {
    pub final_url: Url,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The budget a request may spend: what is left of the task's allowance.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub requests: u32,
    pub bytes: u64,
    pub timeout: Duration,
    pub policy_requests: u32,
    pub policy_bytes: u64,
}

/// The node's HTTP client for capability egress. One per node; cheap to share.
#[derive(Default)]
pub struct NetworkEgress {
    strict: OnceLock<Result<reqwest::blocking::Client, String>>,
    permissive: OnceLock<Result<reqwest::blocking::Client, String>>,
}

/// The resolver the HTTP client uses: it drops inward addresses, so a rebinding name cannot slip
/// through between the policy check and the connection.
struct OutwardResolver;

#[derive(Debug, thiserror::Error)]
#[error("`{0}` resolves only to inward addresses")]
struct OnlyInward(String);

impl reqwest::dns::Resolve for OutwardResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| inward_class(a.ip()).is_none())
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(OnlyInward(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

const MAX_REDIRECTS: u32 = 5;

impl NetworkEgress {
    pub fn new() -> Self {
        Self::default()
    }

    fn client(&self, allow_private: bool) -> Result<&reqwest::blocking::Client, NetworkFailure> {
        let cell = if allow_private {
            &self.permissive
        } else {
            &self.strict
        };
        let client = cell.get_or_init(|| {
            let mut builder = reqwest::blocking::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("d402/", env!("CARGO_PKG_VERSION")))
                .timeout(None);
            if !allow_private {
                builder = builder.dns_resolver(Arc::new(OutwardResolver));
            }
            builder.build().map_err(|e| e.to_string())
        });
        client
            .as_ref()
            .map_err(|e| NetworkFailure::Unavailable(format!("HTTP client: {e}")))
    }

    /// Sends one request, following redirects through the same checks, and reads the body
    /// within `allowance`. The outer `Err` ends the task; the inner one goes to the capability.
    pub fn send(
        &self,
        policy: &EgressPolicy,
        require_allowlist: bool,
        mut request: OutboundRequest,
        allowance: &mut Allowance,
    ) -> Result<Result<InboundResponse, NetworkFailure>, EgressViolation> {
        let client = match self.client(policy.allow_private_targets) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let started = std::time::Instant::now();
        let mut hops = 0;
        loop {
            let url = request.url.clone();
            if require_allowlist {
                let host = url.host_str().unwrap_or_default();
                if !policy.host_allowed(host) {
                    return Err(EgressDenied::HostNotAllowed(host.to_string()).into());
                }
            }
            if !check_target(&url, policy.allow_private_targets)? {
                return Ok(Err(NetworkFailure::Unavailable(format!(
                    "`{}` does not resolve",
                    url.host_str().unwrap_or_default()
                ))));
            }
            if allowance.requests == 0 {
                return Err(BudgetExceeded::Requests {
                    limit: allowance.policy_requests,
                }
                .into());
            }
            allowance.requests -= 1;
            let remaining = allowance.timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Ok(Err(NetworkFailure::Timeout(format!("{url}: out of time"))));
            }
            let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
                Ok(m) => m,
                Err(_) => {
                    return Ok(Err(NetworkFailure::Unavailable(format!(
                        "invalid method {:?}",
                        request.method
                    ))));
                }
            };
            let mut builder = client
                .request(method.clone(), url.clone())
                .timeout(remaining);
            for (k, v) in &request.headers {
                builder = builder.header(k, v);
            }
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let response = match builder.send() {
                Ok(r) => r,
                Err(e) => return Ok(Err(failure_of(&url, e))),
            };
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(reqwest::header::LOCATION)
            {
                {
                    hops += 1;
                    if hops > MAX_REDIRECTS {
                        return Ok(Err(NetworkFailure::Unavailable(format!(
                            "{url}: more than {MAX_REDIRECTS} redirects"
                        ))));
                    }
                    let next = location
                        .to_str()
                        .ok()
                        .and_then(|l| url.join(l).ok())
                        .ok_or_else(|| EgressDenied::InvalidUrl {
                            url: format!("{location:?}"),
                            reason: "unusable redirect location".into(),
                        })?;
                    request.url = parse_url(next.as_str())?;
                    if status != reqwest::StatusCode::TEMPORARY_REDIRECT
                        && status != reqwest::StatusCode::PERMANENT_REDIRECT
                    {
                        request.method = "GET".into();
                        request.body = None;
                    }
                    continue;
                }
            }
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            let limit = allowance.bytes;
            if let Err(e) = response
                .take(limit.saturating_add(1))
                .read_to_end(&mut body)
            {
                return Ok(Err(NetworkFailure::Unavailable(format!(
                    "{url}: reading body: {e}"
                ))));
            }
            if body.len() as u64 > limit {
                return Err(BudgetExceeded::Bytes {
                    limit: allowance.policy_bytes,
                }
                .into());
            }
            allowance.bytes -= body.len() as u64;
            return Ok(Ok(InboundResponse {
                final_url: url,
                status: status.as_u16(),
                headers,
                body,
            }));
        }
    }
}

fn failure_of(url: &Url, e: reqwest::Error) -> NetworkFailure {
    if e.is_timeout() {
        NetworkFailure::Timeout(format!("{url}: timed out"))
    } else {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        NetworkFailure::Unavailable(format!("{url}: {msg}"))
    }
}
