//! Limits a task runs under (the sandbox in `d402_host` enforces them).
//!
//! Every limit comes from the manifest and is capped by node policy ([`Limits::capped_by`]), so a
//! manifest can ask for less than the node allows but never more.

use std::time::Duration;

use crate::receipt::LimitsRecord;

/// What one task may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deterministic instruction budget (wasmtime fuel).
    pub fuel: u64,
    /// Linear memory, summed over the component's memories.
    pub memory_bytes: u64,
    /// Elements in any one table.
    pub table_elements: u64,
    /// Wall time for the whole task, host calls included.
    pub wall_time: Duration,
    /// Size of the output JSON.
    pub output_bytes: u64,
    /// Captured stdout and stderr, each.
    pub stdio_bytes: usize,
    /// Bytes of `log` messages kept; later messages are counted and dropped.
    pub log_bytes: usize,
    /// `log` messages kept, whatever their size: empty messages cost the host a record each, so a
    /// byte budget alone never stops a flood of them. Later messages are counted and dropped.
    pub log_records: usize,
    /// Handles the guest may hold at once in its resource table (streams, pollables, …). Each is
    /// host memory held on the guest's behalf, outside its linear memory.
    pub handles: usize,
    /// The most random bytes one `get-random-bytes` call may ask for (the host allocates them).
    pub random_bytes_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 20_000_000_000,
            memory_bytes: 256 * 1024 * 1024,
            table_elements: 100_000,
            wall_time: Duration::from_secs(30),
            output_bytes: 16 * 1024 * 1024,
            stdio_bytes: 64 * 1024,
            log_bytes: 64 * 1024,
            log_records: 1_000,
            handles: 10_000,
            random_bytes_per_call: 1024 * 1024,
        }
    }
}

impl Limits {
    /// Each limit lowered to the node's cap where it asks for more.
    pub fn capped_by(self, cap: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(cap.fuel),
            memory_bytes: self.memory_bytes.min(cap.memory_bytes),
            table_elements: self.table_elements.min(cap.table_elements),
            wall_time: self.wall_time.min(cap.wall_time),
            output_bytes: self.output_bytes.min(cap.output_bytes),
            stdio_bytes: self.stdio_bytes.min(cap.stdio_bytes),
            log_bytes: self.log_bytes.min(cap.log_bytes),
            log_records: self.log_records.min(cap.log_records),
            handles: self.handles.min(cap.handles),
            random_bytes_per_call: self.random_bytes_per_call.min(cap.random_bytes_per_call),
        }
    }

    /// The part of the limits a receipt records (what a replay must reuse).
    pub fn record(&self) -> LimitsRecord {
        LimitsRecord {
            fuel: self.fuel,
            memory_bytes: self.memory_bytes,
            wall_time_ms: self.wall_time.as_millis().try_into().unwrap_or(u64::MAX),
            output_bytes: self.output_bytes,
        }
    }

    /// Limits from a receipt, for a replay.
    pub fn from_record(record: &LimitsRecord) -> Limits {
        Limits {
            fuel: record.fuel,
            memory_bytes: record.memory_bytes,
            wall_time: Duration::from_millis(record.wall_time_ms),
            output_bytes: record.output_bytes,
            ..Limits::default()
        }
    }
}
