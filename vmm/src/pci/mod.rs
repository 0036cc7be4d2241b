//! PCI for the guest: a root complex on bus 0 with configuration mechanism #1
//! (ports 0xcf8/0xcfc), a host bridge at 00:00.0, devices in fixed slots,
//! BARs placed by the VMM (acting as firmware) in a window below 4 GiB and
//! decoded for their device wherever the guest moves them, and KVM interrupt
//! wiring (INTx through the in-kernel IOAPIC, MSI through KVM_SIGNAL_MSI).
//!
//! Devices are anything implementing the `pci` crate's [`pci::PciDevice`];
//! only `attach.rs` knows dma24.
//!
//! ECAM (MMCONFIG) is not offered: the guest finds it only through ACPI's
//! MCFG table, and the lean guest has no ACPI.

mod attach;
mod host_bridge;
mod irq;
mod mmio_window;
mod root;

pub use attach::{
    attach_dma24, open_trace, open_trace_with_layout, parse_device_spec, AttachError,
    Dma24Attachment, DEVICE_TYPE,
};
pub use host_bridge::HostBridge;
pub use irq::{IrqError, KvmInterrupts, MsiSignaller};
pub use mmio_window::PciMmioWindow;
pub use root::{PciError, PciRoot, CONFIG_PORTS_BASE, CONFIG_PORTS_LEN};

/// The slot the dma24 device sits in: 00:01.0.
pub const DMA24_SLOT: u8 = 1;
