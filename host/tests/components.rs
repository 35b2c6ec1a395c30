//! Loading components (CID checks, malformed bytes, the compiled cache) and running the real
//! capabilities, with and without evidence.

mod common;

use std::sync::Arc;

use cap_std::fs::Dir;
use d402_capability_artifacts as artifacts;
use d402_core::{ContentId, EgressPolicy, FrozenPages, Identity};
use d402_host::{
    ContentStore, EvidenceMode, Host, HostConfig, HostError, LoadSource, ReplayBook, Task,
};

use common::{host, load};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
artifacts::foreach_capability!(assert_test_exists);

#[test]
fn bytes_under_a_cid_they_do_not_hash_to_are_refused() {
    let host = host();
    let bytes = std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap();
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = host.load(&ContentId::of(&bytes), &tampered).unwrap_err();
    assert!(matches!(err, HostError::CidMismatch(_)), "{err}");
    assert!(!host.is_loaded(&ContentId::of(&bytes)));
    let err = host
        .execute(Task::defaults(ContentId::of(&bytes), "t"))
        .unwrap_err();
    assert!(matches!(err, HostError::NotLoaded(_)), "{err}");
}

#[test]
fn malformed_components_are_refused_with_a_typed_error() {
    let host = host();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not wasm".to_vec()),
        ("empty", Vec::new()),
        (
            "truncated",
            std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap()[..100].to_vec(),
        ),
        ("core module", wat::parse_str("(module)").unwrap()),
        (
            "component without the export",
            wat::parse_str("(component)").unwrap(),
        ),
    ];
    for (what, bytes) in cases {
        let err = host.load(&ContentId::of(&bytes), &bytes).unwrap_err();
        assert!(
            matches!(err, HostError::InvalidComponent(_)),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_warm_node_never_compiles() {
    let tmp = tempfile::tempdir().unwrap();
    let open = || {
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let config = HostConfig {
            compiled_cache: Some(dir),
            ..HostConfig::default()
        };
        Host::new(config, Arc::new(Identity::from_seed([3; 32]))).unwrap()
    };
    let bytes = std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap();
    let cid = ContentId::of(&bytes);
    let first = open();
    assert_eq!(first.load(&cid, &bytes).unwrap(), LoadSource::Compiled);
    assert_eq!(first.load(&cid, &bytes).unwrap(), LoadSource::Memory);
    // A restarted node loads the precompiled artifact from disk.
    let second = open();
    assert_eq!(second.load(&cid, &bytes).unwrap(), LoadSource::Disk);
    // Even from the cache, bytes must still match the CID.
    assert!(matches!(
        second.load(&cid, b"other"),
        Err(HostError::CidMismatch(_))
    ));
}

#[test]
fn concurrent_first_loads_compile_once() {
    // Tasks that arrive while a component is compiling wait for that compile: without a single
    // flight per CID, every one of them compiled the component again.
    let host = Arc::new(
        Host::new(
            HostConfig::default(),
            Arc::new(Identity::from_seed([4; 32])),
        )
        .unwrap(),
    );
    let bytes = Arc::new(std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap());
    let cid = ContentId::of(&bytes);
    let start = Arc::new(std::sync::Barrier::new(6));
    let loads: Vec<_> = (0..6)
        .map(|_| {
            let (host, bytes, start) = (host.clone(), bytes.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                host.load(&cid, &bytes).unwrap()
            })
        })
        .collect();
    let sources: Vec<LoadSource> = loads.into_iter().map(|t| t.join().unwrap()).collect();
    let compiled = sources
        .iter()
        .filter(|s| **s == LoadSource::Compiled)
        .count();
    assert_eq!(compiled, 1, "{sources:?}");
    assert!(
        sources
            .iter()
            .all(|s| matches!(s, LoadSource::Compiled | LoadSource::Memory))
    );
}

#[test]
fn input_that_is_not_json_is_refused() {
    let host = host();
    let (cid, _) = load(&host, artifacts::MERKLE_VERIFY_COMPONENT);
    let err = host
        .execute(Task {
            input: "{not json",
            ..Task::defaults(cid, "t")
        })
        .unwrap_err();
    assert!(matches!(err, HostError::InvalidInput(_)), "{err}");
}

fn snapshot_task<'a>(cid: ContentId, input: &'a str, pages: FrozenPages) -> Task<'a> {
    Task {
        input,
        egress: EgressPolicy {
            allow_snapshot: true,
            ..EgressPolicy::default()
        },
        evidence: EvidenceMode::Live {
            snapshotter: Arc::new(pages),
        },
        canonicalizer: d402_core::Canonicalizer::NormalizedText,
        ..Task::defaults(cid, "t")
    }
}

