//! A type-0 configuration space and the builder that lays it out: identity,
//! Command/Status, BARs of any kind with sizing, and a capability list.
//!
//! Every byte is stored with a write mask and a write-1-to-clear mask, so an
//! access of any width at any offset behaves like hardware: read-only bits
//! keep their value and BAR address bits below the BAR's size are hardwired
//! to zero, which is what makes BAR sizing work without special cases.
//! Writes that change where a BAR decodes come back as
//! [`BarReprogrammingParams`].

use thiserror::Error;

use crate::device::{BarInfo, BarKind, BarReprogrammingParams};
use crate::regs::*;

const SIZE: usize = PCI_CFG_SPACE_SIZE as usize;

/// Command bits a guest may write by default.
pub const DEFAULT_COMMAND_WRITABLE: u16 = PCI_COMMAND_IO
    | PCI_COMMAND_MEMORY
    | PCI_COMMAND_MASTER
    | PCI_COMMAND_PARITY
    | PCI_COMMAND_SERR
    | PCI_COMMAND_INTX_DISABLE;

/// Mistakes in laying out a configuration space (programming errors of the
/// device model, reported instead of panicking).
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ConfigSpaceError {
    #[error("BAR{0} does not exist (0-5; a 64-bit BAR needs the slot after it too)")]
    BadBarIndex(u8),
    #[error("BAR{0} is already in use")]
    BarInUse(u8),
    #[error("BAR{bar} size {size:#x} is not a power of two of at least {min} bytes")]
    BadBarSize { bar: u8, size: u64, min: u64 },
    #[error("{kind:?} BAR{bar} of {size:#x} bytes does not fit its address width")]
    BarTooBig { bar: u8, kind: BarKind, size: u64 },
    #[error("capability {id:#04x} ({len} bytes) does not fit in configuration space")]
    NoRoomForCapability { id: u8, len: usize },
    #[error("capability {id:#04x}: the write mask is longer than the body")]
    BadCapabilityMask { id: u8 },
}

/// One capability: its ID and the bytes after the two-byte header (ID, next
/// pointer), with the bits the guest may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub body: Vec<u8>,
    /// Write mask for `body` (missing bytes are read-only).
    pub writable: Vec<u8>,
}

