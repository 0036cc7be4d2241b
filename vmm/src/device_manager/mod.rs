//! The devices a VM gets, grouped by how they are wired (after
//! Firecracker's `device_manager`): [`legacy`] for the fixed ISA-style port
//! devices, [`pci`] for the PCI root and what sits on it.

pub mod legacy;
pub mod pci;

pub use self::legacy::{LegacyDeviceError, LegacyDevices};
pub use self::pci::{PciDeviceError, PciDevices};
