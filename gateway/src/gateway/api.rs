//! The HTTP API (DESIGN.md §9), on axum. Handlers are thin: they parse, call [`Gateway`] and
//! render. Errors render once, in [`GatewayError`]'s `IntoResponse`: `{code, message}` with a
//! stable `code`, plus the `PAYMENT-REQUIRED` header on a 402. `/openapi.json` is generated from
//! the handlers' types with utoipa (OpenAPI 3.1).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use d402_rails::{PaymentPayload, PaymentRequirements, RailError, RailKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
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

/// A request body the JSON extractor refused: too large (413) or not the expected JSON (400).
fn body_error(e: JsonRejection) -> Response {
    let (status, code) = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    } else {
        (StatusCode::BAD_REQUEST, "invalid_body")
    };
    (
        status,
        Json(ErrorBody {
            code: code.into(),
            message: e.body_text(),
        }),
    )
        .into_response()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub label: String,
    pub version: String,
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

/// `POST /tasks`: what to run. Price, mode, fanout, quorum and limits are the server's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
}

/// A task's state, and its result and receipt once delivered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub task_id: String,
    pub status: TaskState,
    pub capability: String,
    /// The capability's output (JSON), once delivered.
    #[schema(value_type = Option<Object>)]
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

impl TaskView {
    fn of(r: &TaskRecord, base: &str) -> Self {
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
            },
            error: r.error.clone(),
            url: format!("{base}/tasks/{}", r.id),
        }
    }
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
        TaskState,
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

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "this document (OpenAPI 3.1)")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    gw.metrics.inc(&gw.metrics.http_requests);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Submits a task. Without a payment header: 402 with `PAYMENT-REQUIRED`. With
/// `PAYMENT-SIGNATURE` (or v1 `X-PAYMENT`): 200 with the result when done within the gateway's
/// wait, else 202 with the task URL; `PAYMENT-RESPONSE` on both.
#[utoipa::path(post, path = "/tasks", request_body = TaskRequest,
    params(("PAYMENT-SIGNATURE" = Option<String>, Header, description = "x402 v2 payment payload, base64 JSON"),
           ("X-PAYMENT" = Option<String>, Header, description = "x402 v1 payment payload, base64 JSON")),
    responses(
        (status = 200, body = TaskView, description = "delivered"),
        (status = 202, body = TaskView, description = "paid and running; poll the task URL"),
        (status = 400, body = ErrorBody), (status = 402, body = ErrorBody, description = "payment required; see the PAYMENT-REQUIRED header"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = TaskView)))]
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
    let payment = if let Some(h) = header_str(headers, PAYMENT_SIGNATURE) {
        Some(decode_payment(h, None)?)
    } else if let Some(h) = header_str(headers, X_PAYMENT) {
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
    let view = TaskView::of(r, &gw.public_url);
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

#[utoipa::path(get, path = "/tasks/{id}", params(("id" = String, Path)), responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
async fn task(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, GatewayError> {
    gw.metrics.inc(&gw.metrics.http_requests);
    Ok(Json(TaskView::of(&record(&gw, &id)?, &gw.public_url)))
}

#[utoipa::path(get, path = "/tasks/{id}/result", params(("id" = String, Path)), responses((status = 200, description = "the capability's output (JSON)"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn task_result(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, GatewayError> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let r = record(&gw, &id)?;
    TaskView::of(&r, &gw.public_url)
        .result
        .map(Json)
        .ok_or(GatewayError::NotReady {
            id,
            what: "result",
            state: r.state,
        })
}

#[utoipa::path(get, path = "/tasks/{id}/receipt", params(("id" = String, Path)), responses((status = 200, description = "receipts, verdict and settlement"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn task_receipt(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, GatewayError> {
    gw.metrics.inc(&gw.metrics.http_requests);
    let r = record(&gw, &id)?;
    if r.receipts.is_empty() {
        return Err(GatewayError::NotReady {
            id,
            what: "receipt",
            state: r.state,
        });
    }
    let v = TaskView::of(&r, &gw.public_url);
    Ok(Json(json!({
        "taskId": v.task_id,
        "receipts": v.receipts,
        "verdict": v.verdict,
        "payment": v.payment,
    })))
}

/// The facilitator API's request (`/x402/verify`, `/x402/settle`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    pub x402_version: u8,
    #[schema(value_type = Object)]
    pub payment_payload: Value,
    #[schema(value_type = Object)]
    pub payment_requirements: Value,
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
    let payload = serde_json::from_value(req.payment_payload).map_err(|e| e.to_string())?;
    let requirements =
        serde_json::from_value(req.payment_requirements).map_err(|e| e.to_string())?;
    Ok((payload, requirements))
}

fn invalid(reason: &str) -> VerifyResponse {
    VerifyResponse {
        is_valid: false,
        invalid_reason: Some(reason.into()),
        payer: None,
    }
}

/// Verifies a payment for another x402 server, with this gateway's rail.
#[utoipa::path(post, path = "/x402/verify", request_body = FacilitatorRequest, responses((status = 200, body = VerifyResponse)))]
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
        Err(e) => return GatewayError::Rail(e.to_string()).into_response(),
    })
    .into_response()
}

/// Verifies and settles a payment for another x402 server.
#[utoipa::path(post, path = "/x402/settle", request_body = FacilitatorRequest, responses((status = 200, body = SettleResponse)))]
async fn settle(
    State(gw): State<Arc<Gateway>>,
    body: Result<Json<FacilitatorRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
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
