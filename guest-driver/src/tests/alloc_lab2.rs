// SPDX-License-Identifier: GPL-2.0

//! `dmalab_alloc_lab2`: coherent memory, the private and stack buffers, size
//! classes and slack, GFP context and ZONE_DMA exhaustion.

use super::*;
use crate::{
    lab_gfp,
    lab_sizes::{measure, zone_dma_limits, zone_name, SIZES},
    lab_virt::{self, Region, VIRT_BUF_LEN},
};
use kernel::page::PAGE_SIZE;

/// `CONFIG_PHYSICAL_START` on x86_64: where the kernel image is loaded.
const PHYSICAL_START: u64 = 0x100_0000;

/// A private or stack buffer: refused with EIO, nothing started, one mapping
/// error, and the DMA API's view checked against where the buffer lives.
fn virt(alloc: Allocator) -> bool {
    let Some(dev) = device_under_test() else { return true };
    let map_errors = get(&dev.stats.map_errors);
    let before = tally(&dev);
    let res = dev.with_live(|live| Ok(lab_virt::refuse(live, alloc, VIRT_BUF_LEN, Dir::ToDevice)));
    let too_long = dev.with_live(|live| Ok(lab_virt::refuse(live, alloc, VIRT_BUF_LEN + 1, Dir::ToDevice)));
    let (starts, ..) = report(&dev, &before);
    let map_errors = get(&dev.stats.map_errors) - map_errors;
    let last = dev.last_error();
    let mut c = Checks::new();
    let (v, too_long) = match (res, too_long) {
        (Ok(v), Ok(t)) => (v, t),
        (Err(e), _) | (_, Err(e)) => return with_device_failed(e),
    };
    diag!(
        "{}: {:#x} in {}: real physical {:#x}, virt_to_page() physical {:#x}, mapping tried {}, handle {:?}, \
         DMA-API debug error planted {}: {} -> {:?}",
        alloc.name(),
        v.virt,
        v.region.name(),
        v.real_phys,
        v.linear_phys,
        v.mapping_tried,
        v.handle,
        v.planted_debug_error,
        v.reason,
        v.result
    );
    check!(c, v.result == Err(EIO), "refused with {:?}, expected EIO", v.result);
    check!(c, too_long.result == Err(EINVAL), "{} bytes gave {:?}, expected EINVAL", VIRT_BUF_LEN + 1, too_long.result);
    check!(c, starts == 0, "{} STARTs: a refused buffer reached the device", starts);
    check!(c, map_errors == 1, "{} mapping errors counted, expected 1", map_errors);
    check!(c, last.source == ErrorSource::Mapping, "last error source {:?}, expected Mapping", last.source);
    match alloc {
        Allocator::StackBuffer => {
            #[cfg(CONFIG_VMAP_STACK)]
            check!(c, v.region == Region::Vmalloc, "stack buffer in {:?}, expected vmalloc (CONFIG_VMAP_STACK)", v.region);
            check!(c, !v.mapping_tried, "dma_map_phys() was called for vmalloc memory");
        }
        _ => match v.region {
            Region::Module => {
                check!(c, v.linear_phys != v.real_phys, "module memory: virt_to_page() gave the real address");
                #[cfg(CONFIG_DMA_API_DEBUG)]
                check!(c, v.planted_debug_error, "module memory: no DMA-API debug report planted");
                check!(c, v.handle.is_none() || v.handle != Some(v.real_phys), "a handle equal to the real address");
            }
            Region::KernelImage => {
                check!(c, v.linear_phys == v.real_phys, "kernel image: __pa() {:#x} != real {:#x}", v.linear_phys, v.real_phys);
                check!(c, v.real_phys >= PHYSICAL_START, "kernel image data at {:#x}, below CONFIG_PHYSICAL_START", v.real_phys);
                check!(c, !v.planted_debug_error, "kernel image data reported by DMA-API debug");
                if v.real_phys > dev.info.dma_mask {
                    check!(c, v.mapping_tried && v.handle.is_none(), "dma-direct mapped {:#x} beyond the mask", v.real_phys);
                }
            }
            r => check!(c, false, "the static buffer is in {:?}", r),
        },
    }
    c.all_passed()
}

#[kunit_tests(dmalab_alloc_lab2)]
mod cases {
    use super::*;

    /// dma_alloc_coherent() with the 24-bit coherent mask: works, like the
    /// streaming ZONE_DMA sources.
    #[test]
    fn coherent_dma_alloc_coherent() {
        let outcome_as_dma_api_requires = super::super::alloc_lab::lab(Allocator::Coherent);
        assert!(outcome_as_dma_api_requires);
    }

    /// static [u8; 800]: module memory or kernel image data; refused.
    #[test]
    fn static_buffer_refused() {
        let refused_for_the_right_reason = virt(Allocator::StaticBuffer);
        assert!(refused_for_the_right_reason);
    }

    /// [u8; 800] on the kernel stack: vmalloc memory; refused before mapping.
    #[test]
    fn stack_buffer_refused() {
        let refused_for_the_right_reason = virt(Allocator::StackBuffer);
        assert!(refused_for_the_right_reason);
    }

