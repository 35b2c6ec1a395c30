//! `d402 run`: run a component under the host's limits and print its output and signed receipt,
//! or (`--replay`) re-execute a receipt from its recorded evidence and say whether it matches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cap_std::fs::Dir;
use clap::Args;
use d402_core::{
    Canonicalizer, CapabilityRef, ContentId, EgressPolicy, FrozenPages, Identity, Limits, Receipt,
    Snapshotter, TaskContext,
};
use d402_host::{ContentStore, EvidenceMode, FetchSnapshotter, Host, HostConfig, ReplayBook, Task};
use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter, FallbackSnapshotter};
use serde_json::json;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["wasm", "replay"]))]
pub struct RunArgs {
    /// The component to run (a wasm32-wasip2 component targeting d402:capability).
    #[arg(long, value_name = "FILE.wasm")]
    wasm: Option<PathBuf>,
    /// Re-execute the run a receipt describes, from its evidence only, and compare.
    #[arg(long, value_name = "RECEIPT.json", conflicts_with_all = ["input", "input_file", "snapshot"])]
    replay: Option<PathBuf>,
    /// The task input, JSON text.
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// Read the task input from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    input_file: Option<PathBuf>,
    /// Serve `snapshot(URL)` from FILE instead of the network (repeatable).
    #[arg(long, value_name = "URL=FILE.html")]
    snapshot: Vec<String>,
    /// How pages are frozen when no `--snapshot` file is given: a headless Chromium that runs the
    /// page's scripts (`playwright` is accepted as an alias), a plain HTTP fetch, or none.
    #[arg(long, value_enum, default_value = "fetch")]
    snapshotter: SnapshotterKind,
    /// With `--snapshotter chromium`: fall back to a plain fetch when the browser cannot load a page.
    #[arg(long, value_name = "true|false", default_value = "false", action = clap::ArgAction::Set)]
    fallback_to_fetch: bool,
    /// Fuel (deterministic instruction budget).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory limit in bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Wall-time limit in milliseconds.
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Output size limit in bytes.
    #[arg(long, value_name = "BYTES")]
    max_output: Option<u64>,
    /// A host `fetch` may reach: `api.example.com` or `*.example.com` (repeatable).
    #[arg(long = "allow-host", value_name = "H")]
    allow_host: Vec<String>,
    /// Allow loopback, private and link-local targets (local testing only).
    #[arg(long)]
    allow_private_targets: bool,
    /// How outputs are compared by hash: `jcs` or `normalized-text`.
    #[arg(long, default_value = "jcs")]
    canonicalizer: Canonicalizer,
    /// The capability this component implements, `ID@VERSION`, recorded in the receipt.
    #[arg(long, value_name = "ID@VERSION")]
    capability: Option<String>,
    /// Task id (seeds the capability's randomness). Defaults to a hash of implementation and input.
    #[arg(long)]
    task_id: Option<String>,
    /// The instant the capability's clock is frozen at, in ms since the Unix epoch.
    #[arg(long, default_value_t = 0)]
    timestamp_ms: u64,
    /// State folder: content store, compiled-component cache, worker key.
    #[arg(long, default_value = ".d402/run", value_name = "DIR")]
    state: PathBuf,
}

/// The snapshotters `d402 run` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SnapshotterKind {
    #[value(alias = "playwright")]
    Chromium,
    Fetch,
    None,
}

struct Node {
    host: Host,
    store: ContentStore,
}

fn open_node(state: &Path) -> anyhow::Result<Node> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let dir = Dir::open_ambient_dir(state, cap_std::ambient_authority())
        .with_context(|| format!("opening state folder {}", state.display()))?;
    dir.create_dir_all("keys")?;
    dir.create_dir_all("compiled")?;
    let identity = Identity::load_or_create(&dir.open_dir("keys")?, "worker.key")?;
    let store = ContentStore::open(&dir)?;
    let config = HostConfig {
        compiled_cache: Some(dir.open_dir("compiled")?),
        ..HostConfig::default()
    };
    let host = Host::new(config, Arc::new(identity))?;
    Ok(Node { host, store })
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    match args.replay.clone() {
        Some(receipt) => replay(&receipt, &args),
        None => live(args),
    }
}

