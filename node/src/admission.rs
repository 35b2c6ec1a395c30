//! What a worker or validator checks before it runs anything: every object the lease names is
//! fetched by CID (verified on arrival), the registration's signature and namespace proof verify,
//! the registration names this manifest, the manifest names this component, and the capability
//! is the one leased. Anything else is refused with a stable code, and nothing runs.

use d402_core::ContentId;
use d402_host::ContentStore;
use d402_registry::{Manifest, Registration};
use libp2p::PeerId;

use crate::objects;
use crate::state::NodeState;
use crate::swarm::NetHandle;
use crate::wire::Lease;

/// A lease that may not run.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("object {0}")]
    Fetch(#[from] objects::FetchError),
    #[error("registration {cid} does not hold: {reason}")]
    Registration { cid: ContentId, reason: String },
    #[error("manifest {cid} is not valid: {reason}")]
    Manifest { cid: ContentId, reason: String },
    #[error("component does not match: {0}")]
    Component(String),
    #[error("lease names {leased} but the manifest is {actual}")]
    CapabilityMismatch { leased: String, actual: String },
    #[error("this node does not offer {0}")]
    NotOffered(String),
    #[error("lease {0} has already expired")]
    Expired(String),
    #[error("{0}")]
    Execution(String),
}

impl Refusal {
    /// The stable code sent to the peer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Fetch(_) => "object-unavailable",
            Refusal::Registration { .. } => "registration-invalid",
            Refusal::Manifest { .. } => "manifest-invalid",
            Refusal::Component(_) => "component-mismatch",
            Refusal::CapabilityMismatch { .. } => "capability-mismatch",
            Refusal::NotOffered(_) => "not-offered",
            Refusal::Expired(_) => "lease-expired",
            Refusal::Execution(_) => "execution-failed",
        }
    }
}

/// A lease whose objects are all present and check out.
pub struct Admitted {
    pub manifest: Manifest,
    pub registration: Registration,
    pub component: Vec<u8>,
}

/// Fetches and checks everything `lease` names, asking `peers` for what is missing.
pub async fn admit(
    net: &NetHandle,
    store: &ContentStore,
    state: &NodeState,
    lease: &Lease,
    peers: &[PeerId],
) -> Result<Admitted, Refusal> {
    let registration_bytes = objects::ensure(net, store, state, lease.registration, peers).await?;
    let registration =
        Registration::from_json(&registration_bytes).map_err(|e| Refusal::Registration {
            cid: lease.registration,
            reason: e.to_string(),
        })?;
    registration.verify().map_err(|e| Refusal::Registration {
        cid: lease.registration,
        reason: e.to_string(),
    })?;
    if registration.body.manifest != lease.manifest {
        return Err(Refusal::Registration {
            cid: lease.registration,
            reason: format!(
                "it registers manifest {}, not {}",
                registration.body.manifest, lease.manifest
            ),
        });
    }
    let manifest_bytes = objects::ensure(net, store, state, lease.manifest, peers).await?;
    let manifest = Manifest::from_json(&manifest_bytes).map_err(|e| Refusal::Manifest {
        cid: lease.manifest,
        reason: e.to_string(),
    })?;
    registration
        .check_manifest(&manifest)
        .map_err(|e| Refusal::Registration {
            cid: lease.registration,
            reason: e.to_string(),
        })?;
    let actual = manifest.capability_ref().to_string();
    if actual != lease.capability {
        return Err(Refusal::CapabilityMismatch {
            leased: lease.capability.clone(),
            actual,
        });
    }
    if manifest.implementation.cid != lease.implementation {
        return Err(Refusal::Component(format!(
            "the manifest names {}, the lease {}",
            manifest.implementation.cid, lease.implementation
        )));
    }
    let component = objects::ensure(net, store, state, lease.implementation, peers).await?;
    manifest
        .check_component(&component)
        .map_err(|e| Refusal::Component(e.to_string()))?;
    for cid in lease.evidence.iter().chain(&lease.evidence_objects) {
        objects::ensure(net, store, state, *cid, peers).await?;
    }
    Ok(Admitted {
        manifest,
        registration,
        component,
    })
}
