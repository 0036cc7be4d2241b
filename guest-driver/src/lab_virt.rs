// SPDX-License-Identifier: GPL-2.0

//! The texts' private buffers (`static char buffer[800]`) and a buffer on the
//! kernel stack, shown to the DMA API and never to the device.
//!
//! `dma_map_single(dev, ptr, ..)` is a C static inline: it refuses vmalloc
//! addresses (`is_vmalloc_addr()`, with a `dev_WARN_ONCE` "rejecting DMA map
//! of vmalloc memory"), lets DMA-API debugging check the address
//! (`debug_dma_map_single()`), and maps `virt_to_page(ptr)`, i.e. the
//! physical address `__pa(ptr)`. That formula is only right for the direct
//! map and the kernel image:
//!
//! - built in, the static buffer is kernel image data, loaded at
//!   `CONFIG_PHYSICAL_START` (16 MiB): `__pa()` is right, and the address is
//!   just past a 24-bit device's reach, so dma-direct refuses it;
//! - in a module it is module memory, mapped page by page like vmalloc:
//!   `__pa()` names a page that has nothing to do with the buffer. DMA-API
//!   debugging reports "device driver maps memory from invalid area" (one
//!   planted error, logged by the driver as `dma-api planted`); dma-direct
//!   then maps that wrong address if the mask reaches it;
//! - with `CONFIG_VMAP_STACK` the stack is vmalloc memory, refused first.
//!
//! The driver repeats the inline's steps with the same exported calls, then
//! compares a "successful" handle with the buffer's real physical address (a
//! page-table walk) and refuses either way: the texts' rule is that kernel
//! data and stacks are never DMA buffers. Nothing here writes a START.

use crate::{
    alloc_lab::Allocator,
    dma_raw::{raw_dev, virt_to_phys, DMA_MAPPING_ERROR},
    state::{bump, ErrorSource, LastError},
    transfer::{Dir, Live},
};
use core::cell::UnsafeCell;
use kernel::{bindings, dma::DmaAddress, prelude::*};

pub(crate) use crate::lab_abi::VIRT_BUF_LEN;

/// x86_64 `__START_KERNEL_map`: where the kernel image is mapped.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// x86_64 `KERNEL_IMAGE_SIZE`; the module area starts right after it.
#[cfg(CONFIG_RANDOMIZE_BASE)]
const KERNEL_IMAGE_SIZE: u64 = 1 << 30;
#[cfg(not(CONFIG_RANDOMIZE_BASE))]
const KERNEL_IMAGE_SIZE: u64 = 512 << 20;

/// The driver's private buffer. Only its address is ever used: nothing reads
/// or writes the bytes, and nothing DMAs to them.
struct PrivateBuffer(UnsafeCell<[u8; VIRT_BUF_LEN]>);

// SAFETY: the bytes are never accessed (only the address is taken), so
// sharing the static between threads cannot race.
unsafe impl Sync for PrivateBuffer {}

static PRIVATE_BUFFER: PrivateBuffer = PrivateBuffer(UnsafeCell::new([0; VIRT_BUF_LEN]));

/// Where a kernel virtual address lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Region {
    /// vmalloc space (kernel stacks with `CONFIG_VMAP_STACK`).
    Vmalloc,
    /// The module area: loadable modules' code and data, mapped page by page.
    Module,
    /// The kernel image (text, data, bss), loaded at `CONFIG_PHYSICAL_START`.
    KernelImage,
    /// The direct map of all RAM (kmalloc, page allocator).
    DirectMap,
}

impl Region {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Region::Vmalloc => "vmalloc space (CONFIG_VMAP_STACK stack)",
            Region::Module => "module memory (vmapped)",
            Region::KernelImage => "kernel image data",
            Region::DirectMap => "direct map",
        }
    }
}

/// What the DMA API made of one private or stack buffer.
#[derive(Debug)]
pub(crate) struct VirtAttempt {
    pub(crate) region: Region,
    pub(crate) virt: usize,
    /// Where the buffer really is (page-table walk).
    pub(crate) real_phys: u64,
    /// What `virt_to_page()` / `__pa()` computes, i.e. what dma_map_single maps.
    pub(crate) linear_phys: u64,
    /// `dma_map_phys()` was called (the inline would have got that far).
    pub(crate) mapping_tried: bool,
    /// The handle it returned, when it did not fail.
    pub(crate) handle: Option<DmaAddress>,
    /// `debug_dma_map_single()` reported this address (one DMA-API error).
    pub(crate) planted_debug_error: bool,
    pub(crate) reason: &'static str,
    /// Always an error: `EIO` (refused) or `EINVAL` (too long).
    pub(crate) result: Result,
}

fn region_of(addr: u64) -> Region {
    // SAFETY: `is_vmalloc_addr()` only compares the address with the vmalloc range.
    if unsafe { bindings::is_vmalloc_addr(addr as *const c_void) } {
        Region::Vmalloc
    } else if addr >= START_KERNEL_MAP + KERNEL_IMAGE_SIZE {
        Region::Module
    } else if addr >= START_KERNEL_MAP {
        Region::KernelImage
    } else {
        Region::DirectMap
    }
}

