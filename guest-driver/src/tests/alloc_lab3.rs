// SPDX-License-Identifier: GPL-2.0

//! `dmalab_alloc_lab3`: the boot-time reservation (a CMA area inside
//! ZONE_DMA, one buffer of several MiB) and an allocation inside the
//! interrupt handler.
//!
//! The reservation case runs in every boot and checks the outcome the boot
//! allows: with `cma=` (the kunit-truncate-intx boot, `mem=8192`) the 6 MiB
//! round trip must work below 16 MiB; without (the other boots) it must fail
//! with ENOMEM before any START. The host test says which boot is which.

use super::*;
use crate::{
    lab_boot::{self, BootCmaTrip, BOOT_CMA_LEN, BOOT_CMA_MAX, MAX_ORDER_BYTES},
    lab_gfp,
};

const SEED: u8 = 0x5c;

fn boot_cma(dev: &Dma24) -> bool {
    let mut c = Checks::new();
    let before = tally(dev);
    let trip = dev.with_live(|live| Ok(lab_boot::round_trip(live, BOOT_CMA_LEN, SEED)));
    let too_big = dev.with_live(|live| Ok(lab_boot::round_trip(live, BOOT_CMA_MAX + 1, SEED)));
    let (starts, ..) = report(dev, &before);
    let last = dev.last_error();
    let (trip, too_big): (BootCmaTrip, BootCmaTrip) = match (trip, too_big) {
        (Ok(t), Ok(b)) => (t, b),
        (Err(e), _) | (_, Err(e)) => return with_device_failed(e),
    };
    let outcome = if trip.result == 0 { "ok" } else if trip.result == ENOMEM.to_errno() { "ENOMEM" } else { "error" };
    diag!(
        "boot_cma len={} result={} ({}) phys={:#x}..{:#x} bus={:#x} devmem_size={} devmem_mismatches={} mismatches={}",
        BOOT_CMA_LEN,
        outcome,
        trip.result,
        trip.phys_lo,
        trip.phys_hi,
        trip.bus,
        dev.info.devmem_size,
        trip.devmem_mismatches,
        trip.mismatches
    );
    check!(c, BOOT_CMA_LEN > MAX_ORDER_BYTES, "{} bytes fit in one page-allocator block", BOOT_CMA_LEN);
    check!(c, too_big.result == EINVAL.to_errno(), "{} bytes gave {}, expected EINVAL", BOOT_CMA_MAX + 1, too_big.result);
    match outcome {
        "ok" => {
            check!(c, trip.phys_hi < 1 << 24, "the buffer ends at {:#x}, beyond ZONE_DMA", trip.phys_hi);
            check!(c, trip.phys_hi - trip.phys_lo + 1 == BOOT_CMA_LEN as u64, "range {:#x}..{:#x}", trip.phys_lo, trip.phys_hi);
            check!(c, trip.bus == trip.phys_lo, "bus address {:#x} != physical {:#x} (dma-direct)", trip.bus, trip.phys_lo);
            check!(c, trip.devmem_mismatches == 0 && trip.mismatches == 0, "{} / {} bytes differ", trip.devmem_mismatches, trip.mismatches);
            let want = lab_boot::starts_for(BOOT_CMA_LEN);
            check!(c, trip.device_transfers == want, "device counted {} transfers, expected {}", trip.device_transfers, want);
            check!(c, starts == want, "{} STARTs, expected {}", starts, want);
        }
        "ENOMEM" => {
            check!(c, trip.phys_lo == 0 && trip.bus == 0, "a failed allocation with an address");
            check!(c, starts == 0, "{} STARTs without a buffer", starts);
            check!(c, trip.device_transfers == 0, "device counted {} transfers", trip.device_transfers);
        }
        _ => check!(c, false, "round trip: errno {} (EINVAL: device memory {} bytes, needs mem=8192)", trip.result, dev.info.devmem_size),
    }
    // The too-big request was the last: refused by the source's limit.
    check!(c, last.alloc == Allocator::BootCma as u32, "last error for allocator {}", last.alloc);
    check!(c, last.source == ErrorSource::Alloc, "last error source {:?}, expected Alloc", last.source);
    c.all_passed()
}

fn irq_alloc(dev: &Dma24) -> bool {
    let mut c = Checks::new();
    let (n0, f0, _) = lab_gfp::irq_allocs();
    let irqs0 = get(&dev.stats.irqs);
    let before = tally(dev);
    let off = fit(0x2000, 512, dev.info.devmem_size);
    let rt = dev.with_live(|live| {
        lab_gfp::arm_irq_alloc();
        Ok(RoundTrip::run(live, Allocator::KmallocDma, off, 512, 0, SEED))
    });
    let still_armed = lab_gfp::disarm_irq_alloc();
    // The STARTs line the host harness adds up against the trace.
    let (starts, ok, _) = report(dev, &before);
    let (n1, f1, phys) = lab_gfp::irq_allocs();
    let irqs = get(&dev.stats.irqs) - irqs0;
    diag!(
        "kmalloc(64, GFP_ATOMIC | GFP_DMA) in the interrupt handler: {} made, {} failed, last at {:#x}; {} interrupts",
        n1 - n0,
        f1 - f0,
        phys,
        irqs
    );
    match rt {
        Ok(rt) => check_round_trip(&mut c, "kmalloc-dma with an allocation in the IRQ handler", &rt),
        Err(e) => return with_device_failed(e),
    }
    check!(c, !still_armed, "no completion interrupt took the armed allocation");
    check!(c, n1 - n0 == 1, "{} allocations in the handler, expected 1", n1 - n0);
    check!(c, f1 == f0, "GFP_ATOMIC | GFP_DMA failed in the handler");
    check!(c, phys != 0 && phys < 1 << 24, "allocated at {:#x}, expected ZONE_DMA", phys);
    check!(c, irqs >= 2, "{} interrupts for two transfers", irqs);
    check!(c, starts == 2 && ok == 2, "{} STARTs, {} device transfers, expected 2 and 2", starts, ok);
    c.all_passed()
}

#[kunit_tests(dmalab_alloc_lab3)]
mod cases {
    use super::*;

    /// 6 MiB of dma_alloc_coherent() for the 24-bit device: a round trip
    /// with a boot-time CMA area, ENOMEM (no START) without one.
    #[test]
    fn boot_time_cma_reservation() {
        let Some(dev) = device_under_test() else { return };
        let outcome_as_the_boot_allows = boot_cma(&dev);
        assert!(outcome_as_the_boot_allows);
    }

    /// kmalloc(GFP_ATOMIC | GFP_DMA) inside the interrupt handler, on the
    /// completion of a real transfer: made once, in ZONE_DMA, transfer fine.
    #[test]
    fn gfp_atomic_in_the_interrupt_handler() {
        let Some(dev) = device_under_test() else { return };
        let allocated_in_the_handler = irq_alloc(&dev);
        assert!(allocated_in_the_handler);
    }
}
