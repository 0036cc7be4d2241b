// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: probe, unbind, the interrupt handler, the per-device
//! state ([`Dma24`]) and the registry of bound devices that the KUnit suites
//! and the character devices look devices up in.
//!
//! Lifetime rules. A [`Dma24`] is reference counted: the driver data, open
//! files, the debugfs files, the IRQ handler and the KUnit tests may hold it.
//! Hardware access and DMA only happen inside [`Dma24::with_live`], which
//! holds the transfer mutex and checks `alive`; `unbind` clears `alive` under
//! the same mutex before the driver core releases BARs, IRQ vectors and DMA
//! state, so nothing touches the device or the DMA API once it is unbound.

use crate::{
    alloc_lab::Allocator,
    chardev::Chardev,
    dma_raw::DmaCache,
    regs::*,
    sys::IrqCompletion,
};
use kernel::{
    debugfs,
    device::{self, Core},
    devres::Devres,
    dma::{Device as _, DmaMask},
    io::Io,
    irq::{self, IrqReturn},
    new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
};

/// BAR0: the registers, with offsets checked at build time.
pub(crate) type Bar0 = pci::Bar<'static, REGS_SIZE>;
/// BAR1: device memory, size known at run time.
pub(crate) type Bar1 = pci::Bar<'static>;

/// Set when probe refused a device because the platform cannot give it its
/// DMA mask (narrower than ZONE_DMA): the right outcome, which the KUnit
/// suites report as a skip rather than a failure.
pub(crate) static MASK_REFUSED: Atomic<u32> = Atomic::new(0);

/// Most dma24 functions the driver handles at once (`/dev/dma24-0` .. `-7`).
pub(crate) const MAX_DEVICES: usize = 8;

/// Names of the character devices, debugfs directories and IRQs. They must be
/// `'static`: `struct miscdevice` keeps the pointer.
static NAMES: [&CStr; MAX_DEVICES] = [
    c"dma24-0", c"dma24-1", c"dma24-2", c"dma24-3", c"dma24-4", c"dma24-5", c"dma24-6",
    c"dma24-7",
];

/// How the device interrupts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IrqMode {
    Intx = 0,
    Msi = 1,
}

/// What probe learnt about the device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceInfo {
    /// DMA mask width in bits, from REG_CAPS.
    pub(crate) mask_bits: u32,
    /// The mask itself (what `dma_set_mask_and_coherent()` was given).
    pub(crate) dma_mask: u64,
    /// REG_CAPS.
    pub(crate) caps: u32,
    /// REG_VERSION.
    pub(crate) version: u32,
    /// Bytes of device memory (BAR1) the driver uses.
    pub(crate) devmem_size: usize,
    pub(crate) irq_mode: IrqMode,
}

impl DeviceInfo {
    /// The device wraps out-of-mask addresses instead of rejecting them.
    pub(crate) fn truncates(&self) -> bool {
        self.caps & CAPS_TRUNCATE != 0
    }
}

/// Driver-side counters.
pub(crate) struct Stats {
    /// Transfers started (each START written to REG_DMA_CMD: one trace
    /// `transfer` id on the host).
    pub(crate) starts: Atomic<u64>,
    pub(crate) transfers_ok: Atomic<u64>,
    pub(crate) transfers_failed: Atomic<u64>,
    pub(crate) bytes_to_device: Atomic<u64>,
    pub(crate) bytes_from_device: Atomic<u64>,
    pub(crate) map_errors: Atomic<u64>,
    pub(crate) device_errors: Atomic<u64>,
    pub(crate) timeouts: Atomic<u64>,
    pub(crate) irqs: Atomic<u64>,
    pub(crate) spurious_irqs: Atomic<u64>,
    pub(crate) lost_irqs: Atomic<u64>,
}

impl Stats {
    const fn new() -> Self {
        Self {
            starts: Atomic::new(0),
            transfers_ok: Atomic::new(0),
            transfers_failed: Atomic::new(0),
            bytes_to_device: Atomic::new(0),
            bytes_from_device: Atomic::new(0),
            map_errors: Atomic::new(0),
            device_errors: Atomic::new(0),
            timeouts: Atomic::new(0),
            irqs: Atomic::new(0),
            spurious_irqs: Atomic::new(0),
            lost_irqs: Atomic::new(0),
        }
    }
}

/// Reads a counter.
pub(crate) fn get(counter: &Atomic<u64>) -> u64 {
    counter.load(Relaxed)
}

/// Increments a counter by `n`.
pub(crate) fn bump(counter: &Atomic<u64>, n: u64) {
    counter.add(n, Relaxed);
}

