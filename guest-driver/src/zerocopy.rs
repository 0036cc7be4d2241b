// SPDX-License-Identifier: GPL-2.0

//! Zero copy on `/dev/dma24-N`: the two ways around the read()/write() path's
//! `copy_{to,from}_user` through a bounce buffer (README.md, "Zero copy"):
//!
//! - `DMA24_IOC_XFER_USER`: DMA straight to or from the caller's own pages
//!   (pinned, one scatter-gather descriptor per page). Works only when every
//!   page is within the device's DMA mask: on a 24-bit device user pages
//!   almost never are, the mapping is refused with `EIO` and nothing starts,
//!   unless `DMA24_XFER_BOUNCE` asks for the bytes to go through a
//!   `kmalloc(GFP_DMA)` bounce buffer instead (counted, and visible in the
//!   host trace as ZONE_DMA addresses).
//! - `mmap()` of a driver-owned ZONE_DMA buffer ([`MmapBuf`]) plus
//!   `DMA24_IOC_MMAP_XFER` between (offset, length) of it and device memory:
//!   user space reads and writes the buffer itself, the driver copies
//!   nothing, and it works on every mask of 24 bits or more.
//!
//! ioctl numbers 0x10-0x1f under `DMA24_IOC_MAGIC` belong to this file.

use crate::{
    alloc_lab::Allocator,
    chardev,
    dma_sg::{page_phys, SgBuf, SgMap},
    mmap_buf::MmapBuf,
    mmap_dma::MmapDma,
    regs::SG_MAX_SEGMENTS,
    state::{bump, get, Dma24, ErrorSource, LastError},
    timing::Call,
    transfer::{Dir, Live},
    user_pages::{pages_spanned, UserPages},
};
use kernel::{
    ioctl::{_IOR, _IOWR},
    mm::virt::VmaNew,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{atomic::Atomic, Arc, Mutex},
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

/// `flags` bit: device memory -> memory (else memory -> device memory).
pub(crate) const DMA24_XFER_FROM_DEVICE: u32 = 1 << 0;
/// `flags` bit of `XFER_USER`: if the DMA API refuses the user pages, move
/// the bytes through a ZONE_DMA bounce buffer instead of failing.
pub(crate) const DMA24_XFER_BOUNCE: u32 = 1 << 1;

/// `DMA24_IOC_XFER_USER`: one DMA between user memory and device memory.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24XferUser {
    /// In: the user buffer.
    pub(crate) user_addr: u64,
    /// In: bytes, 1..=device memory size, at most `SG_MAX_SEGMENTS` pages touched.
    pub(crate) len: u32,
    /// In: device memory offset.
    pub(crate) dev_offset: u32,
    /// In: `DMA24_XFER_*`.
    pub(crate) flags: u32,
    /// Out: scatter-gather descriptors of the zero-copy DMA (0 if bounced).
    pub(crate) segments: u32,
    /// Out: bus address of the first descriptor (0 if bounced).
    pub(crate) bus_addr: u64,
    /// Out: physical address of the first byte; after a refusal, of the first page beyond the
    /// DMA mask.
    pub(crate) phys_addr: u64,
    /// Out: 1 if the bytes went through the bounce buffer.
    pub(crate) bounced: u32,
    pub(crate) reserved: u32,
}

/// `DMA24_IOC_MMAP_XFER`: one DMA between the mmap buffer and device memory.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24MmapXfer {
    /// In: offset in the mmap buffer.
    pub(crate) buf_offset: u32,
    /// In: device memory offset.
    pub(crate) dev_offset: u32,
    /// In: bytes.
    pub(crate) len: u32,
    /// In: `DMA24_XFER_FROM_DEVICE` or 0.
    pub(crate) flags: u32,
    /// Out: bus address of the first descriptor.
    pub(crate) bus_addr: u64,
    /// Out: scatter-gather descriptors (one per page touched).
    pub(crate) segments: u32,
    pub(crate) reserved: u32,
}

