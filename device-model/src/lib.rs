//! The dma24 PCI device: a bus-mastering DMA engine with a configurable DMA
//! mask (24 bits by default), a register BAR and a device-memory BAR, that
//! records every DMA segment it attempts in a trace.
//!
//! The crate knows nothing of KVM: it is driven through [`PciDevice`] by a
//! host (the `vmm` crate, or a unit test), touches guest memory only through
//! `vm-memory`'s `GuestMemory`, and raises interrupts through [`InterruptSink`].

pub mod pci;
pub mod regs;

pub use pci::{BarInfo, BarKind, InterruptSink, PciDevice};