/// The device's own counters (BAR0 0x40..0x70).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct DevCounters {
    pub(crate) transfers: u64,
    pub(crate) bytes_to_device: u64,
    pub(crate) bytes_from_device: u64,
    pub(crate) faults: u64,
    pub(crate) last_seq: u64,
    pub(crate) fault_addr: u64,
}

impl DevCounters {
    pub(crate) fn read(regs: &Bar0) -> Self {
        Self {
            transfers: regs.read64(REG_COUNT_TRANSFERS),
            bytes_to_device: regs.read64(REG_COUNT_BYTES_TO_DEVICE),
            bytes_from_device: regs.read64(REG_COUNT_BYTES_FROM_DEVICE),
            faults: regs.read64(REG_COUNT_FAULTS),
            last_seq: regs.read64(REG_LAST_SEQ),
            fault_addr: regs.read64(REG_FAULT_ADDR),
        }
    }
}

/// Where the last error came from.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) enum ErrorSource {
    #[default]
    None = 0,
    /// The device reported an error code (REG_ERROR).
    Device = 1,
    /// The DMA API refused to map the buffer.
    Mapping = 2,
    /// The device did not finish in time.
    Timeout = 3,
    /// The buffer could not be allocated.
    Alloc = 4,
}

impl ErrorSource {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ErrorSource::None => "none",
            ErrorSource::Device => "device",
            ErrorSource::Mapping => "dma-mapping",
            ErrorSource::Timeout => "timeout",
            ErrorSource::Alloc => "allocation",
        }
    }
}

/// The most recent failure, for debugfs and `DMA24_IOC_GET_LAST_ERROR`.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct LastError {
    /// Number of failures recorded so far.
    pub(crate) count: u64,
    /// Negative errno returned to the caller.
    pub(crate) errno: i32,
    pub(crate) source: ErrorSource,
    /// REG_ERROR code (device errors only).
    pub(crate) dev_error: u32,
    /// Allocator in use (see `Allocator`).
    pub(crate) alloc: u32,
    /// 0 = to device, 1 = from device.
    pub(crate) from_device: bool,
    /// The bus address programmed (device errors), or the buffer's physical
    /// address (mapping errors).
    pub(crate) bus_addr: u64,
    /// REG_FAULT_ADDR (device errors only).
    pub(crate) fault_addr: u64,
    /// REG_LAST_SEQ: the trace record of the failed transfer.
    pub(crate) seq: u64,
    pub(crate) dev_offset: u32,
    pub(crate) len: u32,
}

/// State only touched with the transfer mutex held.
pub(crate) struct XferState {
    /// The device is bound and its resources are usable.
    alive: bool,
    /// Buffer source for read()/write() on the character device.
    pub(crate) alloc: Allocator,
}

/// One bound dma24 function.
#[pin_data]
pub(crate) struct Dma24 {
    pub(crate) pdev: ARef<pci::Device>,
    /// N in `/dev/dma24-N`.
    pub(crate) index: usize,
    /// `dma24-N`.
    pub(crate) name: &'static CStr,
    regs: Devres<Bar0>,
    devmem: Devres<Bar1>,
    pub(crate) info: DeviceInfo,
    /// The module's `SLAB_CACHE_DMA` cache (allocator `kmem-cache-dma`).
    pub(crate) dma_cache: Option<Arc<DmaCache>>,
    /// Signalled by the interrupt handler.
    #[pin]
    pub(crate) done: IrqCompletion,
    #[pin]
    xfer: Mutex<XferState>,
    pub(crate) stats: Stats,
    #[pin]
    last_error: Mutex<LastError>,
}

/// A device known to be bound, with its transfer mutex held: what every
/// hardware access and DMA mapping goes through (see [`Dma24::with_live`]).
pub(crate) struct Live<'a> {
    pub(crate) dev: &'a Dma24,
    pub(crate) ddev: &'a device::Device<device::Bound>,
    pub(crate) pdev: &'a pci::Device<device::Bound>,
    pub(crate) regs: &'a Bar0,
    pub(crate) devmem: &'a Bar1,
    pub(crate) state: &'a mut XferState,
    /// Allocator of the buffer being transferred, for error records.
    pub(crate) active_alloc: u32,
}

