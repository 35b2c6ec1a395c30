//! The swarm loop: the only place that touches the network (as in rust-libp2p's own examples).
//! Everything else talks to it through a [`NetHandle`]: commands in, replies on oneshot channels.
//! Inbound requests are handed to the node's [`Inbound`] service on their own tasks, so a slow
//! execution never stalls the loop.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use d402_core::ContentId;
use futures::StreamExt;
use futures::future::BoxFuture;
use libp2p::core::{PeerRecord, multiaddr::Protocol};
use libp2p::kad::{self, GetProvidersOk, QueryResult, RecordKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, identify, identity, noise, ping, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use crate::state::NodeState;
use crate::wire::{
    FrameCodec, KAD_PROTOCOL, MAX_OBJECT_FRAME, MAX_TASK_FRAME, OBJECT_PROTOCOL, ObjectReply,
    ObjectRequest, TASK_PROTOCOL, TaskRequest, TaskResponse,
};

/// Identify's protocol version: peers on another d402 wire version are not added to the DHT.
pub const PROTOCOL_VERSION: &str = "/d402/1";

/// How long an outbound request may take at most; leases set their own, shorter, deadlines.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// How often provider records are re-published even when nothing changes (they expire after
/// Kademlia's provider TTL; this also heals after peers restart).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);

/// A network failure seen by a caller.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    #[error("the node has shut down")]
    Closed,
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("bad peer address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("no reply before the deadline")]
    Timeout,
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    ping: ping::Behaviour,
    tasks: request_response::Behaviour<FrameCodec<TaskRequest, TaskResponse>>,
    objects: request_response::Behaviour<FrameCodec<ObjectRequest, ObjectReply>>,
}

/// What the node does with requests from peers.
pub trait Inbound: Send + Sync + 'static {
    fn task(&self, peer: PeerId, request: TaskRequest) -> BoxFuture<'static, TaskResponse>;
    fn object(&self, cid: &ContentId) -> Option<Vec<u8>>;
}

enum Command {
    Dial(DialOpts),
    Provide(RecordKey),
    FindProviders {
        key: RecordKey,
        reply: oneshot::Sender<HashSet<PeerId>>,
    },
    Task {
        peer: PeerId,
        request: TaskRequest,
        reply: oneshot::Sender<Result<TaskResponse, NetError>>,
    },
    Object {
        peer: PeerId,
        cid: ContentId,
        reply: oneshot::Sender<Result<ObjectReply, NetError>>,
    },
    RespondTask {
        channel: ResponseChannel<TaskResponse>,
        response: TaskResponse,
    },
    Connected(oneshot::Sender<Vec<PeerId>>),
    RoutingPeers(oneshot::Sender<Vec<PeerId>>),
    Shutdown,
}

/// A handle on a running swarm. Cheap to clone.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::UnboundedSender<Command>,
    peer_id: PeerId,
    listen: Multiaddr,
}

impl NetHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The address this node listens on, with its `/p2p/` suffix.
    pub fn listen_addr(&self) -> Multiaddr {
        self.listen.clone().with(Protocol::P2p(self.peer_id))
    }

    fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands.send(command).map_err(|_| NetError::Closed)
    }

    pub fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.send(Command::Dial(
            DialOpts::unknown_peer_id().address(addr).build(),
        ))
    }

    /// Announces that this node provides `key` (an offer, a validation service).
    pub fn provide(&self, key: &str) -> Result<(), NetError> {
        self.send(Command::Provide(RecordKey::new(&key)))
    }

    /// The peers that announced `key`, from the DHT.
    pub async fn find_providers(&self, key: &str) -> Result<HashSet<PeerId>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::FindProviders {
            key: RecordKey::new(&key),
            reply,
        })?;
        rx.await.map_err(|_| NetError::Closed)
    }

    /// Sends a task-protocol request and waits at most `timeout` for the answer.
    pub async fn task(
        &self,
        peer: PeerId,
        request: TaskRequest,
        timeout: Duration,
    ) -> Result<TaskResponse, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Task {
            peer,
            request,
            reply,
        })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetError::Closed),
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Asks `peer` for the object `cid`. The bytes are NOT verified here: see [`crate::objects`].
    pub async fn object(
        &self,
        peer: PeerId,
        cid: ContentId,
        timeout: Duration,
    ) -> Result<ObjectReply, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Object { peer, cid, reply })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetError::Closed),
            Err(_) => Err(NetError::Timeout),
        }
    }

    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Connected(reply))?;
        rx.await.map_err(|_| NetError::Closed)
    }

    /// Peers in the DHT routing table: the ones this node has discovered.
    pub async fn routing_peers(&self) -> Result<Vec<PeerId>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::RoutingPeers(reply))?;
        rx.await.map_err(|_| NetError::Closed)
    }

    /// Stops the swarm: connections close, pending requests fail.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// `HOST:PORT` (seed 001's `--peer`) or a multiaddr, as a multiaddr to dial.
