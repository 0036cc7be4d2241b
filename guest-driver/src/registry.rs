// SPDX-License-Identifier: GPL-2.0

//! The registry of bound devices, with the module-wide objects probe hands
//! to each device (the debugfs root `dmalab/` and the `SLAB_CACHE_DMA`
//! cache). Probe takes a slot, the character devices and the KUnit suites
//! look devices up here, unbind gives the slot back ([`RegistryEntry`]).

use crate::{dma_raw::DmaCache, state::Dma24};
use kernel::{debugfs, prelude::*, sync::Arc};

/// Most dma24 functions the driver handles at once (`/dev/dma24-0` .. `-7`).
pub(crate) const MAX_DEVICES: usize = 8;

/// Names of the character devices, debugfs directories and IRQs. They must be
/// `'static`: `struct miscdevice` keeps the pointer.
static NAMES: [&CStr; MAX_DEVICES] = [
    c"dma24-0", c"dma24-1", c"dma24-2", c"dma24-3", c"dma24-4", c"dma24-5", c"dma24-6",
    c"dma24-7",
];

/// The registry of probed devices, the debugfs root and the `SLAB_CACHE_DMA`
/// cache, shared by probe, the character devices and the KUnit suites.
struct Registry {
    slots: [Option<Arc<Dma24>>; MAX_DEVICES],
    debugfs_root: Option<debugfs::Dir>,
    dma_cache: Option<Arc<DmaCache>>,
}

kernel::sync::global_lock! {
    // SAFETY: `init()` initialises the lock in module init, before anything else uses it.
    unsafe(uninit) static REGISTRY: Mutex<Registry> = Registry {
        slots: [const { None }; MAX_DEVICES],
        debugfs_root: None,
        dma_cache: None,
    };
}

/// Initialises the registry lock. Called once, first thing in module init
/// (the built-in KUnit suites look at the registry even if init failed).
pub(crate) fn init() {
    // SAFETY: Called exactly once per module load, before any other use of `REGISTRY`.
    unsafe { REGISTRY.init() };
}

/// Installs the module-wide objects, before the PCI driver is registered.
pub(crate) fn set_globals(root: debugfs::Dir, cache: Arc<DmaCache>) {
    let mut reg = REGISTRY.lock();
    reg.debugfs_root = Some(root);
    reg.dma_cache = Some(cache);
}

/// Drops the module-wide objects. Called from module exit, after the PCI
/// driver is unregistered (so no device is left).
pub(crate) fn exit() {
    let mut reg = REGISTRY.lock();
    reg.debugfs_root = None;
    reg.dma_cache = None;
}

/// All bound devices.
pub(crate) fn devices() -> Result<KVec<Arc<Dma24>>> {
    let reg = REGISTRY.lock();
    let mut out = KVec::new();
    for dev in reg.slots.iter().flatten() {
        out.push(dev.clone(), GFP_KERNEL)?;
    }
    Ok(out)
}

/// The device with the lowest index that is still bound.
pub(crate) fn first_live_device() -> Option<Arc<Dma24>> {
    // Lock order is transfer mutex -> registry, so check `alive` after
    // letting go of the registry.
    devices().ok()?.into_iter().find(|dev| dev.is_alive())
}

/// What a new device gets from the registry: the lowest free index, its
/// name, and the `SLAB_CACHE_DMA` cache.
pub(crate) struct Slot {
    pub(crate) index: usize,
    pub(crate) name: &'static CStr,
    pub(crate) dma_cache: Option<Arc<DmaCache>>,
}

/// Takes the lowest free index for the device `make` builds from the
/// [`Slot`] and publishes it (not yet alive). Returns its entry and the
/// debugfs root to put its directory in. `EBUSY` if all [`MAX_DEVICES`] are
/// taken.
pub(crate) fn insert(
    make: impl FnOnce(&Slot) -> Result<Arc<Dma24>>,
) -> Result<(RegistryEntry, Option<debugfs::Dir>)> {
    let mut reg = REGISTRY.lock();
    let index = reg.slots.iter().position(Option::is_none).ok_or(EBUSY)?;
    let slot = Slot {
        index,
        name: NAMES[index],
        dma_cache: reg.dma_cache.clone(),
    };
    let dev = make(&slot)?;
    reg.slots[index] = Some(dev.clone());
    Ok((RegistryEntry { index, dev }, reg.debugfs_root.clone()))
}

/// Removes a device from the registry when dropped.
pub(crate) struct RegistryEntry {
    index: usize,
    pub(crate) dev: Arc<Dma24>,
}

impl Drop for RegistryEntry {
    fn drop(&mut self) {
        let mut reg = REGISTRY.lock();
        if let Some(slot) = reg.slots.get_mut(self.index) {
            if slot.as_ref().is_some_and(|d| Arc::ptr_eq(d, &self.dev)) {
                *slot = None;
            }
        }
    }
}
