// SPDX-License-Identifier: GPL-2.0

//! What the 7.2 Rust DMA API lacks, as safe wrappers over `kernel::bindings`.
//!
//! This module and [`crate::dma_sg`] (the scatter-gather half) are the only
//! ones that call the memory allocators and the DMA streaming API through raw
//! bindings:
//!
//! - [`KBuf`]: `kmalloc()`/`kzalloc()` with or without `GFP_DMA` (the Rust
//!   `Flags` type has no `GFP_DMA` and no public constructor), objects of a
//!   [`DmaCache`] (`kmem_cache_create(.., SLAB_CACHE_DMA)`) and
//!   `__get_free_pages(GFP_DMA, order)`. `Drop` frees with the matching call.
//! - [`SingleMap`]: `dma_map_single()` + `dma_mapping_error()`,
//!   `dma_sync_single_for_{cpu,device}()` and `dma_unmap_single()` in `Drop`.
//!   Those are static inlines in C; the wrapper calls what they call
//!   (`debug_dma_map_single`, `dma_map_phys`, `debug_dma_mapping_error`,
//!   `__dma_sync_single_*`, `dma_unmap_phys`). `dma_map_single()` ends in
//!   `dma_map_page_attrs(virt_to_page(p), offset_in_page(p))`, which is
//!   `dma_map_phys(page_to_phys(page) + offset)`; `virt_to_page` has no
//!   binding, so the physical address comes from `slow_virt_to_phys()`.
//! - `dma_sg::{SgBuf, SgMap}`: a `struct sg_table`, see [`crate::dma_sg`].
//!
//! Mappings borrow the `&Device<Bound>` they were made with, so they cannot
//! outlive the scope in which the device is known to be bound.

use core::ptr::NonNull;
use kernel::{
    bindings,
    device::{Bound, Device, DeviceContext},
    dma::{DataDirection, DmaAddress},
    page::PAGE_SIZE,
    prelude::*,
    sync::Arc,
};

/// `__GFP_DMA`: allocate from ZONE_DMA (below 16 MiB on x86_64).
pub(crate) const GFP_DMA: bindings::gfp_t = 1 << bindings::___GFP_DMA_BIT;
pub(crate) const RAW_GFP_KERNEL: bindings::gfp_t = bindings::GFP_KERNEL;
pub(crate) const GFP_ZERO: bindings::gfp_t = bindings::__GFP_ZERO;
/// `__GFP_NORETRY`, which the bindings give only as a bit number.
pub(crate) const GFP_NORETRY: bindings::gfp_t = 1 << bindings::___GFP_NORETRY_BIT;
/// `SLAB_CACHE_DMA`: the cache's slabs come from ZONE_DMA.
const SLAB_CACHE_DMA: bindings::slab_flags_t = 1 << bindings::_slab_flag_bits__SLAB_CACHE_DMA;
/// `SLAB_HWCACHE_ALIGN`: objects start on a cache line, so two objects never
/// share one (DMA-API debugging tracks mappings per cache line).
const SLAB_HWCACHE_ALIGN: bindings::slab_flags_t =
    1 << bindings::_slab_flag_bits__SLAB_HWCACHE_ALIGN;
/// `DMA_MAPPING_ERROR`, the handle every failed streaming mapping returns.
pub(crate) const DMA_MAPPING_ERROR: DmaAddress = !0;
/// Smallest kmalloc size handed out: one cache line, so a mapping never
/// shares a cache line with another object.
const MIN_KMALLOC: usize = 64;

