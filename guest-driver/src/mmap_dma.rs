// SPDX-License-Identifier: GPL-2.0

//! The standing DMA mapping of the mmap buffer: made at the first
//! `DMA24_IOC_MMAP_XFER` and kept, under the transfer mutex, until unbind.
//!
//! Why standing: on PVM hosts every instruction of the guest kernel is
//! emulated, and building, mapping, unmapping and freeing a scatter-gather
//! table per transfer (with DMA-API debugging's bookkeeping per entry) cost
//! about 7 ms per page: 1.7 s for a 1 MiB transfer, 200 ms for 64 KiB. With
//! the mapping made once, a transfer costs one sync and one descriptor per
//! 64 KiB piece it touches ([`MAP_PIECE`]).
//!
//! One streaming mapping (`dma_map_phys()`, `DMA_BIDIRECTIONAL`: the same
//! bytes go both ways) per piece of [`MmapBuf::pieces`]. The streaming API's
//! ownership rule still holds at every transfer: `dma_sync_single_for_device()`
//! on the bytes before each START, `dma_sync_single_for_cpu()` after each
//! DMA from the device, both on exactly the bytes moved. User space reads and
//! writes the buffer through its own mapping between transfers; on x86 (DMA
//! is cache coherent and ZONE_DMA pages are never bounced) the syncs move no
//! bytes, and DMA-API debugging checks each of them against the mapping.

use crate::{
    dma_raw::{raw_dev, DMA_MAPPING_ERROR},
    mmap_buf::{MmapBuf, MAP_PIECE},
};
use kernel::{
    bindings,
    device::{Bound, Device},
    dma::{DataDirection, DmaAddress},
    prelude::*,
    sync::{aref::ARef, Arc},
};

/// One scatter-gather descriptor's worth: (bus address, length, flags).
pub(crate) type Segment = (DmaAddress, u32, u32);

/// The mapped pieces of one [`MmapBuf`] for one device.
///
/// # Invariants
///
/// Each `(at, len, bus)` of `pieces` is a live streaming mapping, with direction
/// `DMA_BIDIRECTIONAL`, for `dev` of the `len` physically contiguous bytes at offset `at` of
/// `buf`. The value is dropped (and the mappings undone) while `dev` is still bound: it lives in
/// the device's transfer state, which `Dma24::shutdown()` clears at unbind.
pub(crate) struct MmapDma {
    dev: ARef<Device>,
    buf: Arc<MmapBuf>,
    pieces: KVec<(usize, usize, DmaAddress)>,
}

impl MmapDma {
    /// Maps every piece of `buf` for `dev`; `EIO` (with nothing left mapped)
    /// if the DMA API cannot give the device an address for one.
    pub(crate) fn new(dev: &Device<Bound>, buf: Arc<MmapBuf>) -> Result<Self> {
        let wanted = buf.pieces()?;
        let mut this = Self {
            dev: dev.into(),
            buf,
            pieces: KVec::with_capacity(wanted.len(), GFP_KERNEL)?,
        };
        let raw = raw_dev(dev);
        for &(at, len, phys) in wanted.iter() {
            let dir = DataDirection::Bidirectional.into();
            // SAFETY: `raw` is a bound device with its DMA mask set; `phys..phys + len` are pages
            // of `buf`, which `this` holds for as long as the mapping lives.
            let bus = unsafe { bindings::dma_map_phys(raw, phys, len, dir, 0) };
            // `dma_mapping_error()`: tell DMA-API debugging the result was checked.
            #[cfg(CONFIG_DMA_API_DEBUG)]
            // SAFETY: `raw` is a bound device; any handle value may be passed.
            unsafe {
                bindings::debug_dma_mapping_error(raw, bus)
            };
            if bus == DMA_MAPPING_ERROR {
                return Err(EIO); // `this` drops: the pieces mapped so far are unmapped
            }
            // INVARIANT: a live mapping of the piece, recorded at once so that drop undoes it.
            this.pieces.push((at, len, bus), GFP_KERNEL)?;
        }
        Ok(this)
    }

    /// Whether this maps `buf`.
    pub(crate) fn maps(&self, buf: &Arc<MmapBuf>) -> bool {
        Arc::ptr_eq(&self.buf, buf)
    }

    /// The descriptors for bytes `at..at + len` of the buffer, one per piece
    /// touched; `EINVAL` unless the bytes are inside the buffer.
    pub(crate) fn segments(&self, at: usize, len: usize) -> Result<KVec<Segment>> {
        let end = match at.checked_add(len) {
            Some(end) if len > 0 && end <= self.buf.len() => end,
            _ => return Err(EINVAL),
        };
        let mut segs = KVec::with_capacity(len.div_ceil(MAP_PIECE) + 1, GFP_KERNEL)?;
        for &(start, n, bus) in self.pieces.iter() {
            let (lo, hi) = (start.max(at), (start + n).min(end));
            if lo < hi {
                segs.push((bus + (lo - start) as u64, u32::try_from(hi - lo)?, 0), GFP_KERNEL)?;
            }
        }
        Ok(segs)
    }

    /// `dma_sync_single_for_cpu()` (`for_cpu`) or `_for_device()` on each
    /// of `segs` (made by [`MmapDma::segments`]).
    pub(crate) fn sync(&self, segs: &[Segment], for_cpu: bool) {
        let raw = raw_dev(&self.dev);
        let dir = DataDirection::Bidirectional.into();
        for &(bus, len, _) in segs {
            let len = len as usize;
            // SAFETY: By the type invariants the device is bound and `bus..bus + len` lies inside
            // one of its live mappings (`segments()` cut it from one), mapped bidirectionally.
            unsafe {
                if for_cpu {
                    bindings::__dma_sync_single_for_cpu(raw, bus, len, dir)
                } else {
                    bindings::__dma_sync_single_for_device(raw, bus, len, dir)
                }
            }
        }
    }
}

impl Drop for MmapDma {
    fn drop(&mut self) {
        let raw = raw_dev(&self.dev);
        for &(_, len, bus) in self.pieces.iter() {
            // SAFETY: By the type invariants this is a live mapping for `dev`, which is still
            // bound; each is undone once, here. `buf` (the pages) is released after this.
            unsafe {
                bindings::dma_unmap_phys(raw, bus, len, DataDirection::Bidirectional.into(), 0)
            };
        }
    }
}
