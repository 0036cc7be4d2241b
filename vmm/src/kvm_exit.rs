//! What the vCPU loop does with one KVM exit, as a function of the exit
//! alone (after Firecracker's `handle_kvm_exit`), so unit tests can drive it
//! with made-up exits: MMIO goes to the MMIO bus here, port I/O and internal
//! errors need the vCPU's `kvm_run` and registers and are handed back.
//!
//! This is the hot path: a port or MMIO access costs the guest about 10 µs
//! on PVM, the VMM's share (match, bus lookup, device) tens of nanoseconds.

use std::collections::HashSet;
use std::sync::Arc;

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::VcpuExit;

use crate::bus::Bus;
use crate::stop::StopReason;

/// Exit counters, reported at the end of a run (`--log-level debug`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    pub pio: u64,
    /// Console writes KVM queued instead of exiting (`console_tx.rs`).
    pub pio_queued: u64,
    pub mmio: u64,
    pub int3_completed: u64,
    /// ud0/ud1/ud2 completed by injecting #UD (kernel BUG/WARN).
    pub ud_completed: u64,
    /// fwait skipped (Linux's fpu__drop at a task's exit).
    pub fwait_completed: u64,
    pub interrupted: u64,
    pub other: u64,
}

/// What the vCPU does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Handled: enter the guest again.
    Resume,
    /// The run ends.
    Stop(StopReason),
    /// Port I/O: the vCPU reads it from `kvm_run` (string I/O needs the
    /// element size the exit does not carry) and calls [`dispatch_port_io`].
    PortIo,
    /// KVM_EXIT_INTERNAL_ERROR: the vCPU looks at the instruction.
    InternalError,
    /// KVM_RUN was interrupted (a kick): the vCPU may look whether the
    /// guest halted for good.
    Interrupted,
}

/// Accesses no device claimed, each logged once (bounded, so a guest
/// scanning the address space cannot grow it without limit).
#[derive(Debug, Default)]
pub struct UnhandledAccesses(HashSet<(bool, u64)>);

impl UnhandledAccesses {
    const MAX: usize = 4096;

    #[cold]
    fn report(&mut self, pio: bool, addr: u64, len: usize, dir: &str) {
        if self.0.len() < Self::MAX && self.0.insert((pio, addr)) {
            log::debug!(
                "unhandled {} {dir} of {len} bytes at {addr:#x} (reported once)",
                if pio { "port" } else { "MMIO" }
            );
        }
    }

    /// How many distinct addresses were reported.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What [`handle_kvm_exit`] works on: the buses and the vCPU's counters
/// (one per vCPU, next to its fd).
pub struct ExitContext {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub stats: ExitStats,
    pub unhandled: UnhandledAccesses,
}

impl ExitContext {
    pub fn new(pio: Arc<Bus>, mmio: Arc<Bus>) -> Self {
        ExitContext {
            pio,
            mmio,
            stats: ExitStats::default(),
            unhandled: UnhandledAccesses::default(),
        }
    }
}

/// Handles the result of one KVM_RUN.
#[inline]
pub fn handle_kvm_exit(
    ctx: &mut ExitContext,
    exit: Result<VcpuExit<'_>, kvm_ioctls::Error>,
) -> ExitAction {
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            ctx.stats.interrupted += 1;
            return ExitAction::Interrupted;
        }
        Err(e) => return ExitAction::Stop(StopReason::VmmError(format!("KVM_RUN failed: {e}"))),
    };
    match exit {
        VcpuExit::MmioRead(addr, data) => {
            ctx.stats.mmio += 1;
            if !ctx.mmio.read(addr, data) {
                data.fill(0xff);
                ctx.unhandled.report(false, addr, data.len(), "read");
            }
            ExitAction::Resume
        }
        VcpuExit::MmioWrite(addr, data) => {
            ctx.stats.mmio += 1;
            if !ctx.mmio.write(addr, data) {
                ctx.unhandled.report(false, addr, data.len(), "write");
            }
            ExitAction::Resume
        }
        VcpuExit::IoIn(..) | VcpuExit::IoOut(..) => {
            ctx.stats.pio += 1;
            ExitAction::PortIo
        }
        VcpuExit::InternalError => ExitAction::InternalError,
        VcpuExit::Hlt => ExitAction::Stop(StopReason::Halted),
        VcpuExit::Shutdown => ExitAction::Stop(StopReason::TripleFault),
        VcpuExit::SystemEvent(kind, _) => ExitAction::Stop(match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => StopReason::Halted,
            KVM_SYSTEM_EVENT_RESET => StopReason::Reset,
            KVM_SYSTEM_EVENT_CRASH => StopReason::Panic,
            k => StopReason::Fault(format!("KVM system event {k}")),
        }),
        VcpuExit::FailEntry(reason, cpu) => ExitAction::Stop(StopReason::Fault(format!(
            "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {reason:#x} on cpu {cpu}"
        ))),
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => {
            ctx.stats.interrupted += 1;
            ExitAction::Resume
        }
        other => {
            ctx.stats.other += 1;
            ExitAction::Stop(StopReason::Fault(format!("unexpected KVM exit {other:?}")))
        }
    }
}

/// One port I/O exit: `data` holds `data.len() / size` accesses of `size`
/// bytes at `port` (string I/O), read from or written to the port bus.
pub fn dispatch_port_io(
    ctx: &mut ExitContext,
    port: u16,
    size: usize,
    is_in: bool,
    data: &mut [u8],
) {
    if size == 0 {
        return;
    }
    let port = u64::from(port);
    if is_in {
        for chunk in data.chunks_exact_mut(size) {
            if !ctx.pio.read(port, chunk) {
                chunk.fill(0xff);
                ctx.unhandled.report(true, port, size, "read");
            }
        }
    } else {
        for chunk in data.chunks_exact(size) {
            if !ctx.pio.write(port, chunk) {
                ctx.unhandled.report(true, port, size, "write");
            }
        }
    }
}

#[cfg(test)]
#[path = "kvm_exit_tests.rs"]
mod tests;
