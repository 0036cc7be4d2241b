// SPDX-License-Identifier: GPL-2.0

//! Scatter-gather buffers and mappings through raw bindings (the other half
//! of [`crate::dma_raw`]):
//!
//! - [`SgBuf`] + [`SgMap`]: a `struct sg_table` over pages from ZONE_DMA or
//!   over a `vmalloc()` buffer, mapped with `dma_map_sgtable()`, synced with
//!   `__dma_sync_sg_for_*` and unmapped + freed in `Drop`.
//!   (`kernel::scatterlist::SGTable<Owned<_>>` only takes vmalloc pages and
//!   gives no CPU access or sync after mapping, so it cannot bounce data.)
//! - The same table over pages the driver does not own, for zero copy:
//!   pinned user pages ([`crate::user_pages::UserPages`]). The CPU never
//!   touches those through the mapping (user space may be using them). The
//!   mmap buffer has a standing mapping of its own ([`crate::mmap_dma`]).
//!
//! Mappings borrow the `&Device<Bound>` they were made with, so they cannot
//! outlive the scope in which the device is known to be bound.

use crate::{
    dma_raw::{raw_dev, virt_to_phys, GFP_DMA, GFP_NORETRY, GFP_ZERO, RAW_GFP_KERNEL},
    user_pages::UserPages,
};
use core::ptr::NonNull;
use kernel::{
    bindings,
    device::{Bound, Device},
    dma::DataDirection,
    error::to_result,
    page::{AsPageIter, BorrowedPage, PAGE_SIZE},
    prelude::*,
    scatterlist::SGTable,
};

/// Physical address of a page in the kernel's direct map (x86_64 has no
/// highmem: `kmap_local_page()` is `page_address()`).
pub(crate) fn page_phys(page: *mut bindings::page) -> u64 {
    // SAFETY: Every caller passes a page it holds a reference or pin on; mapping it only computes
    // its kernel address, no byte is read.
    let addr = unsafe { bindings::kmap_local_page(page) };
    let phys = virt_to_phys(addr.cast());
    // SAFETY: `addr` is the mapping made above, released once.
    unsafe { bindings::kunmap_local(addr) };
    phys
}

/// One order-0 page from ZONE_DMA, freed on drop.
///
/// # Invariants
///
/// `0` is a page from `alloc_pages(.., 0)` holding one reference owned by `self`, in the
/// kernel's direct map.
pub(crate) struct DmaPage(NonNull<bindings::page>);

