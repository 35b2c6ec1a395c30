//! The gateway's `/openapi.json` against the OpenAPI 3.1 specification, and a schema-driven fuzz
//! of the live API: a real anvil with the test token, real nodes on 127.0.0.1 and a gateway on
//! `base-x402-direct` selling `merkle.verify_proof@1`, checked by `openapi-spec-validator` and
//! fuzzed by `schemathesis` (both from PyPI, pinned in `tests/api-fuzz/requirements.txt` and
//! installed by `scripts/setup.sh` into `~/.cache/d402-tools/py`).
//!
//! The fuzz cannot pay (a random `PAYMENT-SIGNATURE` is refused with a 400 or a 402), which is
//! fine: it is here to find server errors and responses that the document does not describe.
//! One task is bought before it starts, so that half the task ids it tries exist and the 200s
//! of the task routes are checked against the document too. The paid paths themselves are
//! covered by `gateway_http.rs`. The other tests here each pin down one bug the document or
//! the fuzz led to: requests refused with plain text, an empty body or the wrong status.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_gateway::gateway::SalePolicy;
use d402_gateway::gateway::api;
use d402_network_support::*;
use d402_node::Node;
use d402_rails::evm::buyer;
use d402_rails::evm::direct::BaseDirect;
use d402_rails::evm::{Asset, EvmChain};
use d402_rails::{Atomic, Outbox, PaymentRequired, PaymentRequirements, Rail, SafetyCaps};
use d402_registry::AcceptancePolicy;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

const PRICE: u128 = 10_000;

/// Trusts the test publisher (`network-support`'s) for the `merkle` namespace, so that
/// `merkle.verify_proof@1` is sold.
fn acceptance() -> AcceptancePolicy {
    let publisher = Identity::from_seed([42; 32]);
    let mut acceptance = AcceptancePolicy::default().trust("merkle", &publisher.public_id());
    acceptance.required_rails = vec![d402_registry::wallet::Rail::Evm];
    acceptance
}

/// A tool from the API fuzz's virtualenv; `scripts/setup.sh` installs it.
fn fuzz_tool(name: &str) -> PathBuf {
    let tools = std::env::var_os("D402_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/d402-tools")
        });
    let path = tools.join("py/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// Runs a tool to the end off the async runtime, so the gateway keeps serving meanwhile.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run the tool"))
        .await
        .unwrap()
}