/// The `struct device *` behind a device reference.
pub(crate) fn raw_dev<Ctx: DeviceContext>(dev: &Device<Ctx>) -> *mut bindings::device {
    // CAST: `Device<Ctx>` is a `#[repr(transparent)]` wrapper of `Opaque<struct device>`, which
    // is `#[repr(transparent)]` over the C struct, so both pointers have the same address.
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// Physical address of a kernel virtual address (direct map or vmalloc).
pub(crate) fn virt_to_phys(addr: *const u8) -> u64 {
    // SAFETY: `slow_virt_to_phys()` only walks the kernel page tables; every caller passes an
    // address inside a live allocation it owns, so the address is mapped.
    unsafe { bindings::slow_virt_to_phys(addr.cast_mut().cast()) }
}

/// `get_order()`: the smallest order whose block holds `len` bytes.
fn order_for(len: usize) -> u32 {
    let pages = len.div_ceil(PAGE_SIZE).max(1);
    pages.next_power_of_two().trailing_zeros()
}

/// A `kmem_cache` created with `SLAB_CACHE_DMA`; destroyed on drop.
///
/// # Invariants
///
/// `ptr` is a cache returned by `kmem_cache_create()` that has not been destroyed; every object
/// taken from it keeps an `Arc` of it, so it outlives its objects.
pub(crate) struct DmaCache {
    ptr: NonNull<bindings::kmem_cache>,
    object_size: usize,
}

// SAFETY: The slab allocator's calls are thread safe; the cache pointer can be used from any task.
unsafe impl Send for DmaCache {}
// SAFETY: See above; `&DmaCache` only allows allocations and frees, which are thread safe.
unsafe impl Sync for DmaCache {}

impl DmaCache {
    /// `kmem_cache_create(name, object_size, .., SLAB_CACHE_DMA | SLAB_HWCACHE_ALIGN)`.
    pub(crate) fn new(name: &'static CStr, object_size: usize) -> Result<Self> {
        let size = u32::try_from(object_size).map_err(|_| EINVAL)?;
        let mut args = bindings::kmem_cache_args::default();
        // SAFETY: `name` is a NUL-terminated string that lives forever (the cache keeps the
        // pointer); `args` is a valid, default-initialised `struct kmem_cache_args`.
        let ptr = unsafe {
            bindings::__kmem_cache_create_args(
                name.as_char_ptr(),
                size,
                &mut args,
                SLAB_CACHE_DMA | SLAB_HWCACHE_ALIGN,
            )
        };
        let ptr = NonNull::new(ptr).ok_or(ENOMEM)?;
        Ok(Self { ptr, object_size })
    }

    /// Size of one object.
    pub(crate) fn object_size(&self) -> usize {
        self.object_size
    }
}

impl Drop for DmaCache {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the cache is live and has no objects left (each object
        // holds an `Arc` of the cache).
        unsafe { bindings::kmem_cache_destroy(self.ptr.as_ptr()) };
    }
}

enum KBufKind {
    Kmalloc,
    Cache(Arc<DmaCache>),
    Pages(u32),
}

/// A physically contiguous kernel buffer from one of the lab's allocators.
///
/// # Invariants
///
/// `ptr` points to `len` initialised bytes in the kernel's direct map, exclusively owned by
/// `self` and obtained from the allocator `kind` names (never vmalloc).
pub(crate) struct KBuf {
    ptr: NonNull<u8>,
    len: usize,
    kind: KBufKind,
}

// SAFETY: `KBuf` exclusively owns its memory; it can be used and freed from any task.
unsafe impl Send for KBuf {}
// SAFETY: `&KBuf` only gives shared read access to the bytes.
unsafe impl Sync for KBuf {}

impl KBuf {
    fn finish(ptr: *mut c_void, len: usize, zeroed: bool, kind: KBufKind) -> Result<Self> {
        let Some(ptr) = NonNull::new(ptr.cast::<u8>()) else {
            // Nothing to free: a failed allocation returns NULL.
            return Err(ENOMEM);
        };
        if !zeroed {
            // Rust may not read uninitialised bytes; `kmalloc()` does not clear.
            // SAFETY: `ptr` points to at least `len` writable bytes just allocated.
            unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        }
        // INVARIANT: `ptr` is a fresh allocation of at least `len` bytes from `kind`, now
        // initialised.
        Ok(Self { ptr, len, kind })
    }

    /// `kmalloc(len, GFP_KERNEL [| GFP_DMA])`, or `kzalloc()` when `zero`.
    /// The size is rounded up to a power of two of at least a cache line.
    pub(crate) fn kmalloc(len: usize, zone_dma: bool, zero: bool) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let size = len.max(MIN_KMALLOC).checked_next_power_of_two().ok_or(EINVAL)?;
        let mut gfp = RAW_GFP_KERNEL;
        if zone_dma {
            gfp |= GFP_DMA;
        }
        if zero {
            gfp |= GFP_ZERO;
        }
        // SAFETY: FFI call without preconditions; the result is checked for NULL.
        let ptr = unsafe { bindings::__kmalloc_noprof(size, gfp) };
        Self::finish(ptr, len, zero, KBufKind::Kmalloc)
    }

    /// `kmem_cache_alloc(cache, GFP_KERNEL)` (the cache adds `GFP_DMA` itself).
    pub(crate) fn from_cache(cache: &Arc<DmaCache>, len: usize) -> Result<Self> {
        if len == 0 || len > cache.object_size() {
            return Err(EINVAL);
        }
        // SAFETY: By the invariants of `DmaCache`, `cache.ptr` is a live cache.
        let ptr = unsafe { bindings::kmem_cache_alloc_noprof(cache.ptr.as_ptr(), RAW_GFP_KERNEL) };
        Self::finish(ptr, len, false, KBufKind::Cache(cache.clone()))
    }

    /// `__get_free_pages(GFP_KERNEL | GFP_DMA, get_order(len))`.
    pub(crate) fn pages_dma(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let order = order_for(len);
        // SAFETY: FFI call without preconditions; the result is checked for 0.
        let addr = unsafe { bindings::get_free_pages_noprof(RAW_GFP_KERNEL | GFP_DMA, order) };
        Self::finish(addr as *mut c_void, len, false, KBufKind::Pages(order))
    }

    /// Usable length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Address of the first byte.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Physical address of the first byte.
    pub(crate) fn phys_addr(&self) -> u64 {
        virt_to_phys(self.ptr.as_ptr())
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: By the type invariants `ptr` points to `len` initialised bytes owned by `self`,
        // and `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for KBuf {
    fn drop(&mut self) {
        let ptr = self.ptr.as_ptr().cast::<c_void>();
        match &self.kind {
            // SAFETY: `ptr` came from `kmalloc()` and is freed once, here.
            KBufKind::Kmalloc => unsafe { bindings::kfree(ptr) },
            // SAFETY: `ptr` came from this live cache (we hold an `Arc` of it) and is freed once.
            KBufKind::Cache(cache) => unsafe { bindings::kmem_cache_free(cache.ptr.as_ptr(), ptr) },
            // SAFETY: `ptr` came from `__get_free_pages()` with this order and is freed once.
            KBufKind::Pages(order) => unsafe { bindings::free_pages(ptr as c_ulong, *order) },
        }
    }
}

/// A streaming mapping of a [`KBuf`] (`dma_map_single()`), unmapped on drop.
///
/// Ownership of the bytes alternates between CPU and device, as the DMA API requires: the
/// mapping starts device-owned; [`SingleMap::cpu`] syncs for the CPU before giving out the bytes,
/// [`SingleMap::give_to_device`] syncs for the device before a transfer.
///
/// # Invariants
///
/// `handle` is a live streaming mapping of the first `len` bytes of `buf` for `dev`, made with
/// direction `dir`.
pub(crate) struct SingleMap<'a> {
    dev: &'a Device<Bound>,
    buf: KBuf,
    handle: DmaAddress,
    len: usize,
    dir: DataDirection,
    cpu_owns: bool,
}

