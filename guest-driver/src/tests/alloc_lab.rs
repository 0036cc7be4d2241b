// SPDX-License-Identifier: GPL-2.0

//! `dmalab_alloc_lab`: one round trip per allocator, checked against what
//! the DMA API must do with that buffer for this device, and the
//! `DMA24_IOC_SELFTEST` report.

use super::*;

/// One allocator lab case: a round trip through `alloc`, checked against
/// what the DMA API must do with that buffer for this device.
pub(super) fn lab(alloc: Allocator) -> bool {
    let Some(dev) = device_under_test() else { return true };
    let len = 8192.min(dev.info.devmem_size);
    let off = fit(0x6000, len, dev.info.devmem_size);
    let map_errors = get(&dev.stats.map_errors);
    let before = tally(&dev);
    let res = dev.with_live(|live| Ok(RoundTrip::run(live, alloc, off, len, 0, 0x90 + alloc as u8)));
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
    if alloc.always_within_mask() && dev.info.mask_bits >= 24 {
        check!(c, rt.predicted_ok, "a ZONE_DMA buffer at {:#x} is beyond 16 MiB", rt.phys_hi);
    }
    if !alloc.always_within_mask() && mask == 0xff_ffff && rt.predicted_ok {
        diag!("note: this buffer happened to land below 16 MiB; the refusal was not exercised");
    }
    c.all_passed()
}

#[kunit_tests(dmalab_alloc_lab)]
mod cases {
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
        let r = req.run(&dev);
        report(&dev, &before);
        diag!(
            "selftest: {:?}, passed {:#x}, within mask {:#x}, results {:?}",
            r,
            req.passed,
            req.within_mask,
            req.result
        );
        let all = (1u32 << Allocator::SELFTEST.len()) - 1;
        let mut c = Checks::new();
        check!(c, r.is_ok(), "selftest: {:?}", r);
        check!(c, req.passed == all, "passed mask {:#x}, expected {:#x}", req.passed, all);
        let all_checks_passed = c.all_passed();
        assert!(all_checks_passed);
    }
}

