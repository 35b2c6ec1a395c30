//! Running one task: a fresh instance per task, under the task's limits, with its imports recorded
//! as evidence (live) or served from evidence (replay), ending in a signed receipt.

use std::sync::Arc;
use std::time::Instant;

use cap_std::fs::Dir;
use wasmtime::component::{HasSelf, Linker, ResourceTable, ResourceTableError};
use wasmtime::{Store, Trap};

use crate::compiled::{ComponentCache, LoadSource, Prepared};
use crate::egress::{EgressPolicy, NetworkEgress};
use crate::engine::{EPOCH_TICK, EngineSettings, HostEngine};
use crate::error::HostError;
use crate::evidence::{EvidenceObjects, EvidenceRecorder};
use crate::limits::{Breach, Limits, MemoryGuard};
use crate::sandbox::{Stdio, bound_wasi, wasi_for};
use d402_core::canonical::Canonicalizer;
use d402_core::content_id::ContentId;
use d402_core::identity::Identity;
use d402_core::receipt::{CapabilityRef, Receipt, ReceiptBody, TaskContext};

use crate::imports::{Capability, CapabilityError, EvidenceMode, LogLine, TaskIo, TaskState};

/// One task to run.
pub struct Task<'a> {
    pub implementation: ContentId,
    pub input: &'a str,
    pub context: TaskContext,
    pub limits: Limits,
    pub egress: EgressPolicy,
    pub evidence: EvidenceMode,
    pub canonicalizer: Canonicalizer,
    pub capability: Option<CapabilityRef>,
    pub manifest: Option<ContentId>,
}

impl<'a> Task<'a> {
    /// A task with the default limits, no egress, no snapshots, the JCS canonicalizer and the clock
    /// at the Unix epoch. Fill in what the task needs with struct update syntax.
    pub fn defaults(implementation: ContentId, id: &str) -> Self {
        Task {
            implementation,
            input: "{}",
            context: TaskContext {
                id: id.to_string(),
                timestamp_ms: 0,
            },
            limits: Limits::default(),
            egress: EgressPolicy::default(),
            evidence: EvidenceMode::Live {
                snapshotter: Arc::new(d402_core::FrozenPages::new()),
            },
            canonicalizer: Canonicalizer::Jcs,
            capability: None,
            manifest: None,
        }
    }
}

/// A finished task.
#[derive(Debug)]
pub struct Execution {
    pub output: String,
    pub receipt: Receipt,
    /// Input, output, evidence records and bodies: store these to make the run replayable.
    pub objects: EvidenceObjects,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub logs: Vec<LogLine>,
    /// Log messages dropped because the log cap was reached.
    pub logs_dropped: usize,
}

/// Node-wide host configuration.
#[derive(Default)]
pub struct HostConfig {
    pub engine: EngineSettings,
    /// The node's caps on every task's limits.
    pub max_limits: Limits,
    /// Folder for compiled artifacts; `None` keeps them in memory only.
    pub compiled_cache: Option<Dir>,
}

/// The capability host of one node. Runs many tasks at once from many threads.
pub struct Host {
    engine: HostEngine,
    linker: Linker<TaskState>,
    cache: ComponentCache,
    network: Arc<NetworkEgress>,
    identity: Arc<Identity>,
    max_limits: Limits,
}

