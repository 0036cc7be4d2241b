//! The allocator lab from user space: `DMA24_IOC_SET_ALLOC` plus a round
//! trip through read()/write() for one buffer source, and the size-class
//! table through `DMA24_IOC_SIZE_CLASS` / `DMA24_IOC_ZONE_DMA_LIMITS`. The
//! ABI is in guest-driver/README.md ("ioctl ABI").

use std::fs::File;

// Shared with the module; the tool uses only part of it.
#[allow(dead_code)]
#[path = "../../src/lab_abi.rs"]
mod abi;

pub use abi::{SizeClass, ZoneDmaLimits, SIZES, VIRT_BUF_LEN};

/// `_IOW(0xd2, 1, __u32)`.
const DMA24_IOC_SET_ALLOC: u32 = 0x4004_d201;

/// The allocators of the size-class table.
pub const SIZED: [u32; 6] = abi::SIZED_ALLOCATORS;

/// Name of allocator `n`, if it exists.
pub fn allocator_name(n: u32) -> Option<&'static str> {
    abi::ALLOCATOR_NAMES.get(usize::try_from(n).ok()?).copied()
}

/// Every allocator as (number, name).
pub fn allocators() -> impl Iterator<Item = (u32, &'static str)> {
    (0u32..).zip(abi::ALLOCATOR_NAMES)
}

/// Parses an allocator given by number or name.
pub fn parse_allocator(s: &str) -> Option<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|n| allocator_name(*n).is_some())
        .or_else(|| allocators().find(|(_, n)| *n == s).map(|(i, _)| i))
}

pub use abi::zone_name;

/// The tool's one ioctl helper (`zerocopy.rs`), for the lab's 32-bit numbers.
fn ioctl<T>(dev: &File, req: u32, arg: &mut T) -> std::io::Result<()> {
    crate::zerocopy::ioctl(dev, u64::from(req), arg)
}

/// `DMA24_IOC_SET_ALLOC`.
pub fn set_alloc(dev: &File, mut alloc: u32) -> std::io::Result<()> {
    ioctl(dev, DMA24_IOC_SET_ALLOC, &mut alloc)
}

/// `DMA24_IOC_SIZE_CLASS` for one allocator and size.
pub fn size_class(dev: &File, alloc: u32, size: usize) -> std::io::Result<SizeClass> {
    let mut req = SizeClass {
        alloc,
        size: u64::try_from(size).unwrap_or(u64::MAX),
        ..SizeClass::default()
    };
    ioctl(dev, abi::IOC_SIZE_CLASS, &mut req)?;
    Ok(req)
}

/// `DMA24_IOC_ZONE_DMA_LIMITS`.
pub fn zone_dma_limits(dev: &File) -> std::io::Result<ZoneDmaLimits> {
    let mut req = ZoneDmaLimits::default();
    ioctl(dev, abi::IOC_ZONE_DMA_LIMITS, &mut req)?;
    Ok(req)
}
