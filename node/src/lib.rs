//! The d402 peer network (DESIGN.md §8): nodes talk over rust-libp2p (TCP + noise + yamux,
//! identify with signed peer records, Kademlia, ping, request-response), workers sell the
//! capabilities they offer, validators re-execute claimed work from its evidence, and a
//! coordinator drives the task protocol:
//!
//! intent → bids → lease → execution → signed claim → quorum → validation → reputation.
//!
//! ```no_run
//! # async fn demo(offer: d402_node::Offer) -> Result<(), Box<dyn std::error::Error>> {
//! use d402_node::{Node, NodeConfig, TaskSpec};
//! let mut config = NodeConfig::new("client", "/tmp/d402-client");
//! config.peers.push(d402_node::peer_addr("127.0.0.1:4001")?);
//! let node = Node::start(config).await?;
//! let spec = TaskSpec::new("task-1", r#"{"url":"https://example.com/"}"#, &offer);
//! let outcome = node.coordinator().submit(&offer, spec).await?;
//! println!("{}", outcome.output);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

pub mod admission;
pub mod coordinator;
mod execution;
pub mod node;
pub mod objects;
pub mod quorum;
pub mod reputation;
pub mod state;
pub mod swarm;
pub mod validator;
pub mod verdict;
pub mod wire;
pub mod worker;

pub use libp2p::{Multiaddr, PeerId};

pub use coordinator::{
    Coordinator, Mode, Offer, SnapshotCheckSpec, TaskError, TaskOutcome, TaskSpec, WorkerGate,
    WorkerPolicy,
};
pub use node::{Node, NodeConfig, NodeError};
pub use reputation::Standing;
pub use swarm::{NetError, NetHandle, peer_addr};
pub use verdict::{ReleaseSigner, SignedRelease, Verdict};
pub use worker::{Fault, WorkerConfig};

/// Deadlines and lease expiry travel as wall-clock times.
pub(crate) use d402_core::clock::now_ms;