#[test]
fn page_to_markdown() {
    let host = host();
    let (cid, _) = load(&host, artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    let url = "https://example.com/article";
    let html = r#"<html><head><title>Frozen article</title><script>var x = 1;</script></head>
        <body><nav><a href="/">Home</a></nav><article><h1>Frozen article</h1>
        <p>The first paragraph of a long enough article, with <strong>bold</strong> text and a
        <a href="https://example.com/x">link</a>. It keeps going so the extractor sees prose.</p>
        <p>A second paragraph, also with plenty of words in it, so that the readability scoring has
        enough text to decide that this is the main content of the page and not a sidebar.</p>
        </article><footer>footer</footer></body></html>"#;
    let mut pages = FrozenPages::new();
    pages.insert(url, html.into()).unwrap();
    let input = format!(r#"{{"url": "{url}", "timeoutMs": 5000}}"#);
    let run = host
        .execute(snapshot_task(cid, &input, pages))
        .expect("converts");
    let out: serde_json::Value = serde_json::from_str(&run.output).unwrap();
    assert_eq!(out["title"], "Frozen article");
    let md = out["markdown"].as_str().unwrap();
    assert!(md.contains("**bold**"), "{md}");
    assert!(md.contains("[link](https://example.com/x)"), "{md}");
    assert!(!md.contains("var x"), "scripts are dropped: {md}");
    assert!(out["contentHash"].as_str().unwrap().starts_with("blake3:"));
    // The snapshot is in the evidence, by the same CID the output names.
    let html_cid = ContentId::of(html.as_bytes());
    assert_eq!(out["evidence"], serde_json::json!([html_cid.to_string()]));
    assert_eq!(run.receipt.body.evidence.len(), 1);
    assert!(run.objects.get(&html_cid).is_some());
    run.receipt.verify().unwrap();
}

#[test]
fn page_to_markdown_rejects_interstitials_and_bad_input() {
    let host = host();
    let (cid, _) = load(&host, artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    let url = "https://example.com/";
    let mut pages = FrozenPages::new();
    pages
        .insert(
            url,
            "<html><head><title>Just a moment...</title></head><body>Checking your browser before accessing example.com.<div class=\"cf-challenge\"></div></body></html>".into(),
        )
        .unwrap();
    let input = format!(r#"{{"url": "{url}"}}"#);
    let err = host
        .execute(snapshot_task(cid, &input, pages.clone()))
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Guest { code, .. } if code == "blocked_page"),
        "{err}"
    );
    let err = host
        .execute(snapshot_task(cid, r#"{"nourl": 1}"#, pages.clone()))
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Guest { code, .. } if code == "invalid_input"),
        "{err}"
    );
    // A page the snapshotter cannot provide reaches the capability as an upstream failure.
    let err = host
        .execute(snapshot_task(
            cid,
            r#"{"url": "https://example.com/missing"}"#,
            pages.clone(),
        ))
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Guest { code, .. } if code == "upstream"),
        "{err}"
    );
    // Without the snapshot permission the task is stopped by the host.
    let err = host
        .execute(Task {
            egress: EgressPolicy::default(),
            ..snapshot_task(cid, &input, pages)
        })
        .unwrap_err();
    assert!(matches!(err, HostError::EgressDenied(_)), "{err}");
}

