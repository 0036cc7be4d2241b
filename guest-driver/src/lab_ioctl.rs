// SPDX-License-Identifier: GPL-2.0

//! The allocator lab's ioctls, numbers 0x20-0x2f under `DMA24_IOC_MAGIC`
//! (the C view is in README.md):
//!
//! - `DMA24_IOC_SIZE_CLASS` (0x20, `struct dma24_size_class`): allocate one
//!   size from one allocator, measure, free ([`crate::lab_sizes`]).
//! - `DMA24_IOC_ZONE_DMA_LIMITS` (0x21): the largest `__get_free_pages`
//!   order and kmalloc size ZONE_DMA gives now.
//! - `DMA24_IOC_VIRT_ATTEMPT` (0x22): show the private (8) or stack (9)
//!   buffer to the DMA API ([`crate::lab_virt`]); always refused.
//! - `DMA24_IOC_BOOT_CMA` (0x23): one round trip of several MiB through a
//!   `dma_alloc_coherent()` buffer ([`crate::lab_boot`]): it works with a
//!   boot-time CMA area inside ZONE_DMA and fails with `ENOMEM` without.
//!   An ioctl of its own, not only allocator 10 behind read()/write(): the
//!   point is one buffer of MiB, and copying MiB through copy_from_user
//!   costs about 2 µs a byte of emulated kernel on PVM hosts.

use crate::{
    alloc_lab::Allocator,
    chardev::DMA24_IOC_MAGIC,
    lab_boot,
    lab_sizes::{measure, zone_dma_limits, Dma24SizeClass},
    lab_virt,
    state::Dma24,
    transfer::Dir,
};
use kernel::{
    ioctl::{_IOC_NR, _IOC_TYPE, _IOR, _IOWR},
    prelude::*,
    uaccess::UserSlice,
};

/// Largest size `DMA24_IOC_SIZE_CLASS` measures: above the 4 MiB limits of
/// kmalloc and the page allocator, small enough for vmalloc on a small guest.
const SIZE_CLASS_LIMIT: u64 = 8 << 20;

use crate::lab_abi::{BootCma as Dma24BootCma, ZoneDmaLimits as Dma24ZoneDmaLimits};

/// `struct dma24_virt_attempt` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24VirtAttempt {
    /// In: 8 (static buffer) or 9 (stack buffer).
    pub(crate) alloc: u32,
    /// In: bytes, 1..=800.
    pub(crate) len: u32,
    /// Out: 0 vmalloc, 1 module memory, 2 kernel image, 3 direct map.
    pub(crate) region: u32,
    /// Out: always negative (-EIO refused, -EINVAL bad length).
    pub(crate) result: i32,
    /// Out: the buffer's real physical address (page-table walk).
    pub(crate) real_phys: u64,
    /// Out: the physical address virt_to_page() gives (what dma_map_single maps).
    pub(crate) linear_phys: u64,
    /// Out: the handle dma_map_phys returned, or ~0 (failed or not called).
    pub(crate) handle: u64,
    /// Out: bit 0 mapping tried, bit 1 a DMA-API debug error was planted.
    pub(crate) flags: u32,
    pub(crate) reserved: u32,
}

// SAFETY: `repr(C)`, integer fields only, no padding (asserted below).
unsafe impl kernel::transmute::AsBytes for Dma24ZoneDmaLimits {}
// SAFETY: any bit pattern is valid for every field.
unsafe impl kernel::transmute::FromBytes for Dma24ZoneDmaLimits {}
// SAFETY: `repr(C)`, integer fields only, no padding (asserted in lab_abi).
unsafe impl kernel::transmute::AsBytes for Dma24BootCma {}
// SAFETY: any bit pattern is valid for every field.
unsafe impl kernel::transmute::FromBytes for Dma24BootCma {}
// SAFETY: `repr(C)`, integer fields only, no padding (asserted below).
unsafe impl kernel::transmute::AsBytes for Dma24VirtAttempt {}
// SAFETY: any bit pattern is valid for every field.
unsafe impl kernel::transmute::FromBytes for Dma24VirtAttempt {}

pub(crate) const DMA24_IOC_SIZE_CLASS: u32 = _IOWR::<Dma24SizeClass>(DMA24_IOC_MAGIC, 0x20);
pub(crate) const DMA24_IOC_ZONE_DMA_LIMITS: u32 = _IOR::<Dma24ZoneDmaLimits>(DMA24_IOC_MAGIC, 0x21);
pub(crate) const DMA24_IOC_VIRT_ATTEMPT: u32 = _IOWR::<Dma24VirtAttempt>(DMA24_IOC_MAGIC, 0x22);
pub(crate) const DMA24_IOC_BOOT_CMA: u32 = _IOWR::<Dma24BootCma>(DMA24_IOC_MAGIC, 0x23);

