//! Main-content extraction. The default is `rs-trafilatura` (see EXTRACTOR.md for why); the
//! `readability-extractor` feature swaps in `dom_smoothie` (Readability.js port), which is about
//! three times faster but scores lower on the published benchmarks.

/// What the extractor found.
pub(crate) struct Extracted {
    pub title: Option<String>,
    /// The main content as an HTML fragment, when the extractor kept the markup.
    pub html: Option<String>,
    /// The main content as text, for extractions assembled without markup.
    pub text: String,
}

#[cfg(not(feature = "readability-extractor"))]
pub(crate) fn main_content(html: &str, url: &str) -> Option<Extracted> {
    let options = rs_trafilatura::Options {
        url: Some(url.to_owned()),
        include_tables: true,
        include_links: true,
        include_images: false,
        include_comments: false,
        include_formatting: true,
        ..rs_trafilatura::Options::default()
    };
    // A failed extraction is not an error of the page: the caller falls back to the whole body.
    let result = rs_trafilatura::extract_with_options(html, &options).ok()?;
    Some(Extracted {
        title: result.metadata.title,
        html: result.content_html,
        text: result.content_text,
    })
}

#[cfg(feature = "readability-extractor")]
pub(crate) fn main_content(html: &str, url: &str) -> Option<Extracted> {
    let mut readability = dom_smoothie::Readability::new(html, Some(url), None).ok()?;
    let article = readability.parse().ok()?;
    Some(Extracted {
        title: Some(article.title),
        html: Some(article.content.to_string()),
        text: article.text_content.to_string(),
    })
}
