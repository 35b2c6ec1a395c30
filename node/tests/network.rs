//! The peer network end to end: real nodes on 127.0.0.1 over libp2p, real components in the
//! host, real Chromium for the quorum task.

use std::sync::Arc;
use std::time::Duration;

use d402_loopback_server::LoopbackServer;
use d402_network_support::*;
use d402_node::wire::{Lease, TaskRequest, TaskResponse};
use d402_node::{Fault, Mode, Node, NodeConfig, TaskSpec};
use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter};

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// One bootstrap, three workers, one validator, one client; each knows only the bootstrap. All
/// discover each other, and a quorum-2 page task on a page whose text JavaScript builds completes
/// with two claims agreeing by canonical hash and the validator's re-execution matching.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_of_two_on_a_scripted_page_with_chromium() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    // Count loads of the page itself (a browser may also ask for /favicon.ico).
    let page_loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = page_loads.clone();
    let site = LoopbackServer::start(move |head| {
        if head.starts_with("GET / ") {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            d402_loopback_server::Reply::Html(SCRIPTED_PAGE.as_bytes().to_vec())
        } else {
            d402_loopback_server::Reply::NotFound
        }
    });
    let dir = tmp.path();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut workers = Vec::new();
    for i in 0..3 {
        let chromium: Arc<dyn d402_core::Snapshotter> =
            Arc::new(ChromiumSnapshotter::launch(ChromiumConfig::default()).expect("chromium"));
        let config = worker_config(&[PAGE], chromium);
        workers.push(
            start(
                dir,
                &format!("worker-{i}"),
                &[&bootstrap],
                Some(config),
                &[],
            )
            .await,
        );
    }
    let validator = start(dir, "validator", &[&bootstrap], None, &[PAGE]).await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;

    let everyone: Vec<&Node> = [&bootstrap, &validator, &client]
        .into_iter()
        .chain(workers.iter())
        .collect();
    for node in &everyone {
        wait_discovered(node, &everyone).await;
    }

    let offer = page_offer(&client);
    let input = format!(r#"{{"url":"{}"}}"#, site.url("127.0.0.1", "/"));
    let spec = TaskSpec {
        deadline: Duration::from_secs(90),
        ..TaskSpec::new("scripted-1", input, &offer)
    };
    assert_eq!(spec.mode, Mode::Quorum);
    assert_eq!(spec.quorum, 2);
    let outcome = client.coordinator().submit(&offer, spec).await.unwrap();

    let output: serde_json::Value = serde_json::from_str(&outcome.output).unwrap();
    let markdown = output["markdown"].as_str().unwrap();
    assert!(markdown.contains("Built by JavaScript"), "{markdown}");
    assert_eq!(outcome.receipts.len(), 2);
    let (a, b) = (&outcome.receipts[0].body, &outcome.receipts[1].body);
    assert_eq!(a.canonical_output, b.canonical_output);
    assert_ne!(a.worker, b.worker, "two different workers agreed");
    assert_eq!(a.evidence, b.evidence, "both ran on the same frozen page");
    assert_eq!(
        page_loads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the page was frozen once, by one worker"
    );

    let verdict = outcome.verdict.expect("validated");
    verdict.verify().unwrap();
    assert_eq!(verdict.body.validator, validator.public_id());
    let reference = verdict.body.reference.as_ref().unwrap();
    assert_eq!(reference.canonical_output, a.canonical_output);
    assert_eq!(verdict.body.accepted.len(), 2);
    assert!(verdict.body.rejected.is_empty());
}