pub fn peer_addr(peer: &str) -> Result<Multiaddr, NetError> {
    let bad = |reason: String| NetError::BadAddress {
        addr: peer.to_string(),
        reason,
    };
    if peer.starts_with('/') {
        return peer.parse().map_err(|e| bad(format!("{e}")));
    }
    let socket = peer
        .to_socket_addrs()
        .map_err(|e| bad(format!("expected HOST:PORT: {e}")))?
        .next()
        .ok_or_else(|| bad("the host name has no address".into()))?;
    let ip = match socket.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Ok(Multiaddr::empty()
        .with(ip)
        .with(Protocol::Tcp(socket.port())))
}

/// Network settings of one node.
pub struct NetConfig {
    pub keypair: identity::Keypair,
    pub listen: Multiaddr,
    /// Addresses to dial at start (`--peer`).
    pub bootstrap: Vec<Multiaddr>,
    pub state: NodeState,
    pub agent: String,
    /// The address peers should dial (`--advertise-host` with `--port`), when the listen address
    /// is not reachable as such (0.0.0.0, NAT).
    pub advertise: Option<Multiaddr>,
}

/// Starts the swarm on the current tokio runtime.
pub async fn start(config: NetConfig, inbound: Arc<dyn Inbound>) -> Result<NetHandle, NetError> {
    let NetConfig {
        keypair,
        listen,
        bootstrap,
        state,
        agent,
        advertise,
    } = config;
    let build_err = |e: String| NetError::Listen {
        addr: listen.to_string(),
        reason: e,
    };
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build_err(e.to_string()))?
        .with_behaviour(|key| behaviour(key, agent))
        .map_err(|e| build_err(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
    swarm
        .listen_on(listen.clone())
        .map_err(|e| build_err(e.to_string()))?;
    // Wait for the real address (port 0 becomes a port).
    let listen = loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => break address,
            SwarmEvent::ListenerError { error, .. } => return Err(build_err(error.to_string())),
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => return Err(build_err(error.to_string())),
            _ => {}
        }
    };
    if let Some(addr) = advertise {
        swarm.add_external_address(addr);
    }
    // Known peers first (they carry peer ids), then the configured bootstrap addresses.
    let known = state.known_peers().unwrap_or_default();
    for (peer, addrs) in known {
        for addr in &addrs {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        let _ = swarm.dial(DialOpts::peer_id(peer).addresses(addrs).build());
    }
    for addr in bootstrap {
        let _ = swarm.dial(DialOpts::unknown_peer_id().address(addr).build());
    }
    let (commands, rx) = mpsc::unbounded_channel();
    let handle = NetHandle {
        commands,
        peer_id: *swarm.local_peer_id(),
        listen,
    };
    let event_loop = EventLoop {
        swarm,
        commands: rx,
        handle: handle.clone(),
        inbound,
        state,
        tasks: HashMap::new(),
        objects: HashMap::new(),
        providers: HashMap::new(),
        bootstrapped: false,
        provided: Vec::new(),
        announced: Instant::now(),
        announce_due: false,
    };
    tokio::spawn(event_loop.run());
    Ok(handle)
}

