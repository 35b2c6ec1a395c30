//! [`ApiError`]: the one error type the API answers with. It owns every status code: a domain
//! error ([`GatewayError`]) is given its status here and nowhere else, and a request the
//! extractors refuse (a body too large, not JSON or of another content type, a path that is not
//! UTF-8, an unknown route or method) gets the same JSON body, never axum's plain text.
//!
//! Every error body is `{code, message}` with a stable `code`; a 402 is the x402
//! `PaymentRequired` with `code` and `message` added, and its `PAYMENT-REQUIRED` header.

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::PAYMENT_REQUIRED;
use super::payment_header::encode_header;
use crate::gateway::GatewayError;
use crate::gateway::policy::InputRefusal;

/// The JSON body of every error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `payment_required`, `url_refused`,
    /// `invalid_exact_evm_payload_signature`.
    pub code: String,
    pub message: String,
}

/// What a handler fails with.
#[derive(Debug)]
pub enum ApiError {
    /// The gateway refused or failed.
    Gateway(GatewayError),
    /// The request itself was refused before it reached the gateway.
    Request {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError::Gateway(e)
    }
}

/// A request body the JSON extractor refused: too large (413 `body_too_large`), not declared as
/// `application/json` (415 `unsupported_media_type`), not JSON (400 `invalid_body`), or JSON of
/// the wrong shape (422 `invalid_body`).
impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
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
        ApiError::Request {
            status,
            code,
            message: e.body_text(),
        }
    }
}

/// The HTTP status of each gateway error.
fn status_of(e: &GatewayError) -> StatusCode {
    use GatewayError::*;
    match e {
        UnknownCapability(_) | TaskNotFound(_) => StatusCode::NOT_FOUND,
        CapabilityRefused { .. } | ChallengeRefused(_) => StatusCode::FORBIDDEN,
        Input(InputRefusal::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        Input(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
        PaymentHeader(_) => StatusCode::BAD_REQUEST,
        IdempotencyConflict(_) | NotReady { .. } => StatusCode::CONFLICT,
        Rail(_) | Payout { .. } => StatusCode::BAD_GATEWAY,
        Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        IncidentShutdown(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Request {
                status,
                code,
                message,
            } => {
                let body = ErrorBody {
                    code: code.into(),
                    message,
                };
                return (status, Json(body)).into_response();
            }
            ApiError::Gateway(e) => e,
        };
        let status = status_of(&e);
        let body = ErrorBody {
            code: e.code().to_string(),
            message: e.to_string(),
        };
        match e {
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

/// The `{id}` of a task route. A path the extractor cannot decode (percent-escapes that are not
/// UTF-8) is a 400 `invalid_task_id`.
pub(super) fn task_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    id.map(|Path(id)| id).map_err(|e| ApiError::Request {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_task_id",
        message: e.body_text(),
    })
}

/// Any route not listed: 404 `not_found`.
pub(super) async fn no_route() -> ApiError {
    ApiError::Request {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route; see /openapi.json".into(),
    }
}

/// A listed route with a method it does not serve: 405 `method_not_allowed` (axum adds the
/// `Allow` header).
pub(super) async fn wrong_method() -> ApiError {
    ApiError::Request {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "method not allowed on this route; see /openapi.json".into(),
    }
}
