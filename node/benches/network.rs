//! Throughput and discovery of the peer network on loopback.
//!
//! `cargo bench -p d402-node --bench network` prints:
//! - tasks per second through the network for `merkle.verify_proof@1` (exact, trivial), with
//!   quorum 1 and quorum 2 (each task: provider lookup, bids, lease(s), claim(s), validation),
//!   against the baseline of the same task run directly in a local host, measured in the same run;
//! - the time for a new worker to be discovered and receive its first task.
//!
//! Not a criterion bench: each sample is a whole network round trip across six nodes, and what
//! matters is the rate, so it runs a fixed number of tasks and reports rates and ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use d402_core::Identity;
use d402_host::{Host, HostConfig, Task};
use d402_network_support::*;
use d402_node::{Mode, TaskSpec};

const TASKS: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Baseline: the same component, same input, in a local host, no network.
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    let host = Host::new(
        HostConfig::default(),
        Arc::new(Identity::from_seed([1; 32])),
    )
    .unwrap();
    let cid = d402_core::ContentId::of(&bytes);
    host.load(&cid, &bytes).unwrap();
    let input = merkle_input("a");
    let started = Instant::now();
    for i in 0..TASKS {
        host.execute(Task {
            input: &input,
            ..Task::defaults(cid, &format!("local-{i}"))
        })
        .unwrap();
    }
    let local_rate = TASKS as f64 / started.elapsed().as_secs_f64();

    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let w1 = start(
        dir,
        "w1",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    let w2 = start(
        dir,
        "w2",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &w1, &w2, &validator, &client];
    for node in everyone {
        wait_discovered(node, &everyone).await;
    }
    let offer = merkle_offer(&client);

    println!(
        "network tasks, merkle.verify_proof@1, {TASKS} tasks each, 2 workers + 1 validator on loopback"
    );
    println!("  local host baseline:   {local_rate:8.1} tasks/s");
    for (label, quorum, validate) in [
        ("quorum 1, no validator", 1, false),
        ("quorum 1 + validator  ", 1, true),
        ("quorum 2 + validator  ", 2, true),
    ] {
        let started = Instant::now();
        for i in 0..TASKS {
            let spec = TaskSpec {
                mode: if quorum > 1 {
                    Mode::Quorum
                } else {
                    Mode::Single
                },
                quorum,
                fanout: quorum,
                validate,
                ..TaskSpec::new(
                    format!("{label}-{i}"),
                    merkle_input(&format!("leaf-{i}")),
                    &offer,
                )
            };
            client.coordinator().submit(&offer, spec).await.unwrap();
        }
        let rate = TASKS as f64 / started.elapsed().as_secs_f64();
        println!(
            "  {label}: {rate:8.1} tasks/s  ({:.1} ms/task, {:.3}x the local baseline)",
            1000.0 / rate,
            rate / local_rate
        );
    }

    // A new worker: from start to its first leased task, with a client that keeps submitting.
    let started = Instant::now();
    let newcomer = start(
        dir,
        "newcomer",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    // Take the known workers away so the first task that succeeds must be the newcomer's.
    drop(w1);
    drop(w2);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let spec = TaskSpec {
            deadline: Duration::from_secs(5),
            ..TaskSpec::new(format!("newcomer-{attempts}"), merkle_input("n"), &offer)
        };
        if let Ok(outcome) = client.coordinator().submit(&offer, spec).await
            && outcome.workers == vec![newcomer.peer_id()]
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "newcomer never found"
        );
    }
    println!(
        "  new worker discovered and leased its first task after {:.0} ms ({attempts} attempts)",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
