//! The x402 payment headers: `PAYMENT-REQUIRED` out (base64 JSON), `PAYMENT-SIGNATURE` (v2)
//! and `X-PAYMENT` (v1) in.

use axum::http::HeaderMap;
use base64::Engine;
use d402_rails::{PaymentPayload, PaymentRequirements};
use serde::Serialize;

use crate::gateway::GatewayError;

/// Encodes a 402 body for the `PAYMENT-REQUIRED` header: base64 of its JSON.
pub fn encode_header(v: &impl Serialize) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap_or_default())
}

/// Reads a base64-JSON x402 header (`PAYMENT-REQUIRED`, `PAYMENT-RESPONSE`) from `headers`, as a
/// client does: `None` when it is absent or not base64 JSON of a `T`.
pub fn decode_header<T: serde::de::DeserializeOwned>(headers: &HeaderMap, name: &str) -> Option<T> {
    let value = headers.get(name)?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Decodes a `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) header into a v2 payload. A v1
/// payload (`{x402Version: 1, scheme, network, payload}`) is answered against `issued`, the
/// requirements a direct rail issues for every task alike.
pub fn decode_payment(
    header: &str,
    issued: Option<&PaymentRequirements>,
) -> Result<PaymentPayload, GatewayError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|e| GatewayError::PaymentHeader(format!("not base64: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::PaymentHeader(format!("not JSON: {e}")))?;
    match value.get("x402Version").and_then(|v| v.as_u64()) {
        Some(2) => serde_json::from_value(value)
            .map_err(|e| GatewayError::PaymentHeader(format!("not an x402 v2 payload: {e}"))),
        Some(1) => {
            let issued = issued.ok_or_else(|| {
                GatewayError::PaymentHeader(
                    "x402 v1 payments are accepted on direct rails only".into(),
                )
            })?;
            if value.get("scheme").and_then(|s| s.as_str()) != Some(issued.scheme.as_str()) {
                return Err(GatewayError::PaymentHeader(format!(
                    "v1 payment scheme is not {}",
                    issued.scheme
                )));
            }
            Ok(d402_rails::evm::buyer::payment_payload(
                issued,
                value.get("payload").cloned().unwrap_or_default(),
            ))
        }
        _ => Err(GatewayError::PaymentHeader(
            "x402Version must be 1 or 2".into(),
        )),
    }
}

/// A payment header's value. One that is present but not visible ASCII (base64 always is) is
/// refused rather than ignored: ignoring it would answer a payment with a fresh challenge.
pub(super) fn header_str<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, GatewayError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| GatewayError::PaymentHeader(format!("{name} is not visible ASCII")))
        })
        .transpose()
}