impl Host {
    /// A host that signs receipts as `identity`.
    pub fn new(config: HostConfig, identity: Arc<Identity>) -> Result<Self, HostError> {
        let engine = HostEngine::new(&config.engine, &config.max_limits)?;
        let mut linker = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| HostError::Internal(format!("linking WASI: {e}")))?;
        bound_wasi(&mut linker).map_err(|e| HostError::Internal(format!("bounding WASI: {e}")))?;
        Capability::add_to_linker::<TaskState, HasSelf<TaskState>>(&mut linker, |s| s)
            .map_err(|e| HostError::Internal(format!("linking d402 host: {e}")))?;
        let cache = ComponentCache::new(
            config.compiled_cache,
            engine.fingerprint(),
            config.max_limits,
        );
        Ok(Self {
            engine,
            linker,
            cache,
            network: Arc::new(NetworkEgress::new()),
            identity,
            max_limits: config.max_limits,
        })
    }

    /// The node's network client for egress (shared with snapshotters that fetch).
    pub fn network(&self) -> Arc<NetworkEgress> {
        self.network.clone()
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        self.engine.engine()
    }

    #[cfg(test)]
    pub(crate) fn linker(&self) -> &Linker<TaskState> {
        &self.linker
    }

    /// Loads a component under its implementation CID, refusing bytes that do not hash to it and
    /// components that import anything d402 does not provide. Compiles only on a cold cache.
    pub fn load(&self, implementation: &ContentId, bytes: &[u8]) -> Result<LoadSource, HostError> {
        self.cache
            .load(self.engine.engine(), &self.linker, implementation, bytes)
            .map(|(_, source)| source)
    }

    /// Whether `implementation` is loaded and ready.
    pub fn is_loaded(&self, implementation: &ContentId) -> bool {
        self.cache.get(implementation).is_some()
    }

    /// Runs a task in a fresh instance and returns its output and signed receipt.
    pub fn execute(&self, task: Task<'_>) -> Result<Execution, HostError> {
        let prepared: Arc<Prepared> = self
            .cache
            .get(&task.implementation)
            .ok_or(HostError::NotLoaded(task.implementation))?;
        let limits = task.limits.capped_by(&self.max_limits);
        if serde_json::from_str::<serde::de::IgnoredAny>(task.input).is_err() {
            return Err(HostError::InvalidInput("input is not JSON text".into()));
        }
        let started = Instant::now();
        let (wasi, stdio) = wasi_for(&task.context, limits.stdio_bytes);
        let wall_time_ms = limits.record().wall_time_ms;
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.handles);
        let state = TaskState {
            wasi,
            table,
            limiter: MemoryGuard::new(&limits),
            io: TaskIo {
                mode: task.evidence,
                recorder: EvidenceRecorder::default(),
                requests_left: task.egress.max_requests,
                bytes_left: task.egress.max_response_bytes,
                policy: task.egress,
                network: self.network.clone(),
                deadline: started + limits.wall_time,
                wall_time_ms,
                fatal: None,
                logs: Vec::new(),
                log_bytes_left: limits.log_bytes,
                log_records_left: limits.log_records,
                logs_dropped: 0,
                random_bytes_per_call: limits.random_bytes_per_call,
                handles: limits.handles,
            },
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.engine.fuel_metering {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| HostError::Internal(format!("fuel: {e}")))?;
        }
        let ticks = (limits.wall_time.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let result = prepared
            .pre
            .instantiate(&mut store)
            .and_then(|instance| instance.call_run(&mut store, task.input));
        let fuel_used = match store.get_fuel() {
            Ok(left) => limits.fuel - left,
            Err(_) => 0,
        };
        let wall_time_us = started.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
        let output = match result {
            Ok(Ok(output)) => output,
            Ok(Err(guest)) => return Err(guest_error(guest)),
            Err(trap) => return Err(classify_trap(trap, &mut store, &limits, &stdio)),
        };
        let state = store.into_data();
        if output.len() as u64 > limits.output_bytes {
            return Err(HostError::OutputTooLarge {
                what: "output",
                size: output.len() as u64,
                limit: limits.output_bytes,
            });
        }
        let value: serde_json::Value =
            serde_json::from_str(&output).map_err(|e| HostError::InvalidOutput(e.to_string()))?;
        let canonical_output = task
            .canonicalizer
            .canonical_hash(&value)
            .map_err(|e| HostError::InvalidOutput(e.to_string()))?;

        let TaskIo {
            mode,
            recorder,
            logs,
            logs_dropped,
            ..
        } = state.io;
        // A replay's receipt names the evidence it was served, so it compares with the original.
        let evidence = match &mode {
            EvidenceMode::Live { .. } => recorder.records,
            EvidenceMode::Replay(book) => book.served().to_vec(),
        };
        let mut objects = recorder.objects;
        let input_cid = objects.add(task.input.as_bytes().to_vec());
        let output_cid = objects.add(output.clone().into_bytes());
        let receipt = ReceiptBody {
            d402_receipt: 1,
            capability: task.capability,
            manifest: task.manifest,
            implementation: task.implementation,
            input: input_cid,
            task: task.context,
            limits: limits.record(),
            evidence,
            output: output_cid,
            canonicalizer: task.canonicalizer,
            canonical_output,
            fuel_used,
            peak_memory_bytes: state.limiter.peak as u64,
            wall_time_us,
            worker: String::new(),
        }
        .sign(&self.identity)
        .map_err(|e| HostError::Internal(e.to_string()))?;
        Ok(Execution {
            output,
            receipt,
            objects,
            stdout: stdio.stdout.contents().to_vec(),
            stderr: stdio.stderr.contents().to_vec(),
            logs,
            logs_dropped,
        })
    }
}

fn guest_error(e: CapabilityError) -> HostError {
    let (code, message) = match e {
        CapabilityError::InvalidInput(m) => ("invalid_input".to_string(), m),
        CapabilityError::BlockedPage(m) => ("blocked_page".to_string(), m),
        CapabilityError::Upstream(m) => ("upstream".to_string(), m),
        CapabilityError::Failed(f) => (f.code, f.message),
    };
    HostError::Guest { code, message }
}

/// Turns whatever stopped the guest into the error that says why. The host's own records (a fatal
/// egress decision, a memory breach) are consulted before the trap code, because they know more.
fn classify_trap(
    error: wasmtime::Error,
    store: &mut Store<TaskState>,
    limits: &Limits,
    stdio: &Stdio,
) -> HostError {
    let state = store.data_mut();
    if let Some(fatal) = state.io.fatal.take() {
        return fatal;
    }
    match state.limiter.breach {
        Some(Breach::Memory { requested, limit }) => {
            return HostError::MemoryLimit {
                requested: requested as u64,
                limit: limit as u64,
            };
        }
        Some(Breach::Table { requested, limit }) => {
            return HostError::TableLimit {
                requested: requested as u64,
                limit: limit as u64,
            };
        }
        None => {}
    }
    if let Some(ResourceTableError::Full) = error.downcast_ref::<ResourceTableError>() {
        return HostError::ResourceLimit {
            what: "handles",
            requested: state.io.handles as u64 + 1,
            limit: state.io.handles as u64,
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => return HostError::FuelExhausted { limit: limits.fuel },
            Trap::Interrupt => {
                return HostError::WallTimeExceeded {
                    limit_ms: state.io.wall_time_ms,
                };
            }
            Trap::StackOverflow => return HostError::StackOverflow,
            _ => {}
        }
    }
    for (what, pipe) in [("stdout", &stdio.stdout), ("stderr", &stdio.stderr)] {
        let size = pipe.contents().len();
        if size >= limits.stdio_bytes {
            return HostError::OutputTooLarge {
                what,
                size: size as u64,
                limit: limits.stdio_bytes as u64,
            };
        }
    }
    HostError::GuestTrap(format!("{error:#}"))
}
