//! The HTTP API (DESIGN.md §9), on axum. Handlers are thin: they parse, call [`Gateway`] and
//! render. Errors render once, in [`GatewayError`]'s `IntoResponse` or as a [`Refusal`]:
//! `{code, message}` with a stable `code`, plus the `PAYMENT-REQUIRED` header on a 402. Requests
//! the extractors refuse (a body too large, not JSON or of another content type, a path that is
//! not UTF-8, an unknown route or method) get the same JSON error body, never axum's plain text.
//!
//! `/openapi.json` is generated from the handlers' types with utoipa (OpenAPI 3.1) and describes
//! every response they give, errors included; `gateway/tests/openapi.rs` checks it against the
//! OpenAPI 3.1 schema and fuzzes the live API from it.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use d402_rails::{PaymentPayload, PaymentRequirements, RailError, RailKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{OpenApi, ToSchema};

use super::{Gateway, GatewayError, TaskRecord, TaskState, decode_payment, encode_header};

/// The x402 v2 request header carrying the payment.
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// The x402 v1 request header.
pub const X_PAYMENT: &str = "x-payment";
pub const PAYMENT_REQUIRED: &str = "payment-required";
pub const PAYMENT_RESPONSE: &str = "payment-response";
/// Set on a response returned again for a repeated `payment-identifier`.
pub const IDEMPOTENT_REPLAY: &str = "x-d402-idempotent-replay";

/// The JSON body of every error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `payment_required`, `url_refused`,
    /// `invalid_exact_evm_payload_signature`.
    pub code: String,
    pub message: String,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        };
        match self {
            GatewayError::PaymentRequired { required, .. } => {
                // The body repeats the challenge for clients that read bodies, as x402 servers do.
                let mut v = serde_json::to_value(&*required).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.insert("code".into(), json!(body.code));
                    m.insert("message".into(), json!(body.message));
                }
                let mut res = (status, Json(v)).into_response();
                if let Ok(h) = HeaderValue::from_str(&encode_header(&*required)) {
                    res.headers_mut().insert(PAYMENT_REQUIRED, h);
                }
                res
            }
            _ => (status, Json(body)).into_response(),
        }
    }
}

/// A request refused before it reaches the gateway: rendered as an [`ErrorBody`].
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                code: self.code.into(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

/// What a handler fails with: the gateway's error, or a refusal of the request itself.
#[derive(Debug)]
pub enum ApiError {
    Gateway(GatewayError),
    Refused(Refusal),
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError::Gateway(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        ApiError::Refused(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Gateway(e) => e.into_response(),
            ApiError::Refused(e) => e.into_response(),
        }
    }
}

/// A request body the JSON extractor refused: too large (413 `body_too_large`), not declared as
/// `application/json` (415 `unsupported_media_type`), not JSON (400 `invalid_body`), or JSON of
/// the wrong shape (422 `invalid_body`).
fn body_error(e: JsonRejection) -> Response {
    let (status, code) = match &e {
        JsonRejection::MissingJsonContentType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        }
        _ => (StatusCode::BAD_REQUEST, "invalid_body"),
    };
    Refusal {
        status,
        code,
        message: e.body_text(),
    }
    .into_response()
}

/// The `{id}` of a task route. A path the extractor cannot decode (percent-escapes that are not
/// UTF-8) is a 400 `invalid_task_id`.
fn task_id(id: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    id.map(|Path(id)| id).map_err(|e| Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_task_id",
        message: e.body_text(),
    })
}

/// Any route not listed: 404 `not_found`.
async fn no_route() -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route; see /openapi.json".into(),
    }
}

