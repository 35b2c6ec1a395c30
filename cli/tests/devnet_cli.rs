//! `d402 devnet` end to end, as the README's main command runs it: real anvil, a real Solana test
//! validator, real `d402 node` processes with Chromium, and the demo client paying on both chains.
//! This test process reaps the devnet's orphans, so a process the devnet leaves running is found.

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn devnet_runs_the_paying_demo_and_describes_itself() {
    common::become_subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("devnet");
    let out = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args([
            "devnet",
            "--state",
            state.to_str().unwrap(),
            "--http-port",
            "0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The demo over, nothing the devnet started is still running: no node, no browser, no chain.
    common::assert_nothing_left(Duration::from_secs(15), "a full devnet demo");

    // Every step reported, in order, and none failed.
    for step in 1..=15 {
        assert!(stderr.contains(&format!("[{step}/15] ")), "{stderr}");
    }
    assert!(!stderr.contains("failed ("), "{stderr}");
    assert_eq!(stderr.matches("ok (").count(), 15, "{stderr}");
    // The incident drill on both channel gateways: every channel closed and reclaimed, every
    // claim account reclaimed (so every claimant paid in full), each payer's unallocated
    // remainder back, as the devnet read it from the chain.
    for label in ["gateway-solana-channel", "gateway-hybrid"] {
        let closed: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains(&format!("{label}: channel ")))
            .collect();
        assert!(!closed.is_empty(), "{label}: {stdout}");
        for line in closed {
            assert!(line.contains("closed and reclaimed"), "{line}");
            assert!(line.contains("claim account(s) reclaimed"), "{line}");
        }
    }
    // 20 tasks bought through one batch-settlement channel, and what they cost on chain.
    let batch = stdout
        .lines()
        .find(|l| l.contains("20 tasks paid") && l.contains("by channel"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(batch.contains("(0 from the buyer;"), "{batch}");
    // Commission-bearing work bought through a Solana channel: after the maintainer's
    // withdrawals the creator and two workers hold their shares on Solana.
    let channel = stdout
        .split("SPL token balances after the maintainer's withdrawals")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(!stdout.contains("not all withdrawn"), "{stdout}");
    let gained = |who: &str| -> i64 {
        channel
            .lines()
            .find(|l| l.trim_start().starts_with(who))
            .and_then(|l| l.rsplit('(').next())
            .and_then(|d| d.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{who} in {channel}"))
    };
    assert_eq!(gained("creator"), 1_000, "10 % of the page conversion");
    let workers: Vec<i64> = (1..=3).map(|i| gained(&format!("worker-{i}"))).collect();
    assert_eq!(workers.iter().filter(|g| **g > 0).count(), 2, "{channel}");
    assert_eq!(
        gained("gateway") + gained("creator") + workers.iter().sum::<i64>(),
        60_000,
        "six tasks' price, split to the unit"
    );
    // Paid on Base with a Base wallet, the split withdrawn on Solana: the creator's 10 % and the
    // two agreeing workers' net of the page conversion.
    let hybrid = stdout
        .split("SPL token balances on Solana after the hybrid purchase")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    let gained = |who: &str| -> i64 {
        hybrid
            .lines()
            .find(|l| l.trim_start().starts_with(who))
            .and_then(|l| l.rsplit('(').next())
            .and_then(|d| d.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{who} in {hybrid}"))
    };
    assert_eq!(gained("creator"), 1_000, "{hybrid}");
    let workers: Vec<i64> = (1..=3).map(|i| gained(&format!("worker-{i}"))).collect();
    assert_eq!(workers.iter().sum::<i64>(), 8_500, "{hybrid}");
    // One task on solana-task-escrow: the escrow funded by the payment, released by the
    // validator node's signature to the two agreeing workers, the creator and the gateway.
    let escrow = stdout
        .split("SPL token balances after the task escrow")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    let gained = |who: &str| -> i64 {
        escrow
            .lines()
            .find(|l| l.trim_start().starts_with(who))
            .and_then(|l| l.rsplit('(').next())
            .and_then(|d| d.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{who} in {escrow}"))
    };
    assert_eq!(gained("buyer"), -10_000, "{escrow}");
    assert_eq!(gained("creator"), 1_000, "{escrow}");
    assert_eq!(gained("gateway"), 500, "{escrow}");
    let workers: Vec<i64> = (1..=3).map(|i| gained(&format!("worker-{i}"))).collect();
    assert_eq!(workers.iter().sum::<i64>(), 8_500, "{escrow}");

    // The page built by JavaScript was frozen by Chromium and converted by a quorum of two.
    assert!(
        stdout.contains("Frozen once by Chromium, compared many times by quorum."),
        "{stdout}"
    );
    assert!(stdout.matches("receipt: worker").count() >= 3, "{stdout}");

    // The scored page conversion: sold as scoreable, each of three workers froze its own copy of
    // the live page, and the verdict carries the comparator's 3×3 scores.
    assert!(
        stdout.contains("web.page_to_markdown_live@1 is scoreable (assurance scored), compared by compare.text_similarity@1"),
        "{stdout}"
    );
    let scored = stdout
        .split("→ web.page_to_markdown_live@1")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(scored.contains("  assurance: scored"), "{scored}");
    assert!(
        scored.contains("verdict by validator")
            && scored.contains("3 claim(s) accepted, 0 rejected"),
        "{scored}"
    );
    assert_eq!(
        scored
            .split("→ 20 ×")
            .next()
            .unwrap()
            .matches("  scores: [")
            .count(),
        3,
        "{scored}"
    );
    assert!(stdout.contains("delivered"), "{stdout}");

    // devnet.json says how to reach everything.
    let d: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("devnet.json")).unwrap()).unwrap();
    assert!(
        d["gateway"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(d["evm"]["network"], "eip155:31337");
    assert_eq!(d["evm"]["buyers"].as_array().unwrap().len(), 2);
    assert!(
        d["evm"]["buyers"][0]["privateKey"]
            .as_str()
            .unwrap()
            .starts_with("0x")
    );
    assert!(
        d["solana"]["network"]
            .as_str()
            .unwrap()
            .starts_with("solana:")
    );
    assert!(
        d["solana"]["gateway"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(d["nodes"].as_array().unwrap().len(), 12, "{d}");
    assert_eq!(
        d["evm"]["batchSettlement"],
        "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003"
    );
    // Every gateway, with what it accepts and sells. A stock `exact` client has a Base gateway.
    let gateways = d["gateways"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = gateways
        .iter()
        .map(|g| {
            (
                g["payment"].as_str().unwrap(),
                g["network"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 7, "{d}");
    assert!(
        listed
            .iter()
            .any(|(p, n)| *p == "solana-task-escrow" && n.starts_with("solana:")),
        "{d}"
    );
    assert!(
        listed.contains(&("base-x402-solana-channel", "eip155:31337")),
        "{d}"
    );
    assert!(
        listed
            .iter()
            .any(|(p, n)| *p == "solana-channel" && n.starts_with("solana:")),
        "{d}"
    );
    assert!(
        listed.contains(&("base-batch-settlement", "eip155:31337")),
        "{d}"
    );
    assert!(
        listed.contains(&("base-task-escrow", "eip155:31337")),
        "{d}"
    );
    assert!(
        listed.contains(&("base-x402-direct", "eip155:31337")),
        "{d}"
    );
    assert!(
        listed
            .iter()
            .any(|(p, n)| *p == "solana-direct" && n.starts_with("solana:")),
        "{d}"
    );
    let exact = gateways
        .iter()
        .find(|g| g["payment"] == "base-x402-direct")
        .unwrap();
    assert_eq!(exact["schemes"], serde_json::json!(["exact"]), "{exact}");
    // Commission-free work only on a direct rail: the proof check and the two comparators.
    assert_eq!(
        exact["capabilities"],
        serde_json::json!([
            "compare.json_fields@1",
            "compare.text_similarity@1",
            "merkle.verify_proof@1"
        ]),
        "{exact}"
    );
    for g in gateways {
        assert!(
            g["url"].as_str().unwrap().starts_with("http://127.0.0.1:"),
            "{g}"
        );
        assert!(!g["capabilities"].as_array().unwrap().is_empty(), "{g}");
    }
    // The gateways' operations snapshots, where `d402 ops-status --state` looks for them.
    for (key, rail) in [
        ("gateway", "base-task-escrow"),
        ("gatewaySolana", "solana-direct"),
        ("gatewaySolanaChannel", "solana-channel"),
        ("gatewayHybrid", "base-x402-solana-channel"),
        ("gatewaySolanaEscrow", "solana-task-escrow"),
    ] {
        let dir = std::path::PathBuf::from(d["opsState"][key].as_str().unwrap());
        let snapshot: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("gateway").join("ops.json")).unwrap())
                .unwrap();
        assert_eq!(snapshot["rail"], rail, "{snapshot}");
    }

    // The money moved: the Base buyer paid two tasks at $0.01, the creator earned its 10%
    // commission on the page conversion, and the Solana buyer paid one task.
    let line = |who: &str, section: &str| -> String {
        let from = stdout
            .find(section)
            .unwrap_or_else(|| panic!("{section}: {stdout}"));
        stdout[from..]
            .lines()
            .find(|l| l.trim_start().starts_with(who))
            .unwrap_or_else(|| panic!("{who}: {stdout}"))
            .to_string()
    };
    assert!(
        line("buyer", "Test USD balances").contains("(-20000)"),
        "{stdout}"
    );
    assert!(
        line("creator", "Test USD balances").contains("(+1000)"),
        "{stdout}"
    );
    // The page's two agreeing workers share its worker net (10,000 − 1,000 commission − 500
    // fee = 8,500) through the escrow; the proof check pays one worker 9,500.
    let base = &stdout[stdout.find("Test USD balances").unwrap()..];
    let mut workers: Vec<i64> = base
        .lines()
        .take_while(|l| !l.trim().is_empty() || l.contains("Test USD"))
        .filter(|l| l.trim_start().starts_with("worker-"))
        .map(|l| {
            let change = &l[l.rfind('(').unwrap() + 1..l.rfind(')').unwrap()];
            change.trim_start_matches('+').parse().unwrap()
        })
        .collect();
    workers.sort();
    assert!(
        workers == [0, 4_250, 13_750] || workers == [4_250, 4_250, 9_500],
        "{workers:?}\n{stdout}"
    );
    assert!(
        line("buyer", "SPL token balances").contains("(-10000)"),
        "{stdout}"
    );
    // The gateway keeps its 5 % fee and pays the worker the rest out of its wallet.
    assert!(
        line("gateway", "SPL token balances").contains("(+500)"),
        "{stdout}"
    );
    let solana = &stdout[stdout.find("SPL token balances").unwrap()..];
    assert_eq!(
        solana
            .lines()
            .filter(|l| l.trim_start().starts_with("worker-") && l.contains("(+9500)"))
            .count(),
        1,
        "{stdout}"
    );
}