impl DmaPage {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: FFI call without preconditions; the result is checked for NULL.
        let page = unsafe { bindings::alloc_pages(RAW_GFP_KERNEL | GFP_DMA | GFP_ZERO, 0) };
        Ok(Self(NonNull::new(page).ok_or(ENOMEM)?))
    }

    /// Runs `f` on the page's bytes.
    fn with_bytes<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: `self.0` is a live page we own.
        let addr = unsafe { bindings::kmap_local_page(self.0.as_ptr()) }.cast::<u8>();
        // SAFETY: `kmap_local_page()` maps the whole page; the page was zeroed at allocation and
        // `&mut self` makes this the only access to it.
        let bytes = unsafe { core::slice::from_raw_parts_mut(addr, PAGE_SIZE) };
        let ret = f(bytes);
        // SAFETY: `addr` is the mapping made above, released once, in LIFO order.
        unsafe { bindings::kunmap_local(addr.cast()) };
        ret
    }

    /// `count` pages that are physically contiguous, or `ENOMEM` (without
    /// a warning, retry or reclaim stall) when ZONE_DMA has no free block
    /// that large: one buddy block of the next power-of-two order, split into
    /// independently reference-counted order-0 pages with `split_page()`,
    /// the pages beyond `count` given back. That is what
    /// `alloc_pages_exact()` does; the Rust bindings have no `virt_to_page()`
    /// to turn its address into pages, so the driver does it on `struct page`.
    pub(crate) fn contiguous(count: usize) -> Result<KVec<Self>> {
        let order = count.next_power_of_two().trailing_zeros();
        if count == 0 || order > bindings::MAX_PAGE_ORDER {
            return Err(ENOMEM);
        }
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        let gfp = RAW_GFP_KERNEL | GFP_DMA | GFP_ZERO | bindings::__GFP_NOWARN | GFP_NORETRY;
        // SAFETY: FFI call without preconditions; the result is checked for NULL.
        let head = NonNull::new(unsafe { bindings::alloc_pages(gfp, order) }).ok_or(ENOMEM)?;
        // SAFETY: `head` is a non-compound block of `order` that we own (no `__GFP_COMP`).
        unsafe { bindings::split_page(head.as_ptr(), order) };
        let mut all_kept = true;
        for i in 0..1usize << order {
            // SAFETY: The `struct page`s of one buddy block are consecutive in the memory map
            // (`split_page()` itself walks them as `page + i`); `i` is inside the block.
            let page = unsafe { NonNull::new_unchecked(head.as_ptr().add(i)) };
            // INVARIANT: after `split_page()` every page of the block is an order-0 page holding
            // one reference, which is ours.
            let page = Self(page);
            if i < count {
                // The capacity was reserved above; were it not, the page drops (is freed).
                all_kept &= pages.push(page, GFP_KERNEL).is_ok();
            }
            // The pages beyond `count` drop here: freed one by one.
        }
        if all_kept { Ok(pages) } else { Err(ENOMEM) }
    }

    /// The `struct page *`.
    pub(crate) fn as_raw(&self) -> *mut bindings::page {
        self.0.as_ptr()
    }

    /// The page for the safe `kernel::page` API (`vm_insert_page()`,
    /// `read_raw()`), borrowed from `self`.
    pub(crate) fn borrow(&self) -> BorrowedPage<'_> {
        // SAFETY: By the type invariants the page is valid while `self` lives, which the returned
        // value borrows.
        unsafe { BorrowedPage::from_raw(self.0) }
    }
}

impl Drop for DmaPage {
    fn drop(&mut self) {
        // Drops our reference: a page still mapped into user space (`vm_insert_page()` took one
        // per mapping) is freed only when the last mapping goes.
        // SAFETY: By the type invariants the reference is ours, on an order-0 page.
        unsafe { bindings::__free_pages(self.0.as_ptr(), 0) };
    }
}

// SAFETY: A `DmaPage` exclusively owns its page; it can be used and freed from any task.
unsafe impl Send for DmaPage {}

enum SgPages {
    /// Pages allocated one by one from ZONE_DMA.
    Dma(KVec<DmaPage>),
    /// A `vmalloc()` buffer.
    Vmalloc(VVec<u8>),
    /// Pinned user pages (zero copy, no CPU access).
    User(UserPages),
}

/// A buffer that is not physically contiguous, for scatter-gather DMA.
pub(crate) struct SgBuf {
    pages: SgPages,
    /// Offset of the first byte in the first page (ZONE_DMA pages only).
    offset: usize,
    len: usize,
}

