//! The dma24 register map: BAR0, 4 KiB of little-endian MMIO registers.
//!
//! This file is the single source of the map for both sides of the contract:
//! the device model (`crate::regs`) and the guest driver, which compiles this
//! very file into its kernel module (`guest-driver/src/regs.rs` is a symlink
//! to it; the images recipe copies the file it points at). So it holds
//! constants and `const fn`s only and uses nothing but `core` through
//! primitive methods: no `use`, no `std`, no macros, nothing a `no_std` kernel
//! crate could not compile. `ci/tests/one_source.rs` checks all of that.
//!
//! Types are the device model's: offsets and sizes `u64` (bus side), BAR
//! numbers `u8`, register values `u32`. The driver converts at its accessors.
//!
//! Every register accepts 1, 2, 4 and 8-byte accesses at any offset inside
//! it; a 64-bit register can be accessed as two 32-bit halves. Unlisted
//! offsets read as zero and ignore writes.

/// PCI identity.
pub const VENDOR_ID: u16 = 0x1234;
pub const DEVICE_ID: u16 = 0xd024;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1234;
pub const SUBSYSTEM_ID: u16 = 0x0001;
pub const REVISION: u8 = 0x01;
/// Class 0x08 (base system peripheral), subclass 0x80 (other).
pub const CLASS_CODE: u8 = 0x08;
pub const SUBCLASS: u8 = 0x80;

/// BAR0: registers, BAR1: device memory.
pub const BAR_REGS: u8 = 0;
pub const BAR_DEVMEM: u8 = 1;
pub const REGS_SIZE: u64 = 4096;
/// Default size of the device memory behind BAR1.
pub const DEFAULT_DEVMEM_SIZE: u64 = 64 * 1024;

/// RO u32: bytes 'D','M','2','4' (so `readb` of offsets 0..4 spells it).
pub const REG_MAGIC: u64 = 0x000;
pub const MAGIC: u32 = u32::from_le_bytes(*b"DM24");
/// RO u32: (major << 16) | minor.
pub const REG_VERSION: u64 = 0x004;
pub const VERSION: u32 = 0x0001_0000;
/// RO u32: device capabilities, CAPS_* below.
pub const REG_CAPS: u64 = 0x008;
/// Bits 0..=7: DMA mask width in bits (12..=64).
pub const CAPS_MASK_BITS: u32 = 0xff;
/// The device wraps out-of-mask addresses (overflow=truncate) instead of
/// rejecting them.
pub const CAPS_TRUNCATE: u32 = 1 << 8;
/// Scatter-gather descriptor mode is implemented.
pub const CAPS_SG: u32 = 1 << 9;
/// RO u32: size of device memory (BAR1) in bytes.
pub const REG_DEVMEM_SIZE: u64 = 0x00c;

/// RW u32: CTRL_* below.
pub const REG_CONTROL: u64 = 0x010;
/// Write 1: reset the engine and registers (counters survive); reads as 0.
pub const CTRL_RESET: u32 = 1 << 0;
/// Raise an interrupt (MSI if enabled, else INTx) when IRQ_STATUS is set.
pub const CTRL_IRQ_ENABLE: u32 = 1 << 1;

/// RO u32: STATUS_* below.
pub const REG_STATUS: u64 = 0x014;
pub const STATUS_BUSY: u32 = 1 << 0;
/// The last transfer completed without error.
pub const STATUS_DONE: u32 = 1 << 1;
/// The last transfer failed: see REG_ERROR.
pub const STATUS_ERROR: u32 = 1 << 2;

/// RW1C u32: pending interrupt causes; write 1 to a bit to acknowledge it.
/// INTx stays asserted while any bit is set and CTRL_IRQ_ENABLE is on.
pub const REG_IRQ_STATUS: u64 = 0x018;
pub const IRQ_DONE: u32 = 1 << 0;
pub const IRQ_ERROR: u32 = 1 << 1;

/// RO u32: error code of the last transfer (ERR_*), 0 when it succeeded.
pub const REG_ERROR: u64 = 0x01c;

/// RW u64: single mode: bus address of the guest buffer; SG mode: bus
/// address of the first descriptor.
pub const REG_DMA_ADDR: u64 = 0x020;
/// RW u32: byte offset into device memory where the transfer starts.
pub const REG_DEV_OFFSET: u64 = 0x028;
/// RW u32: single mode: length in bytes (1..=device memory size). Ignored in
/// SG mode (the descriptors carry lengths).
pub const REG_DMA_LEN: u64 = 0x02c;
/// WO u32: writing CMD_START starts a transfer described by the registers
/// above and the other CMD_* bits. Reads as 0.
pub const REG_DMA_CMD: u64 = 0x030;
pub const CMD_START: u32 = 1 << 0;
/// Direction: 0 = to device (guest RAM -> device memory, Linux's
/// DMA_TO_DEVICE), 1 = from device (device memory -> guest RAM).
pub const CMD_FROM_DEVICE: u32 = 1 << 1;
/// REG_DMA_ADDR points at a descriptor list (see `Descriptor`).
pub const CMD_SG: u32 = 1 << 2;
/// Bits that must be zero in a command.
pub const CMD_RESERVED: u32 = !(CMD_START | CMD_FROM_DEVICE | CMD_SG);