/// A listed route with a method it does not serve: 405 `method_not_allowed` (axum adds the
/// `Allow` header).
async fn wrong_method() -> Refusal {
    Refusal {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "method not allowed on this route; see /openapi.json".into(),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub label: String,
    pub version: String,
    /// The incident switch is on: no new challenges or payments; paid work still finishes.
    pub incident: bool,
}

/// A capability as sold here: every field is the server's policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityView {
    /// `ID@VERSION`.
    pub id: String,
    pub description: String,
    /// Gross price per task in the asset's atomic units.
    pub price: String,
    /// The same in whole units, e.g. `0.01`.
    pub price_decimal: String,
    pub asset: String,
    pub mode: String,
    pub fanout: usize,
    pub quorum: usize,
    pub validation: String,
    pub manifest_cid: String,
    pub registration_cid: String,
    pub implementation_cid: String,
    pub namespace: String,
    pub publisher: String,
    pub creator_commission_bps: u32,
    #[schema(value_type = Object)]
    pub input_schema: Value,
}

/// A capability this gateway refuses to sell, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefusedView {
    pub id: String,
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RailView {
    pub name: String,
    pub kind: String,
    /// CAIP-2 network id, e.g. `eip155:31337`.
    pub network: String,
    pub scheme: String,
    pub asset: String,
}

/// `/.well-known/d402-gateway.json`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayDescription {
    pub name: String,
    pub version: String,
    pub x402_version: u8,
    pub roles: Vec<String>,
    pub capabilities: Vec<CapabilityView>,
    pub refused: Vec<RefusedView>,
    pub payment_rails: Vec<RailView>,
    pub tasks_url: String,
    pub openapi_url: String,
    pub facilitator_url: String,
}

/// `POST /tasks`: what to run. Price, mode, fanout, quorum and limits are the server's; other
/// fields are ignored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "capability": "merkle.verify_proof@1",
    "input": {
        "leaf": "6c656166",
        "proof": [],
        "root": "0d27e27f7827ccd745199e8eb3a6af368e1064af42ae9f83740e98121e2bc025"
    }
}))]
pub struct TaskRequest {
    /// `ID@VERSION`, e.g. `web.page_to_markdown@1`.
    pub capability: String,
    /// The capability's input, a JSON object.
    #[schema(value_type = Object)]
    pub input: Value,
}

/// Money moved for a task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub rail: String,
    pub network: String,
    pub payer: String,
    pub amount: String,
    #[schema(value_type = Option<Object>)]
    pub settlement: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub release: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub refund: Option<Value>,
    /// Direct rails: the delivered task's worker pay, `owed` until its batch is paid out, then
    /// `paid` with the batch's transactions.
    pub worker_pay: Option<WorkerPay>,
}

/// A delivered task's worker pay on a direct rail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPay {
    /// `owed` (not yet paid out) or `paid`.
    pub state: String,
    /// This task's shares: recipient and atomic units.
    #[schema(value_type = Vec<Object>)]
    pub shares: Vec<Value>,
    /// The payout batch that paid (or is paying) them.
    pub batch: Option<String>,
    /// The batch's transactions, once paid.
    pub tx_hashes: Vec<String>,
}

/// A task's state, and its result and receipt once delivered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub task_id: String,
    pub status: TaskState,
    pub capability: String,
    /// The capability's output (any JSON), once delivered.
    pub result: Option<Value>,
    /// The receipt of the first agreeing worker.
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<Value>,
    /// The validator's signed verdict.
    #[schema(value_type = Option<Object>)]
    pub verdict: Option<Value>,
    pub payment: PaymentView,
    pub error: Option<String>,
    pub url: String,
}

impl WorkerPay {
    fn of(gw: &Gateway, task: &str) -> Option<Self> {
        let (owed, batch) = gw.store.pay_of(task).ok()?;
        let share =
            |o: &crate::gateway::store::Owed| json!({"to": o.to, "amount": o.amount.to_string()});
        if let Some(b) = batch {
            return Some(WorkerPay {
                state: if b.paid.is_some() { "paid" } else { "owed" }.into(),
                shares: b
                    .entries
                    .iter()
                    .filter(|o| o.task == task)
                    .map(share)
                    .collect(),
                tx_hashes: b.paid.map(|s| s.tx_hashes).unwrap_or_default(),
                batch: Some(b.id),
            });
        }
        (!owed.is_empty()).then(|| WorkerPay {
            state: "owed".into(),
            shares: owed.iter().map(share).collect(),
            batch: None,
            tx_hashes: Vec::new(),
        })
    }
}

