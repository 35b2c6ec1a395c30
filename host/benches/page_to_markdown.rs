//! `web.page_to_markdown@1` on 60 pages of the Rust book, measured side by side in one run:
//! WASM (a fresh instance per page, as a worker runs it) with and without fuel metering, the same
//! Rust code compiled natively, and turndown under node. Also: cold compile vs compiled-cache load.
//!
//! `D402_SETUP_BENCH=1 scripts/setup.sh && cargo bench -p d402-host --bench page_to_markdown`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use d402_capability_artifacts as artifacts;
use d402_core::{ContentId, EgressPolicy, FrozenPages, Identity};
use d402_host::{EngineSettings, EvidenceMode, Host, HostConfig, LoadSource, Task};

const PAGES: usize = 60;

struct Page {
    url: String,
    html: String,
    input: String,
    pages: Arc<FrozenPages>,
}

fn corpus() -> Vec<(PathBuf, Page)> {
    d402_corpus::book_pages(PAGES)
        .into_iter()
        .map(|path| {
            let url = d402_corpus::book_url(&path);
            let html = std::fs::read_to_string(&path).unwrap();
            let mut pages = FrozenPages::new();
            pages.insert(&url, html.clone()).unwrap();
            let input = format!(r#"{{"url": "{url}"}}"#);
            (
                path,
                Page {
                    url,
                    html,
                    input,
                    pages: Arc::new(pages),
                },
            )
        })
        .collect()
}

fn host(fuel_metering: bool) -> (Host, ContentId) {
    let settings = EngineSettings {
        fuel_metering,
        ..EngineSettings::default()
    };
    let config = HostConfig {
        engine: settings,
        ..HostConfig::default()
    };
    let host = Host::new(config, Arc::new(Identity::from_seed([1; 32]))).unwrap();
    let bytes = std::fs::read(artifacts::PAGE_TO_MARKDOWN_COMPONENT).unwrap();
    let cid = ContentId::of(&bytes);
    host.load(&cid, &bytes).unwrap();
    (host, cid)
}

fn wasm_pass(host: &Host, cid: ContentId, pages: &[(PathBuf, Page)]) {
    for (_, page) in pages {
        let run = host
            .execute(Task {
                input: &page.input,
                egress: EgressPolicy {
                    allow_snapshot: true,
                    ..EgressPolicy::default()
                },
                evidence: EvidenceMode::Live {
                    snapshotter: page.pages.clone(),
                },
                ..Task::defaults(cid, "bench")
            })
            .unwrap();
        std::hint::black_box(run);
    }
}

fn native_pass(pages: &[(PathBuf, Page)]) {
    for (_, page) in pages {
        std::hint::black_box(d402_cap_page_to_markdown::convert(&page.html, &page.url).unwrap());
    }
}

/// Median pages per second of `passes` timed passes.
fn pages_per_second(passes: usize, pages: usize, mut pass: impl FnMut()) -> f64 {
    pass();
    let mut times: Vec<Duration> = (0..passes)
        .map(|_| {
            let t = Instant::now();
            pass();
            t.elapsed()
        })
        .collect();
    times.sort();
    pages as f64 / times[passes / 2].as_secs_f64()
}

fn turndown(pages: &[(PathBuf, Page)]) -> Option<f64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/turndown");
    if !dir.join("node_modules/turndown").exists() {
        eprintln!("turndown baseline skipped: run `D402_SETUP_BENCH=1 scripts/setup.sh` first");
        return None;
    }
    let out = std::process::Command::new("node")
        .arg(dir.join("convert.js"))
        .arg("5")
        .args(pages.iter().map(|(p, _)| p))
        .output()
        .ok()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    report["pagesPerSecond"].as_f64()
}

fn throughput(c: &mut Criterion) {
    let pages = corpus();
    let (metered, cid) = host(true);
    let (unmetered, _) = host(false);

    let mut group = c.benchmark_group("page_to_markdown (60 Rust book pages)");
    group.throughput(Throughput::Elements(pages.len() as u64));
    group.sample_size(10);
    group.bench_function("wasm, fuel on", |b| {
        b.iter(|| wasm_pass(&metered, cid, &pages))
    });
    group.bench_function("wasm, fuel off", |b| {
        b.iter(|| wasm_pass(&unmetered, cid, &pages))
    });
    group.bench_function("native", |b| b.iter(|| native_pass(&pages)));
    group.finish();

    // The same comparison as plain figures and ratios, measured here in this run, for BENCHMARKS.md.
    let wasm = pages_per_second(7, pages.len(), || wasm_pass(&metered, cid, &pages));
    let wasm_off = pages_per_second(7, pages.len(), || wasm_pass(&unmetered, cid, &pages));
    let native = pages_per_second(7, pages.len(), || native_pass(&pages));
    println!("\nsummary (median of 7 passes over {} pages)", pages.len());
    println!(
        "  wasm, fuel on:   {wasm:8.1} pages/s  = {:.2}x native",
        wasm / native
    );
    println!(
        "  wasm, fuel off:  {wasm_off:8.1} pages/s  = {:.2}x native",
        wasm_off / native
    );
    println!("  native:          {native:8.1} pages/s");
    println!(
        "  fuel metering overhead: {:+.1}%",
        (wasm_off / wasm - 1.0) * 100.0
    );
    if let Some(td) = turndown(&pages) {
        println!(
            "  turndown (node): {td:8.1} pages/s  -> wasm is {:.1}x turndown",
            wasm / td
        );
    }
}

fn compile_vs_cache(c: &mut Criterion) {
    let bytes = std::fs::read(artifacts::PAGE_TO_MARKDOWN_COMPONENT).unwrap();
    let cid = ContentId::of(&bytes);
    let tmp = tempfile::tempdir().unwrap();
    let new_host = |cache: bool| {
        let compiled_cache =
            cache.then(|| Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap());
        let config = HostConfig {
            compiled_cache,
            ..HostConfig::default()
        };
        Host::new(config, Arc::new(Identity::from_seed([1; 32]))).unwrap()
    };
    // Fill the disk cache once.
    assert_eq!(
        new_host(true).load(&cid, &bytes).unwrap(),
        LoadSource::Compiled
    );

    let mut group = c.benchmark_group("page_to_markdown component load");
    group.sample_size(10);
    group.bench_function("cold compile (Cranelift)", |b| {
        b.iter_with_setup(
            || new_host(false),
            |h| assert_eq!(h.load(&cid, &bytes).unwrap(), LoadSource::Compiled),
        )
    });
    group.bench_function("compiled cache on disk (restarted node)", |b| {
        b.iter_with_setup(
            || new_host(true),
            |h| assert_eq!(h.load(&cid, &bytes).unwrap(), LoadSource::Disk),
        )
    });
    let warm = new_host(true);
    warm.load(&cid, &bytes).unwrap();
    group.bench_function("in memory (warm node)", |b| {
        b.iter(|| assert_eq!(warm.load(&cid, &bytes).unwrap(), LoadSource::Memory))
    });
    group.finish();
}

criterion_group!(benches, throughput, compile_vs_cache);
criterion_main!(benches);
