//! `d402 run` and `d402 run --replay`, through the real binary.

use std::path::Path;
use std::process::{Command, Output};

use d402_capability_artifacts as artifacts;
use d402_corpus::{book_pages, book_url};

fn d402(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_d402"))
        .arg("run")
        .args(["--state", state.to_str().unwrap()])
        .args(args)
        .output()
        .expect("running d402")
}

/// Every page of a 50-page corpus: the CLI runs it and `--replay` confirms output CID and fuel.
#[test]
fn run_then_replay_matches_on_a_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    for page in book_pages(50) {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let url = book_url(&page);
        let out = d402(
            &state,
            &[
                "--wasm",
                artifacts::PAGE_TO_MARKDOWN_COMPONENT,
                "--capability",
                "web.page_to_markdown@1",
                "--canonicalizer",
                "normalized-text",
                "--input",
                &format!(r#"{{"url": "{url}"}}"#),
                "--snapshot",
                &format!("{url}={}", page.display()),
            ],
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["output"]["markdown"].is_string(), "{name}");
        assert_eq!(
            report["receipt"]["capability"]["id"],
            "web.page_to_markdown"
        );
        let run_file = tmp.path().join("run.json");
        std::fs::write(&run_file, &out.stdout).unwrap();

        let replay = d402(&state, &["--replay", run_file.to_str().unwrap()]);
        assert!(
            replay.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&replay.stderr)
        );
        let check: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
        assert_eq!(check["match"], true, "{name}: {check}");
        assert_eq!(check["fuelUsed"]["expected"], report["receipt"]["fuelUsed"]);
        assert_eq!(check["output"]["replayed"], report["receipt"]["output"]);
    }
}

/// A tampered receipt is refused before anything runs.
#[test]
fn replay_refuses_a_tampered_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = d402(
        &state,
        &[
            "--wasm",
            artifacts::MERKLE_VERIFY_COMPONENT,
            "--input",
            r#"{"leaf":"00","proof":[],"root":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fuel = report["receipt"]["fuelUsed"].as_u64().unwrap();
    report["receipt"]["fuelUsed"] = (fuel + 1).into();
    let file = tmp.path().join("tampered.json");
    std::fs::write(&file, report.to_string()).unwrap();
    let replay = d402(&state, &["--replay", file.to_str().unwrap()]);
    assert!(!replay.status.success());
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(stderr.contains("does not verify"), "{stderr}");
}

/// Errors are one clear line and a non-zero exit.
#[test]
fn errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // (arguments, the line's prefix with its stable code, a word of the message)
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "--wasm",
                d402_test_artifacts::UNKNOWN_IMPORT_COMPONENT,
                "--input",
                "{}",
            ],
            "error[unknown_import]: ",
            "d402:backdoor/shell",
        ),
        (
            vec![
                "--wasm",
                d402_test_artifacts::LOOKALIKE_IMPORT_COMPONENT,
                "--input",
                "{}",
            ],
            "error[unknown_import]: ",
            "wasi:cli/backdoor@0.2.0",
        ),
        (
            vec!["--wasm", "/no/such/file.wasm", "--input", "{}"],
            "error: ",
            "/no/such/file.wasm",
        ),
        (
            vec![
                "--wasm",
                d402_test_artifacts::ENDLESS_LOOP_COMPONENT,
                "--input",
                "{}",
                "--fuel",
                "1000000",
            ],
            "error[fuel_exhausted]: ",
            "fuel exhausted",
        ),
        (
            vec![
                "--wasm",
                d402_test_artifacts::SLEEPER_COMPONENT,
                "--input",
                r#"{"way": "sleep-forever"}"#,
                "--fuel",
                "1000000000000",
                "--timeout-ms",
                "1500",
            ],
            "error[wall_time_exceeded]: ",
            "1500 ms",
        ),
        (
            vec![
                "--wasm",
                artifacts::MERKLE_VERIFY_COMPONENT,
                "--input",
                "{oops",
            ],
            "error[invalid_input]: ",
            "invalid input",
        ),
    ];
    for (args, prefix, needle) in cases {
        let out = d402(&state, &args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(prefix), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// A guest that sleeps 45 s through WASI under `--timeout-ms 1500` does not hold the command: the
/// task's clock is stopped, so the sleep returns at once.
#[test]
fn a_sleeping_guest_does_not_hold_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let started = std::time::Instant::now();
    let out = d402(
        &state,
        &[
            "--wasm",
            d402_test_artifacts::SLEEPER_COMPONENT,
            "--input",
            r#"{"way": "sleep"}"#,
            "--timeout-ms",
            "1500",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The process includes compiling the component; the guest's sleep adds nothing to that.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["output"]["woke"], "sleep");
}

/// `--snapshot URL=FILE` with a URL that has a query string freezes that URL from the file.
#[test]
fn a_snapshot_url_with_a_query_string() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let page = tmp.path().join("list.html");
    std::fs::write(
        &page,
        "<html><head><title>Page one</title></head><body><main><h1>Page one</h1>\
         <p>The first page of a listing that is reached through a query string.</p></main></body></html>",
    )
    .unwrap();
    let url = "https://example.com/list?page=1&id=7";
    let out = d402(
        &state,
        &[
            "--wasm",
            artifacts::PAGE_TO_MARKDOWN_COMPONENT,
            "--input",
            &format!(r#"{{"url": "{url}"}}"#),
            "--snapshot",
            &format!("{url}={}", page.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let markdown = report["output"]["markdown"].as_str().unwrap();
    assert!(
        markdown.contains("reached through a query string"),
        "{markdown}"
    );
}

/// `--snapshotter chromium` freezes the DOM the page's script builds; `fetch` sees only the HTML.
#[test]
fn chromium_snapshotter_from_the_cli() {
    let page = r#"<html><head><title>Scripted</title></head><body><main><h1>Scripted</h1>
        <div id="app"></div><script>
        document.getElementById('app').innerHTML = '<p>' + ['Built', 'by', 'Java' + 'Script'].join(' ') + ' for d402.</p>';
        </script></main></body></html>"#;
    let server = d402_loopback_server::LoopbackServer::serving(page.as_bytes().to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let input = format!(r#"{{"url": "{}"}}"#, server.url("127.0.0.1", "/"));
    let markdown = |snapshotter: &str| {
        let out = d402(
            &state,
            &[
                "--wasm",
                artifacts::PAGE_TO_MARKDOWN_COMPONENT,
                "--input",
                &input,
                "--snapshotter",
                snapshotter,
                "--allow-private-targets",
            ],
        );
        assert!(
            out.status.success(),
            "{snapshotter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["output"]["markdown"].as_str().unwrap().to_string()
    };
    assert!(markdown("chromium").contains("Built by JavaScript"));
    assert!(markdown("playwright").contains("Built by JavaScript"));
    assert!(!markdown("fetch").contains("Built by JavaScript"));
}