fn report(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running gateway on a real chain and network, and what must stay alive with it.
struct Live {
    url: String,
    /// Holds the test token.
    buyer: PrivateKeySigner,
    _anvil: Anvil,
    _nodes: Vec<Node>,
}

/// A local network (bootstrap, one merkle worker, a validator, the gateway's node) and a gateway
/// on `base-x402-direct` served on a free port.
async fn gateway(dir: &Path) -> Live {
    let anvil = Anvil::start(5).await.expect("anvil (run scripts/setup.sh)");
    let keys = anvil.keys.clone();
    // On base-x402-direct the gateway pays workers out of payTo with the facilitator key, so
    // payTo is the facilitator's own wallet.
    let (deployer, facilitator, worker_wallet) = (&keys[0], &keys[1], &keys[3]);
    let pay_to = facilitator;
    let chain = anvil.deploy_test_usd(deployer).await.unwrap();
    let buyer = keys[4].clone();
    anvil
        .mint(deployer, chain.asset.address, buyer.address(), 100 * PRICE)
        .await
        .unwrap();

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.evm = Some(worker_wallet.address().to_checksum(None));
    let worker = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    let node = start(dir, "gateway", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &worker, &validator, &node];
    for n in everyone {
        wait_discovered(n, &everyone).await;
    }

    let outbox = Outbox::open(&dir.join("outbox.redb")).unwrap();
    let rail: Arc<dyn Rail> = Arc::new(BaseDirect::new(
        chain.clone(),
        facilitator,
        outbox.clone(),
        SafetyCaps::default(),
    ));
    let policy = SalePolicy {
        price: Atomic::new(PRICE),
        worker_budget: Atomic::new(PRICE),
        pay_to: pay_to.address().to_checksum(None),
        asset: chain.asset.address.to_checksum(None),
        max_input_bytes: 4096,
        ..SalePolicy::default()
    };
    let (url, gw) = common::serve(
        dir,
        &node,
        rail,
        vec![merkle_offer(&node)],
        acceptance(),
        policy,
    )
    .await;
    gw.resume().await.unwrap();
    Live {
        url,
        buyer,
        _anvil: anvil,
        _nodes: vec![bootstrap, worker, validator, node],
    }
}

/// Buys one merkle task (402, then an EIP-3009 payment): a delivered task for the fuzz's task
/// routes to find. Returns its id.
async fn buy_task(live: &Live) -> String {
    let http = reqwest::Client::new();
    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("fuzz")).unwrap()});
    let res = http
        .post(format!("{}/tasks", live.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 402);
    let challenge = res.headers()[api::PAYMENT_REQUIRED].to_str().unwrap();
    let required: PaymentRequired = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(challenge)
            .unwrap(),
    )
    .unwrap();
    let payment = buyer::pay_exact(&live.buyer, &required.accepts[0], now()).unwrap();
    let payment =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&payment).unwrap());
    let res = http
        .post(format!("{}/tasks", live.url))
        .header(api::PAYMENT_SIGNATURE, payment)
        .json(&body)
        .send()
        .await
        .unwrap();
    // 200 when delivered within the gateway's wait, 202 on a busy machine: then poll.
    assert!(matches!(res.status().as_u16(), 200 | 202), "{res:?}");
    let task: Value = res.json().await.unwrap();
    let id = task["taskId"].as_str().unwrap().to_string();
    let task_url = format!("{}/tasks/{id}", live.url);
    eventually(
        Duration::from_secs(120),
        "the bought task is delivered",
        || {
            let (http, task_url) = (http.clone(), task_url.clone());
            async move {
                let Ok(res) = http.get(&task_url).send().await else {
                    return false;
                };
                res.json::<Value>()
                    .await
                    .is_ok_and(|task| task["status"] == "delivered")
            }
        },
    )
    .await;
    id
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `/openapi.json` is a valid OpenAPI 3.1 document, and schemathesis, generating requests from
/// it for every operation, gets no 5xx and only responses the document describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_is_valid_3_1_and_fuzzing_finds_no_server_error() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let live = gateway(tmp.path()).await;
    let url = &live.url;
    let task = buy_task(&live).await;
    let http = reqwest::Client::new();

    let res = http
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let spec: Value = res.json().await.unwrap();
    let version = spec["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi is {version:?}");
    // The merkle capability is sold: the fuzz's examples reach the 402, not a 404.
    let wk: Value = common::get_json(&format!("{url}/.well-known/d402-gateway.json")).await;
    assert_eq!(wk["capabilities"][0]["id"], MERKLE);

    // The document against the OpenAPI 3.1 meta-schema.
    let doc = tmp.path().join("openapi.json");
    std::fs::write(&doc, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let mut validator = Command::new(fuzz_tool("openapi-spec-validator"));
    validator
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(&doc);
    let out = run(validator).await;
    assert!(
        out.status.success(),
        "openapi-spec-validator refused /openapi.json:\n{}",
        report(&out)
    );

    // The fuzz: every operation, a bounded number of cases each, a fixed seed.
    let operations: Vec<String> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    assert!(operations.len() >= 12, "{operations:?}");
    // Half the generated task ids are the bought task's (so that the 200s are checked against
    // their schemas too), and half the capabilities the one sold (so that bodies get past the
    // 404 to the policy checks and the 402).
    let config = tmp.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[dictionaries.tasks]
values = ["{task}"]

[dictionaries.capabilities]
values = ["{MERKLE}"]

[parameters]
"path.id" = {{ dictionary = "tasks", probability = 0.5 }}
"body.capability" = {{ dictionary = "capabilities", probability = 0.5 }}
"#
        ),
    )
    .unwrap();
    let junit = tmp.path().join("junit.xml");
    let mut fuzz = Command::new(fuzz_tool("schemathesis"));
    fuzz.arg("--config-file")
        .arg(&config)
        .arg("run")
        // From the file fetched above rather than its URL, so that `GET /openapi.json` is one of
        // the operations fuzzed (schemathesis leaves out the one its schema came from).
        .arg(&doc)
        .args(["--url", url.as_str()])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "400",
            "--seed",
            "402",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-junit-path",
        ])
        .arg(&junit)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(tmp.path());
    let started = Instant::now();
    let out = run(fuzz).await;
    let fuzz_time = started.elapsed();
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{}",
        report(&out)
    );
    let junit = std::fs::read_to_string(&junit).unwrap_or_default();
    for op in &operations {
        assert!(
            junit.contains(&format!("name=\"{op}\"")),
            "{op} was not exercised:\n{junit}\n{}",
            report(&out)
        );
    }
    // The fuzz got past the 404s to the 402 (whose body and header were checked against the
    // document): more challenges than the one the bought task answered.
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let challenges: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("d402_challenges_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no d402_challenges_total in\n{metrics}"));
    assert!(challenges > 1, "the fuzz issued no 402:\n{metrics}");
    eprintln!(
        "{}\nschemathesis: {} operations in {fuzz_time:?}, {challenges} challenges issued; test {:?}",
        String::from_utf8_lossy(&out.stdout),
        operations.len(),
        t0.elapsed()
    );
}

