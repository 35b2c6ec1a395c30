//! The one error type of the host boundary: every way a task can fail, each its own variant.

use crate::egress::{BudgetExceeded, EgressDenied};
use crate::evidence::EvidenceError;
use crate::store::StoreError;
use d402_core::content_id::{CidMismatch, ContentId};

/// Why a task did not produce an output. A limit hit never takes the node down: each of these is
/// returned from [`crate::Host::execute`] and the node carries on.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The deterministic instruction budget ran out.
    #[error("fuel exhausted: the capability used all {limit} units of fuel")]
    FuelExhausted { limit: u64 },
    /// The task ran past its wall-time limit (in guest code or in a host call).
    #[error("wall time exceeded: the task ran longer than {limit_ms} ms")]
    WallTimeExceeded { limit_ms: u64 },
    /// Linear memory would have grown past the limit.
    #[error("memory limit: the capability asked for {requested} bytes, the limit is {limit}")]
    MemoryLimit { requested: u64, limit: u64 },
    /// A table would have grown past the limit.
    #[error("table limit: the capability asked for {requested} elements, the limit is {limit}")]
    TableLimit { requested: u64, limit: u64 },
    /// The guest asked the host to hold more on its behalf than the task allows: too many handles
    /// at once, or too many random bytes in one call. Counted, because host memory spent for the
    /// guest lies outside its linear-memory limit.
    #[error("resource limit: the capability asked for {requested} {what}, the limit is {limit}")]
    ResourceLimit {
        what: &'static str,
        requested: u64,
        limit: u64,
    },
    /// The guest's call stack overflowed.
    #[error("stack overflow in the capability")]
    StackOverflow,
    /// The output (or captured stdout/stderr) is larger than allowed.
    #[error("output too large: {what} of {size} bytes exceeds the limit of {limit}")]
    OutputTooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// The egress policy refused a request.
    #[error("egress denied: {0}")]
    EgressDenied(EgressDenied),
    /// The task's egress budget ran out.
    #[error("egress budget exceeded: {0}")]
    EgressBudgetExceeded(BudgetExceeded),
    /// In a replay, the capability made a request the evidence does not hold.
    #[error(
        "evidence missing: replay has no recorded {kind} for {target} (replays never touch the network)"
    )]
    EvidenceMissing { kind: &'static str, target: String },
    /// The evidence could not be loaded.
    #[error("evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// The bytes are not a valid d402 component.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component imports something d402 does not provide. Refused before it runs.
    #[error("component imports `{name}`, which d402 does not provide")]
    UnknownImport { name: String },
    /// The component imports an interface capabilities may not use. Refused before it runs.
    #[error("component imports `{name}`, which capabilities are not allowed to use")]
    ForbiddenImport { name: String },
    /// Bytes presented under a CID they do not hash to. Never run.
    #[error("refused to load component: {0}")]
    CidMismatch(#[from] CidMismatch),
    /// The host was asked to run an implementation it has not loaded.
    #[error("implementation {0} is not loaded")]
    NotLoaded(ContentId),
    /// The input is not JSON text, or is too large.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The capability returned its own typed error.
    #[error("capability error [{code}]: {message}")]
    Guest { code: String, message: String },
    /// The capability returned something that is not JSON.
    #[error("capability output is not JSON: {0}")]
    InvalidOutput(String),
    /// The capability trapped for a reason that is not a limit (a panic, an `unreachable`).
    #[error("capability trapped: {0}")]
    GuestTrap(String),
    /// The node could not run the task (instance pool full, compiler failure, storage).
    #[error("host: {0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HostError {
    /// A stable, machine-readable name for the variant, for logs, metrics and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            HostError::FuelExhausted { .. } => "fuel_exhausted",
            HostError::WallTimeExceeded { .. } => "wall_time_exceeded",
            HostError::MemoryLimit { .. } => "memory_limit",
            HostError::TableLimit { .. } => "table_limit",
            HostError::ResourceLimit { .. } => "resource_limit",
            HostError::StackOverflow => "stack_overflow",
            HostError::OutputTooLarge { .. } => "output_too_large",
            HostError::EgressDenied(_) => "egress_denied",
            HostError::EgressBudgetExceeded(_) => "egress_budget_exceeded",
            HostError::EvidenceMissing { .. } => "evidence_missing",
            HostError::Evidence(_) => "evidence_invalid",
            HostError::InvalidComponent(_) => "invalid_component",
            HostError::UnknownImport { .. } => "unknown_import",
            HostError::ForbiddenImport { .. } => "forbidden_import",
            HostError::CidMismatch(_) => "cid_mismatch",
            HostError::NotLoaded(_) => "not_loaded",
            HostError::InvalidInput(_) => "invalid_input",
            HostError::Guest { .. } => "capability_error",
            HostError::InvalidOutput(_) => "invalid_output",
            HostError::GuestTrap(_) => "guest_trap",
            HostError::Internal(_) => "internal",
            HostError::Store(_) => "store",
        }
    }
}
