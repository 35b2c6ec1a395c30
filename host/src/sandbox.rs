//! The deterministic WASI a capability sees.
//!
//! No environment, no arguments, no preopened directories, no sockets, no name lookups; a wall clock
//! frozen at the task's timestamp and a monotonic clock that does not move; randomness drawn from a
//! BLAKE3 stream keyed by the task id (so it is the same on every node and in every replay, and is
//! specified by BLAKE3 itself rather than by a random-number crate's version); stdout and stderr
//! captured into capped in-memory pipes.
//!
//! Two WASI functions are replaced outright, because wasmtime-wasi's own versions reach outside the
//! task's limits:
//! - a monotonic-clock timer (`subscribe-duration`, `subscribe-instant`) would sleep on the host's
//!   real clock, and epoch interruption cannot stop a guest blocked inside a host call; with the
//!   task's clock stopped, every timer is due at once, so a guest's sleep returns immediately (the
//!   same on every node) and a guest that sleeps in a loop burns fuel and wall time like any loop;
//! - `get-random-bytes` allocates whatever length the guest asks for on the host; here a request
//!   above the task's per-call limit ends the task with `resource_limit`.

use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::random::{insecure, random};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::error::HostError;
use d402_core::receipt::TaskContext;

/// The version of the WASI 0.2 interfaces wasmtime-wasi links; a guest built against any earlier
/// 0.2 release links to them too (the linker matches by semver).
pub(crate) const WASI_VERSION: &str = "0.2.12";

struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct StoppedMonotonicClock;

impl HostMonotonicClock for StoppedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A deterministic random stream: BLAKE3 in extendable-output mode, keyed by purpose and task.
pub(crate) struct SeededRandom(blake3::OutputReader);

impl SeededRandom {
    pub(crate) fn new(purpose: &str, task_id: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(purpose);
        hasher.update(task_id.as_bytes());
        Self(hasher.finalize_xof())
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}

/// Captured standard output and error of one task.
pub(crate) struct Stdio {
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

/// Builds the WASI context of one task.
pub(crate) fn wasi_for(task: &TaskContext, stdio_bytes: usize) -> (WasiCtx, Stdio) {
    let stdout = MemoryOutputPipe::new(stdio_bytes);
    let stderr = MemoryOutputPipe::new(stdio_bytes);
    let mut seed = [0u8; 16];
    SeededRandom::new("d402 2026 insecure-random-seed", &task.id)
        .0
        .fill(&mut seed);
    let ctx = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(FrozenWallClock(Duration::from_millis(task.timestamp_ms)))
        .monotonic_clock(StoppedMonotonicClock)
        .secure_random(SeededRandom::new("d402 2026 secure-random", &task.id))
        .insecure_random(SeededRandom::new("d402 2026 insecure-random", &task.id))
        .insecure_random_seed(u128::from_le_bytes(seed))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build();
    (ctx, Stdio { stdout, stderr })
}

/// What the replaced WASI functions need from a task's state (kept as a trait so this module does
/// not depend on the task that runs it).
pub(crate) trait GuestAllowance: Send + 'static {
    /// The task's resource table, where handles live.
    fn table(&mut self) -> &mut ResourceTable;
    /// The task's deterministic random streams.
    fn random(&mut self) -> &mut WasiRandomCtx;
    /// The most random bytes one call may ask for.
    fn random_bytes_per_call(&self) -> u64;
    /// Ends the task with `error`; the returned error unwinds the guest.
    fn refuse(&mut self, error: HostError) -> wasmtime::Error;
}

/// A timer on a stopped clock: always due.
struct Due;

#[wasmtime_wasi::async_trait]
impl Pollable for Due {
    async fn ready(&mut self) {}
}

fn due<T: GuestAllowance>(state: &mut T) -> wasmtime::Result<(Resource<DynPollable>,)> {
    let table = state.table();
    let timer = table.push(Due)?;
    Ok((subscribe(table, timer)?,))
}

fn random_bytes<T: GuestAllowance>(
    state: &mut T,
    len: u64,
    insecure: bool,
) -> wasmtime::Result<(Vec<u8>,)> {
    let limit = state.random_bytes_per_call();
    if len > limit {
        return Err(state.refuse(HostError::ResourceLimit {
            what: "random bytes in one call",
            requested: len,
            limit,
        }));
    }
    // The bytes themselves still come from wasmtime-wasi's implementation over the task's seeded
    // streams, so they are the same as before this check existed.
    let bytes = if insecure {
        insecure::Host::get_insecure_random_bytes(state.random(), len)?
    } else {
        random::Host::get_random_bytes(state.random(), len)?
    };
    Ok((bytes,))
}

/// Replaces the WASI functions that would escape the task's limits (see the module doc). Call after
/// wasmtime-wasi's own `add_to_linker`.
pub(crate) fn bound_wasi<T: GuestAllowance>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(&format!("wasi:clocks/monotonic-clock@{WASI_VERSION}"))?;
    clock.func_wrap("subscribe-duration", |mut store, (_,): (u64,)| {
        due(store.data_mut())
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (_,): (u64,)| {
        due(store.data_mut())
    })?;
    linker
        .instance(&format!("wasi:random/random@{WASI_VERSION}"))?
        .func_wrap("get-random-bytes", |mut store, (len,): (u64,)| {
            random_bytes(store.data_mut(), len, false)
        })?;
    linker
        .instance(&format!("wasi:random/insecure@{WASI_VERSION}"))?
        .func_wrap("get-insecure-random-bytes", |mut store, (len,): (u64,)| {
            random_bytes(store.data_mut(), len, true)
        })?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn seeded_random_depends_only_on_the_task() {
        let a: Vec<u64> = {
            let mut r = SeededRandom::new("p", "task-1");
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SeededRandom::new("p", "task-1");
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SeededRandom::new("p", "task-2");
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