// The ABI: sizes and numbers are fixed.
const _: () = {
    assert!(core::mem::size_of::<Dma24VirtAttempt>() == 48);
    assert!(DMA24_IOC_SIZE_CLASS == crate::lab_abi::IOC_SIZE_CLASS);
    assert!(DMA24_IOC_ZONE_DMA_LIMITS == crate::lab_abi::IOC_ZONE_DMA_LIMITS);
    assert!(DMA24_IOC_VIRT_ATTEMPT == crate::lab_abi::IOC_VIRT_ATTEMPT);
    assert!(DMA24_IOC_BOOT_CMA == crate::lab_abi::IOC_BOOT_CMA);
};

/// This file's range: nr 0x20-0x2f under the driver's magic.
pub(crate) fn owns(cmd: u32) -> bool {
    _IOC_TYPE(cmd) == DMA24_IOC_MAGIC && (0x20..0x30).contains(&_IOC_NR(cmd))
}

/// Region code of [`Dma24VirtAttempt::region`].
fn region_code(r: lab_virt::Region) -> u32 {
    match r {
        lab_virt::Region::Vmalloc => 0,
        lab_virt::Region::Module => 1,
        lab_virt::Region::KernelImage => 2,
        lab_virt::Region::DirectMap => 3,
    }
}

/// Runs one lab ioctl (`owns(cmd)` holds).
pub(crate) fn ioctl(dev: &Dma24, cmd: u32, user: UserSlice) -> Result<isize> {
    match cmd {
        DMA24_IOC_SIZE_CLASS => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut req: Dma24SizeClass = reader.read()?;
            let alloc = Allocator::sized_from_u32(req.alloc)?;
            if req.size == 0 || req.size > SIZE_CLASS_LIMIT {
                dev_err!(
                    dev.pdev,
                    "{}: size class of {} bytes: the lab measures 1..={} bytes\n",
                    dev.name,
                    req.size,
                    SIZE_CLASS_LIMIT
                );
                return Err(EINVAL);
            }
            let size = usize::try_from(req.size)?;
            req = dev.with_live(|live| Ok(measure(live, alloc, size)))?;
            writer.write(&req)?;
        }
        DMA24_IOC_ZONE_DMA_LIMITS => {
            let (order, kmalloc) = zone_dma_limits();
            user.writer().write(&Dma24ZoneDmaLimits {
                largest_order: order,
                reserved: 0,
                largest_kmalloc: kmalloc as u64,
            })?;
        }
        DMA24_IOC_VIRT_ATTEMPT => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut req: Dma24VirtAttempt = reader.read()?;
            let alloc = Allocator::from_u32(req.alloc)?;
            if !alloc.is_virtual() {
                return Err(EINVAL);
            }
            let len = usize::try_from(req.len)?;
            let v = dev.with_live(|live| Ok(lab_virt::refuse(live, alloc, len, Dir::ToDevice)))?;
            req.region = region_code(v.region);
            req.result = v.result.err().map_or(0, |e| e.to_errno());
            req.real_phys = v.real_phys;
            req.linear_phys = v.linear_phys;
            req.handle = v.handle.unwrap_or(!0);
            req.flags = u32::from(v.mapping_tried) | (u32::from(v.planted_debug_error) << 1);
            writer.write(&req)?;
        }
        DMA24_IOC_BOOT_CMA => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut req: Dma24BootCma = reader.read()?;
            let len = match usize::try_from(req.len)? {
                0 => lab_boot::BOOT_CMA_LEN,
                n => n,
            };
            let seed = req.seed.to_le_bytes()[0];
            let trip = dev.with_live(|live| Ok(lab_boot::round_trip(live, len, seed)))?;
            req.result = trip.result;
            req.phys_lo = trip.phys_lo;
            req.phys_hi = trip.phys_hi;
            req.bus = trip.bus;
            req.devmem_mismatches = u32::try_from(trip.devmem_mismatches).unwrap_or(u32::MAX);
            req.mismatches = u32::try_from(trip.mismatches).unwrap_or(u32::MAX);
            writer.write(&req)?;
        }
        _ => return Err(ENOTTY),
    }
    Ok(0)
}
