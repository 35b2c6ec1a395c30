//! What several gateway test files share: a gateway served in process on a free port, and
//! reading tasks back from one. Each test file uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use d402_gateway::gateway::{Gateway, GatewayConfig, SalePolicy, TaskStore, api};
use d402_node::{Node, Offer};
use d402_rails::{Outbox, Rail};
use d402_registry::AcceptancePolicy;

/// A gateway selling `offers` through `node`'s network on `rail`, served on a free port of
/// 127.0.0.1 with its task store under `dir`. Not resumed: a test whose rail reaches a chain
/// calls [`Gateway::resume`] to start the sweep and the payer. Returns the base URL.
pub async fn serve(
    dir: &Path,
    node: &Node,
    (rail, outbox): (Arc<dyn Rail>, Outbox),
    offers: Vec<Offer>,
    acceptance: AcceptancePolicy,
    policy: SalePolicy,
    release_signer: Option<PrivateKeySigner>,
) -> (String, Arc<Gateway>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = TaskStore::open(&dir.join("gateway-tasks.redb")).unwrap();
    let gw = Arc::new(Gateway::new(
        GatewayConfig {
            policy,
            acceptance,
            rail,
            outbox,
            release_signer,
            public_url: url.clone(),
            label: "gateway".into(),
            ops: None,
        },
        node.coordinator().clone(),
        offers,
        store,
    ));
    tokio::spawn(api::serve(
        Arc::clone(&gw),
        listener,
        std::future::pending::<()>(),
    ));
    (url, gw)
}

/// `GET url` as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Waits (up to 30 s) until the task at `task_url` shows its worker pay paid out (direct rails
/// pay in batches, after delivery); returns the task's `payment.workerPay`.
pub async fn worker_paid(task_url: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let task = get_json(task_url).await;
        let pay = &task["payment"]["workerPay"];
        if pay["state"] == "paid" {
            return pay.clone();
        }
        assert!(Instant::now() < until, "the worker was never paid: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
