//! The device's interrupts as vfio-user delivers them: eventfds the client
//! sends with SET_IRQS. The device model calls [`EventfdInterrupts`] as it
//! would call KVM's; this file turns that into eventfd writes.
//!
//! - INTx follows VFIO's level semantics: the line is *automasked* when it
//!   fires (one trigger write), and stays masked until the client unmasks it
//!   (an UNMASK action, or a write to the resample eventfd QEMU registers
//!   when KVM's irqfd lowers the line at the guest's EOI). Unmasking with the
//!   device still asserting fires again, so a cause the guest has not
//!   cleared is never lost.
//! - MSI: one vector; the device passes the address/data the guest
//!   programmed, but the client owns the routing (its eventfd is the vector),
//!   so only "vector 0 fired" crosses the socket.

use std::fs::File;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pci::InterruptSink;
use std::io::{Read, Write};
use thiserror::Error;
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX,
};

#[derive(Debug, Error)]
pub enum IrqError {
    #[error("IRQ index {0} has no interrupts (dma24 has INTx and one MSI vector)")]
    Index(u32),
    #[error(
        "IRQ set start {start} + count {count} is beyond the {max} vector(s) of index {index}"
    )]
    Range {
        index: u32,
        start: u32,
        count: u32,
        max: u32,
    },
    #[error("IRQ set flags {0:#x}: exactly one action and one data type are needed")]
    Flags(u32),
    #[error("IRQ set with eventfds sent {got} descriptor(s) for {count} vector(s)")]
    FdCount { got: usize, count: u32 },
    #[error("IRQ set action {action:#x} is not supported on index {index}")]
    Action { index: u32, action: u32 },
    #[error("IRQ set with bools carries {got} byte(s) for {count} vector(s)")]
    BoolCount { got: usize, count: u32 },
}

#[derive(Default)]
struct State {
    /// The level the device drives.
    intx_level: bool,
    /// VFIO's automask: set when the trigger fires, cleared by an unmask.
    intx_masked: bool,
    intx_trigger: Option<File>,
    /// Written by the client's side (KVM) at EOI: an unmask.
    intx_resample: Option<File>,
    msi_trigger: Option<File>,
}

/// The device's interrupt outputs, wired to the client's eventfds.
#[derive(Default)]
pub struct EventfdInterrupts {
    state: Mutex<State>,
}

/// Makes a received descriptor non-blocking, so a client that sends a full
/// pipe instead of an eventfd cannot stall the server on a write.
fn nonblocking(file: File) -> File {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl F_GETFL/F_SETFL on a descriptor we own; no pointers.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    file
}

/// Signals an eventfd (the client's descriptor; one that is not an eventfd
/// only makes the write fail or go nowhere, which is the client's problem).
fn fire(fd: Option<&File>) {
    if let Some(mut fd) = fd {
        if let Err(e) = fd.write_all(&1u64.to_ne_bytes()) {
            log::debug!("interrupt eventfd write failed: {e}");
        }
    }
}

impl EventfdInterrupts {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unmask(st: &mut State) {
        st.intx_masked = false;
        if st.intx_level && st.intx_trigger.is_some() {
            st.intx_masked = true;
            fire(st.intx_trigger.as_ref());
        }
    }

    /// A SET_IRQS request; `data` is what follows the fixed fields (bools).
    pub fn set_irqs(
        &self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        data: &[u8],
        fds: Vec<File>,
    ) -> Result<(), IrqError> {
        let max = match index {
            VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_MSI_IRQ_INDEX => 1,
            _ => return Err(IrqError::Index(index)),
        };
        if start.checked_add(count).is_none_or(|end| end > max) {
            return Err(IrqError::Range {
                index,
                start,
                count,
                max,
            });
        }
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let kind = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        if action.count_ones() != 1 || kind.count_ones() != 1 || flags & !(action | kind) != 0 {
            return Err(IrqError::Flags(flags));
        }
        // Which vectors the request selects (count 0 with DATA_NONE: all off).
        let selected: Vec<bool> = match kind {
            VFIO_IRQ_SET_DATA_NONE => vec![true; count as usize],
            VFIO_IRQ_SET_DATA_BOOL => {
                let bools = data.get(..count as usize).ok_or(IrqError::BoolCount {
                    got: data.len(),
                    count,
                })?;
                bools.iter().map(|&b| b != 0).collect()
            }
            _ => Vec::new(),
        };
        let mut st = self.lock();
        match (index, action) {
            (_, VFIO_IRQ_SET_ACTION_TRIGGER) if kind == VFIO_IRQ_SET_DATA_EVENTFD => {
                if fds.len() > count as usize || (count > 0 && fds.is_empty()) {
                    return Err(IrqError::FdCount {
                        got: fds.len(),
                        count,
                    });
                }
                let fd = fds.into_iter().next().map(nonblocking);
                if index == VFIO_PCI_INTX_IRQ_INDEX {
                    st.intx_trigger = fd;
                    st.intx_masked = false;
                    Self::unmask(&mut st);
                } else {
                    st.msi_trigger = fd;
                }
            }
            (_, VFIO_IRQ_SET_ACTION_TRIGGER) if count == 0 && kind == VFIO_IRQ_SET_DATA_NONE => {
                // Disable the index.
                if index == VFIO_PCI_INTX_IRQ_INDEX {
                    st.intx_trigger = None;
                    st.intx_resample = None;
                } else {
                    st.msi_trigger = None;
                }
            }
            (_, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                // Loopback: fire the selected vectors.
                if selected.first() == Some(&true) {
                    let fd = if index == VFIO_PCI_INTX_IRQ_INDEX {
                        st.intx_trigger.as_ref()
                    } else {
                        st.msi_trigger.as_ref()
                    };
                    fire(fd);
                }
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                if kind == VFIO_IRQ_SET_DATA_EVENTFD {
                    st.intx_resample = fds.into_iter().next().map(nonblocking);
                } else if selected.first() == Some(&true) {
                    Self::unmask(&mut st);
                }
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK)
                if kind != VFIO_IRQ_SET_DATA_EVENTFD =>
            {
                if selected.first() == Some(&true) {
                    st.intx_masked = true;
                }
            }
            _ => return Err(IrqError::Action { index, action }),
        }
        Ok(())
    }

