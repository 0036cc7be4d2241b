//! How the device's interrupts reach the guest through KVM.
//!
//! - INTx is level-triggered: an irqfd with a resample eventfd on the
//!   device's IOAPIC pin. Asserting writes the irqfd; KVM keeps the line high
//!   until the guest's EOI, then lowers it and signals the resample eventfd,
//!   on which a small thread re-asserts the line if the device still holds it
//!   (the guest acknowledged only part of the causes, or a new one came).
//! - MSI is KVM_SIGNAL_MSI with the address/data the guest programmed into
//!   the capability (the device model passes them on each interrupt).

use std::sync::Arc;

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use pci::{InterruptSink, PciDevice};
use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

#[derive(Debug, Error)]
pub enum IrqError {
    #[error("cannot create an eventfd for INTx: {0}")]
    EventFd(std::io::Error),
    #[error("KVM_IRQFD with resample on GSI {gsi} failed: {source}")]
    Irqfd { gsi: u32, source: kvm_ioctls::Error },
    #[error("cannot start the INTx resample thread: {0}")]
    Thread(std::io::Error),
}

/// Sends MSIs on one VM.
pub struct MsiSignaller {
    vm: Arc<VmFd>,
}

impl MsiSignaller {
    pub fn new(vm: Arc<VmFd>) -> Self {
        MsiSignaller { vm }
    }

    pub fn signal(&self, address: u64, data: u32) {
        let [a0, a1, a2, a3, a4, a5, a6, a7] = address.to_le_bytes();
        let (lo, hi) = ([a0, a1, a2, a3], [a4, a5, a6, a7]);
        let msi = kvm_msi {
            address_lo: u32::from_le_bytes(lo),
            address_hi: u32::from_le_bytes(hi),
            data,
            ..Default::default()
        };
        // A failed or blocked delivery (the guest masked the vector) is the
        // guest's business: log it, never stop the device.
        if let Err(e) = self.vm.signal_msi(msi) {
            log::debug!("KVM_SIGNAL_MSI {address:#x}/{data:#x} failed: {e}");
        }
    }
}

/// The device's interrupt outputs, wired to KVM.
pub struct KvmInterrupts {
    intx: EventFd,
    msi: MsiSignaller,
}

impl KvmInterrupts {
    /// Wires INTx to `gsi` (an IOAPIC pin) with a resample eventfd.
    /// [`KvmInterrupts::start_resampler`] must then be given the device.
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Result<(Self, EventFd), IrqError> {
        let intx = EventFd::new(EFD_NONBLOCK).map_err(IrqError::EventFd)?;
        let resample = EventFd::new(0).map_err(IrqError::EventFd)?;
        vm.register_irqfd_with_resample(&intx, &resample, gsi)
            .map_err(|source| IrqError::Irqfd { gsi, source })?;
        Ok((
            KvmInterrupts {
                intx,
                msi: MsiSignaller::new(vm),
            },
            resample,
        ))
    }

    /// Re-asserts INTx after each EOI while `dev` still asserts it. The
    /// thread lives as long as the process (it blocks in a read).
    pub fn start_resampler(
        &self,
        resample: EventFd,
        dev: Arc<dyn PciDevice>,
    ) -> Result<(), IrqError> {
        let intx = self.intx.try_clone().map_err(IrqError::EventFd)?;
        std::thread::Builder::new()
            .name("intx-resample".into())
            .spawn(move || {
                while resample.read().is_ok() {
                    if dev.intx_asserted() {
                        let _ = intx.write(1);
                    }
                }
            })
            .map(|_| ())
            .map_err(IrqError::Thread)
    }
}

impl InterruptSink for KvmInterrupts {
    fn set_intx(&self, asserted: bool) {
        // Deassertion needs nothing: KVM lowers the line at the guest's EOI
        // and the resampler only raises it again if the device still asks.
        if asserted {
            if let Err(e) = self.intx.write(1) {
                log::warn!("cannot raise INTx: {e}");
            }
        }
    }

    fn signal_msi(&self, address: u64, data: u32) {
        self.msi.signal(address, data);
    }
}