/// RO u64 counters (survive CTRL_RESET; cleared only by device reset from the
/// host side, i.e. never during a VM's life).
pub const REG_COUNT_TRANSFERS: u64 = 0x040;
pub const REG_COUNT_BYTES_TO_DEVICE: u64 = 0x048;
pub const REG_COUNT_BYTES_FROM_DEVICE: u64 = 0x050;
pub const REG_COUNT_FAULTS: u64 = 0x058;
/// RO u64: trace sequence number of the last record of the last transfer
/// (0 before any), so a driver can point a user at the trace line.
pub const REG_LAST_SEQ: u64 = 0x060;
/// RO u64: requested bus address of the last fault.
pub const REG_FAULT_ADDR: u64 = 0x068;

/// Error codes in REG_ERROR.
pub const ERR_NONE: u32 = 0;
/// An address or address+length is beyond the DMA mask (overflow=reject).
pub const ERR_MASK: u32 = 1;
/// The (effective) address range is not guest RAM.
pub const ERR_RAM: u32 = 2;
/// START while PCI Command.BUS_MASTER is clear.
pub const ERR_BME_OFF: u32 = 3;
/// Zero length, or longer than device memory.
pub const ERR_BAD_LENGTH: u32 = 4;
/// Device offset + length past the end of device memory.
pub const ERR_BAD_OFFSET: u32 = 5;
/// A descriptor with reserved flag bits set or zero length.
pub const ERR_BAD_DESCRIPTOR: u32 = 6;
/// More than SG_MAX_SEGMENTS data descriptors, or a list that never ends
/// (more than SG_MAX_DESCRIPTORS fetched, e.g. a CHAIN loop).
pub const ERR_DESC_LIST_TOO_LONG: u32 = 7;
/// START while a transfer is running.
pub const ERR_BUSY: u32 = 8;
/// Reserved bits set in REG_DMA_CMD.
pub const ERR_BAD_COMMAND: u32 = 9;
/// The transfer was cut short by CTRL_RESET. Seen only in the trace: the
/// reset itself clears REG_ERROR.
pub const ERR_ABORTED: u32 = 10;

/// Scatter-gather descriptor, 16 bytes little-endian, fetched by DMA (so it
/// obeys the mask and bus mastering like any other access):
/// `{ addr: u64, len: u32, flags: u32 }`. Data descriptors move `len` bytes
/// at `addr`, one after another through device memory from REG_DEV_OFFSET.
pub const DESC_SIZE: u64 = 16;
/// This is the last descriptor of the list.
pub const DESC_LAST: u32 = 1 << 0;
/// `addr` is the bus address of the next descriptor (`len` ignored).
pub const DESC_CHAIN: u32 = 1 << 1;
pub const DESC_RESERVED: u32 = !(DESC_LAST | DESC_CHAIN);
pub const SG_MAX_SEGMENTS: usize = 256;
pub const SG_MAX_DESCRIPTORS: usize = 1024;

/// Symbolic name of a REG_ERROR code (as spelled here) and what it means in
/// words (the driver's `dev_err` lines).
pub const fn err_describe(code: u32) -> (&'static str, &'static str) {
    match code {
        ERR_NONE => ("ERR_NONE", "no error"),
        ERR_MASK => ("ERR_MASK", "bus address beyond the device's DMA mask"),
        ERR_RAM => ("ERR_RAM", "bus address range is not guest RAM"),
        ERR_BME_OFF => (
            "ERR_BME_OFF",
            "bus mastering is disabled in the PCI Command register",
        ),
        ERR_BAD_LENGTH => ("ERR_BAD_LENGTH", "zero length or longer than device memory"),
        ERR_BAD_OFFSET => (
            "ERR_BAD_OFFSET",
            "device offset + length past the end of device memory",
        ),
        ERR_BAD_DESCRIPTOR => (
            "ERR_BAD_DESCRIPTOR",
            "scatter-gather descriptor with reserved flags or zero length",
        ),
        ERR_DESC_LIST_TOO_LONG => (
            "ERR_DESC_LIST_TOO_LONG",
            "too many scatter-gather descriptors (or a CHAIN loop)",
        ),
        ERR_BUSY => ("ERR_BUSY", "START while a transfer was running"),
        ERR_BAD_COMMAND => (
            "ERR_BAD_COMMAND",
            "reserved bits set in the command register",
        ),
        ERR_ABORTED => ("ERR_ABORTED", "transfer aborted by an engine reset"),
        _ => ("ERR_UNKNOWN", "unknown device error code"),
    }
}

/// Symbolic name of a REG_ERROR code.
pub const fn err_name(code: u32) -> &'static str {
    err_describe(code).0
}

/// What a REG_ERROR code means, in words.
pub const fn err_cause(code: u32) -> &'static str {
    err_describe(code).1
}
