// SPDX-License-Identifier: GPL-2.0

//! Size classes and slack: what each allocator really hands out for a
//! requested size (`ksize()` for slab objects, `PAGE_SIZE << order` for
//! pages, whole pages for vmalloc and coherent memory), where it is, and the
//! largest kmalloc and `__get_free_pages` order ZONE_DMA still gives.
//!
//! The texts: kmalloc gives power-of-two chunks (ask for 2000, not 2048;
//! scull's 4000-byte quantum), the 128 KiB kmalloc limit of old kernels,
//! scullp's orders. Every figure is measured with the real allocators; each
//! buffer is freed before the next is taken. Large requests carry
//! `__GFP_NOWARN` (and the page allocator's order limit is reported as the
//! `ENOMEM` it returns, not as a WARNING).

use crate::{
    alloc_lab::Allocator,
    dma_raw::{raw_dev, virt_to_phys, GFP_DMA, RAW_GFP_KERNEL},
    transfer::Live,
};
use kernel::{alloc::VVec, bindings, page::PAGE_SIZE, prelude::*};

/// `__GFP_NOWARN`: an allocation failure is returned, not reported.
const GFP_NOWARN: bindings::gfp_t = bindings::__GFP_NOWARN;
/// `__GFP_NORETRY`: fail instead of reclaiming hard.
pub(crate) const GFP_NORETRY: bindings::gfp_t = 1 << bindings::___GFP_NORETRY_BIT;

pub(crate) use crate::lab_abi::{zone_name, SizeClass as Dma24SizeClass, SIZES};

// The table's allocators are `Allocator::SIZED`, numbered as the ABI says.
const _: () = {
    let mut i = 0;
    while i < Allocator::SIZED.len() {
        assert!(Allocator::SIZED[i] as u32 == crate::lab_abi::SIZED_ALLOCATORS[i]);
        i += 1;
    }
};

// SAFETY: `repr(C)` with only integer fields and no padding (asserted in lab_abi).
unsafe impl kernel::transmute::AsBytes for Dma24SizeClass {}
// SAFETY: any bit pattern is a valid value of every field.
unsafe impl kernel::transmute::FromBytes for Dma24SizeClass {}

fn zone_of(phys: u64) -> u32 {
    if phys < 1 << 24 {
        0
    } else if phys < 1 << 32 {
        1
    } else {
        2
    }
}

fn order_for(size: usize) -> u32 {
    size.div_ceil(PAGE_SIZE).max(1).next_power_of_two().trailing_zeros()
}

/// Physical range of the `granted` bytes at `ptr`, page by page (vmalloc
/// pages are anywhere; contiguous memory gives first and last byte).
fn phys_range(ptr: *const u8, granted: usize, contiguous: bool) -> (u64, u64) {
    let lo = virt_to_phys(ptr);
    if contiguous {
        return (lo, lo + granted as u64 - 1);
    }
    let (mut min, mut max) = (u64::MAX, 0);
    for off in (0..granted).step_by(PAGE_SIZE) {
        // `wrapping_add` stays inside the allocation: `off < granted`.
        let p = virt_to_phys(ptr.wrapping_add(off));
        min = min.min(p);
        max = max.max(p + PAGE_SIZE as u64 - 1);
    }
    (min, max)
}

/// Allocates `size` bytes from `alloc`, measures, frees.
pub(crate) fn measure(live: &Live<'_>, alloc: Allocator, size: usize) -> Dma24SizeClass {
    let mut row = Dma24SizeClass {
        alloc: alloc as u32,
        size: size as u64,
        ..Default::default()
    };
    let r = measure_into(live, alloc, size, &mut row);
    if let Err(e) = r {
        row.result = e.to_errno();
        row.granted = 0;
    } else {
        row.zone = zone_of(row.phys_hi);
        let slack = row.granted.saturating_sub(row.size);
        row.slack_permille = u32::try_from(slack * 1000 / row.granted).unwrap_or(u32::MAX);
    }
    row
}

