//! Browser start time, and snapshot latency per page with a warm browser, against a page served on
//! loopback (a Rust book chapter with a script that edits the DOM).
//!
//! `cargo bench -p d402-snapshotter --bench snapshot`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use d402_core::snapshot::{SnapshotLimits, Snapshotter};
use d402_loopback_server::LoopbackServer;
use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter};
use url::Url;

fn page() -> String {
    let path = d402_corpus::rust_doc_root().join("book/ch01-01-installation.html");
    let html = std::fs::read_to_string(path).unwrap();
    // Relative subresources would 404 on this server; the script keeps the page dynamic.
    html.replace(
        "</body>",
        "<script>document.body.insertAdjacentHTML('beforeend', '<p>added by script</p>')</script></body>",
    )
}

fn bench(c: &mut Criterion) {
    let server = LoopbackServer::serving(page().into_bytes());
    let url = Url::parse(&server.url("127.0.0.1", "/")).unwrap();
    let limits = SnapshotLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 8 * 1024 * 1024,
        allow_private_targets: true,
    };
    let mut group = c.benchmark_group("chromium");
    group.sample_size(10);
    group.bench_function("browser start (launch, ready, shut down)", |b| {
        b.iter(|| ChromiumSnapshotter::launch(ChromiumConfig::default()).unwrap())
    });
    let warm = ChromiumSnapshotter::launch(ChromiumConfig::default()).unwrap();
    warm.freeze(&url, &limits).unwrap();
    group.bench_function("snapshot, warm browser (Rust book page + script)", |b| {
        b.iter(|| warm.freeze(&url, &limits).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
