//! The capability manifest: what a capability is, how its results are checked, what it may use and
//! which exact bytes implement it. Its CID is the CID of its RFC 8785 canonical JSON.
//!
//! Reading a manifest ([`Manifest::from_json`]) goes through four gates, each naming the field at
//! fault: a size cap (before parsing), JSON syntax, the published JSON Schema
//! ([`crate::schema`]), then semantic checks that a schema cannot express (a canonicalizable class
//! needs a canonicalizer, the input schema must itself be a valid JSON Schema, and so on).

use std::time::Duration;

use d402_core::content_id::{CanonicalJsonError, cid_of_json};
use d402_core::{Canonicalizer, CapabilityRef, ContentId, EgressPolicy, Limits};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::{self, Problems, check_capability_ref, check_dotted_name};
use crate::error::DocumentError;

pub use crate::schema::WORLD;
pub use crate::validation::{Validation, ValidationClass};

const WHAT: &str = "manifest";

/// A capability manifest. Field names in JSON are camelCase; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Dotted lowercase name; the first segment is the namespace (`web.page_to_markdown`).
    pub id: String,
    /// A positive integer: `web.page_to_markdown@1` is version 1.
    pub version: u32,
    pub description: String,
    /// JSON Schema of the task input.
    pub input_schema: Value,
    /// JSON Schema of the output.
    pub output_schema: Value,
    pub validation: Validation,
    pub limits: ManifestLimits,
    pub permissions: Permissions,
    pub implementation: Implementation,
    pub pricing: Pricing,
}

/// What one task may consume; mapped onto [`d402_core::Limits`] and capped by node policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestLimits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub wall_time_ms: u64,
    pub output_bytes: u64,
}

/// What the capability may reach; mapped onto [`d402_core::EgressPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permissions {
    /// Hosts `fetch` may reach: `api.example.com` or `*.example.com`.
    pub egress_hosts: Vec<String>,
    /// Whether `snapshot` may be used.
    pub snapshot: bool,
}

/// The exact component that implements the capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Implementation {
    /// CID of the component's bytes.
    pub cid: ContentId,
    /// Must be [`WORLD`].
    pub world: String,
}

/// How the capability is priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    pub unit: PricingUnit,
}

/// What one unit of price buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PricingUnit {
    /// One task.
    Task,
    /// One KiB of task input.
    InputKib,
    /// One million units of fuel used.
    MillionFuel,
}

impl Manifest {
    /// Reads and fully validates a manifest (size, JSON, schema, semantics).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DocumentError> {
        let value = document::read_json(bytes, WHAT)?;
        crate::schema::check_manifest(&value)?;
        let manifest: Manifest = document::typed(value, WHAT)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The semantic checks a JSON Schema cannot express. Every error names its field.
    pub fn validate(&self) -> Result<(), DocumentError> {
        let mut p = Problems::default();
        if let Err(e) = check_dotted_name(&self.id, 2) {
            p.add("/id", e);
        }
        if self.version == 0 {
            p.add("/version", "must be a positive integer");
        }
        if self.description.trim().is_empty() {
            p.add("/description", "must not be empty");
        }
        for (path, schema) in [
            ("/inputSchema", &self.input_schema),
            ("/outputSchema", &self.output_schema),
        ] {
            if let Err(e) = crate::schema::check_json_schema(schema) {
                p.add(path, e);
            }
        }
        self.validation.check(&mut p);
        for (field, value) in [
            ("fuel", self.limits.fuel),
            ("memoryBytes", self.limits.memory_bytes),
            ("wallTimeMs", self.limits.wall_time_ms),
            ("outputBytes", self.limits.output_bytes),
        ] {
            if value == 0 || value > crate::schema::MAX_SAFE_INTEGER {
                p.add(
                    format!("/limits/{field}"),
                    "must be between 1 and 2^53-1 (the largest integer JSON holds exactly)",
                );
            }
        }
        for (i, host) in self.permissions.egress_hosts.iter().enumerate() {
            if let Err(e) = check_host_pattern(host) {
                p.add(format!("/permissions/egressHosts/{i}"), e);
            }
        }
        if self.implementation.world != WORLD {
            p.add(
                "/implementation/world",
                format!(
                    "is {:?}; d402 capabilities target {WORLD:?}",
                    self.implementation.world
                ),
            );
        }
        p.into_result(WHAT)
    }

    /// The RFC 8785 bytes of the manifest and their CID: the manifest CID.
    pub fn canonical(&self) -> Result<(ContentId, Vec<u8>), CanonicalJsonError> {
        cid_of_json(self)
    }

    /// The manifest CID.
    pub fn cid(&self) -> Result<ContentId, CanonicalJsonError> {
        Ok(self.canonical()?.0)
    }

    /// The namespace: the first segment of the id.
    pub fn namespace(&self) -> &str {
        self.id.split('.').next().unwrap_or_default()
    }

