// SPDX-License-Identifier: GPL-2.0

//! Where a transfer's time goes, on the guest clock (`ktime_get()`), for the
//! fixed-cost breakdown of `cargo xtask bench` (debugfs `timing`):
//!
//! - **device**: REG_DMA_CMD written -> the interrupt handler runs: the
//!   VMM's MMIO exit, the DMA itself, the interrupt's injection and entry;
//! - **wake-up**: the handler -> the task waiting for the transfer runs
//!   again (completion, scheduler, the way out of the idle loop);
//! - **calls**: time inside the driver per `read()`/`write()` (`rw`),
//!   `MMAP_XFER` (`mmap`) and `XFER_USER` (`user`) call, from entry to
//!   return; less device and wake-up time, that is the driver's own work
//!   (mapping, syncs, descriptors, copies).
//!
//! On PVM hosts guest kernel code is emulated, so the driver's own work is
//! most of a small transfer's cost: this is what shows it.

use crate::state::{bump, get};
use kernel::{bindings, sync::atomic::Atomic};

/// The guest's monotonic clock, ns.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: `ktime_get()` has no preconditions and may be called from interrupt context.
    let t = unsafe { bindings::ktime_get() };
    u64::try_from(t).unwrap_or(0)
}

/// The kinds of call timed, in debugfs order.
#[derive(Clone, Copy)]
pub(crate) enum Call {
    Rw = 0,
    Mmap = 1,
    User = 2,
}


/// Running sums, see the module documentation.
pub(crate) struct Timing {
    /// When the handler last saw DONE or ERROR pending.
    irq_at: Atomic<u64>,
    /// Transfers whose interrupt came (the ones timed).
    irqs_timed: Atomic<u64>,
    start_to_irq_ns: Atomic<u64>,
    irq_to_wake_ns: Atomic<u64>,
    calls: [Atomic<u64>; 3],
    call_ns: [Atomic<u64>; 3],
}

impl Timing {
    pub(crate) const fn new() -> Self {
        Self {
            irq_at: Atomic::new(0),
            irqs_timed: Atomic::new(0),
            start_to_irq_ns: Atomic::new(0),
            irq_to_wake_ns: Atomic::new(0),
            calls: [Atomic::new(0), Atomic::new(0), Atomic::new(0)],
            call_ns: [Atomic::new(0), Atomic::new(0), Atomic::new(0)],
        }
    }

    /// The interrupt handler's mark.
    pub(crate) fn irq(&self) {
        self.irq_at.store(now_ns(), kernel::sync::atomic::Relaxed);
    }

    /// One transfer started at `started` (ns) whose waiter woke at `woke`
    /// after its interrupt.
    pub(crate) fn transfer(&self, started: u64, woke: u64) {
        let irq = get(&self.irq_at);
        if (started..=woke).contains(&irq) {
            bump(&self.irqs_timed, 1);
            bump(&self.start_to_irq_ns, irq - started);
            bump(&self.irq_to_wake_ns, woke - irq);
        }
    }

    /// Times one call of `kind` until the returned guard drops.
    pub(crate) fn call(&self, kind: Call) -> CallTimer<'_> {
        CallTimer {
            timing: self,
            kind,
            started: now_ns(),
        }
    }

    /// `key value` lines for debugfs.
    pub(crate) fn lines(&self) -> [(&'static str, u64); 9] {
        let call = |kind: Call| {
            let i = kind as usize;
            (get(&self.calls[i]), get(&self.call_ns[i]))
        };
        let (rw, mmap, user) = (call(Call::Rw), call(Call::Mmap), call(Call::User));
        [
            ("irqs_timed", get(&self.irqs_timed)),
            ("start_to_irq_ns", get(&self.start_to_irq_ns)),
            ("irq_to_wake_ns", get(&self.irq_to_wake_ns)),
            ("rw_calls", rw.0),
            ("rw_ns", rw.1),
            ("mmap_calls", mmap.0),
            ("mmap_ns", mmap.1),
            ("user_calls", user.0),
            ("user_ns", user.1),
        ]
    }
}

/// Adds the time until it drops to its call kind.
pub(crate) struct CallTimer<'a> {
    timing: &'a Timing,
    kind: Call,
    started: u64,
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        let i = self.kind as usize;
        bump(&self.timing.calls[i], 1);
        bump(&self.timing.call_ns[i], now_ns().saturating_sub(self.started));
    }
}
