//! What a guest's imports reach: the state a task's store holds (WASI context, resource table,
//! memory guard, evidence and budgets) and the host functions of the `d402:capability` world
//! (snapshot, fetch, log), live or replayed from evidence.
//!
//! Apart from [`crate::task`], which runs a task, so that the compiled-component cache
//! ([`crate::compiled`]) can name the store's state without depending on the runner.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::egress::{
    Allowance, BudgetExceeded, EgressDenied, EgressPolicy, EgressViolation, NetworkEgress,
    NetworkFailure, OutboundRequest, parse_url,
};
use crate::error::HostError;
use crate::evidence::{
    EvidenceError, EvidenceRecord, EvidenceRecorder, FetchRequestRecord, FetchResponseRecord,
    FrozenPageRecord, Outcome, ReplayBook,
};
use crate::limits::MemoryGuard;
use crate::sandbox::GuestAllowance;
use crate::snapshot::{SnapshotError, SnapshotLimits, Snapshotter};
use d402_core::content_id::ContentId;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "capability",
        imports: { default: trappable },
    });
}

pub(crate) use bindings::Capability;
pub(crate) use bindings::CapabilityPre;
pub(crate) use bindings::d402::capability::host as wit;
pub(crate) use bindings::d402::capability::types::CapabilityError;

/// Where a task's imports get their bytes.
pub enum EvidenceMode {
    /// From the network and the snapshotter, recording everything.
    Live { snapshotter: Arc<dyn Snapshotter> },
    /// From recorded evidence only; the network is never touched.
    Replay(ReplayBook),
}

/// A log line from the capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// The per-task state a store holds.
pub struct TaskState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryGuard,
    pub(crate) io: TaskIo,
}

pub(crate) struct TaskIo {
    pub(crate) mode: EvidenceMode,
    pub(crate) recorder: EvidenceRecorder,
    pub(crate) policy: EgressPolicy,
    pub(crate) network: Arc<NetworkEgress>,
    pub(crate) requests_left: u32,
    pub(crate) bytes_left: u64,
    pub(crate) deadline: Instant,
    pub(crate) wall_time_ms: u64,
    pub(crate) fatal: Option<HostError>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) log_bytes_left: usize,
    pub(crate) log_records_left: usize,
    pub(crate) logs_dropped: usize,
    pub(crate) random_bytes_per_call: u64,
    pub(crate) handles: usize,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Marks a host-ended task: the real reason is in `TaskIo::fatal`.
#[derive(Debug, thiserror::Error)]
#[error("d402 host stopped the task")]
struct Stopped;

impl GuestAllowance for TaskState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
    fn random(&mut self) -> &mut wasmtime_wasi::random::WasiRandomCtx {
        self.wasi.random()
    }
    fn random_bytes_per_call(&self) -> u64 {
        self.io.random_bytes_per_call
    }
    fn refuse(&mut self, error: HostError) -> wasmtime::Error {
        self.io.end(error)
    }
}

impl TaskIo {
    /// Records why the host ends the task (the first reason wins) and gives the error that unwinds
    /// the guest.
    fn end(&mut self, error: HostError) -> wasmtime::Error {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
        wasmtime::Error::new(Stopped)
    }

    fn stop<T>(&mut self, error: HostError) -> wasmtime::Result<T> {
        Err(self.end(error))
    }

