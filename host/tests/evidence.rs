//! Live runs record what came in over the network; replays serve exactly that, without it.

mod common;

use std::sync::Arc;

use d402_capability_artifacts as artifacts;
use d402_core::EgressPolicy;
use d402_core::egress::{AddressClass, EgressDenied};
use d402_host::evidence::EvidenceRecord;
use d402_host::{ContentStore, EvidenceMode, FetchSnapshotter, HostError, ReplayBook, Task};

use common::{LoopbackServer, host, load};

#[test]
fn fetches_are_recorded_and_replayed_without_the_network() {
    let host = host();
    let (cid, _) = load(&host, d402_test_artifacts::EGRESS_FLOOD_COMPONENT);
    let server = LoopbackServer::serving(b"hello".to_vec());
    let input = format!(
        r#"{{"url": "{}", "count": 3}}"#,
        server.url("127.0.0.1", "/x")
    );
    let policy = EgressPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        allow_private_targets: true,
        ..EgressPolicy::default()
    };
    let live = host
        .execute(Task {
            input: &input,
            egress: policy.clone(),
            ..Task::defaults(cid, "fetch")
        })
        .unwrap();
    assert_eq!(live.output, r#"{"requests":3,"bytes":15}"#);
    assert_eq!(server.count(), 3);
    let evidence = &live.receipt.body.evidence;
    assert_eq!(evidence.len(), 3, "one record per call");
    let record: EvidenceRecord =
        serde_json::from_slice(live.objects.get(&evidence[0]).unwrap()).unwrap();
    assert!(matches!(record, EvidenceRecord::Fetch { .. }), "{record:?}");

    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open_path(tmp.path()).unwrap();
    live.objects.persist(&store).unwrap();
    let book = ReplayBook::load(&store, evidence).unwrap();
    let replay = host
        .execute(Task {
            input: &input,
            egress: policy,
            evidence: EvidenceMode::Replay(book),
            ..Task::defaults(cid, "fetch")
        })
        .unwrap();
    assert_eq!(replay.output, live.output);
    assert_eq!(replay.receipt.body.fuel_used, live.receipt.body.fuel_used);
    assert_eq!(replay.receipt.body.evidence, *evidence);
    assert_eq!(server.count(), 3, "the replay made no request");

    // A fourth call is not in the evidence.
    let more = input.replace("\"count\": 3", "\"count\": 4");
    let book = ReplayBook::load(&store, evidence).unwrap();
    let err = host
        .execute(Task {
            input: &more,
            egress: EgressPolicy {
                allowed_hosts: vec!["127.0.0.1".into()],
                ..EgressPolicy::default()
            },
            evidence: EvidenceMode::Replay(book),
            ..Task::defaults(cid, "fetch")
        })
        .unwrap_err();
    assert!(
        matches!(err, HostError::EvidenceMissing { kind: "fetch", .. }),
        "{err}"
    );
    assert_eq!(server.count(), 3);
}

#[test]
fn the_fetch_snapshotter_freezes_pages_under_the_address_policy() {
    let host = host();
    let (cid, _) = load(&host, artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    let server = LoopbackServer::serving(
        b"<html><head><title>Served</title></head><body><article><h1>Served</h1><p>Served over HTTP on loopback, frozen by the fetch snapshotter.</p></article></body></html>".to_vec(),
    );
    let input = format!(r#"{{"url": "{}"}}"#, server.url("127.0.0.1", "/article"));
    let snapshotter = Arc::new(FetchSnapshotter::new(host.network()));
    let task = |allow_private_targets| Task {
        input: &input,
        egress: EgressPolicy {
            allow_snapshot: true,
            allow_private_targets,
            ..EgressPolicy::default()
        },
        evidence: EvidenceMode::Live {
            snapshotter: snapshotter.clone(),
        },
        ..Task::defaults(cid, "fetch-snapshot")
    };
    let run = host.execute(task(true)).unwrap();
    assert!(run.output.contains("Served over HTTP"), "{}", run.output);
    let record: EvidenceRecord =
        serde_json::from_slice(run.objects.get(&run.receipt.body.evidence[0]).unwrap()).unwrap();
    let EvidenceRecord::Snapshot {
        outcome: d402_host::evidence::Outcome::Ok(page),
        ..
    } = record
    else {
        panic!("expected a frozen page, got {record:?}")
    };
    assert_eq!(page.snapshotter, "fetch");
    assert_eq!(server.count(), 1);

    // By default the snapshotter may not reach loopback either.
    let err = host.execute(task(false)).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::EgressDenied(EgressDenied::InwardAddress {
                class: AddressClass::Loopback,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(server.count(), 1);
}
