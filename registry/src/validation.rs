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
    /// For `scoreable`: the comparator score, in millionths (0 to 1,000,000), at which two
    /// outputs agree. Required for `scoreable`, not allowed otherwise. An integer, so that the
    /// manifest's canonical form and every node's comparison are exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
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

/// The largest comparator score (identical outputs): the comparator contract's.
pub use d402_comparator::SCORE_MAX;

impl ValidationClass {
    pub const ALL: [&'static str; 4] = ["exact", "canonicalizable", "scoreable", "non-verifiable"];
}

/// What a validated result promises the buyer, from strongest to weakest (seed 000: "lower
/// assurance claims" for what cannot be re-executed exactly). Carried by verdicts and by the
/// gateway's task results, so a buyer never has to infer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assurance {
    /// A validator re-executed the work from the frozen evidence and got the same output (or
    /// the same canonical output).
    Exact,
    /// Several workers agreed, but no validator re-executed the work.
    Quorum,
    /// Several workers' outputs were scored alike by a named comparator; the output is the one
    /// closest to the others, not a proven one.
    Scored,
    /// Only the worker's signature and standing stand behind it.
    Reputation,
}

impl Assurance {
    /// Its name on the wire (`exact`, `quorum`, `scored`, `reputation`).
    pub fn as_str(self) -> &'static str {
        match self {
            Assurance::Exact => "exact",
            Assurance::Quorum => "quorum",
            Assurance::Scored => "scored",
            Assurance::Reputation => "reputation",
        }
    }
}

impl ValidationClass {
    /// The assurance a validator's verdict gives for this class.
    pub fn verdict_assurance(self) -> Assurance {
        match self {
            ValidationClass::Exact | ValidationClass::Canonicalizable => Assurance::Exact,
            ValidationClass::Scoreable => Assurance::Scored,
            ValidationClass::NonVerifiable => Assurance::Reputation,
        }
    }
}
