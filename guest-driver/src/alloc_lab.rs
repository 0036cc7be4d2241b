// SPDX-License-Identifier: GPL-2.0

//! The allocator lab: the buffer sources a driver might bounce DMA through,
//! each mapped with the streaming DMA API for the device. On a 24-bit device
//! the ones that can hand out memory above 16 MiB fail at mapping time, are
//! reported, and never reach the device. The expected outcome of each is in
//! README.md ("Allocator lab").

use crate::{
    dma_raw::{virt_to_phys, KBuf, SingleMap},
    dma_sg::{SgBuf, SgMap},
    pattern,
    state::{bump, DevCounters, ErrorSource, LastError},
    transfer::{Dir, Live, CHUNK},
};
use kernel::{
    dma::{Coherent, CoherentBox},
    io::Io,
    prelude::*,
};

/// A buffer source. The numbers are the user-space ABI (`DMA24_ALLOC_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Allocator {
    /// `kmalloc(len, GFP_KERNEL | GFP_DMA)`.
    KmallocDma = 0,
    /// `kmalloc(len, GFP_KERNEL)`.
    KmallocKernel = 1,
    /// `kzalloc(len, GFP_KERNEL)`.
    Kzalloc = 2,
    /// `kmem_cache_alloc()` from a cache created with `SLAB_CACHE_DMA`.
    KmemCacheDma = 3,
    /// `__get_free_pages(GFP_KERNEL | GFP_DMA, get_order(len))`.
    PagesDma = 4,
    /// `vmalloc(len)`, mapped page by page through a scatter-gather table.
    Vmalloc = 5,
    /// Single pages from `alloc_pages(GFP_KERNEL | GFP_DMA, 0)` in a
    /// scatter-gather table, one descriptor per page.
    SgPagesDma = 6,
    /// `dma_alloc_coherent()`: the DMA API allocates below the device's
    /// coherent mask itself; no mapping, no syncs.
    Coherent = 7,
    /// The driver's private `static` 800-byte buffer (module memory, or the
    /// kernel image's data when built in): never handed to the device.
    StaticBuffer = 8,
    /// An 800-byte buffer on the kernel stack (vmalloc memory with
    /// `CONFIG_VMAP_STACK`): never handed to the device.
    StackBuffer = 9,
    /// `dma_alloc_coherent()` of one buffer of up to 16 MiB: above the page
    /// allocator's 4 MiB only a boot-time CMA area (`cma=` on the command
    /// line) can give it ([`crate::lab_boot`]).
    BootCma = 10,
}

// `name()` indexes the ABI's names by number.
const _: () = assert!(Allocator::ALL.len() == crate::lab_abi::ALLOCATOR_NAMES.len());

impl Allocator {
    /// Every allocator, in ABI order.
    pub(crate) const ALL: [Allocator; 11] = [
        Allocator::KmallocDma,
        Allocator::KmallocKernel,
        Allocator::Kzalloc,
        Allocator::KmemCacheDma,
        Allocator::PagesDma,
        Allocator::Vmalloc,
        Allocator::SgPagesDma,
        Allocator::Coherent,
        Allocator::StaticBuffer,
        Allocator::StackBuffer,
        Allocator::BootCma,
    ];

    /// The allocators of the size-class table (`DMA24_IOC_SIZE_CLASS`):
    /// kzalloc is kmalloc, the SG page source is order-0 pages, 8 and 9
    /// allocate nothing, 10 is `coherent` with a larger limit.
    pub(crate) const SIZED: [Allocator; 6] = [
        Allocator::KmallocDma,
        Allocator::KmallocKernel,
        Allocator::KmemCacheDma,
        Allocator::PagesDma,
        Allocator::Vmalloc,
        Allocator::Coherent,
    ];

    /// The allocators `DMA24_IOC_SELFTEST` runs (its arrays have 8 slots):
    /// the first eight, the ones that allocate.
    pub(crate) const SELFTEST: [Allocator; 8] = {
        let mut first = [Allocator::KmallocDma; 8];
        let mut i = 0;
        while i < first.len() {
            first[i] = Self::ALL[i];
            i += 1;
        }
        first
    };

    pub(crate) fn from_u32(v: u32) -> Result<Self> {
        Self::ALL.get(usize::try_from(v)?).copied().ok_or(EINVAL)
    }

