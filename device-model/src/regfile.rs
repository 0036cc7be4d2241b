//! BAR0 register storage and access decoding.
//!
//! An access of any width at any offset is split into bytes, and the bytes
//! are grouped by the register they fall in; each register then sees one
//! read or one write with a byte mask. So a 64-bit register can be written
//! as two 32-bit halves, an 8-byte write at REG_DEV_OFFSET sets DEV_OFFSET
//! and DMA_LEN together, and nothing depends on the guest's access width.

use crate::regs::*;

/// The register that holds BAR0 byte `off`: `(base offset, width in bytes)`.
pub fn reg_at(off: u64) -> Option<(u64, u64)> {
    match off {
        0x000..=0x01f => Some((off & !3, 4)),
        0x020..=0x027 => Some((REG_DMA_ADDR, 8)),
        0x028..=0x033 => Some((off & !3, 4)),
        0x040..=0x06f => Some((off & !7, 8)),
        _ => None,
    }
}

/// One register's share of a guest write: the written bytes of `value`
/// (in register position) are those set in `mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegWrite {
    pub base: u64,
    pub value: u64,
    pub mask: u64,
}

impl RegWrite {
    /// Applies the write to a plain read/write register.
    pub fn merge(&self, old: u64) -> u64 {
        (old & !self.mask) | (self.value & self.mask)
    }

    /// The written bits (unwritten bytes count as zero).
    pub fn bits(&self) -> u64 {
        self.value & self.mask
    }
}

/// Splits a guest write at `offset` into per-register writes, in address
/// order. Bytes outside any register are dropped.
pub fn split_write(offset: u64, data: &[u8]) -> impl Iterator<Item = RegWrite> + '_ {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        while i < data.len() {
            let at = offset.checked_add(i as u64)?;
            let Some((base, width)) = reg_at(at) else {
                i += 1;
                continue;
            };
            let mut w = RegWrite {
                base,
                value: 0,
                mask: 0,
            };
            while i < data.len() {
                let Some(at) = offset.checked_add(i as u64) else {
                    break;
                };
                if at < base || at >= base + width {
                    break;
                }
                let shift = 8 * (at - base);
                w.value |= u64::from(data[i]) << shift;
                w.mask |= 0xff << shift;
                i += 1;
            }
            return Some(w);
        }
        None
    })
}

/// The software-visible register state (identity registers are computed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// CTRL_IRQ_ENABLE only: CTRL_RESET is an action and reads as 0.
    pub control: u32,
    pub status: u32,
    pub irq_status: u32,
    pub error: u32,
    pub dma_addr: u64,
    pub dev_offset: u32,
    pub dma_len: u32,
    pub count_transfers: u64,
    pub count_bytes_to_device: u64,
    pub count_bytes_from_device: u64,
    pub count_faults: u64,
    pub last_seq: u64,
    pub fault_addr: u64,
}

/// Read-only facts about the device shown in the identity registers.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub caps: u32,
    pub devmem_size: u32,
}

impl Registers {
    /// CTRL_RESET: everything back to power-on except the counters,
    /// LAST_SEQ and FAULT_ADDR (they describe history a driver may want to
    /// read after resetting a wedged device).
    pub fn reset(&mut self) {
        *self = Registers {
            count_transfers: self.count_transfers,
            count_bytes_to_device: self.count_bytes_to_device,
            count_bytes_from_device: self.count_bytes_from_device,
            count_faults: self.count_faults,
            last_seq: self.last_seq,
            fault_addr: self.fault_addr,
            ..Registers::default()
        };
    }

    /// The value of the register at `base` (0 for write-only/unmapped).
    pub fn value(&self, base: u64, id: Identity) -> u64 {
        match base {
            REG_MAGIC => MAGIC.into(),
            REG_VERSION => VERSION.into(),
            REG_CAPS => id.caps.into(),
            REG_DEVMEM_SIZE => id.devmem_size.into(),
            REG_CONTROL => self.control.into(),
            REG_STATUS => self.status.into(),
            REG_IRQ_STATUS => self.irq_status.into(),
            REG_ERROR => self.error.into(),
            REG_DMA_ADDR => self.dma_addr,
            REG_DEV_OFFSET => self.dev_offset.into(),
            REG_DMA_LEN => self.dma_len.into(),
            REG_COUNT_TRANSFERS => self.count_transfers,
            REG_COUNT_BYTES_TO_DEVICE => self.count_bytes_to_device,
            REG_COUNT_BYTES_FROM_DEVICE => self.count_bytes_from_device,
            REG_COUNT_FAULTS => self.count_faults,
            REG_LAST_SEQ => self.last_seq,
            REG_FAULT_ADDR => self.fault_addr,
            _ => 0,
        }
    }

    /// Reads `data.len()` bytes at `offset`; unmapped bytes read as zero.
    pub fn read(&self, offset: u64, data: &mut [u8], id: Identity) {
        for (i, out) in data.iter_mut().enumerate() {
            *out = offset
                .checked_add(i as u64)
                .and_then(|at| reg_at(at).map(|(base, _)| (at, base)))
                .map_or(0, |(at, base)| {
                    (self.value(base, id) >> (8 * (at - base))).to_le_bytes()[0]
                });
        }
    }

