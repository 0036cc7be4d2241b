// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: the ID table, probe and unbind, and the module parameters
//! (read once per probe into [`Params`]; a device keeps the values it was
//! probed with).

use crate::{
    alloc_lab::Allocator,
    chardev::Chardev,
    registry::{self, RegistryEntry},
    regs::*,
    state::{Dma24, DeviceInfo, IrqMode, Registers, Resources, REGS_LEN},
};
use kernel::{
    debugfs,
    device::Core,
    dma::{Device as _, DmaMask},
    irq, pci,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
};

/// Set when probe refused a device because the platform cannot give it its
/// DMA mask (narrower than ZONE_DMA): the right outcome, which the KUnit
/// suites report as a skip rather than a failure.
pub(crate) static MASK_REFUSED: Atomic<u32> = Atomic::new(0);

/// The module parameters (`dmalab.<name>=` on the kernel command line when
/// built in), validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// `force_intx`: use INTx even though the device has MSI.
    pub(crate) force_intx: bool,
    /// `alloc`: the initial buffer source of read()/write().
    pub(crate) alloc: Allocator,
    /// `timeout_ms`: how long a transfer waits for its interrupt (at least 1).
    pub(crate) timeout_ms: u32,
}

impl Params {
    /// Reads the parameters; an invalid `alloc` becomes 0 with a warning.
    fn read(pdev: &pci::Device<Core<'_>>) -> Self {
        let alloc = *crate::module_parameters::alloc.value();
        Self {
            force_intx: *crate::module_parameters::force_intx.value() != 0,
            alloc: Allocator::from_u32(alloc)
                .inspect_err(|_| {
                    dev_warn!(pdev, "alloc={} is not a valid allocator, using 0 (kmalloc-dma)\n", alloc)
                })
                .unwrap_or(Allocator::KmallocDma),
            timeout_ms: (*crate::module_parameters::timeout_ms.value()).max(1),
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
fn identify(pdev: &pci::Device<Core<'_>>, regs: &pci::Bar<'_, REGS_LEN>) -> Result<(u32, u32)> {
    let magic = [
        regs.reg8(REG_MAGIC),
        regs.reg8(REG_MAGIC + 1),
        regs.reg8(REG_MAGIC + 2),
        regs.reg8(REG_MAGIC + 3),
    ];
    if u32::from_le_bytes(magic) != MAGIC || regs.reg32(REG_MAGIC) != MAGIC {
        dev_err!(pdev, "not a dma24: magic {:02x?} (expected \"DM24\")\n", magic);
        return Err(ENODEV);
    }
    let version = regs.reg32(REG_VERSION);
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
    Ok((version, regs.reg32(REG_CAPS)))
}

/// Picks the interrupt: MSI unless `force_intx`, INTx if MSI is unavailable.
fn irq_vector<'a>(
    pdev: &'a pci::Device<Core<'_>>,
    params: &Params,
) -> Result<(pci::IrqVector<'a>, IrqMode)> {
    let intx = pci::IrqTypes::default().with(pci::IrqType::Intx);
    let msi = pci::IrqTypes::default().with(pci::IrqType::Msi);
    let (vectors, irq_mode) = if params.force_intx {
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
    Ok((*vectors.start(), irq_mode))
}

fn probe(pdev: &pci::Device<Core<'_>>) -> Result<DriverData> {
    let params = Params::read(pdev);
    pdev.enable_device_mem()?;
    crate::sys::disable_on_unbind(pdev)?;
    pdev.set_master();

    let regs = pdev.iomap_region_sized::<REGS_LEN>(u32::from(BAR_REGS), c"dmalab-regs")?;
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

    let devmem_reg = regs.reg32(REG_DEVMEM_SIZE) as usize;
    let bar1_len = usize::try_from(pdev.resource_len(u32::from(BAR_DEVMEM))?)?;
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
    let devmem = pdev.iomap_region(u32::from(BAR_DEVMEM), c"dmalab-devmem")?;

    // Start from a quiet engine: no transfer, interrupts off, causes acknowledged.
    regs.set_reg32(REG_CONTROL, CTRL_RESET);
    regs.set_reg32(REG_CONTROL, 0);
    regs.set_reg32(REG_IRQ_STATUS, IRQ_DONE | IRQ_ERROR);

    let (vector, irq_mode) = irq_vector(pdev, &params)?;
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

    // Take the lowest free index and publish the device (not yet alive).
    let (entry, root) = registry::insert(|slot| {
        Arc::pin_init(
            Dma24::new(Resources {
                pdev: pdev.into(),
                index: slot.index,
                name: slot.name,
                regs,
                devmem,
                info,
                params,
                dma_cache: slot.dma_cache.clone(),
            }),
            GFP_KERNEL,
        )
    })
    .inspect_err(|e| {
        if *e == EBUSY {
            dev_err!(pdev, "more than {} dma24 devices\n", registry::MAX_DEVICES);
        }
    })?;
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

    dev.go_live(pdev.as_ref())?;
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