    /// One of [`Self::SIZED`], or `EINVAL`.
    pub(crate) fn sized_from_u32(v: u32) -> Result<Self> {
        Self::SIZED.into_iter().find(|a| *a as u32 == v).ok_or(EINVAL)
    }

    /// Short name, as shown in debugfs and the kernel log (the ABI's, in
    /// `lab_abi.rs`).
    pub(crate) fn name(self) -> &'static str {
        crate::lab_abi::ALLOCATOR_NAMES[self as usize]
    }

    /// The allocation call it stands for.
    pub(crate) fn call(self) -> &'static str {
        match self {
            Allocator::KmallocDma => "kmalloc(GFP_KERNEL | GFP_DMA)",
            Allocator::KmallocKernel => "kmalloc(GFP_KERNEL)",
            Allocator::Kzalloc => "kzalloc(GFP_KERNEL)",
            Allocator::KmemCacheDma => "kmem_cache_alloc(SLAB_CACHE_DMA cache)",
            Allocator::PagesDma => "__get_free_pages(GFP_KERNEL | GFP_DMA)",
            Allocator::Vmalloc => "vmalloc()",
            Allocator::SgPagesDma => "alloc_pages(GFP_KERNEL | GFP_DMA, 0) x N",
            Allocator::Coherent => "dma_alloc_coherent()",
            Allocator::StaticBuffer => "static [u8; 800] in the driver",
            Allocator::StackBuffer => "[u8; 800] on the kernel stack",
            Allocator::BootCma => "dma_alloc_coherent() from the boot-time CMA area",
        }
    }

    /// Takes its memory from ZONE_DMA, so a device whose mask covers ZONE_DMA
    /// (24 bits or more) can always reach it.
    pub(crate) fn zone_dma(self) -> bool {
        matches!(
            self,
            Allocator::KmallocDma
                | Allocator::KmemCacheDma
                | Allocator::PagesDma
                | Allocator::SgPagesDma
        )
    }

    /// Its memory is below the device's mask by construction: ZONE_DMA for
    /// a mask of 24 bits or more, or the coherent mask for coherent memory.
    pub(crate) fn always_within_mask(self) -> bool {
        self.zone_dma() || matches!(self, Allocator::Coherent | Allocator::BootCma)
    }

    /// Not an allocation but a kernel virtual address the driver already has
    /// (see [`crate::lab_virt`]): shown to the DMA API, never to the device.
    pub(crate) fn is_virtual(self) -> bool {
        matches!(self, Allocator::StaticBuffer | Allocator::StackBuffer)
    }

    /// Largest buffer the source gives: the private buffers are 800 bytes
    /// (the texts' `static char buffer[800]`), the boot-time area up to
    /// ZONE_DMA's 16 MiB, the others one chunk.
    pub(crate) fn max_len(self) -> usize {
        if self.is_virtual() {
            crate::lab_virt::VIRT_BUF_LEN
        } else if self == Allocator::BootCma {
            crate::lab_boot::BOOT_CMA_MAX
        } else {
            CHUNK
        }
    }

    /// Transfers through a scatter-gather table and descriptor mode.
    pub(crate) fn is_sg(self) -> bool {
        matches!(self, Allocator::Vmalloc | Allocator::SgPagesDma)
    }
}

/// An unmapped buffer from one allocator.
pub(crate) enum LabBuf {
    Single(KBuf),
    Sg(SgBuf),
    Coherent(Coherent<[u8]>),
}