impl Dma24 {
    /// Runs `f` with the device's transfer mutex held, if the device is
    /// still bound; `ENODEV` otherwise.
    pub(crate) fn with_live<R>(&self, f: impl FnOnce(&mut Live<'_>) -> Result<R>) -> Result<R> {
        let mut guard = self.xfer.lock();
        if !guard.alive {
            return Err(ENODEV);
        }
        let dev: &device::Device = self.pdev.as_ref();
        // SAFETY: `alive` is set at the end of a successful probe and cleared by `unbind()` with
        // this mutex held, before the driver core releases the device's resources. We hold the
        // mutex until `f` returns and the `Live` (and everything borrowing it) is gone, so the
        // device stays bound for the whole lifetime of this reference.
        let ddev = unsafe { dev.as_bound() };
        let pdev: &pci::Device<device::Bound> = ddev.try_into()?;
        let regs = self.regs.access(ddev)?;
        let devmem = self.devmem.access(ddev)?;
        let active_alloc = guard.alloc as u32;
        let mut live = Live {
            dev: self,
            ddev,
            pdev,
            regs,
            devmem,
            state: &mut guard,
            active_alloc,
        };
        f(&mut live)
    }

    /// `dma24-N` as a `&str`.
    pub(crate) fn label(&self) -> &'static str {
        self.name.to_str().unwrap_or("dma24-?")
    }

    /// Whether the device is bound (a snapshot).
    pub(crate) fn is_alive(&self) -> bool {
        self.xfer.lock().alive
    }

    /// The buffer source read()/write() use.
    pub(crate) fn allocator(&self) -> Allocator {
        self.xfer.lock().alloc
    }

    /// Selects the buffer source for read()/write().
    pub(crate) fn set_allocator(&self, alloc: Allocator) {
        self.xfer.lock().alloc = alloc;
    }

    /// The device's counters, or `None` once it is unbound.
    pub(crate) fn device_counters(&self) -> Option<DevCounters> {
        let regs = self.regs.try_access()?;
        Some(DevCounters::read(&regs))
    }

    /// The most recent failure.
    pub(crate) fn last_error(&self) -> LastError {
        *self.last_error.lock()
    }

    /// Records a failure.
    pub(crate) fn record_error(&self, mut err: LastError) {
        let mut last = self.last_error.lock();
        err.count = last.count + 1;
        *last = err;
    }

    fn go_live(&self, regs: &Bar0) {
        let mut state = self.xfer.lock();
        regs.write32(IRQ_DONE | IRQ_ERROR, REG_IRQ_STATUS);
        regs.write32(CTRL_IRQ_ENABLE, REG_CONTROL);
        state.alive = true;
    }

    /// Stops all use of the device: later `with_live` calls fail with
    /// `ENODEV`. Waits for a running transfer to finish.
    fn shutdown(&self, ddev: &device::Device<device::Bound>) {
        let mut state = self.xfer.lock();
        state.alive = false;
        if let Ok(regs) = self.regs.access(ddev) {
            regs.write32(0, REG_CONTROL);
            regs.write32(CTRL_RESET, REG_CONTROL);
        }
    }
}

impl irq::Handler for Dma24 {
    fn handle(&self, device: &device::Device<device::Bound>) -> IrqReturn {
        let Ok(regs) = self.regs.access(device) else {
            return IrqReturn::None;
        };
        let pending = regs.read32(REG_IRQ_STATUS);
        if pending == 0 {
            // INTx may be shared; a late MSI after an engine reset lands here too.
            bump(&self.stats.spurious_irqs, 1);
            return IrqReturn::None;
        }
        regs.write32(pending, REG_IRQ_STATUS);
        bump(&self.stats.irqs, 1);
        self.done.complete();
        IrqReturn::Handled
    }
}

/// The registry of probed devices, the debugfs root and the `SLAB_CACHE_DMA`
/// cache, shared by probe, the character devices and the KUnit suites.
pub(crate) struct Registry {
    slots: [Option<Arc<Dma24>>; MAX_DEVICES],
    debugfs_root: Option<debugfs::Dir>,
    dma_cache: Option<Arc<DmaCache>>,
}

kernel::sync::global_lock! {
    // SAFETY: `registry_init()` initialises the lock in module init, before anything else uses it.
    unsafe(uninit) static REGISTRY: Mutex<Registry> = Registry {
        slots: [const { None }; MAX_DEVICES],
        debugfs_root: None,
        dma_cache: None,
    };
}

/// Initialises the registry lock. Called once, first thing in module init
/// (the built-in KUnit suites look at the registry even if init failed).
pub(crate) fn registry_init() {
    // SAFETY: Called exactly once per module load, before any other use of `REGISTRY`.
    unsafe { REGISTRY.init() };
}

/// Installs the module-wide objects, before the PCI driver is registered.
pub(crate) fn registry_set_globals(root: debugfs::Dir, cache: Arc<DmaCache>) {
    let mut reg = REGISTRY.lock();
    reg.debugfs_root = Some(root);
    reg.dma_cache = Some(cache);
}

