//! The devnet's sample pages, served on loopback so that the demo needs no internet. One page
//! builds its text with JavaScript, which is what the Chromium snapshotter is for; one carries
//! product metadata for `web.extract_metadata@1`.

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

/// Serves [`PAGES`] on a free loopback port until the runtime stops; returns the base URL.
pub async fn serve() -> anyhow::Result<String> {
    let mut app = Router::new();
    for (path, body) in PAGES {
        app = app.route(path, get(move || async move { Html(body) }));
    }
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