/// A worker that alters its Markdown is outvoted by the two honest ones, its claim is rejected
/// and its reputation falls; after a few lies it is not leased any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_worker_is_outvoted_then_no_longer_chosen() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let site = LoopbackServer::serving(SCRIPTED_PAGE.as_bytes().to_vec());
    let dir = tmp.path();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let honest_a = start(
        dir,
        "honest-a",
        &[&bootstrap],
        Some(worker_config(&[PAGE], fetch_snapshotter())),
        &[],
    )
    .await;
    let honest_b = start(
        dir,
        "honest-b",
        &[&bootstrap],
        Some(worker_config(&[PAGE], fetch_snapshotter())),
        &[],
    )
    .await;
    let mut lying = worker_config(&[PAGE], fetch_snapshotter());
    lying.fault = Some(Fault::AlterOutput);
    let liar = start(dir, "liar", &[&bootstrap], Some(lying), &[]).await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[PAGE]).await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &honest_a, &honest_b, &liar, &validator, &client];
    for node in everyone {
        wait_discovered(node, &everyone).await;
    }

    let offer = page_offer(&client);
    let input = format!(r#"{{"url":"{}"}}"#, site.url("127.0.0.1", "/"));
    let mut lies = 0;
    for round in 0..6 {
        let spec = TaskSpec {
            fanout: 3,
            ..TaskSpec::new(format!("lie-{round}"), input.clone(), &offer)
        };
        let outcome = client.coordinator().submit(&offer, spec).await.unwrap();
        let markdown =
            serde_json::from_str::<serde_json::Value>(&outcome.output).unwrap()["markdown"]
                .as_str()
                .unwrap()
                .to_string();
        assert!(
            !markdown.contains("cheap watches"),
            "the lie won: {markdown}"
        );
        assert!(!outcome.workers.contains(&liar.peer_id()));
        if outcome.leased.contains(&liar.peer_id()) {
            lies += 1;
            assert!(
                outcome.rejected.iter().any(|r| r.worker == liar.peer_id()),
                "round {round}: the liar's claim was not rejected"
            );
        }
    }
    let standing = client.coordinator().standing(&liar.peer_id());
    assert!(standing.excluded(), "{standing:?}");
    assert_eq!(standing.rejected, lies);
    assert!(
        (1..6).contains(&lies),
        "the liar should be leased a few times, then no more (leased {lies} of 6 rounds)"
    );
    let honest = client.coordinator().standing(&honest_a.peer_id());
    assert!(honest.accepted >= 6 && honest.rejected == 0, "{honest:?}");
}

/// A worker killed mid-task loses its lease; the task completes on another worker in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_task_loses_its_lease() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    // The cheaper worker is chosen first; it stalls, and is killed while it holds the lease.
    let mut stalling = worker_config(&[MERKLE], fetch_snapshotter());
    stalling.fault = Some(Fault::Stall(Duration::from_secs(60)));
    stalling.price = 0;
    let doomed = start(dir, "doomed", &[&bootstrap], Some(stalling), &[]).await;
    let steady = start(
        dir,
        "steady",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &doomed, &steady, &validator, &client];
    for node in everyone {
        wait_discovered(node, &everyone).await;
    }
    let offer = merkle_offer(&client);
    let spec = TaskSpec {
        deadline: Duration::from_secs(30),
        lease_time: Duration::from_secs(20),
        ..TaskSpec::new("killed-1", merkle_input("a"), &offer)
    };
    let implementation = offer.manifest.implementation.cid;
    let coordinator = client.coordinator().clone();
    let task = tokio::spawn(async move { coordinator.submit(&offer, spec).await });
    // The doomed worker holds the lease once it has fetched the component to run it.
    eventually(
        Duration::from_secs(30),
        "the doomed worker to take the lease",
        || {
            let store = doomed.coordinator().store().clone();
            async move { store.contains(&implementation).unwrap() }
        },
    )
    .await;
    let started = std::time::Instant::now();
    doomed.shutdown();
    let outcome = task.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the lost lease was noticed when the connection dropped, not at its 20 s expiry"
    );
    assert_eq!(outcome.leased, vec![doomed.peer_id(), steady.peer_id()]);
    assert_eq!(outcome.workers, vec![steady.peer_id()]);
    let out: serde_json::Value = serde_json::from_str(&outcome.output).unwrap();
    assert_eq!(out["valid"], true);
    assert_eq!(
        client.coordinator().standing(&doomed.peer_id()).timed_out,
        1
    );
}

/// A worker that hangs (not killed) has its lease expire, and another worker finishes the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_moves_the_task_to_another_worker() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut stalling = worker_config(&[MERKLE], fetch_snapshotter());
    stalling.fault = Some(Fault::Stall(Duration::from_secs(60)));
    stalling.price = 0;
    let hung = start(dir, "hung", &[&bootstrap], Some(stalling), &[]).await;
    let steady = start(
        dir,
        "steady",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &hung, &steady, &validator, &client];
    for node in everyone {
        wait_discovered(node, &everyone).await;
    }
    let offer = merkle_offer(&client);
    // The steady worker's lease is its first: it fetches and compiles the component inside it,
    // which on a loaded two-core machine has taken more than two seconds. The lease leaves room
    // for that; the stall (60 s) still outlasts it by far.
    let lease_time = Duration::from_secs(8);
    let deadline = Duration::from_secs(45);
    let spec = TaskSpec {
        deadline,
        lease_time,
        ..TaskSpec::new("hung-1", merkle_input("b"), &offer)
    };
    let started = std::time::Instant::now();
    let outcome = client.coordinator().submit(&offer, spec).await.unwrap();
    assert!(started.elapsed() >= lease_time);
    assert!(started.elapsed() < deadline);
    assert_eq!(outcome.leased, vec![hung.peer_id(), steady.peer_id()]);
    assert_eq!(outcome.workers, vec![steady.peer_id()]);
    assert_eq!(client.coordinator().standing(&hung.peer_id()).timed_out, 1);
}

