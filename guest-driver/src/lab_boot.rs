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
//! /work/shared/HOST-KVM.md; a first version that filled and compared all
//! 6 MiB on the CPU did not finish in three minutes on a loaded host): the
//! CPU computes one 64 KiB period of the pattern (it repeats every 64 KiB),
//! the device replicates it over its memory from the buffer (96 DMAs of
//! 64 KiB), then the whole buffer goes from the device and back in one
//! transfer each. The CPU samples the buffer and device memory (`readb`);
//! the host checks every byte of both transfers by their trace hashes.

use crate::{
    alloc_lab::{Allocator, Mapping},
    pattern,
    state::DevCounters,
    transfer::{Dir, Live},
};
use kernel::{
    bindings,
    dma::{attrs::DMA_ATTR_NO_WARN, Coherent},
    io::Io,
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

/// STARTs a successful [`round_trip`] of `len` bytes makes: the fill
/// DMAs, then one each way.
pub(crate) fn starts_for(len: usize) -> u64 {
    len.div_ceil(PERIOD) as u64 + 2
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
    /// Sampled buffer bytes that differ after the transfer from the device.
    pub(crate) mismatches: usize,
    /// Transfers the device counted meanwhile.
    pub(crate) device_transfers: u64,
}

/// `len` bytes in one coherent buffer ([`Allocator::BootCma`]): device
/// memory filled with the pattern from the buffer's first 64 KiB, all `len`
/// bytes DMA'd into the (poisoned) buffer and back to device memory at 0,
/// both sampled. Logs an `xfer` line for the host trace check when it
/// worked.
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
    let bus = buf.dma_handle();
    trip.bus = bus;
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
    // One period of the pattern by the CPU; the device replicates it over
    // its memory from the buffer's first 64 KiB (`len / 64 KiB` DMAs).
    let head = len.min(PERIOD);
    map.cpu(head, |bytes| {
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b = pattern::byte(seed, i));
        true
    });
    for off in (0..len).step_by(PERIOD) {
        live.dma_bus(bus, off, PERIOD.min(len - off), Dir::ToDevice)?;
    }
    // Poison the period; the rest is still zero from the allocation. Then
    // all `len` bytes from the device into the buffer, and back.
    map.cpu(head, |bytes| {
        bytes.fill(0xa5);
        true
    });
    live.dma_bus(bus, 0, len, Dir::FromDevice)?;
    map.cpu(len, |bytes| {
        trip.mismatches = sample(len, |i| bytes[i] != pattern::byte(seed, i));
        true
    });
    live.dma_bus(bus, 0, len, Dir::ToDevice)?;
    let devmem = live.devmem;
    trip.devmem_mismatches = sample(len, |i| devmem.try_read8(i).map_or(true, |b| b != pattern::byte(seed, i)));
    if trip.devmem_mismatches != 0 || trip.mismatches != 0 {
        dev_err!(
            live.pdev,
            "{}: boot-cma round trip of {} bytes: {} sampled bytes differ in device memory, {} in the buffer\n",
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

/// How many of the sampled positions of `len` bytes `differs`: the first
/// and last 64 and every 4099th (a prime, so every page offset comes up).
/// The host checks every byte of both `len`-byte transfers by hash.
fn sample(len: usize, mut differs: impl FnMut(usize) -> bool) -> usize {
    // Only the sampled indices are visited: a filter over all 6 Mi indices
    // cost about 440 s of emulated kernel on a loaded host.
    let ends = 64.min(len);
    let tail = len.saturating_sub(64).max(ends);
    let middle = (4099..tail).step_by(4099);
    Iterator::chain(Iterator::chain(0..ends, middle), tail..len)
        .filter(|&i| differs(i))
        .count()
}
