// SPDX-License-Identifier: GPL-2.0

//! KUnit suites that drive a bound dma24.
//!
//! They run with no user space: built into the kernel they run at boot after
//! all initcalls (the device is probed by then); in `dmalab.ko` they run at
//! `insmod`, after the driver is registered. Output is KTAP on the console.
//!
//! - No dma24 on the PCI bus: every case is skipped (`# SKIP no dma24 ...`).
//! - A dma24 on the bus that dmalab did not bind: every case fails.
//! - Otherwise each case checks its results and fails on any wrong one.
//!
//! Cases run on the bound device with the lowest index. Each prints, as a
//! KTAP diagnostic, how many transfers it started (`STARTs`) and what the
//! device counted, so the host trace can be matched against the suites:
//! planted faults are the cases of `dmalab_faults` (see README.md).
//!
//! Conventions: a case collects its results with [`Dma24::with_live`] and
//! checks them afterwards (a failed KUnit assertion ends the test thread at
//! once, which must not happen with the transfer mutex held or a DMA mapping
//! alive). Checks are gathered in [`Checks`] and reported one per line.

use crate::{
    alloc_lab::{count_mismatches, fill, pattern, Allocator, Mapping, RoundTrip},
    chardev::{self, Dma24Selftest},
    device::{self, get, DevCounters, Dma24, ErrorSource, IrqMode, LastError, Live},
    dma_raw,
    regs::*,
    sys,
    transfer::{default_timeout_ms, errno_for, Dir, Program, CHUNK},
};
use kernel::{io::Io, prelude::*, sync::Arc};

const PCI_COMMAND: usize = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;
const EPROTO: i32 = -71;
const EOPNOTSUPP: i32 = -95;

/// Prints a KTAP diagnostic line inside a test case.
macro_rules! diag {
    ($($arg:tt)+) => {
        pr_info!("    # {}\n", format_args!($($arg)+))
    };
}

/// Failed checks of one case; each failure is printed as it happens.
struct Checks {
    failed: usize,
}

impl Checks {
    fn new() -> Self {
        Self { failed: 0 }
    }

    fn check(&mut self, ok: bool, what: core::fmt::Arguments<'_>) {
        if !ok {
            self.failed += 1;
            pr_err!("    # FAILED: {}\n", what);
        }
    }

    fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

/// `check!(checks, condition, "what was expected {}", args...)`.
macro_rules! check {
    ($c:expr, $cond:expr, $($fmt:tt)+) => {
        $c.check($cond, format_args!($($fmt)+))
    };
}

/// The device under test; `None` after marking the case skipped (no dma24 on
/// the bus) or failed (a dma24 that dmalab did not bind).
fn device_under_test() -> Option<Arc<Dma24>> {
    if let Some(dev) = device::first_live_device() {
        return Some(dev);
    }
    if sys::pci_device_present(VENDOR_ID, DEVICE_ID) {
        if device::MASK_REFUSED.load(kernel::sync::atomic::Relaxed) != 0 {
            sys::kunit_skip("dmalab refused the dma24: its DMA mask is narrower than ZONE_DMA");
            return None;
        }
        pr_err!("    # a dma24 (1234:d024) is on the PCI bus but dmalab did not bind it: see the probe messages\n");
        sys::kunit_fail("dma24 present but not bound by dmalab");
    } else {
        sys::kunit_skip("no dma24 device (1234:d024) on the PCI bus");
    }
    None
}

/// `off` if `len` bytes fit there in device memory of `size` bytes, else 0.
fn fit(off: usize, len: usize, size: usize) -> usize {
    if off + len <= size {
        off
    } else {
        0
    }
}

/// STARTs and device counters at one point in time.
struct Tally {
    starts: u64,
    dev: DevCounters,
}

fn tally(dev: &Dma24) -> Tally {
    Tally {
        starts: get(&dev.stats.starts),
        dev: dev.device_counters().unwrap_or_default(),
    }
}

/// Prints what a case did to the device, for matching with the host trace.
fn report(dev: &Dma24, before: &Tally) -> (u64, u64, u64) {
    let now = tally(dev);
    let starts = now.starts - before.starts;
    let ok = now.dev.transfers.wrapping_sub(before.dev.transfers);
    let faults = now.dev.faults.wrapping_sub(before.dev.faults);
    diag!(
        "{}: {} STARTs; device counted {} transfers, {} faults",
        dev.label(),
        starts,
        ok,
        faults
    );
    (starts, ok, faults)
}

/// Checks of a lab or data round trip that should have worked.
fn check_round_trip(c: &mut Checks, what: &str, rt: &RoundTrip) {
    check!(c, rt.result.is_ok(), "{}: round trip failed: {:?}", what, rt.result);
    check!(c, rt.devmem_mismatches == 0, "{}: {} bytes differ in device memory (readb)", what, rt.devmem_mismatches);
    check!(c, rt.mismatches == 0, "{}: {} bytes differ after reading back", what, rt.mismatches);
    check!(c, rt.device_transfers == 2, "{}: device counted {} transfers, expected 2", what, rt.device_transfers);
}

fn with_device_failed(e: Error) -> bool {
    pr_err!("    # FAILED: could not use the device: {:?}\n", e);
    false
}

#[kunit_tests(dmalab_probe)]
mod probe {
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
                r.read8(REG_MAGIC),
                r.read8(REG_MAGIC + 1),
                r.read8(REG_MAGIC + 2),
                r.read8(REG_MAGIC + 3),
            ],
            caps: r.read32(REG_CAPS),
            control: r.read32(REG_CONTROL),
            devmem_reg: r.read32(REG_DEVMEM_SIZE),
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
                if live.regs.read32(REG_MAGIC) != MAGIC {
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
        let force_intx = *crate::module_parameters::force_intx.value() != 0;
        diag!("{}: force_intx={}, using {:?}", dev.label(), u8::from(force_intx), dev.info.irq_mode);
        let expected = if force_intx { IrqMode::Intx } else { IrqMode::Msi };
        assert_eq!(dev.info.irq_mode, expected);
    }
}