impl Capability {
    /// MSI, one vector, 64-bit message address, no per-vector masking: only
    /// Enable, the address (dword aligned) and the data are writable.
    pub fn msi_64bit() -> Self {
        let header = usize::from(PCI_CAP_LIST_NEXT) + 1;
        let mut body = vec![0u8; usize::from(PCI_MSI_64_SIZEOF) - header];
        let mut writable = vec![0u8; body.len()];
        let at = |off: u16| usize::from(off) - header;
        body[at(PCI_MSI_FLAGS)..at(PCI_MSI_FLAGS) + 2]
            .copy_from_slice(&PCI_MSI_FLAGS_64BIT.to_le_bytes());
        let mut mask = |off: u16, bytes: &[u8]| {
            writable[at(off)..at(off) + bytes.len()].copy_from_slice(bytes);
        };
        mask(PCI_MSI_FLAGS, &PCI_MSI_FLAGS_ENABLE.to_le_bytes());
        mask(PCI_MSI_ADDRESS_LO, &(!0x3u32).to_le_bytes());
        mask(PCI_MSI_ADDRESS_HI, &u32::MAX.to_le_bytes());
        mask(PCI_MSI_DATA_64, &u16::MAX.to_le_bytes());
        Capability {
            id: PCI_CAP_ID_MSI,
            body,
            writable,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BarSlot {
    kind: BarKind,
    size: u64,
}

/// The configuration space of one function.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: [u8; SIZE],
    writable: [u8; SIZE],
    write1_clear: [u8; SIZE],
    bars: [Option<BarSlot>; PCI_NUM_BARS as usize],
    /// Offset of the MSI capability, if there is one.
    msi: Option<u16>,
}

/// Lays out a [`ConfigSpace`].
#[derive(Clone, Debug)]
pub struct ConfigSpaceBuilder {
    space: ConfigSpace,
    /// Where the next capability goes, and the last one's next pointer.
    next_cap: u16,
    last_cap_next: u16,
}

impl ConfigSpaceBuilder {
    /// A type-0 header with `vendor:device`, Command writable as
    /// [`DEFAULT_COMMAND_WRITABLE`], cache line size and interrupt line
    /// writable, no BARs, no interrupt pin, no capabilities.
    pub fn new(vendor: u16, device: u16) -> Self {
        let mut space = ConfigSpace {
            bytes: [0; SIZE],
            writable: [0; SIZE],
            write1_clear: [0; SIZE],
            bars: [None; PCI_NUM_BARS as usize],
            msi: None,
        };
        space.set16(PCI_VENDOR_ID, vendor);
        space.set16(PCI_DEVICE_ID, device);
        space.set8(PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL);
        space.mask_bytes(PCI_COMMAND, &DEFAULT_COMMAND_WRITABLE.to_le_bytes());
        space.mask_bytes(PCI_CACHE_LINE_SIZE, &[0xff]);
        space.mask_bytes(PCI_INTERRUPT_LINE, &[0xff]);
        ConfigSpaceBuilder {
            space,
            next_cap: PCI_STD_HEADER_SIZEOF,
            last_cap_next: PCI_CAPABILITY_LIST,
        }
    }

    /// Class code: base class, subclass, programming interface.
    pub fn class(mut self, class: u8, subclass: u8, prog_if: u8) -> Self {
        self.space.set8(PCI_CLASS_PROG, prog_if);
        self.space.set8(PCI_CLASS_DEVICE, subclass);
        self.space.set8(PCI_CLASS_DEVICE + 1, class);
        self
    }

    pub fn revision(mut self, revision: u8) -> Self {
        self.space.set8(PCI_REVISION_ID, revision);
        self
    }

    pub fn subsystem(mut self, vendor: u16, id: u16) -> Self {
        self.space.set16(PCI_SUBSYSTEM_VENDOR_ID, vendor);
        self.space.set16(PCI_SUBSYSTEM_ID, id);
        self
    }

    /// The interrupt pin (1..=4 = INTA..INTD).
    pub fn interrupt_pin(mut self, pin: u8) -> Self {
        self.space.set8(PCI_INTERRUPT_PIN, pin);
        self
    }

    /// Which Command bits the guest may write.
    pub fn command_writable(mut self, mask: u16) -> Self {
        self.space.mask_bytes(PCI_COMMAND, &mask.to_le_bytes());
        self
    }

    /// BAR `index` of `kind` and `size` (a power of two; memory BARs at
    /// least 16 bytes, I/O BARs at least 4), non-prefetchable, at address 0
    /// until the guest or the host places it. A 64-bit BAR also takes slot
    /// `index + 1`.
    pub fn add_bar(
        mut self,
        index: u8,
        kind: BarKind,
        size: u64,
    ) -> Result<Self, ConfigSpaceError> {
        let slots = if kind == BarKind::Memory64 { 2 } else { 1 };
        if index
            .checked_add(slots)
            .is_none_or(|end| end > PCI_NUM_BARS)
        {
            return Err(ConfigSpaceError::BadBarIndex(index));
        }
        for i in index..index + slots {
            if self.space.bars[usize::from(i)].is_some() || self.space.slot_is_upper_half(i) {
                return Err(ConfigSpaceError::BarInUse(i));
            }
        }
        let min = if kind == BarKind::Io { 4 } else { 16 };
        if !size.is_power_of_two() || size < min {
            return Err(ConfigSpaceError::BadBarSize {
                bar: index,
                size,
                min,
            });
        }
        let too_big = ConfigSpaceError::BarTooBig {
            bar: index,
            kind,
            size,
        };
        let off = bar_offset(index);
        let address_mask = !(size - 1);
        match kind {
            BarKind::Memory32 | BarKind::Io => {
                let limit = if kind == BarKind::Io {
                    1 << 16
                } else {
                    1 << 32
                };
                if size > limit {
                    return Err(too_big);
                }
                let low = u32::try_from(address_mask & u64::from(u32::MAX)).map_err(|_| too_big)?;
                let (flags, flag_mask) = match kind {
                    BarKind::Io => (PCI_BASE_ADDRESS_SPACE_IO, PCI_BASE_ADDRESS_IO_FLAGS),
                    _ => (0, PCI_BASE_ADDRESS_MEM_FLAGS),
                };
                self.space.set32(off, flags);
                self.space
                    .mask_bytes(off, &(low & !flag_mask).to_le_bytes());
            }
            BarKind::Memory64 => {
                let low = u32::try_from(address_mask & u64::from(u32::MAX)).map_err(|_| too_big)?;
                let high = u32::try_from(address_mask >> 32).map_err(|_| too_big)?;
                self.space.set32(off, PCI_BASE_ADDRESS_MEM_TYPE_64);
                self.space
                    .mask_bytes(off, &(low & !PCI_BASE_ADDRESS_MEM_FLAGS).to_le_bytes());
                self.space.mask_bytes(off + 4, &high.to_le_bytes());
            }
        }
        self.space.bars[usize::from(index)] = Some(BarSlot { kind, size });
        Ok(self)
    }

    /// Appends `cap` to the capability list (dword aligned, after the
    /// header) and returns its offset.
    pub fn add_capability(&mut self, cap: &Capability) -> Result<u16, ConfigSpaceError> {
        let len = cap.body.len() + 2;
        if cap.writable.len() > cap.body.len() {
            return Err(ConfigSpaceError::BadCapabilityMask { id: cap.id });
        }
        let at = self.next_cap;
        let end = usize::from(at) + len;
        if end > SIZE {
            return Err(ConfigSpaceError::NoRoomForCapability { id: cap.id, len });
        }
        let s = &mut self.space;
        let at8 = u8::try_from(at)
            .map_err(|_| ConfigSpaceError::NoRoomForCapability { id: cap.id, len })?;
        s.set8(self.last_cap_next, at8);
        s.set8(at, cap.id);
        s.set8(at + PCI_CAP_LIST_NEXT, 0);
        let body = usize::from(at) + 2;
        s.bytes[body..body + cap.body.len()].copy_from_slice(&cap.body);
        s.writable[body..body + cap.writable.len()].copy_from_slice(&cap.writable);
        let status = s.get16(PCI_STATUS) | PCI_STATUS_CAP_LIST;
        s.set16(PCI_STATUS, status);
        if cap.id == PCI_CAP_ID_MSI && s.msi.is_none() {
            s.msi = Some(at);
        }
        self.last_cap_next = at + PCI_CAP_LIST_NEXT;
        // `end` <= 256, so the aligned value fits.
        self.next_cap = u16::try_from((end + 3) & !3).unwrap_or(PCI_CFG_SPACE_SIZE);
        Ok(at)
    }

    pub fn build(self) -> ConfigSpace {
        self.space
    }
}

fn bar_offset(index: u8) -> u16 {
    PCI_BASE_ADDRESS_0 + 4 * u16::from(index)
}

/// Whether `[offset, offset + len)` overlaps `[start, start + n)`.
fn overlaps(offset: u16, len: usize, start: u16, n: u16) -> bool {
    let (offset, start) = (usize::from(offset), usize::from(start));
    offset < start + usize::from(n) && start < offset + len
}

impl ConfigSpace {
    /// Reads `data.len()` bytes at `offset`; bytes past the implemented
    /// space read as zero.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, out) in data.iter_mut().enumerate() {
            let at = usize::from(offset) + i;
            *out = self.bytes.get(at).copied().unwrap_or(0);
        }
    }

