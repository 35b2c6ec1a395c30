//! `web.extract_metadata@1`: a *canonicalizable* JSON extraction from a frozen page: title,
//! description, language, canonical URL, headings, links (absolute) and Open Graph properties. All
//! text is whitespace-collapsed and every collection has a fixed order, so two workers that saw the
//! same snapshot produce the same JSON.
//!
//! ```
//! let html = r#"<html lang="en"><head><title> Hi
//!   there </title></head><body><h1>Top</h1><a href="/x">X</a></body></html>"#;
//! let meta = d402_cap_extract_metadata::extract(html, "https://example.org/a/b").unwrap();
//! assert_eq!(meta.title.as_deref(), Some("Hi there"));
//! assert_eq!(meta.links[0].href, "https://example.org/x");
//! ```

use std::collections::BTreeMap;

use dom_query::Document;
use serde::{Deserialize, Serialize};
use url::Url;

/// The capability id and version this crate implements.
pub const CAPABILITY_ID: &str = "web.extract_metadata@1";

/// The task input, as JSON: `{"url": string, "timeoutMs"?: number}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    pub url: String,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

impl Input {
    /// Parses and checks the task input.
    pub fn parse(json: &str) -> Result<Self, MetadataError> {
        let input: Input =
            serde_json::from_str(json).map_err(|e| MetadataError::InvalidInput(e.to_string()))?;
        match Url::parse(&input.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(input),
            _ => Err(MetadataError::InvalidInput(format!(
                "url must be an absolute http or https URL, got {:?}",
                input.url
            ))),
        }
    }
}

/// Why metadata could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The task input is malformed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The page's final URL (given by the host) is not an absolute URL.
    #[error("the page URL {0:?} is not an absolute URL")]
    BadPageUrl(String),
}

/// A heading, `h1`..`h6`, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heading {
    pub level: u8,
    pub text: String,
}

/// A link, in document order, with `href` resolved against the page's base URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub text: String,
}

/// The task output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The final URL of the page, after redirects.
    pub url: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub lang: Option<String>,
    pub canonical_url: Option<String>,
    pub headings: Vec<Heading>,
    pub links: Vec<Link>,
    /// `og:*` properties without the `og:` prefix; the first value wins; keys sorted.
    pub open_graph: BTreeMap<String, String>,
}

