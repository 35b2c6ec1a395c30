//! The gateway-side acceptance check: before a gateway sells a single task of a capability, it
//! checks the capability's registration and manifest against its own policy (seed 000, "Capability
//! and commission policy"). Each refusal is its own [`PolicyRefusal`] variant.
//!
//! A registration is accepted only if
//! 1. its fields are well formed and the publisher's signature verifies (unless
//!    `require_signature` is off);
//! 2. the manifest is valid, its CID is the registered one, and its id is in the registered
//!    namespace;
//! 3. the namespace is in the trusted list and the namespace proof is signed by the owner the list
//!    names, for this publisher;
//! 4. the commission is at most `max_creator_commission_bps` (`D402_MAX_CREATOR_COMMISSION_BPS`,
//!    default 2000);
//! 5. a creator wallet is present for every rail the gateway may settle on (when the commission is
//!    not zero: a registration that asks for nothing needs nowhere to be paid; seed 000 "reject
//!    commission-bearing manifests when the selected payout rail lacks the required creator
//!    wallet type");
//! 6. when exact accepted manifest CIDs or implementation CIDs are configured, its CIDs are listed.

use std::collections::{BTreeMap, BTreeSet};

use d402_core::content_id::CanonicalJsonError;
use d402_core::identity::SignatureError;
use d402_core::{CapabilityRef, ContentId};
use serde::Serialize;

use crate::error::{DocumentError, RegistrationError};
use crate::manifest::Manifest;
use crate::registration::{MAX_BPS, Registration};
use crate::wallet::{CreatorWallets, Rail};

/// The environment variable that caps creator commissions.
pub const MAX_COMMISSION_ENV: &str = "D402_MAX_CREATOR_COMMISSION_BPS";
/// The cap when the variable is not set.
pub const DEFAULT_MAX_CREATOR_COMMISSION_BPS: u32 = 2000;

/// A gateway's policy for capability registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptancePolicy {
    /// Namespace → `ed25519:<hex>` of its owner. A namespace not listed is not trusted.
    pub trusted_namespaces: BTreeMap<String, String>,
    pub max_creator_commission_bps: u32,
    /// The rails this gateway may settle on; each needs a creator wallet.
    pub required_rails: Vec<Rail>,
    /// If set, only these manifest CIDs are accepted.
    pub accepted_manifest_cids: Option<BTreeSet<ContentId>>,
    /// If set, only manifests naming these implementation CIDs are accepted.
    pub accepted_implementation_cids: Option<BTreeSet<ContentId>>,
    pub require_signature: bool,
}

impl Default for AcceptancePolicy {
    /// Nothing trusted, the default cap, no rails, no CID lists, signatures required.
    fn default() -> Self {
        Self {
            trusted_namespaces: BTreeMap::new(),
            max_creator_commission_bps: DEFAULT_MAX_CREATOR_COMMISSION_BPS,
            required_rails: Vec::new(),
            accepted_manifest_cids: None,
            accepted_implementation_cids: None,
            require_signature: true,
        }
    }
}

/// A policy setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    #[error(
        "{MAX_COMMISSION_ENV}={value:?} is not a number of basis points between 0 and {MAX_BPS}"
    )]
    MaxCommission { value: String },
}

/// The commission cap from the value of `D402_MAX_CREATOR_COMMISSION_BPS` (`None` or empty: the
/// default, 2000).
pub fn max_commission_from(value: Option<&str>) -> Result<u32, PolicyConfigError> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_MAX_CREATOR_COMMISSION_BPS),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|bps| *bps <= MAX_BPS)
            .ok_or_else(|| PolicyConfigError::MaxCommission {
                value: v.to_string(),
            }),
    }
}

impl AcceptancePolicy {
    /// The default policy with the commission cap read from `D402_MAX_CREATOR_COMMISSION_BPS`.
    pub fn from_env() -> Result<Self, PolicyConfigError> {
        let value = std::env::var(MAX_COMMISSION_ENV).ok();
        Ok(Self {
            max_creator_commission_bps: max_commission_from(value.as_deref())?,
            ..Self::default()
        })
    }

    /// Trusts `owner` (`ed25519:<hex>`) for `namespace`.
    pub fn trust(mut self, namespace: &str, owner: &str) -> Self {
        self.trusted_namespaces
            .insert(namespace.to_string(), owner.to_string());
        self
    }

