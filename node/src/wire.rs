//! The messages nodes exchange, and the one decoder every inbound byte goes through.
//!
//! Frames are a 4-byte big-endian length followed by that many bytes of JSON. The length is
//! checked against the protocol's cap *before* anything is read or allocated, so an oversized or
//! truncated frame costs the receiver at most the cap, and a malformed one is a typed error that
//! drops the stream, never the node. JSON is used (not a binary format) because these messages
//! carry receipts and manifests that are JSON already, and it keeps captures readable.
//!
//! Binary payloads (component bytes, frozen HTML) travel as base64 in [`ObjectReply`]. Every
//! object is named by CID and checked on arrival by the caller ([`crate::objects`]), so the wire
//! layer trusts nothing it decodes.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use d402_core::{ContentId, Receipt};
use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The task protocol: intents, bids, leases, claims, validation.
pub const TASK_PROTOCOL: StreamProtocol = StreamProtocol::new("/d402/task/1");
/// Fetching content-addressed objects (components, manifests, registrations, evidence).
pub const OBJECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/d402/object/1");
/// The Kademlia protocol name: d402's own DHT, separate from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/d402/kad/1");

/// Largest task-protocol frame: a lease carries the task input (capped well below this by policy)
/// and a claim carries the output (capped by the host's output limit).
pub const MAX_TASK_FRAME: usize = 8 << 20;
/// Largest object frame: a component or a frozen page, base64-encoded.
pub const MAX_OBJECT_FRAME: usize = 48 << 20;
/// Largest object we ask for or serve (the frame cap minus base64's growth).
pub const MAX_OBJECT_BYTES: usize = MAX_OBJECT_FRAME / 4 * 3 - 1024;

/// Why a frame was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {len} bytes is over the {max}-byte cap")]
    Oversized { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl From<WireError> for io::Error {
    fn from(e: WireError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A request on the task protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TaskRequest {
    /// "Would you run this?" A worker answers with a bid or a decline.
    Intent(Intent),
    /// "Run this, now, before the lease expires." A worker answers with a claim or a refusal.
    Lease(Box<Lease>),
    /// "Check these claims." A validator answers with a signed verdict or a refusal.
    Validate(Box<ValidationRequest>),
}

/// A response on the task protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum TaskResponse {
    Bid(Bid),
    Decline {
        reason: String,
    },
    Claim(Box<Claim>),
    Verdict(Box<crate::verdict::Verdict>),
    /// The peer would not or could not do what was asked; `code` is stable, `message` is for people.
    Refused {
        code: String,
        message: String,
    },
}

/// What a buyer wants done, before anyone is committed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Intent {
    pub task_id: String,
    /// `ID@VERSION`.
    pub capability: String,
    /// Unix milliseconds by which the result must be back.
    pub deadline_ms: u64,
    /// The most the buyer pays a worker for this task, in the rail's atomic units.
    pub budget: u64,
    /// Size of the input, so a worker can decline inputs it will not take.
    pub input_bytes: u64,
}

/// A worker's offer to run an intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bid {
    pub task_id: String,
    /// `ed25519:<hex>`: the key the worker signs receipts with.
    pub worker: String,
    /// Atomic units asked; at most the intent's budget.
    pub price: u64,
    /// Where the worker is paid, per rail (`--solana-payout-wallet`, `--evm-payout-wallet`).
    pub payout_wallets: d402_registry::CreatorWallets,
    /// The worker's own estimate of how long the task will take.
    pub eta_ms: u64,
}

/// A time-limited commitment to one worker. Everything the worker needs is named by CID, so it
/// runs exactly the implementation the registration names, or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lease {
    pub lease_id: String,
    pub task_id: String,
    /// `ID@VERSION`.
    pub capability: String,
    pub registration: ContentId,
    pub manifest: ContentId,
    pub implementation: ContentId,
    pub input: String,
    /// The task's clock: what the capability sees as "now".
    pub timestamp_ms: u64,
    /// Unix milliseconds after which the coordinator stops waiting and leases elsewhere.
    pub expires_at_ms: u64,
    /// Evidence to replay instead of going to the network ("freeze once, compare many"); empty
    /// means the worker freezes the pages itself.
    pub evidence: Vec<ContentId>,
    /// Objects the evidence needs, so the worker knows what to fetch before it starts.
    pub evidence_objects: Vec<ContentId>,
}

