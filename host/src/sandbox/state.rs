//! A store's data ([`GuestState`]): the guest's WASI context, its memory
//! limit and CPU budget, the host-call ends when frames go that way, and
//! its outbound connections.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::sandbox::abi::MemorySlot;
use crate::sandbox::hostcalls::{HostCalls, HostEnd};
use crate::sandbox::net::{NetCalls, NetEnd};

/// A store's data: the guest's WASI view and its limits.
pub struct GuestState {
    pub(crate) wasi: WasiP1Ctx,
    /// The channels' guest ends when the frames go through host calls.
    pub(crate) hostcalls: Option<HostEnd>,
    /// The guest's outbound connections.
    pub(crate) net: Option<NetEnd>,
    /// The guest's linear memory, once a host call looked it up.
    pub(crate) memory: Option<wasmtime::Memory>,
    pub(crate) limits: MemoryWatch,
    pub(crate) cpu: Arc<CpuBudget>,
}

/// CPU time a request may use, counted in epoch ticks (10 ms each) during
/// which the guest was running wasm code; waiting on I/O or a sleep does not
/// count. Past the budget the guest is stopped with [`CpuLimitExceeded`].
#[derive(Default)]
pub struct CpuBudget {
    used: AtomicU64,
    /// 0 means no limit.
    limit: AtomicU64,
}

/// What the epoch callback ends a guest's run with when the request's CPU
/// budget is spent; [`crate::sandbox::gone::Gone::CpuLimit`] is told apart
/// by it.
#[derive(Debug, thiserror::Error)]
#[error("cpu_time_limit exceeded")]
pub struct CpuLimitExceeded;

/// How often the epoch ticks (see `sandbox::interpreters::EpochTicker`).
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

impl CpuBudget {
    /// Starts counting for a request; `None` lifts the limit.
    pub fn start(&self, limit: Option<std::time::Duration>) {
        self.used.store(0, Ordering::Relaxed);
        let ticks = limit.map_or(0, |l| (l.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64);
        self.limit.store(ticks, Ordering::Relaxed);
    }

    /// The epoch callback: yield to other tasks, or end the run past the budget.
    pub(crate) fn on_tick(&self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        let used = self.used.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.limit.load(Ordering::Relaxed);
        if limit != 0 && used > limit {
            return Err(wasmtime::Error::new(CpuLimitExceeded));
        }
        Ok(wasmtime::UpdateDeadline::Yield(1))
    }
}

/// What an instance has used, for its group's accounting (the admin
/// listener's /metrics and /status).
#[derive(Default, Debug)]
pub struct Usage {
    /// Thread CPU time spent running the guest: its wasm and the host calls
    /// it makes on the thread that runs it.
    pub cpu_nanos: AtomicU64,
    /// Times the guest asked for more linear memory than memory_limit allows.
    pub memory_refused: AtomicU64,
}

/// The store's limits, which also publish the guest's linear-memory size so
/// the host can report it without touching the running store.
pub(crate) struct MemoryWatch {
    pub(crate) limits: StoreLimits,
    pub(crate) bytes: Arc<AtomicUsize>,
    pub(crate) usage: Arc<Usage>,
}

impl wasmtime::ResourceLimiter for MemoryWatch {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.bytes.store(if allowed { desired } else { current }, Ordering::Relaxed);
        if !allowed {
            self.usage.memory_refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }
}

impl HostCalls for GuestState {
    fn host_end(&mut self) -> Option<&mut HostEnd> {
        self.hostcalls.as_mut()
    }
}

impl MemorySlot for GuestState {
    fn memory_slot(&mut self) -> &mut Option<wasmtime::Memory> {
        &mut self.memory
    }
}

impl NetCalls for GuestState {
    fn net_end(&mut self) -> Option<&mut NetEnd> {
        self.net.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_ends_the_run_past_its_ticks_and_a_new_request_starts_afresh() {
        let cpu = CpuBudget::default();
        cpu.start(Some(std::time::Duration::from_millis(30)));
        for _ in 0..3 {
            assert!(cpu.on_tick().is_ok());
        }
        let spent = cpu.on_tick().err().expect("the fourth tick is over a 30 ms budget");
        assert!(spent.downcast_ref::<CpuLimitExceeded>().is_some(), "{spent:?}");
        cpu.start(None);
        for _ in 0..1000 {
            assert!(cpu.on_tick().is_ok(), "no limit");
        }
    }
}