impl<'a> SingleMap<'a> {
    /// `dma_map_single(dev, buf, len, dir)` checked with `dma_mapping_error()`.
    ///
    /// Fails with `EIO` (and frees `buf`) when the DMA API cannot give the device an address for
    /// the buffer, e.g. a buffer above a 24-bit device's mask without bounce buffers.
    pub(crate) fn new(
        dev: &'a Device<Bound>,
        buf: KBuf,
        len: usize,
        dir: DataDirection,
    ) -> Result<Self> {
        if len == 0 || len > buf.len() {
            return Err(EINVAL);
        }
        let raw = raw_dev(dev);
        let cpu = buf.ptr.as_ptr();
        // What `dma_map_single_attrs()` does first (a `KBuf` is never vmalloc memory, which it
        // would refuse): let DMA-API debugging check the virtual address.
        #[cfg(CONFIG_DMA_API_DEBUG)]
        // SAFETY: `raw` is a bound device; `cpu` points to `len` bytes of a live allocation.
        unsafe {
            bindings::debug_dma_map_single(raw, cpu.cast(), len as c_ulong)
        };
        let phys = virt_to_phys(cpu);
        // SAFETY: `raw` is a device bound for `'a` whose DMA mask is set; `phys..phys + len` is
        // memory owned by `buf`, which lives as long as the mapping.
        let handle = unsafe { bindings::dma_map_phys(raw, phys, len, dir.into(), 0) };
        // `dma_mapping_error()`: tell DMA-API debugging the result was checked, then check it.
        #[cfg(CONFIG_DMA_API_DEBUG)]
        // SAFETY: `raw` is a bound device; any handle value may be passed.
        unsafe {
            bindings::debug_dma_mapping_error(raw, handle)
        };
        if handle == DMA_MAPPING_ERROR {
            return Err(EIO);
        }
        // INVARIANT: `handle` maps `buf[..len]` for `dev` with `dir`.
        Ok(Self {
            dev,
            buf,
            handle,
            len,
            dir,
            cpu_owns: false,
        })
    }

