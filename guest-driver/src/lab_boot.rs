// SPDX-License-Identifier: GPL-2.0

//! Boot-time reservation: a physically contiguous buffer of several MiB
//! below 16 MiB for the 24-bit device.
//!
//! The texts reserve it with `mem_start` (Linux 1.x: the driver's init()
//! moved the start of free memory), `alloc_bootmem_low()` (2.3.23 to 4.x)
//! or the out-of-tree bigphysarea patch. Today memblock does the boot-time
//! part and CMA hands the memory out again at run time: `cma=8M@0-16M` on
//! the command line (`CONFIG_DMA_CMA`) reserves 8 MiB inside ZONE_DMA before
//! the page allocator starts, lends it to movable allocations meanwhile, and
//! `dma_alloc_coherent()` takes it back for a device in one piece (dma-direct
//! tries the default CMA area first for anything above one page, and keeps
//! the pages only if they are below the device's coherent mask).
//!
//! Without a reservation the same call fails: the page allocator's largest
//! block is `PAGE_SIZE << MAX_PAGE_ORDER` (4 MiB), so [`BOOT_CMA_LEN`] can
//! never come from it, and the failure is a clean `ENOMEM` with a `dev_err`
//! naming that limit and the `cma=` fix (`__GFP_NOWARN` / `DMA_ATTR_NO_WARN`:
//! no allocation-failure splat).
//!
//! CPU work is the cost on PVM hosts (guest-kernel code is emulated, see
//! /work/shared/HOST-KVM.md): the pattern is computed for one 64 KiB period
//! and replicated a word at a time with volatile accesses (a `memcpy` here
//! would be `rep movsb`, emulated byte by byte), device memory is sampled
//! with `readb`, and the read-back is compared a word at a time against the
//! first period, which is checked byte by byte.

use crate::{
    alloc_lab::{devmem_mismatches, Allocator, Mapping},
    pattern,
    state::DevCounters,
    transfer::{Dir, Live},
};
use kernel::{
    bindings,
    dma::{attrs::DMA_ATTR_NO_WARN, Coherent},
    page::PAGE_SIZE,
    prelude::*,
};

pub(crate) use crate::lab_abi::BOOT_CMA_LEN;
/// Largest request source 10 takes: all of ZONE_DMA.
pub(crate) const BOOT_CMA_MAX: usize = 16 << 20;
/// The page allocator's largest block (`PAGE_SIZE << MAX_PAGE_ORDER`).
pub(crate) const MAX_ORDER_BYTES: usize = PAGE_SIZE << bindings::MAX_PAGE_ORDER;
/// The pattern repeats every 64 KiB (`pattern::byte` uses `i mod 65536`).
const PERIOD: usize = 1 << 16;
/// Device memory the lesson needs, in KiB, for the error message.
const DEVMEM_KIB_NEEDED: usize = BOOT_CMA_LEN.next_power_of_two() >> 10;

/// `dma_alloc_coherent()` of `len` bytes for the device: from the boot-time
/// CMA area when there is one. A failure is `ENOMEM` with a `dev_err`
/// naming the page allocator's limit and how to reserve an area.
pub(crate) fn alloc(live: &Live<'_>, len: usize) -> Result<Coherent<[u8]>> {
    Coherent::<u8>::zeroed_slice_with_attrs(live.ddev, len, GFP_KERNEL | __GFP_NOWARN, DMA_ATTR_NO_WARN).inspect_err(
        |e| {
            dev_err!(
                live.pdev,
                "{}: dma_alloc_coherent() of {} bytes below the {}-bit coherent mask failed ({:?}): \
                 the page allocator gives at most {} bytes in one piece (MAX_PAGE_ORDER {}) and no \
                 CMA area could serve it; reserve one at boot inside ZONE_DMA, e.g. cma=8M@0-16M\n",
                live.dev.name,
                len,
                live.dev.info.mask_bits,
                e,
                MAX_ORDER_BYTES,
                bindings::MAX_PAGE_ORDER
            );
        },
    )
}

/// What [`round_trip`] saw.
#[derive(Debug, Default)]
pub(crate) struct BootCmaTrip {
    /// 0 or the negative errno.
    pub(crate) result: i32,
    /// Physical range of the buffer (0, 0 if the allocation failed).
    pub(crate) phys_lo: u64,
    pub(crate) phys_hi: u64,
    /// The bus address dma_alloc_coherent() returned.
    pub(crate) bus: u64,
    /// Sampled device-memory bytes (readb) that differ from the pattern.
    pub(crate) devmem_mismatches: usize,
    /// Read-back bytes (in differing 8-byte words) that differ.
    pub(crate) mismatches: usize,
    /// Transfers the device counted meanwhile.
    pub(crate) device_transfers: u64,
}

