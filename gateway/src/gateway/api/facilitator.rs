//! The facilitator API: another x402 server verifies and settles payments with this gateway's
//! rail (`/x402/supported`, `/x402/verify`, `/x402/settle`), answering as x402 facilitators do.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use d402_rails::{PaymentPayload, PaymentRequirements, RailError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::describe::rail_view;
use super::{ApiError, ErrorBody};
use crate::gateway::{Gateway, GatewayError};

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
pub(super) async fn supported(State(gw): State<Arc<Gateway>>) -> Json<Supported> {
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

/// A facilitator request's payment and requirements. `Err`: the body itself was refused (the
/// answer to give); `None`: objects that are not a valid x402 payload or requirements, which a
/// facilitator answers in its body (`invalid_payload`).
fn facilitator_input(
    body: Result<Json<FacilitatorRequest>, JsonRejection>,
) -> Result<Option<(PaymentPayload, PaymentRequirements)>, Box<Response>> {
    let Json(req) = body.map_err(|e| Box::new(ApiError::from(e).into_response()))?;
    let payload = serde_json::from_value(Value::Object(req.payment_payload)).ok();
    let requirements = serde_json::from_value(Value::Object(req.payment_requirements)).ok();
    Ok(payload.zip(requirements))
}

/// Whether a rail error that is not a verification refusal was still caused by the request:
/// requirements naming an address or an amount that does not parse, or terms the rail refuses.
/// The facilitator answers those as invalid (`invalid_payment_requirements`); only the rail's
/// own failures (chain, outbox) are a 502.
pub(super) fn caused_by_requirements(e: &RailError) -> bool {
    matches!(
        e,
        RailError::Address { .. }
            | RailError::Amount(_)
            | RailError::Split(_)
            | RailError::Cap(_)
            | RailError::CommissionOnDirectRail { .. }
    )
}

pub(super) fn invalid(reason: &str) -> VerifyResponse {
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
pub(super) async fn verify(
    State(gw): State<Arc<Gateway>>,
    body: Result<Json<FacilitatorRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let (payload, requirements) = match facilitator_input(body) {
        Ok(Some(p)) => p,
        Ok(None) => return Json(invalid("invalid_payload")).into_response(),
        Err(refused) => return *refused,
    };
    Json(match gw.rail.verify(&payload, &requirements).await {
        Ok(v) => VerifyResponse {
            is_valid: true,
            invalid_reason: None,
            payer: Some(v.payer),
        },
        Err(RailError::Verify(v)) => invalid(v.reason()),
        Err(e) if caused_by_requirements(&e) => invalid("invalid_payment_requirements"),
        Err(e) => return ApiError::from(GatewayError::Rail(e)).into_response(),
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
pub(super) async fn settle(
    State(gw): State<Arc<Gateway>>,
    body: Result<Json<FacilitatorRequest>, JsonRejection>,
) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    let input = match facilitator_input(body) {
        Ok(input) => input,
        Err(refused) => return *refused,
    };
    if let Err(e) = gw.check_incident() {
        return ApiError::from(e).into_response();
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
    let Some((payload, requirements)) = input else {
        return fail("invalid_payload");
    };
    let verified = match gw.rail.verify(&payload, &requirements).await {
        Ok(v) => v,
        Err(RailError::Verify(v)) => return fail(v.reason()),
        Err(e) if caused_by_requirements(&e) => return fail("invalid_payment_requirements"),
        Err(e) => return ApiError::from(GatewayError::Rail(e)).into_response(),
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
        Err(e) => ApiError::from(GatewayError::Rail(e)).into_response(),
    }
}
