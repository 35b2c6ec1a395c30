//! The manifest's JSON Schema. The same value is published as the committed file
//! `registry/manifest.schema.json` (a test keeps the two equal; run the tests with
//! `D402_BLESS_SCHEMA=1` to rewrite the file after changing this one) and used at runtime by
//! [`crate::Manifest::from_json`], so the schema an author checks against is the one d402 enforces.
//!
//! The schema covers shapes and ranges; rules that span fields (a canonicalizable class needs a
//! canonicalizer, and so on) are checked by [`crate::Manifest::validate`].

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::document::escape;
use crate::error::{DocumentError, FieldError, FieldErrors};
use crate::validation::ValidationClass;

/// The WIT world every d402 capability targets.
pub const WORLD: &str = "d402:capability/capability@1.0.0";

/// The published file, relative to the registry crate.
pub const SCHEMA_FILE: &str = "manifest.schema.json";

const DOTTED: &str = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$";
const CAPABILITY_REF: &str = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+@[1-9][0-9]*$";

/// The largest integer a JSON number holds exactly (2^53 - 1): RFC 8785 writes numbers as IEEE
/// doubles, so a larger one would not survive canonicalisation unchanged.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn positive_u64(description: &str) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INTEGER, "description": description})
}

/// The manifest's JSON Schema (draft 2020-12).
pub fn manifest_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:d402:schema:capability-manifest:1",
        "title": "d402 capability manifest",
        "description": "What a capability is, how its results are checked, what it may use and which exact component implements it. The manifest CID is the CID (CIDv1, raw, BLAKE3) of its RFC 8785 canonical JSON.",
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "version", "description", "inputSchema", "outputSchema", "validation", "limits", "permissions", "implementation", "pricing"],
        "properties": {
            "id": {"type": "string", "pattern": DOTTED, "maxLength": 128, "description": "Dotted lowercase name; the first segment is the namespace."},
            "version": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "description": "Positive integer: ID@VERSION names the capability."},
            "description": {"type": "string", "minLength": 1},
            "inputSchema": {"type": ["object", "boolean"], "description": "JSON Schema of the task input."},
            "outputSchema": {"type": ["object", "boolean"], "description": "JSON Schema of the output."},
            "validation": {
                "type": "object",
                "additionalProperties": false,
                "required": ["class", "quorum"],
                "properties": {
                    "class": {"enum": ValidationClass::ALL},
                    "canonicalizer": {"enum": ["jcs", "normalized-text"], "description": "Required for canonicalizable; optional for exact."},
                    "comparator": {"type": "string", "pattern": CAPABILITY_REF, "description": "Comparator capability ID@VERSION; required for scoreable."},
                    "threshold": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "description": "Scoreable: the comparator score, in millionths, at which two outputs agree; required for scoreable."},
                    "quorum": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "description": "Default number of agreeing workers."}
                }
            },
            "limits": {
                "type": "object",
                "additionalProperties": false,
                "required": ["fuel", "memoryBytes", "wallTimeMs", "outputBytes"],
                "properties": {
                    "fuel": positive_u64("Deterministic instruction budget."),
                    "memoryBytes": positive_u64("Linear memory limit."),
                    "wallTimeMs": positive_u64("Wall-time limit in milliseconds."),
                    "outputBytes": positive_u64("Output size limit.")
                }
            },
            "permissions": {
                "type": "object",
                "additionalProperties": false,
                "required": ["egressHosts", "snapshot"],
                "properties": {
                    "egressHosts": {"type": "array", "items": {"type": "string"}, "description": "Hosts fetch may reach: api.example.com or *.example.com."},
                    "snapshot": {"type": "boolean"}
                }
            },
            "implementation": {
                "type": "object",
                "additionalProperties": false,
                "required": ["cid", "world"],
                "properties": {
                    "cid": {"type": "string", "pattern": "^b[a-z2-7]+$", "description": "CIDv1 (raw, BLAKE3) of the component's bytes."},
                    "world": {"const": WORLD}
                }
            },
            "pricing": {
                "type": "object",
                "additionalProperties": false,
                "required": ["unit"],
                "properties": {
                    "unit": {"enum": ["task", "input-kib", "million-fuel"]}
                }
            }
        }
    })
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(&manifest_schema()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks a parsed manifest against the schema; every error names the field (instance path).
pub(crate) fn check_manifest(value: &Value) -> Result<(), DocumentError> {
    let validator = validator().map_err(|e| DocumentError::Invalid {
        what: "manifest",
        errors: FieldErrors(vec![FieldError::new("", format!("manifest schema: {e}"))]),
    })?;
    let mut errors: Vec<FieldError> = validator
        .iter_errors(value)
        .take(20)
        .flat_map(|e| {
            let path = e.instance_path().as_str().to_string();
            let message = shorten(&e.to_string());
            // Missing and unexpected properties are reported at their object; name them.
            match e.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    vec![FieldError::new(
                        format!("{path}/{}", escape(name)),
                        "is required",
                    )]
                }
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    unexpected
                        .iter()
                        .map(|name| {
                            FieldError::new(
                                format!("{path}/{}", escape(name)),
                                "is not a field of this object",
                            )
                        })
                        .collect()
                }
                _ => vec![FieldError::new(path, message)],
            }
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    errors.dedup();
    Err(DocumentError::Invalid {
        what: "manifest",
        errors: FieldErrors(errors),
    })
}

/// Schema messages quote the offending value; a huge value would make a huge message.
fn shorten(message: &str) -> String {
    const MAX: usize = 300;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Checks that `schema` is itself a usable JSON Schema (valid against its meta-schema, and
/// compilable without fetching anything).
pub(crate) fn check_json_schema(schema: &Value) -> Result<(), String> {
    jsonschema::meta::validate(schema)
        .map_err(|e| format!("not a valid JSON Schema: {}", shorten(&e.to_string())))?;
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| format!("not a usable JSON Schema: {}", shorten(&e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schema_file_is_the_one_in_use() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
        let expected = serde_json::to_string_pretty(&manifest_schema()).unwrap() + "\n";
        if std::env::var_os("D402_BLESS_SCHEMA").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            committed, expected,
            "{SCHEMA_FILE} is stale: rerun with D402_BLESS_SCHEMA=1"
        );
    }

    #[test]
    fn schema_is_a_valid_schema_and_accepts_the_template() {
        check_json_schema(&manifest_schema()).unwrap();
        let template = serde_json::to_value(crate::template("web.x", 1, None).unwrap()).unwrap();
        check_manifest(&template).unwrap();
    }
}
