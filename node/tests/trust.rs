//! Trust beyond exact re-execution, end to end on real nodes over libp2p:
//! - scoreable validation: the page conversion as a live capability (each worker freezes its own
//!   copy of a page that changes on every load), compared by the text comparator the validator
//!   runs in its host; hostile comparators contained;
//! - honest snapshots: a lying snapshotter, whose frozen page every quorum worker and the
//!   validator replay faithfully, caught by an independent worker's freeze.

use std::sync::Arc;
use std::time::Duration;

use d402_core::{ContentId, Identity};
use d402_host::{Host, HostConfig, Task};
use d402_loopback_server::{LoopbackServer, Reply};
use d402_network_support::*;
use d402_node::{Fault, Node, TaskError, TaskSpec};
use d402_registry::validation::Assurance;

/// One network at a time: every worker compiles the page component in its own host, and three
/// networks compiling at once on a small machine outlast the leases.
static ONE_NETWORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A site whose one page changes on every load.
fn dynamic_site() -> LoopbackServer {
    let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    LoopbackServer::start(move |head| {
        if head.starts_with("GET / ") {
            let n = loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Reply::Html(dynamic_article(n).into_bytes())
        } else {
            Reply::NotFound
        }
    })
}

/// A network of `honest` honest workers of `capability`, the `faulty` ones (cheaper, so that
/// they are leased first), a validator of it, and a client.
struct Net {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
    faulty: Vec<d402_node::PeerId>,
}

impl Net {
    async fn start(capability: &str, honest: usize, faulty: &[Fault]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let bootstrap = start(path, "bootstrap", &[], None, &[]).await;
        let mut nodes = vec![];
        let mut faulty_peers = vec![];
        for i in 0..honest {
            let config = worker_config(&[capability], fetch_snapshotter());
            nodes.push(
                start(
                    path,
                    &format!("honest-{i}"),
                    &[&bootstrap],
                    Some(config),
                    &[],
                )
                .await,
            );
        }
        for (i, fault) in faulty.iter().enumerate() {
            let mut config = worker_config(&[capability], fetch_snapshotter());
            config.fault = Some(*fault);
            config.price = 0;
            let node = start(
                path,
                &format!("faulty-{i}"),
                &[&bootstrap],
                Some(config),
                &[],
            )
            .await;
            faulty_peers.push(node.peer_id());
            nodes.push(node);
        }
        nodes.push(start(path, "validator", &[&bootstrap], None, &[capability]).await);
        nodes.push(start(path, "client", &[&bootstrap], None, &[]).await);
        nodes.push(bootstrap);
        let everyone: Vec<&Node> = nodes.iter().collect();
        for node in &everyone {
            wait_discovered(node, &everyone).await;
        }
        Self {
            _dir: dir,
            nodes,
            faulty: faulty_peers,
        }
    }

    /// Submits a task that must fail, and its error.
    async fn refused(&self, offer: &d402_node::Offer, spec: TaskSpec) -> TaskError {
        self.client()
            .coordinator()
            .submit(offer, spec)
            .await
            .expect_err("the task was accepted")
    }

    fn client(&self) -> &Node {
        &self.nodes[self.nodes.len() - 2]
    }

    fn validator(&self) -> &Node {
        &self.nodes[self.nodes.len() - 3]
    }

