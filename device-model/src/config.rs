//! Type-0 PCI configuration space of the dma24 function: identity, Command
//! and Status, two 32-bit memory BARs and an MSI capability.
//!
//! Every register is stored as bytes with a per-byte write mask and a
//! per-byte write-1-to-clear mask, so any access width at any offset behaves
//! like hardware: read-only bits keep their value, BAR address bits below the
//! BAR size are hardwired to zero (which is what makes BAR sizing work).

use crate::pci::{BarInfo, BarKind};
use crate::regs;

/// Conventional PCI configuration space; 256..4096 reads as zero.
pub const CONFIG_SIZE: usize = 256;
/// Extended (PCIe) configuration space size the trait allows offsets in.
pub const CONFIG_SPACE_END: u16 = 4096;

pub const OFF_VENDOR: usize = 0x00;
pub const OFF_DEVICE: usize = 0x02;
pub const OFF_COMMAND: usize = 0x04;
pub const OFF_STATUS: usize = 0x06;
pub const OFF_REVISION: usize = 0x08;
pub const OFF_CLASS: usize = 0x09;
pub const OFF_CACHE_LINE: usize = 0x0c;
pub const OFF_HEADER_TYPE: usize = 0x0e;
pub const OFF_BAR0: usize = 0x10;
pub const OFF_SUBSYS_VENDOR: usize = 0x2c;
pub const OFF_SUBSYS_ID: usize = 0x2e;
pub const OFF_CAP_PTR: usize = 0x34;
pub const OFF_INT_LINE: usize = 0x3c;
pub const OFF_INT_PIN: usize = 0x3d;
/// The MSI capability: the only entry of the capability list.
pub const OFF_MSI: usize = 0x40;
pub const OFF_MSI_CONTROL: usize = OFF_MSI + 2;
pub const OFF_MSI_ADDR_LO: usize = OFF_MSI + 4;
pub const OFF_MSI_ADDR_HI: usize = OFF_MSI + 8;
pub const OFF_MSI_DATA: usize = OFF_MSI + 12;

pub const CMD_IO: u16 = 1 << 0;
pub const CMD_MEM: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_PARITY: u16 = 1 << 6;
pub const CMD_SERR: u16 = 1 << 8;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
const CMD_WRITABLE: u16 =
    CMD_IO | CMD_MEM | CMD_BUS_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE;

pub const STATUS_INTX: u16 = 1 << 3;
pub const STATUS_CAP_LIST: u16 = 1 << 4;

pub const CAP_ID_MSI: u8 = 0x05;
pub const MSI_CTRL_ENABLE: u16 = 1 << 0;
/// Multiple Message Capable = 0 (one vector), 64-bit address capable.
pub const MSI_CTRL_64BIT: u16 = 1 << 7;

/// INTA#.
pub const INTERRUPT_PIN_INTA: u8 = 1;

/// The configuration space of one dma24 function.
#[derive(Clone, Debug)]
pub struct PciConfig {
    bytes: [u8; CONFIG_SIZE],
    writable: [u8; CONFIG_SIZE],
    write1_clear: [u8; CONFIG_SIZE],
    bar_sizes: [u64; 2],
}

