//! `GET /channel/refund`: x402 `batch-settlement`'s cooperative refund, where the stock client's
//! `refund(url)` goes. Without a payment header it answers 402 with the rail's requirements
//! (the client probes them to name its channel); with a `refund` payload it returns the unspent
//! balance and answers 200 with the `PAYMENT-RESPONSE`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::payment_header::header_str;
use super::{ApiError, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, decode_payment, encode_header};
use crate::gateway::{Gateway, GatewayError};

#[utoipa::path(get, path = "/channel/refund",
    params(("PAYMENT-SIGNATURE" = Option<String>, Header, description = "an x402 v2 `batch-settlement` refund payload, base64 JSON")),
    responses(
        (status = 200, description = "refunded; the amount and the channel's state are in PAYMENT-RESPONSE",
            headers(("PAYMENT-RESPONSE" = String, description = "x402 settlement response, base64 JSON"))),
        (status = 400, body = super::ErrorBody, description = "a payment header that cannot be decoded (`invalid_payment_header`)"),
        (status = 402, body = super::tasks::PaymentChallenge, description = "the requirements to name a channel by, or the refund was refused (`code` is the x402 reason)",
            headers(("PAYMENT-REQUIRED" = String, description = "the x402 v2 PaymentRequired, base64 JSON"))),
        (status = 403, body = super::ErrorBody, description = "a safety cap refuses the requirements"),
        (status = 502, body = super::ErrorBody, description = "the rail has no channels, or could not carry the refund out (`rail_unavailable`)")))]
pub(super) async fn channel_refund(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    gw.metrics.inc(&gw.metrics.http_requests);
    match refund(&gw, &headers).await {
        Ok(r) => r,
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn refund(gw: &Gateway, headers: &HeaderMap) -> Result<Response, GatewayError> {
    let Some(header) = header_str(headers, PAYMENT_SIGNATURE)? else {
        let required = gw.channel_challenge()?;
        return Err(GatewayError::PaymentRequired {
            reason: None,
            message: "a refund payload is required".into(),
            required: Box::new(required),
        });
    };
    let payment = decode_payment(header, None)?;
    let s = gw.channel_operation(&payment).await?;
    let refunded: u128 = s.payouts.iter().map(|p| p.amount.get()).sum();
    let mut response = json!({
        "success": true,
        "transaction": s.tx_hashes.first().cloned().unwrap_or_default(),
        "network": s.network,
        "payer": s.payer,
        "amount": refunded.to_string(),
    });
    if let Some(extra) = &s.extra {
        response["extra"] = extra.clone();
    }
    let mut res = (StatusCode::OK, Json(&response)).into_response();
    if let Ok(v) = HeaderValue::from_str(&encode_header(&response)) {
        res.headers_mut().insert(PAYMENT_RESPONSE, v);
    }
    Ok(res)
}