/// `DMA24_IOC_GET_ZEROCOPY`: the mmap buffer's size and the counters of both paths.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24Zerocopy {
    /// Bytes `mmap()` can map (offset 0): device memory rounded up to pages.
    pub(crate) mmap_size: u64,
    /// Successful `mmap()` calls.
    pub(crate) mmaps: u64,
    pub(crate) mmap_xfers: u64,
    pub(crate) mmap_bytes: u64,
    /// Zero-copy user-page DMAs that completed.
    pub(crate) user_xfers: u64,
    pub(crate) user_bytes: u64,
    /// Pages pinned with `pin_user_pages_fast()`.
    pub(crate) user_pages_pinned: u64,
    /// User buffers the DMA API refused to map (beyond the mask).
    pub(crate) user_refused: u64,
    /// Refused ones that went through the bounce buffer instead.
    pub(crate) bounced_xfers: u64,
    pub(crate) bounced_bytes: u64,
}

// SAFETY: The three ABI structs are `#[repr(C)]`, made only of integers and laid out without
// padding (sizes checked below), so they have no uninitialised bytes...
unsafe impl AsBytes for Dma24XferUser {}
// SAFETY: ...and any bit pattern is a valid value.
unsafe impl FromBytes for Dma24XferUser {}
// SAFETY: As above.
unsafe impl AsBytes for Dma24MmapXfer {}
// SAFETY: As above.
unsafe impl FromBytes for Dma24MmapXfer {}
// SAFETY: As above.
unsafe impl AsBytes for Dma24Zerocopy {}
// SAFETY: As above.
unsafe impl FromBytes for Dma24Zerocopy {}

const _: () = {
    assert!(core::mem::size_of::<Dma24XferUser>() == 48);
    assert!(core::mem::size_of::<Dma24MmapXfer>() == 32);
    assert!(core::mem::size_of::<Dma24Zerocopy>() == 80);
};

const MAGIC: u32 = chardev::DMA24_IOC_MAGIC;
pub(crate) const DMA24_IOC_XFER_USER: u32 = _IOWR::<Dma24XferUser>(MAGIC, 0x10);
pub(crate) const DMA24_IOC_MMAP_XFER: u32 = _IOWR::<Dma24MmapXfer>(MAGIC, 0x11);
pub(crate) const DMA24_IOC_GET_ZEROCOPY: u32 = _IOR::<Dma24Zerocopy>(MAGIC, 0x12);

// The numbers README.md documents.
const _: () = {
    assert!(DMA24_IOC_XFER_USER == 0xc030_d210);
    assert!(DMA24_IOC_MMAP_XFER == 0xc020_d211);
    assert!(DMA24_IOC_GET_ZEROCOPY == 0x8050_d212);
};

/// Counters of the zero-copy paths.
struct Counters {
    mmaps: Atomic<u64>,
    mmap_xfers: Atomic<u64>,
    mmap_bytes: Atomic<u64>,
    user_xfers: Atomic<u64>,
    user_bytes: Atomic<u64>,
    user_pages_pinned: Atomic<u64>,
    user_refused: Atomic<u64>,
    bounced_xfers: Atomic<u64>,
    bounced_bytes: Atomic<u64>,
}

/// One device's zero-copy state: the mmap buffer (allocated at the first
/// `mmap()` or `MMAP_XFER`, shared by every open file) and the counters.
#[pin_data]
pub(crate) struct ZeroCopy {
    #[pin]
    buf: Mutex<Option<Arc<MmapBuf>>>,
    counters: Counters,
}

impl ZeroCopy {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(ZeroCopy {
            buf <- new_mutex!(None),
            counters: Counters {
                mmaps: Atomic::new(0),
                mmap_xfers: Atomic::new(0),
                mmap_bytes: Atomic::new(0),
                user_xfers: Atomic::new(0),
                user_bytes: Atomic::new(0),
                user_pages_pinned: Atomic::new(0),
                user_refused: Atomic::new(0),
                bounced_xfers: Atomic::new(0),
                bounced_bytes: Atomic::new(0),
            },
        })
    }
}

/// Size of the mmap buffer of `dev`: device memory in whole pages, at most
/// what one descriptor list can carry.
pub(crate) fn mmap_size(dev: &Dma24) -> usize {
    dev.info
        .devmem_size
        .next_multiple_of(PAGE_SIZE)
        .min(SG_MAX_SEGMENTS * PAGE_SIZE)
}

