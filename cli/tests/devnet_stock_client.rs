//! A stock x402 client buys from a running devnet, as the README tells a newcomer to do: the devnet
//! is started with `--keep-running`, `devnet.json` names the gateway that takes the x402 `exact`
//! scheme on Base and what it sells, and `@x402/fetch` with `@x402/evm`'s `exact` scheme pays it
//! unchanged. Then the devnet is stopped the way a supervisor stops it (`SIGTERM`), and nothing it
//! started is left running.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[test]
fn a_stock_exact_client_buys_from_the_devnet() {
    common::become_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("devnet");
    let script = common::client_script(tmp.path());
    let child = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(["devnet", "--keep-running", "--solana", "false"])
        .args(["--snapshotter", "fetch", "--http-port", "0"])
        .args(["--state", state.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut devnet = common::Killed(child);
    // The devnet says it is up once devnet.json is written; its stderr is kept for a failure.
    let stderr = devnet.0.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let until = Instant::now() + Duration::from_secs(600);
    while !log.iter().any(|l: &String| l.contains("stops everything")) {
        match lines_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => log.push(line),
            Err(_) => assert!(
                Instant::now() < until && devnet.0.try_wait().unwrap().is_none(),
                "the devnet did not come up:\n{}",
                log.join("\n")
            ),
        }
    }
    let d: Value =
        serde_json::from_slice(&std::fs::read(state.join("devnet.json")).unwrap()).unwrap();

    // The gateway a stock client uses: x402 `exact` on Base, selling the proof check.
    let exact = d["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["schemes"].as_array().unwrap().contains(&json!("exact"))
                && g["network"].as_str().unwrap().starts_with("eip155:")
        })
        .unwrap_or_else(|| panic!("no gateway takes `exact` on Base: {d}"))
        .clone();
    assert!(
        exact["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("merkle.verify_proof@1")),
        "{exact}"
    );
    let leaf = b"bought by a stock client";
    let root = d402_cap_merkle_verify::leaf_hash(leaf);
    let body = json!({
        "capability": "merkle.verify_proof@1",
        "input": {"leaf": alloy::hex::encode(leaf), "proof": [], "root": alloy::hex::encode(root)},
    });
    let out = Command::new("node")
        .arg(&script)
        .args(["--url", exact["url"].as_str().unwrap()])
        .args([
            "--key",
            d["evm"]["buyers"][0]["privateKey"].as_str().unwrap(),
        ])
        .args(["--rpc", d["evm"]["rpcUrl"].as_str().unwrap()])
        .args(["--chain-id", &d["evm"]["chainId"].to_string()])
        .args(["--asset", d["evm"]["token"]["address"].as_str().unwrap()])
        .args(["--max-amount", "10000"])
        .args(["--body", &body.to_string()])
        .output()
        .expect("node runs (run scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"]["status"], "delivered", "{reply}");
    assert_eq!(reply["body"]["result"]["valid"], true, "{reply}");
    assert_eq!(reply["paymentResponse"]["success"], true, "{reply}");

    // Stopped by SIGTERM: the devnet stops its nodes in turn and exits cleanly.
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(devnet.0.id() as i32, libc::SIGTERM) };
    let status = devnet.0.wait().unwrap();
    assert!(status.success(), "{status}");
    common::assert_nothing_left(Duration::from_secs(15), "a devnet stopped with SIGTERM");
}
