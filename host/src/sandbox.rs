//! The deterministic WASI a capability sees.
//!
//! No environment, no arguments, no preopened directories, no sockets, no name lookups; a wall clock
//! frozen at the task's timestamp and a monotonic clock that does not move; randomness drawn from a
//! BLAKE3 stream keyed by the task id (so it is the same on every node and in every replay, and is
//! specified by BLAKE3 itself rather than by a random-number crate's version); stdout and stderr
//! captured into capped in-memory pipes.

use std::time::Duration;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::receipt::TaskContext;

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