#[test]
fn merkle_verify() {
    use sha2::{Digest, Sha256};
    let host = host();
    let (cid, _) = load(&host, artifacts::MERKLE_VERIFY_COMPONENT);
    let leaf_hash = |d: &[u8]| Sha256::new().chain_update([0u8]).chain_update(d).finalize();
    let node = |l: &[u8], r: &[u8]| {
        Sha256::new()
            .chain_update([1u8])
            .chain_update(l)
            .chain_update(r)
            .finalize()
    };
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let root = node(&a, &b);
    let input = |root: &str| {
        format!(
            r#"{{"leaf":"{}","proof":[{{"hash":"{}","position":"right"}}],"root":"{root}"}}"#,
            hex::encode(b"a"),
            hex::encode(b)
        )
    };
    let good = input(&hex::encode(root));
    let run = host
        .execute(Task {
            input: &good,
            ..Task::defaults(cid, "m")
        })
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&run.output).unwrap();
    assert_eq!(out["valid"], true, "{out}");
    assert_eq!(out["computedRoot"], hex::encode(root));
    let bad = input(&hex::encode([0u8; 32]));
    let run = host
        .execute(Task {
            input: &bad,
            ..Task::defaults(cid, "m")
        })
        .unwrap();
    assert!(run.output.contains("\"valid\":false"), "{}", run.output);
    let err = host
        .execute(Task {
            input: r#"{"leaf":"zz","proof":[],"root":"00"}"#,
            ..Task::defaults(cid, "m")
        })
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Guest { code, .. } if code == "invalid_input"),
        "{err}"
    );
}

/// Runs a comparator component twice on the same candidates: the scores equal the native
/// crate's bit for bit, and the second run burns the same fuel (a validator's rerun of the
/// comparator gives the same verdict).
fn run_comparator(
    path: &str,
    candidates: &[&str],
    native: fn(&str) -> Result<d402_comparator::Scores, d402_comparator::ContractError>,
) -> d402_comparator::Scores {
    let host = host();
    let (cid, _) = load(&host, path);
    let input = d402_comparator::Candidates {
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
    }
    .to_json();
    let runs: Vec<_> = (0..2)
        .map(|i| {
            host.execute(Task {
                input: &input,
                ..Task::defaults(cid, &format!("compare-{i}"))
            })
            .unwrap()
        })
        .collect();
    assert_eq!(runs[0].output, runs[1].output);
    assert_eq!(
        runs[0].receipt.body.fuel_used,
        runs[1].receipt.body.fuel_used
    );
    let scores = d402_comparator::Scores::from_output(&runs[0].output, candidates.len()).unwrap();
    assert_eq!(
        scores,
        native(&input).unwrap(),
        "the component and the crate disagree"
    );
    let err = host
        .execute(Task {
            input: r#"{"candidates":["only one"]}"#,
            ..Task::defaults(cid, "one")
        })
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Guest { code, .. } if code == "invalid_input"),
        "{err}"
    );
    scores
}

#[test]
fn compare_text() {
    let body: String = (0..80)
        .map(|i| format!("Sentence {i} of an article about rivers. "))
        .collect();
    let a = serde_json::json!({"markdown": format!("{body} Visitors today: 1041")}).to_string();
    let b = serde_json::json!({"markdown": format!("{body} Visitors today: 1042")}).to_string();
    let c = serde_json::json!({"markdown": "Buy cheap watches at example.invalid!"}).to_string();
    let scores = run_comparator(
        artifacts::COMPARE_TEXT_COMPONENT,
        &[&a, &b, &c],
        d402_cap_compare_text::run,
    );
    assert!(scores.scores[0][1] > 950_000, "{scores:?}");
    assert!(scores.scores[0][2] < 50_000, "{scores:?}");
}

