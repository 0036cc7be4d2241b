// SPDX-License-Identifier: GPL-2.0

//! `dmalab_probe`: what probe set up (identity, DMA masks, PCI Command,
//! interrupts) and the register round trip time.

use super::*;

#[kunit_tests(dmalab_probe)]
mod cases {
    use super::*;

    struct Facts {
        magic: [u8; 4],
        caps: u32,
        control: u32,
        devmem_reg: u32,
        bar1_len: usize,
        command: u16,
        masks: (u64, u64),
    }

    fn facts(live: &mut Live<'_>) -> Facts {
        let r = live.regs;
        Facts {
            magic: [
                r.reg8(REG_MAGIC),
                r.reg8(REG_MAGIC + 1),
                r.reg8(REG_MAGIC + 2),
                r.reg8(REG_MAGIC + 3),
            ],
            caps: r.reg32(REG_CAPS),
            control: r.reg32(REG_CONTROL),
            devmem_reg: r.reg32(REG_DEVMEM_SIZE),
            bar1_len: live.devmem.maxsize(),
            command: live.pdev.config_space().read16(PCI_COMMAND),
            masks: dma_raw::dma_masks(live.ddev),
        }
    }

    /// Register reads round-trip through the VMM (each is an MMIO exit) and
    /// all return the magic. Prints the mean time per read, which
    /// `cargo xtask bench` reports as the guest-visible register round trip.
    #[test]
    fn register_read_round_trip() {
        const READS: u32 = 200;
        let Some(dev) = device_under_test() else { return };
        let timed = dev.with_live(|live| {
            let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
            let mut wrong = 0u32;
            for _ in 0..READS {
                if live.regs.reg32(REG_MAGIC) != MAGIC {
                    wrong += 1;
                }
            }
            Ok((start.elapsed().as_nanos(), wrong))
        });
        let (ns, wrong) = match timed {
            Ok(t) => t,
            Err(e) => {
                let device_usable = with_device_failed(e);
                assert!(device_usable);
                return;
            }
        };
        diag!(
            "{}: mmio_read_ns={} reads={} (readl of REG_MAGIC, mean)",
            dev.label(),
            ns / i64::from(READS),
            READS
        );
        assert_eq!(wrong, 0);
    }

    /// The device is a dma24, its DMA mask is exactly REG_CAPS' width, and it
    /// is set up for DMA (memory decoding, bus mastering, interrupts).
    #[test]
    fn identity_mask_and_setup() {
        let Some(dev) = device_under_test() else { return };
        let f = match dev.with_live(|live| Ok(facts(live))) {
            Ok(f) => f,
            Err(e) => {
                let device_usable = with_device_failed(e);
                assert!(device_usable);
                return;
            }
        };
        let bits = f.caps & CAPS_MASK_BITS;
        let want_mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        diag!(
            "{}: magic {:?}, caps {:#x} ({} bits), masks {:#x}/{:#x}, command {:#06x}, {} bytes of device memory",
            dev.label(),
            f.magic,
            f.caps,
            bits,
            f.masks.0,
            f.masks.1,
            f.command,
            dev.info.devmem_size
        );
        let mut c = Checks::new();
        check!(c, &f.magic == b"DM24", "readb of REG_MAGIC spells {:?}, not DM24", f.magic);
        check!(c, bits == dev.info.mask_bits, "REG_CAPS says {} bits, driver uses {}", bits, dev.info.mask_bits);
        check!(c, f.masks.0 == want_mask, "streaming DMA mask {:#x}, expected {:#x}", f.masks.0, want_mask);
        check!(c, f.masks.1 == want_mask, "coherent DMA mask {:#x}, expected {:#x}", f.masks.1, want_mask);
        check!(c, f.command & PCI_COMMAND_MEMORY != 0, "memory decoding off (command {:#x})", f.command);
        check!(c, f.command & PCI_COMMAND_MASTER != 0, "bus mastering off (command {:#x})", f.command);
        check!(c, f.control & CTRL_IRQ_ENABLE != 0, "CTRL_IRQ_ENABLE off (control {:#x})", f.control);
        check!(c, f.devmem_reg as usize == dev.info.devmem_size, "REG_DEVMEM_SIZE {} != {}", f.devmem_reg, dev.info.devmem_size);
        check!(c, f.bar1_len >= dev.info.devmem_size, "BAR1 maps {} bytes < {}", f.bar1_len, dev.info.devmem_size);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// MSI unless `force_intx=1` (the device has an MSI capability).
    #[test]
    fn irq_mode_follows_force_intx() {
        let Some(dev) = device_under_test() else { return };
        let force_intx = dev.params.force_intx;
        diag!("{}: force_intx={}, using {:?}", dev.label(), u8::from(force_intx), dev.info.irq_mode);
        let expected = if force_intx { IrqMode::Intx } else { IrqMode::Msi };
        assert_eq!(dev.info.irq_mode, expected);
    }
}