impl SgBuf {
    /// `len` bytes starting `offset` bytes into the first of several single pages taken from
    /// ZONE_DMA with `alloc_pages(GFP_DMA, 0)`.
    pub(crate) fn zone_dma_pages(len: usize, offset: usize) -> Result<Self> {
        if len == 0 || offset >= PAGE_SIZE {
            return Err(EINVAL);
        }
        let count = offset.checked_add(len).ok_or(EINVAL)?.div_ceil(PAGE_SIZE);
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            pages.push(DmaPage::new()?, GFP_KERNEL)?;
        }
        Ok(Self {
            pages: SgPages::Dma(pages),
            offset,
            len,
        })
    }

    /// `len` bytes of `vmalloc()` memory.
    pub(crate) fn vmalloc(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let mut buf = VVec::with_capacity(len, GFP_KERNEL)?;
        buf.resize(len, 0, GFP_KERNEL)?;
        Ok(Self {
            pages: SgPages::Vmalloc(buf),
            offset: 0,
            len,
        })
    }

    /// The pinned user pages themselves.
    pub(crate) fn user_pages(pages: UserPages) -> Self {
        let (offset, len) = (pages.offset(), pages.len());
        Self {
            pages: SgPages::User(pages),
            offset,
            len,
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The physical address of the first page that holds part of the buffer
    /// above `limit`, if any (for the error message of a refused mapping).
    pub(crate) fn first_page_above(&mut self, limit: u64) -> Option<u64> {
        let ptrs = self.page_ptrs().ok()?;
        ptrs.iter().map(|&p| page_phys(p)).find(|&phys| {
            phys.saturating_add(PAGE_SIZE as u64 - 1) > limit
        })
    }

    /// Lowest and highest physical address of any byte of the buffer.
    pub(crate) fn phys_range(&mut self) -> (u64, u64) {
        let mut lo = u64::MAX;
        let mut hi = 0u64;
        let mut note = |start: u64, len: usize| {
            lo = lo.min(start);
            hi = hi.max(start.saturating_add(len as u64).saturating_sub(1));
        };
        let (offset, len) = (self.offset, self.len);
        let zero_copy = match self.pages {
            SgPages::User(_) => self.page_ptrs().ok(),
            _ => None,
        };
        match &mut self.pages {
            SgPages::Dma(pages) => {
                let mut left = len;
                for (i, page) in pages.iter_mut().enumerate() {
                    let start = if i == 0 { offset } else { 0 };
                    let n = left.min(PAGE_SIZE - start);
                    let phys = page_phys(page.as_raw());
                    note(phys + start as u64, n);
                    left -= n;
                }
            }
            SgPages::Vmalloc(buf) => {
                for chunk in buf.chunks(PAGE_SIZE) {
                    note(virt_to_phys(chunk.as_ptr()), chunk.len());
                }
            }
            SgPages::User(_) => {
                if let Some(ptrs) = zero_copy {
                    let mut left = len;
                    for (i, &p) in ptrs.iter().enumerate() {
                        let start = if i == 0 { offset } else { 0 };
                        let n = left.min(PAGE_SIZE - start);
                        note(page_phys(p) + start as u64, n);
                        left -= n;
                    }
                }
            }
        }
        (lo, hi)
    }

    /// Calls `f` on consecutive pieces covering the first `len` bytes, in order, until it
    /// returns `false`.
    fn for_each_piece(&mut self, len: usize, mut f: impl FnMut(&mut [u8]) -> bool) {
        let mut left = len.min(self.len);
        match &mut self.pages {
            SgPages::Dma(pages) => {
                for (i, page) in pages.iter_mut().enumerate() {
                    if left == 0 {
                        break;
                    }
                    let start = if i == 0 { self.offset } else { 0 };
                    let n = left.min(PAGE_SIZE - start);
                    if !page.with_bytes(|b| f(&mut b[start..start + n])) {
                        return;
                    }
                    left -= n;
                }
            }
            SgPages::Vmalloc(buf) => {
                f(&mut buf[..left]);
            }
            // Zero-copy pages are the user's: the driver only hands them to the device.
            SgPages::User(_) => {}
        }
    }

    /// The `struct page *` of every page, in order.
    fn page_ptrs(&mut self) -> Result<KVec<*mut bindings::page>> {
        let mut ptrs = KVec::new();
        match &mut self.pages {
            SgPages::Dma(pages) => {
                for page in pages.iter() {
                    ptrs.push(page.0.as_ptr(), GFP_KERNEL)?;
                }
            }
            SgPages::Vmalloc(buf) => {
                for page in buf.page_iter() {
                    ptrs.push(page.as_ptr(), GFP_KERNEL)?;
                }
            }
            SgPages::User(pages) => ptrs.extend_from_slice(pages.page_ptrs(), GFP_KERNEL)?,
        }
        Ok(ptrs)
    }
}

/// An [`SgBuf`] in a `struct sg_table` mapped with `dma_map_sgtable()`; unmapped and freed on
/// drop. Ownership works as for [`SingleMap`].
///
/// # Invariants
///
/// `sgt` was filled by `sg_alloc_table_from_pages_segment()` over the pages of `buf` and is
/// mapped for `dev` with direction `dir`.
pub(crate) struct SgMap<'a> {
    dev: &'a Device<Bound>,
    sgt: bindings::sg_table,
    buf: SgBuf,
    dir: DataDirection,
    cpu_owns: bool,
}

