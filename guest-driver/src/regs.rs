// SPDX-License-Identifier: GPL-2.0

//! The dma24 register map, mirrored from `device-model/src/regs.rs` (the
//! single source of truth: keep the two in step).
//!
//! BAR0 is 4 KiB of little-endian registers; BAR1 is device memory. Offsets
//! are `usize` so they can be handed to the `kernel::io` accessors directly
//! (with constant offsets those accessors check the bounds at build time).

// Not every mirrored constant is used by the driver; they stay here so this
// file can be diffed against the device model's.
#![allow(dead_code)]

/// PCI identity.
pub(crate) const VENDOR_ID: u16 = 0x1234;
pub(crate) const DEVICE_ID: u16 = 0xd024;
pub(crate) const SUBSYSTEM_VENDOR_ID: u16 = 0x1234;
pub(crate) const SUBSYSTEM_ID: u16 = 0x0001;
pub(crate) const REVISION: u8 = 0x01;

/// BAR0: registers, BAR1: device memory.
pub(crate) const BAR_REGS: u32 = 0;
pub(crate) const BAR_DEVMEM: u32 = 1;
pub(crate) const REGS_SIZE: usize = 4096;
/// Default size of the device memory behind BAR1.
pub(crate) const DEFAULT_DEVMEM_SIZE: usize = 64 * 1024;

/// RO u32: bytes 'D','M','2','4' (so `readb` of offsets 0..4 spells it).
pub(crate) const REG_MAGIC: usize = 0x000;
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"DM24");
/// RO u32: (major << 16) | minor.
pub(crate) const REG_VERSION: usize = 0x004;
pub(crate) const VERSION: u32 = 0x0001_0000;
/// RO u32: device capabilities, CAPS_* below.
pub(crate) const REG_CAPS: usize = 0x008;
/// Bits 0..=7: DMA mask width in bits (12..=64).
pub(crate) const CAPS_MASK_BITS: u32 = 0xff;
/// The device wraps out-of-mask addresses (overflow=truncate) instead of
/// rejecting them.
pub(crate) const CAPS_TRUNCATE: u32 = 1 << 8;
/// Scatter-gather descriptor mode is implemented.
pub(crate) const CAPS_SG: u32 = 1 << 9;
/// RO u32: size of device memory (BAR1) in bytes.
pub(crate) const REG_DEVMEM_SIZE: usize = 0x00c;

/// RW u32: CTRL_* below.
pub(crate) const REG_CONTROL: usize = 0x010;
/// Write 1: reset the engine and registers (counters survive); reads as 0.
pub(crate) const CTRL_RESET: u32 = 1 << 0;
/// Raise an interrupt (MSI if enabled, else INTx) when IRQ_STATUS is set.
pub(crate) const CTRL_IRQ_ENABLE: u32 = 1 << 1;

/// RO u32: STATUS_* below.
pub(crate) const REG_STATUS: usize = 0x014;
pub(crate) const STATUS_BUSY: u32 = 1 << 0;
/// The last transfer completed without error.
pub(crate) const STATUS_DONE: u32 = 1 << 1;
/// The last transfer failed: see REG_ERROR.
pub(crate) const STATUS_ERROR: u32 = 1 << 2;

/// RW1C u32: pending interrupt causes; write 1 to a bit to acknowledge it.
pub(crate) const REG_IRQ_STATUS: usize = 0x018;
pub(crate) const IRQ_DONE: u32 = 1 << 0;
pub(crate) const IRQ_ERROR: u32 = 1 << 1;

/// RO u32: error code of the last transfer (ERR_*), 0 when it succeeded.
pub(crate) const REG_ERROR: usize = 0x01c;

/// RW u64: single mode: bus address of the guest buffer; SG mode: bus
/// address of the first descriptor.
pub(crate) const REG_DMA_ADDR: usize = 0x020;
/// RW u32: byte offset into device memory where the transfer starts.
pub(crate) const REG_DEV_OFFSET: usize = 0x028;
/// RW u32: single mode: length in bytes (1..=device memory size). Ignored in
/// SG mode.
pub(crate) const REG_DMA_LEN: usize = 0x02c;
/// WO u32: writing CMD_START starts a transfer.
pub(crate) const REG_DMA_CMD: usize = 0x030;
pub(crate) const CMD_START: u32 = 1 << 0;
/// Direction: 0 = to device (DMA_TO_DEVICE), 1 = from device.
pub(crate) const CMD_FROM_DEVICE: u32 = 1 << 1;
/// REG_DMA_ADDR points at a descriptor list.
pub(crate) const CMD_SG: u32 = 1 << 2;
/// Bits that must be zero in a command.
pub(crate) const CMD_RESERVED: u32 = !(CMD_START | CMD_FROM_DEVICE | CMD_SG);