impl TaskView {
    fn of(r: &TaskRecord, gw: &Gateway) -> Self {
        let base = &gw.public_url;
        let to = |s: &Option<d402_rails::Settlement>| {
            s.as_ref().and_then(|s| serde_json::to_value(s).ok())
        };
        TaskView {
            task_id: r.id.clone(),
            status: r.state,
            capability: r.capability.clone(),
            result: r
                .output
                .as_ref()
                .filter(|_| r.state == TaskState::Delivered)
                .map(|o| serde_json::from_str(o).unwrap_or_else(|_| Value::String(o.clone()))),
            receipt: r.receipts.first().cloned(),
            receipts: r.receipts.clone(),
            verdict: r.verdict.clone(),
            payment: PaymentView {
                rail: r.rail.clone(),
                network: r.verified.network.clone(),
                payer: r.verified.payer.clone(),
                amount: r.verified.amount.to_string(),
                settlement: to(&r.settlement),
                release: to(&r.release),
                refund: to(&r.refund),
                worker_pay: WorkerPay::of(gw, &r.id),
            },
            error: r.error.clone(),
            url: format!("{base}/tasks/{}", r.id),
        }
    }
}

/// `GET /tasks/{id}/receipt`: what proves the work and the payment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    pub task_id: String,
    /// One receipt per worker that ran the task.
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<Value>,
    /// The validator's signed verdict.
    #[schema(value_type = Option<Object>)]
    pub verdict: Option<Value>,
    pub payment: PaymentView,
}

/// The body of a 402: the x402 v2 `PaymentRequired` (also base64 in the `PAYMENT-REQUIRED`
/// header), with this API's `code` and `message`. Documents what [`GatewayError`] renders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentChallenge {
    /// Always 2.
    pub x402_version: u8,
    /// `payment_required`, or the x402 reason a payment was refused for.
    pub error: Option<String>,
    pub resource: Option<ResourceView>,
    /// What this gateway accepts for the task; pay one.
    pub accepts: Vec<RequirementsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extensions: Option<Value>,
    /// The same as `error`.
    pub code: String,
    pub message: String,
}

/// x402 v2 `ResourceInfo`: what the payment is for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// x402 v2 `PaymentRequirements`, one entry of a 402's `accepts`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequirementsView {
    /// `exact`, or the escrow's scheme.
    pub scheme: String,
    /// CAIP-2 network id, e.g. `eip155:31337`.
    pub network: String,
    /// Atomic units of `asset`.
    pub amount: String,
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    pub asset: String,
    /// Scheme specific, e.g. the EIP-712 domain's `name` and `version`.
    #[schema(value_type = Option<Object>)]
    pub extra: Option<Value>,
}

/// A task that failed after payment (502): its record, or the rail's error when the payment
/// could not be settled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TaskFailure {
    Task(Box<TaskView>),
    Error(ErrorBody),
}

