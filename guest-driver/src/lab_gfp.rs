// SPDX-License-Identifier: GPL-2.0

//! GFP flags and context (the texts: `GFP_KERNEL` may sleep, `GFP_ATOMIC`
//! for interrupt handlers, `GFP_DMA` for the first 16 MiB).
//!
//! - [`atomic_under_spinlock`]: `kmalloc(GFP_ATOMIC | GFP_DMA)` with a
//!   spinlock held works and is in ZONE_DMA.
//! - [`plant_sleep_in_atomic`]: `kmalloc(GFP_KERNEL | GFP_DMA)` with the same
//!   lock held, once per module instance on purpose: with
//!   `CONFIG_DEBUG_ATOMIC_SLEEP` the kernel prints "BUG: sleeping function
//!   called from invalid context" (`might_alloc()` -> `__might_sleep()`).
//!   The request is 64 bytes from a slab with free objects (one object is
//!   taken first, outside the lock, to make sure), so it does not actually
//!   sleep; the driver logs `planted: GFP_KERNEL under a spinlock`
//!   so the host harness can match the report one to one.
//! - [`arm_irq_alloc`] / [`in_irq_handler`]: `kmalloc(GFP_ATOMIC | GFP_DMA)`
//!   inside the driver's interrupt handler, in the path that handles a
//!   completion, when the lab asked for it; counted ([`irq_allocs`]).
//! - [`exhaust_zone_dma`]: takes ZONE_DMA blocks, largest order first, until
//!   even one page is refused (bounded by the zone's size); probes; frees.
//!   Orders above 0 are asked for with `GFP_NOWAIT`: a failing high-order
//!   `GFP_KERNEL` request runs direct compaction over the zone first, once
//!   per order, which is seconds of emulated kernel on PVM hosts and takes
//!   no page the order-0 pass would not take anyway. Order 0 stays
//!   `GFP_KERNEL | __GFP_NORETRY`: it may reclaim the zone's page cache
//!   once, so the probes that follow meet a zone that reclaim cannot refill.

use crate::{
    dma_raw::{virt_to_phys, GFP_DMA, RAW_GFP_KERNEL},
    lab_sizes::GFP_NORETRY,
};
use kernel::{
    bindings, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        SpinLock,
    },
};

const GFP_NOWARN: bindings::gfp_t = bindings::__GFP_NOWARN;
const GFP_ATOMIC: bindings::gfp_t = bindings::GFP_ATOMIC;
/// No direct reclaim or compaction (kswapd may be woken).
const GFP_NOWAIT: bindings::gfp_t = bindings::GFP_NOWAIT;
/// ZONE_DMA is at most 16 MiB: this many order-0 pages bounds the loop.
const ZONE_DMA_PAGES: usize = (16 << 20) / PAGE_SIZE;

/// Set once the sleeping-in-atomic report was planted in this module instance.
static SLEEP_PLANTED: Atomic<u32> = Atomic::new(0);

/// Set by [`arm_irq_alloc`]; the next completion interrupt clears it and
/// allocates. One flag for the module: the lab arms it with the transfer
/// mutex of one device held, right before that device's transfer.
static IRQ_ALLOC_ARMED: Atomic<u32> = Atomic::new(0);
/// `kmalloc(GFP_ATOMIC | GFP_DMA)` calls made in the interrupt handler, and
/// how many of them failed.
static IRQ_ALLOCS: Atomic<u64> = Atomic::new(0);
static IRQ_ALLOC_FAILURES: Atomic<u64> = Atomic::new(0);
/// Physical address of the last one (0: none yet or it failed).
static IRQ_ALLOC_LAST_PHYS: Atomic<u64> = Atomic::new(0);

