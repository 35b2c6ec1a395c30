//! `POST /tasks` (challenge, or pay and run) and the task routes: state, result, receipt.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::task_id;
use super::payment_header::{decode_payment, encode_header, header_str};
use super::{
    ApiError, ErrorBody, IDEMPOTENT_REPLAY, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT,
};
use crate::gateway::{Gateway, GatewayError, TaskRecord, TaskState};

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
    /// What the result promises: `exact` (re-executed by a validator), `quorum`, `scored`
    /// (compared by a comparator) or `reputation` (the worker's word and standing).
    pub assurance: Option<String>,
    /// Set when the result was delivered although a check found it wanting (a failed
    /// snapshot check): not validated work.
    pub disputed: Option<String>,
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
            assurance: r.assurance.map(|a| a.as_str().to_string()),
            disputed: r.disputed.clone(),
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

/// The x402 `PAYMENT-RESPONSE` of a settled task. A rail's own fields (`extra`: on a channel,
/// what this request charged and the channel's state) come from the refund when the task's
/// charge was given back, else from the settlement.
pub(super) fn payment_response(r: &TaskRecord) -> Value {
    let mut response = json!({
        "success": r.settlement.is_some(),
        "transaction": r.settlement.as_ref().and_then(|s| s.tx_hashes.first().cloned()).unwrap_or_default(),
        "network": r.verified.network,
        "payer": r.verified.payer,
    });
    let extra = r
        .refund
        .as_ref()
        .and_then(|s| s.extra.clone())
        .or_else(|| r.settlement.as_ref().and_then(|s| s.extra.clone()));
    if let Some(extra) = extra {
        response["extra"] = extra;
    }
    response
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
pub(super) async fn create_task(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<TaskRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match create_task_inner(&gw, &headers, req).await {
        Ok(r) => r,
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub(super) async fn create_task_inner(
    gw: &Arc<Gateway>,
    headers: &HeaderMap,
    req: TaskRequest,
) -> Result<Response, GatewayError> {
    let payment = if let Some(h) = header_str(headers, PAYMENT_SIGNATURE)? {
        Some(decode_payment(h, None)?)
    } else if let Some(h) = header_str(headers, X_PAYMENT)? {
        // v1 payloads do not carry the requirements they answer: only a rail that asks the same
        // of every task of a capability can take one.
        gw.policy.check_input(&req.input)?;
        let issued = gw.v1_requirements(&req.capability)?;
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

pub(super) fn record(gw: &Gateway, id: &str) -> Result<TaskRecord, GatewayError> {
    gw.store
        .get(id)?
        .ok_or_else(|| GatewayError::TaskNotFound(id.into()))
}

#[utoipa::path(get, path = "/tasks/{id}", params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView),
              (status = 400, body = ErrorBody, description = "the id is not UTF-8 (`invalid_task_id`)"),
              (status = 404, body = ErrorBody, description = "no such task (`task_not_found`)"),
              (status = 500, body = ErrorBody, description = "the task store failed (`internal`)")))]
pub(super) async fn task(
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
pub(super) async fn task_result(
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
pub(super) async fn task_receipt(
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
