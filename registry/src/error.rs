//! Errors, one enum per boundary. Every error about a document names the field it is about with a
//! JSON-pointer path (`/limits/fuel`, `/creatorWallets/evm`); `""` is the document itself.

use d402_core::ContentId;
use d402_core::content_id::CanonicalJsonError;
use d402_core::identity::SignatureError;

/// One thing wrong with one field of a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", display_path(path))]
pub struct FieldError {
    /// JSON pointer to the field (`/validation/quorum`); empty for the whole document.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Every field error found in a document, in document order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.0))]
pub struct FieldErrors(pub Vec<FieldError>);

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl FieldErrors {
    /// The path of the first error (what a one-line message leads with).
    pub fn first_path(&self) -> &str {
        self.0.first().map_or("", |e| e.path.as_str())
    }

    /// Whether any error is about `path`.
    pub fn mentions(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

/// A manifest or registration document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Refused before parsing, so a huge document costs neither memory nor time.
    #[error("{what} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// Not JSON at all (or not UTF-8).
    #[error("{what} is not valid JSON: {message}")]
    NotJson { what: &'static str, message: String },
    /// JSON, but some fields are wrong: missing, of the wrong type, out of range, inconsistent.
    #[error("{what} is invalid: {errors}")]
    Invalid {
        what: &'static str,
        errors: FieldErrors,
    },
}

impl DocumentError {
    /// The field errors, if the document was JSON at all.
    pub fn field_errors(&self) -> Option<&FieldErrors> {
        match self {
            Self::Invalid { errors, .. } => Some(errors),
            _ => None,
        }
    }
}

/// Why a registration could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The publisher's signature over the registration does not verify: some field was changed.
    #[error("registration signature: {0}")]
    Signature(SignatureError),
    /// The namespace proof does not verify for this namespace and publisher.
    #[error("namespace proof: {0}")]
    NamespaceProof(SignatureError),
    /// A namespace proof for another namespace or another publisher.
    #[error("namespace proof is for {field} {found:?}, not {expected:?}")]
    NamespaceProofMismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    /// The manifest given alongside the registration is not the one it registers.
    #[error("manifest CID mismatch: the registration names {registered}, the manifest is {actual}")]
    ManifestCidMismatch {
        registered: ContentId,
        actual: ContentId,
    },
    /// The component's bytes are not the implementation the manifest names.
    #[error(
        "implementation CID mismatch: the manifest names {expected}, the component is {actual}"
    )]
    ImplementationCidMismatch {
        expected: ContentId,
        actual: ContentId,
    },
    /// The registration's namespace is not the first segment of the manifest id.
    #[error("namespace {namespace:?} does not own capability id {id:?}")]
    NamespaceMismatch { namespace: String, id: String },
    #[error(transparent)]
    Canonical(#[from] CanonicalJsonError),
}