#[kunit_tests(dmalab_transfer)]
mod transfer {
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
                let rt = live.round_trip(Allocator::KmallocDma, off, len, 0, i as u8);
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
                let rt = live.round_trip(Allocator::SgPagesDma, off, len, first, 0x40 + i as u8);
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
            let map = live.map_bounce(Allocator::SgPagesDma, 10000, 3000, Dir::ToDevice)?;
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
            let mut map = live.map_bounce(Allocator::KmallocDma, LEN, 0, Dir::ToDevice)?;
            fill(&mut map, LEN, 0x3c);
            let r = live.dma(&mut map, off, LEN, Dir::ToDevice);
            drop(map);
            let mut bad = 0usize;
            for i in 0..LEN {
                if live.devmem.try_read8(off + i)? != pattern(0x3c, i) {
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
                live.devmem.try_write8(pattern(0x5a, i), off + i)?;
            }
            let mut map = live.map_bounce(Allocator::KmallocDma, LEN, 0, Dir::FromDevice)?;
            map.cpu(LEN, |p| {
                p.fill(0);
                true
            });
            let r = live.dma(&mut map, off, LEN, Dir::FromDevice);
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
                ok &= live.round_trip(Allocator::KmallocDma, 0x100, 64, 0, i).result.is_ok();
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

#[kunit_tests(dmalab_uapi)]
mod uapi {
    use super::*;

    /// The read()/write() path (bounce buffer, chunking, file offsets) with
    /// kernel memory standing in for user memory: 3 chunks and a bit.
    #[test]
    fn read_write_path_in_chunks() {
        let Some(dev) = device_under_test() else { return };
        let pos = 1000usize;
        let len = (3 * CHUNK + 123).min(dev.info.devmem_size - pos);
        let (mut src, mut dst) = match (
            KVec::from_elem(0u8, len, GFP_KERNEL),
            KVec::from_elem(0u8, len, GFP_KERNEL),
        ) {
            (Ok(s), Ok(d)) => (s, d),
            _ => {
                let allocated = false;
                assert!(allocated);
                return;
            }
        };
        for (i, b) in src.iter_mut().enumerate() {
            *b = pattern(0x77, i);
        }
        let saved = dev.allocator();
        dev.set_allocator(Allocator::KmallocDma);
        let before = tally(&dev);
        let mut at = 0;
        let wrote = dev.user_transfer(pos, len, Dir::ToDevice, &mut |piece| {
            let n = piece.len();
            piece.copy_from_slice(&src[at..at + n]);
            at += n;
            n
        });
        let mut at = 0;
        let read = dev.user_transfer(pos, len, Dir::FromDevice, &mut |piece| {
            let n = piece.len();
            dst[at..at + n].copy_from_slice(piece);
            at += n;
            n
        });
        dev.set_allocator(saved);
        let (starts, ..) = report(&dev, &before);
        let chunks = len.div_ceil(CHUNK) as u64;
        let mut c = Checks::new();
        check!(c, matches!(wrote, Ok(n) if n == len), "write of {} bytes: {:?}", len, wrote);
        check!(c, matches!(read, Ok(n) if n == len), "read of {} bytes: {:?}", len, read);
        check!(c, src[..] == dst[..], "data read back differs");
        check!(c, starts == 2 * chunks, "{} STARTs for {} chunks each way", starts, chunks);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Offsets and lengths are checked before any DMA: negative or past the
    /// end -> EINVAL, writing at the end -> ENOSPC, reading there -> 0 bytes,
    /// long requests clipped to device memory.
    #[test]
    fn file_offsets_checked() {
        let Some(dev) = device_under_test() else { return };
        let size = dev.info.devmem_size;
        let end = size as i64;
        let mut c = Checks::new();
        let r = dev.user_range(-1, 10, Dir::FromDevice);
        check!(c, r == Err(EINVAL), "read at -1: {:?}", r);
        let r = dev.user_range(end + 1, 10, Dir::ToDevice);
        check!(c, r == Err(EINVAL), "write past the end: {:?}", r);
        let r = dev.user_range(end, 10, Dir::ToDevice);
        check!(c, r == Err(ENOSPC), "write at the end: {:?}", r);
        let r = dev.user_range(end, 10, Dir::FromDevice);
        check!(c, r == Ok(0), "read at the end: {:?}", r);
        let r = dev.user_range(end - 5, 10, Dir::ToDevice);
        check!(c, r == Ok(5), "write across the end: {:?}", r);
        let r = dev.user_range(0, 0, Dir::ToDevice);
        check!(c, r == Ok(0), "empty write: {:?}", r);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// ioctls with a bad user pointer fail with EFAULT (no oops), unknown
    /// ones with ENOTTY, an unknown allocator number with EINVAL.
    #[test]
    fn ioctl_bad_arguments() {
        let Some(dev) = device_under_test() else { return };
        // Page 0 is never mapped: copies to or from it fault and are fixed up.
        const BAD: usize = 0x10;
        let mut c = Checks::new();
        for (name, cmd) in [
            ("GET_INFO", chardev::DMA24_IOC_GET_INFO),
            ("SET_ALLOC", chardev::DMA24_IOC_SET_ALLOC),
            ("GET_COUNTERS", chardev::DMA24_IOC_GET_COUNTERS),
            ("GET_LAST_ERROR", chardev::DMA24_IOC_GET_LAST_ERROR),
            ("SELFTEST", chardev::DMA24_IOC_SELFTEST),
        ] {
            let r = chardev::ioctl(&dev, cmd, BAD);
            check!(c, r == Err(EFAULT), "{} with a bad pointer: {:?}", name, r);
        }
        let r = chardev::ioctl(&dev, 0xd2ff, 0);
        check!(c, r == Err(ENOTTY), "unknown ioctl: {:?}", r);
        let r = Allocator::from_u32(Allocator::ALL.len() as u32);
        check!(c, r.is_err(), "allocator {} accepted", Allocator::ALL.len());
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

/// One allocator lab case: a round trip through `alloc`, checked against
/// what the DMA API must do with that buffer for this device.
fn lab(alloc: Allocator) -> bool {
    let Some(dev) = device_under_test() else { return true };
    let len = 8192.min(dev.info.devmem_size);
    let off = fit(0x6000, len, dev.info.devmem_size);
    let map_errors = get(&dev.stats.map_errors);
    let before = tally(&dev);
    let res = dev.with_live(|live| Ok(live.round_trip(alloc, off, len, 0, 0x90 + alloc as u8)));
    let (starts, ..) = report(&dev, &before);
    let map_errors = get(&dev.stats.map_errors) - map_errors;
    let last: LastError = dev.last_error();
    let mut c = Checks::new();
    let rt = match res {
        Ok(rt) => rt,
        Err(e) => return with_device_failed(e),
    };
    let mask = dev.info.dma_mask;
    diag!(
        "{} ({}): buffer at {:#x}..{:#x}, {} the {}-bit mask {:#x}: {:?}",
        alloc.name(),
        alloc.call(),
        rt.phys_lo,
        rt.phys_hi,
        if rt.predicted_ok { "within" } else { "beyond" },
        dev.info.mask_bits,
        mask,
        rt.result
    );
    check!(
        c,
        rt.result.is_ok() == rt.predicted_ok,
        "mapping outcome {:?} but the buffer is {} the mask",
        rt.result,
        if rt.predicted_ok { "within" } else { "beyond" }
    );
    if rt.predicted_ok {
        check_round_trip(&mut c, alloc.name(), &rt);
        check!(c, starts == 2, "{} STARTs, expected 2", starts);
    } else {
        check!(c, rt.result == Err(EIO), "refused mapping gave {:?}, expected EIO", rt.result);
        check!(c, starts == 0 && rt.device_transfers == 0, "the unmappable buffer reached the device ({} STARTs)", starts);
        check!(c, map_errors == 1, "{} mapping errors counted, expected 1", map_errors);
        check!(c, last.source == ErrorSource::Mapping, "last error source {:?}, expected Mapping", last.source);
    }
    if alloc.zone_dma() && dev.info.mask_bits >= 24 {
        check!(c, rt.predicted_ok, "a ZONE_DMA buffer at {:#x} is beyond 16 MiB", rt.phys_hi);
    }
    if !alloc.zone_dma() && mask == 0xff_ffff && rt.predicted_ok {
        diag!("note: this buffer happened to land below 16 MiB; the refusal was not exercised");
    }
    c.all_passed()
}

#[kunit_tests(dmalab_alloc_lab)]
mod alloc_lab_suite {
    use super::*;

    /// kmalloc(GFP_KERNEL | GFP_DMA): ZONE_DMA, works.
    #[test]
    fn kmalloc_gfp_dma() {
        let outcome_as_dma_api_requires = lab(Allocator::KmallocDma);
        assert!(outcome_as_dma_api_requires);
    }

    /// kmalloc(GFP_KERNEL): above 16 MiB, mapping refused (EIO), never started.
    #[test]
    fn kmalloc_gfp_kernel() {
        let outcome_as_dma_api_requires = lab(Allocator::KmallocKernel);
        assert!(outcome_as_dma_api_requires);
    }

    /// kzalloc(GFP_KERNEL): zeroing does not change the zone: refused.
    #[test]
    fn kzalloc_gfp_kernel() {
        let outcome_as_dma_api_requires = lab(Allocator::Kzalloc);
        assert!(outcome_as_dma_api_requires);
    }

    /// kmem_cache_create(SLAB_CACHE_DMA) objects: ZONE_DMA, works.
    #[test]
    fn kmem_cache_slab_cache_dma() {
        let outcome_as_dma_api_requires = lab(Allocator::KmemCacheDma);
        assert!(outcome_as_dma_api_requires);
    }

    /// __get_free_pages(GFP_DMA, order): ZONE_DMA, works.
    #[test]
    fn get_free_pages_gfp_dma() {
        let outcome_as_dma_api_requires = lab(Allocator::PagesDma);
        assert!(outcome_as_dma_api_requires);
    }

    /// vmalloc(): pages from anywhere; dma_map_sgtable() refuses (EIO).
    #[test]
    fn vmalloc_sg() {
        let outcome_as_dma_api_requires = lab(Allocator::Vmalloc);
        assert!(outcome_as_dma_api_requires);
    }

    /// alloc_pages(GFP_DMA) pages in an SG table: works.
    #[test]
    fn zone_dma_pages_sg() {
        let outcome_as_dma_api_requires = lab(Allocator::SgPagesDma);
        assert!(outcome_as_dma_api_requires);
    }

    /// The DMA24_IOC_SELFTEST report agrees: every allocator behaves as the
    /// DMA API requires.
    #[test]
    fn selftest_report() {
        let Some(dev) = device_under_test() else { return };
        let mut req = Dma24Selftest {
            dev_offset: fit(0x9000, 4096, dev.info.devmem_size) as u32,
            len: 4096,
            ..Dma24Selftest::default()
        };
        let before = tally(&dev);
        let r = dev.selftest(&mut req);
        report(&dev, &before);
        diag!(
            "selftest: {:?}, passed {:#x}, within mask {:#x}, results {:?}",
            r,
            req.passed,
            req.within_mask,
            req.result
        );
        let all = (1u32 << Allocator::ALL.len()) - 1;
        let mut c = Checks::new();
        check!(c, r.is_ok(), "selftest: {:?}", r);
        check!(c, req.passed == all, "passed mask {:#x}, expected {:#x}", req.passed, all);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

/// What a planted fault did.
struct Planted {
    /// Outcome of the deliberately wrong transfer.
    result: Result,
    /// The address it was planted at (0 if none).
    addr: u64,
    /// A correct transfer right after it (if the case does one).
    after: Option<Result>,
    last: LastError,
    devmem_bad: usize,
}

/// Runs `f` (which returns the planted address, the outcome and an optional
/// follow-up outcome) on a device-owned, filled 256-byte ZONE_DMA buffer.
fn plant(
    dev: &Dma24,
    f: impl FnOnce(&mut Live<'_>, &mut Mapping<'_>) -> Result<(u64, Result, Option<Result>)>,
) -> Result<Planted> {
    let before = tally(dev);
    let res = dev.with_live(|live| {
        let mut map = live.map_bounce(Allocator::KmallocDma, 256, 0, Dir::ToDevice)?;
        fill(&mut map, 256, 0x11);
        if let Mapping::Single(m) = &mut map {
            m.give_to_device();
        }
        let (addr, result, after) = f(live, &mut map)?;
        drop(map);
        let devmem_bad = live.devmem_mismatches(0, 256, 0x11)?;
        Ok((addr, result, after, devmem_bad))
    });
    report(dev, &before);
    let (addr, result, after, devmem_bad) = res?;
    Ok(Planted {
        result,
        addr,
        after,
        last: dev.last_error(),
        devmem_bad,
    })
}

fn single_handle(map: &Mapping<'_>) -> Result<u64> {
    match map {
        Mapping::Single(m) => Ok(m.dma_handle()),
        Mapping::Sg(_) => Err(EINVAL),
    }
}

fn program(addr: u64, dev_offset: u32, len: u32, cmd: u32) -> Program {
    Program {
        addr,
        dev_offset,
        len,
        cmd,
        timeout_ms: default_timeout_ms(),
    }
}

/// Checks a planted fault the device must refuse with `code` -> `errno`.
fn check_refused(c: &mut Checks, p: &Planted, code: u32, errno: i32) {
    diag!(
        "planted: {:?}; last error {} (code {}), bus {:#x}, fault {:#x}, seq {}",
        p.result,
        err_name(p.last.dev_error),
        p.last.dev_error,
        p.last.bus_addr,
        p.last.fault_addr,
        p.last.seq
    );
    let got = p.result.err().map_or(0, |e| e.to_errno());
    check!(c, got == errno, "errno {}, expected {}", got, errno);
    check!(c, p.last.source == ErrorSource::Device, "last error source {:?}", p.last.source);
    check!(c, p.last.dev_error == code, "REG_ERROR {} ({}), expected {} ({})", p.last.dev_error, err_name(p.last.dev_error), code, err_name(code));
    check!(c, p.last.seq != 0, "no trace sequence number reported");
    if let Some(after) = &p.after {
        check!(c, after.is_ok(), "the correct transfer after the fault failed: {:?}", after);
    }
}

/// `Some(bits)` if some bus address is beyond the device's mask; otherwise
/// marks the case skipped.
fn mask_bits_below_64(dev: &Dma24) -> Option<u32> {
    if dev.info.mask_bits >= 64 {
        sys::kunit_skip("the device's DMA mask is 64 bits: no address is beyond it");
        return None;
    }
    Some(dev.info.mask_bits)
}

#[kunit_tests(dmalab_faults)]
mod faults {
    use super::*;

    /// Planted: REG_DMA_ADDR = a mapped buffer's bus address + 2^mask_bits,
    /// bypassing the DMA API. overflow=reject: ERR_MASK -> EFAULT, fault
    /// address = the planted one. overflow=truncate: the device wraps the
    /// address onto the buffer itself and the transfer "works".
    #[test]
    fn over_mask_address() {
        let Some(dev) = device_under_test() else { return };
        let Some(bits) = mask_bits_below_64(&dev) else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)? + (1u64 << bits);
            Ok((addr, live.execute(&program(addr, 0, 256, CMD_START)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) if dev.info.truncates() => {
                diag!("device truncates: {:?}, {} bytes differ from the aliased buffer", p.result, p.devmem_bad);
                check!(c, p.result.is_ok(), "truncating device refused: {:?}", p.result);
                check!(c, p.devmem_bad == 0, "{} bytes differ: the wrapped address did not alias the buffer", p.devmem_bad);
            }
            Ok(p) => {
                check_refused(&mut c, &p, ERR_MASK, EFAULT.to_errno());
                check!(c, p.last.fault_addr == p.addr, "fault address {:#x}, planted {:#x}", p.last.fault_addr, p.addr);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: 64 bytes starting 16 bytes below the end of the mask (the
    /// range crosses it). ERR_MASK -> EFAULT. Skipped on a truncating device
    /// (the access would wrap into low memory).
    #[test]
    fn over_mask_crossing() {
        let Some(dev) = device_under_test() else { return };
        if mask_bits_below_64(&dev).is_none() {
            return;
        }
        if dev.info.truncates() {
            sys::kunit_skip("the device truncates: a crossing access wraps instead of faulting");
            return;
        }
        let addr = dev.info.dma_mask - 15;
        let p = plant(&dev, |live, _| Ok((addr, live.execute(&program(addr, 0, 64, CMD_START)), None)));
        let mut c = Checks::new();
        match p {
            Ok(p) => {
                check_refused(&mut c, &p, ERR_MASK, EFAULT.to_errno());
                check!(c, p.last.fault_addr == addr, "fault address {:#x}, planted {:#x}", p.last.fault_addr, addr);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: a correct descriptor list whose one descriptor points
    /// 2^mask_bits above a mapped buffer. ERR_MASK -> EFAULT (reject mode).
    #[test]
    fn over_mask_sg_descriptor() {
        let Some(dev) = device_under_test() else { return };
        let Some(bits) = mask_bits_below_64(&dev) else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)? + (1u64 << bits);
            let list = live.descriptor_list(&[(addr, 256, DESC_LAST)])?;
            let r = live.execute(&program(list.dma_handle(), 0, 256, CMD_START | CMD_SG));
            Ok((addr, r, None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) if dev.info.truncates() => {
                check!(c, p.result.is_ok() && p.devmem_bad == 0, "truncating device: {:?}, {} bytes differ", p.result, p.devmem_bad);
            }
            Ok(p) => {
                check_refused(&mut c, &p, ERR_MASK, EFAULT.to_errno());
                check!(c, p.last.fault_addr == p.addr, "fault address {:#x}, planted {:#x}", p.last.fault_addr, p.addr);
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: bus mastering cleared in the PCI Command register (behind
    /// the PCI core's back), then a correct transfer. ERR_BME_OFF -> EPERM.
    /// With the Command register restored the same transfer works.
    #[test]
    fn bus_master_off() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let handle = single_handle(map)?;
            let cfg = live.pdev.config_space();
            let command = cfg.read16(PCI_COMMAND);
            cfg.write16(command & !PCI_COMMAND_MASTER, PCI_COMMAND);
            let r = live.dma(map, 0, 256, Dir::ToDevice);
            cfg.write16(command, PCI_COMMAND);
            let after = live.dma(map, 0, 256, Dir::ToDevice);
            Ok((handle, r, Some(after)))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BME_OFF, EPERM.to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: REG_DMA_LEN = 0. ERR_BAD_LENGTH -> EINVAL.
    #[test]
    fn zero_length() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            Ok((addr, live.execute(&program(addr, 0, 0, CMD_START)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_LENGTH, EINVAL.to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: 64 bytes at 16 bytes before the end of device memory.
    /// ERR_BAD_OFFSET -> ERANGE.
    #[test]
    fn past_device_memory() {
        let Some(dev) = device_under_test() else { return };
        let off = u32::try_from(dev.info.devmem_size - 16).unwrap_or(u32::MAX);
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            Ok((addr, live.execute(&program(addr, off, 64, CMD_START)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_OFFSET, ERANGE.to_errno()),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: a reserved bit (bit 7) in REG_DMA_CMD. ERR_BAD_COMMAND ->
    /// EOPNOTSUPP.
    #[test]
    fn reserved_command_bit() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            Ok((addr, live.execute(&program(addr, 0, 64, CMD_START | 1 << 7)), None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_COMMAND, EOPNOTSUPP),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Planted: a descriptor with a reserved flag (bit 4).
    /// ERR_BAD_DESCRIPTOR -> EPROTO.
    #[test]
    fn reserved_descriptor_flag() {
        let Some(dev) = device_under_test() else { return };
        let p = plant(&dev, |live, map| {
            let addr = single_handle(map)?;
            let list = live.descriptor_list(&[(addr, 64, DESC_LAST | 1 << 4)])?;
            let r = live.execute(&program(list.dma_handle(), 0, 64, CMD_START | CMD_SG));
            Ok((addr, r, None))
        });
        let mut c = Checks::new();
        match p {
            Ok(p) => check_refused(&mut c, &p, ERR_BAD_DESCRIPTOR, EPROTO),
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// The errno of every device error code (no device needed).
    #[test]
    fn errno_table() {
        let table: [(u32, i32); 10] = [
            (ERR_MASK, EFAULT.to_errno()),
            (ERR_RAM, ENXIO.to_errno()),
            (ERR_BME_OFF, EPERM.to_errno()),
            (ERR_BAD_LENGTH, EINVAL.to_errno()),
            (ERR_BAD_OFFSET, ERANGE.to_errno()),
            (ERR_BAD_DESCRIPTOR, EPROTO),
            (ERR_DESC_LIST_TOO_LONG, E2BIG.to_errno()),
            (ERR_BUSY, EBUSY.to_errno()),
            (ERR_BAD_COMMAND, EOPNOTSUPP),
            (ERR_ABORTED, EIO.to_errno()),
        ];
        let mut c = Checks::new();
        for (code, errno) in table {
            let got = errno_for(code).to_errno();
            check!(c, got == errno, "{} -> {}, expected {}", err_name(code), got, errno);
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

#[kunit_tests(dmalab_lifecycle)]
mod lifecycle {
    use super::*;

    /// Unbind the device from dmalab (the remove path frees everything:
    /// IRQ, BARs, /dev node, debugfs, registry entry; DMA-API debugging
    /// reports any leaked mapping here), check it is unusable, bind it
    /// again and do a round trip on the new binding.
    #[test]
    fn unbind_and_rebind() {
        let Some(dev) = device_under_test() else { return };
        let pdev = dev.pdev.clone();
        let index = dev.index;
        sys::release_driver(pdev.as_ref());
        let still_alive = dev.is_alive();
        let after_unbind = dev.with_live(|_| Ok(()));
        let still_listed = device::devices().map_or(true, |v| v.iter().any(|d| Arc::ptr_eq(d, &dev)));
        drop(dev);
        let attached = sys::attach_driver(pdev.as_ref());
        let again = device::devices().ok().and_then(|v| {
            v.into_iter()
                .find(|d| core::ptr::eq::<kernel::pci::Device>(&*d.pdev, &*pdev))
        });
        let mut c = Checks::new();
        check!(c, !still_alive, "device still alive after unbind");
        check!(c, after_unbind == Err(ENODEV), "use after unbind gave {:?}, expected ENODEV", after_unbind);
        check!(c, !still_listed, "device still in the registry after unbind");
        check!(c, matches!(attached, Ok(true)), "rebind: {:?}", attached);
        match again {
            Some(dev) => {
                check!(c, dev.index == index, "rebound as dma24-{}, was dma24-{}", dev.index, index);
                let before = tally(&dev);
                let rt = dev.with_live(|live| Ok(live.round_trip(Allocator::KmallocDma, 0, 4096, 0, 0xee)));
                report(&dev, &before);
                match rt {
                    Ok(rt) => check_round_trip(&mut c, "after rebind", &rt),
                    Err(e) => c.check(with_device_failed(e), format_args!("device")),
                }
            }
            None => check!(c, false, "no device bound after rebind"),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}
