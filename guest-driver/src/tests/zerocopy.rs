// SPDX-License-Identifier: GPL-2.0

//! `dmalab_zerocopy`: the mmap buffer's DMA path with a buffer of the
//! test's own (no user mapping), and the argument checks of both zero-copy
//! ioctls. Pinning user pages needs a user address space, which KUnit's
//! kernel thread has not: that path runs from `dma24-tool zerocopy`.

use super::*;
use crate::{
    mmap_buf::MmapBuf,
    zerocopy::{self, Dma24XferUser, DMA24_XFER_BOUNCE, DMA24_XFER_FROM_DEVICE},
};
use kernel::page::PAGE_SIZE;

/// The test's buffer: 5 pages.
const BUF_LEN: usize = 5 * PAGE_SIZE;
/// Out: bytes 100..9100 of the buffer (pages 0-2); back: 10000..19000 (pages 2-4).
const OUT_AT: usize = 100;
const BACK_AT: usize = 10_000;
const LEN: usize = 9000;
const SEED: u8 = 0x3c;

/// What the round trip saw.
struct MmapRoundTrip {
    out: Result<(u64, u32)>,
    back: Result<(u64, u32)>,
    devmem_mismatches: Result<usize>,
    mismatches: usize,
}

fn mmap_round_trip(live: &mut Live<'_>, buf: &Arc<MmapBuf>, dev_offset: usize) -> MmapRoundTrip {
    let out = zerocopy::mmap_transfer(live, buf.clone(), OUT_AT, dev_offset, LEN, Dir::ToDevice);
    let devmem_mismatches = devmem_mismatches(live, dev_offset, LEN, SEED);
    let back = zerocopy::mmap_transfer(live, buf.clone(), BACK_AT, dev_offset, LEN, Dir::FromDevice);
    let mut got = KVec::from_elem(0u8, LEN, GFP_KERNEL).unwrap_or_default();
    // SAFETY: The buffer is this test's own and was never mapped into user space.
    let read = unsafe { buf.read(BACK_AT, &mut got) };
    let mismatches = if read.is_ok() && got.len() == LEN {
        got.iter().enumerate().filter(|&(i, b)| *b != pattern::byte(SEED, i)).count()
    } else {
        LEN
    };
    MmapRoundTrip {
        out,
        back,
        devmem_mismatches,
        mismatches,
    }
}

/// How many of the buffer's mapped pieces (physically contiguous, at most
/// 64 KiB) bytes `at..at + len` touch: 1 when ZONE_DMA gave the buffer as
/// one block (the usual case), up to one per page when it did not.
fn pieces_touched(buf: &MmapBuf, at: usize, len: usize) -> Result<usize> {
    Ok(buf.pieces()?.iter().filter(|&&(start, n, _)| start < at + len && at < start + n).count())
}

#[kunit_tests(dmalab_zerocopy)]
mod cases {
    use super::*;