/// RO u64 counters (survive CTRL_RESET).
pub(crate) const REG_COUNT_TRANSFERS: usize = 0x040;
pub(crate) const REG_COUNT_BYTES_TO_DEVICE: usize = 0x048;
pub(crate) const REG_COUNT_BYTES_FROM_DEVICE: usize = 0x050;
pub(crate) const REG_COUNT_FAULTS: usize = 0x058;
/// RO u64: trace sequence number of the last record of the last transfer.
pub(crate) const REG_LAST_SEQ: usize = 0x060;
/// RO u64: requested bus address of the last fault.
pub(crate) const REG_FAULT_ADDR: usize = 0x068;

/// Error codes in REG_ERROR.
pub(crate) const ERR_NONE: u32 = 0;
pub(crate) const ERR_MASK: u32 = 1;
pub(crate) const ERR_RAM: u32 = 2;
pub(crate) const ERR_BME_OFF: u32 = 3;
pub(crate) const ERR_BAD_LENGTH: u32 = 4;
pub(crate) const ERR_BAD_OFFSET: u32 = 5;
pub(crate) const ERR_BAD_DESCRIPTOR: u32 = 6;
pub(crate) const ERR_DESC_LIST_TOO_LONG: u32 = 7;
pub(crate) const ERR_BUSY: u32 = 8;
pub(crate) const ERR_BAD_COMMAND: u32 = 9;
/// Cut short by CTRL_RESET. Seen only in the trace: the reset clears REG_ERROR.
pub(crate) const ERR_ABORTED: u32 = 10;

/// Scatter-gather descriptor: `{ addr: u64, len: u32, flags: u32 }`, 16
/// bytes little-endian, fetched by DMA.
pub(crate) const DESC_SIZE: usize = 16;
/// This is the last descriptor of the list.
pub(crate) const DESC_LAST: u32 = 1 << 0;
/// `addr` is the bus address of the next descriptor (`len` ignored).
pub(crate) const DESC_CHAIN: u32 = 1 << 1;
pub(crate) const DESC_RESERVED: u32 = !(DESC_LAST | DESC_CHAIN);
pub(crate) const SG_MAX_SEGMENTS: usize = 256;
pub(crate) const SG_MAX_DESCRIPTORS: usize = 1024;

/// Symbolic name of a REG_ERROR code, as the device model spells it.
pub(crate) fn err_name(code: u32) -> &'static str {
    match code {
        ERR_NONE => "ERR_NONE",
        ERR_MASK => "ERR_MASK",
        ERR_RAM => "ERR_RAM",
        ERR_BME_OFF => "ERR_BME_OFF",
        ERR_BAD_LENGTH => "ERR_BAD_LENGTH",
        ERR_BAD_OFFSET => "ERR_BAD_OFFSET",
        ERR_BAD_DESCRIPTOR => "ERR_BAD_DESCRIPTOR",
        ERR_DESC_LIST_TOO_LONG => "ERR_DESC_LIST_TOO_LONG",
        ERR_BUSY => "ERR_BUSY",
        ERR_BAD_COMMAND => "ERR_BAD_COMMAND",
        ERR_ABORTED => "ERR_ABORTED",
        _ => "ERR_UNKNOWN",
    }
}

/// What a REG_ERROR code means, for `dev_err` lines.
pub(crate) fn err_cause(code: u32) -> &'static str {
    match code {
        ERR_NONE => "no error",
        ERR_MASK => "bus address beyond the device's DMA mask",
        ERR_RAM => "bus address range is not guest RAM",
        ERR_BME_OFF => "bus mastering is disabled in the PCI Command register",
        ERR_BAD_LENGTH => "zero length or longer than device memory",
        ERR_BAD_OFFSET => "device offset + length past the end of device memory",
        ERR_BAD_DESCRIPTOR => "scatter-gather descriptor with reserved flags or zero length",
        ERR_DESC_LIST_TOO_LONG => "too many scatter-gather descriptors (or a CHAIN loop)",
        ERR_BUSY => "START while a transfer was running",
        ERR_BAD_COMMAND => "reserved bits set in the command register",
        ERR_ABORTED => "transfer aborted by an engine reset",
        _ => "unknown device error code",
    }
}
