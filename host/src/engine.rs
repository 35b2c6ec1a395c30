//! The wasmtime engine, configured once for determinism and speed.
//!
//! Every node must compile with the same settings, or the same component could give different fuel
//! counts or NaN bits on two nodes. The settings that matter for that are fixed here, not
//! configurable: fuel metering, NaN canonicalization, deterministic relaxed SIMD, no threads.
//! What may differ between nodes (pool size, stack size) is in [`EngineSettings`]. The pool's
//! per-instance memory and table sizes are not settings: they come from the node's caps on task
//! limits ([`Limits`]), so that the limit a task is documented to run under is the one in force, and
//! breaking it gives that limit's error rather than a pool error at load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::HostError;
use crate::limits::Limits;

/// How often the epoch advances; wall-time limits are enforced to this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Node-level engine settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Tasks that may run at once (slots in the instance pool).
    pub max_concurrent_tasks: u32,
    /// Native stack available to guest code; deep recursion past it is a `StackOverflow`.
    pub max_wasm_stack: usize,
    /// Fuel metering. Always on for a node: fuel counts are part of receipts and validators compare
    /// them. Off exists only so the benchmarks can measure what metering costs.
    #[doc(hidden)]
    pub fuel_metering: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_concurrent_tasks: 64,
            max_wasm_stack: 512 * 1024,
            fuel_metering: true,
        }
    }
}

/// A configured engine plus the thread that advances its epoch.
pub struct HostEngine {
    engine: Engine,
    pub(crate) fuel_metering: bool,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl HostEngine {
    /// Builds the engine and starts its epoch ticker. `caps` are the node's caps on every task's
    /// limits: the pool's slots are sized to hold exactly what they allow.
    pub fn new(settings: &EngineSettings, caps: &Limits) -> Result<Self, HostError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(settings.fuel_metering)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(settings.max_wasm_stack)
            .parallel_compilation(true)
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
        let instances = settings.max_concurrent_tasks.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            // A Rust component holds a handful of core instances (its module plus shims).
            .total_core_instances(instances * 16)
            .max_core_instances_per_component(16)
            .total_memories(instances * 2)
            .max_memories_per_component(2)
            .total_tables(instances * 8)
            .max_tables_per_component(8)
            .max_memory_size(usize::try_from(caps.memory_bytes).unwrap_or(usize::MAX))
            // Wasmtime's own default (20,000 elements) sits below d402's table limit; a table the
            // limit allows must fit in a slot, and one it refuses must reach the limiter.
            .table_elements(usize::try_from(caps.table_elements).unwrap_or(usize::MAX))
            // Give pages back to the OS after each task, so a memory bomb does not stay resident.
            // (Keeping the first MiB resident was measured slower: a Rust guest's shadow stack fills
            // it, so every task paid a 1 MiB memset.)
            .linear_memory_keep_resident(0)
            .table_keep_resident(0);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|e| HostError::Internal(format!("engine: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("d402-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| HostError::Internal(format!("epoch thread: {e}")))?
        };
        Ok(Self {
            engine,
            fuel_metering: settings.fuel_metering,
            stop,
            ticker: Some(ticker),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A short fingerprint of everything that makes compiled artifacts compatible with this engine
    /// (wasmtime version, settings, CPU features): compiled components are cached under it.
    pub fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