/// Physical address of a kmalloc allocation of `size` with `gfp`, taken with
/// a spinlock held, freed after the lock is dropped; `None` if it failed.
fn kmalloc_under_spinlock(gfp: bindings::gfp_t, size: usize) -> Result<Option<u64>> {
    let lock = KBox::pin_init(new_spinlock!(0usize, "dmalab_gfp_lab"), GFP_KERNEL)?;
    let p = {
        let _guard = SpinLock::lock(&lock);
        // SAFETY: FFI call without preconditions; checked for NULL below.
        unsafe { bindings::__kmalloc_noprof(size, gfp | GFP_NOWARN) }
    };
    if p.is_null() {
        return Ok(None);
    }
    let phys = virt_to_phys(p.cast());
    // SAFETY: `p` came from kmalloc and is freed once.
    unsafe { bindings::kfree(p) };
    Ok(Some(phys))
}

/// `kmalloc(64, GFP_ATOMIC | GFP_DMA)` under a spinlock: its physical address.
pub(crate) fn atomic_under_spinlock() -> Result<Option<u64>> {
    kmalloc_under_spinlock(GFP_ATOMIC | GFP_DMA, 64)
}

/// `kmalloc(64, GFP_KERNEL | GFP_DMA)` under a spinlock, the classic bug, at
/// most once per module instance. Returns whether it was planted now and the
/// allocation's physical address.
pub(crate) fn plant_sleep_in_atomic() -> Result<(bool, Option<u64>)> {
    if SLEEP_PLANTED.xchg(1, Relaxed) != 0 {
        return Ok((false, None));
    }
    // One object taken first, outside the lock, so the kmalloc-dma-64 slab
    // has a page with free objects: the planted call then never reaches the
    // page allocator (which would check might_sleep a second time).
    // SAFETY: FFI call without preconditions; freed below (NULL is fine for kfree).
    let warm = unsafe { bindings::__kmalloc_noprof(64, RAW_GFP_KERNEL | GFP_DMA | GFP_NOWARN) };
    pr_info!("planted: GFP_KERNEL under a spinlock (expect one 'sleeping function called from invalid context')\n");
    let phys = kmalloc_under_spinlock(RAW_GFP_KERNEL | GFP_DMA, 64);
    // SAFETY: `warm` came from kmalloc (or is NULL) and is freed once.
    unsafe { bindings::kfree(warm) };
    Ok((true, phys?))
}

/// Asks the interrupt handler to allocate once, at the next completion.
pub(crate) fn arm_irq_alloc() {
    IRQ_ALLOC_ARMED.store(1, Relaxed);
}

/// Disarms; returns whether the armed allocation was still waiting for an
/// interrupt (no completion interrupt came).
pub(crate) fn disarm_irq_alloc() -> bool {
    IRQ_ALLOC_ARMED.xchg(0, Relaxed) != 0
}

/// (allocations made in the handler, failures, physical address of the last).
pub(crate) fn irq_allocs() -> (u64, u64, u64) {
    (IRQ_ALLOCS.load(Relaxed), IRQ_ALLOC_FAILURES.load(Relaxed), IRQ_ALLOC_LAST_PHYS.load(Relaxed))
}

/// Called by the interrupt handler (hard-IRQ context) for every interrupt
/// it handles: if armed, `kmalloc(64, GFP_ATOMIC | GFP_DMA)`, which neither
/// sleeps nor reclaims, then `kfree`. A real driver would take a
/// descriptor or a small bounce buffer here.
pub(crate) fn in_irq_handler() {
    if IRQ_ALLOC_ARMED.xchg(0, Relaxed) == 0 {
        return;
    }
    // SAFETY: FFI call without preconditions, allowed in hard-IRQ context
    // with GFP_ATOMIC; checked for NULL below.
    let p = unsafe { bindings::__kmalloc_noprof(64, GFP_ATOMIC | GFP_DMA | GFP_NOWARN) };
    IRQ_ALLOCS.fetch_add(1, Relaxed);
    if p.is_null() {
        IRQ_ALLOC_FAILURES.fetch_add(1, Relaxed);
        IRQ_ALLOC_LAST_PHYS.store(0, Relaxed);
        return;
    }
    IRQ_ALLOC_LAST_PHYS.store(virt_to_phys(p.cast()), Relaxed);
    // SAFETY: `p` came from kmalloc and is freed once.
    unsafe { bindings::kfree(p) };
}