    /// `ID@VERSION`, as receipts and offers name capabilities.
    pub fn capability_ref(&self) -> CapabilityRef {
        CapabilityRef {
            id: self.id.clone(),
            version: self.version.to_string(),
        }
    }
}

impl Validation {
    fn check(&self, p: &mut Problems) {
        use ValidationClass::*;
        if self.quorum == 0 {
            p.add("/validation/quorum", "must be at least 1");
        }
        match (self.class, &self.canonicalizer) {
            (Canonicalizable, None) => p.add(
                "/validation/canonicalizer",
                "is required for class canonicalizable (`jcs` or `normalized-text`)",
            ),
            (Scoreable | NonVerifiable, Some(_)) => p.add(
                "/validation/canonicalizer",
                "is only allowed for classes exact and canonicalizable",
            ),
            _ => {}
        }
        match (self.class, &self.comparator) {
            (Scoreable, None) => p.add(
                "/validation/comparator",
                "is required for class scoreable (a comparator capability ID@VERSION)",
            ),
            (Scoreable, Some(c)) => {
                if let Err(e) = check_capability_ref(c) {
                    p.add("/validation/comparator", e);
                }
            }
            (_, Some(_)) => p.add(
                "/validation/comparator",
                "is only allowed for class scoreable",
            ),
            (_, None) => {}
        }
        match (self.class, self.threshold) {
            (Scoreable, None) => p.add(
                "/validation/threshold",
                "is required for class scoreable (the agreeing score, 0 to 1000000)",
            ),
            (Scoreable, Some(t)) if t > crate::validation::SCORE_MAX => p.add(
                "/validation/threshold",
                "must be at most 1000000 (a score in millionths)",
            ),
            (Scoreable, Some(_)) | (_, None) => {}
            (_, Some(_)) => p.add(
                "/validation/threshold",
                "is only allowed for class scoreable",
            ),
        }
    }

    /// The canonicalizer outputs are compared with (`jcs` unless the manifest names another).
    pub fn effective_canonicalizer(&self) -> Canonicalizer {
        self.canonicalizer.unwrap_or_default()
    }
}

impl From<ManifestLimits> for Limits {
    /// The manifest's limits; the rest are the host defaults. Cap by node policy with
    /// [`Limits::capped_by`].
    fn from(l: ManifestLimits) -> Limits {
        Limits {
            fuel: l.fuel,
            memory_bytes: l.memory_bytes,
            wall_time: Duration::from_millis(l.wall_time_ms),
            output_bytes: l.output_bytes,
            ..Limits::default()
        }
    }
}

impl Permissions {
    /// The egress policy these permissions grant; budgets and private targets keep the host
    /// defaults (private targets off).
    pub fn egress_policy(&self) -> EgressPolicy {
        EgressPolicy {
            allowed_hosts: self.egress_hosts.clone(),
            allow_snapshot: self.snapshot,
            ..EgressPolicy::default()
        }
    }
}

/// `api.example.com` or `*.example.com`: lowercase DNS labels, no scheme, port or path.
fn check_host_pattern(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if labels_ok {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a lowercase host name or `*.`-prefixed domain (no scheme, port or path)"
        ))
    }
}

