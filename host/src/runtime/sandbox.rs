//! The sandbox every store runs in: a memory cap through a resource limiter, a CPU-time budget
//! through epoch interruption, and the wasm stack limit (engine-wide, [`MAX_WASM_STACK`]).
//!
//! CPU time. A ticker thread increments the engine's epoch every [`TICK`] (10 ms). Each store's
//! deadline is one tick ahead; when the guest reaches an epoch check (function entries and loop
//! headers) past the deadline, the store's callback charges one tick to the store's budget,
//! yields to the async executor (so a busy guest shares its thread with the rest of the host:
//! tokio polls its I/O and runs other tasks before the guest's task runs again), and sets the
//! deadline one tick ahead again. When the budget is spent the callback traps with
//! [`LimitError::Cpu`]. Checks only happen while wasm runs, so the ticks that pass while the
//! guest awaits a host call (the network, the database, a provider) are not charged, except the
//! one in which the guest resumes: a call's budget counts guest execution, give or take one tick
//! per host call that spans a tick. A budget is per store, which is per call: one provider call,
//! or one attempt of an invocation.
//!
//! [`MAX_WASM_STACK`]: super::limits::MAX_WASM_STACK

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

use super::limits::{Effective, LimitError, Limits};
use super::{HostState, Runtime};

/// How often the epoch advances: the granularity of CPU-time accounting.
pub const TICK: Duration = Duration::from_millis(10);

/// Instances, tables and memories one store may create, and elements per table.
const MAX_INSTANCES: usize = 16;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Linear memory all running instances of the host may hold together: past it, a guest that
/// grows its memory traps (its call fails, retryably) instead of the host running out.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` from the budget, or says it cannot.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The limits and their use of one store.
#[derive(Debug)]
pub struct Sandbox {
    limits: Effective,
    /// Bytes of linear memory granted so far, all memories together.
    memory: usize,
    /// Ticks charged so far.
    ticks: u64,
    /// The host-wide budget the memory is taken from (none for a placeholder).
    budget: Option<Arc<MemoryBudget>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.memory);
        }
    }
}

impl Sandbox {
    pub fn new(limits: Effective) -> Self {
        Sandbox {
            limits,
            memory: 0,
            ticks: 0,
            budget: None,
        }
    }

    /// A sandbox whose memory also counts against the host-wide `budget`.
    pub fn budgeted(limits: Effective, budget: Arc<MemoryBudget>) -> Self {
        Sandbox {
            limits,
            memory: 0,
            ticks: 0,
            budget: Some(budget),
        }
    }

    pub fn limits(&self) -> Effective {
        self.limits
    }

    /// Charges one tick of guest execution; fails once the budget is spent.
    fn charge_tick(&mut self) -> Result<(), LimitError> {
        self.ticks += 1;
        let budget = self
            .limits
            .cpu
            .as_millis()
            .div_ceil(TICK.as_millis())
            .max(1);
        if u128::from(self.ticks) >= budget {
            return Err(LimitError::Cpu {
                limit: self.limits.cpu,
            });
        }
        Ok(())
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let wanted = self.memory + growth;
        if wanted > self.limits.memory_bytes {
            // A trap rather than a failed `memory.grow`: guests (Rust's allocator among them)
            // abort on allocation failure with an `unreachable` that would name nothing.
            return Err(LimitError::Memory {
                limit: self.limits.memory_bytes,
                wanted,
            }
            .into());
        }
        if let Some(budget) = &self.budget
            && !budget.take(growth)
        {
            return Err(LimitError::HostMemory {
                limit: budget.limit,
            }
            .into());
        }
        self.memory = wanted;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimitError::Resource {
                what: "table elements",
                limit: MAX_TABLE_ELEMENTS,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl Runtime {
    /// A store for `state`, sandboxed with the limits of the deployment it runs
    /// (`state.component`; host defaults when it has none or is unknown).
    pub fn new_store(&self, state: HostState) -> Store<HostState> {
        let limits = self
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .deployments
            .get(&*state.component)
            .map(|d| d.limits)
            .unwrap_or_default();
        self.new_store_with(state, limits)
    }

    /// A store for `state` under `limits`.
    pub fn new_store_with(&self, mut state: HostState, limits: Limits) -> Store<HostState> {
        state.limits = Sandbox::budgeted(self.effective_limits(&limits), self.memory.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| {
            cx.data_mut().limits.charge_tick()?;
            // tokio's yield lets the runtime poll its I/O driver before this task runs again,
            // so a busy guest cannot starve the host's sockets (a plain self-wake can).
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// `limits` with this host's defaults filling the gaps.
    pub fn effective_limits(&self, limits: &Limits) -> Effective {
        limits.resolve(Effective {
            memory_bytes: self.settings.memory_limit,
            cpu: self.settings.cpu_limit,
            wall: self.settings.wall_limit,
        })
    }
}

/// Starts the thread that advances `engine`'s epoch every [`TICK`]; it ends with the engine.
pub(super) fn start_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("cairn-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(memory_mib: u64, cpu_ms: u64) -> Sandbox {
        Sandbox::new(
            Limits {
                memory_mib: Some(memory_mib),
                cpu_ms: Some(cpu_ms),
                wall_ms: None,
            }
            .resolve(Effective::DEFAULT),
        )
    }

    #[test]
    fn memory_is_counted_across_memories_and_capped() {
        let mut s = sandbox(2, 1000);
        assert!(s.memory_growing(0, 1 << 20, None).unwrap());
        assert!(s.memory_growing(0, 1 << 19, None).unwrap());
        let err = s.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        assert!(
            err.to_string().starts_with("memory limit (2 MiB) exceeded"),
            "{err}"
        );
        assert!(s.memory_growing(1 << 19, 1 << 20, None).unwrap());
    }

    #[test]
    fn running_instances_share_the_host_memory_budget() {
        let budget = MemoryBudget::new(3 << 20);
        let limits = sandbox(2, 1000).limits();
        let mut a = Sandbox::budgeted(limits, budget.clone());
        let mut b = Sandbox::budgeted(limits, budget.clone());
        assert!(a.memory_growing(0, 2 << 20, None).unwrap());
        let err = b.memory_growing(0, 2 << 20, None).unwrap_err();
        assert!(err.to_string().contains("host-wide"), "{err}");
        assert!(b.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(budget.used(), 3 << 20);
        drop(a);
        assert_eq!(budget.used(), 1 << 20);
        assert!(b.memory_growing(1 << 20, 2 << 20, None).unwrap());
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_cpu_budget_is_spent_tick_by_tick() {
        let mut s = sandbox(1, 50);
        for _ in 0..4 {
            s.charge_tick().unwrap();
        }
        assert_eq!(
            s.charge_tick().unwrap_err().to_string(),
            "cpu time limit (50ms) exceeded"
        );
    }
}