impl LabBuf {
    /// Allocates `len` bytes from `alloc`. `sg_offset` is where the data
    /// starts in the first page ([`Allocator::SgPagesDma`] only).
    pub(crate) fn new(
        live: &Live<'_>,
        alloc: Allocator,
        len: usize,
        sg_offset: usize,
    ) -> Result<Self> {
        if len == 0 || len > alloc.max_len() {
            dev_err!(
                live.pdev,
                "{}: {} bytes from {}: the limit of this source is 1..={} bytes\n",
                live.dev.name,
                len,
                alloc.call(),
                alloc.max_len()
            );
            return Err(EINVAL);
        }
        Ok(match alloc {
            Allocator::KmallocDma => LabBuf::Single(KBuf::kmalloc(len, true, false)?),
            Allocator::KmallocKernel => LabBuf::Single(KBuf::kmalloc(len, false, false)?),
            Allocator::Kzalloc => LabBuf::Single(KBuf::kmalloc(len, false, true)?),
            Allocator::KmemCacheDma => {
                let cache = live.dev.dma_cache.as_ref().ok_or(ENODEV)?;
                LabBuf::Single(KBuf::from_cache(cache, len)?)
            }
            Allocator::PagesDma => LabBuf::Single(KBuf::pages_dma(len)?),
            Allocator::Vmalloc => LabBuf::Sg(SgBuf::vmalloc(len)?),
            Allocator::SgPagesDma => LabBuf::Sg(SgBuf::zone_dma_pages(len, sg_offset)?),
            // `dma_alloc_coherent(dev, len, &handle, GFP_KERNEL)`; dma-direct
            // adds GFP_DMA itself when the coherent mask is below 32 bits.
            Allocator::Coherent => {
                LabBuf::Coherent(CoherentBox::<[u8]>::zeroed_slice(live.ddev, len, GFP_KERNEL)?.into())
            }
            Allocator::BootCma => LabBuf::Coherent(crate::lab_boot::alloc(live, len)?),
            // Never reached: `Mapping::new` hands these to `lab_virt` first.
            Allocator::StaticBuffer | Allocator::StackBuffer => return Err(EINVAL),
        })
    }

    fn len(&self) -> usize {
        match self {
            LabBuf::Single(b) => b.len(),
            LabBuf::Sg(b) => b.len(),
            LabBuf::Coherent(b) => b.len(),
        }
    }

    /// Lowest and highest physical address of the buffer's bytes.
    pub(crate) fn phys_range(&mut self) -> (u64, u64) {
        match self {
            LabBuf::Single(b) => {
                let lo = b.phys_addr();
                (lo, lo + b.len() as u64 - 1)
            }
            LabBuf::Sg(b) => b.phys_range(),
            LabBuf::Coherent(b) => {
                let lo = virt_to_phys(b.as_ptr().cast());
                (lo, lo + b.len() as u64 - 1)
            }
        }
    }
}