    fn violation<T>(&mut self, v: EgressViolation) -> wasmtime::Result<T> {
        self.stop(match v {
            EgressViolation::Denied(d) => HostError::EgressDenied(d),
            EgressViolation::Budget(b) => HostError::EgressBudgetExceeded(b),
        })
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn take_request(&mut self) -> Result<(), EgressViolation> {
        if self.requests_left == 0 {
            return Err(BudgetExceeded::Requests {
                limit: self.policy.max_requests,
            }
            .into());
        }
        self.requests_left -= 1;
        Ok(())
    }

    /// A URL from the capability: a malformed one is the capability's problem (it is told), a
    /// forbidden scheme is a policy violation (the task stops).
    fn guest_url(&mut self, raw: &str) -> wasmtime::Result<Result<url::Url, wit::HostError>> {
        match parse_url(raw) {
            Ok(url) => Ok(Ok(url)),
            Err(EgressDenied::InvalidUrl { reason, .. }) => Ok(Err(wit::HostError::Unavailable(
                format!("invalid URL: {reason}"),
            ))),
            Err(denied) => self.violation(denied.into()),
        }
    }

    fn record(&mut self, record: &EvidenceRecord) -> wasmtime::Result<()> {
        match self.recorder.record(record) {
            Ok(_) => Ok(()),
            Err(EvidenceError::TooManyRecords { limit }) => self.stop(HostError::ResourceLimit {
                what: "evidence records",
                requested: limit as u64 + 1,
                limit: limit as u64,
            }),
            Err(e) => self.stop(HostError::Evidence(e)),
        }
    }
}

fn guest_failure(f: NetworkFailure) -> wit::HostError {
    match f {
        NetworkFailure::Unavailable(m) => wit::HostError::Unavailable(m),
        NetworkFailure::Timeout(m) => wit::HostError::Timeout(m),
    }
}

impl bindings::d402::capability::types::Host for TaskState {}

impl wit::Host for TaskState {
    fn snapshot(
        &mut self,
        request: wit::SnapshotRequest,
    ) -> wasmtime::Result<Result<wit::FrozenPage, wit::HostError>> {
        let io = &mut self.io;
        let url = match io.guest_url(&request.url)? {
            Ok(url) => url,
            Err(unusable) => return Ok(Err(unusable)),
        };
        if !io.policy.allow_snapshot {
            return io.violation(EgressDenied::SnapshotNotPermitted.into());
        }
        let key = url.to_string();
        if let EvidenceMode::Replay(book) = &mut io.mode {
            return match book.next_snapshot(&key) {
                None => io.stop(HostError::EvidenceMissing {
                    kind: "snapshot",
                    target: key,
                }),
                Some((Outcome::Failed(f), _)) => Ok(Err(guest_failure(f))),
                Some((Outcome::Ok(page), body)) => {
                    let html = body.and_then(|b| String::from_utf8(b).ok());
                    match html {
                        Some(html) => Ok(Ok(wit::FrozenPage {
                            final_url: page.final_url,
                            html,
                            cid: page.html.to_string(),
                        })),
                        None => io.stop(HostError::Internal(format!(
                            "recorded snapshot {} is not UTF-8 HTML",
                            page.html
                        ))),
                    }
                }
            };
        }
        if let Err(v) = io.take_request() {
            return io.violation(v);
        }
        let EvidenceMode::Live { snapshotter } = &io.mode else {
            unreachable!("replay returned above")
        };
        let snapshotter = snapshotter.clone();
        let asked = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()));
        let timeout = asked
            .unwrap_or(io.policy.request_timeout)
            .min(io.policy.request_timeout)
            .min(io.remaining());
        let limits = SnapshotLimits {
            timeout,
            max_bytes: io.bytes_left,
            allow_private_targets: io.policy.allow_private_targets,
        };
        match snapshotter.freeze(&url, &limits) {
            Err(SnapshotError::Violation(v)) => io.violation(v),
            Err(SnapshotError::Network(f)) => {
                io.record(&EvidenceRecord::Snapshot {
                    url: key,
                    outcome: Outcome::Failed(f.clone()),
                })?;
                Ok(Err(guest_failure(f)))
            }
            Ok(frozen) => {
                let size = frozen.html.len() as u64;
                if size > io.bytes_left {
                    return io.violation(
                        BudgetExceeded::Bytes {
                            limit: io.policy.max_response_bytes,
                        }
                        .into(),
                    );
                }
                io.bytes_left -= size;
                let html_cid = io.recorder.body(frozen.html.clone().into_bytes());
                io.record(&EvidenceRecord::Snapshot {
                    url: key,
                    outcome: Outcome::Ok(FrozenPageRecord {
                        final_url: frozen.final_url.clone(),
                        html: html_cid,
                        snapshotter: snapshotter.name().to_string(),
                    }),
                })?;
                Ok(Ok(wit::FrozenPage {
                    final_url: frozen.final_url,
                    html: frozen.html,
                    cid: html_cid.to_string(),
                }))
            }
        }
    }

    fn fetch(
        &mut self,
        request: wit::HttpRequest,
    ) -> wasmtime::Result<Result<wit::HttpResponse, wit::HostError>> {
        let io = &mut self.io;
        let url = match io.guest_url(&request.url)? {
            Ok(url) => url,
            Err(unusable) => return Ok(Err(unusable)),
        };
        let host = url.host_str().unwrap_or_default().to_string();
        if !io.policy.host_allowed(&host) {
            return io.violation(EgressDenied::HostNotAllowed(host).into());
        }
        let body_cid = request.body.as_ref().map(|b| ContentId::of(b));
        let key = FetchRequestRecord {
            method: request.method.clone(),
            url: url.to_string(),
            headers: request.headers.clone(),
            body: body_cid,
        };
        if let EvidenceMode::Replay(book) = &mut io.mode {
            return match book.next_fetch(&key) {
                None => io.stop(HostError::EvidenceMissing {
                    kind: "fetch",
                    target: key.url,
                }),
                Some((Outcome::Failed(f), _)) => Ok(Err(guest_failure(f))),
                Some((Outcome::Ok(resp), body)) => Ok(Ok(wit::HttpResponse {
                    status: resp.status,
                    headers: resp.headers,
                    body: body.unwrap_or_default(),
                })),
            };
        }
        if let Some(body) = &request.body {
            io.recorder.body(body.clone());
        }
        let mut allowance = Allowance {
            requests: io.requests_left,
            bytes: io.bytes_left,
            timeout: io.policy.request_timeout.min(io.remaining()),
            policy_requests: io.policy.max_requests,
            policy_bytes: io.policy.max_response_bytes,
        };
        let outbound = OutboundRequest {
            method: request.method,
            url,
            headers: request.headers,
            body: request.body,
        };
        let network = io.network.clone();
        let sent = network.send(&io.policy, true, outbound, &mut allowance);
        io.requests_left = allowance.requests;
        io.bytes_left = allowance.bytes;
        match sent {
            Err(v) => io.violation(v),
            Ok(Err(f)) => {
                io.record(&EvidenceRecord::Fetch {
                    request: key,
                    outcome: Outcome::Failed(f.clone()),
                })?;
                Ok(Err(guest_failure(f)))
            }
            Ok(Ok(resp)) => {
                let body = io.recorder.body(resp.body.clone());
                io.record(&EvidenceRecord::Fetch {
                    request: key,
                    outcome: Outcome::Ok(FetchResponseRecord {
                        final_url: resp.final_url.to_string(),
                        status: resp.status,
                        headers: resp.headers.clone(),
                        body,
                    }),
                })?;
                Ok(Ok(wit::HttpResponse {
                    status: resp.status,
                    headers: resp.headers,
                    body: resp.body,
                }))
            }
        }
    }

    fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
        let io = &mut self.io;
        // Counted by records as well as bytes: an empty message still costs the host a record.
        if message.len() > io.log_bytes_left || io.log_records_left == 0 {
            io.logs_dropped += 1;
            return Ok(());
        }
        io.log_bytes_left -= message.len();
        io.log_records_left -= 1;
        let level = match level {
            wit::LogLevel::Debug => "debug",
            wit::LogLevel::Info => "info",
            wit::LogLevel::Warn => "warn",
            wit::LogLevel::Error => "error",
        };
        io.logs.push(LogLine { level, message });
        Ok(())
    }
}