fn live(args: RunArgs) -> anyhow::Result<ExitCode> {
    let wasm_path = args
        .wasm
        .as_ref()
        .ok_or_else(|| anyhow!("--wasm is required"))?;
    let wasm =
        std::fs::read(wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
    let input = match (&args.input, &args.input_file) {
        (Some(i), _) => i.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("give the task input with --input JSON or --input-file FILE"),
    };
    let node = open_node(&args.state)?;
    let implementation = node.store.put(&wasm)?;
    node.host.load(&implementation, &wasm)?;

    let snapshotter: Arc<dyn Snapshotter> = if args.snapshot.is_empty() {
        let fetch = FetchSnapshotter::new(node.host.network());
        match args.snapshotter {
            SnapshotterKind::Fetch => Arc::new(fetch),
            SnapshotterKind::None => Arc::new(FrozenPages::new()),
            SnapshotterKind::Chromium => {
                let chromium = ChromiumSnapshotter::launch(ChromiumConfig::default())?;
                if args.fallback_to_fetch {
                    Arc::new(FallbackSnapshotter {
                        primary: chromium,
                        fallback: fetch,
                    })
                } else {
                    Arc::new(chromium)
                }
            }
        }
    } else {
        let mut pages = FrozenPages::new();
        for spec in &args.snapshot {
            let (url, file) = split_snapshot(spec)?;
            let html = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            pages
                .insert(url, html)
                .with_context(|| format!("--snapshot URL {url:?}"))?;
        }
        Arc::new(pages)
    };
    let defaults = Limits::default();
    let limits = Limits {
        fuel: args.fuel.unwrap_or(defaults.fuel),
        memory_bytes: args.memory.unwrap_or(defaults.memory_bytes),
        wall_time: args
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.wall_time),
        output_bytes: args.max_output.unwrap_or(defaults.output_bytes),
        ..defaults
    };
    let task_id = args.task_id.clone().unwrap_or_else(|| {
        format!(
            "{}",
            ContentId::of(format!("{implementation}\n{input}").as_bytes())
        )
    });
    let capability = args
        .capability
        .as_deref()
        .map(parse_capability)
        .transpose()?;
    let execution = node.host.execute(Task {
        implementation,
        input: &input,
        context: TaskContext {
            id: task_id,
            timestamp_ms: args.timestamp_ms,
        },
        limits,
        egress: EgressPolicy {
            allowed_hosts: args.allow_host.clone(),
            allow_snapshot: true,
            allow_private_targets: args.allow_private_targets,
            ..EgressPolicy::default()
        },
        evidence: EvidenceMode::Live { snapshotter },
        canonicalizer: args.canonicalizer,
        capability,
        manifest: None,
    })?;
    execution.objects.persist(&node.store)?;
    for line in &execution.logs {
        eprintln!("[{}] {}", line.level, line.message);
    }
    let output: serde_json::Value = serde_json::from_str(&execution.output)?;
    let report = json!({
        "output": output,
        "receipt": execution.receipt,
        "receiptCid": execution.receipt.cid()?.to_string(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// Splits `--snapshot URL=FILE`. A URL's query string holds `=` too (`…?page=1&id=7`), so the
/// split is at the last `=` whose right-hand side names an existing file, or else at the last `=`
/// (whose missing file is then reported by name).
fn split_snapshot(spec: &str) -> anyhow::Result<(&str, &str)> {
    let splits = || {
        spec.rmatch_indices('=')
            .map(|(i, _)| (&spec[..i], &spec[i + 1..]))
    };
    splits()
        .find(|(url, file)| !url.is_empty() && Path::new(file).is_file())
        .or_else(|| splits().next())
        .filter(|(url, file)| !url.is_empty() && !file.is_empty())
        .ok_or_else(|| anyhow!("--snapshot {spec:?}: expected URL=FILE.html"))
}

fn parse_capability(s: &str) -> anyhow::Result<CapabilityRef> {
    let (id, version) = s
        .split_once('@')
        .ok_or_else(|| anyhow!("--capability {s:?}: expected ID@VERSION"))?;
    Ok(CapabilityRef {
        id: id.to_string(),
        version: version.to_string(),
    })
}

/// Reads a receipt from a file holding either the receipt itself or the whole `d402 run` report.
fn read_receipt(path: &Path) -> anyhow::Result<Receipt> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let receipt = value.get("receipt").cloned().unwrap_or(value);
    let receipt: Receipt = serde_json::from_value(receipt)
        .with_context(|| format!("{} does not hold a d402 receipt", path.display()))?;
    receipt.verify().context("the receipt does not verify")?;
    Ok(receipt)
}

fn replay(path: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let receipt = read_receipt(path)?;
    let body = &receipt.body;
    let node = open_node(&args.state)?;
    let wasm = match &args.wasm {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => node.store.get(&body.implementation)?.ok_or_else(|| {
            anyhow!(
                "implementation {} is not in the content store; pass --wasm",
                body.implementation
            )
        })?,
    };
    node.host.load(&body.implementation, &wasm)?;
    let input = node
        .store
        .get(&body.input)?
        .ok_or_else(|| anyhow!("input {} is not in the content store", body.input))?;
    let input = String::from_utf8(input).context("recorded input is not UTF-8")?;
    let book = ReplayBook::load(&node.store, &body.evidence)?;
    let execution = node.host.execute(Task {
        implementation: body.implementation,
        input: &input,
        context: body.task.clone(),
        limits: Limits::from_record(&body.limits),
        // A replay never reaches the network; the policy only has to let the recorded calls through.
        egress: EgressPolicy {
            allow_snapshot: true,
            allowed_hosts: vec!["*".into()],
            ..EgressPolicy::default()
        },
        evidence: EvidenceMode::Replay(book),
        canonicalizer: body.canonicalizer,
        capability: body.capability.clone(),
        manifest: body.manifest,
    })?;
    let again = &execution.receipt.body;
    let output_matches = again.output == body.output;
    let fuel_matches = again.fuel_used == body.fuel_used;
    let canonical_matches = again.canonical_output == body.canonical_output;
    let matches = output_matches && fuel_matches && canonical_matches;
    let report = json!({
        "match": matches,
        "output": { "expected": body.output, "replayed": again.output, "match": output_matches },
        "fuelUsed": { "expected": body.fuel_used, "replayed": again.fuel_used, "match": fuel_matches },
        "canonicalOutput": { "expected": body.canonical_output, "replayed": again.canonical_output, "match": canonical_matches },
        "replayReceipt": execution.receipt,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if matches {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: replay does not match the receipt");
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_url_may_carry_a_query_string() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("page=1.html");
        std::fs::write(&file, "<p>hi</p>").expect("write");
        let file = file.to_str().expect("utf-8 path");
        let url = "https://example.com/list?page=1&id=7";
        assert_eq!(
            split_snapshot(&format!("{url}={file}")).unwrap(),
            (url, file)
        );
        // A file that does not exist: the last `=` splits, and the read names the file.
        assert_eq!(
            split_snapshot("https://example.com/?a=b=missing.html").unwrap(),
            ("https://example.com/?a=b", "missing.html")
        );
        for bad in [
            "https://example.com/",
            "=page.html",
            "https://example.com/=",
        ] {
            assert!(split_snapshot(bad).is_err(), "{bad}");
        }
    }
}