/// `len` bytes in one coherent buffer ([`Allocator::BootCma`]): filled with
/// the pattern, DMA'd to device memory at 0, sampled there with `readb`,
/// poisoned, DMA'd back into the same buffer and compared. Logs an `xfer`
/// line for the host trace check when it worked.
pub(crate) fn round_trip(live: &mut Live<'_>, len: usize, seed: u8) -> BootCmaTrip {
    let before = DevCounters::read(live.regs);
    let mut trip = BootCmaTrip::default();
    if let Err(e) = run(live, len, seed, &mut trip) {
        trip.result = e.to_errno();
    }
    let after = DevCounters::read(live.regs);
    trip.device_transfers = after.transfers.wrapping_sub(before.transfers);
    trip
}

fn run(live: &mut Live<'_>, len: usize, seed: u8, trip: &mut BootCmaTrip) -> Result {
    // Allocate first: without a reservation this is the lesson's ENOMEM,
    // whatever the device memory's size.
    let mut map = Mapping::new(live, Allocator::BootCma, len, 0, Dir::ToDevice)?;
    let Mapping::Coherent(buf) = &map else {
        return Err(EINVAL);
    };
    trip.bus = buf.dma_handle();
    trip.phys_lo = crate::dma_raw::virt_to_phys(buf.as_ptr().cast());
    trip.phys_hi = trip.phys_lo + len as u64 - 1;
    if live.check_range(0, len).is_err() {
        dev_err!(
            live.pdev,
            "{}: {} bytes do not fit in the device's {} bytes of memory: start dmalab with \
             --device dma24,mem={}\n",
            live.dev.name,
            len,
            live.dev.info.devmem_size,
            DEVMEM_KIB_NEEDED
        );
        return Err(EINVAL);
    }
    map.cpu(len, |bytes| {
        fill(bytes, seed);
        true
    });
    map.dma(live, 0, len, Dir::ToDevice)?;
    trip.devmem_mismatches = devmem_mismatches(live, 0, len, seed)?;
    map.cpu(len, |bytes| {
        // memset: not `rep stosb` on these CPUs (no FSRS), an unrolled loop.
        bytes.fill(0xa5);
        true
    });
    map.dma(live, 0, len, Dir::FromDevice)?;
    map.cpu(len, |bytes| {
        trip.mismatches = mismatches(bytes, seed);
        true
    });
    if trip.devmem_mismatches != 0 || trip.mismatches != 0 {
        dev_err!(
            live.pdev,
            "{}: boot-cma round trip of {} bytes: {} bytes differ in device memory, {} after reading back\n",
            live.dev.name,
            len,
            trip.devmem_mismatches,
            trip.mismatches
        );
        return Err(EIO);
    }
    dev_info!(
        live.pdev,
        "{}: xfer dev_offset=0 len={} seed={} alloc={} phys={:#x}..{:#x}\n",
        live.dev.name,
        len,
        seed,
        Allocator::BootCma.name(),
        trip.phys_lo,
        trip.phys_hi
    );
    Ok(())
}

/// `bytes` as aligned 8-byte words, if it starts on a word boundary (coherent
/// memory starts on a page).
fn words(bytes: &[u8]) -> Option<(*const u64, usize)> {
    let p = bytes.as_ptr().cast::<u64>();
    p.is_aligned().then_some((p, bytes.len() / 8))
}

/// The pattern over `bytes`: one period byte by byte, the rest copied from
/// it a word at a time.
fn fill(bytes: &mut [u8], seed: u8) {
    let Some((p, n)) = words(bytes) else {
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b = pattern::byte(seed, i));
        return;
    };
    let p = p.cast_mut();
    let head = bytes.len().min(PERIOD);
    for (i, b) in bytes[..head].iter_mut().enumerate() {
        *b = pattern::byte(seed, i);
    }
    for w in PERIOD / 8..n {
        // SAFETY: `w` and `w - PERIOD / 8` index aligned words inside `bytes`
        // (`w < n`), which this function borrows mutably. Volatile, so this
        // stays a word loop and does not become a `memcpy`.
        unsafe { p.add(w).write_volatile(p.add(w - PERIOD / 8).read_volatile()) };
    }
    let tail = (n * 8).max(head);
    for (i, b) in bytes.iter_mut().enumerate().skip(tail) {
        *b = pattern::byte(seed, i);
    }
}

/// Bytes of `bytes` that differ from the pattern (8 per differing word
/// beyond the first period).
fn mismatches(bytes: &[u8], seed: u8) -> usize {
    let differs = |i: usize| bytes[i] != pattern::byte(seed, i);
    let Some((p, n)) = words(bytes) else {
        return (0..bytes.len()).filter(|&i| differs(i)).count();
    };
    let head = bytes.len().min(PERIOD);
    let mut bad = (0..head).filter(|&i| differs(i)).count();
    for w in PERIOD / 8..n {
        // SAFETY: as in `fill`: both are aligned words inside `bytes`.
        let (now, first) = unsafe { (p.add(w).read_volatile(), p.add(w - PERIOD / 8).read_volatile()) };
        if now != first {
            bad += 8;
        }
    }
    bad + ((n * 8).max(head)..bytes.len()).filter(|&i| differs(i)).count()
}
