//! What several gateway test files share: a gateway served in process on a free port, reading
//! tasks back from one, and running `d402` processes (a gateway node, the client, the ops
//! commands). Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use d402_evm_chain::Anvil;
use d402_gateway::gateway::{Gateway, GatewayConfig, SalePolicy, TaskStore, api};
use d402_node::{Node, Offer};
use d402_rails::Rail;
use d402_registry::AcceptancePolicy;

/// What the test buyer of [`chain`] starts with: 100 TUSD.
pub const BUYER_FUNDS: u128 = 100_000_000;

/// A fresh anvil with the test token and its keys: the deployer (who mints), a facilitator, a
/// funded buyer, and spare funded keys.
pub struct Chain {
    pub anvil: Anvil,
    pub chain: d402_rails::evm::EvmChain,
    pub deployer: PrivateKeySigner,
    pub facilitator: PrivateKeySigner,
    pub buyer: PrivateKeySigner,
    pub others: Vec<PrivateKeySigner>,
}

pub async fn chain() -> Chain {
    let anvil = Anvil::start(10)
        .await
        .expect("anvil (run scripts/setup.sh)");
    let mut keys = anvil.keys.clone();
    let deployer = keys.remove(0);
    let facilitator = keys.remove(0);
    let buyer = keys.remove(0);
    let chain = anvil.deploy_test_usd(&deployer).await.unwrap();
    anvil
        .mint(&deployer, chain.asset.address, buyer.address(), BUYER_FUNDS)
        .await
        .unwrap();
    Chain {
        anvil,
        chain,
        deployer,
        facilitator,
        buyer,
        others: keys,
    }
}

impl Chain {
    /// `who`'s balance of the test token.
    pub async fn balance(&self, who: Address) -> u128 {
        self.anvil
            .balance(self.chain.asset.address, who)
            .await
            .unwrap()
    }
}

/// A gateway selling `offers` through `node`'s network on `rail`, served on a free port of
/// 127.0.0.1 with its task store under `dir`. Not resumed: a test whose rail reaches a chain
/// calls [`Gateway::resume`] to start the sweep and the payer. Returns the base URL.
pub async fn serve(
    dir: &Path,
    node: &Node,
    rail: Arc<dyn Rail>,
    offers: Vec<Offer>,
    acceptance: AcceptancePolicy,
    policy: SalePolicy,
) -> (String, Arc<Gateway>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = TaskStore::open(&dir.join("gateway-tasks.redb")).unwrap();
    let gw = Arc::new(Gateway::new(
        GatewayConfig {
            policy,
            acceptance,
            rail,
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

/// The installed stock x402 client: `$D402_TOOLS/x402-interop/node_modules` (default
/// `~/.cache/d402-tools`), as `scripts/setup.sh` installs it.
pub fn interop_modules() -> std::path::PathBuf {
    let tools = std::env::var_os("D402_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/d402-tools")
        });
    let modules = tools.join("x402-interop/node_modules");
    assert!(
        modules.join("@x402/fetch/package.json").is_file(),
        "{} has no @x402/fetch: run scripts/setup.sh",
        modules.display()
    );
    modules
}

/// The repository's stock-client scripts (`tests/x402-interop/*.mjs`), copied under `dir` next to
/// a link to the installed packages (node resolves an ES module's imports from the script's own
/// folder up); returns the `exact` one, `pay.mjs` (`pay-batch.mjs` is beside it).
pub fn client_script(dir: &Path) -> std::path::PathBuf {
    let source = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/x402-interop");
    let folder = dir.join("x402-client");
    std::fs::create_dir_all(&folder).unwrap();
    std::os::unix::fs::symlink(interop_modules(), folder.join("node_modules")).unwrap();
    std::fs::write(folder.join("package.json"), r#"{"type": "module"}"#).unwrap();
    for script in ["pay.mjs", "pay-batch.mjs"] {
        std::fs::copy(source.join(script), folder.join(script)).unwrap();
    }
    folder.join("pay.mjs")
}

/// Makes this test process the reaper of every orphan among its descendants
/// (`PR_SET_CHILD_SUBREAPER`): a process a test's child leaves behind is then re-parented here
/// instead of to init, where [`live_orphans`] finds it. Call once, in a test binary with one test.
pub fn become_subreaper() {
    // SAFETY: one prctl on this process; no memory is passed.
    let set = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        set,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        std::io::Error::last_os_error()
    );
}

/// `(pid, parent pid, state, command line)` of every process on the machine.
pub fn processes() -> Vec<(i32, i32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses, so split after the
        // last `)`.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|f| f.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        out.push((pid, ppid, state, cmdline));
    }
    out
}

/// Every live (not zombie) process whose parent is this test process, other than `except`: with
/// [`become_subreaper`], what a finished child left running.
pub fn live_orphans(except: &[i32]) -> Vec<String> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|(pid, ppid, state, _)| *ppid == me && *state != 'Z' && !except.contains(pid))
        .map(|(pid, _, _, cmd)| format!("{pid}: {cmd}"))
        .collect()
}

/// Every live descendant of `root`.
pub fn descendants(root: i32) -> Vec<(i32, String)> {
    let all = processes();
    let mut found = vec![root];
    let mut out = Vec::new();
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid, state, cmd) in &all {
            if found.contains(ppid) && !found.contains(pid) && *state != 'Z' {
                found.push(*pid);
                out.push((*pid, cmd.clone()));
                grew = true;
            }
        }
    }
    out
}

/// Waits up to `within` for [`live_orphans`] to be empty; panics naming what is left.
pub fn assert_nothing_left(within: Duration, what: &str) {
    let until = Instant::now() + within;
    loop {
        let left = live_orphans(&[]);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what} left {} process(es) running:\n{}",
            left.len(),
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `k` as `solana-keygen` does (a JSON array of its 64 bytes) to `dir/name`; returns the
/// path, for a `--…-key` flag.
pub fn keypair_file(dir: &Path, name: &str, k: &solana_keypair::Keypair) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_string(&k.to_bytes().to_vec()).unwrap(),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}
