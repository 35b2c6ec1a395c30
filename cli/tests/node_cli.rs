//! `d402 node` as real processes: a bootstrap, a worker and a validator (configured from a TOML
//! file) join over the network, and a client that knows only the bootstrap gets a task done.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use d402_network_support::*;
use d402_node::{Node, NodeConfig, TaskSpec};

/// A node process, killed when dropped.
struct NodeProcess {
    child: Child,
    info: serde_json::Value,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(state: &Path, args: &[&str]) -> NodeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_d402"))
        .arg("node")
        .args(["--state", state.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting d402 node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    NodeProcess { child, info }
}

fn d402_node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_d402"))
        .arg("node")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_validator_processes_serve_a_client() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let boot = spawn(&dir.join("boot"), &["--label", "boot", "--port", "0"]);
    assert_eq!(boot.info["role"], "bootstrap");
    let boot_addr = boot.info["listen"].as_str().unwrap().to_string();

    let worker = spawn(
        &dir.join("worker"),
        &[
            "--label",
            "worker-1",
            "--peer",
            &boot_addr,
            "--offer",
            MERKLE,
            "--snapshotter",
            "fetch",
            "--evm-payout-wallet",
            "0x000000000000000000000000000000000000c0de",
        ],
    );
    assert_eq!(worker.info["role"], "worker");

    // Settings from a file; the command line wins where both say something.
    let config = dir.join("validator.toml");
    std::fs::write(
        &config,
        format!("label = \"from-file\"\npeer = [\"{boot_addr}\"]\nvalidate = [\"{MERKLE}\"]\n"),
    )
    .unwrap();
    let validator = spawn(
        &dir.join("validator"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--label",
            "validator-1",
        ],
    );
    assert_eq!(validator.info["role"], "validator");
    assert_eq!(validator.info["label"], "validator-1");

    let mut client_config = NodeConfig::new("client", dir.join("client"));
    client_config.peers = vec![boot_addr.parse().unwrap()];
    let client = Node::start(client_config).await.unwrap();
    let offer = merkle_offer(&client);
    let outcome = client
        .coordinator()
        .submit(&offer, TaskSpec::new("cli-1", merkle_input("a"), &offer))
        .await
        .unwrap();
    assert_eq!(
        outcome.workers[0].to_string(),
        worker.info["peerId"].as_str().unwrap()
    );
    assert_eq!(
        outcome.payout_wallets[0].evm.as_deref(),
        Some("0x000000000000000000000000000000000000c0DE"),
        "the worker's payout wallet travels with its bid, checksummed"
    );
    let verdict = outcome.verdict.unwrap();
    assert_eq!(
        verdict.body.validator,
        validator.info["publicKey"].as_str().unwrap()
    );
}

#[test]
fn bad_node_flags_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("s");
    let state = state.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--state", state, "--offer", "page_to_markdown"],
            "ID@VERSION",
        ),
        (vec!["--state", state, "--peer", "no-port-here"], "--peer"),
        (
            vec!["--state", state, "--evm-payout-wallet", "0x12"],
            "--evm-payout-wallet",
        ),
        (vec!["--config", "/nonexistent/d402.toml"], "d402.toml"),
    ] {
        let out = d402_node(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
