//! What the gateway says about itself: health, the well-known document buyers and the devnet
//! read, the capabilities it sells, its OpenAPI document and its Prometheus metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::ApiDoc;
use crate::gateway::Gateway;

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
    /// What a delivered result promises: `exact`, `quorum`, `scored` or `reputation` (the
    /// README's validation section says what each means).
    pub assurance: String,
    /// Scoreable: the comparator (`ID@VERSION`) and its implementation CID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<ComparatorView>,
    pub manifest_cid: String,
    pub registration_cid: String,
    pub implementation_cid: String,
    pub namespace: String,
    pub publisher: String,
    pub creator_commission_bps: u32,
    #[schema(value_type = Object)]
    pub input_schema: Value,
}

/// How a scoreable capability's results are compared.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparatorView {
    pub id: String,
    pub implementation_cid: String,
    /// The score two outputs must reach to agree, in millionths.
    pub threshold: u32,
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

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
pub(super) async fn health(State(gw): State<Arc<Gateway>>) -> Json<Health> {
    gw.metrics.inc(&gw.metrics.http_requests);
    Json(Health {
        status: "ok".into(),
        label: gw.label.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        incident: gw.incident(),
    })
}

pub(super) fn capability_views(gw: &Gateway) -> Vec<CapabilityView> {
    gw.listings
        .values()
        .map(|l| CapabilityView {
            id: l.offer.capability(),
            description: l.offer.manifest.description.clone(),
            price: gw.policy.price.to_string(),
            price_decimal: gw.policy.price.to_decimal_string(gw.policy.decimals),
            asset: gw.policy.asset.clone(),
            mode: as_text(l.mode),
            fanout: l.fanout,
            quorum: l.quorum,
            validation: as_text(l.offer.manifest.validation.class),
            assurance: l
                .offer
                .manifest
                .validation
                .class
                .verdict_assurance()
                .as_str()
                .to_string(),
            comparator: l.comparator.as_ref().map(|c| ComparatorView {
                id: c.capability.clone(),
                implementation_cid: c.implementation.to_string(),
                threshold: l.offer.manifest.validation.threshold.unwrap_or_default(),
            }),
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

/// A kebab-case enum as its JSON text.
fn as_text(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn rail_view(gw: &Gateway) -> RailView {
    RailView {
        name: gw.rail.name().into(),
        kind: as_text(gw.rail.kind()),
        network: gw.rail.network().to_string(),
        scheme: gw.rail.scheme().into(),
        asset: gw.policy.asset.clone(),
    }
}

#[utoipa::path(get, path = "/.well-known/d402-gateway.json", responses((status = 200, body = GatewayDescription)))]
pub(super) async fn describe(State(gw): State<Arc<Gateway>>) -> Json<GatewayDescription> {
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
pub(super) async fn capabilities(State(gw): State<Arc<Gateway>>) -> Json<Vec<CapabilityView>> {
    gw.metrics.inc(&gw.metrics.http_requests);
    Json(capability_views(&gw))
}

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object, description = "this document (OpenAPI 3.1)")))]
pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    gw.metrics.inc(&gw.metrics.http_requests);
    // A store that cannot be read still leaves the counters readable.
    let gauges = gw.gauges().unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(&gauges),
    )
}
