//! The canonical form of the Markdown output, and its hash.

/// Normalises Markdown whitespace so that outputs from different workers compare by hash: line
/// endings become `\n`, trailing whitespace is stripped from each line, runs of blank lines collapse
/// to one, and the whole text is trimmed. Idempotent.
///
/// ```
/// use d402_cap_page_to_markdown::normalize_markdown;
/// assert_eq!(normalize_markdown("\r\n# A  \r\n\r\n\r\n\ntext \t\n\n"), "# A\n\ntext");
/// ```
pub fn normalize_markdown(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut pending_blank = false;
    // `lines` splits on `\n` and drops a trailing `\r`; lone `\r` line endings are split too.
    for line in markdown.lines().flat_map(|l| l.split('\r')) {
        let line = line.trim_end();
        if line.is_empty() {
            pending_blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if pending_blank {
                out.push('\n');
            }
        }
        pending_blank = false;
        out.push_str(line);
    }
    // Leading whitespace on the first line is part of the trim.
    match out.find(|c: char| !c.is_whitespace()) {
        Some(0) | None => out,
        Some(start) => out[start..].to_owned(),
    }
}

/// `"blake3:" + hex` of the Markdown, which must already be normalised.
///
/// ```
/// use d402_cap_page_to_markdown::content_hash;
/// assert_eq!(
///     content_hash(""),
///     "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
/// );
/// ```
pub fn content_hash(normalized_markdown: &str) -> String {
    format!(
        "blake3:{}",
        blake3::hash(normalized_markdown.as_bytes()).to_hex()
    )
}