/// The mmap buffer of `dev`, allocated on first use.
fn buffer(dev: &Dma24) -> Result<Arc<MmapBuf>> {
    let mut slot = dev.zc.buf.lock();
    if let Some(buf) = slot.as_ref() {
        return Ok(buf.clone());
    }
    let buf = Arc::new(MmapBuf::new(mmap_size(dev))?, GFP_KERNEL)?;
    *slot = Some(buf.clone());
    Ok(buf)
}

/// `mmap()` of `/dev/dma24-N`: the device's buffer, shared (see [`MmapBuf::map_into`]).
///
/// Runs with the process's mmap lock held, so it must not take the transfer
/// mutex (transfers fault user pages in while holding it): an mmap after
/// unbind maps the buffer, which is only memory; its transfers get `ENODEV`.
pub(crate) fn mmap(dev: &Dma24, vma: &VmaNew) -> Result {
    buffer(dev)?.map_into(vma)?;
    bump(&dev.zc.counters.mmaps, 1);
    Ok(())
}

fn direction(flags: u32, allowed: u32) -> Result<Dir> {
    if flags & !allowed != 0 {
        return Err(EINVAL);
    }
    Ok(if flags & DMA24_XFER_FROM_DEVICE != 0 { Dir::FromDevice } else { Dir::ToDevice })
}

/// Moves all of the mapped `map` between it and device memory at
/// `dev_offset` with one descriptor per page. Returns the first
/// descriptor's bus address and the number of descriptors.
fn dma_mapped(live: &mut Live<'_>, map: &mut SgMap<'_>, dev_offset: usize, dir: Dir) -> Result<(u64, u32)> {
    let len = map.len();
    let table = map.table();
    let first = table.iter().next().map_or(0, |e| e.dma_address());
    let segments = u32::try_from(table.iter().count())?;
    live.dma_sg(map, dev_offset, len, dir)?;
    Ok((first, segments))
}

/// One DMA between bytes `at..at + len` of `buf` and device memory at
/// `dev_offset` (`MMAP_XFER`, and the kernel-side tests with a buffer of
/// their own), through the standing mapping of `buf` ([`MmapDma`], made
/// now if the device has none of `buf`). Returns the first bus address and
/// the descriptor count (one per 64 KiB piece touched).
pub(crate) fn mmap_transfer(
    live: &mut Live<'_>,
    buf: Arc<MmapBuf>,
    at: usize,
    dev_offset: usize,
    len: usize,
    dir: Dir,
) -> Result<(u64, u32)> {
    live.check_range(dev_offset, len)?;
    if !live.state.mmap_dma.as_ref().is_some_and(|m| m.maps(&buf)) {
        // Another buffer's mapping (a test's) is undone before this one is made.
        live.state.mmap_dma = None;
        live.state.mmap_dma = Some(MmapDma::new(live.ddev, buf)?);
    }
    let map = live.state.mmap_dma.as_ref().ok_or(EINVAL)?;
    let segs = map.segments(at, len)?;
    map.sync(&segs, false);
    live.active_alloc = Allocator::SgPagesDma as u32;
    let done = live.dma_segments(&segs, dev_offset, len, dir);
    if dir == Dir::FromDevice {
        if let Some(map) = live.state.mmap_dma.as_ref() {
            map.sync(&segs, true);
        }
    }
    done?;
    let c = &live.dev.zc.counters;
    bump(&c.mmap_xfers, 1);
    bump(&c.mmap_bytes, len as u64);
    Ok((segs.first().map_or(0, |s| s.0), u32::try_from(segs.len())?))
}

fn mmap_xfer(dev: &Dma24, req: &mut Dma24MmapXfer) -> Result {
    let dir = direction(req.flags, DMA24_XFER_FROM_DEVICE)?;
    let (at, dev_offset, len) = (
        usize::try_from(req.buf_offset)?,
        usize::try_from(req.dev_offset)?,
        usize::try_from(req.len)?,
    );
    let buf = buffer(dev)?;
    let (bus, segments) =
        dev.with_live(|live| mmap_transfer(live, buf, at, dev_offset, len, dir))?;
    req.bus_addr = bus;
    req.segments = segments;
    Ok(())
}

