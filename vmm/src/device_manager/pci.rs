//! The PCI side of a VM: the root complex on bus 0 (configuration ports on
//! the port bus, its MMIO window on the MMIO bus), the host bridge at
//! 00:00.0 and the devices in their slots, with their INTx routes for the MP
//! table. Without a device there is no PCI bus at all (the guest probes
//! 0xcf8 and finds nothing), as before PCI existed in dmalab.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_model::{Dma24, Dma24Config, TraceSink};
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::GuestMemoryMmap;

use crate::bus::{Bus, BusError};
use crate::memory::{PCI_MMIO_WINDOW_END, PCI_MMIO_WINDOW_START};
use crate::mptable::PciIrqRoute;
use crate::pci::{
    attach_dma24, AttachError, HostBridge, PciError, PciRoot, CONFIG_PORTS_BASE, CONFIG_PORTS_LEN,
    DMA24_SLOT,
};

#[derive(Debug, Error)]
pub enum PciDeviceError {
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("cannot map the PCI root: {0}")]
    Bus(#[from] BusError),
}

/// The PCI devices of a VM, kept until it ends.
#[derive(Default)]
pub struct PciDevices {
    /// One INTx route per device with an interrupt pin (for the MP table).
    pub irq_routes: Vec<PciIrqRoute>,
    dma24: Option<Arc<Dma24<GuestMemoryMmap>>>,
}

impl PciDevices {
    /// With a `dma24` configuration: builds the root, the host bridge and
    /// the device (DMA into `mem`, trace to `trace`) and inserts the root on
    /// `pio` and `mmio`. Without one: nothing.
    pub fn attach(
        vm: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        dma24: Option<Dma24Config>,
        trace: Option<TraceSink>,
        pio: &mut Bus,
        mmio: &mut Bus,
    ) -> Result<Self, PciDeviceError> {
        let Some(config) = dma24 else {
            return Ok(PciDevices::default());
        };
        let window = PCI_MMIO_WINDOW_END - PCI_MMIO_WINDOW_START;
        let mut root = PciRoot::new(PCI_MMIO_WINDOW_START, window)?;
        root.add_device(0, Arc::new(HostBridge), 0)?;
        let attached = attach_dma24(vm.clone(), mem, &mut root, config, trace)?;
        mmio.insert(root.mmio_window(), PCI_MMIO_WINDOW_START, window)?;
        pio.insert(
            Arc::new(Mutex::new(root)),
            u64::from(CONFIG_PORTS_BASE),
            u64::from(CONFIG_PORTS_LEN),
        )?;
        log::info!(
            "dma24 at 00:{DMA24_SLOT:02x}.0 (INTA -> IOAPIC pin {}, MSI capable), BARs in {:#x}..{:#x}",
            attached.irq_route.ioapic_pin,
            PCI_MMIO_WINDOW_START,
            PCI_MMIO_WINDOW_END
        );
        Ok(PciDevices {
            irq_routes: vec![attached.irq_route],
            dma24: Some(attached.device),
        })
    }

    /// Waits for the devices' DMA to finish and closes their traces,
    /// reporting what they wrote. Called after the vCPUs stopped.
    pub fn close(self) {
        let Some(dev) = self.dma24 else { return };
        dev.wait_idle(Duration::from_secs(2));
        if let Some(sink) = dev.trace_sink() {
            match sink.finish() {
                Ok(stats) => log::info!(
                    "DMA trace closed: {} records, {} dropped{}",
                    stats.records,
                    stats.dropped,
                    stats.capped.map_or_else(String::new, |max| format!(
                        " (size cap of {} reached: --trace-max-size)",
                        device_model::trace::human(max)
                    ))
                ),
                Err(e) => log::error!("DMA trace: {e}"),
            }
        }
    }
}
