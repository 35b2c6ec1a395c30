//! Reading untrusted JSON documents: size first, then syntax, then typed fields with their paths.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{DocumentError, FieldError, FieldErrors};

/// The largest manifest or registration accepted, checked before any parsing.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Parses `bytes` as JSON after checking its size.
pub(crate) fn read_json(bytes: &[u8], what: &'static str) -> Result<Value, DocumentError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            what,
            size: bytes.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| DocumentError::NotJson {
        what,
        message: e.to_string(),
    })
}

/// Turns a JSON value into `T`, naming the field of the first type error.
pub(crate) fn typed<T: DeserializeOwned>(
    value: Value,
    what: &'static str,
) -> Result<T, DocumentError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = pointer_of(e.path());
        let message = e.inner().to_string();
        // Missing and unknown fields are reported at their parent; name the field itself.
        for prefix in ["missing field `", "unknown field `"] {
            if let Some(rest) = message.strip_prefix(prefix)
                && let Some((field, _)) = rest.split_once('`')
            {
                path.push('/');
                path.push_str(&escape(field));
            }
        }
        DocumentError::Invalid {
            what,
            errors: FieldErrors(vec![FieldError::new(path, message)]),
        }
    })
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&escape(key));
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(&escape(variant));
            }
            Segment::Unknown => out.push_str("/?"),
        }
    }
    out
}

/// JSON-pointer escaping of one reference token (RFC 6901).
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Collects field errors and turns them into a result.
#[derive(Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    pub(crate) fn into_result(self, what: &'static str) -> Result<(), DocumentError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DocumentError::Invalid {
                what,
                errors: FieldErrors(self.0),
            })
        }
    }
}

/// A dotted lowercase name: `web.page_to_markdown` (at least `min_segments` segments).
pub(crate) fn check_dotted_name(name: &str, min_segments: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 128 {
        return Err(format!("is {} characters, more than 128", name.len()));
    }
    let segments: Vec<&str> = name.split('.').collect();
    for segment in &segments {
        let mut chars = segment.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(format!(
                "{name:?} is not a dotted name: each segment starts with a-z and holds only a-z, 0-9 and _"
            ));
        }
    }
    if segments.len() < min_segments {
        return Err(format!(
            "{name:?} needs at least {min_segments} dot-separated segments (namespace.name)"
        ));
    }
    Ok(())
}

/// A capability reference: `web.page_to_markdown@1`.
pub(crate) fn check_capability_ref(reference: &str) -> Result<(), String> {
    let (id, version) = reference
        .split_once('@')
        .ok_or_else(|| format!("{reference:?} is not a capability reference ID@VERSION"))?;
    check_dotted_name(id, 2)?;
    match version.parse::<u32>() {
        Ok(v) if v >= 1 && !version.starts_with('0') && !version.starts_with('+') => Ok(()),
        _ => Err(format!(
            "version {version:?} in {reference:?} is not a positive integer"
        )),
    }
}

/// Whether `b` is a lowercase hex digit (signatures and key ids are written in lowercase hex).
pub(crate) fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}