    /// The bus address to give the device.
    pub(crate) fn dma_handle(&self) -> DmaAddress {
        self.handle
    }

    /// Mapped length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The mapped bytes for the CPU, after `dma_sync_single_for_cpu()` if the device owned them.
    pub(crate) fn cpu(&mut self) -> &mut [u8] {
        if !self.cpu_owns {
            // SAFETY: By the type invariants `handle`/`len`/`dir` describe a live mapping for
            // `dev`, which is bound for `'a`.
            unsafe {
                bindings::__dma_sync_single_for_cpu(
                    raw_dev(self.dev),
                    self.handle,
                    self.len,
                    self.dir.into(),
                )
            };
            self.cpu_owns = true;
        }
        let len = self.len;
        &mut self.buf.as_mut_slice()[..len]
    }

    /// Hands the bytes to the device (`dma_sync_single_for_device()` if the CPU owned them).
    pub(crate) fn give_to_device(&mut self) {
        if self.cpu_owns {
            // SAFETY: As in `cpu()`.
            unsafe {
                bindings::__dma_sync_single_for_device(
                    raw_dev(self.dev),
                    self.handle,
                    self.len,
                    self.dir.into(),
                )
            };
            self.cpu_owns = false;
        }
    }
}

impl Drop for SingleMap<'_> {
    fn drop(&mut self) {
        // `dma_unmap_single()`; `buf` is freed after this, when the fields drop.
        // SAFETY: By the type invariants this unmaps exactly the live mapping made in `new()`.
        unsafe {
            bindings::dma_unmap_phys(raw_dev(self.dev), self.handle, self.len, self.dir.into(), 0)
        };
    }
}

/// The streaming DMA mask and the coherent DMA mask of `dev`.
pub(crate) fn dma_masks(dev: &Device<Bound>) -> (u64, u64) {
    let raw = raw_dev(dev);
    // SAFETY: `raw` is a live device; `dma_mask` is either NULL or points to the bus device's
    // mask (for PCI, `pci_dev.dma_mask`), which lives as long as the device.
    unsafe {
        let mask = (*raw).dma_mask;
        let streaming = if mask.is_null() { 0 } else { *mask };
        (streaming, (*raw).coherent_dma_mask)
    }
}