fn behaviour(key: &identity::Keypair, agent: String) -> Behaviour {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(64))
        .with_max_pending_outgoing(Some(64))
        .with_max_established_incoming(Some(256))
        .with_max_established_per_peer(Some(4));
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(10));
    let rr_config = request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(256);
    Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new_with_signed_peer_record(PROTOCOL_VERSION.into(), key)
                .with_agent_version(agent),
        ),
        kad: kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad_config,
        ),
        ping: ping::Behaviour::default(),
        tasks: request_response::Behaviour::with_codec(
            FrameCodec::new(MAX_TASK_FRAME),
            [(TASK_PROTOCOL, ProtocolSupport::Full)],
            rr_config.clone(),
        ),
        objects: request_response::Behaviour::with_codec(
            FrameCodec::new(MAX_OBJECT_FRAME),
            [(OBJECT_PROTOCOL, ProtocolSupport::Full)],
            rr_config,
        ),
    }
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::UnboundedReceiver<Command>,
    handle: NetHandle,
    inbound: Arc<dyn Inbound>,
    state: NodeState,
    tasks: HashMap<OutboundRequestId, oneshot::Sender<Result<TaskResponse, NetError>>>,
    objects: HashMap<OutboundRequestId, oneshot::Sender<Result<ObjectReply, NetError>>>,
    providers: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<HashSet<PeerId>>)>,
    bootstrapped: bool,
    /// Keys this node announces; re-announced as the routing table grows, so that a node that
    /// started before its peers still gets found.
    provided: Vec<RecordKey>,
    announced: Instant,
    announce_due: bool,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = tick.tick() => self.announce(),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
        tracing::debug!(peer = %self.handle.peer_id, "swarm stopped");
    }

    fn command(&mut self, command: Command) {
        let b = self.swarm.behaviour_mut();
        match command {
            Command::Dial(opts) => {
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!("dial failed: {e}");
                }
            }
            Command::Provide(key) => {
                if let Err(e) = b.kad.start_providing(key.clone()) {
                    tracing::warn!("cannot announce: {e}");
                }
                self.provided.push(key);
                self.announce_due = true;
            }
            Command::FindProviders { key, reply } => {
                let id = b.kad.get_providers(key);
                self.providers.insert(id, (HashSet::new(), reply));
            }
            Command::Task {
                peer,
                request,
                reply,
            } => {
                let id = b.tasks.send_request(&peer, request);
                self.tasks.insert(id, reply);
            }
            Command::Object { peer, cid, reply } => {
                let id = b.objects.send_request(&peer, ObjectRequest { cid });
                self.objects.insert(id, reply);
            }
            Command::RespondTask { channel, response } => {
                // The requester may have gone (lease expired); nothing to do then.
                let _ = b.tasks.send_response(channel, response);
            }
            Command::Connected(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::RoutingPeers(reply) => {
                let mut peers = Vec::new();
                for bucket in b.kad.kbuckets() {
                    for entry in bucket.iter() {
                        peers.push(*entry.node.key.preimage());
                    }
                }
                let _ = reply.send(peers);
            }
            Command::Shutdown => {}
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.identified(peer_id, info),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            })) => self.query_progressed(id, result, step.last),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                is_new_peer: true,
                ..
            })) => self.announce_due = true,
            SwarmEvent::Behaviour(BehaviourEvent::Tasks(event)) => self.task_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Objects(event)) => self.object_event(event),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!(peer = %peer_id, "connected");
            }
            _ => {}
        }
    }

    /// Re-publishes provider records when new peers arrived since the last time (checked on a
    /// short tick, so a burst of arrivals costs one round) and every [`ANNOUNCE_EVERY`] anyway.
    fn announce(&mut self) {
        let due = self.announce_due || self.announced.elapsed() >= ANNOUNCE_EVERY;
        if self.provided.is_empty() || !due {
            return;
        }
        self.announce_due = false;
        self.announced = Instant::now();
        for key in &self.provided {
            let _ = self.swarm.behaviour_mut().kad.start_providing(key.clone());
        }
    }

    fn identified(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != PROTOCOL_VERSION {
            tracing::debug!(%peer, version = info.protocol_version, "not a d402 peer");
            return;
        }
        // Prefer the signed peer record: its addresses are signed by the peer's own key, so a
        // third party cannot plant addresses for it.
        let (addresses, signed) = match info
            .signed_peer_record
            .and_then(|envelope| PeerRecord::from_signed_envelope(envelope).ok())
            .filter(|record| record.peer_id() == peer)
        {
            Some(record) => (record.addresses().to_vec(), true),
            None => (info.listen_addrs, false),
        };
        let b = self.swarm.behaviour_mut();
        for addr in &addresses {
            b.kad.add_address(&peer, addr.clone());
        }
        // A redb commit syncs to disk: keep it off the swarm loop.
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = state.remember_peer(&peer, &addresses, signed, crate::now_ms()) {
                tracing::warn!("cannot remember peer {peer}: {e}");
            }
        });
        if !self.bootstrapped {
            // The first peer we hear from lets us find the rest of the network.
            self.bootstrapped = b.kad.bootstrap().is_ok();
        }
    }

    fn query_progressed(&mut self, id: kad::QueryId, result: QueryResult, last: bool) {
        if let QueryResult::GetProviders(result) = result {
            if let Some((found, _)) = self.providers.get_mut(&id)
                && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result
            {
                found.extend(providers);
            }
            if last && let Some((found, reply)) = self.providers.remove(&id) {
                let _ = reply.send(found);
            }
        }
    }

    fn task_event(&mut self, event: request_response::Event<TaskRequest, TaskResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let work = self.inbound.task(peer, request);
                    let commands = self.handle.commands.clone();
                    tokio::spawn(async move {
                        let response = work.await;
                        let _ = commands.send(Command::RespondTask { channel, response });
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.tasks.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.tasks.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Malformed, oversized or abandoned requests end here: the stream is dropped,
                // the node carries on.
                tracing::debug!(%peer, "inbound task request dropped: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn object_event(&mut self, event: request_response::Event<ObjectRequest, ObjectReply>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let reply = match self.inbound.object(&request.cid) {
                        Some(bytes) => ObjectReply::found(&bytes),
                        None => ObjectReply::missing(),
                    };
                    tracing::trace!(%peer, cid = %request.cid, "serving object");
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .objects
                        .send_response(channel, reply);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.objects.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.objects.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound object request dropped: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_flags_become_multiaddrs() {
        assert_eq!(
            peer_addr("127.0.0.1:4001").unwrap().to_string(),
            "/ip4/127.0.0.1/tcp/4001"
        );
        assert_eq!(
            peer_addr("/ip4/10.0.0.1/tcp/9").unwrap().to_string(),
            "/ip4/10.0.0.1/tcp/9"
        );
        assert!(matches!(
            peer_addr("no-port"),
            Err(NetError::BadAddress { .. })
        ));
    }
}