#[test]
fn compare_json() {
    let scores = run_comparator(
        artifacts::COMPARE_JSON_COMPONENT,
        &[
            r#"{"title":"A","lang":"en"}"#,
            r#"{"title":"A","lang":"fr"}"#,
        ],
        d402_cap_compare_json::run,
    );
    assert_eq!(scores.scores[0][1], 500_000);
}

#[test]
fn extract_metadata() {
    let host = host();
    let (cid, _) = load(&host, artifacts::EXTRACT_METADATA_COMPONENT);
    let url = "https://example.com/docs/page";
    let html = r#"<html lang="en"><head><title>  Meta   page </title>
        <meta name="description" content="A   described page">
        <meta property="og:title" content="OG title">
        <link rel="canonical" href="/docs/canonical"></head>
        <body><h1>Top</h1><h2>Sub  section</h2><a href="other">Other page</a></body></html>"#;
    let mut pages = FrozenPages::new();
    pages.insert(url, html.into()).unwrap();
    let input = format!(r#"{{"url": "{url}"}}"#);
    let run = host.execute(snapshot_task(cid, &input, pages)).unwrap();
    let out: serde_json::Value = serde_json::from_str(&run.output).unwrap();
    assert_eq!(out["title"], "Meta page", "{out}");
    assert_eq!(out["description"], "A described page", "{out}");
    assert_eq!(out["lang"], "en");
    assert_eq!(
        out["canonicalUrl"], "https://example.com/docs/canonical",
        "{out}"
    );
    assert_eq!(out["openGraph"]["title"], "OG title", "{out}");
    assert!(
        out["links"]
            .to_string()
            .contains("https://example.com/docs/other"),
        "{out}"
    );
    assert!(out["headings"].to_string().contains("Sub section"), "{out}");
}

/// A replay is served from evidence only: the recorded URL does not even resolve, and a request
/// the evidence does not hold stops the task instead of reaching the network.
#[test]
fn replay_needs_no_network_and_refuses_unrecorded_requests() {
    let host = host();
    let (cid, _) = load(&host, artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    let url = "https://no-such-host.invalid/page";
    let mut pages = FrozenPages::new();
    pages
        .insert(
            url,
            "<html><head><title>T</title></head><body><p>Offline.</p></body></html>".into(),
        )
        .unwrap();
    let input = format!(r#"{{"url": "{url}"}}"#);
    let live = host.execute(snapshot_task(cid, &input, pages)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open_path(tmp.path()).unwrap();
    live.objects.persist(&store).unwrap();

    let book = ReplayBook::load(&store, &live.receipt.body.evidence).unwrap();
    let replay = host
        .execute(Task {
            evidence: EvidenceMode::Replay(book),
            ..snapshot_task(cid, &input, FrozenPages::new())
        })
        .unwrap();
    assert_eq!(replay.output, live.output);
    assert_eq!(replay.receipt.body.fuel_used, live.receipt.body.fuel_used);

    // Another URL is not in the evidence.
    let book = ReplayBook::load(&store, &live.receipt.body.evidence).unwrap();
    let other = r#"{"url": "https://no-such-host.invalid/other"}"#;
    let err = host
        .execute(Task {
            evidence: EvidenceMode::Replay(book),
            ..snapshot_task(cid, other, FrozenPages::new())
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            HostError::EvidenceMissing {
                kind: "snapshot",
                ..
            }
        ),
        "{err}"
    );

    // Evidence whose bytes were tampered with in the store is refused when loaded.
    let html_cid =
        ContentId::of(b"<html><head><title>T</title></head><body><p>Offline.</p></body></html>");
    store
        .corrupt_for_test(&html_cid, b"<html>tampered</html>")
        .unwrap();
    assert!(ReplayBook::load(&store, &live.receipt.body.evidence).is_err());
}