    fn spec(
        &self,
        task: &str,
        site: &LoopbackServer,
        comparator: &d402_node::Offer,
    ) -> (d402_node::Offer, TaskSpec) {
        let offer = live_page_offer(self.client());
        let input = format!(r#"{{"url":"{}"}}"#, site.url("127.0.0.1", "/"));
        let spec = TaskSpec {
            deadline: Duration::from_secs(60),
            comparator: Some(comparator.comparator_ref()),
            ..TaskSpec::new(task, input, &offer)
        };
        (offer, spec)
    }
}

/// Quorum 3, one worker degrading its conversion: the two honest conversions of two different
/// loads of the page agree above the threshold, the degraded one is an outlier, rejected and
/// penalised; the verdict carries the comparator's CID and every score, and rerunning the
/// comparator on the claims gives the same scores and fuel bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scoreable_quorum_of_three_rejects_the_degraded_output() {
    init_logs();
    let _one = ONE_NETWORK.lock().await;
    let net = Net::start(LIVE_PAGE, 2, &[Fault::DegradeOutput]).await;
    let site = dynamic_site();
    let comparator = comparator_offer(net.client(), artifacts::COMPARE_TEXT_COMPONENT);
    let (offer, spec) = net.spec("scored-1", &site, &comparator);
    assert_eq!(spec.quorum, 3);
    let outcome = net
        .client()
        .coordinator()
        .submit(&offer, spec)
        .await
        .unwrap();

    let markdown = serde_json::from_str::<serde_json::Value>(&outcome.output).unwrap()["markdown"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        markdown.contains("Paragraph 39 of the report"),
        "{markdown}"
    );
    assert!(
        !markdown.contains("cheap watches"),
        "the degraded output won: {markdown}"
    );
    assert_eq!(
        site.count(),
        3,
        "each worker froze its own copy of the page"
    );
    assert_eq!(outcome.claims.len(), 3);
    assert_eq!(outcome.receipts.len(), 2);
    assert_ne!(
        outcome.receipts[0].body.evidence, outcome.receipts[1].body.evidence,
        "the two accepted conversions read two different loads"
    );
    let liar = net.faulty[0];
    assert!(!outcome.workers.contains(&liar));
    assert!(outcome.rejected.iter().any(|r| r.worker == liar));
    let standing = net.client().coordinator().standing(&liar);
    assert_eq!(
        (standing.accepted, standing.rejected),
        (0, 1),
        "{standing:?}"
    );

    let verdict = outcome.verdict.as_ref().expect("validated");
    verdict.verify().unwrap();
    assert_eq!(verdict.body.validator, net.validator().public_id());
    assert_eq!(verdict.body.assurance, Assurance::Scored);
    assert_eq!(outcome.assurance(), Assurance::Scored);
    assert_eq!(verdict.body.accepted.len(), 2);
    assert_eq!(verdict.body.rejected.len(), 1);
    assert!(
        verdict.body.rejected[0].reason.contains("outlier"),
        "{:?}",
        verdict.body.rejected
    );
    let scoring = verdict
        .body
        .scoring
        .as_ref()
        .expect("scores in the verdict");
    assert_eq!(scoring.comparator, COMPARE_TEXT);
    assert_eq!(
        scoring.implementation,
        comparator.manifest.implementation.cid
    );
    assert_eq!(scoring.threshold, LIVE_PAGE_THRESHOLD);
    let liar_index = outcome
        .claims
        .iter()
        .position(|c| d402_node::coordinator::peer_of(&c.receipt.body.worker) == Some(liar))
        .unwrap();
    for (i, row) in scoring.scores.iter().enumerate() {
        for (j, &score) in row.iter().enumerate() {
            if i != j && (i == liar_index || j == liar_index) {
                assert!(score < LIVE_PAGE_THRESHOLD, "[{i}][{j}] = {score}");
            } else {
                assert!(score >= LIVE_PAGE_THRESHOLD, "[{i}][{j}] = {score}");
            }
        }
    }
    assert_ne!(
        scoring.scores[0][1]
            .min(scoring.scores[1][2])
            .min(scoring.scores[0][2]),
        1_000_000
    );

