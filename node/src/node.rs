//! One d402 node: the swarm plus whichever roles it was started with (worker, validator), and the
//! coordinator every node has for submitting tasks. A node with no offers and no validation is a
//! bootstrap.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use d402_core::{ContentId, Identity, Limits};
use d402_host::{ContentStore, EngineSettings, Host, HostConfig};
use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::{Multiaddr, PeerId};

use crate::coordinator::{Coordinator, offer_key, validator_key};
use crate::state::NodeState;
use crate::swarm::{self, Inbound, NetConfig, NetError, NetHandle};
use crate::validator::Validator;
use crate::wire::{TaskRequest, TaskResponse};
use crate::worker::{Worker, WorkerConfig};

/// The key file of a node, under `--state`.
pub const NODE_KEY: &str = "keys/node.key";

/// How to start a node.
pub struct NodeConfig {
    /// A name for logs (`--label`).
    pub label: String,
    /// The state folder (`--state`): key, node database, content store, compiled components.
    pub state_dir: PathBuf,
    /// Where to listen, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Multiaddr,
    /// The address to advertise to peers instead of the listen address (`--advertise-host`).
    pub advertise: Option<Multiaddr>,
    /// Peers to dial at start (`--peer`); known peers from earlier runs are dialled as well.
    pub peers: Vec<Multiaddr>,
    /// Set to run the worker role.
    pub worker: Option<WorkerConfig>,
    /// `ID@VERSION`s to validate (`--validate`).
    pub validate: BTreeSet<String>,
    /// A validator's release key for rails whose held payments the validator role releases
    /// (`--release-key` on a validator node).
    pub release_signer: Option<Arc<dyn crate::ReleaseSigner>>,
    /// Engine settings for the host (only built for workers and validators).
    pub engine: EngineSettings,
    /// Serve corrupted bytes on the object protocol: for tests of the network's defences only.
    #[doc(hidden)]
    pub fault_corrupt_objects: bool,
}

