//! Console output without a VM exit per byte: KVM's coalesced port I/O for
//! the UART's transmit register.
//!
//! Linux's serial console polls: for every byte it reads LSR (an exit) and
//! writes THR (another exit). On a PVM host an exit costs the guest tens of
//! microseconds; the boot's 11 KB of console text cost it about 0.8 s.
//! With `KVM_CAP_COALESCED_PIO` KVM queues writes to a port in a ring page
//! instead of exiting, and the vCPU applies them, in order, at its next
//! exit, before it handles that exit ([`TxQueue::drain`]). Every other
//! UART access (the LSR read after each byte) is such an exit, so the
//! device sees the bytes in the order the guest wrote them, and the console
//! shows them at most one poll late.
//!
//! Only for the kernel's console before the guest's tty takes over: from the
//! guest's first THR write until it first turns on the THR-empty interrupt
//! (IER bit 1) with the PC's interrupt gate (MCR OUT2) open, which Linux's
//! serial driver does when the tty starts up (`/init` opening the console),
//! or reads IIR with that interrupt on (an interrupt handler). The port
//! probe sets IER bits with OUT2 clear and clears them at once: the queue
//! stays on (`vmm/src/serial.rs`). Interrupt-driven output waits for the
//! interrupt each THR write raises, and a queued write would raise it only
//! at the guest's next exit, which an idle guest may never make; so from
//! then on every write exits again. Both switches are an ioctl that costs
//! about 4 ms on a PVM host (KVM republishes its I/O bus and waits for an
//! SRCU grace period), too slow to follow the tty driver, which sets and
//! clears the bit for every burst of output; made once each, on the vCPU
//! thread at the exit that asks for it, they cost the VMM's start nothing.
//! Before init the console is the only writer: a boot's port exits went from
//! 23,153 to 13,027 (README, "Machines with PVM KVM"), and to 3,609 once the
//! guest's console polled LSR once per 16 bytes (images/patches/0015).
//!
//! A full ring is harmless: KVM then exits for the write as before.

use std::sync::{Arc, Mutex, PoisonError};

use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};

use crate::bus::Bus;

/// The queue for one port's writes (COM1's THR).
pub struct TxQueue {
    vm: Arc<VmFd>,
    port: u64,
    /// Whether KVM queues the port's writes now.
    phase: Mutex<Phase>,
    /// Taken by a vCPU to read the ring: there is one ring per VM, and its
    /// reader index is not safe for two readers at once. Not `phase`: a
    /// queued write the drain applies reaches the UART, which looks at the
    /// phase.
    ring: Mutex<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not yet: no console write seen.
    Waiting,
    /// KVM queues the port's writes.
    On,
    /// Off for good: the guest's tty uses the THR-empty interrupt, or an
    /// ioctl failed.
    Retired,
}

impl TxQueue {
    /// A queue for writes to `port`, or `None` when KVM cannot queue port
    /// writes. Starts off; every vCPU maps the ring ([`TxQueue::map_ring`])
    /// before the guest runs.
    pub fn new(kvm: &Kvm, vm: Arc<VmFd>, port: u16) -> Option<Arc<Self>> {
        if !kvm.check_extension(Cap::CoalescedPio) {
            return None;
        }
        Some(Arc::new(TxQueue {
            vm,
            port: u64::from(port),
            phase: Mutex::new(Phase::Waiting),
            ring: Mutex::new(()),
        }))
    }

    /// Maps the ring into `fd`'s mapping; without it the vCPU could not
    /// drain, so a failure retires the queue before it starts.
    pub fn map_ring(&self, fd: &mut VcpuFd) {
        if let Err(e) = fd.map_coalesced_mmio_ring() {
            log::warn!("console: cannot map KVM's coalesced I/O ring ({e}); one exit per byte");
            self.retire();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The guest wrote THR with the THR-empty interrupt off: queue its next
    /// writes (the first time only).
    pub fn console_write(&self) {
        let mut phase = self.lock();
        if *phase != Phase::Waiting {
            return;
        }
        *phase = match self.vm.register_coalesced_mmio(self.zone(), 1) {
            Ok(()) => Phase::On,
            Err(e) => {
                log::warn!("console: KVM coalesced port I/O failed ({e}); one exit per byte");
                Phase::Retired
            }
        };
    }

    /// The guest turned the THR-empty interrupt on: every write exits from
    /// now on.
    pub fn retire(&self) {
        let mut phase = self.lock();
        if *phase == Phase::On {
            if let Err(e) = self.vm.unregister_coalesced_mmio(self.zone(), 1) {
                // Writes keep being queued and applied at the next exit; only
                // the THR-empty interrupt may come late.
                log::warn!("console: cannot turn KVM's coalesced port I/O off ({e})");
            }
        }
        *phase = Phase::Retired;
    }

    fn zone(&self) -> IoEventAddress {
        IoEventAddress::Pio(self.port)
    }

    /// Applies the queued writes to `pio`, oldest first; returns how many.
    /// The vCPU calls this after every exit, before handling it.
    #[inline]
    pub fn drain(&self, fd: &mut VcpuFd, pio: &Bus) -> u64 {
        let _held = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n = 0;
        while let Ok(Some(entry)) = fd.coalesced_mmio_read() {
            // KVM wrote `len` (at most 8) bytes; a bad length writes nothing.
            let len = usize::try_from(entry.len).unwrap_or(usize::MAX);
            if let Some(data) = entry.data.get(..len) {
                pio.write(entry.phys_addr, data);
            }
            n += 1;
        }
        n
    }
}
