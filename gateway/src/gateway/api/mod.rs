//! The HTTP API (DESIGN.md §9), on axum. Handlers are thin: they parse, call
//! [`crate::gateway::Gateway`] and render; every error renders once, as an [`ApiError`].
//!
//! - [`tasks`]: `POST /tasks` and the task routes.
//! - [`describe`]: health, the well-known document, the capabilities, `/openapi.json`, metrics.
//! - [`facilitator`]: `/x402/supported`, `/x402/verify`, `/x402/settle` for other x402 servers.
//! - [`channel`]: `GET /channel/refund`, a channel rail's cooperative refund.
//! - [`payment_header`]: the x402 headers.
//! - [`error`]: the error type and every status code.
//!
//! `/openapi.json` is generated from the handlers' types with utoipa (OpenAPI 3.1) and describes
//! every response they give, errors included; the gateway's `openapi` test checks it against the
//! OpenAPI 3.1 schema and fuzzes the live API from it.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use utoipa::OpenApi;

use super::{Gateway, TaskState};

pub mod channel;
pub mod describe;
pub mod error;
pub mod facilitator;
pub mod payment_header;
pub mod tasks;

use channel::*;
use describe::*;
pub use error::{ApiError, ErrorBody};
use error::{no_route, wrong_method};
use facilitator::*;
pub use payment_header::{decode_header, decode_payment, encode_header};
use tasks::*;

/// The x402 v2 request header carrying the payment.
pub const PAYMENT_SIGNATURE: &str = "payment-signature";

/// The x402 v1 request header.
pub const X_PAYMENT: &str = "x-payment";

pub const PAYMENT_REQUIRED: &str = "payment-required";

pub const PAYMENT_RESPONSE: &str = "payment-response";

/// Set on a response returned again for a repeated `payment-identifier`.
pub const IDEMPOTENT_REPLAY: &str = "x-d402-idempotent-replay";

/// The routes, with the request body cap.
pub fn router(gw: Arc<Gateway>) -> Router {
    let limit = gw.policy.max_input_bytes + 16 * 1024;
    Router::new()
        .route("/health", get(health))
        .route("/.well-known/d402-gateway.json", get(describe))
        .route("/capabilities", get(capabilities))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/tasks", post(create_task))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/result", get(task_result))
        .route("/tasks/{id}/receipt", get(task_receipt))
        .route("/x402/supported", get(supported))
        .route("/x402/verify", post(verify))
        .route("/x402/settle", post(settle))
        .route("/channel/refund", get(channel_refund))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gw)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "d402 gateway",
        description = "Sells d402 network capabilities over HTTP for x402 v2 payments."
    ),
    paths(
        health,
        describe,
        capabilities,
        openapi,
        metrics,
        create_task,
        task,
        task_result,
        task_receipt,
        supported,
        verify,
        settle,
        channel_refund
    ),
    components(schemas(
        ErrorBody,
        Health,
        GatewayDescription,
        CapabilityView,
        ComparatorView,
        RefusedView,
        RailView,
        TaskRequest,
        TaskView,
        PaymentView,
        WorkerPay,
        TaskState,
        ReceiptView,
        PaymentChallenge,
        ResourceView,
        RequirementsView,
        TaskFailure,
        FacilitatorRequest,
        VerifyResponse,
        SettleResponse,
        SupportedKind,
        Supported
    ))
)]
pub struct ApiDoc;

/// Serves `router(gw)` on `listener` until `shutdown` resolves.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gw))
        .with_graceful_shutdown(shutdown)
        .await
}