impl NodeConfig {
    pub fn new(label: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            label: label.into(),
            state_dir: state_dir.into(),
            listen: "/ip4/127.0.0.1/tcp/0".parse().expect("static multiaddr"),
            advertise: None,
            peers: Vec::new(),
            worker: None,
            validate: BTreeSet::new(),
            release_signer: None,
            engine: EngineSettings::default(),
            fault_corrupt_objects: false,
        }
    }
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("state folder {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("host: {0}")]
    Host(#[from] d402_host::HostError),
    #[error(transparent)]
    Net(#[from] NetError),
}

/// A running node.
pub struct Node {
    label: String,
    net: NetHandle,
    identity: Arc<Identity>,
    coordinator: Coordinator,
}

struct Dispatch {
    store: ContentStore,
    corrupt_objects: bool,
    worker: OnceLock<Arc<Worker>>,
    validator: OnceLock<Arc<Validator>>,
}

impl Inbound for Dispatch {
    fn task(&self, peer: PeerId, request: TaskRequest) -> BoxFuture<'static, TaskResponse> {
        let refuse = |code: &str, message: &str| {
            let response = TaskResponse::Refused {
                code: code.into(),
                message: message.into(),
            };
            async move { response }.boxed()
        };
        match request {
            TaskRequest::Intent(intent) => match self.worker.get() {
                Some(worker) => {
                    let response = worker.bid(intent);
                    async move { response }.boxed()
                }
                None => refuse("not-a-worker", "this node does not run tasks"),
            },
            TaskRequest::Lease(lease) => match self.worker.get() {
                Some(worker) => worker.clone().lease(peer, *lease).boxed(),
                None => refuse("not-a-worker", "this node does not run tasks"),
            },
            TaskRequest::Validate(request) => match self.validator.get() {
                Some(validator) => validator.clone().validate(peer, *request).boxed(),
                None => refuse("not-a-validator", "this node does not validate"),
            },
        }
    }

    fn object(&self, cid: &ContentId) -> Option<Vec<u8>> {
        let mut bytes = self.store.get(cid).ok().flatten()?;
        if self.corrupt_objects
            && let Some(first) = bytes.first_mut()
        {
            *first ^= 1;
        }
        Some(bytes)
    }
}

impl Node {
    /// Starts a node on the current tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let state_err = |reason: String| NodeError::State {
            path: config.state_dir.clone(),
            reason,
        };
        std::fs::create_dir_all(config.state_dir.join("keys"))
            .and_then(|()| std::fs::create_dir_all(config.state_dir.join("compiled")))
            .map_err(|e| state_err(e.to_string()))?;
        let dir = Dir::open_ambient_dir(&config.state_dir, ambient_authority())
            .map_err(|e| state_err(e.to_string()))?;
        let identity = Arc::new(
            Identity::load_or_create(&dir, NODE_KEY).map_err(|e| state_err(e.to_string()))?,
        );
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(identity.secret_seed())
            .map_err(|e| state_err(e.to_string()))?;
        let store = ContentStore::open(&dir).map_err(|e| state_err(e.to_string()))?;
        let state = NodeState::open(&config.state_dir.join("node.redb"))
            .map_err(|e| state_err(e.to_string()))?;

        let host = if config.worker.is_some() || !config.validate.is_empty() {
            let compiled = dir
                .open_dir("compiled")
                .map_err(|e| state_err(e.to_string()))?;
            Some(Arc::new(Host::new(
                HostConfig {
                    engine: config.engine.clone(),
                    max_limits: Limits::default(),
                    compiled_cache: Some(compiled),
                },
                identity.clone(),
            )?))
        } else {
            None
        };

        let dispatch = Arc::new(Dispatch {
            store: store.clone(),
            corrupt_objects: config.fault_corrupt_objects,
            worker: OnceLock::new(),
            validator: OnceLock::new(),
        });
        let net = swarm::start(
            NetConfig {
                keypair,
                listen: config.listen,
                bootstrap: config.peers,
                state: state.clone(),
                agent: format!("d402/{} ({})", env!("CARGO_PKG_VERSION"), config.label),
                advertise: config.advertise,
            },
            dispatch.clone(),
        )
        .await?;

        if let (Some(worker), Some(host)) = (config.worker, &host) {
            for offer in &worker.offers {
                net.provide(&offer_key(offer))?;
            }
            let _ = dispatch.worker.set(Arc::new(Worker {
                config: worker,
                host: host.clone(),
                store: store.clone(),
                state: state.clone(),
                net: net.clone(),
            }));
        }
        if let Some(host) = &host
            && !config.validate.is_empty()
        {
            for capability in &config.validate {
                net.provide(&validator_key(capability))?;
            }
            let _ = dispatch.validator.set(Arc::new(Validator {
                capabilities: config.validate,
                host: host.clone(),
                store: store.clone(),
                state: state.clone(),
                net: net.clone(),
                release_signer: config.release_signer.clone(),
            }));
        }
        tracing::info!(label = config.label, peer = %net.peer_id(), addr = %net.listen_addr(), "node started");
        Ok(Node {
            label: config.label,
            coordinator: Coordinator {
                net: net.clone(),
                store,
                state,
                providers: Default::default(),
            },
            net,
            identity,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn peer_id(&self) -> PeerId {
        self.net.peer_id()
    }

    /// `/ip4/…/tcp/…/p2p/…`: what other nodes pass to `--peer`.
    pub fn listen_addr(&self) -> Multiaddr {
        self.net.listen_addr()
    }

    /// `ed25519:<hex>`: the key this node signs receipts and verdicts with.
    pub fn public_id(&self) -> String {
        self.identity.public_id()
    }

    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// The client API: submit tasks through this node.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Stops the node's networking: connections close and peers see it gone.
    pub fn shutdown(&self) {
        self.net.shutdown();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.net.shutdown();
    }
}
