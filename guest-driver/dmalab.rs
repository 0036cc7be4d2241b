// SPDX-License-Identifier: GPL-2.0

//! dmalab: driver for dma24, a bus-mastering PCI DMA engine with a 24-bit
//! DMA mask (1234:d024), written to show how constrained hardware must be
//! driven through the DMA API.
//!
//! - `src/regs.rs`: the register map (mirror of `device-model/src/regs.rs`).
//! - `src/dma_raw.rs`: allocators and streaming DMA mappings through raw
//!   bindings, behind safe wrappers.
//! - `src/sys.rs`: other raw glue (IRQ completion with timeout, KUnit skip).
//! - `src/device.rs`: PCI probe/unbind, IRQ handler, registry of devices.
//! - `src/transfer.rs`: programming the engine, errors -> errnos.
//! - `src/alloc_lab.rs`: the buffer sources and round trips.
//! - `src/chardev.rs`: `/dev/dma24-N` and its ioctls.
//! - `src/debugfs.rs`: `/sys/kernel/debug/dmalab/dma24-N/`.
//! - `src/tests.rs`: KUnit suites run against a bound device.

use kernel::{debugfs, driver, pci, prelude::*, sync::Arc};

#[path = "src/alloc_lab.rs"]
mod alloc_lab;
#[path = "src/chardev.rs"]
mod chardev;
#[path = "src/debugfs.rs"]
mod debugfs_files;
#[path = "src/device.rs"]
mod device;
#[path = "src/dma_raw.rs"]
mod dma_raw;
#[path = "src/regs.rs"]
mod regs;
#[path = "src/sys.rs"]
mod sys;
#[path = "src/tests.rs"]
mod tests;
#[path = "src/transfer.rs"]
mod transfer;

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
                          4 __get_free_pages GFP_DMA, 5 vmalloc (SG), 6 ZONE_DMA pages (SG)",
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
        device::registry_init();
        let cache = Arc::new(
            dma_raw::DmaCache::new(c"dmalab_dma", transfer::CHUNK)?,
            GFP_KERNEL,
        )?;
        device::registry_set_globals(debugfs::Dir::new(c"dmalab"), cache);
        Ok(Globals)
    }
}

impl Drop for Globals {
    fn drop(&mut self) {
        device::registry_exit();
    }
}

#[pin_data]
struct Dmalab {
    // Drops first: unbinding every device before the globals go.
    #[pin]
    driver: driver::Registration<pci::Adapter<device::Dma24Driver>>,
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
