//! d402-registry: how a capability is published so that any worker can run exactly that code and
//! any gateway can tell, before it sells a single task, who published it, which bytes it is and
//! what commission the author is owed.
//!
//! - [`manifest`]: the capability manifest, its semantic checks and a starter [`template`].
//! - [`schema`]: the manifest's published JSON Schema (`registry/manifest.schema.json`).
//! - [`registration`]: the publisher's signed registration with commission terms.
//! - [`namespace`]: namespace proofs (the namespace owner vouching for a publisher key).
//! - [`wallet`]: creator wallet addresses per rail, validated.
//! - [`policy`]: the gateway-side acceptance check.
#![deny(unsafe_code)]

mod document;
pub mod error;
pub mod manifest;
pub mod namespace;
pub mod policy;
pub mod registration;
pub mod schema;
pub mod validation;
pub mod wallet;

pub use document::MAX_DOCUMENT_BYTES;
pub use error::{DocumentError, FieldError, FieldErrors, RegistrationError};
pub use manifest::{Manifest, ValidationClass, template};
pub use namespace::NamespaceProof;
pub use policy::{AcceptancePolicy, Accepted, PolicyRefusal};
pub use registration::{Registration, RegistrationBody};
pub use wallet::{CreatorWallets, Rail};
