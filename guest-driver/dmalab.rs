// SPDX-License-Identifier: GPL-2.0

//! dmalab: driver for dma24, a bus-mastering PCI DMA engine with a 24-bit
//! DMA mask (1234:d024), written to show how constrained hardware must be
//! driven through the DMA API.
//!
//! - `src/regs.rs`: the register map. A symlink to
//!   `device-model/src/regs.rs`, the one file both sides compile.
//! - `src/pattern.rs`: the test pattern, shared with the guest tool.
//! - `src/dma_raw.rs`, `src/dma_sg.rs`: allocators and streaming DMA
//!   mappings (single, scatter-gather) through raw bindings, behind safe
//!   wrappers.
//! - `src/sys.rs`: other raw glue (IRQ completion with timeout, KUnit skip).
//! - `src/probe.rs`: the PCI driver (probe, unbind) and module parameters.
//! - `src/state.rs`: one bound device's state and its interrupt handler.
//! - `src/registry.rs`: the bound devices and module-wide objects.
//! - `src/transfer.rs`: programming the engine, errors -> errnos.
//! - `src/alloc_lab.rs`: the buffer sources and round trips.
//! - `src/lab_virt.rs`, `src/lab_sizes.rs`, `src/lab_gfp.rs`: allocator lab
//!   part 2 (private and stack buffers, size classes, GFP context), with
//!   their ioctls in `src/lab_ioctl.rs`.
//! - `src/chardev.rs`: `/dev/dma24-N` and its ioctls.
//! - `src/zerocopy.rs`: user-page DMA and the mmap buffer's transfers;
//!   `src/mmap_buf.rs` (the ZONE_DMA pages user space maps) and
//!   `src/user_pages.rs` (`pin_user_pages_fast()`, raw bindings).
//! - `src/debugfs.rs`: `/sys/kernel/debug/dmalab/dma24-N/`.
//! - `src/tests/`: the KUnit suites, one file each, run against a bound device
//!   (compiled with `--cfg dmalab_kunit` only: see Kbuild).

// Without the suites (the plain module) their helpers in the other modules
// are unused; the clippy check builds with the suites, so dead code is still
// found there.
#![cfg_attr(not(dmalab_kunit), allow(dead_code))]

use kernel::{debugfs, driver, pci, prelude::*, sync::Arc};

#[path = "src/alloc_lab.rs"]
mod alloc_lab;
#[path = "src/chardev.rs"]
mod chardev;
#[path = "src/debugfs.rs"]
mod debugfs_files;
#[path = "src/dma_raw.rs"]
mod dma_raw;
#[path = "src/dma_sg.rs"]
mod dma_sg;
// Shared with the guest tool, `pub` there.
#[allow(unreachable_pub, dead_code)]
#[path = "src/lab_abi.rs"]
mod lab_abi;
#[path = "src/lab_gfp.rs"]
mod lab_gfp;
#[path = "src/lab_ioctl.rs"]
mod lab_ioctl;
#[path = "src/lab_sizes.rs"]
mod lab_sizes;
#[path = "src/lab_virt.rs"]
mod lab_virt;
// Shared with the guest tool, which exports it: `pub` there.
#[allow(unreachable_pub)]
#[path = "src/pattern.rs"]
mod pattern;
#[path = "src/probe.rs"]
mod probe;
#[path = "src/registry.rs"]
mod registry;
// The device model's map, `pub` there: the driver uses most of it, not all
// (PCI class codes, the reserved-bit masks only the device checks).
#[allow(dead_code, unreachable_pub)]
#[path = "src/regs.rs"]
mod regs;
#[path = "src/state.rs"]
mod state;
#[path = "src/sys.rs"]
mod sys;
// The KUnit suites: only where `--cfg dmalab_kunit` is set (Kbuild: the
// built-in kernel, vmlinux-kunit; out of tree with `DMALAB_KUNIT=y`). The
// plain dmalab.ko carries none, so it is a quarter smaller and loads faster.
#[cfg(dmalab_kunit)]
#[path = "src/tests/mod.rs"]
mod tests;
#[path = "src/timing.rs"]
mod timing;
#[path = "src/transfer.rs"]
mod transfer;
#[path = "src/mmap_buf.rs"]
mod mmap_buf;
#[path = "src/mmap_dma.rs"]
mod mmap_dma;
#[path = "src/user_pages.rs"]
mod user_pages;
#[path = "src/zerocopy.rs"]
mod zerocopy;

module! {
    type: Dmalab,
    name: "dmalab",
    authors: ["dmalab project"],
    description: "Driver and DMA-API lab for the dma24 PCI DMA engine (24-bit DMA mask)",
    license: "GPL",
    params: {
        force_intx: u8 {
            default: 0,
            description: "Use legacy INTx interrupts even if MSI is available (1 = yes)",
        },
        alloc: u32 {
            default: 0,
            description: "Initial buffer source for read()/write(): 0 kmalloc GFP_DMA, \
                          1 kmalloc GFP_KERNEL, 2 kzalloc, 3 kmem_cache SLAB_CACHE_DMA, \
                          4 __get_free_pages GFP_DMA, 5 vmalloc (SG), 6 ZONE_DMA pages (SG), \
                          7 dma_alloc_coherent, 8 static buffer, 9 stack buffer",
        },
        timeout_ms: u32 {
            default: 2000,
            description: "How long to wait for a transfer's completion interrupt (ms)",
        },
    },
}

/// Module-wide state: the registry, the debugfs root `dmalab/` and the
/// `SLAB_CACHE_DMA` cache. Dropped after the driver is unregistered.
struct Globals;

impl Globals {
    fn new() -> Result<Self> {
        registry::init();
        let cache = Arc::new(
            dma_raw::DmaCache::new(c"dmalab_dma", transfer::CHUNK)?,
            GFP_KERNEL,
        )?;
        registry::set_globals(debugfs::Dir::new(c"dmalab"), cache);
        Ok(Globals)
    }
}

impl Drop for Globals {
    fn drop(&mut self) {
        registry::exit();
    }
}

#[pin_data]
struct Dmalab {
    // Drops first: unbinding every device before the globals go.
    #[pin]
    driver: driver::Registration<pci::Adapter<probe::Dma24Driver>>,
    globals: Globals,
}

impl kernel::InPlaceModule for Dmalab {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Dmalab {
            globals: Globals::new()?,
            driver <- driver::Registration::new(c"dmalab", module),
        })
    }
}