/// A gateway that never reaches a chain or a worker: one node, and a direct rail whose RPC URL
/// answers nothing. Enough for what is refused before any of that.
async fn offline_gateway(dir: &Path) -> (String, Node) {
    let node = start(dir, "gateway", &[], None, &[]).await;
    let chain = EvmChain {
        rpc_url: "http://127.0.0.1:9".parse().unwrap(),
        chain_id: 31337,
        asset: Asset {
            address: TOKEN,
            name: "Test USD".into(),
            version: "2".into(),
            decimals: 6,
        },
    };
    let outbox = Outbox::open(&dir.join("outbox.redb")).unwrap();
    let rail: Arc<dyn Rail> = Arc::new(BaseDirect::new(
        chain,
        &PrivateKeySigner::random(),
        outbox.clone(),
        SafetyCaps::default(),
    ));
    let policy = SalePolicy {
        price: Atomic::new(PRICE),
        pay_to: PAY_TO.to_checksum(None),
        max_input_bytes: 4096,
        ..SalePolicy::default()
    };
    let (url, _gw) = common::serve(
        dir,
        &node,
        rail,
        vec![merkle_offer(&node)],
        acceptance(),
        policy,
    )
    .await;
    (url, node)
}

const TOKEN: Address = Address::repeat_byte(7);
const PAY_TO: Address = Address::repeat_byte(1);

/// Asserts a JSON error body with `code`, and returns it.
async fn json_error(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "{res:?}");
    let content_type = res.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "application/json", "{res:?}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    body
}

/// A task id whose percent-escapes are not UTF-8 was axum's plain-text 400; it is a JSON 400
/// `invalid_task_id` on every task route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_task_ids_get_a_json_400() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = offline_gateway(tmp.path()).await;
    let http = reqwest::Client::new();
    for route in [
        "/tasks/%FF",
        "/tasks/%C3%28/result",
        "/tasks/a%E2%82/receipt",
    ] {
        let res = http.get(format!("{url}{route}")).send().await.unwrap();
        json_error(res, 400, "invalid_task_id").await;
    }
    // A well-formed id that names nothing is still a 404.
    let res = http
        .get(format!("{url}/tasks/%C3%A9t%C3%A9"))
        .send()
        .await
        .unwrap();
    json_error(res, 404, "task_not_found").await;
}

/// An unknown route and a known route with the wrong method had empty bodies; they are JSON
/// errors too, and the 405 says which methods the route takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = offline_gateway(tmp.path()).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{url}/no/such/route"))
        .send()
        .await
        .unwrap();
    json_error(res, 404, "not_found").await;
    let res = http.delete(format!("{url}/tasks")).send().await.unwrap();
    let allow = res.headers().get(reqwest::header::ALLOW).cloned();
    json_error(res, 405, "method_not_allowed").await;
    assert_eq!(allow.unwrap(), "POST");
    let res = http.post(format!("{url}/health")).send().await.unwrap();
    json_error(res, 405, "method_not_allowed").await;
}

