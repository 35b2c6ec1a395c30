//! [`GatewayError`]: everything the gateway refuses or fails with, typed end to end. Each
//! variant has a stable machine-readable [`GatewayError::code`]; the HTTP status each one is
//! answered with is the API's business ([`super::api::ApiError`]).

use d402_rails::{PaymentRequired, RailError};

use super::policy::InputRefusal;
use super::store::{StoreError, TaskState};

/// Everything the gateway refuses or fails with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no capability {0} is sold here")]
    UnknownCapability(String),
    #[error("{capability} is not sold: {reason}")]
    CapabilityRefused {
        capability: String,
        code: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Input(#[from] InputRefusal),
    /// The rail refused to issue requirements for the terms (a safety cap, commission on a
    /// direct rail): the reason, as the buyer reads it.
    #[error("no challenge issued: {0}")]
    ChallengeRefused(String),
    #[error("payment required: {message}")]
    PaymentRequired {
        /// The x402 reason (`invalid_exact_evm_payload_signature`, …) when a payment was refused.
        reason: Option<&'static str>,
        message: String,
        required: Box<PaymentRequired>,
    },
    #[error("payment header: {0}")]
    PaymentHeader(String),
    #[error("payment-identifier {0:?} was used with a different payment")]
    IdempotencyConflict(String),
    #[error("no task {0}")]
    TaskNotFound(String),
    #[error("task {id} has no {what} yet (state {state:?})")]
    NotReady {
        id: String,
        what: &'static str,
        state: TaskState,
    },
    #[error("payment rail: {0}")]
    Rail(#[from] RailError),
    /// Paying a batch of owed worker pay failed; the batch stays unpaid and is retried.
    #[error("paying out {batch}: {source}")]
    Payout {
        batch: String,
        #[source]
        source: RailError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The incident switch is on: nothing new is sold until the operator turns it off.
    #[error(
        "the gateway is not taking new payments (incident switch {0} is on); paid work still finishes"
    )]
    IncidentShutdown(String),
}

impl GatewayError {
    /// The stable machine-readable code clients match on.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            UnknownCapability(_) => "unknown_capability",
            CapabilityRefused { code, .. } => code,
            Input(InputRefusal::TooLarge { .. }) => "input_too_large",
            Input(InputRefusal::NotAnObject) => "invalid_input",
            Input(InputRefusal::Url { .. }) => "url_refused",
            ChallengeRefused(_) => "challenge_refused",
            PaymentRequired { reason, .. } => reason.unwrap_or("payment_required"),
            PaymentHeader(_) => "invalid_payment_header",
            IdempotencyConflict(_) => "payment_identifier_conflict",
            TaskNotFound(_) => "task_not_found",
            NotReady { .. } => "not_ready",
            Rail(_) | Payout { .. } => "rail_unavailable",
            Store(_) => "internal",
            IncidentShutdown(_) => "incident_shutdown",
        }
    }
}
