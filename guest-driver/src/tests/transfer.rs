// SPDX-License-Identifier: GPL-2.0

//! `dmalab_transfer`: single-mode and scatter-gather round trips, the SG
//! table, device memory through BAR1, completion by interrupt.

use super::*;

#[kunit_tests(dmalab_transfer)]
mod cases {
    use super::*;

    /// Single-mode round trips (kmalloc GFP_DMA bounce buffer) of several
    /// sizes at several device offsets: data checked in device memory with
    /// readb and after reading back; two device transfers each.
    #[test]
    fn single_round_trips() {
        let Some(dev) = device_under_test() else { return };
        const CASES: [(usize, usize); 7] = [
            (0, 1),
            (1, 63),
            (4095, 2),
            (0x1000, 4096),
            (0x2345, 5000),
            (0x3000, 512),
            (0, CHUNK),
        ];
        let before = tally(&dev);
        let size = dev.info.devmem_size;
        let res = dev.with_live(|live| {
            let mut out = KVec::new();
            for (i, &(off, len)) in CASES.iter().enumerate() {
                if off + len > size {
                    continue;
                }
                let rt = RoundTrip::run(live, Allocator::KmallocDma, off, len, 0, i as u8);
                out.push((off, len, rt), GFP_KERNEL)?;
            }
            Ok(out)
        });
        let (starts, ..) = report(&dev, &before);
        let mut c = Checks::new();
        match res {
            Ok(results) => {
                check!(c, !results.is_empty(), "device memory too small for any case");
                for (off, len, rt) in results.iter() {
                    diag!("single: {} bytes at {:#x}: {:?}", len, off, rt.result);
                    check_round_trip(&mut c, "single", rt);
                }
                check!(c, starts == 2 * results.len() as u64, "{} STARTs for {} round trips", starts, results.len());
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Scatter-gather round trips over single ZONE_DMA pages, with the data
    /// starting at various offsets into the first page (partial segments).
    #[test]
    fn sg_round_trips() {
        let Some(dev) = device_under_test() else { return };
        let size = dev.info.devmem_size;
        // (device offset, length, offset into the first page)
        let cases: [(usize, usize, usize); 4] = [
            (0, 3 * 4096, 0),
            (0x4000, 10000, 3000),
            (size.saturating_sub(100), 100, 4000),
            (1, CHUNK, 512),
        ];
        let before = tally(&dev);
        let res = dev.with_live(|live| {
            let mut out = KVec::new();
            for (i, &(off, len, first)) in cases.iter().enumerate() {
                if off + len > size {
                    continue;
                }
                let rt = RoundTrip::run(live, Allocator::SgPagesDma, off, len, first, 0x40 + i as u8);
                out.push((off, len, first, rt), GFP_KERNEL)?;
            }
            Ok(out)
        });
        let (starts, ..) = report(&dev, &before);
        let mut c = Checks::new();
        match res {
            Ok(results) => {
                check!(c, !results.is_empty(), "device memory too small for any case");
                for (off, len, first, rt) in results.iter() {
                    diag!("sg: {} bytes at {:#x}, page offset {}: {:?}", len, off, first, rt.result);
                    check_round_trip(&mut c, "sg", rt);
                }
                check!(c, starts == 2 * results.len() as u64, "{} STARTs for {} round trips", starts, results.len());
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// The scatter-gather table has one segment per page, each within the
    /// DMA mask: 10000 bytes from offset 3000 -> 1096 + 4096 + 4096 + 712.
    #[test]
    fn sg_table_one_segment_per_page() {
        let Some(dev) = device_under_test() else { return };
        let res = dev.with_live(|live| {
            let map = Mapping::new(live, Allocator::SgPagesDma, 10000, 3000, Dir::ToDevice)?;
            let mut segs = KVec::new();
            if let Mapping::Sg(sg) = &map {
                for e in sg.table().iter() {
                    segs.push((e.dma_address(), e.dma_len()), GFP_KERNEL)?;
                }
            }
            Ok(segs)
        });
        let mut c = Checks::new();
        match res {
            Ok(segs) => {
                let lens: KVec<u64> = {
                    let mut v = KVec::new();
                    for s in segs.iter() {
                        let _ = v.push(s.1, GFP_KERNEL);
                    }
                    v
                };
                diag!("segments: {:?}", &lens[..]);
                check!(c, lens[..] == [1096, 4096, 4096, 712], "segment lengths {:?}", &lens[..]);
                for &(addr, len) in segs.iter() {
                    check!(c, addr + len - 1 <= dev.info.dma_mask, "segment {:#x}+{} beyond the mask", addr, len);
                }
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// After a DMA to the device, every byte of the destination reads back
    /// with readb (BAR1) as sent.
    #[test]
    fn devmem_readb_after_dma_to_device() {
        let Some(dev) = device_under_test() else { return };
        const LEN: usize = 512;
        let off = fit(0x800, LEN, dev.info.devmem_size);
        let before = tally(&dev);
        let res = dev.with_live(|live| {
            let mut map = Mapping::new(live, Allocator::KmallocDma, LEN, 0, Dir::ToDevice)?;
            fill(&mut map, LEN, 0x3c);
            let r = map.dma(live, off, LEN, Dir::ToDevice);
            drop(map);
            let mut bad = 0usize;
            for i in 0..LEN {
                if live.devmem.try_read8(off + i)? != pattern::byte(0x3c, i) {
                    bad += 1;
                }
            }
            Ok((r, bad))
        });
        report(&dev, &before);
        let mut c = Checks::new();
        match res {
            Ok((r, bad)) => {
                check!(c, r.is_ok(), "DMA to device failed: {:?}", r);
                check!(c, bad == 0, "{} of {} bytes read with readb differ", bad, LEN);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Bytes written with writeb (BAR1) arrive in RAM through a DMA from the
    /// device.
    #[test]
    fn devmem_writeb_then_dma_from_device() {
        let Some(dev) = device_under_test() else { return };
        const LEN: usize = 300;
        let off = fit(0x1800, LEN, dev.info.devmem_size);
        let before = tally(&dev);
        let res = dev.with_live(|live| {
            for i in 0..LEN {
                live.devmem.try_write8(pattern::byte(0x5a, i), off + i)?;
            }
            let mut map = Mapping::new(live, Allocator::KmallocDma, LEN, 0, Dir::FromDevice)?;
            map.cpu(LEN, |p| {
                p.fill(0);
                true
            });
            let r = map.dma(live, off, LEN, Dir::FromDevice);
            Ok((r, count_mismatches(&mut map, LEN, 0x5a)))
        });
        report(&dev, &before);
        let mut c = Checks::new();
        match res {
            Ok((r, bad)) => {
                check!(c, r.is_ok(), "DMA from device failed: {:?}", r);
                check!(c, bad == 0, "{} of {} bytes differ", bad, LEN);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Every transfer completes by its interrupt: one handled interrupt per
    /// START, none lost.
    #[test]
    fn completion_by_interrupt() {
        let Some(dev) = device_under_test() else { return };
        let irqs = get(&dev.stats.irqs);
        let lost = get(&dev.stats.lost_irqs);
        let before = tally(&dev);
        let res = dev.with_live(|live| {
            let mut ok = true;
            for i in 0..3u8 {
                ok &= RoundTrip::run(live, Allocator::KmallocDma, 0x100, 64, 0, i).result.is_ok();
            }
            Ok(ok)
        });
        let (starts, ..) = report(&dev, &before);
        let irqs = get(&dev.stats.irqs) - irqs;
        let lost = get(&dev.stats.lost_irqs) - lost;
        diag!("{}: {} interrupts for {} STARTs ({:?}), {} completions without one", dev.label(), irqs, starts, dev.info.irq_mode, lost);
        let mut c = Checks::new();
        check!(c, matches!(res, Ok(true)), "round trips failed: {:?}", res);
        check!(c, irqs == starts, "{} interrupts for {} STARTs", irqs, starts);
        check!(c, lost == 0, "{} transfers finished without an interrupt", lost);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

