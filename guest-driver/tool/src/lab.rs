//! The allocator lab from user space: `DMA24_IOC_SET_ALLOC` plus a round
//! trip through read()/write() for one buffer source, and the size-class
//! table through `DMA24_IOC_SIZE_CLASS` / `DMA24_IOC_ZONE_DMA_LIMITS`. The
//! ABI is in guest-driver/README.md ("ioctl ABI").

use std::fs::File;
use std::os::fd::AsRawFd;

/// `_IOW(0xd2, 1, __u32)`.
pub const DMA24_IOC_SET_ALLOC: libc::Ioctl = 0x4004_d201;
/// `_IOWR(0xd2, 0x20, struct dma24_size_class)`.
pub const DMA24_IOC_SIZE_CLASS: libc::Ioctl = 0xc030_d220;
/// `_IOR(0xd2, 0x21, struct dma24_zone_dma_limits)`.
pub const DMA24_IOC_ZONE_DMA_LIMITS: libc::Ioctl = 0x8010_d221;

/// Allocator numbers and names (`enum dma24_alloc`).
pub const ALLOCATORS: &[(u32, &str)] = &[
    (0, "kmalloc-dma"),
    (1, "kmalloc-kernel"),
    (2, "kzalloc"),
    (3, "kmem-cache-dma"),
    (4, "get-free-pages-dma"),
    (5, "vmalloc"),
    (6, "sg-pages-dma"),
    (7, "coherent"),
    (8, "static-buffer"),
    (9, "stack-buffer"),
];

/// The allocators of the size-class table.
pub const SIZED: &[u32] = &[0, 1, 3, 4, 5, 7];

/// The requested sizes of the table (the driver's `lab_sizes::SIZES`).
pub const SIZES: &[u64] = &[
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

/// `struct dma24_size_class`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SizeClass {
    pub alloc: u32,
    pub result: i32,
    pub size: u64,
    pub granted: u64,
    pub phys_lo: u64,
    pub phys_hi: u64,
    pub zone: u32,
    pub slack_permille: u32,
}

/// `struct dma24_zone_dma_limits`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct ZoneDmaLimits {
    pub largest_order: u32,
    pub reserved: u32,
    pub largest_kmalloc: u64,
}

const _: () = assert!(std::mem::size_of::<SizeClass>() == 48);
const _: () = assert!(std::mem::size_of::<ZoneDmaLimits>() == 16);

/// Name of allocator `n`, if it exists.
pub fn allocator_name(n: u32) -> Option<&'static str> {
    ALLOCATORS.iter().find(|(i, _)| *i == n).map(|(_, s)| *s)
}

/// Parses an allocator given by number or name.
pub fn parse_allocator(s: &str) -> Option<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|n| allocator_name(*n).is_some())
        .or_else(|| ALLOCATORS.iter().find(|(_, n)| *n == s).map(|(i, _)| *i))
}

/// Zone name of `SizeClass::zone`.
pub fn zone_name(z: u32) -> &'static str {
    match z {
        0 => "DMA",
        1 => "DMA32",
        _ => "Normal",
    }
}

fn ioctl<T>(dev: &File, req: libc::Ioctl, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: `arg` is a live, writable `repr(C)` value of exactly the size the request
    // number encodes (asserted above), so the kernel reads and writes only inside it.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), req, std::ptr::from_mut(arg)) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `DMA24_IOC_SET_ALLOC`.
pub fn set_alloc(dev: &File, mut alloc: u32) -> std::io::Result<()> {
    ioctl(dev, DMA24_IOC_SET_ALLOC, &mut alloc)
}

/// `DMA24_IOC_SIZE_CLASS` for one allocator and size.
pub fn size_class(dev: &File, alloc: u32, size: u64) -> std::io::Result<SizeClass> {
    let mut req = SizeClass {
        alloc,
        size,
        ..SizeClass::default()
    };
    ioctl(dev, DMA24_IOC_SIZE_CLASS, &mut req)?;
    Ok(req)
}

/// `DMA24_IOC_ZONE_DMA_LIMITS`.
pub fn zone_dma_limits(dev: &File) -> std::io::Result<ZoneDmaLimits> {
    let mut req = ZoneDmaLimits::default();
    ioctl(dev, DMA24_IOC_ZONE_DMA_LIMITS, &mut req)?;
    Ok(req)
}
