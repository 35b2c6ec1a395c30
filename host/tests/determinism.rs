//! Determinism on a corpus of real pages: two separately built engines (different pool and stack
//! settings, different worker keys) give identical output bytes, output CID, canonical hash and
//! fuel for every page, and a replay from the first run's evidence alone reproduces them.

mod common;

use std::sync::Arc;

use d402_capability_artifacts as artifacts;
use d402_core::{Canonicalizer, EgressPolicy, FrozenPages};
use d402_host::{ContentStore, EngineSettings, EvidenceMode, ReplayBook, Task};

use common::{host_with, load};
use d402_corpus::{book_pages, book_url};

const PAGES: usize = 60;

#[test]
fn page_to_markdown_is_deterministic_across_engines_and_replay() {
    let a = host_with(EngineSettings::default(), [1; 32]);
    let b = host_with(
        EngineSettings {
            max_concurrent_tasks: 3,
            max_wasm_stack: 1024 * 1024,
            ..EngineSettings::default()
        },
        [2; 32],
    );
    let (cid, _) = load(&a, artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    load(&b, artifacts::PAGE_TO_MARKDOWN_COMPONENT);
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open_path(tmp.path()).unwrap();
    let policy = EgressPolicy {
        allow_snapshot: true,
        ..EgressPolicy::default()
    };

    let mut nonempty = 0;
    for page in book_pages(PAGES) {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let url = book_url(&page);
        let html = std::fs::read_to_string(&page).unwrap();
        let mut pages = FrozenPages::new();
        pages.insert(&url, html).unwrap();
        let pages = Arc::new(pages);
        let input = format!(r#"{{"url": "{url}"}}"#);
        let task = |id: &str, evidence| Task {
            input: &input,
            egress: policy.clone(),
            evidence,
            canonicalizer: Canonicalizer::NormalizedText,
            ..Task::defaults(cid, id)
        };
        let run_a = a
            .execute(task(
                "corpus",
                EvidenceMode::Live {
                    snapshotter: pages.clone(),
                },
            ))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let run_b = b
            .execute(task("corpus", EvidenceMode::Live { snapshotter: pages }))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(run_a.output, run_b.output, "{name}: output bytes differ");
        let (ra, rb) = (&run_a.receipt.body, &run_b.receipt.body);
        assert_eq!(ra.output, rb.output, "{name}: output CID");
        assert_eq!(
            ra.canonical_output, rb.canonical_output,
            "{name}: canonical hash"
        );
        assert_eq!(ra.fuel_used, rb.fuel_used, "{name}: fuel");
        assert_eq!(ra.evidence, rb.evidence, "{name}: evidence");
        assert_ne!(run_a.receipt.body.worker, run_b.receipt.body.worker);

        // Replay on engine B from what A recorded, through the content store.
        run_a.objects.persist(&store).unwrap();
        let book = ReplayBook::load(&store, &ra.evidence).unwrap();
        let replay = b
            .execute(task("corpus", EvidenceMode::Replay(book)))
            .unwrap_or_else(|e| panic!("{name}: replay: {e}"));
        assert_eq!(replay.output, run_a.output, "{name}: replay output");
        assert_eq!(
            replay.receipt.body.fuel_used, ra.fuel_used,
            "{name}: replay fuel"
        );

        let out: serde_json::Value = serde_json::from_str(&run_a.output).unwrap();
        if out["markdown"].as_str().is_some_and(|m| m.len() > 200) {
            nonempty += 1;
        }
    }
    assert!(
        nonempty >= PAGES * 9 / 10,
        "only {nonempty} of {PAGES} pages produced Markdown"
    );
}