    // Anyone holding the comparator's bytes reruns the comparison and gets the same scores.
    let host = Host::new(
        HostConfig::default(),
        Arc::new(Identity::from_seed([9; 32])),
    )
    .unwrap();
    let bytes = component(artifacts::COMPARE_TEXT_COMPONENT);
    assert_eq!(ContentId::of(&bytes), scoring.implementation);
    host.load(&scoring.implementation, &bytes).unwrap();
    let input = d402_comparator::Candidates {
        candidates: outcome.claims.iter().map(|c| c.output.clone()).collect(),
    }
    .to_json();
    let rerun = host
        .execute(Task {
            input: &input,
            limits: comparator.manifest.limits.into(),
            ..Task::defaults(scoring.implementation, "rerun")
        })
        .unwrap();
    let scores = d402_comparator::Scores::from_output(&rerun.output, 3).unwrap();
    assert_eq!(scores.scores, scoring.scores, "the rerun scores differ");
    assert_eq!(
        rerun.receipt.body.fuel_used, scoring.fuel_used,
        "the rerun's fuel differs"
    );
}

/// A comparator that loops, one that allocates without bound and one that answers malformed
/// scores: each is contained by the validator's host, and the task fails (so a gateway refunds
/// it); nothing is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_comparator_never_accepts_a_task() {
    init_logs();
    let _one = ONE_NETWORK.lock().await;
    let net = Net::start(LIVE_PAGE, 3, &[]).await;
    let site = dynamic_site();
    for (name, path) in [
        ("loops", d402_test_artifacts::ENDLESS_LOOP_COMPONENT),
        ("allocates", d402_test_artifacts::MEMORY_BOMB_COMPONENT),
        ("malformed", d402_test_artifacts::MALFORMED_SCORES_COMPONENT),
    ] {
        let bytes = component(path);
        let mut manifest = manifest(COMPARE_TEXT, &bytes);
        manifest.limits.fuel = 500_000_000;
        manifest.limits.memory_bytes = 64 << 20;
        manifest.limits.wall_time_ms = 5_000;
        let comparator = publish(net.client(), manifest, &bytes);
        let (offer, spec) = net.spec(&format!("hostile-{name}"), &site, &comparator);
        let started = std::time::Instant::now();
        let err = net
            .client()
            .coordinator()
            .submit(&offer, spec)
            .await
            .expect_err(&format!("a comparator that {name} accepted a task"));
        assert!(
            matches!(&err, TaskError::NoValidator(m) if m.contains("comparator")),
            "{name}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{name}: {:?}",
            started.elapsed()
        );
    }
    // The validator is unharmed: an honest comparator still gets the task accepted.
    let comparator = comparator_offer(net.client(), artifacts::COMPARE_TEXT_COMPONENT);
    let (offer, spec) = net.spec("after-hostile", &site, &comparator);
    let outcome = net
        .client()
        .coordinator()
        .submit(&offer, spec)
        .await
        .unwrap();
    assert_eq!(outcome.verdict.unwrap().body.accepted.len(), 3);
}

/// The request must name the manifest's comparator: another capability is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_comparator_other_than_the_manifests_is_refused() {
    init_logs();
    let _one = ONE_NETWORK.lock().await;
    let net = Net::start(LIVE_PAGE, 3, &[]).await;
    let site = dynamic_site();
    let merkle = merkle_offer(net.client());
    let (offer, spec) = net.spec("wrong-comparator", &site, &merkle);
    let err = net.refused(&offer, spec).await;
    assert!(
        matches!(&err, TaskError::NoValidator(m) if m.contains("names comparator merkle.verify_proof@1")),
        "{err}"
    );
    let (offer, mut spec) = net.spec("no-comparator", &site, &merkle);
    spec.comparator = None;
    let err = net.refused(&offer, spec).await;
    assert!(
        matches!(&err, TaskError::NoValidator(m) if m.contains("names none")),
        "{err}"
    );
}

/// The snapshot check's policy as a gateway with `--snapshot-check 1.0` sets it.
fn check_everything(net: &Net) -> d402_node::SnapshotCheckSpec {
    d402_node::SnapshotCheckSpec {
        comparator: comparator_offer(net.client(), artifacts::COMPARE_TEXT_COMPONENT)
            .comparator_ref(),
        threshold: 800_000,
        rate: 1.0,
    }
}

