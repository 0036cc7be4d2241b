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
//! Only while the THR-empty interrupt is off (IER bit 1 clear), which is how
//! the console writes (it clears IER for the write). Interrupt-driven output
//! (the tty driver) waits for the interrupt each THR write raises, and a
//! queued write would raise it only at the guest's next exit, which an idle
//! guest may never make. The serial device turns the queue off when the
//! guest sets that bit and on again when it clears it; an IER write is an
//! exit, so the change holds before the guest's next THR write.
//!
//! A full ring is harmless: KVM then exits for the write as before.

use std::sync::{Arc, Mutex, PoisonError};

use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};

use crate::bus::Bus;

/// The queue for one port's writes (COM1's THR).
pub struct TxQueue {
    vm: Arc<VmFd>,
    port: u64,
    /// Whether KVM queues the port's writes now. Also the lock every vCPU
    /// takes to read the ring: there is one ring per VM, and its reader
    /// index is not safe for two readers at once.
    state: Mutex<State>,
}

struct State {
    on: bool,
    /// An ioctl failed: leave the port to normal exits from then on.
    broken: bool,
}

impl TxQueue {
    /// A queue for writes to `port`, or `None` when KVM cannot queue port
    /// writes. Starts off; every vCPU must map the ring
    /// ([`TxQueue::map_ring`]) before it is turned on.
    pub fn new(kvm: &Kvm, vm: Arc<VmFd>, port: u16) -> Option<Arc<Self>> {
        if !kvm.check_extension(Cap::CoalescedPio) {
            return None;
        }
        Some(Arc::new(TxQueue {
            vm,
            port: u64::from(port),
            state: Mutex::new(State {
                on: false,
                broken: false,
            }),
        }))
    }

    /// Maps the ring into `fd`'s mapping; without it the vCPU could not
    /// drain, so a failure turns the queue off for good.
    pub fn map_ring(&self, fd: &mut VcpuFd) {
        if let Err(e) = fd.map_coalesced_mmio_ring() {
            log::warn!("console: cannot map KVM's coalesced I/O ring ({e}); one exit per byte");
            self.set(false);
            self.lock().broken = true;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue the port's writes (`true`) or let each one exit (`false`).
    pub fn set(&self, on: bool) {
        let mut s = self.lock();
        if s.on == on || s.broken {
            return;
        }
        let zone = IoEventAddress::Pio(self.port);
        let r = if on {
            self.vm.register_coalesced_mmio(zone, 1)
        } else {
            self.vm.unregister_coalesced_mmio(zone, 1)
        };
        match r {
            Ok(()) => s.on = on,
            Err(e) => {
                log::warn!("console: KVM coalesced port I/O failed ({e}); one exit per byte");
                s.broken = true;
            }
        }
    }

    /// Applies the queued writes to `pio`, oldest first; returns how many.
    /// The vCPU calls this after every exit, before handling it.
    #[inline]
    pub fn drain(&self, fd: &mut VcpuFd, pio: &Bus) -> u64 {
        let _held = self.lock();
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
