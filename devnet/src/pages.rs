//! The devnet's sample pages, served on loopback so that the demo needs no internet. One page
//! builds its text with JavaScript, which is what the Chromium snapshotter is for; one carries
//! product metadata for `web.extract_metadata@1`; one ([`LIVE_PATH`]) changes on every load, as
//! live pages do, for the scored page conversion.

use anyhow::Context;
use axum::Router;
use axum::response::Html;
use axum::routing::get;

const ARTICLE: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>How d402 sells compute</title><meta name="description" content="A short tour of the d402 market."></head>
<body><header><nav><a href="/">Home</a></nav></header><main><article>
<h1>How d402 sells compute</h1>
<p>Capability authors publish WebAssembly components named by their content hash. Workers run them in a
sandbox under fuel, memory and time limits, and gateways sell the work over HTTP with x402 payments.</p>
<h2>Why results can be checked</h2>
<p>A component runs deterministically: a validator that replays the same implementation on the same input
and the same frozen evidence gets the same bytes, so several workers' answers can be compared by quorum.</p>
<ul><li>Workers are paid their net share.</li><li>Creators earn a commission.</li><li>Gateways keep a fee.</li></ul>
</article></main><footer>d402 devnet</footer></body></html>"#;

const SCRIPTED: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A page built by JavaScript</title></head>
<body><main><h1>A page built by JavaScript</h1>
<p>The paragraph below does not exist in the HTML the server sends: the browser builds it.</p>
<div id="app"></div>
<script>document.getElementById('app').innerHTML =
  '<p>' + ['Frozen', 'once', 'by', 'Chromium,', 'compared', 'many', 'times', 'by', 'quorum.'].join(' ') + '</p>';</script>
</main></body></html>"#;

const PRODUCT: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Trail lamp 300</title>
<meta name="description" content="A 300-lumen rechargeable trail lamp.">
<meta property="og:title" content="Trail lamp 300"><meta property="og:type" content="product">
<link rel="canonical" href="http://shop.example/trail-lamp-300">
<script type="application/ld+json">{"@context":"https://schema.org","@type":"Product","name":"Trail lamp 300",
"offers":{"@type":"Offer","price":"39.00","priceCurrency":"EUR"}}</script></head>
<body><main><h1>Trail lamp 300</h1><p>Rechargeable, 300 lumens, 12 hours on low.</p></main></body></html>"#;

/// The pages and their paths.
pub const PAGES: [(&str, &str); 3] = [
    ("/articles/how-d402-sells-compute.html", ARTICLE),
    ("/articles/built-by-javascript.html", SCRIPTED),
    ("/products/trail-lamp-300.html", PRODUCT),
];

/// A page that differs a little on every load (a visit counter and the time of the load).
pub const LIVE_PATH: &str = "/live/market-report.html";

fn live_page(load: usize) -> String {
    let now = d402_core::clock::now_ms() / 1000;
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Market report</title></head>
<body><main><article><h1>Market report</h1>
<p>Workers sell sandboxed compute; gateways sell it on to applications over HTTP, paid with x402.
Each task is named by its capability, and each capability by the hash of its component.</p>
<p>A live page like this one changes between two loads: workers that each freeze their own copy see
slightly different text, so their conversions are compared by score rather than byte for byte.</p>
<p>Validators run a comparator, itself a capability named by its hash, over every pair of outputs; the
outputs that agree above the manifest's threshold are accepted, and an outlier is rejected.</p>
<h2>What a buyer is promised</h2>
<p>An exact capability is re-executed by a validator from the frozen evidence and must match byte for
byte. A scored one promises less: the delivered output is the one closest to the others, and every
score is in the signed verdict, so anyone holding the comparator can rerun the comparison.</p>
<p>This page has been viewed {views} times; this copy was rendered at {hh:02}:{mm:02}:{ss:02} UTC.</p>
</article></main></body></html>"#,
        views = 1000 + load,
        hh = now / 3600 % 24,
        mm = now / 60 % 60,
        ss = now % 60,
    )
}

/// Serves [`PAGES`] and the live page on a free loopback port until the runtime stops;
/// returns the base URL.
pub async fn serve() -> anyhow::Result<String> {
    let mut app = Router::new();
    for (path, body) in PAGES {
        app = app.route(path, get(move || async move { Html(body) }));
    }
    let loads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    app = app.route(
        LIVE_PATH,
        get(move || async move {
            Html(live_page(
                loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            ))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the sample pages' port")?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("devnet: sample pages stopped: {e}");
        }
    });
    Ok(url)
}