/// A worker restarted with the same `--state` reconnects to the peers it knew, with no `--peer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_worker_redials_its_known_peers() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let worker = start(
        dir,
        "worker",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    wait_discovered(&worker, &[&bootstrap]).await;
    let id = worker.peer_id();
    drop(worker);
    eventually(
        Duration::from_secs(10),
        "the bootstrap to see the worker go",
        || {
            let net = bootstrap.net().clone();
            async move { !net.connected_peers().await.unwrap().contains(&id) }
        },
    )
    .await;

    let mut config = NodeConfig::new("worker", dir.join("worker"));
    config.worker = Some(worker_config(&[MERKLE], fetch_snapshotter()));
    assert!(config.peers.is_empty());
    let worker = Node::start(config).await.unwrap();
    assert_eq!(worker.peer_id(), id, "same state, same identity");
    eventually(
        Duration::from_secs(10),
        "the restarted worker to reconnect",
        || {
            let net = worker.net().clone();
            let boot = bootstrap.peer_id();
            async move { net.connected_peers().await.unwrap().contains(&boot) }
        },
    )
    .await;
    // And it is findable again: a client that knows only the bootstrap gets it to run a task.
    let validator = start(dir, "validator", &[&bootstrap], None, &[MERKLE]).await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;
    let offer = merkle_offer(&client);
    let outcome = client
        .coordinator()
        .submit(
            &offer,
            TaskSpec::new("after-restart", merkle_input("c"), &offer),
        )
        .await
        .unwrap();
    assert_eq!(outcome.workers, vec![id]);
    drop(validator);
}