    /// The resample eventfd's descriptor, for the server's poll loop.
    pub fn resample_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.lock().intx_resample.as_ref().map(|e| e.as_raw_fd())
    }

    /// The resample eventfd fired: drain it and unmask.
    pub fn resampled(&self) {
        let mut st = self.lock();
        if let Some(mut fd) = st.intx_resample.as_ref() {
            // Called when poll() saw it readable: the read does not block.
            let mut count = [0u8; 8];
            let _ = fd.read(&mut count);
        }
        Self::unmask(&mut st);
    }

    /// Drops every eventfd (device reset, disconnect).
    pub fn clear(&self) {
        *self.lock() = State::default();
    }
}

impl InterruptSink for EventfdInterrupts {
    fn set_intx(&self, asserted: bool) {
        let mut st = self.lock();
        st.intx_level = asserted;
        if asserted && !st.intx_masked && st.intx_trigger.is_some() {
            st.intx_masked = true;
            fire(st.intx_trigger.as_ref());
        }
    }

    fn signal_msi(&self, _address: u64, _data: u32) {
        fire(self.lock().msi_trigger.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, IntoRawFd};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn pair() -> (EventFd, File) {
        let e = EventFd::new(EFD_NONBLOCK).unwrap();
        let raw = e.try_clone().unwrap().into_raw_fd();
        // SAFETY: `raw` was just released by into_raw_fd; the File owns it.
        let f = unsafe { File::from_raw_fd(raw) };
        (e, f)
    }

    const TRIGGER_FD: u32 = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;

    #[test]
    fn intx_is_automasked_until_unmasked() {
        let irq = EventfdInterrupts::default();
        let (seen, fd) = pair();
        irq.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, TRIGGER_FD, 0, 1, &[], vec![fd])
            .unwrap();
        irq.set_intx(true);
        assert_eq!(seen.read().unwrap(), 1);
        irq.set_intx(false);
        irq.set_intx(true); // still masked: no second edge
        assert!(seen.read().is_err());
        let unmask = VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_NONE;
        irq.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, unmask, 0, 1, &[], vec![])
            .unwrap();
        assert_eq!(seen.read().unwrap(), 1, "still asserted: fires again");
        irq.set_intx(false);
        let (resample, rfd) = pair();
        let unmask_fd = VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_EVENTFD;
        irq.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, unmask_fd, 0, 1, &[], vec![rfd])
            .unwrap();
        resample.write(1).unwrap();
        irq.resampled(); // deasserted: unmask only
        irq.set_intx(true);
        assert_eq!(seen.read().unwrap(), 1);
    }

    #[test]
    fn msi_goes_to_its_eventfd() {
        let irq = EventfdInterrupts::default();
        irq.signal_msi(0xfee0_0000, 0x41); // nothing wired: dropped
        let (seen, fd) = pair();
        irq.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, TRIGGER_FD, 0, 1, &[], vec![fd])
            .unwrap();
        irq.signal_msi(0xfee0_0000, 0x41);
        assert_eq!(seen.read().unwrap(), 1);
        let off = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_NONE;
        irq.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, off, 0, 0, &[], vec![])
            .unwrap();
        irq.signal_msi(0xfee0_0000, 0x41);
        assert!(seen.read().is_err());
    }

    #[test]
    fn bad_requests_are_refused() {
        let irq = EventfdInterrupts::default();
        assert!(matches!(
            irq.set_irqs(2, TRIGGER_FD, 0, 1, &[], vec![]),
            Err(IrqError::Index(2))
        ));
        assert!(matches!(
            irq.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, TRIGGER_FD, 1, u32::MAX, &[], vec![]),
            Err(IrqError::Range { .. })
        ));
        assert!(matches!(
            irq.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, TRIGGER_FD, 0, 1, &[], vec![]),
            Err(IrqError::FdCount { .. })
        ));
        assert!(matches!(
            irq.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0xff, 0, 1, &[], vec![]),
            Err(IrqError::Flags(0xff))
        ));
        let bools = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_BOOL;
        assert!(matches!(
            irq.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, bools, 0, 1, &[], vec![]),
            Err(IrqError::BoolCount { .. })
        ));
    }
}
