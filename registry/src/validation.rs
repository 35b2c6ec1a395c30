//! How a capability's results are checked (seed 000's validation classes): its own file, because
//! the manifest carries it and the manifest schema ([`crate::schema`]) enumerates it.

use d402_core::Canonicalizer;
use serde::{Deserialize, Serialize};

/// How results are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Validation {
    pub class: ValidationClass,
    /// Required for `canonicalizable`; optional for `exact` (defaults to `jcs`); not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonicalizer: Option<Canonicalizer>,
    /// The comparator capability (`ID@VERSION`): required for `scoreable`, not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<String>,
    /// Default number of agreeing workers, at least 1.
    pub quorum: u32,
}

/// The validation classes of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationClass {
    Exact,
    Canonicalizable,
    Scoreable,
    NonVerifiable,
}

impl ValidationClass {
    pub const ALL: [&'static str; 4] = ["exact", "canonicalizable", "scoreable", "non-verifiable"];
}