/// A worker's signed answer to a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Claim {
    pub lease_id: String,
    pub output: String,
    pub receipt: Receipt,
    /// Evidence bodies the worker holds and serves on the object protocol (frozen pages, fetch
    /// bodies), so the coordinator and validators can fetch them by CID.
    pub evidence_objects: Vec<ContentId>,
    /// Where the worker is paid for this lease, signed with its receipt key together with the
    /// lease id (`payout_signature`): nobody between the worker and a validator that signs an
    /// escrow release can redirect the pay.
    #[serde(default)]
    pub payout_wallets: d402_registry::CreatorWallets,
    #[serde(default)]
    pub payout_signature: String,
}

impl Claim {
    /// What `payout_signature` signs: the lease id and the payout wallets, as canonical JSON.
    pub fn payout_message(
        lease_id: &str,
        payout_wallets: &d402_registry::CreatorWallets,
    ) -> Result<Vec<u8>, d402_core::content_id::CanonicalJsonError> {
        d402_core::content_id::canonical_json(&serde_json::json!({
            "leaseId": lease_id,
            "payoutWallets": payout_wallets,
        }))
    }

    /// Checks that the payout wallets were signed by the worker that signed the receipt.
    pub fn verify_payout(&self) -> Result<(), String> {
        let message = Self::payout_message(&self.lease_id, &self.payout_wallets)
            .map_err(|e| e.to_string())?;
        d402_core::identity::verify_signature(
            &self.receipt.body.worker,
            &message,
            &self.payout_signature,
        )
        .map_err(|e| format!("payout wallets not signed by the worker: {e}"))
    }
}

/// Claims to check, with what a validator needs to re-run them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationRequest {
    pub task_id: String,
    pub lease: Lease,
    pub claims: Vec<Claim>,
    /// Set when the task's payment is held by a rail that the validator role releases (an
    /// escrow): what to sign if the named claim holds up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRequest>,
    /// For a *scoreable* capability: the comparator the validator runs over the claims' outputs,
    /// named by CID so that anyone can rerun the same comparison. It must be the comparator the
    /// capability's manifest names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<ComparatorRef>,
    /// An honest-snapshot check: an independent worker's run of the same task on its own
    /// freeze of the world, to be compared with the agreed output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_check: Option<SnapshotCheckRequest>,
}

/// What a validator compares to check the frozen evidence a quorum agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotCheckRequest {
    /// The independent worker's claim: the same lease run live, on its own freeze.
    pub claim: Claim,
    pub comparator: ComparatorRef,
    /// The score, in millionths, at or above which the two outputs agree.
    pub threshold: u32,
}

/// A comparator capability, by the CIDs a node fetches and checks it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComparatorRef {
    /// `ID@VERSION`.
    pub capability: String,
    pub registration: ContentId,
    pub manifest: ContentId,
    pub implementation: ContentId,
}

/// A request to sign the release of a task's held payment to the workers of some claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The rail's own description of what it holds (for `base-task-escrow`: chain id, escrow
    /// address and the task's terms); read only by a [`crate::ReleaseSigner`].
    pub context: serde_json::Value,
    /// Indexes into `claims` of the claims whose workers share the pay (a quorum's agreeing
    /// claims). Only those the validator accepts are paid, each to the payout wallets its
    /// worker signed in the claim.
    pub claims: Vec<usize>,
}

/// A request on the object protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRequest {
    pub cid: ContentId,
}

/// The object's bytes, or nothing if the peer does not hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReply {
    /// Base64 of the bytes.
    pub bytes: Option<String>,
}

impl ObjectReply {
    pub fn found(bytes: &[u8]) -> Self {
        Self {
            bytes: Some(BASE64.encode(bytes)),
        }
    }

    pub fn missing() -> Self {
        Self { bytes: None }
    }

    /// The decoded bytes; `Ok(None)` if the peer did not have the object.
    pub fn into_bytes(self) -> Result<Option<Vec<u8>>, WireError> {
        self.bytes
            .map(|b| {
                BASE64
                    .decode(b)
                    .map_err(|e| WireError::Malformed(format!("object bytes: {e}")))
            })
            .transpose()
    }
}

/// Decodes one frame's payload. This is the fuzzed entry point: it must never panic, whatever
/// the bytes.
pub fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], max: usize) -> Result<T, WireError> {
    if payload.len() > max {
        return Err(WireError::Oversized {
            len: payload.len(),
            max,
        });
    }
    serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Encodes a message as one frame payload.
pub fn encode<T: Serialize>(message: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let bytes = serde_json::to_vec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
    if bytes.len() > max {
        return Err(WireError::Oversized {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// Reads one length-prefixed frame, refusing a declared length over `max` before reading it.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::Oversized { len, max }.into());
    }
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(payload).await?;
    io.close().await
}

/// The request-response codec for one protocol: JSON frames under a size cap.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec<Req, Resp> {
    max: usize,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            _types: std::marker::PhantomData,
        }
    }
}

