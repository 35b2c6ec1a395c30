//! `kill -9` the gateway at random points of 50 paid tasks and restart it on the same state:
//! afterwards every paid task is delivered or refunded, nobody is paid twice, and the chain
//! agrees with the gateway's records.
//!
//! The gateway is a real `d402 node --http-port …` process selling `merkle.verify_proof@1` (with
//! a creator commission and a gateway fee, so the split has three shares) on
//! `base-task-escrow` on a real anvil; bootstrap, worker and validator run in this process. Five
//! buyers pay ten tasks each, concurrently, signing the escrow challenges themselves. A killer
//! SIGKILLs the gateway at moments chosen by a seeded RNG (`D402_CRASH_SEED` replays a run),
//! each aimed at one stage: right after a 402, while the payment is verified and settled, while
//! the task is dispatched, and as the split is released. Buyers whose request was cut off retry
//! with the same `payment-identifier` and payload, as an x402 client does. One restart is held
//! back until the deadlines of the tasks in flight have passed, so that releases the chain
//! refuses end refunded. Then the gateway is restarted once more and the test waits for its own
//! sweep to finish every task (the test refunds nothing itself), and checks each task's record
//! against the escrow contract and every balance against the delivered tasks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine;
use d402_core::Identity;
use d402_evm_chain::Anvil;
use d402_gateway::gateway::api::{PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use d402_gateway::gateway::{TaskState, TaskStore};
use d402_network_support::*;
use d402_node::Offer;
use d402_rails::evm::buyer;
use d402_rails::evm::contracts::TaskEscrow;
use d402_rails::evm::escrow::BaseTaskEscrow;
use d402_rails::{Outbox, PaymentPayload, PaymentRequired, PaymentRequirements, TaskId};
use d402_registry::CreatorWallets;
use d402_registry::registration::{Terms, register};
use serde_json::{Value, json};

const BUYERS: usize = 5;
const TASKS_PER_BUYER: usize = 10;
const PRICE: u128 = 10_000;
/// 10 % creator commission, 5 % gateway fee: the worker nets the rest.
const CREATOR_BPS: u32 = 1_000;
const GATEWAY_FEE_BPS: u32 = 500;
const CREATOR_SHARE: u128 = PRICE * CREATOR_BPS as u128 / 10_000;
const GATEWAY_SHARE: u128 = PRICE * GATEWAY_FEE_BPS as u128 / 10_000;
const WORKER_SHARE: u128 = PRICE - CREATOR_SHARE - GATEWAY_SHARE;
const BUYER_FUNDS: u128 = 1_000_000;
/// Short deadlines, so that refunds come due within the test: a task's escrow deadline is
/// 20 + 5 + 1 s after its challenge.
const PAYMENT_TIMEOUT_SECS: u64 = 20;
const TASK_TIMEOUT_SECS: u64 = 5;
const REFUND_AFTER_SECS: u64 = 1;
const KILLS: usize = 16;

/// splitmix64: a seeded RNG small enough to keep here, so a run can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(v: &impl serde::Serialize) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
}

fn unb64<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

fn escrow_task(req: &PaymentRequirements) -> B256 {
    req.extra.as_ref().unwrap()["terms"]["taskId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The gateway as a process on a fixed HTTP port, restartable on the same state.
struct GatewayProcess {
    /// A private copy of the `d402` binary: the one cargo built for this test, whatever is
    /// built into the shared target directory while the test runs.
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    url: String,
    state: PathBuf,
    starts: usize,
}

impl GatewayProcess {
    /// Starts the process and waits for its JSON line (printed once it has reconciled, resumed
    /// and is listening).
    async fn start(&mut self) -> Duration {
        let t = Instant::now();
        let mut child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            // Keep draining, so that nothing the gateway prints later can block it.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            line
        })
        .await
        .unwrap();
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("gateway start {}: {e}: {line:?}", self.starts));
        assert_eq!(info["http"].as_str(), Some(self.url.as_str()));
        assert_eq!(info["sells"][0], MERKLE);
        self.starts += 1;
        t.elapsed()
    }

    /// SIGKILL: no destructor, no flush, no graceful anything.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a buyer is doing, for the killer's anchors and for classifying what a kill hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Holds a 402, about to pay it.
    Challenged(B256),
    /// Sent (or is retrying) the paid request for this escrow task.
    Paying(B256),
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Challenged(B256),
    Paying(B256),
}

/// One signed payment: an answer to one challenge.
#[derive(Debug, Clone)]
struct Attempt {
    buyer: usize,
    escrow_task: B256,
    /// The gateway's task id, when a response named one.
    task: Option<String>,
}

