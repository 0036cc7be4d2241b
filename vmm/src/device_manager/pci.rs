//! The PCI side of a VM: the root complex on bus 0 (configuration ports on
//! the port bus, its MMIO window on the MMIO bus), the host bridge at
//! 00:00.0 and the devices in their slots (up to `MAX_DMA24_DEVICES` dma24s,
//! each with its own BARs, INTx line, MSI and trace), with their INTx routes
//! for the MP table. Without a device there is no PCI bus at all (the guest
//! probes 0xcf8 and finds nothing), as before PCI existed in dmalab.

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
    dma24: Vec<Arc<Dma24<GuestMemoryMmap>>>,
}

/// One device to attach: its slot (from `pci::place_devices`), its
/// configuration and its trace.
pub struct PlacedDevice {
    pub slot: u8,
    pub config: Dma24Config,
    pub trace: Option<TraceSink>,
}

impl PciDevices {
    /// With dma24 devices: builds the root, the host bridge and each
    /// device (DMA into `mem`, trace to its own sink) and inserts the root
    /// on `pio` and `mmio`. Without one: nothing.
    pub fn attach(
        vm: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        devices: Vec<PlacedDevice>,
        pio: &mut Bus,
        mmio: &mut Bus,
    ) -> Result<Self, PciDeviceError> {
        if devices.is_empty() {
            return Ok(PciDevices::default());
        }
        let window = PCI_MMIO_WINDOW_END - PCI_MMIO_WINDOW_START;
        let mut root = PciRoot::new(PCI_MMIO_WINDOW_START, window)?;
        root.add_device(0, Arc::new(HostBridge), 0)?;
        let mut out = PciDevices::default();
        for d in devices {
            let attached = attach_dma24(vm.clone(), mem, &mut root, d.slot, d.config, d.trace)?;
            log::info!(
                "dma24 at 00:{:02x}.0 ({}-bit mask, INTA -> IOAPIC pin {}, MSI capable)",
                d.slot,
                attached.device.config().mask_bits,
                attached.irq_route.ioapic_pin,
            );
            out.irq_routes.push(attached.irq_route);
            out.dma24.push(attached.device);
        }
        mmio.insert(root.mmio_window(), PCI_MMIO_WINDOW_START, window)?;
        pio.insert(
            Arc::new(Mutex::new(root)),
            u64::from(CONFIG_PORTS_BASE),
            u64::from(CONFIG_PORTS_LEN),
        )?;
        log::info!(
            "PCI: {} dma24 device(s), BARs in {:#x}..{:#x}",
            out.dma24.len(),
            PCI_MMIO_WINDOW_START,
            PCI_MMIO_WINDOW_END
        );
        Ok(out)
    }

    /// Waits for the devices' DMA to finish and closes their traces,
    /// reporting what they wrote. Called after the vCPUs stopped.
    pub fn close(self) {
        for dev in self.dma24 {
            dev.wait_idle(Duration::from_secs(2));
            let bdf = &dev.config().bdf;
            if let Some(sink) = dev.trace_sink() {
                match sink.finish() {
                    Ok(stats) => log::info!(
                        "DMA trace of {bdf} closed: {} records, {} dropped{}",
                        stats.records,
                        stats.dropped,
                        stats.capped.map_or_else(String::new, |max| format!(
                            " (size cap of {} reached: --trace-max-size)",
                            device_model::trace::human(max)
                        ))
                    ),
                    Err(e) => log::error!("DMA trace of {bdf}: {e}"),
                }
            }
        }
    }
}
