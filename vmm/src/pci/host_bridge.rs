//! The host bridge at 00:00.0: a read-only type-0 header, so the guest's PCI
//! core sees a normal root complex.

use pci::regs::{PCI_CLASS_PROG, PCI_HEADER_TYPE, PCI_VENDOR_ID};
use pci::{BarInfo, BarReprogrammingParams, PciDevice};

/// Red Hat's QEMU PCIe host bridge ID (1b36:0008), class 06/00 (host bridge).
const VENDOR: u16 = 0x1b36;
const DEVICE: u16 = 0x0008;

#[derive(Debug, Default)]
pub struct HostBridge;

impl HostBridge {
    fn dword(offset: u16) -> u32 {
        match offset & !3 {
            PCI_VENDOR_ID => u32::from(DEVICE) << 16 | u32::from(VENDOR),
            // Class 06 (bridge), subclass 00 (host), prog-if 0, revision 0.
            o if o == PCI_CLASS_PROG & !3 => 0x0600_0000,
            // Header type 0, single function (and everything else): zero.
            o if o == PCI_HEADER_TYPE & !3 => 0,
            _ => 0,
        }
    }
}

impl PciDevice for HostBridge {
    fn read_config(&self, offset: u16, data: &mut [u8]) {
        for (off, b) in (offset..).zip(data.iter_mut()) {
            *b = (Self::dword(off) >> ((off & 3) * 8)).to_le_bytes()[0];
        }
    }
    fn write_config(&self, _offset: u16, _data: &[u8]) -> Vec<BarReprogrammingParams> {
        Vec::new()
    }
    fn bars(&self) -> Vec<BarInfo> {
        Vec::new()
    }
    fn read_bar(&self, _bar: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write_bar(&self, _bar: u8, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_class() {
        let hb = HostBridge;
        let mut d = [0u8; 4];
        hb.read_config(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0008_1b36);
        let mut c = [0u8; 1];
        hb.read_config(0x0b, &mut c);
        assert_eq!(c[0], 0x06);
        let mut w = [0u8; 2];
        hb.read_config(2, &mut w);
        assert_eq!(u16::from_le_bytes(w), DEVICE);
    }
}