/// A valid starter manifest for `id` at `version`. Its implementation CID is `implementation` if
/// given, otherwise the CID of zero bytes (a placeholder to replace with the component's CID).
pub fn template(
    id: &str,
    version: u32,
    implementation: Option<ContentId>,
) -> Result<Manifest, DocumentError> {
    let limits = Limits::default();
    let manifest = Manifest {
        id: id.to_string(),
        version,
        description: format!("{id}: describe what this capability does"),
        input_schema: serde_json::json!({
            "type": "object",
            "properties": {"url": {"type": "string"}},
            "required": ["url"],
        }),
        output_schema: serde_json::json!({"type": "object"}),
        validation: Validation {
            class: ValidationClass::Canonicalizable,
            canonicalizer: Some(Canonicalizer::Jcs),
            comparator: None,
            threshold: None,
            quorum: 2,
        },
        limits: ManifestLimits {
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes,
            wall_time_ms: limits.wall_time.as_millis().try_into().unwrap_or(u64::MAX),
            output_bytes: limits.output_bytes,
        },
        permissions: Permissions {
            egress_hosts: Vec::new(),
            snapshot: false,
        },
        implementation: Implementation {
            cid: implementation.unwrap_or_else(|| ContentId::of(b"")),
            world: WORLD.to_string(),
        },
        pricing: Pricing {
            unit: PricingUnit::Task,
        },
    };
    manifest.validate()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_json() -> Value {
        serde_json::to_value(template("example.extract_product", 1, None).unwrap()).unwrap()
    }

    fn errors_of(value: &Value) -> DocumentError {
        Manifest::from_json(&serde_json::to_vec(value).unwrap()).unwrap_err()
    }

    fn assert_path(value: &Value, path: &str) {
        let err = errors_of(value);
        let errors = err
            .field_errors()
            .unwrap_or_else(|| panic!("expected field errors, got {err}"));
        assert!(errors.mentions(path), "expected {path} in: {err}");
    }

    #[test]
    fn template_is_valid_and_round_trips() {
        let text = serde_json::to_vec(&template_json()).unwrap();
        let manifest = Manifest::from_json(&text).unwrap();
        assert_eq!(manifest.namespace(), "example");
        assert_eq!(manifest.capability_ref().version, "1");
        assert_eq!(
            manifest.cid().unwrap(),
            template("example.extract_product", 1, None)
                .unwrap()
                .cid()
                .unwrap()
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/id", Value::from("Example.X"), "id"),
            ("/id", Value::from("single"), "id"),
            ("/version", Value::from(0), "version"),
            ("/version", Value::from("1"), "version"),
            (
                "/validation/class",
                Value::from("magic"),
                "validation.class",
            ),
            ("/limits/fuel", Value::from(-1), "limits.fuel"),
            ("/limits/fuel", Value::from("lots"), "limits.fuel"),
            ("/limits/memoryBytes", Value::from(0), "limits.memoryBytes"),
            (
                "/permissions/egressHosts/0",
                serde_json::json!(["https://x.com"]),
                "permissions.egressHosts",
            ),
            (
                "/implementation/cid",
                Value::from("not-a-cid"),
                "implementation.cid",
            ),
            (
                "/implementation/world",
                Value::from("other:world/w@1.0.0"),
                "implementation.world",
            ),
            (
                "/inputSchema",
                serde_json::json!({"type": 12}),
                "inputSchema",
            ),
            ("/pricing/unit", Value::from("per-vibe"), "pricing.unit"),
        ];
        for (path, bad, field) in cases {
            let mut value = template_json();
            let mut target = &mut value;
            for key in field.split('.') {
                target = &mut target[key];
            }
            *target = bad;
            assert_path(&value, path);
        }
    }

    #[test]
    fn class_rules_are_checked() {
        let mut v = template_json();
        v["validation"] = serde_json::json!({"class": "canonicalizable", "quorum": 2});
        assert_path(&v, "/validation/canonicalizer");
        v["validation"] = serde_json::json!({"class": "scoreable", "quorum": 3});
        assert_path(&v, "/validation/comparator");
        v["validation"] =
            serde_json::json!({"class": "scoreable", "comparator": "web.judge", "quorum": 3});
        assert_path(&v, "/validation/comparator");
        v["validation"] =
            serde_json::json!({"class": "exact", "comparator": "web.judge@1", "quorum": 1});
        assert_path(&v, "/validation/comparator");
        v["validation"] = serde_json::json!({"class": "exact", "quorum": 0});
        assert_path(&v, "/validation/quorum");
        v["validation"] =
            serde_json::json!({"class": "scoreable", "comparator": "web.judge@1", "quorum": 3});
        assert_path(&v, "/validation/threshold");
        v["validation"] = serde_json::json!({"class": "scoreable", "comparator": "web.judge@1",
            "threshold": 1_000_001, "quorum": 3});
        assert_path(&v, "/validation/threshold");
        v["validation"] = serde_json::json!({"class": "exact", "threshold": 5, "quorum": 1});
        assert_path(&v, "/validation/threshold");
        v["validation"] = serde_json::json!({"class": "scoreable", "comparator": "web.judge@1",
            "threshold": 900_000, "quorum": 3});
        assert!(Manifest::from_json(&serde_json::to_vec(&v).unwrap()).is_ok());
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let mut v = template_json();
        v["surprise"] = Value::from(1);
        assert_path(&v, "/surprise");
        let mut v = template_json();
        v.as_object_mut().unwrap().remove("limits");
        assert_path(&v, "/limits");
    }

    #[test]
    fn malformed_documents_get_clear_errors() {
        let big = vec![b' '; 10 * 1024 * 1024];
        assert!(matches!(
            Manifest::from_json(&big),
            Err(DocumentError::TooLarge { .. })
        ));
        assert!(matches!(
            Manifest::from_json(b"{not json"),
            Err(DocumentError::NotJson { .. })
        ));
        assert!(matches!(
            Manifest::from_json(b"[1,2]"),
            Err(DocumentError::Invalid { .. })
        ));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Manifest::from_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn limits_and_permissions_map_onto_the_host() {
        let m = template("example.x", 1, None).unwrap();
        let limits: Limits = m.limits.into();
        assert_eq!(limits.fuel, m.limits.fuel);
        assert_eq!(
            limits.wall_time,
            Duration::from_millis(m.limits.wall_time_ms)
        );
        let policy = Permissions {
            egress_hosts: vec!["*.example.com".into()],
            snapshot: true,
        }
        .egress_policy();
        assert_eq!(policy.allowed_hosts, vec!["*.example.com".to_string()]);
        assert!(policy.allow_snapshot && !policy.allow_private_targets);
    }
}