/// x86_64 `__phys_addr_nodebug()`, the `__pa()` behind `virt_to_page()`.
fn linear_phys(addr: u64) -> u64 {
    // SAFETY: both are set once during early boot and only read afterwards.
    let (phys_base, page_offset) = unsafe {
        (
            core::ptr::read(&raw const bindings::phys_base) as u64,
            core::ptr::read(&raw const bindings::page_offset_base) as u64,
        )
    };
    if addr >= START_KERNEL_MAP {
        addr - START_KERNEL_MAP + phys_base
    } else {
        addr.wrapping_sub(page_offset)
    }
}

/// Shows `len` bytes of the private or stack buffer to the DMA API for `dir`
/// and refuses them; logs what happened and records a mapping error.
pub(crate) fn refuse(live: &mut Live<'_>, alloc: Allocator, len: usize, dir: Dir) -> VirtAttempt {
    let mut stack_buffer = [0u8; VIRT_BUF_LEN];
    let ptr: *const u8 = match alloc {
        Allocator::StackBuffer => stack_buffer.as_mut_ptr(),
        _ => PRIVATE_BUFFER.0.get().cast::<u8>(),
    };
    let v = attempt(live, ptr, alloc, len, dir);
    // Keeps the array a real stack object until after the attempt.
    core::hint::black_box(&mut stack_buffer);
    v
}

fn attempt(live: &mut Live<'_>, ptr: *const u8, alloc: Allocator, len: usize, dir: Dir) -> VirtAttempt {
    let dev = live.dev;
    let addr = ptr as u64;
    let region = region_of(addr);
    let mut v = VirtAttempt {
        region,
        virt: ptr as usize,
        real_phys: virt_to_phys(ptr),
        linear_phys: linear_phys(addr),
        mapping_tried: false,
        handle: None,
        planted_debug_error: false,
        reason: "",
        result: Err(EIO),
    };
    live.active_alloc = alloc as u32;
    if len == 0 || len > VIRT_BUF_LEN {
        dev_err!(
            live.pdev,
            "{}: {} bytes from {}: the limit of this source is 1..={} bytes\n",
            dev.name,
            len,
            alloc.call(),
            VIRT_BUF_LEN
        );
        v.reason = "longer than the buffer";
        v.result = Err(EINVAL);
        return v;
    }
    let raw = raw_dev(live.ddev);
    if region == Region::Vmalloc {
        // dma_map_single_attrs(): `if (dev_WARN_ONCE(dev, is_vmalloc_addr(ptr), ..))
        // return DMA_MAPPING_ERROR;` before anything else.
        v.reason = "vmalloc memory: dma_map_single() refuses it before mapping (is_vmalloc_addr)";
    } else {
        #[cfg(CONFIG_DMA_API_DEBUG)]
        {
            // debug_dma_map_single() reports addresses outside the direct map and
            // the kernel image (virt_addr_valid() is false for module memory).
            v.planted_debug_error = region == Region::Module;
            // SAFETY: `raw` is a bound device; the call only inspects the address.
            unsafe { bindings::debug_dma_map_single(raw, ptr.cast(), len as c_ulong) };
            if v.planted_debug_error {
                dev_info!(
                    live.pdev,
                    "{}: dma-api planted: debug_dma_map_single() of {} ({})\n",
                    dev.name,
                    alloc.name(),
                    region.name()
                );
            }
        }
        // `dma_map_page_attrs(virt_to_page(ptr), offset)`. dma-direct either refuses the
        // address (beyond the mask) or returns it as the handle; with no swiotlb bounce
        // (none below 4 GiB of RAM) it touches no memory, right or wrong.
        // SAFETY: `raw` is bound with its DMA mask set; the range is only translated.
        let handle = unsafe { bindings::dma_map_phys(raw, v.linear_phys, len, dir.dma().into(), 0) };
        #[cfg(CONFIG_DMA_API_DEBUG)]
        // SAFETY: `raw` is a bound device; any handle value may be passed.
        unsafe {
            bindings::debug_dma_mapping_error(raw, handle)
        };
        v.mapping_tried = true;
        if handle == DMA_MAPPING_ERROR {
            v.reason = "dma-direct refused the address: beyond the device's DMA mask";
        } else {
            v.handle = Some(handle);
            // SAFETY: this unmaps exactly the mapping just made.
            unsafe { bindings::dma_unmap_phys(raw, handle, len, dir.dma().into(), 0) };
            v.reason = if handle != v.real_phys {
                "the mapping succeeded at a bus address that is not where the buffer is"
            } else {
                "kernel data is never a DMA buffer (it shares pages with other variables)"
            };
        }
    }
    bump(&dev.stats.map_errors, 1);
    bump(&dev.stats.transfers_failed, 1);
    dev_err!(
        live.pdev,
        "{}: refused {} at {:#x} ({}): real physical {:#x}, virt_to_page() physical {:#x}, \
         handle {}: {}; nothing was handed to the device\n",
        dev.name,
        alloc.call(),
        v.virt,
        region.name(),
        v.real_phys,
        v.linear_phys,
        match v.handle {
            Some(h) => h,
            None => DMA_MAPPING_ERROR,
        },
        v.reason
    );
    dev.record_error(LastError {
        alloc: alloc as u32,
        from_device: dir == Dir::FromDevice,
        errno: EIO.to_errno(),
        source: ErrorSource::Mapping,
        bus_addr: v.real_phys,
        len: u32::try_from(len).unwrap_or(u32::MAX),
        ..LastError::default()
    });
    v
}