/// What the zero-copy attempt of `XFER_USER` came to.
enum UserOutcome {
    Done,
    /// The DMA API refused the pages (`EIO`).
    Refused,
    /// The DMA API refused the pages and the caller asked for a bounce.
    Bounce,
}

/// `XFER_USER` (also called by the KUnit suites): checks, pins, maps, DMAs,
/// unmaps and unpins; see the module documentation. Fills in the out
/// fields of `req` (also on the `EIO` of a refused mapping).
pub(crate) fn xfer_user(dev: &Dma24, req: &mut Dma24XferUser) -> Result {
    let dir = direction(req.flags, DMA24_XFER_FROM_DEVICE | DMA24_XFER_BOUNCE)?;
    let bounce = req.flags & DMA24_XFER_BOUNCE != 0;
    let (len, dev_offset) = (usize::try_from(req.len)?, usize::try_from(req.dev_offset)?);
    let addr = usize::try_from(req.user_addr).map_err(|_| EFAULT)?;
    // Length and page limits before anything is pinned: one descriptor per page touched.
    match pages_spanned(addr, len) {
        Some(n) if len > 0 && n <= SG_MAX_SEGMENTS => {}
        Some(_) => return Err(EINVAL),
        None => return Err(EFAULT),
    }
    if dev_offset.checked_add(len).is_none_or(|end| end > dev.info.devmem_size) {
        return Err(EINVAL);
    }
    req.segments = 0;
    req.bus_addr = 0;
    req.bounced = 0;
    // Pinning may fault pages in, under the caller's mmap lock: done before the transfer mutex is
    // taken (`mmap()`, which runs with the mmap lock held, never takes that mutex).
    let pages = UserPages::pin(addr, len, dir == Dir::FromDevice)?;
    let c = &dev.zc.counters;
    bump(&c.user_pages_pinned, pages.page_ptrs().len() as u64);
    req.phys_addr = pages.page_ptrs().first().map_or(0, |&p| page_phys(p)) + pages.offset() as u64;
    let outcome = dev.with_live(|live| {
        let mut buf = SgBuf::user_pages(pages);
        let beyond = buf.first_page_above(dev.info.dma_mask);
        live.active_alloc = u32::MAX;
        match SgMap::new(live.ddev, buf, dir.dma()) {
            Ok(mut map) => {
                let (bus, segments) = dma_mapped(live, &mut map, dev_offset, dir)?;
                req.bus_addr = bus;
                req.segments = segments;
                bump(&c.user_xfers, 1);
                bump(&c.user_bytes, len as u64);
                Ok(UserOutcome::Done)
            }
            // `dma_map_sgtable()` failed: no descriptor written, nothing started, pages unpinned.
            Err(e) if e == EIO => {
                let phys = beyond.unwrap_or(req.phys_addr);
                req.phys_addr = phys;
                refused(live, phys, len, dev_offset, dir, bounce);
                Ok(if bounce { UserOutcome::Bounce } else { UserOutcome::Refused })
            }
            Err(e) => Err(e),
        }
    })?;
    match outcome {
        UserOutcome::Done => Ok(()),
        UserOutcome::Refused => Err(EIO),
        UserOutcome::Bounce => {
            bounce_transfer(dev, addr, len, dev_offset, dir)?;
            req.bounced = 1;
            Ok(())
        }
    }
}

/// Reports a user buffer the DMA API refused: `dev_err` and last error when
/// the call fails, `dev_info` when it bounces.
fn refused(live: &Live<'_>, phys: u64, len: usize, dev_offset: usize, dir: Dir, bounce: bool) {
    let dev = live.dev;
    bump(&dev.zc.counters.user_refused, 1);
    if bounce {
        dev_info!(
            live.pdev,
            "{}: user page at physical {:#x} is beyond the DMA mask {:#x}: bouncing {} bytes \
             through kmalloc(GFP_DMA) (DMA24_XFER_BOUNCE)\n",
            dev.name,
            phys,
            dev.info.dma_mask,
            len
        );
        return;
    }
    bump(&dev.stats.map_errors, 1);
    bump(&dev.stats.transfers_failed, 1);
    dev_err!(
        live.pdev,
        "{}: zero-copy DMA of {} user bytes refused: user page at physical {:#x} is beyond the \
         device's DMA mask {:#x}; nothing was started (DMA24_XFER_BOUNCE bounces through \
         ZONE_DMA, mmap() of /dev/{} needs no bounce) -> EIO\n",
        dev.name,
        len,
        phys,
        dev.info.dma_mask,
        dev.name
    );
    dev.record_error(LastError {
        errno: EIO.to_errno(),
        source: ErrorSource::Mapping,
        alloc: u32::MAX,
        from_device: dir == Dir::FromDevice,
        bus_addr: phys,
        dev_offset: u32::try_from(dev_offset).unwrap_or(u32::MAX),
        len: u32::try_from(len).unwrap_or(u32::MAX),
        ..LastError::default()
    });
}