/// The x402 `PAYMENT-RESPONSE` of a settled task.
fn payment_response(r: &TaskRecord) -> Value {
    json!({
        "success": r.settlement.is_some(),
        "transaction": r.settlement.as_ref().and_then(|s| s.tx_hashes.first().cloned()).unwrap_or_default(),
        "network": r.verified.network,
        "payer": r.verified.payer,
    })
}

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
        settle
    ),
    components(schemas(
        ErrorBody,
        Health,
        GatewayDescription,
        CapabilityView,
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

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health(State(gw): State<Arc<Gateway>>) -> Json<Health> {
    gw.metrics.inc(&gw.metrics.http_requests);
    Json(Health {
        status: "ok".into(),
        label: gw.label.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        incident: gw.incident(),
    })
}

fn capability_views(gw: &Gateway) -> Vec<CapabilityView> {
    gw.listings
        .values()
        .map(|l| CapabilityView {
            id: l.offer.capability(),
            description: l.offer.manifest.description.clone(),
            price: gw.policy.price.to_string(),
            price_decimal: gw.policy.price.to_decimal_string(gw.policy.decimals),
            asset: gw.policy.asset.clone(),
            mode: serde_json::to_value(l.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            fanout: l.fanout,
            quorum: l.quorum,
            validation: serde_json::to_value(l.offer.manifest.validation.class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            manifest_cid: l.accepted.manifest_cid.to_string(),
            registration_cid: l.accepted.registration_cid.to_string(),
            implementation_cid: l.accepted.implementation_cid.to_string(),
            namespace: l.accepted.namespace.clone(),
            publisher: l.accepted.publisher.clone(),
            creator_commission_bps: l.accepted.creator_commission_bps,
            input_schema: l.offer.manifest.input_schema.clone(),
        })
        .collect()
}

fn rail_view(gw: &Gateway) -> RailView {
    let kind = gw.rail.kind();
    RailView {
        name: gw.rail.name().into(),
        kind: serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        network: gw.rail.network().to_string(),
        scheme: match kind {
            RailKind::Direct => "exact",
            RailKind::TaskEscrow => d402_rails::evm::escrow::SCHEME,
            RailKind::Channel => "d402-channel",
        }
        .into(),
        asset: gw.policy.asset.clone(),
    }
}

#[utoipa::path(get, path = "/.well-known/d402-gateway.json", responses((status = 200, body = GatewayDescription)))]
async fn describe(State(gw): State<Arc<Gateway>>) -> Json<GatewayDescription> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let base = &gw.public_url;
    Json(GatewayDescription {
        name: gw.label.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        x402_version: 2,
        roles: vec!["gateway".into(), "facilitator".into()],
        capabilities: capability_views(&gw),
        refused: gw
            .refused
            .values()
            .map(|r| RefusedView {
                id: r.capability.clone(),
                code: r.code.into(),
                reason: r.reason.clone(),
            })
            .collect(),
        payment_rails: vec![rail_view(&gw)],
        tasks_url: format!("{base}/tasks"),
        openapi_url: format!("{base}/openapi.json"),
        facilitator_url: format!("{base}/x402"),
    })
}

#[utoipa::path(get, path = "/capabilities", responses((status = 200, body = Vec<CapabilityView>)))]
async fn capabilities(State(gw): State<Arc<Gateway>>) -> Json<Vec<CapabilityView>> {
    gw.metrics.inc(&gw.metrics.http_requests);
    Json(capability_views(&gw))
}

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object, description = "this document (OpenAPI 3.1)")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    gw.metrics.inc(&gw.metrics.http_requests);
    // A store that cannot be read still leaves the counters readable.
    let gauges = gw.gauges().unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(&gauges),
    )
}

/// A payment header's value. One that is present but not visible ASCII (base64 always is) is
/// refused rather than ignored: ignoring it would answer a payment with a fresh challenge.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, GatewayError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| GatewayError::PaymentHeader(format!("{name} is not visible ASCII")))
        })
        .transpose()
}