    /// The size-class table: granted >= requested, kmalloc's power-of-two
    /// classes, page orders, ZONE_DMA placement, the 4 MiB limits.
    #[test]
    fn size_classes_and_slack() {
        let Some(dev) = device_under_test() else { return };
        let mut c = Checks::new();
        let res = dev.with_live(|live| {
            for alloc in Allocator::SIZED {
                for size in SIZES {
                    let r = measure(live, alloc, size);
                    diag!(
                        "size_class {} {} granted={} slack={}.{}% zone={} phys={:#x}..{:#x} result={}",
                        alloc.name(),
                        size,
                        r.granted,
                        r.slack_permille / 10,
                        r.slack_permille % 10,
                        zone_name(r.zone),
                        r.phys_lo,
                        r.phys_hi,
                        r.result
                    );
                    check_row(&mut c, alloc, size, &r);
                }
            }
            Ok(())
        });
        check!(c, res.is_ok(), "device: {:?}", res);
        let (order, kmalloc) = zone_dma_limits();
        diag!("zone_dma_largest_order={} zone_dma_largest_kmalloc={}", order, kmalloc);
        check!(c, order <= bindings::MAX_PAGE_ORDER, "no ZONE_DMA page at all");
        check!(c, kmalloc >= PAGE_SIZE, "kmalloc(GFP_DMA) of one page failed");
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// GFP_ATOMIC | GFP_DMA under a spinlock works; GFP_KERNEL there is
    /// reported by the kernel once (planted, counted by the host harness).
    #[test]
    fn gfp_atomic_under_spinlock() {
        let mut c = Checks::new();
        let atomic = lab_gfp::atomic_under_spinlock();
        diag!("kmalloc(64, GFP_ATOMIC | GFP_DMA) under a spinlock: {:x?}", atomic);
        check!(c, matches!(atomic, Ok(Some(p)) if p < 1 << 24), "GFP_ATOMIC | GFP_DMA under a spinlock: {:?}", atomic);
        let planted = lab_gfp::plant_sleep_in_atomic();
        diag!("kmalloc(64, GFP_KERNEL | GFP_DMA) under a spinlock (planted, CONFIG_DEBUG_ATOMIC_SLEEP reports it): {:x?}", planted);
        check!(c, matches!(planted, Ok((true, Some(_))) | Ok((false, None))), "planted allocation: {:?}", planted);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }

    /// ZONE_DMA taken page by page: GFP_DMA then fails with ENOMEM while
    /// GFP_KERNEL works; after freeing, GFP_DMA works again.
    #[test]
    fn zone_dma_exhaustion_and_recovery() {
        let mut c = Checks::new();
        let ex = lab_gfp::exhaust_zone_dma();
        diag!("{:x?}", ex);
        match ex {
            Ok(ex) => {
                check!(c, ex.refused, "took {} pages without a refusal", ex.pages_taken);
                check!(c, ex.pages_taken > 0, "no ZONE_DMA page taken");
                check!(c, ex.highest_phys < 1 << 24, "a GFP_DMA page at {:#x}", ex.highest_phys);
                check!(c, ex.dma_while_exhausted == Err(ENOMEM), "GFP_DMA while exhausted: {:?}", ex.dma_while_exhausted);
                check!(c, ex.kernel_while_exhausted.is_ok(), "GFP_KERNEL while exhausted: {:?}", ex.kernel_while_exhausted);
                check!(c, ex.dma_after_free.is_ok(), "GFP_DMA after freeing: {:?}", ex.dma_after_free);
            }
            Err(e) => check!(c, false, "{:?}", e),
        }
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

fn check_row(c: &mut Checks, alloc: Allocator, size: usize, r: &crate::lab_sizes::Dma24SizeClass) {
    let name = alloc.name();
    let max_order_bytes = PAGE_SIZE << bindings::MAX_PAGE_ORDER;
    let beyond_limit = match alloc {
        Allocator::KmemCacheDma => size > CHUNK,
        Allocator::Vmalloc => false,
        _ => size > max_order_bytes,
    };
    if beyond_limit {
        // A boot-time CMA area (`cma=`, lesson 5) serves coherent memory
        // above the page allocator's limit, inside ZONE_DMA.
        if alloc == Allocator::Coherent && r.result == 0 {
            check!(c, r.phys_hi < 1 << 24, "{} {}: from a CMA area at {:#x}, beyond ZONE_DMA", name, size, r.phys_hi);
            return;
        }
        let want = if alloc == Allocator::KmemCacheDma { EINVAL } else { ENOMEM };
        check!(c, r.result == want.to_errno(), "{} {}: {} beyond its limit, expected {:?}", name, size, r.result, want);
        return;
    }
    // ZONE_DMA may be too fragmented for 4 MiB in one piece: that ENOMEM is a measurement.
    if r.result == ENOMEM.to_errno() && size > 64 << 10 && alloc != Allocator::KmallocKernel {
        return;
    }
    check!(c, r.result == 0, "{} {}: {}", name, size, r.result);
    if r.result != 0 {
        return;
    }
    check!(c, r.granted >= size as u64, "{} {}: granted {}", name, size, r.granted);
    let pages = (size.div_ceil(PAGE_SIZE).next_power_of_two() * PAGE_SIZE) as u64;
    match alloc {
        Allocator::PagesDma | Allocator::Coherent => {
            check!(c, r.granted == pages, "{} {}: granted {}, expected {} (2^order pages)", name, size, r.granted, pages)
        }
        Allocator::Vmalloc => check!(c, r.granted == size.next_multiple_of(PAGE_SIZE) as u64, "{} {}: granted {}", name, size, r.granted),
        Allocator::KmemCacheDma => check!(c, r.granted >= CHUNK as u64, "{} {}: granted {}", name, size, r.granted),
        _ => check!(c, size < 64 || r.granted < 2 * size as u64 || r.granted == pages, "{} {}: granted {}: more than a power of two", name, size, r.granted),
    }
    let zone_dma = matches!(alloc, Allocator::KmallocDma | Allocator::KmemCacheDma | Allocator::PagesDma | Allocator::Coherent);
    if zone_dma {
        check!(c, r.phys_hi < 1 << 24, "{} {}: at {:#x}, beyond ZONE_DMA", name, size, r.phys_hi);
    }
}