/// A mapped buffer.
pub(crate) enum Mapping<'a> {
    Single(SingleMap<'a>),
    Sg(SgMap<'a>),
    /// Coherent memory needs no mapping: the bus address came with it.
    Coherent(Coherent<[u8]>),
}

impl<'a> Mapping<'a> {
    /// Allocates `len` bytes from `alloc` and maps them for `dir`.
    ///
    /// An allocation failure gives `ENOMEM`; a buffer the DMA API cannot map
    /// for the device gives `EIO` (the mapping error is caught here and the
    /// buffer is never handed to the device). Both are logged with `dev_err`
    /// and recorded as the last error.
    pub(crate) fn new(
        live: &mut Live<'a>,
        alloc: Allocator,
        len: usize,
        sg_offset: usize,
        dir: Dir,
    ) -> Result<Self> {
        if alloc.is_virtual() {
            // Always an error: these buffers never reach the device.
            return crate::lab_virt::refuse(live, alloc, len, dir).result.and(Err(EIO));
        }
        let buf = LabBuf::new(live, alloc, len, sg_offset);
        Self::from_buf(live, alloc, buf, dir)
    }

    fn from_buf(live: &mut Live<'a>, alloc: Allocator, buf: Result<LabBuf>, dir: Dir) -> Result<Self> {
        let dev = live.dev;
        live.active_alloc = alloc as u32;
        let mut record = LastError {
            alloc: alloc as u32,
            from_device: dir == Dir::FromDevice,
            ..LastError::default()
        };
        let mut buf = match buf {
            Ok(buf) => buf,
            Err(e) => {
                dev_err!(
                    live.pdev,
                    "{}: {} allocation for a DMA buffer failed: {:?}\n",
                    dev.name,
                    alloc.call(),
                    e
                );
                record.errno = e.to_errno();
                record.source = ErrorSource::Alloc;
                dev.record_error(record);
                return Err(e);
            }
        };
        let len = buf.len();
        let (lo, hi) = buf.phys_range();
        let ddev = live.ddev;
        let mapped = match buf {
            LabBuf::Single(b) => SingleMap::new(ddev, b, len, dir.dma()).map(Mapping::Single),
            LabBuf::Sg(b) => SgMap::new(ddev, b, dir.dma()).map(Mapping::Sg),
            LabBuf::Coherent(b) => Ok(Mapping::Coherent(b)),
        };
        mapped.inspect_err(|e| {
            let mask = dev.info.dma_mask;
            bump(&dev.stats.map_errors, 1);
            bump(&dev.stats.transfers_failed, 1);
            dev_err!(
                live.pdev,
                "{}: DMA mapping of a {}-byte {} buffer at physical {:#x}..{:#x} failed ({:?}): \
                 {}; the buffer was not handed to the device\n",
                dev.name,
                len,
                alloc.call(),
                lo,
                hi,
                e,
                if hi > mask {
                    "it lies beyond the device's DMA mask and nothing bounces it"
                } else {
                    "unexpected, the buffer is within the DMA mask"
                }
            );
            record.errno = e.to_errno();
            record.source = ErrorSource::Mapping;
            record.bus_addr = lo;
            record.len = u32::try_from(len).unwrap_or(u32::MAX);
            dev.record_error(record);
        })
    }

    /// DMA of the first `len` bytes of the buffer to or from device memory
    /// at `dev_offset`, in single or scatter-gather mode as the buffer needs.
    pub(crate) fn dma(&mut self, live: &mut Live<'_>, dev_offset: usize, len: usize, dir: Dir) -> Result {
        match self {
            Mapping::Single(m) => live.dma_single(m, dev_offset, len, dir),
            Mapping::Sg(m) => live.dma_sg(m, dev_offset, len, dir),
            Mapping::Coherent(c) => {
                if len == 0 || len > c.len() {
                    return Err(EINVAL);
                }
                live.dma_bus(c.dma_handle(), dev_offset, len, dir)
            }
        }
    }

    /// Calls `f` on the first `len` bytes, in order, piece by piece (one
    /// piece for contiguous buffers), after syncing them for the CPU; stops
    /// when `f` returns `false`.
    pub(crate) fn cpu(&mut self, len: usize, mut f: impl FnMut(&mut [u8]) -> bool) {
        match self {
            Mapping::Single(m) => {
                let bytes = m.cpu();
                let n = len.min(bytes.len());
                f(&mut bytes[..n]);
            }
            Mapping::Sg(m) => m.cpu(len, f),
            Mapping::Coherent(c) => {
                // SAFETY: the device only touches the buffer between START
                // and completion, inside `dma()`, which needs `&mut self` as
                // this does: no DMA is in flight, so this is the only access.
                let bytes = unsafe { c.as_mut() };
                let n = len.min(bytes.len());
                f(&mut bytes[..n]);
            }
        }
    }
}

/// Fills the first `len` bytes of `map` with the pattern.
pub(crate) fn fill(map: &mut Mapping<'_>, len: usize, seed: u8) {
    let mut i = 0;
    map.cpu(len, |piece| {
        for b in piece.iter_mut() {
            *b = pattern::byte(seed, i);
            i += 1;
        }
        true
    });
}

/// Counts bytes of `map` that differ from the pattern.
pub(crate) fn count_mismatches(map: &mut Mapping<'_>, len: usize, seed: u8) -> usize {
    let mut i = 0;
    let mut bad = 0;
    map.cpu(len, |piece| {
        for b in piece.iter() {
            if *b != pattern::byte(seed, i) {
                bad += 1;
            }
            i += 1;
        }
        true
    });
    bad
}

/// Result of one lab round trip (see [`RoundTrip::run`]).
#[derive(Debug)]
pub(crate) struct RoundTrip {
    pub(crate) alloc: Allocator,
    /// Physical range of the to-device buffer (0, 0 if allocation failed).
    pub(crate) phys_lo: u64,
    pub(crate) phys_hi: u64,
    /// Whether the DMA API can map that range for this device: the whole
    /// buffer is at or below the DMA mask.
    pub(crate) predicted_ok: bool,
    /// Overall outcome.
    pub(crate) result: Result,
    /// Device-memory bytes (checked with readb) that differ from what was sent.
    pub(crate) devmem_mismatches: usize,
    /// Bytes read back by DMA that differ from what was sent.
    pub(crate) mismatches: usize,
    /// Transfers the device counted meanwhile (REG_COUNT_TRANSFERS).
    pub(crate) device_transfers: u64,
}


impl RoundTrip {
    /// One lab round trip: `len` bytes from `alloc` filled with a pattern,
    /// DMA'd to device memory at `dev_offset`, checked there with `readb`,
    /// DMA'd back into a second buffer from the same allocator and compared.
    pub(crate) fn run(
        live: &mut Live<'_>,
        alloc: Allocator,
        dev_offset: usize,
        len: usize,
        sg_offset: usize,
        seed: u8,
    ) -> Self {
        let before = DevCounters::read(live.regs);
        let mut rt = RoundTrip {
            alloc,
            phys_lo: 0,
            phys_hi: 0,
            predicted_ok: false,
            result: Ok(()),
            devmem_mismatches: 0,
            mismatches: 0,
            device_transfers: 0,
        };
        rt.result = rt.transfer_and_check(live, dev_offset, len, sg_offset, seed);
        let after = DevCounters::read(live.regs);
        rt.device_transfers = after.transfers.wrapping_sub(before.transfers);
        rt
    }

    fn transfer_and_check(
        &mut self,
        live: &mut Live<'_>,
        dev_offset: usize,
        len: usize,
        sg_offset: usize,
        seed: u8,
    ) -> Result {
        live.check_range(dev_offset, len)?;
        if self.alloc.is_virtual() {
            let v = crate::lab_virt::refuse(live, self.alloc, len, Dir::ToDevice);
            (self.phys_lo, self.phys_hi) = (v.real_phys, v.real_phys + len as u64 - 1);
            self.predicted_ok = false;
            return v.result;
        }
        let mut buf = LabBuf::new(live, self.alloc, len, sg_offset);
        if let Ok(b) = &mut buf {
            (self.phys_lo, self.phys_hi) = b.phys_range();
            self.predicted_ok = self.phys_hi <= live.dev.info.dma_mask;
        }
        let mut out = Mapping::from_buf(live, self.alloc, buf, Dir::ToDevice)?;
        fill(&mut out, len, seed);
        out.dma(live, dev_offset, len, Dir::ToDevice)?;
        drop(out);
        self.devmem_mismatches = devmem_mismatches(live, dev_offset, len, seed)?;

        let mut back = Mapping::new(live, self.alloc, len, sg_offset, Dir::FromDevice)?;
        // Poison, so bytes the device did not write show up as mismatches.
        back.cpu(len, |piece| {
            piece.fill(0xa5);
            true
        });
        back.dma(live, dev_offset, len, Dir::FromDevice)?;
        self.mismatches = count_mismatches(&mut back, len, seed);
        if self.mismatches != 0 || self.devmem_mismatches != 0 {
            dev_err!(
                live.pdev,
                "{}: {} round trip of {} bytes at device offset {:#x}: {} bytes differ in device \
                 memory, {} after reading back\n",
                live.dev.name,
                self.alloc.name(),
                len,
                dev_offset,
                self.devmem_mismatches,
                self.mismatches
            );
            return Err(EIO);
        }
        // For the host harness: these bytes went to device memory and came
        // back; the trace must hold records that cover exactly this range in
        // both directions, with the pattern's hashes.
        dev_info!(
            live.pdev,
            "{}: xfer dev_offset={} len={} seed={} alloc={}\n",
            live.dev.name,
            dev_offset,
            len,
            seed,
            self.alloc.name()
        );
        Ok(())
    }
}

/// Bytes of device memory at `dev_offset` that differ from the pattern,
/// read back with `readb` (every byte of short ranges; the ends and every
/// 251st byte of long ones, since each `readb` is a VM exit).
pub(crate) fn devmem_mismatches(live: &Live<'_>, dev_offset: usize, len: usize, seed: u8) -> Result<usize> {
    let mut bad = 0;
    for i in 0..len {
        if len > 256 && i >= 64 && i + 64 < len && i % 251 != 0 {
            continue;
        }
        if live.devmem.try_read8(dev_offset + i)? != pattern::byte(seed, i) {
            bad += 1;
        }
    }
    Ok(bad)
}
