//! d402-core: what every d402 crate shares, and nothing that runs a guest or moves money.
//!
//! - [`content_id`]: [`ContentId`], the BLAKE3 CID every artifact, manifest and record is named
//!   by, and canonical JSON (RFC 8785) so that equal values have equal CIDs.
//! - [`canonical`]: [`Canonicalizer`], how a capability's output is normalised before quorum.
//! - [`identity`]: [`Identity`], an ed25519 signing key with its public id, and signature checks.
//! - [`receipt`]: [`Receipt`], a worker's signed statement of what it ran and produced.
//! - [`limits`]: [`Limits`], what one task may consume.
//! - [`egress`]: [`EgressPolicy`] and the address classes a task may never reach.
//! - [`snapshot`]: the [`Snapshotter`] contract and pages frozen beforehand ([`FrozenPages`]).
//! - [`clock`]: wall-clock time as records store it.
//! - [`db_error_from!`]: redb's errors behind a store's own error type.
//!
//! This crate must never depend on wasmtime, libp2p, alloy, the Solana crates or redb: the
//! registry and the snapshotter build on it alone.
#![deny(unsafe_code)]

pub mod canonical;
pub mod clock;
pub mod content_id;
mod db;
pub mod egress;
pub mod identity;
pub mod limits;
pub mod receipt;
pub mod snapshot;

pub use canonical::Canonicalizer;
pub use content_id::ContentId;
pub use egress::EgressPolicy;
pub use identity::Identity;
pub use limits::Limits;
pub use receipt::{CapabilityRef, Receipt, TaskContext};
pub use snapshot::{FrozenPages, Snapshotter};