    /// 9000 bytes written into a ZONE_DMA page buffer (as user space would
    /// through its mapping) go to device memory through the buffer's
    /// standing mapping, one descriptor per mapped piece touched, are
    /// checked there with readb, come back into another part of the buffer
    /// and compare equal. 2 STARTs; every bus address within the mask.
    #[test]
    fn mmap_buffer_round_trip() {
        let Some(dev) = device_under_test() else { return };
        let dev_offset = fit(0x8000, LEN, dev.info.devmem_size);
        let buf = MmapBuf::new(BUF_LEN).and_then(|b| Ok(Arc::new(b, GFP_KERNEL)?));
        let mut data = KVec::from_elem(0u8, LEN, GFP_KERNEL).unwrap_or_default();
        for (i, b) in data.iter_mut().enumerate() {
            *b = pattern::byte(SEED, i);
        }
        let mut c = Checks::new();
        check!(c, data.len() == LEN, "pattern allocation");
        let buf = match buf {
            Ok(b) => b,
            Err(e) => {
                check!(c, false, "buffer allocation: {:?}", e);
                let all_checks_passed = c.all_passed();
                assert!(all_checks_passed);
                return;
            }
        };
        // SAFETY: The buffer is this test's own and was never mapped into user space.
        let filled = unsafe { buf.write(OUT_AT, &data) };
        check!(c, filled.is_ok(), "filling the buffer: {:?}", filled);
        let before = tally(&dev);
        let timed = |d: &Dma24, key: &str| d.timing.lines().iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| *v);
        let (irqs_before, device_ns_before) = (timed(&dev, "irqs_timed"), timed(&dev, "start_to_irq_ns"));
        let rt = dev.with_live(|live| Ok(mmap_round_trip(live, &buf, dev_offset)));
        let (starts, ok, _) = report(&dev, &before);
        // debugfs `timing` saw both transfers' interrupts, and they took time.
        let irqs = timed(&dev, "irqs_timed") - irqs_before;
        check!(c, irqs == 2, "timing: {} transfers timed, expected 2", irqs);
        check!(c, timed(&dev, "start_to_irq_ns") > device_ns_before, "timing: no START -> interrupt time recorded");
        match rt {
            Ok(rt) => {
                let mask = dev.info.dma_mask;
                for (what, at, r) in [("to device", OUT_AT, &rt.out), ("from device", BACK_AT, &rt.back)] {
                    let want = pieces_touched(&buf, at, LEN);
                    match r {
                        Ok((bus, segments)) => {
                            check!(c, Ok(*segments as usize) == want, "{}: {} descriptors, expected one per mapped piece touched: {:?}", what, segments, want);
                            check!(c, *bus + PAGE_SIZE as u64 <= mask + 1, "{}: bus address {:#x} beyond the mask", what, bus);
                        }
                        Err(e) => check!(c, false, "{}: {:?}", what, e),
                    }
                }
                check!(c, matches!(rt.devmem_mismatches, Ok(0)), "device memory (readb): {:?} bytes differ", rt.devmem_mismatches);
                check!(c, rt.mismatches == 0, "{} bytes differ after reading back", rt.mismatches);
                if rt.out.is_ok() && rt.back.is_ok() && rt.mismatches == 0 {
                    // For the host harness, like the allocator lab's round trips.
                    dev_info!(dev.pdev, "{}: xfer dev_offset={} len={} seed={} alloc=mmap-buffer\n", dev.name, dev_offset, LEN, SEED);
                }
            }
            Err(e) => c.check(with_device_failed(e), format_args!("device")),
        }
        check!(c, starts == 2 && ok == 2, "{} STARTs, {} device transfers, expected 2 and 2", starts, ok);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// Ranges outside the buffer or device memory, empty ones and unknown
    /// flags are refused with EINVAL before anything starts; the three
    /// zero-copy ioctls with a bad pointer give EFAULT.
    #[test]
    fn mmap_transfer_checks() {
        let Some(dev) = device_under_test() else { return };
        let size = dev.info.devmem_size;
        let mut c = Checks::new();
        let before = tally(&dev);
        match MmapBuf::new(2 * PAGE_SIZE).and_then(|b| Ok(Arc::new(b, GFP_KERNEL)?)) {
            Ok(buf) => {
                let res = dev.with_live(|live| {
                    let mut t = |at, dev_off, len| zerocopy::mmap_transfer(live, buf.clone(), at, dev_off, len, Dir::ToDevice).map(|_| ());
                    Ok([
                        ("past the buffer", t(2 * PAGE_SIZE - 10, 0, 100)),
                        ("empty", t(0, 0, 0)),
                        ("past device memory", t(0, size - 16, 64)),
                        ("offset wraps", t(usize::MAX - 1, 0, 16)),
                    ])
                });
                match res {
                    Ok(results) => {
                        for (what, r) in results {
                            check!(c, r == Err(EINVAL), "{}: {:?}, expected EINVAL", what, r);
                        }
                    }
                    Err(e) => c.check(with_device_failed(e), format_args!("device")),
                }
            }
            Err(e) => check!(c, false, "buffer allocation: {:?}", e),
        }
        const BAD: usize = 0x10;
        for (name, cmd) in [
            ("XFER_USER", zerocopy::DMA24_IOC_XFER_USER),
            ("MMAP_XFER", zerocopy::DMA24_IOC_MMAP_XFER),
            ("GET_ZEROCOPY", zerocopy::DMA24_IOC_GET_ZEROCOPY),
        ] {
            let r = chardev::ioctl(&dev, cmd, BAD);
            check!(c, r == Err(EFAULT), "{} with a bad pointer: {:?}", name, r);
        }
        let (starts, ..) = report(&dev, &before);
        check!(c, starts == 0, "{} STARTs for refused requests", starts);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// `XFER_USER`'s checks: empty, too many pages, unknown flags, device
    /// range -> EINVAL; an address range that wraps, and any address from a
    /// task without user memory (this kernel thread) -> EFAULT. Nothing is
    /// pinned or started.
    #[test]
    fn user_page_checks() {
        let Some(dev) = device_under_test() else { return };
        let size = dev.info.devmem_size as u32;
        let req = |addr: u64, len: u32, dev_offset: u32, flags: u32| Dma24XferUser {
            user_addr: addr,
            len,
            dev_offset,
            flags,
            ..Dma24XferUser::default()
        };
        let user = 0x40_0000u64;
        let cases = [
            ("empty", req(user, 0, 0, 0), EINVAL),
            ("257 pages", req(user, 256 * PAGE_SIZE as u32 + 1, 0, 0), EINVAL),
            ("unknown flag", req(user, 64, 0, 1 << 7), EINVAL),
            ("past device memory", req(user, 64, size - 16, DMA24_XFER_FROM_DEVICE), EINVAL),
            ("address wraps", req(u64::MAX - 10, 100, 0, 0), EFAULT),
            ("no user address space", req(user, 4096, 0, DMA24_XFER_BOUNCE), EFAULT),
        ];
        let pinned = |d: &Dma24| zerocopy::counter_lines(d).iter().find(|(k, _)| *k == "user_pages_pinned").map_or(0, |(_, v)| *v);
        let pinned_before = pinned(&dev);
        let before = tally(&dev);
        let mut c = Checks::new();
        for (what, mut r, want) in cases {
            let got = zerocopy::xfer_user(&dev, &mut r);
            check!(c, got == Err(want), "{}: {:?}, expected {:?}", what, got, want);
            check!(c, r.bounced == 0, "{}: reported a bounce", what);
        }
        let (starts, ..) = report(&dev, &before);
        check!(c, starts == 0, "{} STARTs for refused requests", starts);
        check!(c, pinned(&dev) == pinned_before, "pages were pinned");
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}
