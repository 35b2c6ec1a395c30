//! The `ResourceLimiter` that enforces the memory and table part of a task's [`Limits`].

pub(crate) use d402_core::limits::Limits;

/// Enforces the memory and table limits of one store and remembers the peak and any breach.
///
/// A breach is returned to wasmtime as an error, which traps the guest at once: a guest allocator
/// that is told "no" would usually abort with an `unreachable` that says nothing about why.
#[derive(Debug)]
pub(crate) struct MemoryGuard {
    memory_limit: usize,
    table_limit: usize,
    /// Bytes held by all the store's memories together.
    held: usize,
    pub(crate) peak: usize,
    pub(crate) breach: Option<Breach>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breach {
    Memory { requested: usize, limit: usize },
    Table { requested: usize, limit: usize },
}

#[derive(Debug, thiserror::Error)]
#[error("d402 resource limit reached")]
struct LimitReached;

impl MemoryGuard {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            memory_limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_limit: usize::try_from(limits.table_elements).unwrap_or(usize::MAX),
            held: 0,
            peak: 0,
            breach: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryGuard {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Memories only grow, and a new one starts from 0, so the running sum of growth is the
        // total held by the store across all its memories.
        let total = self.held.saturating_add(desired.saturating_sub(current));
        if total > self.memory_limit {
            self.breach = Some(Breach::Memory {
                requested: total,
                limit: self.memory_limit,
            });
            return Err(wasmtime::Error::new(LimitReached));
        }
        self.held = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_limit {
            self.breach = Some(Breach::Table {
                requested: desired,
                limit: self.table_limit,
            });
            return Err(wasmtime::Error::new(LimitReached));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        8
    }
}
