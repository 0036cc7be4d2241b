// SPDX-License-Identifier: GPL-2.0

//! The state of one bound dma24 ([`Dma24`]): what probe learnt, the
//! counters, the last error, the transfer mutex, and the interrupt handler.
//!
//! Lifetime rules. A [`Dma24`] is reference counted: the driver data, open
//! files, the debugfs files, the IRQ handler and the KUnit tests may hold it.
//! Hardware access and DMA only happen inside [`Dma24::with_live`], which
//! holds the transfer mutex and checks `alive`; unbind clears `alive` under
//! the same mutex ([`Dma24::shutdown`]) before the driver core releases BARs,
//! IRQ vectors and DMA state, so nothing touches the device or the DMA API
//! once it is unbound.

use crate::{
    alloc_lab::Allocator,
    dma_raw::DmaCache,
    mmap_dma::MmapDma,
    probe::Params,
    regs::*,
    sys::IrqCompletion,
    timing::Timing,
    transfer::{Desc, Live},
    zerocopy::ZeroCopy,
};
use kernel::{
    device,
    devres::Devres,
    dma::Coherent,
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

/// BAR0 length as the kernel's `Io` wants it (the shared map says `u64`).
pub(crate) const REGS_LEN: usize = REGS_SIZE as usize;
/// BAR0: the registers, with offsets checked at build time.
pub(crate) type Bar0 = pci::Bar<'static, REGS_LEN>;
/// BAR1: device memory, size known at run time.
pub(crate) type Bar1 = pci::Bar<'static>;

/// Register access with the shared map's `u64` offsets (`regs.rs` is the
/// device model's file, which addresses BARs by `u64`; the kernel's `Io`
/// accessors take `usize`). `#[inline(always)]`, so the accessors still see
/// constant offsets and check them against the BAR size at build time.
pub(crate) trait Registers {
    fn reg8(&self, reg: u64) -> u8;
    fn reg32(&self, reg: u64) -> u32;
    fn reg64(&self, reg: u64) -> u64;
    fn set_reg32(&self, reg: u64, value: u32);
    fn set_reg64(&self, reg: u64, value: u64);
}

impl Registers for pci::Bar<'_, REGS_LEN> {
    #[inline(always)]
    fn reg8(&self, reg: u64) -> u8 {
        self.read8(reg as usize)
    }

    #[inline(always)]
    fn reg32(&self, reg: u64) -> u32 {
        self.read32(reg as usize)
    }

    #[inline(always)]
    fn reg64(&self, reg: u64) -> u64 {
        self.read64(reg as usize)
    }

    #[inline(always)]
    fn set_reg32(&self, reg: u64, value: u32) {
        self.write32(value, reg as usize)
    }

    #[inline(always)]
    fn set_reg64(&self, reg: u64, value: u64) {
        self.write64(value, reg as usize)
    }
}

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
            transfers: regs.reg64(REG_COUNT_TRANSFERS),
            bytes_to_device: regs.reg64(REG_COUNT_BYTES_TO_DEVICE),
            bytes_from_device: regs.reg64(REG_COUNT_BYTES_FROM_DEVICE),
            faults: regs.reg64(REG_COUNT_FAULTS),
            last_seq: regs.reg64(REG_LAST_SEQ),
            fault_addr: regs.reg64(REG_FAULT_ADDR),
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
    /// The standing scatter-gather descriptor list (`SG_MAX_SEGMENTS`
    /// entries of coherent memory), made at the first SG transfer; see
    /// [`Live::dma_segments`](crate::transfer::Live::dma_segments).
    pub(crate) descs: Option<Coherent<[Desc]>>,
    /// The standing DMA mapping of the mmap buffer, made at the first
    /// `MMAP_XFER`.
    pub(crate) mmap_dma: Option<MmapDma>,
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
    /// The module parameters as they were when this device was probed.
    pub(crate) params: Params,
    /// The module's `SLAB_CACHE_DMA` cache (allocator `kmem-cache-dma`).
    pub(crate) dma_cache: Option<Arc<DmaCache>>,
    /// Signalled by the interrupt handler.
    #[pin]
    pub(crate) done: IrqCompletion,
    #[pin]
    xfer: Mutex<XferState>,
    pub(crate) stats: Stats,
    /// Where transfers' time goes (debugfs `timing`).
    pub(crate) timing: Timing,
    #[pin]
    last_error: Mutex<LastError>,
    /// The mmap buffer and the zero-copy counters.
    #[pin]
    pub(crate) zc: ZeroCopy,
}