    /// Accepts `registration` of `manifest`, or says exactly why not.
    pub fn check(
        &self,
        registration: &Registration,
        manifest: &Manifest,
    ) -> Result<Accepted, PolicyRefusal> {
        let body = &registration.body;
        body.validate()
            .map_err(PolicyRefusal::InvalidRegistration)?;
        if self.require_signature {
            match registration.verify_signature() {
                Ok(()) => {}
                Err(RegistrationError::Signature(e)) => return Err(PolicyRefusal::BadSignature(e)),
                Err(e) => return Err(PolicyRefusal::from_registration(e)),
            }
        }
        manifest
            .validate()
            .map_err(PolicyRefusal::InvalidManifest)?;
        registration
            .check_manifest(manifest)
            .map_err(PolicyRefusal::from_registration)?;

        let namespace = &body.namespace;
        let trusted = self.trusted_namespaces.get(namespace).ok_or_else(|| {
            PolicyRefusal::UntrustedNamespace {
                namespace: namespace.clone(),
            }
        })?;
        let proof =
            body.namespace_proof
                .as_ref()
                .ok_or_else(|| PolicyRefusal::MissingNamespaceProof {
                    namespace: namespace.clone(),
                })?;
        if &proof.owner != trusted {
            return Err(PolicyRefusal::NamespaceOwnerMismatch {
                namespace: namespace.clone(),
                trusted: trusted.clone(),
                claimed: proof.owner.clone(),
            });
        }
        match proof.verify(namespace, &body.publisher) {
            Ok(()) => {}
            Err(RegistrationError::NamespaceProof(e)) => {
                return Err(PolicyRefusal::BadNamespaceProof {
                    namespace: namespace.clone(),
                    source: e,
                });
            }
            Err(e) => return Err(PolicyRefusal::from_registration(e)),
        }

        if body.creator_commission_bps > self.max_creator_commission_bps {
            return Err(PolicyRefusal::CommissionAboveCap {
                bps: body.creator_commission_bps,
                cap: self.max_creator_commission_bps,
            });
        }
        if body.creator_commission_bps > 0 {
            for rail in &self.required_rails {
                if body.creator_wallets.get(*rail).is_none() {
                    return Err(PolicyRefusal::MissingCreatorWallet { rail: *rail });
                }
            }
        }

        let manifest_cid = body.manifest;
        if let Some(accepted) = &self.accepted_manifest_cids
            && !accepted.contains(&manifest_cid)
        {
            return Err(PolicyRefusal::ManifestNotAccepted { cid: manifest_cid });
        }
        let implementation_cid = manifest.implementation.cid;
        if let Some(accepted) = &self.accepted_implementation_cids
            && !accepted.contains(&implementation_cid)
        {
            return Err(PolicyRefusal::ImplementationNotAccepted {
                cid: implementation_cid,
            });
        }

        Ok(Accepted {
            registration_cid: registration.cid()?,
            manifest_cid,
            implementation_cid,
            capability: manifest.capability_ref(),
            namespace: namespace.clone(),
            publisher: body.publisher.clone(),
            creator_commission_bps: body.creator_commission_bps,
            creator_wallets: body.creator_wallets.clone(),
        })
    }
}

/// What an accepted registration commits the gateway to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub registration_cid: ContentId,
    pub manifest_cid: ContentId,
    pub implementation_cid: ContentId,
    pub capability: CapabilityRef,
    pub namespace: String,
    pub publisher: String,
    pub creator_commission_bps: u32,
    pub creator_wallets: CreatorWallets,
}

/// Why a gateway refuses a registration. One variant per refusal.
#[derive(Debug, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("registration is malformed: {0}")]
    InvalidRegistration(DocumentError),
    #[error("manifest is invalid: {0}")]
    InvalidManifest(DocumentError),
    #[error("registration signature does not hold: {0}")]
    BadSignature(SignatureError),
    #[error("manifest CID mismatch: the registration names {registered}, the manifest is {actual}")]
    ManifestCidMismatch {
        registered: ContentId,
        actual: ContentId,
    },
    #[error("namespace {namespace:?} does not own capability id {id:?}")]
    NamespaceMismatch { namespace: String, id: String },
    #[error("namespace {namespace:?} is not in this gateway's trusted namespaces")]
    UntrustedNamespace { namespace: String },
    #[error("registration in namespace {namespace:?} carries no namespace proof")]
    MissingNamespaceProof { namespace: String },
    #[error("namespace {namespace:?} is owned by {trusted}, but the proof is by {claimed}")]
    NamespaceOwnerMismatch {
        namespace: String,
        trusted: String,
        claimed: String,
    },
    #[error("namespace proof for {namespace:?} does not verify: {source}")]
    BadNamespaceProof {
        namespace: String,
        source: SignatureError,
    },
    #[error("creator commission of {bps} bps is above this gateway's cap of {cap} bps")]
    CommissionAboveCap { bps: u32, cap: u32 },
    #[error("no creator wallet for the {rail} rail, which this gateway settles on")]
    MissingCreatorWallet { rail: Rail },
    #[error("manifest {cid} is not in this gateway's accepted manifest CIDs")]
    ManifestNotAccepted { cid: ContentId },
    #[error("implementation {cid} is not in this gateway's accepted implementation CIDs")]
    ImplementationNotAccepted { cid: ContentId },
    #[error(transparent)]
    Canonical(#[from] CanonicalJsonError),
}

impl PolicyRefusal {
    fn from_registration(e: RegistrationError) -> Self {
        match e {
            RegistrationError::Document(d) => Self::InvalidRegistration(d),
            RegistrationError::Signature(s) => Self::BadSignature(s),
            RegistrationError::NamespaceProof(source) => Self::BadNamespaceProof {
                namespace: String::new(),
                source,
            },
            RegistrationError::ManifestCidMismatch { registered, actual } => {
                Self::ManifestCidMismatch { registered, actual }
            }
            RegistrationError::NamespaceMismatch { namespace, id } => {
                Self::NamespaceMismatch { namespace, id }
            }
            RegistrationError::Canonical(c) => Self::Canonical(c),
            // Not produced by the checks `check` runs; kept total rather than panicking.
            other @ (RegistrationError::NamespaceProofMismatch { .. }
            | RegistrationError::ImplementationCidMismatch { .. }) => {
                Self::InvalidRegistration(DocumentError::NotJson {
                    what: "registration",
                    message: other.to_string(),
                })
            }
        }
    }
}