/// The bounce: the read()/write() path's chunked copy through a
/// `kmalloc(GFP_DMA)` buffer, with the user buffer as source or sink.
fn bounce_transfer(dev: &Dma24, addr: usize, len: usize, dev_offset: usize, dir: Dir) -> Result {
    let user = UserSlice::new(UserPtr::from_addr(addr), len);
    let (mut reader, mut writer) = user.reader_writer();
    let mut io = |piece: &mut [u8]| -> usize {
        let copied = match dir {
            Dir::ToDevice => reader.read_slice(piece),
            Dir::FromDevice => writer.write_slice(piece),
        };
        if copied.is_ok() { piece.len() } else { 0 }
    };
    let done = chardev::user_transfer_with(
        dev,
        Some(Allocator::KmallocDma),
        dev_offset,
        len,
        dir,
        &mut io,
    )?;
    if done != len {
        return Err(EFAULT);
    }
    let c = &dev.zc.counters;
    bump(&c.bounced_xfers, 1);
    bump(&c.bounced_bytes, len as u64);
    Ok(())
}

impl Dma24Zerocopy {
    fn new(dev: &Dma24) -> Self {
        let c = &dev.zc.counters;
        Dma24Zerocopy {
            mmap_size: mmap_size(dev) as u64,
            mmaps: get(&c.mmaps),
            mmap_xfers: get(&c.mmap_xfers),
            mmap_bytes: get(&c.mmap_bytes),
            user_xfers: get(&c.user_xfers),
            user_bytes: get(&c.user_bytes),
            user_pages_pinned: get(&c.user_pages_pinned),
            user_refused: get(&c.user_refused),
            bounced_xfers: get(&c.bounced_xfers),
            bounced_bytes: get(&c.bounced_bytes),
        }
    }
}

/// The counters of `dev` as `key value` pairs, for debugfs.
pub(crate) fn counter_lines(dev: &Dma24) -> [(&'static str, u64); 10] {
    let z = Dma24Zerocopy::new(dev);
    [
        ("mmap_size", z.mmap_size),
        ("mmaps", z.mmaps),
        ("mmap_xfers", z.mmap_xfers),
        ("mmap_bytes", z.mmap_bytes),
        ("user_xfers", z.user_xfers),
        ("user_bytes", z.user_bytes),
        ("user_pages_pinned", z.user_pages_pinned),
        ("user_refused", z.user_refused),
        ("bounced_xfers", z.bounced_xfers),
        ("bounced_bytes", z.bounced_bytes),
    ]
}

/// The ioctls of this file (`ENOTTY` for any other number).
pub(crate) fn ioctl(dev: &Dma24, cmd: u32, arg: usize) -> Result<isize> {
    let user = UserSlice::new(UserPtr::from_addr(arg), kernel::ioctl::_IOC_SIZE(cmd));
    match cmd {
        DMA24_IOC_XFER_USER => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut req: Dma24XferUser = reader.read()?;
            let result = {
                let _timed = dev.timing.call(Call::User);
                xfer_user(dev, &mut req)
            };
            writer.write(&req)?;
            result?;
        }
        DMA24_IOC_MMAP_XFER => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut req: Dma24MmapXfer = reader.read()?;
            {
                let _timed = dev.timing.call(Call::Mmap);
                mmap_xfer(dev, &mut req)?;
            }
            writer.write(&req)?;
        }
        DMA24_IOC_GET_ZEROCOPY => user.writer().write(&Dma24Zerocopy::new(dev))?,
        _ => return Err(ENOTTY),
    }
    Ok(0)
}
