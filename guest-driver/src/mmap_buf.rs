// SPDX-License-Identifier: GPL-2.0

//! The mmap buffer of `/dev/dma24-N`: ZONE_DMA pages the driver owns, mapped
//! into user space with `vm_insert_page()`, which the device reaches on any
//! mask of 24 bits or more. Why pages and not `dma_alloc_coherent()` +
//! `dma_mmap_coherent()`: see README.md ("Zero copy").
//!
//! Lifetime: every page is reference counted. The driver holds one reference
//! per page ([`DmaPage`]); `vm_insert_page()` takes one more per user
//! mapping, dropped when that mapping goes (munmap, exit). So the memory is
//! freed only when the driver's buffer and the last mapping are both gone, in
//! whatever order munmap, close and unbind happen. The device's standing
//! DMA mapping of the buffer ([`crate::mmap_dma`]) holds the buffer too and
//! is unmapped at unbind, under the device's transfer mutex, before the
//! driver lets go of the device.

use crate::dma_sg::{page_phys, DmaPage};
use kernel::{
    mm::virt::{flags, VmaNew},
    page::PAGE_SIZE,
    prelude::*,
};

/// Largest piece of the buffer one standing DMA mapping covers
/// ([`crate::mmap_dma`]): PCI's default maximum segment size, 64 KiB. A
/// transfer needs one descriptor and one sync per piece it touches.
pub(crate) const MAP_PIECE: usize = 64 * 1024;

/// ZONE_DMA pages: physically contiguous when ZONE_DMA had a free block that
/// large, else single pages (the device reaches them with scatter-gather
/// descriptors either way; contiguous pages need fewer).
pub(crate) struct MmapBuf {
    pages: KVec<DmaPage>,
    /// The pages are one block, in order: [`MmapBuf::pieces`] needs only
    /// the first page's address.
    contiguous: bool,
}

impl MmapBuf {
    /// `len` bytes (rounded up to whole pages) of zeroed ZONE_DMA pages.
    pub(crate) fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let count = len.div_ceil(PAGE_SIZE);
        if let Ok(pages) = DmaPage::contiguous(count) {
            // Checked once here (the block was just zeroed page by page
            // anyway), so that `pieces()` may trust it on every mapping.
            let base = pages.first().map_or(0, |p| page_phys(p.as_raw()));
            let contiguous = pages
                .iter()
                .enumerate()
                .all(|(i, p)| page_phys(p.as_raw()) == base + (i * PAGE_SIZE) as u64);
            return Ok(Self { pages, contiguous });
        }
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            pages.push(DmaPage::new()?, GFP_KERNEL)?;
        }
        Ok(Self {
            pages,
            contiguous: false,
        })
    }

    /// The buffer as `(byte offset, length, physical address)` pieces, in
    /// order: each physically contiguous, at most [`MAP_PIECE`] long and
    /// not crossing a multiple of it.
    pub(crate) fn pieces(&self) -> Result<KVec<(usize, usize, u64)>> {
        let mut pieces: KVec<(usize, usize, u64)> = KVec::new();
        if self.contiguous {
            // Looking up every page's address costs a page-table walk each
            // (emulated on PVM); one block needs only its first.
            let base = self.pages.first().map_or(0, |p| page_phys(p.as_raw()));
            for at in (0..self.len()).step_by(MAP_PIECE) {
                let len = MAP_PIECE.min(self.len() - at);
                pieces.push((at, len, base + at as u64), GFP_KERNEL)?;
            }
            return Ok(pieces);
        }
        for (i, page) in self.pages.iter().enumerate() {
            let (at, phys) = (i * PAGE_SIZE, page_phys(page.as_raw()));
            match pieces.last_mut() {
                Some((start, len, base))
                    if *base + *len as u64 == phys && at % MAP_PIECE != 0 && *start + *len == at =>
                {
                    *len += PAGE_SIZE
                }
                _ => pieces.push((at, PAGE_SIZE, phys), GFP_KERNEL)?,
            }
        }
        Ok(pieces)
    }

    /// Size in bytes (whole pages).
    pub(crate) fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// The `f_op->mmap` of `/dev/dma24-N`: maps the pages from the VMA's page
    /// offset on, for exactly the VMA's length.
    ///
    /// `EINVAL` for a private mapping (copy-on-write would give the process
    /// copies the device never sees) and for a range that ends beyond the
    /// buffer. The VMA cannot grow (`mremap`) and is left out of core dumps.
    pub(crate) fn map_into(&self, vma: &VmaNew) -> Result {
        if vma.flags() & flags::SHARED == 0 {
            return Err(EINVAL);
        }
        // SAFETY: The VMA is being set up by the mmap call we are in, which holds the mmap lock
        // for writing; `vm_pgoff` is a plain field nobody else changes meanwhile.
        let first: usize = unsafe { (*vma.as_ptr()).vm_pgoff };
        let size = vma.end() - vma.start();
        let count = size / PAGE_SIZE;
        match first.checked_add(count) {
            Some(end) if end <= self.pages.len() => {}
            _ => return Err(EINVAL),
        }
        vma.set_dontexpand();
        vma.set_dontdump();
        let mixed = vma.set_mixedmap();
        for (i, page) in self.pages[first..first + count].iter().enumerate() {
            mixed.vm_insert_page(vma.start() + i * PAGE_SIZE, &page.borrow())?;
        }
        Ok(())
    }

    /// Copies `data` into the buffer at `at` (kernel-side tests).
    ///
    /// # Safety
    ///
    /// No user mapping of the buffer may exist (nothing may access the bytes concurrently).
    pub(crate) unsafe fn write(&self, at: usize, data: &[u8]) -> Result {
        self.for_each_piece(at, data.len(), |page, offset, done, n| {
            // SAFETY: `data[done..done + n]` is readable; the caller rules out concurrent access.
            unsafe { page.borrow().write_raw(data[done..].as_ptr(), offset, n) }
        })
    }

    /// Copies bytes at `at` out of the buffer into `out` (kernel-side tests).
    ///
    /// # Safety
    ///
    /// As for [`MmapBuf::write`].
    pub(crate) unsafe fn read(&self, at: usize, out: &mut [u8]) -> Result {
        let len = out.len();
        let dst = out.as_mut_ptr();
        self.for_each_piece(at, len, |page, offset, done, n| {
            // SAFETY: `dst + done` is valid for `n` bytes of `out`; the caller rules out
            // concurrent access.
            unsafe { page.borrow().read_raw(dst.add(done), offset, n) }
        })
    }

    /// Calls `f(page, offset in page, bytes done, n)` for the pieces of
    /// `at..at + len`; `EINVAL` if that is not inside the buffer.
    fn for_each_piece(
        &self,
        at: usize,
        len: usize,
        mut f: impl FnMut(&DmaPage, usize, usize, usize) -> Result,
    ) -> Result {
        match at.checked_add(len) {
            Some(end) if end <= self.len() => {}
            _ => return Err(EINVAL),
        }
        let mut done = 0;
        while done < len {
            let pos = at + done;
            let offset = pos % PAGE_SIZE;
            let n = (len - done).min(PAGE_SIZE - offset);
            f(&self.pages[pos / PAGE_SIZE], offset, done, n)?;
            done += n;
        }
        Ok(())
    }
}

// SAFETY: `&MmapBuf` gives out page pointers and maps pages; both are fine from any task. The
// byte accessors are `unsafe` and leave concurrent access to their callers.
unsafe impl Sync for MmapBuf {}