/// What probe hands over to make a [`Dma24`].
pub(crate) struct Resources {
    pub(crate) pdev: ARef<pci::Device>,
    pub(crate) index: usize,
    pub(crate) name: &'static CStr,
    pub(crate) regs: Devres<Bar0>,
    pub(crate) devmem: Devres<Bar1>,
    pub(crate) info: DeviceInfo,
    pub(crate) params: Params,
    pub(crate) dma_cache: Option<Arc<DmaCache>>,
}

impl Dma24 {
    /// A device that is not live yet: [`Dma24::go_live`] ends probe.
    pub(crate) fn new(r: Resources) -> impl PinInit<Self, Error> {
        let Resources {
            pdev,
            index,
            name,
            regs,
            devmem,
            info,
            params,
            dma_cache,
        } = r;
        try_pin_init!(Dma24 {
            pdev,
            index,
            name,
            regs,
            devmem,
            info,
            params,
            dma_cache,
            done <- IrqCompletion::new(),
            xfer <- new_mutex!(XferState {
                alive: false,
                alloc: params.alloc,
                descs: None,
                mmap_dma: None,
            }),
            stats: Stats::new(),
            timing: Timing::new(),
            last_error <- new_mutex!(LastError::default()),
            zc <- ZeroCopy::new(),
        })
    }

    /// Runs `f` with the device's transfer mutex held, if the device is
    /// still bound; `ENODEV` otherwise.
    pub(crate) fn with_live<R>(&self, f: impl FnOnce(&mut Live<'_>) -> Result<R>) -> Result<R> {
        let mut guard = self.xfer.lock();
        if !guard.alive {
            return Err(ENODEV);
        }
        let dev: &device::Device = self.pdev.as_ref();
        // SAFETY: `alive` is set at the end of a successful probe and cleared by `shutdown()` with
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

    /// Turns the device's interrupts on and lets [`Dma24::with_live`] in:
    /// the last step of probe.
    pub(crate) fn go_live(&self, ddev: &device::Device<device::Bound>) -> Result {
        let regs = self.regs.access(ddev)?;
        let mut state = self.xfer.lock();
        regs.set_reg32(REG_IRQ_STATUS, IRQ_DONE | IRQ_ERROR);
        regs.set_reg32(REG_CONTROL, CTRL_IRQ_ENABLE);
        state.alive = true;
        Ok(())
    }

    /// Stops all use of the device: later `with_live` calls fail with
    /// `ENODEV`. Waits for a running transfer to finish.
    pub(crate) fn shutdown(&self, ddev: &device::Device<device::Bound>) {
        let mut state = self.xfer.lock();
        state.alive = false;
        if let Ok(regs) = self.regs.access(ddev) {
            regs.set_reg32(REG_CONTROL, 0);
            regs.set_reg32(REG_CONTROL, CTRL_RESET);
        }
        // The engine is stopped: what the device was given to fetch from or
        // write to goes now, while the device is still bound (a process may
        // keep its mapping of the mmap buffer: the pages stay, unmapped).
        state.descs = None;
        state.mmap_dma = None;
    }
}

impl irq::Handler for Dma24 {
    fn handle(&self, device: &device::Device<device::Bound>) -> IrqReturn {
        let Ok(regs) = self.regs.access(device) else {
            return IrqReturn::None;
        };
        let pending = regs.reg32(REG_IRQ_STATUS);
        if pending == 0 {
            // INTx may be shared; a late MSI after an engine reset lands here too.
            bump(&self.stats.spurious_irqs, 1);
            return IrqReturn::None;
        }
        self.timing.irq();
        regs.set_reg32(REG_IRQ_STATUS, pending);
        bump(&self.stats.irqs, 1);
        self.done.complete();
        IrqReturn::Handled
    }
}
