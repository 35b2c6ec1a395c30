//! The Chromium snapshotter against pages served on loopback, with the real browser.

use std::sync::Arc;
use std::time::{Duration, Instant};

use d402_core::egress::{
    AddressClass, BudgetExceeded, EgressDenied, EgressViolation, NetworkFailure,
};
use d402_core::snapshot::{SnapshotError, SnapshotLimits, Snapshotter};
use d402_host::{FetchSnapshotter, egress::NetworkEgress};
use d402_loopback_server::{LoopbackServer, Reply};
use d402_snapshotter::{ChromiumConfig, ChromiumSnapshotter};
use url::Url;

/// A page whose visible text is built by JavaScript: a plain fetch sees only the script.
const SCRIPTED: &str = r#"<html><head><title>Scripted</title></head><body>
<div id="app"></div>
<script>
  var words = ['Built', 'by', 'Java' + 'Script'];
  document.getElementById('app').innerHTML = '<p id="made">' + words.join(' ') + '</p>';
</script></body></html>"#;

/// Serves `SCRIPTED` on `/`, never answers on `/hang`, and counts requests.
fn serve() -> LoopbackServer {
    LoopbackServer::start(|head| {
        if head.starts_with("GET /hang") {
            Reply::Hang(Duration::from_secs(30))
        } else if head.starts_with("GET / ") {
            Reply::Html(SCRIPTED.as_bytes().to_vec())
        } else {
            Reply::NotFound
        }
    })
}

/// The snapshot of `url` holds the DOM the page's script built.
fn assert_scripted(chromium: &ChromiumSnapshotter, url: &Url) {
    let frozen = chromium.freeze(url, &limits(true)).expect("snapshot");
    assert!(
        frozen.html.contains("Built by JavaScript"),
        "{}",
        frozen.html
    );
}

fn limits(allow_private_targets: bool) -> SnapshotLimits {
    SnapshotLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 1024 * 1024,
        allow_private_targets,
    }
}

#[test]
fn chromium_sees_the_scripted_dom_and_obeys_the_policy() {
    let chromium = ChromiumSnapshotter::launch(ChromiumConfig::default()).expect("Chromium starts");
    let server = serve();
    let url = Url::parse(&server.url("127.0.0.1", "/")).unwrap();

    // The browser runs the script; a plain fetch does not.
    let frozen = chromium.freeze(&url, &limits(true)).expect("snapshot");
    assert!(
        frozen
            .html
            .contains(r#"<p id="made">Built by JavaScript</p>"#),
        "{}",
        frozen.html
    );
    let fetched = FetchSnapshotter::new(Arc::new(NetworkEgress::new()))
        .freeze(&url, &limits(true))
        .unwrap();
    assert!(!fetched.html.contains("Built by JavaScript"));

    // One browser, reused: several snapshots in a row.
    for _ in 0..3 {
        assert_scripted(&chromium, &url);
    }

    // By default loopback is refused before the browser is asked, and nothing is requested.
    let before = server.count();
    match chromium.freeze(&url, &limits(false)) {
        Err(SnapshotError::Violation(EgressViolation::Denied(EgressDenied::InwardAddress {
            class: AddressClass::Loopback,
            ..
        }))) => {}
        other => panic!("expected a loopback refusal, got {other:?}"),
    }
    assert_eq!(server.count(), before);

    // The HTML size cap.
    let small = SnapshotLimits {
        max_bytes: 64,
        ..limits(true)
    };
    assert!(matches!(
        chromium.freeze(&url, &small),
        Err(SnapshotError::Violation(EgressViolation::Budget(
            BudgetExceeded::Bytes { limit: 64 }
        )))
    ));

    // A page that never answers times out within the limit, and the browser still works after.
    let hang = Url::parse(&server.url("127.0.0.1", "/hang")).unwrap();
    let started = Instant::now();
    let short = SnapshotLimits {
        timeout: Duration::from_millis(1500),
        ..limits(true)
    };
    assert!(matches!(
        chromium.freeze(&hang, &short),
        Err(SnapshotError::Network(NetworkFailure::Timeout(_)))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_scripted(&chromium, &url);
}

#[test]
fn a_missing_browser_is_a_clear_error() {
    let config = ChromiumConfig {
        executable: "/no/such/chromium".into(),
        ..ChromiumConfig::default()
    };
    let err = ChromiumSnapshotter::launch(config)
        .err()
        .expect("no browser");
    assert!(err.to_string().contains("/no/such/chromium"), "{err}");
}