/// A worker never runs a component whose bytes do not match the requested CID, nor one whose
/// registration fails; a peer that serves wrong bytes is penalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_refuses_what_does_not_verify() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let worker = start(
        dir,
        "worker",
        &[],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    let client = start(dir, "client", &[&worker], None, &[]).await;
    wait_discovered(&client, &[&worker]).await;
    let offer = merkle_offer(&client);
    let good = Lease {
        lease_id: "v/1".into(),
        task_id: "v".into(),
        capability: MERKLE.into(),
        registration: offer.registration_cid,
        manifest: offer.manifest_cid,
        implementation: offer.manifest.implementation.cid,
        input: merkle_input("a"),
        timestamp_ms: 0,
        expires_at_ms: u64::MAX,
        evidence: vec![],
        evidence_objects: vec![],
    };
    let lease = |lease: Lease| {
        let net = client.net().clone();
        let peer = worker.peer_id();
        async move {
            net.task(
                peer,
                TaskRequest::Lease(Box::new(lease)),
                Duration::from_secs(30),
            )
            .await
            .unwrap()
        }
    };
    let refused = |response: TaskResponse| match response {
        TaskResponse::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    };

    // A lease naming another implementation than the registered manifest's.
    let other_component = component(artifacts::EXTRACT_METADATA_COMPONENT);
    let other_cid = client.coordinator().store().put(&other_component).unwrap();
    let wrong_impl = Lease {
        implementation: other_cid,
        ..good.clone()
    };
    assert_eq!(refused(lease(wrong_impl).await), "component-mismatch");

    // A registration whose signature does not verify.
    let mut forged = offer.registration.clone();
    forged.body.creator_commission_bps = 9_000;
    let forged_bytes = d402_core::content_id::canonical_json(&forged).unwrap();
    let forged_cid = client.coordinator().store().put(&forged_bytes).unwrap();
    let bad_registration = Lease {
        registration: forged_cid,
        ..good.clone()
    };
    assert_eq!(
        refused(lease(bad_registration).await),
        "registration-invalid"
    );

    // A peer that serves wrong bytes: the worker discards them, penalises that peer, and runs
    // nothing. The same lease from an honest peer then runs.
    let mut config = NodeConfig::new("corrupt", dir.join("corrupt"));
    config.peers = vec![worker.listen_addr()];
    config.fault_corrupt_objects = true;
    let corrupt = Node::start(config).await.unwrap();
    let offer_there = merkle_offer(&corrupt);
    assert_eq!(offer_there.registration_cid, offer.registration_cid);
    let response = corrupt
        .net()
        .task(
            worker.peer_id(),
            TaskRequest::Lease(Box::new(good.clone())),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(refused(response), "object-unavailable");
    assert_eq!(
        worker
            .coordinator()
            .standing(&corrupt.peer_id())
            .bad_objects,
        1,
        "the peer that sent wrong bytes is penalised"
    );
    match lease(good).await {
        TaskResponse::Claim(claim) => {
            claim.receipt.verify().unwrap();
            assert_eq!(claim.receipt.body.worker, worker.public_id());
        }
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// Raw bytes on the task protocol, for hostile-peer tests: the request is written as given (no
/// framing, no JSON), the response read whole.
#[derive(Clone, Default)]
struct RawCodec;

impl libp2p::request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &Self::Protocol, _: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Ok(Vec::new())
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        use futures::AsyncReadExt;
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        // Large writes may be cut short when the node drops the stream: that is the point.
        let _ = io.write_all(&req).await;
        let _ = io.close().await;
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// Malformed, truncated and oversized messages from a hostile peer are dropped; the node keeps
/// serving honest peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_messages_are_dropped_and_the_node_carries_on() {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;

    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let worker = start(
        dir,
        "worker",
        &[],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;

    let mut attacker = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(d402_node::wire::TASK_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            )
        })
        .unwrap()
        .build();
    attacker.dial(worker.listen_addr()).unwrap();

    let frame = |payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    };
    let mut declared_huge = u32::MAX.to_be_bytes().to_vec();
    declared_huge.extend_from_slice(b"{}");
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", frame(b"\xff\xfe not json")),
        ("wrong shape", frame(br#"{"type":"lease","leaseId":7}"#)),
        (
            "unknown type",
            frame(br#"{"type":"shell","cmd":"rm -rf /"}"#),
        ),
        (
            "truncated",
            frame(br#"{"type":"intent","taskId":"t"}"#)[..12].to_vec(),
        ),
        ("declares 4 GiB", declared_huge),
        (
            "oversized",
            frame(&vec![b' '; d402_node::wire::MAX_TASK_FRAME + 1]),
        ),
    ];
    let peer = worker.peer_id();
    for (what, bytes) in hostile {
        let id = attacker.behaviour_mut().send_request(&peer, bytes);
        let answered = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match attacker.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    }) if request_id == id => {
                        break Some(response);
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        ..
                    }) if request_id == id => break None,
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: no outcome"));
        assert!(
            answered.as_ref().is_none_or(|r| r.is_empty()),
            "{what}: the node answered a hostile message: {answered:?}"
        );
    }

    // The node is still up and serves an honest client.
    let client = start(dir, "client", &[&worker], None, &[]).await;
    wait_discovered(&client, &[&worker]).await;
    let offer = merkle_offer(&client);
    let spec = TaskSpec {
        validate: false,
        ..TaskSpec::new("after-hostile", merkle_input("z"), &offer)
    };
    let outcome = client.coordinator().submit(&offer, spec).await.unwrap();
    assert_eq!(outcome.workers, vec![worker.peer_id()]);
}

/// `race` mode: several workers at once, the first valid claim wins; `single` mode uses one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_and_single_modes() {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bootstrap = start(dir, "bootstrap", &[], None, &[]).await;
    let mut slow = worker_config(&[MERKLE], fetch_snapshotter());
    slow.fault = Some(Fault::Stall(Duration::from_secs(30)));
    let slow = start(dir, "slow", &[&bootstrap], Some(slow), &[]).await;
    let fast = start(
        dir,
        "fast",
        &[&bootstrap],
        Some(worker_config(&[MERKLE], fetch_snapshotter())),
        &[],
    )
    .await;
    let client = start(dir, "client", &[&bootstrap], None, &[]).await;
    let everyone = [&bootstrap, &slow, &fast, &client];
    for node in everyone {
        wait_discovered(node, &everyone).await;
    }
    let offer = merkle_offer(&client);
    let race = TaskSpec {
        mode: Mode::Race,
        fanout: 2,
        quorum: 1,
        validate: false,
        ..TaskSpec::new("race-1", merkle_input("r"), &offer)
    };
    let started = std::time::Instant::now();
    let outcome = client.coordinator().submit(&offer, race).await.unwrap();
    assert_eq!(outcome.leased.len(), 2, "both workers raced");
    assert_eq!(outcome.workers, vec![fast.peer_id()], "the first claim won");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "did not wait for the slow worker"
    );

    let single = TaskSpec {
        mode: Mode::Single,
        validate: false,
        ..TaskSpec::new("single-1", merkle_input("s"), &offer)
    };
    let outcome = client.coordinator().submit(&offer, single).await.unwrap();
    assert_eq!(outcome.leased.len(), 1);
}
