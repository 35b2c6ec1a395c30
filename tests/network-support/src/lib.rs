//! A local d402 network for tests: real nodes on 127.0.0.1 over real libp2p, real components,
//! real Chromium where a test asks for it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use d402_capability_artifacts as artifacts;
use d402_core::{Identity, Snapshotter};
use d402_host::FetchSnapshotter;
use d402_host::egress::NetworkEgress;
use d402_node::{Node, NodeConfig, Offer, WorkerConfig};
use d402_registry::manifest::{ValidationClass, template};
use d402_registry::registration::{Terms, register};
use d402_registry::{CreatorWallets, Manifest};

pub const PAGE: &str = "web.page_to_markdown@1";
pub const MERKLE: &str = "merkle.verify_proof@1";
/// The page conversion as a *scoreable* capability: each worker freezes its own copy of the
/// page, and the validator compares the conversions with [`COMPARE_TEXT`].
pub const LIVE_PAGE: &str = "web.page_to_markdown_live@1";
pub const COMPARE_TEXT: &str = "compare.text_similarity@1";
/// The threshold [`LIVE_PAGE`] is published with: 0.9.
pub const LIVE_PAGE_THRESHOLD: u32 = 900_000;

/// An article that differs a little on every load (a visit counter and the time), as live
/// pages do: two loads never freeze the same bytes.
pub fn dynamic_article(load: usize) -> String {
    let body: String = (0..40)
        .map(|i| {
            format!(
                "<p>Paragraph {i} of the report on river {}: the water level rose by {} centimetres after the storm.</p>\n",
                ["Elbe", "Oder", "Rhine", "Danube"][i % 4],
                i * 3 + 7
            )
        })
        .collect();
    format!(
        "<html><head><title>River report</title></head><body><main><article><h1>River report</h1>\n{body}<p>This page was viewed {} times; rendered at 10:{:02}.</p></article></main></body></html>",
        1000 + load,
        load % 60
    )
}

/// A page whose main text is built by JavaScript: a plain fetch sees different content than the
/// browser.
pub const SCRIPTED_PAGE: &str = r#"<html><head><title>Scripted</title></head><body><main><h1>Scripted</h1>
<p>This page is about the d402 network, which sells sandboxed compute to applications.</p>
<div id="app"></div><script>
document.getElementById('app').innerHTML = '<p>' + ['Built', 'by', 'Java' + 'Script'].join(' ') + ' for d402.</p>';
</script></main></body></html>"#;

pub fn component(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("component built by d402-capability-artifacts")
}

/// The manifest of `capability` for `component`, with the given validation.
pub fn manifest(capability: &str, component: &[u8]) -> Manifest {
    let (id, version) = capability.split_once('@').unwrap();
    let mut m = template(
        id,
        version.parse().unwrap(),
        Some(d402_core::ContentId::of(component)),
    )
    .unwrap();
    if capability == PAGE {
        m.permissions.snapshot = true;
        m.validation.class = ValidationClass::Canonicalizable;
        m.validation.quorum = 2;
    } else if capability == LIVE_PAGE {
        m.permissions.snapshot = true;
        m.validation.class = ValidationClass::Scoreable;
        m.validation.canonicalizer = None;
        m.validation.comparator = Some(COMPARE_TEXT.into());
        m.validation.threshold = Some(LIVE_PAGE_THRESHOLD);
        m.validation.quorum = 3;
    } else {
        m.input_schema = serde_json::json!({"type": "object"});
        m.validation.class = ValidationClass::Exact;
        m.validation.quorum = 1;
    }
    m
}

/// Registers `manifest` as `publisher` and stores everything in `node`'s content store.
pub fn publish(node: &Node, manifest: Manifest, component: &[u8]) -> Offer {
    let publisher = Identity::from_seed([42; 32]);
    let registration = register(
        &manifest,
        &publisher,
        Terms {
            namespace: manifest.namespace().to_string(),
            namespace_proof: None,
            creator_commission_bps: 0,
            creator_wallets: CreatorWallets::default(),
            issued_at: 1_767_225_600_000,
        },
    )
    .unwrap();
    Offer::publish(
        node.coordinator().store(),
        registration,
        manifest,
        component,
    )
    .unwrap()
}

pub fn page_offer(node: &Node) -> Offer {
    let bytes = component(artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    publish(node, manifest(PAGE, &bytes), &bytes)
}

pub fn live_page_offer(node: &Node) -> Offer {
    let bytes = component(artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    publish(node, manifest(LIVE_PAGE, &bytes), &bytes)
}

/// The text comparator, or any `component` published under its name (hostile comparators).
pub fn comparator_offer(node: &Node, component_path: &str) -> Offer {
    let bytes = component(component_path);
    publish(node, manifest(COMPARE_TEXT, &bytes), &bytes)
}

pub fn merkle_offer(node: &Node) -> Offer {
    let bytes = component(artifacts::MERKLE_VERIFY_COMPONENT);
    publish(node, manifest(MERKLE, &bytes), &bytes)
}

/// A valid input for `merkle.verify_proof@1`: a one-leaf tree whose root is the leaf's hash.
pub fn merkle_input(leaf: &str) -> String {
    let root = d402_cap_merkle_verify::leaf_hash(leaf.as_bytes());
    format!(
        r#"{{"leaf":"{}","proof":[],"root":"{}"}}"#,
        hex::encode(leaf.as_bytes()),
        hex::encode(root)
    )
}

pub fn fetch_snapshotter() -> Arc<dyn Snapshotter> {
    Arc::new(FetchSnapshotter::new(Arc::new(NetworkEgress::new())))
}

pub fn worker_config(offers: &[&str], snapshotter: Arc<dyn Snapshotter>) -> WorkerConfig {
    let mut config = WorkerConfig::new(offers.iter().map(|s| s.to_string()), snapshotter);
    config.allow_private_targets = true;
    config
}

/// Starts a node with state under `dir/label`, dialling `peers`.
pub async fn start(
    dir: &Path,
    label: &str,
    peers: &[&Node],
    worker: Option<WorkerConfig>,
    validate: &[&str],
) -> Node {
    let mut config = NodeConfig::new(label, dir.join(label));
    config.peers = peers.iter().map(|p| p.listen_addr()).collect();
    config.worker = worker;
    config.validate = validate.iter().map(|s| s.to_string()).collect();
    Node::start(config).await.expect("node starts")
}

/// Polls `check` until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {within:?} waiting for {what}");
}

/// Waits until `node` has every one of `others` in its DHT routing table.
pub async fn wait_discovered(node: &Node, others: &[&Node]) {
    let wanted: Vec<_> = others
        .iter()
        .map(|o| o.peer_id())
        .filter(|p| *p != node.peer_id())
        .collect();
    eventually(
        Duration::from_secs(20),
        &format!("{} to discover its peers", node.label()),
        || {
            let net = node.net().clone();
            let wanted = wanted.clone();
            async move {
                let known = net.routing_peers().await.unwrap_or_default();
                wanted.iter().all(|p| known.contains(p))
            }
        },
    )
    .await;
}
