//! What several gateway test files share: a gateway served in process on a free port, reading
//! tasks back from one, and running `d402` processes (a gateway node, the client, the ops
//! commands). Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
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

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `node` (a `d402 node` command) and reads the JSON line it prints once it is up.
pub fn spawn_node(mut node: Command) -> (Killed, serde_json::Value) {
    let mut child = node
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Killed(child);
    let info = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    (child, info)
}

/// The JSON a `d402 client run` printed, after checking it succeeded.
pub fn bought(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `d402 ops-status` or `d402 ops-monitor` (`command`) on the node state `state`: its exit
/// status, its stdout, and its stderr.
pub fn ops(command: &str, state: &Path, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_d402"))
        .arg(command)
        .args(["--state", state.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code(), out.stdout, stderr)
}