/// A worker that alters the page before freezing it is leased first and freezes the page the
/// quorum replays: the quorum agrees and the validator's replay matches, yet the snapshot check
/// (an independent worker's own freeze, compared by the validator) finds it out; the outcome is
/// marked disputed and the freezer loses standing. Without the check the lie would have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_snapshotter_is_caught_by_the_snapshot_check() {
    init_logs();
    let _one = ONE_NETWORK.lock().await;
    let net = Net::start(PAGE, 2, &[Fault::AlterPage]).await;
    let site = LoopbackServer::serving(dynamic_article(0).into_bytes());
    let offer = page_offer(net.client());
    let input = format!(r#"{{"url":"{}"}}"#, site.url("127.0.0.1", "/"));
    let liar = net.faulty[0];

    let spec = TaskSpec {
        deadline: Duration::from_secs(60),
        snapshot_check: Some(check_everything(&net)),
        ..TaskSpec::new("checked-1", input.clone(), &offer)
    };
    let outcome = net
        .client()
        .coordinator()
        .submit(&offer, spec)
        .await
        .unwrap();
    assert_eq!(outcome.leased[0], liar, "the liar froze the page");
    assert!(
        outcome.output.contains("cheap watches"),
        "the quorum replayed the lie"
    );
    let verdict = outcome.verdict.as_ref().unwrap();
    assert_eq!(
        verdict.body.accepted.len(),
        2,
        "the replay alone cannot tell"
    );
    let check = verdict.body.snapshot_check.as_ref().expect("checked");
    assert!(!check.passed && check.score < 800_000, "{check:?}");
    assert_eq!(check.comparator, COMPARE_TEXT);
    assert_ne!(check.checker, outcome.receipts[0].body.worker);
    let disputed = outcome.snapshot_disputed.as_deref().expect("disputed");
    assert!(disputed.contains("snapshot check"), "{disputed}");
    let standing = net.client().coordinator().standing(&liar);
    assert!(standing.rejected >= 1, "{standing:?}");

    // The same page with the check off: the lie goes through undetected, which is what the
    // check is for.
    let spec = TaskSpec {
        deadline: Duration::from_secs(60),
        ..TaskSpec::new("unchecked-1", input, &offer)
    };
    let outcome = net
        .client()
        .coordinator()
        .submit(&offer, spec)
        .await
        .unwrap();
    assert!(outcome.snapshot_disputed.is_none());
    assert!(outcome.verdict.unwrap().body.snapshot_check.is_none());
}

/// Honest workers pass the snapshot check: the independent freeze agrees, nothing is disputed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_snapshots_pass_the_check() {
    init_logs();
    let _one = ONE_NETWORK.lock().await;
    let net = Net::start(PAGE, 3, &[]).await;
    let site = dynamic_site();
    let offer = page_offer(net.client());
    let spec = TaskSpec {
        deadline: Duration::from_secs(60),
        snapshot_check: Some(check_everything(&net)),
        ..TaskSpec::new(
            "honest-checked",
            format!(r#"{{"url":"{}"}}"#, site.url("127.0.0.1", "/")),
            &offer,
        )
    };
    let outcome = net
        .client()
        .coordinator()
        .submit(&offer, spec)
        .await
        .unwrap();
    let check = outcome
        .verdict
        .as_ref()
        .unwrap()
        .body
        .snapshot_check
        .clone()
        .expect("checked");
    assert!(check.passed && check.score >= 800_000, "{check:?}");
    assert!(
        check.score < 1_000_000,
        "two loads of a live page differ a little: {check:?}"
    );
    assert!(outcome.snapshot_disputed.is_none());
    assert_eq!(
        site.count(),
        2,
        "one freeze for the quorum, one for the check"
    );
}
