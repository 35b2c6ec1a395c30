//! `web.page_to_markdown@1`: the main content of a frozen page as normalised Markdown.
//!
//! The logic is plain Rust that compiles natively too, so the host's benchmarks can run exactly the
//! code the component runs and compare the two. Only [`component`] (wasm32 only) talks to the host.
//!
//! ```
//! let html = "<html><head><title>Hello</title></head><body><article><h1>Hello</h1>\
//!             <p>Some words that make up an article body.</p></article></body></html>";
//! let page = d402_cap_page_to_markdown::convert(html, "https://example.org/hello").unwrap();
//! assert!(page.markdown.contains("Some words"));
//! assert!(page.content_hash.starts_with("blake3:"));
//! ```

mod blocked;
mod extract;
mod normalize;

pub use blocked::{Interstitial, detect_interstitial};
pub use normalize::{content_hash, normalize_markdown};
use serde::{Deserialize, Serialize};

/// The capability id and version this crate implements.
pub const CAPABILITY_ID: &str = "web.page_to_markdown@1";

/// Tags whose content is never part of the Markdown: code, styling, embedded documents and chrome.
const SKIPPED_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "canvas",
    "head", "form", "button", "input", "select", "textarea", "nav",
];

/// Pages whose extracted main content has fewer words than this and that carry a captcha widget are
/// treated as interstitials: a real article with a comment form keeps its text, a captcha wall does not.
const CAPTCHA_WALL_MAX_WORDS: usize = 80;

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
    pub fn parse(json: &str) -> Result<Self, InputError> {
        let input: Input = serde_json::from_str(json).map_err(|e| InputError(e.to_string()))?;
        let scheme_ok = input.url.starts_with("http://") || input.url.starts_with("https://");
        if !scheme_ok {
            return Err(InputError(format!(
                "url must be an http or https URL, got {:?}",
                input.url
            )));
        }
        Ok(input)
    }
}

/// The task output, as JSON: `{"title", "markdown", "contentHash", "evidence"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub title: String,
    pub markdown: String,
    pub content_hash: String,
    /// CIDs of the snapshots the output was made from.
    pub evidence: Vec<String>,
}

impl Output {
    /// The output for `page`, made from the snapshot named `snapshot_cid`.
    pub fn new(page: Page, snapshot_cid: String) -> Self {
        Output {
            title: page.title,
            markdown: page.markdown,
            content_hash: page.content_hash,
            evidence: vec![snapshot_cid],
        }
    }

    /// The output as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The input did not match `{"url": string, "timeoutMs"?: number}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {0}")]
pub struct InputError(pub String);

/// Why a page could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The page is a bot check or captcha wall, not content.
    #[error("blocked page: {0}")]
    Blocked(Interstitial),
    /// The HTML could not be turned into Markdown.
    #[error("conversion failed: {0}")]
    Conversion(String),
}

/// A converted page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub title: String,
    /// Already normalised with [`normalize_markdown`].
    pub markdown: String,
    /// `"blake3:" + hex` of `markdown`.
    pub content_hash: String,
    /// Where the Markdown came from.
    pub source: ContentSource,
}

/// Which part of the page the Markdown was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentSource {
    /// The main content the extractor chose, as HTML.
    Extracted,
    /// Text the extractor assembled without HTML (structured data, repeated items).
    ExtractedText,
    /// The extractor found no main content: the whole `<body>`.
    Body,
}

/// Converts a frozen page to normalised Markdown: rejects interstitials, extracts the main content
/// (falling back to the whole body), converts it with `htmd` and normalises the result.
pub fn convert(html: &str, url: &str) -> Result<Page, ConvertError> {
    let suspicion = detect_interstitial(html);
    if let Some(found) = suspicion.filter(|i| i.is_conclusive()) {
        return Err(ConvertError::Blocked(found));
    }

    let extracted = extract::main_content(html, url);
    let title = extracted
        .as_ref()
        .and_then(|e| e.title.as_deref())
        .map(collapse_whitespace)
        .unwrap_or_default();

    let (raw_markdown, source) = match extracted {
        Some(e) if e.html.as_deref().is_some_and(has_text) => (
            to_markdown(e.html.as_deref().unwrap_or_default())?,
            ContentSource::Extracted,
        ),
        Some(e) if has_text(&e.text) => (e.text, ContentSource::ExtractedText),
        _ => (to_markdown(html)?, ContentSource::Body),
    };

    let markdown = normalize_markdown(&raw_markdown);
    if let Some(found) = suspicion
        && markdown.split_whitespace().count() < CAPTCHA_WALL_MAX_WORDS
    {
        return Err(ConvertError::Blocked(found));
    }
    let content_hash = content_hash(&markdown);
    Ok(Page {
        title,
        markdown,
        content_hash,
        source,
    })
}

/// HTML (a document or a fragment) to Markdown with `htmd`, skipping non-content tags.
pub fn to_markdown(html: &str) -> Result<String, ConvertError> {
    htmd::HtmlToMarkdown::builder()
        .skip_tags(SKIPPED_TAGS.to_vec())
        .build()
        .convert(html)
        .map_err(|e| ConvertError::Conversion(e.to_string()))
}

fn has_text(s: &str) -> bool {
    s.chars().any(|c| !c.is_whitespace())
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "capability" });

    use d402::capability::host::{self, HostError, LogLevel, SnapshotRequest};

    use crate::{ConvertError, Input, Output, convert};

    struct PageToMarkdown;

    impl Guest for PageToMarkdown {
        fn run(input: String) -> Result<String, CapabilityError> {
            let input = Input::parse(&input).map_err(|e| CapabilityError::InvalidInput(e.0))?;
            let frozen = host::snapshot(&SnapshotRequest {
                url: input.url.clone(),
                timeout_ms: input.timeout_ms,
            })
            .map_err(|e| match e {
                HostError::Unavailable(m) => CapabilityError::Upstream(format!("unavailable: {m}")),
                HostError::Timeout(m) => CapabilityError::Upstream(format!("timeout: {m}")),
            })?;
            let page = convert(&frozen.html, &frozen.final_url).map_err(|e| match e {
                ConvertError::Blocked(i) => CapabilityError::BlockedPage(i.to_string()),
                ConvertError::Conversion(m) => {
                    host::log(LogLevel::Warn, &m);
                    CapabilityError::Failed(d402::capability::types::Failure {
                        code: "conversion".to_owned(),
                        message: m,
                    })
                }
            })?;
            Ok(Output::new(page, frozen.cid).to_json())
        }
    }

    export!(PageToMarkdown);
}

#[cfg(test)]
mod tests;
