//! dmalab's PCI layer, shared by every device model and every front end:
//!
//! - [`regs`]: configuration-space offsets and bits (constants only; the
//!   guest kernel module includes the file with `#[path]`).
//! - [`PciDevice`] / [`InterruptSink`]: the contract between a function and
//!   its host (dmalab's PCI root today, a vfio-user server later).
//! - [`ConfigSpaceBuilder`] / [`ConfigSpace`]: a type-0 header with BARs of
//!   any kind, sizing, capabilities (MSI), and BAR moves reported as
//!   [`BarReprogrammingParams`] events.
//!
//! Nothing here knows a particular device (dma24 lives in `device-model`)
//! or KVM (the `vmm` crate).
#![forbid(unsafe_code)]

mod config_space;
mod device;
pub mod regs;

pub use config_space::{
    Capability, ConfigSpace, ConfigSpaceBuilder, ConfigSpaceError, DEFAULT_COMMAND_WRITABLE,
};
pub use device::{BarInfo, BarKind, BarReprogrammingParams, InterruptSink, PciDevice};