/// What [`exhaust_zone_dma`] saw.
#[derive(Debug)]
pub(crate) struct Exhaustion {
    /// ZONE_DMA pages taken before the page allocator refused.
    pub(crate) pages_taken: usize,
    /// The loop stopped because the allocator refused (not at the bound).
    pub(crate) refused: bool,
    /// Highest physical address among the pages taken.
    pub(crate) highest_phys: u64,
    /// With the zone exhausted: `kmalloc(8192, GFP_KERNEL | GFP_DMA)` result.
    pub(crate) dma_while_exhausted: Result,
    /// With the zone exhausted: `kmalloc(8192, GFP_KERNEL)` result.
    pub(crate) kernel_while_exhausted: Result,
    /// After freeing everything: `kmalloc(8192, GFP_KERNEL | GFP_DMA)`.
    pub(crate) dma_after_free: Result,
}

fn probe_kmalloc(gfp: bindings::gfp_t) -> Result {
    // 8 KiB is above the slab caches of SLUB_TINY (one page), so this goes to the page
    // allocator rather than to a partly used slab.
    // SAFETY: FFI call without preconditions; checked for NULL, freed once.
    let p = unsafe { bindings::__kmalloc_noprof(8192, gfp | GFP_NOWARN | GFP_NORETRY) };
    if p.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: as above.
    unsafe { bindings::kfree(p) };
    Ok(())
}

/// Takes ZONE_DMA pages until the allocator refuses (at most the zone's
/// size), probes GFP_DMA and GFP_KERNEL, frees every page, probes again.
pub(crate) fn exhaust_zone_dma() -> Result<Exhaustion> {
    // (address, order) of every block taken. Largest blocks first, so a few
    // dozen calls empty the zone (each call is emulated guest-kernel work).
    let mut blocks: KVec<(usize, u32)> = KVec::with_capacity(ZONE_DMA_PAGES, GFP_KERNEL)?;
    let mut ex = Exhaustion {
        pages_taken: 0,
        refused: false,
        highest_phys: 0,
        dma_while_exhausted: Ok(()),
        kernel_while_exhausted: Ok(()),
        dma_after_free: Ok(()),
    };
    'orders: for order in (0..=bindings::MAX_PAGE_ORDER).rev() {
        while ex.pages_taken + (1 << order) <= ZONE_DMA_PAGES {
            // Why two flag sets: see the module comment.
            let gfp = if order > 0 { GFP_NOWAIT } else { RAW_GFP_KERNEL | GFP_NORETRY };
            // SAFETY: FFI call; checked for 0, freed below with the same order.
            let a = unsafe { bindings::get_free_pages_noprof(gfp | GFP_DMA | GFP_NOWARN, order) };
            if a == 0 {
                if order == 0 {
                    ex.refused = true;
                    break 'orders;
                }
                continue 'orders;
            }
            let last = a + (PAGE_SIZE << order) - 1;
            ex.highest_phys = ex.highest_phys.max(virt_to_phys(last as *const u8));
            ex.pages_taken += 1 << order;
            // Cannot fail: at most ZONE_DMA_PAGES blocks, reserved above.
            let _ = blocks.push((a, order), GFP_ATOMIC_RUST);
        }
    }
    ex.dma_while_exhausted = probe_kmalloc(RAW_GFP_KERNEL | GFP_DMA);
    ex.kernel_while_exhausted = probe_kmalloc(RAW_GFP_KERNEL);
    for (a, order) in blocks.drain_all() {
        // SAFETY: each block came from __get_free_pages(.., order) above and is freed once.
        unsafe { bindings::free_pages(a, order) };
    }
    ex.dma_after_free = probe_kmalloc(RAW_GFP_KERNEL | GFP_DMA);
    Ok(ex)
}

/// `push` within reserved capacity never allocates; these flags are unused.
const GFP_ATOMIC_RUST: kernel::alloc::Flags = kernel::alloc::flags::GFP_ATOMIC;
