//! The dma24 PCI device: a bus-mastering DMA engine with a configurable DMA
//! mask (24 bits by default), a register BAR and a device-memory BAR, that
//! records every DMA segment it attempts in a trace.
//!
//! The crate knows nothing of KVM: it is driven through [`PciDevice`] by a
//! host (the `vmm` crate, or a unit test), touches guest memory only through
//! `vm-memory`'s `GuestMemory`, and raises interrupts through [`InterruptSink`].
//!
//! - [`dma24_config`]: [`Dma24Config`], what is fixed when a device is built,
//!   and its `mask-bits=N,overflow=...,mem=KIB` spec.
//! - [`device`]: [`Dma24`], the device the VMM builds: registers, worker thread.
//! - [`config_space`]: dma24's PCI configuration space (identity, BARs,
//!   MSI), laid out with the `pci` crate's builder.
//! - [`regs`]: the BAR0 register map (the contract with the guest driver).
//! - [`engine`]: mask/RAM checks and the copy, single and scatter-gather.
//! - [`trace`]: JSON Lines trace writer and [`trace::summary`].
//!
//! See `device-model/README.md` for the register map and trace schema.
#![forbid(unsafe_code)]

pub mod config_space;
pub mod device;
pub mod devmem;
pub mod dma24_config;
pub mod engine;
pub mod outcome;
mod regfile;
pub mod regs;
pub mod trace;

#[cfg(test)]
mod testutil;

pub use device::{DeviceError, Dma24};
pub use dma24_config::{Dma24Config, OptionsError, Overflow};
pub use outcome::{Direction, Outcome};
// The PCI layer's contract, re-exported for hosts that only use dma24.
pub use pci::{BarInfo, BarKind, BarReprogrammingParams, InterruptSink, PciDevice};
pub use trace::{TraceError, TraceOptions, TraceSink, TraceStats};