fn measure_into(live: &Live<'_>, alloc: Allocator, size: usize, row: &mut Dma24SizeClass) -> Result {
    if size == 0 {
        return Err(EINVAL);
    }
    let granted;
    match alloc {
        Allocator::KmallocDma | Allocator::KmallocKernel => {
            let mut gfp = RAW_GFP_KERNEL | GFP_NOWARN;
            if alloc == Allocator::KmallocDma {
                gfp |= GFP_DMA;
            }
            // SAFETY: FFI call without preconditions; checked for NULL below.
            let p = unsafe { bindings::__kmalloc_noprof(size, gfp) };
            if p.is_null() {
                return Err(ENOMEM);
            }
            // SAFETY: `p` is a live kmalloc object.
            granted = unsafe { bindings::ksize(p) };
            (row.phys_lo, row.phys_hi) = phys_range(p.cast(), granted, true);
            // SAFETY: `p` came from kmalloc and is freed once.
            unsafe { bindings::kfree(p) };
        }
        Allocator::KmemCacheDma => {
            let cache = live.dev.dma_cache.as_ref().ok_or(ENODEV)?;
            if size > cache.object_size() {
                // The cache's objects have one size: nothing larger fits.
                return Err(EINVAL);
            }
            let obj = crate::dma_raw::KBuf::from_cache(cache, size)?;
            let p = obj.as_ptr();
            // SAFETY: `p` is a live object of the cache (`obj` owns it).
            granted = unsafe { bindings::ksize(p.cast()) };
            (row.phys_lo, row.phys_hi) = phys_range(p, granted, true);
        }
        Allocator::PagesDma => {
            let order = order_for(size);
            // SAFETY: FFI call; an order above MAX_PAGE_ORDER returns 0 (no warning with
            // __GFP_NOWARN).
            let addr = unsafe { bindings::get_free_pages_noprof(RAW_GFP_KERNEL | GFP_DMA | GFP_NOWARN, order) };
            if addr == 0 {
                return Err(ENOMEM);
            }
            granted = PAGE_SIZE << order;
            (row.phys_lo, row.phys_hi) = phys_range(addr as *const u8, granted, true);
            // SAFETY: `addr` came from __get_free_pages with this order and is freed once.
            unsafe { bindings::free_pages(addr, order) };
        }
        Allocator::Vmalloc => {
            let v = VVec::<u8>::with_capacity(size, GFP_KERNEL | __GFP_NOWARN).map_err(|_| ENOMEM)?;
            // vmalloc hands out whole pages (plus an unmapped guard page).
            granted = size.next_multiple_of(PAGE_SIZE);
            (row.phys_lo, row.phys_hi) = phys_range(v.as_ptr(), granted, false);
        }
        Allocator::Coherent => {
            let raw = raw_dev(live.ddev);
            let mut handle: bindings::dma_addr_t = 0;
            let attrs = bindings::DMA_ATTR_NO_WARN as c_ulong;
            // SAFETY: `raw` is a bound device with its coherent mask set; `handle` is
            // writable.
            let p = unsafe { bindings::dma_alloc_attrs(raw, size, &mut handle, RAW_GFP_KERNEL | GFP_NOWARN, attrs) };
            if p.is_null() {
                return Err(ENOMEM);
            }
            // dma-direct allocates `get_order(size)` pages (exactly the pages
            // needed when they come from a CMA area).
            granted = PAGE_SIZE << order_for(size);
            row.phys_lo = handle;
            row.phys_hi = handle + size.next_multiple_of(PAGE_SIZE) as u64 - 1;
            // SAFETY: frees exactly the allocation just made.
            unsafe { bindings::dma_free_attrs(raw, size, p, handle, attrs) };
        }
        // Not in the table (`Allocator::SIZED`): the ioctl refuses them first.
        _ => return Err(EINVAL),
    }
    row.granted = granted as u64;
    Ok(())
}

/// The largest `__get_free_pages(GFP_DMA)` order and kmalloc(GFP_DMA) size
/// that succeed right now (each freed at once).
pub(crate) fn zone_dma_limits() -> (u32, usize) {
    let mut order_ok = None;
    for order in (0..=bindings::MAX_PAGE_ORDER).rev() {
        // SAFETY: FFI call; the result is checked and freed with the same order.
        let a = unsafe { bindings::get_free_pages_noprof(RAW_GFP_KERNEL | GFP_DMA | GFP_NOWARN | GFP_NORETRY, order) };
        if a != 0 {
            // SAFETY: as above.
            unsafe { bindings::free_pages(a, order) };
            order_ok = Some(order);
            break;
        }
    }
    let mut kmalloc_ok = 0;
    let mut size = PAGE_SIZE << bindings::MAX_PAGE_ORDER;
    while size >= 8 {
        // SAFETY: FFI call; checked for NULL and freed once.
        let p = unsafe { bindings::__kmalloc_noprof(size, RAW_GFP_KERNEL | GFP_DMA | GFP_NOWARN | GFP_NORETRY) };
        if !p.is_null() {
            // SAFETY: `p` came from kmalloc.
            unsafe { bindings::kfree(p) };
            kmalloc_ok = size;
            break;
        }
        size /= 2;
    }
    (order_ok.unwrap_or(u32::MAX), kmalloc_ok)
}

/// The whole table as text (debugfs `size_classes`).
pub(crate) fn write_table(live: &Live<'_>, f: &mut dyn core::fmt::Write) -> core::fmt::Result {
    writeln!(f, "allocator size granted slack_pct zone phys_lo phys_hi result")?;
    for alloc in Allocator::SIZED {
        for size in SIZES {
            let r = measure(live, alloc, size);
            writeln!(
                f,
                "{} {} {} {}.{} {} {:#x} {:#x} {}",
                alloc.name(),
                r.size,
                r.granted,
                r.slack_permille / 10,
                r.slack_permille % 10,
                if r.result == 0 { zone_name(r.zone) } else { "-" },
                r.phys_lo,
                r.phys_hi,
                errno_name(r.result)
            )?;
        }
    }
    let (order, kmalloc) = zone_dma_limits();
    writeln!(f, "zone_dma_largest_order {} ({} KiB)", order, (PAGE_SIZE << order) >> 10)?;
    writeln!(f, "zone_dma_largest_kmalloc {}", kmalloc)
}

/// `ok`, `ENOMEM`, `EINVAL` or the number.
pub(crate) fn errno_name(e: i32) -> &'static str {
    if e == 0 {
        "ok"
    } else if e == ENOMEM.to_errno() {
        "ENOMEM"
    } else if e == EINVAL.to_errno() {
        "EINVAL"
    } else {
        "error"
    }
}

