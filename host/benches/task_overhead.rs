//! Per-task overhead of a trivial capability on a warm node: fresh instance + call + signed receipt.
//!
//! `cargo bench -p d402-host --bench task_overhead`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use d402_capability_artifacts as artifacts;
use d402_core::receipt::{LimitsRecord, ReceiptBody};
use d402_core::{Canonicalizer, ContentId, Identity, TaskContext};
use d402_host::{Host, HostConfig, Task};

const INPUT: &str = r#"{"leaf":"00","proof":[],"root":"0000000000000000000000000000000000000000000000000000000000000000"}"#;

fn overhead(c: &mut Criterion) {
    let host = Host::new(
        HostConfig::default(),
        Arc::new(Identity::from_seed([1; 32])),
    )
    .unwrap();
    let bytes = std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap();
    let cid = ContentId::of(&bytes);
    host.load(&cid, &bytes).unwrap();
    c.bench_function(
        "warm task: merkle.verify_proof@1 (instance + call + receipt)",
        |b| {
            b.iter(|| {
                host.execute(Task {
                    input: INPUT,
                    ..Task::defaults(cid, "bench")
                })
                .unwrap()
            })
        },
    );

    // The signing part alone, to see where the time goes.
    let identity = Identity::from_seed([1; 32]);
    let body = ReceiptBody {
        d402_receipt: 1,
        capability: None,
        manifest: None,
        implementation: cid,
        input: cid,
        task: TaskContext {
            id: "bench".into(),
            timestamp_ms: 0,
        },
        limits: LimitsRecord {
            fuel: 1,
            memory_bytes: 1,
            wall_time_ms: 1,
            output_bytes: 1,
        },
        evidence: vec![],
        output: cid,
        canonicalizer: Canonicalizer::Jcs,
        canonical_output: cid,
        fuel_used: 1,
        peak_memory_bytes: 1,
        wall_time_us: 1,
        worker: String::new(),
    };
    c.bench_function("receipt: canonicalise + ed25519 sign", |b| {
        b.iter(|| body.clone().sign(&identity).unwrap())
    });
}

criterion_group!(benches, overhead);
criterion_main!(benches);