impl PciConfig {
    /// Builds the power-on state: BARs at address 0, decoding off, MSI off.
    pub fn new(devmem_size: u64) -> Self {
        let mut c = PciConfig {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
            write1_clear: [0; CONFIG_SIZE],
            bar_sizes: [regs::REGS_SIZE, devmem_size],
        };
        c.set16(OFF_VENDOR, regs::VENDOR_ID);
        c.set16(OFF_DEVICE, regs::DEVICE_ID);
        c.set16(OFF_STATUS, STATUS_CAP_LIST);
        c.bytes[OFF_REVISION] = regs::REVISION;
        // Class code: prog-if, subclass, base class.
        c.bytes[OFF_CLASS] = 0;
        c.bytes[OFF_CLASS + 1] = regs::SUBCLASS;
        c.bytes[OFF_CLASS + 2] = regs::CLASS_CODE;
        c.bytes[OFF_HEADER_TYPE] = 0x00;
        c.set16(OFF_SUBSYS_VENDOR, regs::SUBSYSTEM_VENDOR_ID);
        c.set16(OFF_SUBSYS_ID, regs::SUBSYSTEM_ID);
        c.bytes[OFF_CAP_PTR] = OFF_MSI as u8;
        c.bytes[OFF_INT_PIN] = INTERRUPT_PIN_INTA;
        c.bytes[OFF_MSI] = CAP_ID_MSI;
        c.bytes[OFF_MSI + 1] = 0; // end of the capability list
        c.set16(OFF_MSI_CONTROL, MSI_CTRL_64BIT);

        c.mask16(OFF_COMMAND, CMD_WRITABLE);
        c.writable[OFF_CACHE_LINE] = 0xff;
        c.writable[OFF_INT_LINE] = 0xff;
        for (i, size) in [regs::REGS_SIZE, devmem_size].into_iter().enumerate() {
            // Address bits at and above the size are writable; bits 3:0
            // (memory, 32-bit, non-prefetchable) read as zero.
            let mask = !(size.max(16) as u32 - 1) & !0xf;
            c.mask32(OFF_BAR0 + 4 * i, mask);
        }
        c.mask16(OFF_MSI_CONTROL, MSI_CTRL_ENABLE);
        c.mask32(OFF_MSI_ADDR_LO, !0x3);
        c.mask32(OFF_MSI_ADDR_HI, u32::MAX);
        c.mask16(OFF_MSI_DATA, u16::MAX);
        c
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the implemented
    /// space read as zero.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, out) in data.iter_mut().enumerate() {
            let at = usize::from(offset) + i;
            *out = self.bytes.get(at).copied().unwrap_or(0);
        }
    }

    /// Writes `data` at `offset`, honouring the read-only and W1C bits.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, &value) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            if at >= CONFIG_SIZE {
                break;
            }
            let w = self.writable[at];
            let old = self.bytes[at] & !(value & self.write1_clear[at]);
            self.bytes[at] = (old & !w) | (value & w);
        }
    }

    pub fn command(&self) -> u16 {
        self.get16(OFF_COMMAND)
    }

    pub fn mem_enabled(&self) -> bool {
        self.command() & CMD_MEM != 0
    }

    pub fn bus_master(&self) -> bool {
        self.command() & CMD_BUS_MASTER != 0
    }

    pub fn intx_disabled(&self) -> bool {
        self.command() & CMD_INTX_DISABLE != 0
    }

    /// Status.Interrupt Status: the device's INTx request, whatever the
    /// Command.Interrupt Disable bit says (PCI 3.0, 6.2.3).
    pub fn set_interrupt_status(&mut self, pending: bool) {
        let status = self.get16(OFF_STATUS) & !STATUS_INTX;
        self.set16(
            OFF_STATUS,
            if pending {
                status | STATUS_INTX
            } else {
                status
            },
        );
    }

    pub fn msi_enabled(&self) -> bool {
        self.get16(OFF_MSI_CONTROL) & MSI_CTRL_ENABLE != 0
    }

    /// The MSI message (address, data) the guest programmed.
    pub fn msi_message(&self) -> (u64, u32) {
        let lo = u64::from(self.get32(OFF_MSI_ADDR_LO));
        let hi = u64::from(self.get32(OFF_MSI_ADDR_HI));
        ((hi << 32) | lo, u32::from(self.get16(OFF_MSI_DATA)))
    }

    /// Both BARs with their current address and whether they decode. A BAR
    /// decodes when Command.MEM is set, it is not being sized (address bits
    /// all ones) and it has been given an address (non-zero).
    pub fn bars(&self) -> Vec<BarInfo> {
        (0..2u8)
            .map(|index| {
                let off = OFF_BAR0 + 4 * usize::from(index);
                let raw = self.get32(off);
                let address_bits = raw & !0xf;
                let sizing = address_bits == self.get_mask32(off);
                BarInfo {
                    index,
                    kind: BarKind::Memory32,
                    address: u64::from(address_bits),
                    size: self.bar_sizes[usize::from(index)],
                    decoding: self.mem_enabled() && !sizing && address_bits != 0,
                }
            })
            .collect()
    }

    fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    fn get32(&self, off: usize) -> u32 {
        let b = &self.bytes[off..off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn get_mask32(&self, off: usize) -> u32 {
        let b = &self.writable[off..off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn mask16(&mut self, off: usize, m: u16) {
        self.writable[off..off + 2].copy_from_slice(&m.to_le_bytes());
    }

    fn mask32(&mut self, off: usize, m: u32) {
        self.writable[off..off + 4].copy_from_slice(&m.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r32(c: &PciConfig, off: u16) -> u32 {
        let mut b = [0; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w32(c: &mut PciConfig, off: u16, v: u32) {
        c.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identity() {
        let c = PciConfig::new(64 * 1024);
        assert_eq!(r32(&c, 0x00), 0xd024_1234);
        assert_eq!(r32(&c, 0x08), 0x0880_0001); // class 08, subclass 80, rev 1
        assert_eq!((r32(&c, 0x0c) >> 16) & 0xff, 0); // header type 0
        assert_eq!(r32(&c, 0x2c), 0x0001_1234);
        assert_eq!(r32(&c, 0x34), 0x40);
        assert_eq!(r32(&c, 0x3c), 0x0100); // pin INTA, line 0
        assert_eq!(r32(&c, 0x04), u32::from(STATUS_CAP_LIST) << 16);
        // Identity is read-only.
        let mut c2 = c.clone();
        w32(&mut c2, 0x00, 0);
        w32(&mut c2, 0x08, 0);
        w32(&mut c2, 0x2c, 0);
        assert_eq!(r32(&c2, 0x00), 0xd024_1234);
        assert_eq!(r32(&c2, 0x08), 0x0880_0001);
        assert_eq!(r32(&c2, 0x2c), 0x0001_1234);
    }

    #[test]
    fn msi_capability_layout() {
        let mut c = PciConfig::new(64 * 1024);
        assert_eq!(r32(&c, 0x40), 0x0080_0005); // id 5, next 0, 64-bit, 1 vector
        assert!(!c.msi_enabled());
        w32(&mut c, 0x44, 0xfee0_0003);
        w32(&mut c, 0x48, 0x1);
        w32(&mut c, 0x4c, 0xdead_0041);
        w32(&mut c, 0x40, 0xffff_ffff);
        assert!(c.msi_enabled());
        // Only the enable bit is writable: MMC/MME stay 0, 64-bit stays set.
        assert_eq!(r32(&c, 0x40), 0x0081_0005);
        assert_eq!(c.msi_message(), (0x1_fee0_0000, 0x41));
        assert_eq!(r32(&c, 0x4c), 0x41);
    }

    #[test]
    fn bar_sizing_and_relocation() {
        let mut c = PciConfig::new(64 * 1024);
        w32(&mut c, 0x10, 0xffff_ffff);
        w32(&mut c, 0x14, 0xffff_ffff);
        assert_eq!(r32(&c, 0x10), 0xffff_f000); // 4 KiB, memory, 32-bit, non-prefetchable
        assert_eq!(r32(&c, 0x14), 0xffff_0000); // 64 KiB
        assert!(c.bars().iter().all(|b| !b.decoding));
        w32(&mut c, 0x10, 0xfebf_1234);
        w32(&mut c, 0x14, 0xfeb0_0000);
        assert_eq!(r32(&c, 0x10), 0xfebf_1000);
        let bars = c.bars();
        assert_eq!(bars[0].address, 0xfebf_1000);
        assert_eq!(bars[0].size, 4096);
        assert_eq!(bars[1].address, 0xfeb0_0000);
        assert_eq!(bars[1].size, 65536);
        assert!(bars
            .iter()
            .all(|b| b.kind == BarKind::Memory32 && !b.decoding));
        c.write(0x04, &[CMD_MEM as u8]);
        assert!(c.bars().iter().all(|b| b.decoding));
        // Relocation by a 16-bit write of the upper half.
        c.write(0x12, &0xe000u16.to_le_bytes());
        assert_eq!(c.bars()[0].address, 0xe000_1000);
        // BARs 2..5 and the ROM BAR are not implemented.
        w32(&mut c, 0x18, 0xffff_ffff);
        w32(&mut c, 0x30, 0xffff_ffff);
        assert_eq!(r32(&c, 0x18), 0);
        assert_eq!(r32(&c, 0x30), 0);
    }

    #[test]
    fn bigger_devmem_bar() {
        let mut c = PciConfig::new(1 << 20);
        w32(&mut c, 0x14, 0xffff_ffff);
        assert_eq!(r32(&c, 0x14), 0xfff0_0000);
    }

    #[test]
    fn command_bits() {
        let mut c = PciConfig::new(64 * 1024);
        c.write(0x04, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), CMD_WRITABLE);
        assert!(c.mem_enabled() && c.bus_master() && c.intx_disabled());
        c.write(0x04, &[0]);
        assert!(!c.mem_enabled() && !c.bus_master());
        assert!(c.intx_disabled()); // in the byte not written
    }

    #[test]
    fn interrupt_status_is_read_only() {
        let mut c = PciConfig::new(64 * 1024);
        c.set_interrupt_status(true);
        assert_eq!(
            r32(&c, 0x04) >> 16,
            u32::from(STATUS_CAP_LIST | STATUS_INTX)
        );
        c.write(0x06, &0u16.to_le_bytes());
        c.write(0x06, &0xffffu16.to_le_bytes());
        assert_eq!(
            r32(&c, 0x04) >> 16,
            u32::from(STATUS_CAP_LIST | STATUS_INTX)
        );
        c.set_interrupt_status(false);
        assert_eq!(r32(&c, 0x04) >> 16, u32::from(STATUS_CAP_LIST));
    }

    #[test]
    fn out_of_range_accesses() {
        let mut c = PciConfig::new(64 * 1024);
        let mut b = [0xaa; 4];
        c.read(0x100, &mut b);
        assert_eq!(b, [0; 4]);
        c.read(0xfe, &mut b);
        assert_eq!(b, [0; 4]);
        c.write(0xffe, &[1, 2, 3, 4]);
        c.write(0xfe, &[1, 2, 3, 4]);
        c.read(0xffff, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