/// Submits a task. Without a payment header: 402 with `PAYMENT-REQUIRED`. With
/// `PAYMENT-SIGNATURE` (or v1 `X-PAYMENT`): 200 with the result when done within the gateway's
/// wait, else 202 with the task URL; `PAYMENT-RESPONSE` on both.
#[utoipa::path(post, path = "/tasks", request_body = TaskRequest,
    params(("PAYMENT-SIGNATURE" = Option<String>, Header, description = "x402 v2 payment payload, base64 JSON"),
           ("X-PAYMENT" = Option<String>, Header, description = "x402 v1 payment payload, base64 JSON (direct rails)")),
    responses(
        (status = 200, body = TaskView, description = "paid and delivered",
            headers(("PAYMENT-RESPONSE" = String, description = "x402 settlement response, base64 JSON"),
                    ("x-d402-idempotent-replay" = Option<String>, description = "`true` on the stored response to a repeated payment-identifier"))),
        (status = 202, body = TaskView, description = "paid and running; poll the task URL",
            headers(("PAYMENT-RESPONSE" = String, description = "x402 settlement response, base64 JSON"),
                    ("Location" = String, description = "the task URL"),
                    ("x-d402-idempotent-replay" = Option<String>, description = "`true` on the stored response to a repeated payment-identifier"))),
        (status = 400, body = ErrorBody, description = "not JSON (`invalid_body`), or a payment header that cannot be decoded (`invalid_payment_header`)"),
        (status = 402, body = PaymentChallenge, description = "payment required, or the payment was refused (`code` is the x402 reason)",
            headers(("PAYMENT-REQUIRED" = String, description = "the x402 v2 PaymentRequired, base64 JSON"))),
        (status = 403, body = ErrorBody, description = "the capability is not sold here (its registration is refused by policy), or a safety cap refuses the challenge"),
        (status = 404, body = ErrorBody, description = "no such capability (`unknown_capability`)"),
        (status = 409, body = ErrorBody, description = "the payment-identifier was used with a different payment (`payment_identifier_conflict`)"),
        (status = 413, body = ErrorBody, description = "the body (`body_too_large`) or the input (`input_too_large`) is over the limit"),
        (status = 415, body = ErrorBody, description = "the body is not `application/json` (`unsupported_media_type`)"),
        (status = 422, body = ErrorBody, description = "JSON of the wrong shape (`invalid_body`), an input that is not an object (`invalid_input`), or a URL the policy refuses (`url_refused`)"),
        (status = 500, body = ErrorBody, description = "the task store failed (`internal`)"),
        (status = 502, body = TaskFailure, description = "paid, but the task failed (its record), or the rail could not settle (`rail_unavailable`)"),
        (status = 503, body = ErrorBody, description = "the incident switch is on: no new challenges or payments (`incident_shutdown`); a repeated payment-identifier of a paid task is still answered")))]
async fn create_task(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<TaskRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    match create_task_inner(&gw, &headers, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn create_task_inner(
    gw: &Arc<Gateway>,
    headers: &HeaderMap,
    req: TaskRequest,
) -> Result<Response, GatewayError> {
    let payment = if let Some(h) = header_str(headers, PAYMENT_SIGNATURE)? {
        Some(decode_payment(h, None)?)
    } else if let Some(h) = header_str(headers, X_PAYMENT)? {
        // v1 payloads do not carry the requirements they answer; on a direct rail they are the
        // same for every task of a capability.
        let issued = if gw.rail.kind() == RailKind::Direct {
            gw.policy.check_input(&req.input)?;
            match gw.challenge(&req.capability, "", None) {
                GatewayError::PaymentRequired { required, .. } => required.accepts.first().cloned(),
                e => return Err(e),
            }
        } else {
            None
        };
        Some(decode_payment(h, issued.as_ref())?)
    } else {
        None
    };
    let submitted = gw.submit(&req.capability, &req.input, payment).await?;
    let r = &submitted.record;
    let status = match r.state {
        TaskState::Delivered => StatusCode::OK,
        TaskState::Failed | TaskState::Refunded | TaskState::RefundPending => {
            StatusCode::BAD_GATEWAY
        }
        _ => StatusCode::ACCEPTED,
    };
    let view = TaskView::of(r, gw);
    let mut res = (status, Json(&view)).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&encode_header(&payment_response(r))) {
        h.insert(PAYMENT_RESPONSE, v);
    }
    if status == StatusCode::ACCEPTED
        && let Ok(v) = HeaderValue::from_str(&view.url)
    {
        h.insert(header::LOCATION, v);
    }
    if submitted.replay {
        h.insert(IDEMPOTENT_REPLAY, HeaderValue::from_static("true"));
    }
    Ok(res)
}

fn record(gw: &Gateway, id: &str) -> Result<TaskRecord, GatewayError> {
    gw.store
        .get(id)?
        .ok_or_else(|| GatewayError::TaskNotFound(id.into()))
}

#[utoipa::path(get, path = "/tasks/{id}", params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView),
              (status = 400, body = ErrorBody, description = "the id is not UTF-8 (`invalid_task_id`)"),
              (status = 404, body = ErrorBody, description = "no such task (`task_not_found`)"),
              (status = 500, body = ErrorBody, description = "the task store failed (`internal`)")))]
