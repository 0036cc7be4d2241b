// SPDX-License-Identifier: GPL-2.0

//! The allocator lab's user-space ABI, shared as is by the kernel module and
//! the guest tool (dependency-free, like `pattern.rs`): allocator numbers and
//! names, the sizes of the size-class table, the ioctl numbers of
//! nr 0x20-0x2f and the layout of their arguments. The C view is in
//! guest-driver/README.md ("ioctl ABI").

/// `DMA24_ALLOC_*` names, indexed by number.
pub const ALLOCATOR_NAMES: [&str; 11] = [
    "kmalloc-dma",
    "kmalloc-kernel",
    "kzalloc",
    "kmem-cache-dma",
    "get-free-pages-dma",
    "vmalloc",
    "sg-pages-dma",
    "coherent",
    "static-buffer",
    "stack-buffer",
    "boot-cma",
];

/// Allocator numbers the size-class table measures (kzalloc is kmalloc, the
/// SG page source is order-0 pages, 8 and 9 allocate nothing).
pub const SIZED_ALLOCATORS: [u32; 6] = [0, 1, 3, 4, 5, 7];

/// Requested sizes of the table: the texts' examples around each class edge,
/// the old 128 KiB kmalloc limit, today's 4 MiB limit and one above it.
pub const SIZES: [usize; 14] = [
    1,
    32,
    800,
    2000,
    2048,
    4000,
    4096,
    4097,
    8000,
    64 << 10,
    128 << 10,
    (128 << 10) + 1,
    4 << 20,
    (4 << 20) + 1,
];

/// Length of the private and stack buffers (the texts' `buffer[800]`).
pub const VIRT_BUF_LEN: usize = 800;

/// `_IOWR(0xd2, 0x20, struct dma24_size_class)`.
pub const IOC_SIZE_CLASS: u32 = 0xc030_d220;
/// `_IOR(0xd2, 0x21, struct dma24_zone_dma_limits)`.
pub const IOC_ZONE_DMA_LIMITS: u32 = 0x8010_d221;
/// `_IOWR(0xd2, 0x22, struct dma24_virt_attempt)`.
pub const IOC_VIRT_ATTEMPT: u32 = 0xc030_d222;
/// `_IOWR(0xd2, 0x23, struct dma24_boot_cma)`.
pub const IOC_BOOT_CMA: u32 = 0xc030_d223;

/// The boot-time reservation lesson's default buffer: 6 MiB, above the page
/// allocator's largest block (4 MiB), so only a CMA area gives it in one piece.
pub const BOOT_CMA_LEN: usize = 6 << 20;

/// `struct dma24_boot_cma` (48 bytes): one round trip through a
/// `dma_alloc_coherent()` buffer of several MiB (allocator 10, `boot-cma`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct BootCma {
    /// In: bytes, 1..=16 MiB (0: [`BOOT_CMA_LEN`]).
    pub len: u64,
    /// In: pattern seed (low 8 bits).
    pub seed: u32,
    /// Out: 0, or the negative errno (-ENOMEM: no area could serve it).
    pub result: i32,
    /// Out: physical range of the buffer (0 if not allocated).
    pub phys_lo: u64,
    pub phys_hi: u64,
    /// Out: the bus address dma_alloc_coherent() returned.
    pub bus: u64,
    /// Out: sampled device-memory bytes that differ (readb).
    pub devmem_mismatches: u32,
    /// Out: read-back bytes that differ.
    pub mismatches: u32,
}

/// `struct dma24_size_class` (48 bytes): one measured row.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SizeClass {
    /// In: allocator number (one of [`SIZED_ALLOCATORS`]).
    pub alloc: u32,
    /// Out: 0, or the negative errno of the allocation.
    pub result: i32,
    /// In: requested bytes.
    pub size: u64,
    /// Out: bytes set aside for the request.
    pub granted: u64,
    /// Out: lowest and highest physical address of the granted bytes.
    pub phys_lo: u64,
    pub phys_hi: u64,
    /// Out: zone of the highest byte: 0 DMA (< 16 MiB), 1 DMA32 (< 4 GiB), 2 Normal.
    pub zone: u32,
    /// Out: (granted - size) * 1000 / granted.
    pub slack_permille: u32,
}

/// `struct dma24_zone_dma_limits` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ZoneDmaLimits {
    /// Largest order `__get_free_pages(GFP_DMA)` gave (`u32::MAX`: none).
    pub largest_order: u32,
    pub reserved: u32,
    /// Largest power-of-two `kmalloc(GFP_DMA)` size that succeeded.
    pub largest_kmalloc: u64,
}

/// Zone name of [`SizeClass::zone`].
pub const fn zone_name(zone: u32) -> &'static str {
    match zone {
        0 => "DMA",
        1 => "DMA32",
        _ => "Normal",
    }
}

const _: () = assert!(core::mem::size_of::<SizeClass>() == 48);
const _: () = assert!(core::mem::size_of::<ZoneDmaLimits>() == 16);
const _: () = assert!(core::mem::size_of::<BootCma>() == 48);
