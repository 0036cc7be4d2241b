//! dma24's PCI configuration space, laid out with the `pci` crate's
//! builder: identity, two 32-bit memory BARs (registers, device memory),
//! INTA and an MSI capability.

use pci::regs::PCI_INTERRUPT_PIN_INTA;
use pci::{BarKind, Capability, ConfigSpace, ConfigSpaceBuilder, ConfigSpaceError};

use crate::regs;

/// The configuration space of one dma24 function at power-on: BARs at
/// address 0, decoding off, MSI off. `devmem_size` (BAR1) is a power of two
/// of at least 16 bytes (checked by `Dma24Config::validate`).
pub fn dma24_config_space(devmem_size: u64) -> Result<ConfigSpace, ConfigSpaceError> {
    let mut b = ConfigSpaceBuilder::new(regs::VENDOR_ID, regs::DEVICE_ID)
        .class(regs::CLASS_CODE, regs::SUBCLASS, 0)
        .revision(regs::REVISION)
        .subsystem(regs::SUBSYSTEM_VENDOR_ID, regs::SUBSYSTEM_ID)
        .interrupt_pin(PCI_INTERRUPT_PIN_INTA)
        .add_bar(regs::BAR_REGS, BarKind::Memory32, regs::REGS_SIZE)?
        .add_bar(regs::BAR_DEVMEM, BarKind::Memory32, devmem_size)?;
    b.add_capability(&Capability::msi_64bit())?;
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pci::regs::*;

    fn r32(c: &ConfigSpace, off: u16) -> u32 {
        c.get32(off)
    }

    fn w32(c: &mut ConfigSpace, off: u16, v: u32) {
        c.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identity() {
        let c = dma24_config_space(64 * 1024).unwrap();
        assert_eq!(r32(&c, 0x00), 0xd024_1234);
        assert_eq!(r32(&c, 0x08), 0x0880_0001); // class 08, subclass 80, rev 1
        assert_eq!((r32(&c, 0x0c) >> 16) & 0xff, 0); // header type 0
        assert_eq!(r32(&c, 0x2c), 0x0001_1234);
        assert_eq!(r32(&c, 0x34), 0x40);
        assert_eq!(r32(&c, 0x3c), 0x0100); // pin INTA, line 0
        assert_eq!(r32(&c, 0x04), u32::from(PCI_STATUS_CAP_LIST) << 16);
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
        let mut c = dma24_config_space(64 * 1024).unwrap();
        assert_eq!(r32(&c, 0x40), 0x0080_0005); // id 5, next 0, 64-bit, 1 vector
        assert!(!c.msi_enabled());
        w32(&mut c, 0x44, 0xfee0_0003);
        w32(&mut c, 0x48, 0x1);
        w32(&mut c, 0x4c, 0xdead_0041);
        w32(&mut c, 0x40, 0xffff_ffff);
        assert!(c.msi_enabled());
        // Only the enable bit is writable: MMC/MME stay 0, 64-bit stays set.
        assert_eq!(r32(&c, 0x40), 0x0081_0005);
        assert_eq!(c.msi_message(), Some((0x1_fee0_0000, 0x41)));
        assert_eq!(r32(&c, 0x4c), 0x41);
    }

    #[test]
    fn bar_sizing_and_relocation() {
        let mut c = dma24_config_space(64 * 1024).unwrap();
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
        let moved = c.write(PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
        assert_eq!(moved.len(), 2, "both BARs start decoding: {moved:?}");
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
        let mut c = dma24_config_space(1 << 20).unwrap();
        w32(&mut c, 0x14, 0xffff_ffff);
        assert_eq!(r32(&c, 0x14), 0xfff0_0000);
    }

    #[test]
    fn command_bits() {
        let mut c = dma24_config_space(64 * 1024).unwrap();
        c.write(0x04, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), pci::DEFAULT_COMMAND_WRITABLE);
        assert!(c.command_has(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE));
        c.write(0x04, &[0]);
        assert!(!c.command_has(PCI_COMMAND_MEMORY) && !c.command_has(PCI_COMMAND_MASTER));
        assert!(c.command_has(PCI_COMMAND_INTX_DISABLE)); // in the byte not written
    }

    #[test]
    fn interrupt_status_is_read_only() {
        let mut c = dma24_config_space(64 * 1024).unwrap();
        c.set_interrupt_status(true);
        let both = u32::from(PCI_STATUS_CAP_LIST | PCI_STATUS_INTERRUPT);
        assert_eq!(r32(&c, 0x04) >> 16, both);
        c.write(0x06, &0u16.to_le_bytes());
        c.write(0x06, &0xffffu16.to_le_bytes());
        assert_eq!(r32(&c, 0x04) >> 16, both);
        c.set_interrupt_status(false);
        assert_eq!(r32(&c, 0x04) >> 16, u32::from(PCI_STATUS_CAP_LIST));
    }

    #[test]
    fn out_of_range_accesses() {
        let mut c = dma24_config_space(64 * 1024).unwrap();
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

    #[test]
    fn a_devmem_size_the_bar_cannot_take_is_an_error() {
        assert!(dma24_config_space(3000).is_err());
    }
}