async fn task(
    State(gw): State<Arc<Gateway>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskView>, ApiError> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let r = record(&gw, &task_id(id)?)?;
    Ok(Json(TaskView::of(&r, &gw)))
}

#[utoipa::path(get, path = "/tasks/{id}/result", params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = Value, description = "the capability's output (any JSON)"),
              (status = 400, body = ErrorBody, description = "the id is not UTF-8 (`invalid_task_id`)"),
              (status = 404, body = ErrorBody, description = "no such task (`task_not_found`)"),
              (status = 409, body = ErrorBody, description = "not delivered yet (`not_ready`)"),
              (status = 500, body = ErrorBody, description = "the task store failed (`internal`)")))]
async fn task_result(
    State(gw): State<Arc<Gateway>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let id = task_id(id)?;
    let r = record(&gw, &id)?;
    let result = TaskView::of(&r, &gw).result;
    Ok(Json(result.ok_or(GatewayError::NotReady {
        id,
        what: "result",
        state: r.state,
    })?))
}

#[utoipa::path(get, path = "/tasks/{id}/receipt", params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = ReceiptView, description = "receipts, verdict and settlement"),
              (status = 400, body = ErrorBody, description = "the id is not UTF-8 (`invalid_task_id`)"),
              (status = 404, body = ErrorBody, description = "no such task (`task_not_found`)"),
              (status = 409, body = ErrorBody, description = "no receipt yet (`not_ready`)"),
              (status = 500, body = ErrorBody, description = "the task store failed (`internal`)")))]
async fn task_receipt(
    State(gw): State<Arc<Gateway>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ReceiptView>, ApiError> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let id = task_id(id)?;
    let r = record(&gw, &id)?;
    if r.receipts.is_empty() {
        return Err(GatewayError::NotReady {
            id,
            what: "receipt",
            state: r.state,
        }
        .into());
    }
    let v = TaskView::of(&r, &gw);
    Ok(Json(ReceiptView {
        task_id: v.task_id,
        receipts: v.receipts,
        verdict: v.verdict,
        payment: v.payment,
    }))
}

/// The facilitator API's request (`/x402/verify`, `/x402/settle`). The payload and the
/// requirements must be JSON objects (anything else is a 422); an object that is not a valid x402
/// payload or requirements is answered in the body (`invalid_payload`), as x402 facilitators do.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    pub x402_version: u8,
    #[schema(value_type = Object)]
    pub payment_payload: Map<String, Value>,
    #[schema(value_type = Object)]
    pub payment_requirements: Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub is_valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    pub transaction: String,
    pub network: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    pub x402_version: u8,
    pub scheme: String,
    pub network: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Supported {
    pub kinds: Vec<SupportedKind>,
}

#[utoipa::path(get, path = "/x402/supported", responses((status = 200, body = Supported)))]
async fn supported(State(gw): State<Arc<Gateway>>) -> Json<Supported> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let r = rail_view(&gw);
    Json(Supported {
        kinds: vec![SupportedKind {
            x402_version: 2,
            scheme: r.scheme,
            network: r.network,
        }],
    })
}

fn parse_facilitator(
    req: FacilitatorRequest,
) -> Result<(PaymentPayload, PaymentRequirements), String> {
    let payload =
        serde_json::from_value(Value::Object(req.payment_payload)).map_err(|e| e.to_string())?;
    let requirements = serde_json::from_value(Value::Object(req.payment_requirements))
        .map_err(|e| e.to_string())?;
    Ok((payload, requirements))
}

/// Whether a rail error that is not a verification refusal was still caused by the request:
/// requirements naming an address or an amount that does not parse, or terms the rail refuses.
/// The facilitator answers those as invalid (`invalid_payment_requirements`); only the rail's
/// own failures (chain, outbox) are a 502.
fn caused_by_requirements(e: &RailError) -> bool {
    matches!(
        e,
        RailError::Address { .. }
            | RailError::Amount(_)
            | RailError::Split(_)
            | RailError::Cap(_)
            | RailError::CommissionOnDirectRail { .. }
    )
}