struct Shared {
    phases: Mutex<Vec<Phase>>,
    attempts: Mutex<Vec<Attempt>>,
    events: tokio::sync::broadcast::Sender<Event>,
    done: std::sync::atomic::AtomicUsize,
}

enum Sent {
    /// The gateway answered with a task.
    Task(String),
    /// The gateway refused the payment (402): no task; pay a fresh challenge.
    Refused(Value),
}

/// One buyer: pays `TASKS_PER_BUYER` tasks one after the other, riding out every kill.
async fn buy(
    index: usize,
    key: PrivateKeySigner,
    url: String,
    shared: Arc<Shared>,
    seed: u64,
) -> usize {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut rng = Rng(seed ^ (index as u64 + 1).wrapping_mul(0x5851_f42d));
    let mut attempts = 0;
    for t in 0..TASKS_PER_BUYER {
        let input: Value = serde_json::from_str(&merkle_input(&format!("b{index}-t{t}"))).unwrap();
        let body = json!({"capability": MERKLE, "input": input});
        loop {
            // A challenge: retried until the gateway is up.
            let req = loop {
                match http.post(format!("{url}/tasks")).json(&body).send().await {
                    Ok(r) if r.status() == 402 => {
                        let required: PaymentRequired =
                            unb64(r.headers()[PAYMENT_REQUIRED].to_str().unwrap());
                        break required.accepts[0].clone();
                    }
                    Ok(r) => {
                        let status = r.status();
                        panic!(
                            "buyer {index}: challenge answered {status}: {:?}",
                            r.text().await
                        )
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let escrow = escrow_task(&req);
            shared.phases.lock().unwrap()[index] = Phase::Challenged(escrow);
            let _ = shared.events.send(Event::Challenged(escrow));
            // A client takes a moment to decide and sign.
            tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
            let payment = buyer::pay_escrow(&key, &req, now()).unwrap();
            let payment = with_payment_id(payment, &format!("crash-b{index}-t{t}-a{attempts}"));
            attempts += 1;
            let slot = {
                let mut a = shared.attempts.lock().unwrap();
                a.push(Attempt {
                    buyer: index,
                    escrow_task: escrow,
                    task: None,
                });
                a.len() - 1
            };
            shared.phases.lock().unwrap()[index] = Phase::Paying(escrow);
            let _ = shared.events.send(Event::Paying(escrow));
            // The paid request, retried as it was (same id, same payload) until answered.
            let sent = loop {
                let res = http
                    .post(format!("{url}/tasks"))
                    .header(PAYMENT_SIGNATURE, b64(&payment))
                    .json(&body)
                    .send()
                    .await;
                let Ok(res) = res else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let status = res.status().as_u16();
                let Ok(v) = res.json::<Value>().await else {
                    continue; // cut off mid-body
                };
                if let Some(id) = v["taskId"].as_str() {
                    break Sent::Task(id.to_string());
                }
                if status == 402 {
                    break Sent::Refused(v);
                }
                // 502 rail_unavailable and the like: the task exists or the payment is still
                // unused; asking again answers which.
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            shared.phases.lock().unwrap()[index] = Phase::Idle;
            match sent {
                Sent::Task(id) => {
                    shared.attempts.lock().unwrap()[slot].task = Some(id);
                    break;
                }
                Sent::Refused(v) => {
                    eprintln!(
                        "buyer {index} task {t}: payment refused ({}), paying a new challenge",
                        v["code"]
                    );
                }
            }
        }
    }
    shared
        .done
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    attempts
}

fn with_payment_id(p: PaymentPayload, id: &str) -> PaymentPayload {
    let mut v = serde_json::to_value(&p).unwrap();
    v["extensions"] = json!({"payment-identifier": {"info": {"id": id}}});
    serde_json::from_value(v).unwrap()
}

async fn chain_state(escrow: &TaskEscrow::TaskEscrowInstance<DynProvider>, task: B256) -> u8 {
    escrow.tasks(task).call().await.unwrap().state
}

/// What one in-flight task was doing when the gateway died, from its records (read while the
/// process is dead, as the restart will).
fn stage_of(
    record: &d402_gateway::gateway::TaskRecord,
    outbox: &Outbox,
    escrow: Address,
) -> String {
    let id = |what: &str| {
        format!(
            "escrow:{}:{}:{what}",
            escrow,
            TaskId::from_label(&record.id).0
        )
        .to_lowercase()
    };
    let entry = |what: &str| match outbox.get(&id(what)).unwrap() {
        None => "none".to_string(),
        Some(r) => format!("{:?}", r.state)
            .split([' ', '{'])
            .next()
            .unwrap()
            .to_lowercase(),
    };
    match record.state {
        TaskState::Verified => format!("verified, funding {}", entry("fund")),
        TaskState::Settled => "settled: dispatching".into(),
        TaskState::Validated => format!("validated, release {}", entry("release")),
        TaskState::RefundPending => format!("refund pending, refund {}", entry("refund")),
        s => format!("{s:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_paid_task_ends_delivered_or_refunded_across_kill_9() {
    let t0 = Instant::now();
    let seed = std::env::var("D402_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash-restart seed: {seed} (D402_CRASH_SEED={seed} replays the kill schedule)");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let anvil = Anvil::start(6 + BUYERS)
        .await
        .expect("anvil (run scripts/setup.sh)");
    let mut keys = anvil.keys.clone();
    let deployer = keys.remove(0);
    let facilitator = keys.remove(0);
    let release_key = keys.remove(0);
    let worker = keys.remove(0).address();
    let creator = keys.remove(0).address();
    let gateway_wallet = keys.remove(0).address();
    let buyers = keys;
    let chain = anvil.deploy_test_usd(&deployer).await.unwrap();
    let token = chain.asset.address;
    for b in &buyers {
        anvil
            .mint(&deployer, token, b.address(), BUYER_FUNDS)
            .await
            .unwrap();
    }
    let escrow = BaseTaskEscrow::deploy(&anvil.provider(&deployer), token, release_key.address())
        .await
        .unwrap();
    let contract = TaskEscrow::new(escrow, anvil.provider(&deployer));

    // The network, in process: a bootstrap, one merkle worker paid at `worker`, a validator.
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut config = worker_config(&[MERKLE], fetch_snapshotter());
    config.payout_wallets.evm = Some(worker.to_checksum(None));
    let worker_node = start(dir, "worker", &[&bootstrap], Some(config), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    wait_discovered(&bootstrap, &[&worker_node, &validator]).await;

    // The capability as its author hands it over: with a 10 % commission to `creator`.
    let publish = dir.join("merkle");
    let offer = commission_offer(&bootstrap, creator);
    d402_gateway::published::write(
        &publish,
        &offer.registration,
        &offer.manifest,
        &component(artifacts::MERKLE_VERIFY_COMPONENT),
    )
    .unwrap();
    let owner = Identity::from_seed([42; 32]).public_id();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let state = dir.join("gw");
    let args: Vec<String> = [
        "node",
        "--label",
        "gateway",
        "--state",
        state.to_str().unwrap(),
        "--peer",
        &bootstrap.listen_addr().to_string(),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        &port.to_string(),
        "--payment",
        "base-task-escrow",
        "--gateway-price",
        "$0.01",
        "--gateway-fee-bps",
        &GATEWAY_FEE_BPS.to_string(),
        "--offer",
        MERKLE,
        "--publish",
        publish.to_str().unwrap(),
        "--trust-namespace",
        &format!("merkle={owner}"),
        "--max-creator-commission-bps",
        "2000",
        "--evm-rpc-url",
        anvil.url.as_str(),
        "--evm-token",
        &token.to_string(),
        "--evm-token-name",
        d402_evm_chain::TOKEN_NAME,
        "--evm-token-version",
        d402_evm_chain::TOKEN_VERSION,
        "--escrow-address",
        &escrow.to_string(),
        "--release-key",
        &alloy::hex::encode(release_key.to_bytes()),
        "--facilitator-key",
        &alloy::hex::encode(facilitator.to_bytes()),
        "--gateway-wallet",
        &gateway_wallet.to_string(),
        "--gateway-payment-timeout-secs",
        &PAYMENT_TIMEOUT_SECS.to_string(),
        "--gateway-task-timeout-secs",
        &TASK_TIMEOUT_SECS.to_string(),
        "--gateway-refund-after-secs",
        &REFUND_AFTER_SECS.to_string(),
        "--gateway-wait-ms",
        "10000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // `D402_BIN` names the binary to test when the target directory is shared with other
    // builds that may replace `debug/d402` between cargo building it and the test starting.
    let built = std::env::var_os("D402_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_d402")));
    let binary = dir.join("d402");
    std::fs::copy(built, &binary).unwrap();
    let mut gateway = GatewayProcess {
        binary,
        args,
        child: None,
        url: url.clone(),
        state: state.join("gateway"),
        starts: 0,
    };
    gateway.start().await;

    // The buyers.
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let shared = Arc::new(Shared {
        phases: Mutex::new(vec![Phase::Idle; BUYERS]),
        attempts: Mutex::new(Vec::new()),
        events,
        done: Default::default(),
    });
    let mut buyer_tasks = Vec::new();
    for (i, key) in buyers.iter().enumerate() {
        buyer_tasks.push(tokio::spawn(buy(
            i,
            key.clone(),
            url.clone(),
            Arc::clone(&shared),
            seed,
        )));
    }

    // The killer: each kill aims at one stage, in a seeded order that uses every stage.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Aim {
        After402,
        VerifySettle,
        Dispatch,
        Release,
    }
    let aims = [
        Aim::After402,
        Aim::VerifySettle,
        Aim::Dispatch,
        Aim::Release,
    ];
    let mut schedule: Vec<Aim> = (0..KILLS).map(|i| aims[i % aims.len()]).collect();
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let late = 1 + rng.below(3) as usize;
    let mut held_back = false;
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    let mut aimed: BTreeMap<Aim, usize> = BTreeMap::new();
    let mut restart_times = Vec::new();
    // Only ever resubscribed (to hear events from now on); held so that sends never fail.
    let rx = shared.events.subscribe();
    let all_done = || shared.done.load(std::sync::atomic::Ordering::SeqCst) == BUYERS;
    for (k, aim) in schedule.iter().copied().enumerate() {
        if all_done() {
            break;
        }
        // Let the restarted gateway get some work done first.
        tokio::time::sleep(Duration::from_millis(30 + rng.below(220))).await;
        let wait_for = |rx: &tokio::sync::broadcast::Receiver<Event>, paying: bool| {
            let mut rx = rx.resubscribe();
            async move {
                let until = Instant::now() + Duration::from_secs(5);
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                        Ok(Ok(Event::Paying(t))) if paying => return Some(t),
                        Ok(Ok(Event::Challenged(t))) if !paying => return Some(t),
                        _ => {}
                    }
                }
                None
            }
        };
        match aim {
            Aim::After402 => {
                wait_for(&rx, false).await;
            }
            Aim::VerifySettle => {
                if wait_for(&rx, true).await.is_some() {
                    tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
                }
            }
            Aim::Dispatch | Aim::Release => {
                if let Some(t) = wait_for(&rx, true).await {
                    let want = if aim == Aim::Dispatch { 1 } else { 2 };
                    let until = Instant::now() + Duration::from_secs(8);
                    while Instant::now() < until && chain_state(&contract, t).await < want {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if aim == Aim::Dispatch {
                        tokio::time::sleep(Duration::from_millis(rng.below(120))).await;
                    }
                }
            }
        }
        gateway.kill();
        *aimed.entry(aim).or_default() += 1;

        // What the kill hit, from the records the restart will read.
        let phases = shared.phases.lock().unwrap().clone();
        let mut hit = Vec::new();
        let mut max_deadline = 0;
        {
            let store = TaskStore::open(&gateway.state.join("gateway.redb")).unwrap();
            let outbox = Outbox::open(&gateway.state.join("outbox.redb")).unwrap();
            let records = store.all().unwrap();
            for r in records.iter().filter(|r| r.state.in_flight()) {
                hit.push(stage_of(r, &outbox, escrow));
                max_deadline = max_deadline.max(r.deadline_unix);
            }
            for p in phases {
                let recorded = |t: B256| records.iter().any(|r| TaskId::from_label(&r.id).0 == t);
                match p {
                    Phase::Challenged(_) => hit.push("after a 402, unpaid".into()),
                    Phase::Paying(t) if !recorded(t) => {
                        hit.push("paid request, no task recorded yet".into())
                    }
                    _ => {}
                }
            }
        }
        eprintln!("kill {k} aimed at {aim:?} hit {hit:?}");
        for h in hit {
            *hits.entry(h).or_default() += 1;
        }
        if k >= late && !held_back && max_deadline > 0 {
            held_back = true;
            // Held down until the deadlines of the tasks it was running have passed.
            let wait = (max_deadline + 2).saturating_sub(now());
            eprintln!("kill {k}: restarting after the deadlines, in {wait} s");
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        restart_times.push(gateway.start().await);
    }
    assert!(
        held_back,
        "one restart waited out the deadlines (seed {seed})"
    );
    let mut attempts_made = 0;
    for b in buyer_tasks {
        attempts_made += b.await.unwrap();
    }
    // Once more: a kill with nothing in flight from buyers, then the sweep finishes the rest.
    gateway.kill();
    restart_times.push(gateway.start().await);
    let attempts = shared.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), attempts_made);
    let tasks: Vec<String> = attempts.iter().filter_map(|a| a.task.clone()).collect();
    assert_eq!(
        tasks.len(),
        BUYERS * TASKS_PER_BUYER,
        "every task got a task id"
    );

    // Every task ends, through the gateway's own sweep and refunds.
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(PAYMENT_TIMEOUT_SECS + TASK_TIMEOUT_SECS + 30);
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for id in &tasks {
            let v: Value = http
                .get(format!("{url}/tasks/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            states.insert(id.clone(), v["status"].as_str().unwrap_or("?").to_string());
        }
        let open: Vec<_> = states
            .iter()
            .filter(|(_, s)| !matches!(s.as_str(), "delivered" | "refunded" | "failed"))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "tasks still in flight: {open:?} (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    gateway.kill();

    // The gateway's records against the chain, for every payment any buyer signed.
    let store = TaskStore::open(&gateway.state.join("gateway.redb")).unwrap();
    let records = store.all().unwrap();
    let by_escrow: BTreeMap<B256, _> = records
        .iter()
        .map(|r| (TaskId::from_label(&r.id).0, r))
        .collect();
    assert_eq!(by_escrow.len(), records.len());
    let mut delivered = [0u128; BUYERS];
    let mut outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &attempts {
        let on_chain = chain_state(&contract, a.escrow_task).await;
        let record = by_escrow.get(&a.escrow_task);
        let what = match (record.map(|r| r.state), on_chain) {
            (Some(TaskState::Delivered), 2) => {
                delivered[a.buyer] += 1;
                "delivered, released on chain"
            }
            (Some(TaskState::Refunded), 3) => "refunded, refunded on chain",
            // The settlement never reached the chain: nothing was charged.
            (Some(TaskState::Failed), 0) => "failed, never funded",
            (None, 0) => "no task, never funded",
            (state, chain) => panic!(
                "buyer {} escrow {}: gateway record {state:?}, chain state {chain} (seed {seed})",
                a.buyer, a.escrow_task
            ),
        };
        *outcome.entry(what).or_default() += 1;
        if let (Some(id), Some(r)) = (&a.task, record) {
            assert_eq!(
                id, &r.id,
                "the buyer was told the task the gateway recorded"
            );
        }
    }
    // No task the buyers do not know of.
    for r in &records {
        assert!(
            attempts
                .iter()
                .any(|a| a.escrow_task == TaskId::from_label(&r.id).0),
            "task {} answers no buyer's payment",
            r.id
        );
    }
    let n: u128 = delivered.iter().sum();
    for (i, b) in buyers.iter().enumerate() {
        assert_eq!(
            anvil.balance(token, b.address()).await.unwrap(),
            BUYER_FUNDS - delivered[i] * PRICE,
            "buyer {i} paid exactly its delivered tasks (seed {seed})"
        );
    }
    assert_eq!(
        anvil.balance(token, worker).await.unwrap(),
        n * WORKER_SHARE
    );
    assert_eq!(
        anvil.balance(token, creator).await.unwrap(),
        n * CREATOR_SHARE
    );
    assert_eq!(
        anvil.balance(token, gateway_wallet).await.unwrap(),
        n * GATEWAY_SHARE
    );
    assert_eq!(
        anvil.balance(token, escrow).await.unwrap(),
        0,
        "nothing left in escrow"
    );

    eprintln!(
        "crash-restart seed {seed}: {} kills, aimed {aimed:?}",
        gateway.starts - 1
    );
    eprintln!("stages hit: {hits:#?}");
    eprintln!("payments: {} signed, outcomes {outcome:?}", attempts.len());
    eprintln!(
        "restarts took {:?} .. {:?}; wall time {:?}",
        restart_times.iter().min().unwrap(),
        restart_times.iter().max().unwrap(),
        t0.elapsed()
    );
    let _ = (&worker_node, &validator);
}

/// merkle.verify_proof@1, registered by the trusted publisher with a commission to `creator`.
fn commission_offer(node: &d402_node::Node, creator: Address) -> Offer {
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let manifest = manifest(MERKLE, &bytes);
    let registration = register(
        &manifest,
        &Identity::from_seed([42; 32]),
        Terms {
            namespace: manifest.namespace().to_string(),
            namespace_proof: None,
            creator_commission_bps: CREATOR_BPS,
            creator_wallets: CreatorWallets {
                solana: None,
                evm: Some(creator.to_checksum(None)),
            },
            issued_at: 1_767_225_600_000,
        },
    )
    .unwrap();
    Offer::publish(node.coordinator().store(), registration, manifest, &bytes).unwrap()
}
