//! PCI configuration-space registers: header offsets, Command and Status
//! bits, BAR encoding, capability IDs and the MSI capability layout (PCI
//! Local Bus Specification 3.0, names as in Linux's `pci_regs.h`).
//!
//! Constants only, no `use` of anything: the guest kernel module includes
//! this file with `#[path]`, so it must compile in any crate, `no_std` too.
//! Offsets are `u16` (configuration space is at most 4096 bytes); index with
//! `usize::from(..)`.

/// Conventional configuration space (type-0 header and capabilities).
pub const PCI_CFG_SPACE_SIZE: u16 = 256;
/// Extended (PCIe) configuration space.
pub const PCI_CFG_SPACE_EXP_SIZE: u16 = 4096;

// Type-0 header.
pub const PCI_VENDOR_ID: u16 = 0x00;
pub const PCI_DEVICE_ID: u16 = 0x02;
pub const PCI_COMMAND: u16 = 0x04;
pub const PCI_STATUS: u16 = 0x06;
pub const PCI_REVISION_ID: u16 = 0x08;
/// Programming interface; the subclass follows at 0x0a, the class at 0x0b.
pub const PCI_CLASS_PROG: u16 = 0x09;
pub const PCI_CLASS_DEVICE: u16 = 0x0a;
pub const PCI_CACHE_LINE_SIZE: u16 = 0x0c;
pub const PCI_LATENCY_TIMER: u16 = 0x0d;
pub const PCI_HEADER_TYPE: u16 = 0x0e;
pub const PCI_BASE_ADDRESS_0: u16 = 0x10;
/// Six BARs, 4 bytes each, from [`PCI_BASE_ADDRESS_0`].
pub const PCI_NUM_BARS: u8 = 6;
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
pub const PCI_SUBSYSTEM_ID: u16 = 0x2e;
pub const PCI_ROM_ADDRESS: u16 = 0x30;
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
pub const PCI_INTERRUPT_LINE: u16 = 0x3c;
pub const PCI_INTERRUPT_PIN: u16 = 0x3d;
/// First byte after the type-0 header: where capabilities may start.
pub const PCI_STD_HEADER_SIZEOF: u16 = 0x40;

pub const PCI_HEADER_TYPE_NORMAL: u8 = 0x00;

// Command register bits.
pub const PCI_COMMAND_IO: u16 = 1 << 0;
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
pub const PCI_COMMAND_PARITY: u16 = 1 << 6;
pub const PCI_COMMAND_SERR: u16 = 1 << 8;
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

// Status register bits.
pub const PCI_STATUS_INTERRUPT: u16 = 1 << 3;
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;

// BAR encoding (low bits of a BAR).
pub const PCI_BASE_ADDRESS_SPACE_IO: u32 = 0x1;
pub const PCI_BASE_ADDRESS_MEM_TYPE_64: u32 = 0x4;
pub const PCI_BASE_ADDRESS_MEM_PREFETCH: u32 = 0x8;
/// Flag bits of a memory BAR (3:0); the address is above them.
pub const PCI_BASE_ADDRESS_MEM_FLAGS: u32 = 0xf;
/// Flag bits of an I/O BAR (1:0).
pub const PCI_BASE_ADDRESS_IO_FLAGS: u32 = 0x3;

/// INTA# in the Interrupt Pin register (0 = no pin, 1..=4 = INTA..INTD).
pub const PCI_INTERRUPT_PIN_INTA: u8 = 1;

// Capability IDs.
pub const PCI_CAP_ID_PM: u8 = 0x01;
pub const PCI_CAP_ID_MSI: u8 = 0x05;
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
pub const PCI_CAP_ID_EXP: u8 = 0x10;
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Capability header: ID at +0, next pointer at +1.
pub const PCI_CAP_LIST_NEXT: u16 = 1;

// MSI capability, offsets from its start (64-bit address layout).
pub const PCI_MSI_FLAGS: u16 = 2;
pub const PCI_MSI_ADDRESS_LO: u16 = 4;
pub const PCI_MSI_ADDRESS_HI: u16 = 8;
pub const PCI_MSI_DATA_64: u16 = 12;
/// Length of a 64-bit MSI capability without per-vector masking.
pub const PCI_MSI_64_SIZEOF: u16 = 14;
pub const PCI_MSI_FLAGS_ENABLE: u16 = 1 << 0;
pub const PCI_MSI_FLAGS_64BIT: u16 = 1 << 7;