// SAFETY: The table and the pages it describes are exclusively owned by `SgMap`; the raw pointers
// inside `sg_table` are only used through `&mut self` or for reading.
unsafe impl Send for SgMap<'_> {}

impl<'a> SgMap<'a> {
    /// Builds the table (one segment per page at most) and maps it.
    ///
    /// Fails with the error of `dma_map_sgtable()` (`EIO` when a page is not reachable by the
    /// device) and frees everything.
    pub(crate) fn new(dev: &'a Device<Bound>, mut buf: SgBuf, dir: DataDirection) -> Result<Self> {
        let mut pages = buf.page_ptrs()?;
        let mut sgt: bindings::sg_table = pin_init::zeroed();
        // SAFETY: `sgt` is a zeroed table; `pages` holds `pages.len()` valid pages that stay
        // alive (owned by `buf`) as long as the table; `offset + len` fits in them.
        to_result(unsafe {
            bindings::sg_alloc_table_from_pages_segment(
                &mut sgt,
                pages.as_mut_ptr(),
                u32::try_from(pages.len())?,
                u32::try_from(buf.offset)?,
                buf.len as c_ulong,
                PAGE_SIZE as u32,
                RAW_GFP_KERNEL,
            )
        })?;
        // SAFETY: `dev` is bound for `'a`; `sgt` is a valid, unmapped table.
        let ret = unsafe { bindings::dma_map_sgtable(raw_dev(dev), &mut sgt, dir.into(), 0) };
        if ret != 0 {
            // SAFETY: `sgt` was allocated above and is not mapped; freed once.
            unsafe { bindings::sg_free_table(&mut sgt) };
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: `sgt` describes `buf` and is mapped for `dev` with `dir`.
        Ok(Self {
            dev,
            sgt,
            buf,
            dir,
            cpu_owns: false,
        })
    }

    /// The mapped table, to read the DMA address and length of each segment.
    pub(crate) fn table(&self) -> &SGTable {
        // SAFETY: `self.sgt` is a valid table that is not modified while `&self` is borrowed.
        unsafe { SGTable::from_raw(core::ptr::from_ref(&self.sgt).cast_mut()) }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    fn sync(&mut self, for_cpu: bool) {
        let nents = self.sgt.orig_nents as c_int;
        // SAFETY: By the type invariants `sgt` is mapped for `dev` (bound for `'a`) with `dir`;
        // syncing uses the original number of entries, as `dma_sync_sgtable_for_*()` does.
        unsafe {
            if for_cpu {
                bindings::__dma_sync_sg_for_cpu(
                    raw_dev(self.dev),
                    self.sgt.sgl,
                    nents,
                    self.dir.into(),
                )
            } else {
                bindings::__dma_sync_sg_for_device(
                    raw_dev(self.dev),
                    self.sgt.sgl,
                    nents,
                    self.dir.into(),
                )
            }
        };
    }

    /// Calls `f` on the first `len` bytes, piece by piece, after `dma_sync_sgtable_for_cpu()` if
    /// the device owned them; stops when `f` returns `false`.
    pub(crate) fn cpu(&mut self, len: usize, f: impl FnMut(&mut [u8]) -> bool) {
        if !self.cpu_owns {
            self.sync(true);
            self.cpu_owns = true;
        }
        self.buf.for_each_piece(len, f);
    }

    /// Hands the bytes to the device (`dma_sync_sgtable_for_device()` if the CPU owned them).
    pub(crate) fn give_to_device(&mut self) {
        if self.cpu_owns {
            self.sync(false);
            self.cpu_owns = false;
        }
    }
}

impl Drop for SgMap<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants `sgt` is mapped for `dev` with `dir` and was allocated
        // by `sg_alloc_table_from_pages_segment()`; both are undone once, here. The pages are
        // freed afterwards, when `buf` drops.
        unsafe {
            bindings::dma_unmap_sgtable(raw_dev(self.dev), &mut self.sgt, self.dir.into(), 0);
            bindings::sg_free_table(&mut self.sgt);
        }
    }
}