/// Bodies the JSON extractor refuses keep the status that says why (they were all a 400): not
/// `application/json` is 415, not JSON 400, JSON of the wrong shape 422, too large 413, on
/// `/tasks` and on the facilitator routes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_get_the_status_that_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = offline_gateway(tmp.path()).await;
    let http = reqwest::Client::new();
    let huge = format!(
        r#"{{"capability":"{MERKLE}","input":{{"pad":"{}"}}}}"#,
        "x".repeat(64 * 1024)
    );
    for route in ["/tasks", "/x402/verify", "/x402/settle"] {
        let post = |body: String, content_type: &str| {
            http.post(format!("{url}{route}"))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
                .send()
        };
        let res = post("{}".into(), "text/plain").await.unwrap();
        json_error(res, 415, "unsupported_media_type").await;
        let res = post("{\"capability\":".into(), "application/json")
            .await
            .unwrap();
        json_error(res, 400, "invalid_body").await;
        let res = post("[1, 2]".into(), "application/json").await.unwrap();
        json_error(res, 422, "invalid_body").await;
        // The server answers 413 from the Content-Length without reading the body, and closes;
        // a client still writing the body can lose that answer to the reset (hyper's
        // IncompleteMessage), as with any HTTP server. Ask again until the answer gets through.
        let mut res = None;
        for _ in 0..10 {
            if let Ok(r) = post(huge.clone(), "application/json").await {
                res = Some(r);
                break;
            }
        }
        json_error(
            res.expect("an answer to the oversized body"),
            413,
            "body_too_large",
        )
        .await;
    }
    // An input over the policy's size but within the body limit is the input's 413.
    let body = json!({"capability": MERKLE, "input": {"pad": "x".repeat(5000)}});
    let res = http
        .post(format!("{url}/tasks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    json_error(res, 413, "input_too_large").await;
}

/// A payment header that is not visible ASCII was ignored, so a paying client got a fresh
/// challenge (402) for it; it is refused as an undecodable payment header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_header_that_is_not_ascii_is_refused_not_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = offline_gateway(tmp.path()).await;
    let http = reqwest::Client::new();
    let body = json!({"capability": MERKLE, "input": serde_json::from_str::<Value>(&merkle_input("l")).unwrap()});
    for header in [api::PAYMENT_SIGNATURE, api::X_PAYMENT] {
        let res = http
            .post(format!("{url}/tasks"))
            .header(header, HeaderValue::from_bytes(b"eyJ4NDAy\xff").unwrap())
            .json(&body)
            .send()
            .await
            .unwrap();
        json_error(res, 400, "invalid_payment_header").await;
    }
    // Without one, the same request is challenged.
    let res = http
        .post(format!("{url}/tasks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 402);
    assert!(res.headers().contains_key(api::PAYMENT_REQUIRED));
}

/// Facilitator requests whose requirements carry an amount that is not a number were answered
/// 502 `rail_unavailable`, as if the rail had failed; they are invalid requirements. (Found by
/// reading the handlers; the fuzz's random payloads do not get that far.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_answers_malformed_requirements_as_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _node) = offline_gateway(tmp.path()).await;
    let http = reqwest::Client::new();
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact",
        "network": "eip155:31337",
        "amount": PRICE.to_string(),
        "payTo": PAY_TO.to_checksum(None),
        "maxTimeoutSeconds": 60,
        "asset": TOKEN.to_checksum(None),
        "extra": {"name": "Test USD", "version": "2"},
    }))
    .unwrap();
    let payment = buyer::pay_exact(&PrivateKeySigner::random(), &requirements, now()).unwrap();
    let mut payment = serde_json::to_value(&payment).unwrap();
    let mut requirements = serde_json::to_value(&requirements).unwrap();
    payment["accepted"]["amount"] = json!("a lot");
    requirements["amount"] = json!("a lot");
    let request = json!({
        "x402Version": 2,
        "paymentPayload": payment,
        "paymentRequirements": requirements,
    });
    let verify: Value = {
        let res = http
            .post(format!("{url}/x402/verify"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    };
    assert_eq!(verify["isValid"], false, "{verify}");
    assert_eq!(verify["invalidReason"], "invalid_payment_requirements");
    let settle: Value = {
        let res = http
            .post(format!("{url}/x402/settle"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    };
    assert_eq!(settle["success"], false, "{settle}");
    assert_eq!(settle["errorReason"], "invalid_payment_requirements");

    // Requirements that are not even an object were answered 200 `invalid_payload`; the
    // request does not match the documented body, so it is a 422.
    for route in ["/x402/verify", "/x402/settle"] {
        let res = http
            .post(format!("{url}{route}"))
            .json(&json!({"x402Version": 2, "paymentPayload": {}, "paymentRequirements": [null]}))
            .send()
            .await
            .unwrap();
        json_error(res, 422, "invalid_body").await;
    }
}
