//! The allocator lab from user space: `DMA24_IOC_SET_ALLOC` plus a round
//! trip through read()/write() for one buffer source, and the size-class
//! table through `DMA24_IOC_SIZE_CLASS` / `DMA24_IOC_ZONE_DMA_LIMITS`, and
//! the boot-time reservation through `DMA24_IOC_BOOT_CMA`. The ABI is in
//! guest-driver/README.md ("ioctl ABI").

use std::fs::File;
use std::process::ExitCode;

// Shared with the module; the tool uses only part of it.
#[allow(dead_code)]
#[path = "../../src/lab_abi.rs"]
mod abi;

pub use abi::{BootCma, SizeClass, ZoneDmaLimits, SIZES, VIRT_BUF_LEN};

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

/// Pattern seed of `dma24-tool boot-cma`.
const BOOT_CMA_SEED: u8 = 0x6b;
/// Exit status of `dma24-tool boot-cma` when no CMA area could give the
/// buffer (the lesson's expected failure on a boot without `cma=`).
pub const EXIT_NO_RESERVATION: u8 = 3;

/// `DMA24_IOC_BOOT_CMA`: one round trip of `len` bytes (0: the driver's
/// default, 6 MiB) through one `dma_alloc_coherent()` buffer.
pub fn boot_cma(dev: &File, len: u64, seed: u8) -> std::io::Result<BootCma> {
    let mut req = BootCma {
        len,
        seed: u32::from(seed),
        ..BootCma::default()
    };
    ioctl(dev, abi::IOC_BOOT_CMA, &mut req)?;
    Ok(req)
}

/// `dma24-tool boot-cma [DEVICE]`: the round trip, an `ok` line the host
/// matches with the trace, or the `ENOMEM` of a boot without a reservation.
/// Exit 0 ok, [`EXIT_NO_RESERVATION`] for `ENOMEM`, 1 for anything else.
pub fn boot_cma_command(path: &str) -> ExitCode {
    let dev = match crate::open_rw(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let r = match boot_cma(&dev, 0, BOOT_CMA_SEED) {
        Ok(r) => r,
        Err(e) => {
            println!("dma24-tool: FAIL boot-cma: DMA24_IOC_BOOT_CMA: {e}");
            return ExitCode::FAILURE;
        }
    };
    if r.result == 0 {
        let len = abi::BOOT_CMA_LEN;
        println!(
            "dma24-tool: ok offset=0 len={len} seed={BOOT_CMA_SEED} hash={:016x} alloc=boot-cma phys={:#x}..{:#x}",
            crate::pattern::trace_hash(&crate::pattern::bytes(len, BOOT_CMA_SEED)),
            r.phys_lo,
            r.phys_hi
        );
        ExitCode::SUCCESS
    } else if r.result == -libc::ENOMEM {
        println!(
            "dma24-tool: boot-cma refused: ENOMEM: no CMA area could give {} contiguous bytes below 16 MiB \
             (the page allocator's limit is 4 MiB); boot with cma=8M@0-16M and --device dma24,mem=8192",
            abi::BOOT_CMA_LEN
        );
        ExitCode::from(EXIT_NO_RESERVATION)
    } else {
        println!(
            "dma24-tool: FAIL boot-cma: errno {} ({} / {} bytes differ); the driver's log says why",
            -r.result, r.devmem_mismatches, r.mismatches
        );
        ExitCode::FAILURE
    }
}
