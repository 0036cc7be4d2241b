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
    attach_dma24, open_trace, open_trace_with_layout, parse_device_spec, place_devices,
    AttachError, Dma24Attachment, DEVICE_TYPE,
};
pub use host_bridge::HostBridge;
pub use irq::{IrqError, KvmInterrupts, MsiSignaller};
pub use mmio_window::PciMmioWindow;
pub use root::{PciError, PciRoot, CONFIG_PORTS_BASE, CONFIG_PORTS_LEN};

/// The slot the first dma24 device sits in: 00:01.0 (the N-th in slot 1 + N).
pub const DMA24_SLOT: u8 = 1;

/// Most dma24 devices one VM hosts (slots 1-4, IOAPIC pins 16-19). The bound
/// is the guest driver's too (it names up to 8 `/dev/dma24-N`); four is
/// plenty for tests with different masks and keeps the 24-pin IOAPIC's
/// other lines free.
pub const MAX_DMA24_DEVICES: usize = 4;