impl<Req, Resp> libp2p::request_response::Codec for FrameCodec<Req, Resp>
where
    Req: Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let payload = read_frame(io, self.max).await?;
        Ok(decode(&payload, self.max)?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let payload = read_frame(io, self.max).await?;
        Ok(decode(&payload, self.max)?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode(&req, self.max)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode(&res, self.max)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let intent = TaskRequest::Intent(Intent {
            task_id: "t1".into(),
            capability: "web.page_to_markdown@1".into(),
            deadline_ms: 10,
            budget: 5,
            input_bytes: 3,
        });
        let bytes = encode(&intent, MAX_TASK_FRAME).unwrap();
        assert_eq!(
            decode::<TaskRequest>(&bytes, MAX_TASK_FRAME).unwrap(),
            intent
        );
    }

    #[test]
    fn hostile_payloads_are_typed_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"{\"type\":\"intent\"}",
            b"{\"type\":\"lease\",\"leaseId\":1}",
            b"{\"type\":\"unknown\"}",
            b"\xff\xfe",
        ] {
            assert!(matches!(
                decode::<TaskRequest>(bad, MAX_TASK_FRAME),
                Err(WireError::Malformed(_))
            ));
        }
        assert_eq!(
            decode::<TaskRequest>(&[b' '; 100], 10),
            Err(WireError::Oversized { len: 100, max: 10 })
        );
    }

    #[test]
    fn a_declared_length_over_the_cap_is_refused_before_reading() {
        // Claims 4 GiB but sends nothing more: the reader must not wait for or allocate it.
        let mut io = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let err = futures::executor::block_on(read_frame(&mut io, MAX_TASK_FRAME)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("over the"), "{err}");
    }

    #[test]
    fn object_replies_decode_or_fail_typed() {
        assert_eq!(
            ObjectReply::found(b"abc").into_bytes().unwrap(),
            Some(b"abc".to_vec())
        );
        assert_eq!(ObjectReply::missing().into_bytes().unwrap(), None);
        let bad = ObjectReply {
            bytes: Some("!!".into()),
        };
        assert!(bad.into_bytes().is_err());
    }

    /// A bounded mutation fuzz on stable Rust, run with every `cargo test` (the coverage-guided
    /// target in `node/fuzz` goes further). Whatever the bytes, decoding returns; it never panics.
    #[test]
    fn mutated_frames_never_panic() {
        let seeds: Vec<Vec<u8>> = vec![
            encode(
                &TaskRequest::Intent(Intent {
                    task_id: "t".into(),
                    capability: "web.page_to_markdown@1".into(),
                    deadline_ms: 1,
                    budget: 2,
                    input_bytes: 3,
                }),
                MAX_TASK_FRAME,
            )
            .unwrap(),
            encode(
                &TaskResponse::Refused {
                    code: "c".into(),
                    message: "m".into(),
                },
                MAX_TASK_FRAME,
            )
            .unwrap(),
            encode(&ObjectReply::found(b"bytes"), MAX_OBJECT_FRAME).unwrap(),
            encode(
                &ObjectRequest {
                    cid: ContentId::of(b"x"),
                },
                MAX_OBJECT_FRAME,
            )
            .unwrap(),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let runs = 20_000;
        let mut accepted = 0;
        for _ in 0..runs {
            let mut bytes = seeds[next() as usize % seeds.len()].clone();
            for _ in 0..1 + next() % 6 {
                let at = if bytes.is_empty() {
                    0
                } else {
                    next() as usize % bytes.len()
                };
                match next() % 5 {
                    0 if !bytes.is_empty() => bytes[at] ^= 1 << (next() % 8),
                    1 => bytes.insert(at, next() as u8),
                    2 if !bytes.is_empty() => {
                        bytes.remove(at);
                    }
                    3 => bytes.truncate(at),
                    _ => {
                        let chunk = bytes[at..].to_vec();
                        bytes.extend_from_slice(&chunk);
                    }
                }
            }
            accepted += usize::from(decode::<TaskRequest>(&bytes, MAX_TASK_FRAME).is_ok());
            accepted += usize::from(decode::<TaskResponse>(&bytes, MAX_TASK_FRAME).is_ok());
            accepted += usize::from(decode::<ObjectReply>(&bytes, MAX_OBJECT_FRAME).is_ok());
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes[..bytes.len().min(4)]);
            let mut io = futures::io::Cursor::new(framed);
            let _ = futures::executor::block_on(read_frame(&mut io, 64));
        }
        eprintln!("wire fuzz: {runs} mutated frames, {accepted} decodes accepted, no panic");
    }
}