fn invalid(reason: &str) -> VerifyResponse {
    VerifyResponse {
        is_valid: false,
        invalid_reason: Some(reason.into()),
        payer: None,
    }
}

/// Verifies a payment for another x402 server, with this gateway's rail.
#[utoipa::path(post, path = "/x402/verify", request_body = FacilitatorRequest,
    responses((status = 200, body = VerifyResponse, description = "`isValid`, or the x402 `invalidReason`"),
        (status = 400, body = ErrorBody, description = "not JSON (`invalid_body`)"),
        (status = 413, body = ErrorBody, description = "the body is over the limit (`body_too_large`)"),
        (status = 415, body = ErrorBody, description = "the body is not `application/json` (`unsupported_media_type`)"),
        (status = 422, body = ErrorBody, description = "JSON of the wrong shape (`invalid_body`)"),
        (status = 502, body = ErrorBody, description = "the rail failed (`rail_unavailable`)")))]
async fn verify(
    State(gw): State<Arc<Gateway>>,
    body: Result<Json<FacilitatorRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let (payload, requirements) = match parse_facilitator(req) {
        Ok(p) => p,
        Err(_) => return Json(invalid("invalid_payload")).into_response(),
    };
    Json(match gw.rail.verify(&payload, &requirements).await {
        Ok(v) => VerifyResponse {
            is_valid: true,
            invalid_reason: None,
            payer: Some(v.payer),
        },
        Err(RailError::Verify(v)) => invalid(v.reason()),
        Err(e) if caused_by_requirements(&e) => invalid("invalid_payment_requirements"),
        Err(e) => return GatewayError::Rail(e.to_string()).into_response(),
    })
    .into_response()
}

/// Verifies and settles a payment for another x402 server.
#[utoipa::path(post, path = "/x402/settle", request_body = FacilitatorRequest,
    responses((status = 200, body = SettleResponse, description = "`success` and the transaction, or the x402 `errorReason`"),
        (status = 400, body = ErrorBody, description = "not JSON (`invalid_body`)"),
        (status = 413, body = ErrorBody, description = "the body is over the limit (`body_too_large`)"),
        (status = 415, body = ErrorBody, description = "the body is not `application/json` (`unsupported_media_type`)"),
        (status = 422, body = ErrorBody, description = "JSON of the wrong shape (`invalid_body`)"),
        (status = 502, body = ErrorBody, description = "the rail failed (`rail_unavailable`)"),
        (status = 503, body = ErrorBody, description = "the incident switch is on: nothing is settled (`incident_shutdown`)")))]
async fn settle(
    State(gw): State<Arc<Gateway>>,
    body: Result<Json<FacilitatorRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    if let Err(e) = gw.check_incident() {
        return e.into_response();
    }
    let network = gw.rail.network().to_string();
    let fail = |reason: &str| {
        Json(SettleResponse {
            success: false,
            error_reason: Some(reason.into()),
            transaction: String::new(),
            network: network.clone(),
            payer: None,
        })
        .into_response()
    };
    let (payload, requirements) = match parse_facilitator(req) {
        Ok(p) => p,
        Err(_) => return fail("invalid_payload"),
    };
    let verified = match gw.rail.verify(&payload, &requirements).await {
        Ok(v) => v,
        Err(RailError::Verify(v)) => return fail(v.reason()),
        Err(e) if caused_by_requirements(&e) => return fail("invalid_payment_requirements"),
        Err(e) => return GatewayError::Rail(e.to_string()).into_response(),
    };
    match gw.rail.settle(&verified).await {
        Ok(s) => Json(SettleResponse {
            success: true,
            error_reason: None,
            transaction: s.tx_hashes.first().cloned().unwrap_or_default(),
            network: s.network,
            payer: Some(verified.payer),
        })
        .into_response(),
        Err(RailError::Replay(_)) => fail("authorization_already_used"),
        Err(e) => GatewayError::Rail(e.to_string()).into_response(),
    }
}

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