/// Drops the module-wide objects. Called from module exit, after the PCI
/// driver is unregistered (so no device is left).
pub(crate) fn registry_exit() {
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

/// Removes a device from the registry when dropped.
struct RegistryEntry {
    index: usize,
    dev: Arc<Dma24>,
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

/// The PCI driver.
pub(crate) struct Dma24Driver;

/// QEMU's vendor ID, which `kernel::pci::Vendor` has no constant for.
const DMA24_VENDOR: pci::Vendor = {
    // SAFETY: `pci::Vendor` is a `#[repr(transparent)]` wrapper of the 16-bit vendor ID and
    // every `u16` is a vendor ID; the type only lacks a public constructor for IDs missing from
    // `pci_ids.h`.
    unsafe { core::mem::transmute::<u16, pci::Vendor>(VENDOR_ID) }
};

kernel::pci_device_table!(
    PCI_TABLE,
    MODULE_PCI_TABLE,
    <Dma24Driver as pci::Driver>::IdInfo,
    [(pci::DeviceId::from_id(DMA24_VENDOR, DEVICE_ID as u32), ())]
);

/// Per-binding driver data; its fields drop in order on unbind: the
/// character device and debugfs files disappear first, then the IRQ is
/// freed, then the device leaves the registry.
pub(crate) struct DriverData {
    _chardev: Pin<KBox<Chardev>>,
    _debugfs: Option<Pin<KBox<debugfs::Scope<Arc<Dma24>>>>>,
    _irq: Pin<KBox<irq::Registration<Arc<Dma24>>>>,
    _entry: RegistryEntry,
    dev: Arc<Dma24>,
}

impl pci::Driver for Dma24Driver {
    type IdInfo = ();
    type Data<'bound> = DriverData;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<DriverData, Error> + 'bound {
        probe(pdev)
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&DriverData>) {
        dev_info!(pdev, "{}: unbinding\n", this.dev.name);
        this.dev.shutdown(pdev.as_ref());
    }
}

/// Reads what the device is and checks it is a dma24 the driver understands.
fn identify(pdev: &pci::Device<Core<'_>>, regs: &pci::Bar<'_, REGS_SIZE>) -> Result<(u32, u32)> {
    let magic = [
        regs.read8(REG_MAGIC),
        regs.read8(REG_MAGIC + 1),
        regs.read8(REG_MAGIC + 2),
        regs.read8(REG_MAGIC + 3),
    ];
    if u32::from_le_bytes(magic) != MAGIC || regs.read32(REG_MAGIC) != MAGIC {
        dev_err!(pdev, "not a dma24: magic {:02x?} (expected \"DM24\")\n", magic);
        return Err(ENODEV);
    }
    let version = regs.read32(REG_VERSION);
    if version >> 16 != VERSION >> 16 {
        dev_err!(
            pdev,
            "dma24 register interface {}.{} is not supported (need {}.x)\n",
            version >> 16,
            version & 0xffff,
            VERSION >> 16
        );
        return Err(ENODEV);
    }
    Ok((version, regs.read32(REG_CAPS)))
}

fn probe(pdev: &pci::Device<Core<'_>>) -> Result<DriverData> {
    pdev.enable_device_mem()?;
    crate::sys::disable_on_unbind(pdev)?;
    pdev.set_master();

    let regs = pdev.iomap_region_sized::<REGS_SIZE>(BAR_REGS, c"dmalab-regs")?;
    let (version, caps) = identify(pdev, &regs)?;
    let mask_bits = caps & CAPS_MASK_BITS;
    if !(12..=64).contains(&mask_bits) {
        dev_err!(pdev, "REG_CAPS reports a {}-bit DMA mask (valid: 12..64)\n", mask_bits);
        return Err(ENODEV);
    }
    let mask = DmaMask::try_new(mask_bits)?;
    // SAFETY: Probe runs before this device has any DMA allocation or mapping, and nothing else
    // uses the device concurrently.
    if let Err(e) = unsafe { pdev.dma_set_mask_and_coherent(mask) } {
        dev_err!(
            pdev,
            "dma_set_mask_and_coherent({} bits) failed: {:?}; the platform cannot reach \
             memory through a mask this narrow\n",
            mask_bits,
            e
        );
        MASK_REFUSED.store(mask_bits, Relaxed);
        return Err(e);
    }

    let devmem_reg = regs.read32(REG_DEVMEM_SIZE) as usize;
    let bar1_len = usize::try_from(pdev.resource_len(BAR_DEVMEM)?)?;
    let devmem_size = devmem_reg.min(bar1_len);
    if devmem_size == 0 {
        dev_err!(pdev, "no device memory (REG_DEVMEM_SIZE {}, BAR1 {} bytes)\n", devmem_reg, bar1_len);
        return Err(ENODEV);
    }
    if devmem_reg != bar1_len {
        dev_warn!(
            pdev,
            "REG_DEVMEM_SIZE {} != BAR1 size {}: using {} bytes\n",
            devmem_reg,
            bar1_len,
            devmem_size
        );
    }
    let devmem = pdev.iomap_region(BAR_DEVMEM, c"dmalab-devmem")?;

    // Start from a quiet engine: no transfer, interrupts off, causes acknowledged.
    regs.write32(CTRL_RESET, REG_CONTROL);
    regs.write32(0, REG_CONTROL);
    regs.write32(IRQ_DONE | IRQ_ERROR, REG_IRQ_STATUS);

    let force_intx = *crate::module_parameters::force_intx.value() != 0;
    let intx = pci::IrqTypes::default().with(pci::IrqType::Intx);
    let msi = pci::IrqTypes::default().with(pci::IrqType::Msi);
    let (vectors, irq_mode) = if force_intx {
        (pdev.alloc_irq_vectors(1, 1, intx)?, IrqMode::Intx)
    } else {
        match pdev.alloc_irq_vectors(1, 1, msi) {
            Ok(v) => (v, IrqMode::Msi),
            Err(e) => {
                dev_warn!(pdev, "MSI unavailable ({:?}), falling back to INTx\n", e);
                (pdev.alloc_irq_vectors(1, 1, intx)?, IrqMode::Intx)
            }
        }
    };
    let vector = *vectors.start();

    let info = DeviceInfo {
        mask_bits,
        dma_mask: mask.value(),
        caps,
        version,
        devmem_size,
        irq_mode,
    };
    let regs = regs.into_devres()?;
    let devmem = devmem.into_devres()?;
    let default_alloc = Allocator::from_u32(*crate::module_parameters::alloc.value())
        .inspect_err(|_| {
            dev_warn!(
                pdev,
                "alloc={} is not a valid allocator, using 0 (kmalloc-dma)\n",
                *crate::module_parameters::alloc.value()
            )
        })
        .unwrap_or(Allocator::KmallocDma);

    // Take the lowest free index and publish the device (not yet alive).
    let (entry, root) = {
        let mut reg = REGISTRY.lock();
        let index = reg.slots.iter().position(Option::is_none).ok_or_else(|| {
            dev_err!(pdev, "more than {} dma24 devices\n", MAX_DEVICES);
            EBUSY
        })?;
        let name = NAMES[index];
        let dma_cache = reg.dma_cache.clone();
        let dev = Arc::pin_init(
            try_pin_init!(Dma24 {
                pdev: pdev.into(),
                index,
                name,
                regs,
                devmem,
                info,
                dma_cache,
                done <- IrqCompletion::new(),
                xfer <- new_mutex!(XferState {
                    alive: false,
                    alloc: default_alloc,
                }),
                stats: Stats::new(),
                last_error <- new_mutex!(LastError::default()),
            }),
            GFP_KERNEL,
        )?;
        reg.slots[index] = Some(dev.clone());
        (RegistryEntry { index, dev }, reg.debugfs_root.clone())
    };
    let dev = entry.dev.clone();

    let irq_flags = match irq_mode {
        IrqMode::Msi => irq::Flags::TRIGGER_NONE,
        IrqMode::Intx => irq::Flags::SHARED,
    };
    let irq = KBox::pin_init(
        pdev.request_irq(vector, irq_flags, dev.name, Ok::<_, Error>(dev.clone())),
        GFP_KERNEL,
    )?;
    let chardev = KBox::pin_init(Chardev::register(dev.clone()), GFP_KERNEL)?;
    let debugfs = match &root {
        Some(root) => Some(KBox::pin_init(
            root.scope(dev.clone(), dev.name, crate::debugfs_files::populate),
            GFP_KERNEL,
        )?),
        None => None,
    };

    dev.go_live(dev.regs.access(pdev.as_ref())?);
    dev_info!(
        pdev,
        "{}: dma24 v{}.{}, {}-bit DMA mask{}, {} KiB device memory, {:?}, /dev/{}\n",
        dev.name,
        version >> 16,
        version & 0xffff,
        mask_bits,
        if info.truncates() { " (truncating)" } else { "" },
        devmem_size / 1024,
        irq_mode,
        dev.name
    );
    Ok(DriverData {
        _chardev: chardev,
        _debugfs: debugfs,
        _irq: irq,
        _entry: entry,
        dev,
    })
}
