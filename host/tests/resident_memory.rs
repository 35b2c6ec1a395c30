//! 1,000 hostile runs in one process leave resident memory within 10% of where it started: limits
//! hit over and over must not leak instances, memories or evidence. Its own test binary, so no
//! other test's allocations move the figure.

mod common;

use std::time::Duration;

use d402_core::{ContentId, EgressPolicy, Limits};
use d402_host::Task;

use common::{LoopbackServer, host};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn a_thousand_hostile_runs_do_not_grow_resident_memory() {
    let host = host();
    let server = LoopbackServer::serving(vec![b'x'; 16 * 1024]);
    let flood_input = format!(r#"{{"url": "{}"}}"#, server.url("127.0.0.1", "/"));
    // Programs that, given this input, run to completion rather than hit a limit: the probe, a
    // sleeper (its one sleep returns at once on the stopped clock), a host flood with no flood
    // named, and the comparator with malformed scores (well-behaved WASM; only the validator's
    // contract check refuses its answer).
    const COMPLETE: [&str; 4] = [
        "d402-hostile-probe-sandbox",
        "d402-hostile-sleeper",
        "d402-hostile-host-flood",
        "d402-hostile-malformed-scores",
    ];
    let mut programs = Vec::new();
    for (package, _, path) in d402_test_artifacts::HOSTILE {
        let bytes = std::fs::read(path).unwrap();
        let cid = ContentId::of(&bytes);
        programs.push((cid, bytes, COMPLETE.contains(package)));
    }
    let limits = Limits {
        fuel: 20_000_000,
        memory_bytes: 16 * 1024 * 1024,
        output_bytes: 64 * 1024,
        wall_time: Duration::from_secs(5),
        ..Limits::default()
    };
    let egress = EgressPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        allow_private_targets: true,
        max_requests: 8,
        max_response_bytes: 64 * 1024,
        ..EgressPolicy::default()
    };
    let round = |runs: usize| {
        let mut errors = 0usize;
        let mut expected = 0usize;
        for i in 0..runs {
            let (cid, bytes, completes) = &programs[i % programs.len()];
            expected += usize::from(!completes);
            // Loading again is part of the loop: the unknown-import component is refused every time.
            if host.load(cid, bytes).is_err() {
                errors += 1;
                continue;
            }
            let result = host.execute(Task {
                input: &flood_input,
                limits,
                egress: egress.clone(),
                ..Task::defaults(*cid, &format!("run-{i}"))
            });
            if result.is_err() {
                errors += 1;
            }
        }
        (errors, expected)
    };
    // Warm up: compile everything, fill the instance pool's slots and the allocator's arenas.
    round(programs.len() * 4);
    let before = resident_bytes();
    let (errors, expected) = round(1000);
    let after = resident_bytes();
    // Every run of a program that hits a limit ends in its error, and only those.
    assert_eq!(
        errors, expected,
        "{errors} errors where {expected} were expected"
    );
    let growth = after as f64 / before as f64 - 1.0;
    eprintln!(
        "resident: {before} -> {after} bytes ({:+.1}%)",
        growth * 100.0
    );
    assert!(
        growth.abs() <= 0.10,
        "resident memory moved {:+.1}% ({before} -> {after} bytes) over 1,000 hostile runs",
        growth * 100.0
    );
}