    /// Writes `data` at `offset`, honouring the read-only and W1C bits, and
    /// returns the BARs whose decoded range changed.
    pub fn write(&mut self, offset: u16, data: &[u8]) -> Vec<BarReprogrammingParams> {
        let affects_decode = overlaps(offset, data.len(), PCI_COMMAND, 2)
            || overlaps(
                offset,
                data.len(),
                PCI_BASE_ADDRESS_0,
                4 * u16::from(PCI_NUM_BARS),
            );
        let before = if affects_decode {
            self.bars()
        } else {
            Vec::new()
        };
        for (i, &value) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            if at >= SIZE {
                break;
            }
            let w = self.writable[at];
            let old = self.bytes[at] & !(value & self.write1_clear[at]);
            self.bytes[at] = (old & !w) | (value & w);
        }
        if !affects_decode {
            return Vec::new();
        }
        before
            .into_iter()
            .zip(self.bars())
            .filter(|(old, new)| old.decoded_base() != new.decoded_base())
            .map(|(old, new)| BarReprogrammingParams {
                bar: new.index,
                kind: new.kind,
                size: new.size,
                old_base: old.decoded_base(),
                new_base: new.decoded_base(),
            })
            .collect()
    }

    pub fn command(&self) -> u16 {
        self.get16(PCI_COMMAND)
    }

    /// Whether every bit of `bits` is set in Command.
    pub fn command_has(&self, bits: u16) -> bool {
        self.command() & bits == bits
    }

    /// Status.Interrupt Status: the function's INTx request, whatever the
    /// Command.Interrupt Disable bit says (PCI 3.0, 6.2.3).
    pub fn set_interrupt_status(&mut self, pending: bool) {
        let status = self.get16(PCI_STATUS) & !PCI_STATUS_INTERRUPT;
        let status = if pending {
            status | PCI_STATUS_INTERRUPT
        } else {
            status
        };
        self.set16(PCI_STATUS, status);
    }

    /// Whether the guest enabled MSI (false without an MSI capability).
    pub fn msi_enabled(&self) -> bool {
        self.msi
            .is_some_and(|at| self.get16(at + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_ENABLE != 0)
    }

    /// The MSI message (address, data) the guest programmed.
    pub fn msi_message(&self) -> Option<(u64, u32)> {
        let at = self.msi?;
        let lo = u64::from(self.get32(at + PCI_MSI_ADDRESS_LO));
        let hi = u64::from(self.get32(at + PCI_MSI_ADDRESS_HI));
        Some(((hi << 32) | lo, u32::from(self.get16(at + PCI_MSI_DATA_64))))
    }

    /// Every BAR with its current address and whether it decodes: Command
    /// enables its kind, it is not being sized (address bits all ones) and
    /// it has been given an address (non-zero).
    pub fn bars(&self) -> Vec<BarInfo> {
        let mut out = Vec::new();
        for (index, slot) in (0u8..).zip(self.bars.iter()) {
            let Some(slot) = slot else { continue };
            let off = bar_offset(index);
            let (address, mask) = match slot.kind {
                BarKind::Memory32 => (
                    u64::from(self.get32(off) & !PCI_BASE_ADDRESS_MEM_FLAGS),
                    u64::from(self.get_mask32(off)),
                ),
                BarKind::Io => (
                    u64::from(self.get32(off) & !PCI_BASE_ADDRESS_IO_FLAGS),
                    u64::from(self.get_mask32(off)),
                ),
                BarKind::Memory64 => (
                    u64::from(self.get32(off) & !PCI_BASE_ADDRESS_MEM_FLAGS)
                        | u64::from(self.get32(off + 4)) << 32,
                    u64::from(self.get_mask32(off)) | u64::from(self.get_mask32(off + 4)) << 32,
                ),
            };
            let enable = if slot.kind == BarKind::Io {
                PCI_COMMAND_IO
            } else {
                PCI_COMMAND_MEMORY
            };
            let sizing = address == mask;
            out.push(BarInfo {
                index,
                kind: slot.kind,
                address,
                size: slot.size,
                decoding: self.command_has(enable) && !sizing && address != 0,
            });
        }
        out
    }

    /// 16 bits at `off` (0 outside the space).
    pub fn get16(&self, off: u16) -> u16 {
        let mut b = [0u8; 2];
        self.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    /// 32 bits at `off` (0 outside the space).
    pub fn get32(&self, off: u16) -> u32 {
        let mut b = [0u8; 4];
        self.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    /// Whether BAR slot `i` is the upper half of a 64-bit BAR.
    fn slot_is_upper_half(&self, i: u8) -> bool {
        i.checked_sub(1)
            .and_then(|lo| self.bars[usize::from(lo)])
            .is_some_and(|b| b.kind == BarKind::Memory64)
    }

    fn get_mask32(&self, off: u16) -> u32 {
        let at = usize::from(off);
        let b = &self.writable[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn set8(&mut self, off: u16, v: u8) {
        self.bytes[usize::from(off)] = v;
    }

    fn set16(&mut self, off: u16, v: u16) {
        let at = usize::from(off);
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set32(&mut self, off: u16, v: u32) {
        let at = usize::from(off);
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn mask_bytes(&mut self, off: u16, mask: &[u8]) {
        let at = usize::from(off);
        self.writable[at..at + mask.len()].copy_from_slice(mask);
    }
}

#[cfg(test)]
#[path = "config_space_tests.rs"]
mod tests;