    /// Applies a write to a plain read/write register; returns false for
    /// registers with side effects (CONTROL, IRQ_STATUS, DMA_CMD) or
    /// read-only ones, which the device handles.
    // A write to a 32-bit register carries only that register's 4 bytes
    // (split_write), so the merged value fits: the casts drop zeros.
    #[allow(clippy::cast_possible_truncation)]
    pub fn write_plain(&mut self, w: RegWrite) -> bool {
        match w.base {
            REG_DMA_ADDR => self.dma_addr = w.merge(self.dma_addr),
            REG_DEV_OFFSET => self.dev_offset = w.merge(self.dev_offset.into()) as u32,
            REG_DMA_LEN => self.dma_len = w.merge(self.dma_len.into()) as u32,
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Identity = Identity {
        caps: 24 | CAPS_SG,
        devmem_size: 65536,
    };

    fn read(r: &Registers, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        r.read(off, &mut b[..len], ID);
        u64::from_le_bytes(b)
    }

    #[test]
    fn register_layout() {
        assert_eq!(reg_at(REG_MAGIC + 3), Some((REG_MAGIC, 4)));
        assert_eq!(reg_at(REG_DMA_ADDR + 5), Some((REG_DMA_ADDR, 8)));
        assert_eq!(reg_at(REG_DMA_CMD + 3), Some((REG_DMA_CMD, 4)));
        assert_eq!(reg_at(0x034), None);
        assert_eq!(reg_at(REG_FAULT_ADDR + 7), Some((REG_FAULT_ADDR, 8)));
        assert_eq!(reg_at(0x070), None);
        assert_eq!(reg_at(0xfff), None);
    }

    #[test]
    fn reads_of_every_width() {
        let r = Registers {
            dma_addr: 0x1122_3344_5566_7788,
            ..Registers::default()
        };
        assert_eq!(read(&r, REG_MAGIC, 4), u64::from(MAGIC));
        let mut magic = [0u8; 4];
        for (i, b) in magic.iter_mut().enumerate() {
            *b = read(&r, REG_MAGIC + i as u64, 1).to_le_bytes()[0];
        }
        assert_eq!(&magic, b"DM24");
        assert_eq!(read(&r, REG_DMA_ADDR, 8), 0x1122_3344_5566_7788);
        assert_eq!(read(&r, REG_DMA_ADDR + 4, 4), 0x1122_3344);
        assert_eq!(read(&r, REG_DMA_ADDR + 2, 2), 0x5566);
        assert_eq!(read(&r, REG_CAPS, 4), u64::from(24 | CAPS_SG));
        assert_eq!(read(&r, REG_DEVMEM_SIZE, 4), 65536);
        // An 8-byte read of MAGIC+VERSION.
        assert_eq!(
            read(&r, REG_MAGIC, 8),
            u64::from(MAGIC) | u64::from(VERSION) << 32
        );
        assert_eq!(read(&r, 0x800, 8), 0);
        assert_eq!(read(&r, u64::MAX - 2, 8), 0);
    }

    #[test]
    fn split_writes() {
        let w: Vec<_> = split_write(REG_DMA_ADDR + 4, &0xaabb_ccddu32.to_le_bytes()).collect();
        assert_eq!(
            w,
            [RegWrite {
                base: REG_DMA_ADDR,
                value: 0xaabb_ccdd_0000_0000,
                mask: 0xffff_ffff_0000_0000
            }]
        );
        assert_eq!(w[0].merge(0x1111_2222_3333_4444), 0xaabb_ccdd_3333_4444);
        // One 8-byte write covering DEV_OFFSET and DMA_LEN.
        let w: Vec<_> =
            split_write(REG_DEV_OFFSET, &0x0000_1000_0000_0040u64.to_le_bytes()).collect();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].base, w[0].bits()), (REG_DEV_OFFSET, 0x40));
        assert_eq!((w[1].base, w[1].bits()), (REG_DMA_LEN, 0x1000));
        // A write over the hole after DMA_CMD only reaches DMA_CMD.
        let w: Vec<_> = split_write(REG_DMA_CMD, &[1, 0, 0, 0, 9, 9, 9, 9]).collect();
        assert_eq!(
            w,
            [RegWrite {
                base: REG_DMA_CMD,
                value: 1,
                mask: 0xffff_ffff
            }]
        );
        assert_eq!(split_write(0x900, &[1; 8]).count(), 0);
        assert_eq!(split_write(u64::MAX, &[1; 8]).count(), 0);
    }

    #[test]
    fn plain_writes_and_reset() {
        let mut r = Registers {
            count_faults: 3,
            last_seq: 9,
            fault_addr: 7,
            ..Registers::default()
        };
        for w in split_write(REG_DMA_LEN, &[0x34, 0x12]) {
            assert!(r.write_plain(w));
        }
        assert_eq!(r.dma_len, 0x1234);
        let w = split_write(REG_STATUS, &[0xff; 4]).next().unwrap();
        assert!(!r.write_plain(w));
        assert_eq!(r.status, 0);
        r.control = CTRL_IRQ_ENABLE;
        r.error = 4;
        r.reset();
        assert_eq!(
            r,
            Registers {
                count_faults: 3,
                last_seq: 9,
                fault_addr: 7,
                ..Registers::default()
            }
        );
    }
}