impl Metadata {
    /// The output as JSON text.
    pub fn to_json(&self) -> String {
        // Strings, integers and maps with string keys always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Extracts the metadata of `html`, a page whose final URL is `page_url`.
pub fn extract(html: &str, page_url: &str) -> Result<Metadata, MetadataError> {
    let page = Url::parse(page_url).map_err(|_| MetadataError::BadPageUrl(page_url.to_owned()))?;
    let doc = Document::from(html);

    // `<base href>` changes what relative links mean; it is itself relative to the page URL.
    let base = doc
        .select("base[href]")
        .attr("href")
        .and_then(|href| page.join(href.trim()).ok())
        .unwrap_or_else(|| page.clone());

    let title = non_empty(collapse(&doc.select("title").text()));
    let description = doc
        .select(r#"meta[name="description" i]"#)
        .attr("content")
        .and_then(|c| non_empty(collapse(&c)));
    let lang = doc
        .select("html[lang]")
        .attr("lang")
        .and_then(|l| non_empty(collapse(&l)));
    let canonical_url = doc
        .select("link[href]")
        .iter()
        .find(|l| {
            l.attr("rel").is_some_and(|rel| {
                rel.split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("canonical"))
            })
        })
        .and_then(|l| l.attr("href"))
        .and_then(|href| base.join(href.trim()).ok())
        .map(String::from);

    let headings = doc
        .select("h1, h2, h3, h4, h5, h6")
        .iter()
        .filter_map(|h| {
            let name = h.nodes().first()?.node_name()?;
            let level = name.strip_prefix('h')?.parse().ok()?;
            let text = non_empty(collapse(&h.text()))?;
            Some(Heading { level, text })
        })
        .collect();

    let links = doc
        .select("a[href]")
        .iter()
        .filter_map(|a| {
            let href = a.attr("href")?;
            let href = base.join(href.trim()).ok()?;
            // Script and inline-data "links" are not places a reader can go.
            if matches!(href.scheme(), "javascript" | "data") {
                return None;
            }
            Some(Link {
                href: href.into(),
                text: collapse(&a.text()),
            })
        })
        .collect();

    let mut open_graph = BTreeMap::new();
    for meta in doc.select("meta[property][content]").iter() {
        let (Some(property), Some(content)) = (meta.attr("property"), meta.attr("content")) else {
            continue;
        };
        let property = property.trim().to_ascii_lowercase();
        if let Some(key) = property.strip_prefix("og:").filter(|k| !k.is_empty()) {
            open_graph
                .entry(key.to_owned())
                .or_insert_with(|| collapse(&content));
        }
    }

    Ok(Metadata {
        url: page.into(),
        title,
        description,
        lang,
        canonical_url,
        headings,
        links,
        open_graph,
    })
}

/// Collapses runs of whitespace to one space and trims.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "capability" });

    use d402::capability::host::{self, HostError, SnapshotRequest};
    use d402::capability::types::Failure;

    use crate::{Input, MetadataError, extract};

    struct ExtractMetadata;

    impl Guest for ExtractMetadata {
        fn run(input: String) -> Result<String, CapabilityError> {
            let input =
                Input::parse(&input).map_err(|e| CapabilityError::InvalidInput(e.to_string()))?;
            let frozen = host::snapshot(&SnapshotRequest {
                url: input.url,
                timeout_ms: input.timeout_ms,
            })
            .map_err(|e| match e {
                HostError::Unavailable(m) => CapabilityError::Upstream(format!("unavailable: {m}")),
                HostError::Timeout(m) => CapabilityError::Upstream(format!("timeout: {m}")),
            })?;
            extract(&frozen.html, &frozen.final_url)
                .map(|meta| meta.to_json())
                .map_err(|e| match e {
                    MetadataError::InvalidInput(m) => CapabilityError::InvalidInput(m),
                    e @ MetadataError::BadPageUrl(_) => CapabilityError::Failed(Failure {
                        code: "bad-page-url".to_owned(),
                        message: e.to_string(),
                    }),
                })
        }
    }

    export!(ExtractMetadata);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html>
<html lang=" en-GB ">
<head>
  <title>
    A   page
    about things
  </title>
  <meta name="Description" content="  What   this page is about. ">
  <meta property="og:title" content="OG  title">
  <meta property="og:image" content="https://cdn.example.org/a.png">
  <meta property="og:image" content="https://cdn.example.org/second.png">
  <meta property="article:author" content="not og">
  <link rel="alternate stylesheet" href="/alt.css">
  <link rel="Canonical" href="/things?id=1">
</head>
<body>
  <h1>Things</h1>
  <p>Intro <a href="sub/page.html">a   relative
     link</a> and <a href="https://other.org/x#frag">absolute</a>.</p>
  <h3>  Deeper
  heading </h3>
  <h2>Second</h2>
  <h2>   </h2>
  <a href="javascript:alert(1)">js</a>
  <a href="//proto.example.net/p">protocol-relative</a>
  <a href="?q=1">query</a>
  <a>no href</a>
</body>
</html>"#;

    fn meta() -> Metadata {
        extract(PAGE, "https://example.org/dir/index.html").expect("extracts")
    }

    #[test]
    fn scalar_fields_are_collapsed() {
        let m = meta();
        assert_eq!(m.url, "https://example.org/dir/index.html");
        assert_eq!(m.title.as_deref(), Some("A page about things"));
        assert_eq!(m.description.as_deref(), Some("What this page is about."));
        assert_eq!(m.lang.as_deref(), Some("en-GB"));
        assert_eq!(
            m.canonical_url.as_deref(),
            Some("https://example.org/things?id=1")
        );
    }

    #[test]
    fn headings_in_document_order() {
        let levels: Vec<(u8, &str)> = vec![(1, "Things"), (3, "Deeper heading"), (2, "Second")];
        let m = meta();
        let got: Vec<(u8, &str)> = m
            .headings
            .iter()
            .map(|h| (h.level, h.text.as_str()))
            .collect();
        assert_eq!(got, levels);
    }

    #[test]
    fn links_are_absolute() {
        let m = meta();
        let got: Vec<(&str, &str)> = m
            .links
            .iter()
            .map(|l| (l.href.as_str(), l.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("https://example.org/dir/sub/page.html", "a relative link"),
                ("https://other.org/x#frag", "absolute"),
                ("https://proto.example.net/p", "protocol-relative"),
                ("https://example.org/dir/index.html?q=1", "query"),
            ]
        );
    }

    #[test]
    fn base_href_is_respected() {
        let html = r#"<head><base href="/base/"></head><body><a href="x">x</a></body>"#;
        let m = extract(html, "https://example.org/dir/page").expect("extracts");
        assert_eq!(m.links[0].href, "https://example.org/base/x");
    }

    #[test]
    fn open_graph_first_value_wins_sorted_keys() {
        let m = meta();
        assert_eq!(m.open_graph.len(), 2);
        assert_eq!(m.open_graph["title"], "OG title");
        assert_eq!(m.open_graph["image"], "https://cdn.example.org/a.png");
        let json = m.to_json();
        assert!(json.contains(r#""openGraph":{"image":"#), "{json}");
        assert!(json.contains(r#""canonicalUrl":"#), "{json}");
    }

    #[test]
    fn empty_page_has_nulls_and_empty_lists() {
        let m = extract("", "https://example.org/").expect("extracts");
        assert_eq!(m.title, None);
        assert_eq!(m.description, None);
        assert_eq!(m.lang, None);
        assert_eq!(m.canonical_url, None);
        assert!(m.headings.is_empty() && m.links.is_empty() && m.open_graph.is_empty());
        assert_eq!(
            m.to_json(),
            r#"{"url":"https://example.org/","title":null,"description":null,"lang":null,"canonicalUrl":null,"headings":[],"links":[],"openGraph":{}}"#
        );
    }

    #[test]
    fn deterministic() {
        assert_eq!(meta().to_json(), meta().to_json());
    }

    #[test]
    fn bad_inputs() {
        assert!(Input::parse(r#"{"url":"https://example.org/"}"#).is_ok());
        assert!(Input::parse(r#"{"url":"/relative"}"#).is_err());
        assert!(Input::parse(r#"{"url":"ftp://example.org/"}"#).is_err());
        assert!(Input::parse(r#"{}"#).is_err());
        assert!(Input::parse("[]").is_err());
        assert_eq!(
            extract("", "not a url"),
            Err(MetadataError::BadPageUrl("not a url".to_owned()))
        );
    }
}
