//! Canonicalizers: how two workers' outputs are put in a form that compares by hash.
//!
//! An *exact* capability's output is compared in its RFC 8785 form. A *canonicalizable* one (Markdown
//! from frozen HTML, normalised JSON extraction) may differ in presentation that carries no meaning
//! (line endings, trailing spaces, runs of blank lines), so every string in the output is normalised
//! before the JSON is put in RFC 8785 form and hashed.

use serde::{Deserialize, Serialize};

use crate::content_id::{ContentId, canonical_json};

/// The canonicalizer a manifest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Canonicalizer {
    /// RFC 8785 JSON, nothing else.
    #[default]
    Jcs,
    /// Every string normalised (line endings to `\n`, trailing whitespace stripped per line, runs of
    /// blank lines collapsed to one, leading and trailing whitespace trimmed), then RFC 8785.
    NormalizedText,
}

impl std::str::FromStr for Canonicalizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jcs" => Ok(Self::Jcs),
            "normalized-text" => Ok(Self::NormalizedText),
            other => Err(format!(
                "unknown canonicalizer {other:?} (expected `jcs` or `normalized-text`)"
            )),
        }
    }
}

impl std::fmt::Display for Canonicalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jcs => "jcs",
            Self::NormalizedText => "normalized-text",
        })
    }
}

/// Output that is not JSON cannot be canonicalised.
#[derive(Debug, thiserror::Error)]
#[error("output is not canonicalisable JSON: {0}")]
pub struct CanonicalError(pub String);

impl Canonicalizer {
    /// The canonical bytes of a JSON output.
    pub fn canonical_bytes(&self, output: &serde_json::Value) -> Result<Vec<u8>, CanonicalError> {
        let bytes = match self {
            Self::Jcs => canonical_json(output),
            Self::NormalizedText => {
                let mut value = output.clone();
                normalize_strings(&mut value);
                canonical_json(&value)
            }
        };
        bytes.map_err(|e| CanonicalError(e.to_string()))
    }

    /// The CID of the canonical bytes: what quorum compares.
    pub fn canonical_hash(&self, output: &serde_json::Value) -> Result<ContentId, CanonicalError> {
        Ok(ContentId::of(&self.canonical_bytes(output)?))
    }
}

fn normalize_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = normalize_text(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalize_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(normalize_strings),
        _ => {}
    }
}

/// Line endings to `\n`, trailing whitespace stripped, blank-line runs collapsed, ends trimmed.
pub fn normalize_text(text: &str) -> String {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len());
    let mut blank_run = 0usize;
    for line in unified.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalized_text_ignores_presentation_only() {
        let a = json!({"markdown": "# T\r\n\r\n\r\nbody  \r\n", "n": 1});
        let b = json!({"n": 1, "markdown": "  \n# T\n\nbody"});
        let c = json!({"n": 1, "markdown": "# T\n\nbody changed"});
        let canon = Canonicalizer::NormalizedText;
        assert_eq!(
            canon.canonical_hash(&a).unwrap(),
            canon.canonical_hash(&b).unwrap()
        );
        assert_ne!(
            canon.canonical_hash(&a).unwrap(),
            canon.canonical_hash(&c).unwrap()
        );
        // JCS alone keeps the difference.
        assert_ne!(
            Canonicalizer::Jcs.canonical_hash(&a).unwrap(),
            Canonicalizer::Jcs.canonical_hash(&b).unwrap()
        );
    }

    #[test]
    fn normalize_text_cases() {
        assert_eq!(normalize_text("a\r\nb"), "a\nb");
        assert_eq!(normalize_text("a\n\n\n\nb"), "a\n\nb");
        assert_eq!(normalize_text("  a \n"), "  a");
        assert_eq!(normalize_text(""), "");
        assert_eq!(normalize_text("\n\n"), "");
    }
}
