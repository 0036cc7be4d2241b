// SPDX-License-Identifier: GPL-2.0

//! `/dev/dma24-N`: one misc device per bound function.
//!
//! - `write()`: copy_from_user into a DMA buffer from the selected allocator,
//!   then DMA to device memory at the file offset.
//! - `read()`: DMA from device memory at the file offset into the buffer,
//!   then copy_to_user.
//! - `lseek()`: within `[0, device memory size]` (SEEK_SET/CUR/END).
//! - `ioctl()`: see [`Dma24Info`] and the `DMA24_IOC_*` numbers below; the
//!   C view of this ABI is in README.md. Numbers 0x10-0x1f and `mmap()`
//!   are the zero-copy paths, in [`crate::zerocopy`].
//!
//! `kernel::miscdevice` provides the file operations (open, read_iter,
//! write_iter, ioctl, release) but neither `llseek` nor `owner` (so an open
//! file would not pin the module). [`Chardev`] registers a copy of its
//! operations table with both filled in.

use crate::{
    alloc_lab::{Allocator, Mapping, RoundTrip},
    state::{get, Dma24, IrqMode},
    timing::Call,
    transfer::{Dir, CHUNK},
};
use core::marker::PhantomPinned;
use kernel::{
    bindings,
    error::to_result,
    fs::{File, Kiocb},
    ioctl::{_IOR, _IOW, _IOWR},
    iov::{IovIterDest, IovIterSource},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::virt::VmaNew,
    prelude::*,
    sync::{Arc, ArcBorrow},
    transmute::{AsBytes, FromBytes},
    types::{ForeignOwnable, Opaque},
    uaccess::UserSlice,
};

/// ioctl type byte ("D2" for dma24).
pub(crate) const DMA24_IOC_MAGIC: u32 = 0xd2;

/// Device facts (read-only).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24Info {
    /// DMA mask width in bits.
    pub(crate) mask_bits: u32,
    /// REG_CAPS.
    pub(crate) caps: u32,
    /// REG_VERSION.
    pub(crate) version: u32,
    /// Device memory size in bytes (the file size).
    pub(crate) devmem_size: u32,
    /// 0 = INTx, 1 = MSI.
    pub(crate) irq_mode: u32,
    /// N in /dev/dma24-N.
    pub(crate) index: u32,
    /// Current allocator (DMA24_ALLOC_*).
    pub(crate) alloc: u32,
    /// Number of allocators.
    pub(crate) alloc_count: u32,
    /// The DMA mask given to dma_set_mask_and_coherent().
    pub(crate) dma_mask: u64,
    /// Largest transfer done in one DMA (read/write are split into these).
    pub(crate) chunk: u32,
    pub(crate) reserved: u32,
}

/// Driver and device counters.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24Counters {
    /// Transfers started (STARTs written; each is one `transfer` in the host trace).
    pub(crate) starts: u64,
    pub(crate) transfers_ok: u64,
    pub(crate) transfers_failed: u64,
    pub(crate) bytes_to_device: u64,
    pub(crate) bytes_from_device: u64,
    pub(crate) map_errors: u64,
    pub(crate) device_errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) irqs: u64,
    pub(crate) spurious_irqs: u64,
    pub(crate) lost_irqs: u64,
    /// The device's own counters (REG_COUNT_*, REG_LAST_SEQ, REG_FAULT_ADDR).
    pub(crate) dev_transfers: u64,
    pub(crate) dev_bytes_to_device: u64,
    pub(crate) dev_bytes_from_device: u64,
    pub(crate) dev_faults: u64,
    pub(crate) dev_last_seq: u64,
    pub(crate) dev_fault_addr: u64,
}

/// The most recent failure.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24LastError {
    /// Failures so far (0: none yet, the rest is zero).
    pub(crate) count: u64,
    /// Negative errno returned.
    pub(crate) errno: i32,
    /// 1 device, 2 DMA mapping, 3 timeout, 4 allocation.
    pub(crate) source: u32,
    /// REG_ERROR code (source 1).
    pub(crate) dev_error: u32,
    /// Allocator in use.
    pub(crate) alloc: u32,
    /// 0 to device, 1 from device.
    pub(crate) direction: u32,
    pub(crate) dev_offset: u32,
    pub(crate) len: u32,
    pub(crate) reserved: u32,
    /// Programmed bus address (source 1), or the buffer's physical address (source 2).
    pub(crate) bus_addr: u64,
    /// REG_FAULT_ADDR (source 1).
    pub(crate) fault_addr: u64,
    /// REG_LAST_SEQ: the trace record (source 1).
    pub(crate) seq: u64,
}

/// Number of result slots in [`Dma24Selftest`].
pub(crate) const SELFTEST_SLOTS: usize = 8;

/// Self-test request and report: one round trip per allocator.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Dma24Selftest {
    /// In: device memory offset to use (its contents are overwritten).
    pub(crate) dev_offset: u32,
    /// In: bytes per round trip, 1..=chunk; 0 means 4096.
    pub(crate) len: u32,
    /// Out: bit i set if allocator i behaved as the DMA API requires (mapped
    /// and verified if its buffer was within the mask, refused with -EIO and
    /// never started otherwise).
    pub(crate) passed: u32,
    /// Out: bit i set if allocator i's buffer was within the DMA mask.
    pub(crate) within_mask: u32,
    /// Out: 0 or -errno per allocator.
    pub(crate) result: [i32; SELFTEST_SLOTS],
    /// Out: highest physical address of allocator i's buffer (0 if none).
    pub(crate) phys_hi: [u64; SELFTEST_SLOTS],
}

// SAFETY: The four ABI structs are `#[repr(C)]`, made only of integers and laid out without
// padding (checked below), so they have no uninitialised bytes...
unsafe impl AsBytes for Dma24Info {}
// SAFETY: ...and any bit pattern is a valid value.
unsafe impl FromBytes for Dma24Info {}
// SAFETY: As above.
unsafe impl AsBytes for Dma24Counters {}
// SAFETY: As above.
unsafe impl FromBytes for Dma24Counters {}
// SAFETY: As above.
unsafe impl AsBytes for Dma24LastError {}
// SAFETY: As above.
unsafe impl FromBytes for Dma24LastError {}
// SAFETY: As above.
unsafe impl AsBytes for Dma24Selftest {}
// SAFETY: As above.
unsafe impl FromBytes for Dma24Selftest {}

const _: () = {
    assert!(core::mem::size_of::<Dma24Info>() == 48);
    assert!(core::mem::size_of::<Dma24Counters>() == 136);
    assert!(core::mem::size_of::<Dma24LastError>() == 64);
    assert!(core::mem::size_of::<Dma24Selftest>() == 112);
};

pub(crate) const DMA24_IOC_GET_INFO: u32 = _IOR::<Dma24Info>(DMA24_IOC_MAGIC, 0);
pub(crate) const DMA24_IOC_SET_ALLOC: u32 = _IOW::<u32>(DMA24_IOC_MAGIC, 1);
pub(crate) const DMA24_IOC_GET_ALLOC: u32 = _IOR::<u32>(DMA24_IOC_MAGIC, 2);
pub(crate) const DMA24_IOC_GET_COUNTERS: u32 = _IOR::<Dma24Counters>(DMA24_IOC_MAGIC, 3);
pub(crate) const DMA24_IOC_GET_LAST_ERROR: u32 = _IOR::<Dma24LastError>(DMA24_IOC_MAGIC, 4);
pub(crate) const DMA24_IOC_SELFTEST: u32 = _IOWR::<Dma24Selftest>(DMA24_IOC_MAGIC, 5);

// The numbers README.md documents.
const _: () = {
    assert!(DMA24_IOC_GET_INFO == 0x8030_d200);
    assert!(DMA24_IOC_SET_ALLOC == 0x4004_d201);
    assert!(DMA24_IOC_GET_ALLOC == 0x8004_d202);
    assert!(DMA24_IOC_GET_COUNTERS == 0x8088_d203);
    assert!(DMA24_IOC_GET_LAST_ERROR == 0x8040_d204);
    assert!(DMA24_IOC_SELFTEST == 0xc070_d205);
};

impl Dma24Info {
    /// The facts of `dev`.
    fn new(dev: &Dma24) -> Self {
        let info = &dev.info;
        Dma24Info {
            mask_bits: info.mask_bits,
            caps: info.caps,
            version: info.version,
            devmem_size: u32::try_from(info.devmem_size).unwrap_or(u32::MAX),
            irq_mode: match info.irq_mode {
                IrqMode::Intx => 0,
                IrqMode::Msi => 1,
            },
            index: dev.index as u32,
            alloc: dev.allocator() as u32,
            alloc_count: Allocator::ALL.len() as u32,
            dma_mask: info.dma_mask,
            chunk: CHUNK as u32,
            reserved: 0,
        }
    }
}

impl Dma24Counters {
    /// The counters of `dev` (device side zero once it is unbound).
    fn new(dev: &Dma24) -> Self {
        let s = &dev.stats;
        let d = dev.device_counters().unwrap_or_default();
        Dma24Counters {
            starts: get(&s.starts),
            transfers_ok: get(&s.transfers_ok),
            transfers_failed: get(&s.transfers_failed),
            bytes_to_device: get(&s.bytes_to_device),
            bytes_from_device: get(&s.bytes_from_device),
            map_errors: get(&s.map_errors),
            device_errors: get(&s.device_errors),
            timeouts: get(&s.timeouts),
            irqs: get(&s.irqs),
            spurious_irqs: get(&s.spurious_irqs),
            lost_irqs: get(&s.lost_irqs),
            dev_transfers: d.transfers,
            dev_bytes_to_device: d.bytes_to_device,
            dev_bytes_from_device: d.bytes_from_device,
            dev_faults: d.faults,
            dev_last_seq: d.last_seq,
            dev_fault_addr: d.fault_addr,
        }
    }
}

impl Dma24LastError {
    /// The last failure of `dev`.
    fn new(dev: &Dma24) -> Self {
        let e = dev.last_error();
        Dma24LastError {
            count: e.count,
            errno: e.errno,
            source: e.source as u32,
            dev_error: e.dev_error,
            alloc: e.alloc,
            direction: u32::from(e.from_device),
            dev_offset: e.dev_offset,
            len: e.len,
            reserved: 0,
            bus_addr: e.bus_addr,
            fault_addr: e.fault_addr,
            seq: e.seq,
        }
    }
}

impl Dma24Selftest {
    /// Runs the self-test this request describes on `dev` and fills in its
    /// results.
    pub(crate) fn run(&mut self, dev: &Dma24) -> Result {
        let req = self;
        let len = match req.len {
            0 => 4096,
            n => usize::try_from(n)?,
        };
        if len > CHUNK {
            return Err(EINVAL);
        }
        let dev_offset = usize::try_from(req.dev_offset)?;
        dev.with_live(|live| {
            live.check_range(dev_offset, len)?;
            req.passed = 0;
            req.within_mask = 0;
            for (i, alloc) in Allocator::SELFTEST.into_iter().enumerate() {
                let rt = RoundTrip::run(live, alloc, dev_offset, len, 0, i as u8);
                let errno = rt.result.err().map_or(0, |e| e.to_errno());
                req.result[i] = errno;
                req.phys_hi[i] = rt.phys_hi;
                if rt.predicted_ok {
                    req.within_mask |= 1 << i;
                }
                let as_api_says = if rt.predicted_ok {
                    errno == 0
                } else {
                    errno == EIO.to_errno() && rt.device_transfers == 0
                };
                if as_api_says {
                    req.passed |= 1 << i;
                }
            }
            Ok(())
        })
    }
}

/// Validates a user range of `dev` at `pos` for up to `want` bytes and
/// returns how many bytes to move: 0 at end of file for reads, `ENOSPC` for
/// writes, `EINVAL` for a negative offset or one past the end.
pub(crate) fn user_range(dev: &Dma24, pos: i64, want: usize, dir: Dir) -> Result<usize> {
    let size = dev.info.devmem_size;
    let pos = usize::try_from(pos).map_err(|_| EINVAL)?;
    if pos > size {
        return Err(EINVAL);
    }
    let avail = size - pos;
    if want == 0 {
        return Ok(0);
    }
    if avail == 0 {
        return match dir {
            Dir::FromDevice => Ok(0),
            Dir::ToDevice => Err(ENOSPC),
        };
    }
    Ok(want.min(avail))
}

/// Moves `len` bytes between device memory of `dev` at `pos` and user
/// memory via `io` (which copies to or from one piece of the DMA buffer and
/// returns the bytes it copied), in chunks through one mapped bounce buffer.
/// Returns the bytes moved; an error only if nothing was moved.
pub(crate) fn user_transfer(
    dev: &Dma24,
    pos: usize,
    len: usize,
    dir: Dir,
    io: &mut dyn FnMut(&mut [u8]) -> usize,
) -> Result<usize> {
    user_transfer_with(dev, None, pos, len, dir, io)
}

/// [`user_transfer`] through a buffer from `alloc` (`None`: the device's
/// current allocator).
pub(crate) fn user_transfer_with(
    dev: &Dma24,
    alloc: Option<Allocator>,
    pos: usize,
    len: usize,
    dir: Dir,
    io: &mut dyn FnMut(&mut [u8]) -> usize,
) -> Result<usize> {
    dev.with_live(|live| {
        let alloc = alloc.unwrap_or(live.state.alloc);
        let cap = len.min(alloc.max_len());
        let mut map = Mapping::new(live, alloc, cap, 0, dir)?;
        let mut done = 0;
        let partial = |done: usize, e: Error| if done == 0 { Err(e) } else { Ok(done) };
        while done < len {
            let n = (len - done).min(cap);
            let mut copied = 0;
            let mut copy = |piece: &mut [u8]| {
                let c = io(piece);
                copied += c;
                c == piece.len()
            };
            match dir {
                Dir::ToDevice => {
                    map.cpu(n, &mut copy);
                    if copied == 0 {
                        return partial(done, EFAULT);
                    }
                    if let Err(e) = map.dma(live, pos + done, copied, dir) {
                        return partial(done, e);
                    }
                }
                Dir::FromDevice => {
                    if let Err(e) = map.dma(live, pos + done, n, dir) {
                        return partial(done, e);
                    }
                    map.cpu(n, &mut copy);
                    if copied == 0 {
                        return partial(done, EFAULT);
                    }
                }
            }
            done += copied;
            if copied < n {
                break;
            }
        }
        Ok(done)
    })
}

/// The ioctl handler (also called by the KUnit suites).
pub(crate) fn ioctl(dev: &Dma24, cmd: u32, arg: usize) -> Result<isize> {
    let user = UserSlice::new(UserPtr::from_addr(arg), kernel::ioctl::_IOC_SIZE(cmd));
    match cmd {
        DMA24_IOC_GET_INFO => user.writer().write(&Dma24Info::new(dev))?,
        DMA24_IOC_SET_ALLOC => {
            let v: u32 = user.reader().read()?;
            dev.set_allocator(Allocator::from_u32(v)?);
        }
        DMA24_IOC_GET_ALLOC => user.writer().write(&(dev.allocator() as u32))?,
        DMA24_IOC_GET_COUNTERS => user.writer().write(&Dma24Counters::new(dev))?,
        DMA24_IOC_GET_LAST_ERROR => user.writer().write(&Dma24LastError::new(dev))?,
        DMA24_IOC_SELFTEST => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut req: Dma24Selftest = reader.read()?;
            req.run(dev)?;
            writer.write(&req)?;
        }
        // Allocator lab part 2: nr 0x20-0x2f (src/lab_ioctl.rs).
        _ if crate::lab_ioctl::owns(cmd) => return crate::lab_ioctl::ioctl(dev, cmd, user),
        // 0x10-0x1f: zero copy (src/zerocopy.rs; anything else: ENOTTY there).
        _ => return crate::zerocopy::ioctl(dev, cmd, arg),
    }
    Ok(0)
}

/// The file operations of `/dev/dma24-N` (`kernel::miscdevice` builds its
/// operations table from this type; each open file holds the device).
pub(crate) struct Dma24File;

#[vtable]
impl MiscDevice for Dma24File {
    type Ptr = Arc<Dma24>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Dma24>> {
        let dev = Chardev::from_registration(misc).dev.clone();
        if !dev.is_alive() {
            return Err(ENODEV);
        }
        Ok(dev)
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let dev = kiocb.file();
        let pos = kiocb.ki_pos();
        let len = user_range(&dev, pos, iov.len(), Dir::FromDevice)?;
        if len == 0 {
            return Ok(0);
        }
        let start = usize::try_from(pos)?;
        let _timed = dev.timing.call(Call::Rw);
        let done =
            user_transfer(&dev, start, len, Dir::FromDevice, &mut |piece| iov.copy_to_iter(piece))?;
        *kiocb.ki_pos_mut() = i64::try_from(start + done)?;
        Ok(done)
    }

    fn write_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let dev = kiocb.file();
        let pos = kiocb.ki_pos();
        let len = user_range(&dev, pos, iov.len(), Dir::ToDevice)?;
        if len == 0 {
            return Ok(0);
        }
        let start = usize::try_from(pos)?;
        let _timed = dev.timing.call(Call::Rw);
        let done =
            user_transfer(&dev, start, len, Dir::ToDevice, &mut |piece| iov.copy_from_iter(piece))?;
        *kiocb.ki_pos_mut() = i64::try_from(start + done)?;
        Ok(done)
    }

    fn ioctl(dev: ArcBorrow<'_, Dma24>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        ioctl(&dev, cmd, arg)
    }

    fn mmap(dev: ArcBorrow<'_, Dma24>, _file: &File, vma: &VmaNew) -> Result {
        crate::zerocopy::mmap(&dev, vma)
    }
}

/// `llseek` for `/dev/dma24-N`: the file is as long as device memory.
///
/// # Safety
///
/// Only called by the VFS, for a file opened through [`Chardev`]'s operations.
unsafe extern "C" fn dma24_llseek(
    file: *mut bindings::file,
    offset: bindings::loff_t,
    whence: c_int,
) -> bindings::loff_t {
    // SAFETY: The file was opened through our `open`, which stored an `Arc<Dma24>` with
    // `into_foreign()` in `private_data`; it stays there until `release`, which cannot run
    // concurrently with `llseek`.
    let dev = unsafe { <Arc<Dma24> as ForeignOwnable>::borrow((*file).private_data) };
    let size = bindings::loff_t::try_from(dev.info.devmem_size).unwrap_or(bindings::loff_t::MAX);
    // SAFETY: `file` is a valid open file.
    unsafe { bindings::fixed_size_llseek(file, offset, whence, size) }
}

/// A registered `/dev/dma24-N`: a `struct miscdevice` whose operations are
/// `kernel::miscdevice`'s for [`Dma24File`] plus `llseek` and `owner`.
///
/// # Invariants
///
/// `misc` is registered with `misc_register()` until drop, with `fops` as its
/// operations; every registered miscdevice using `Dma24File`'s operations is the
/// `misc` field of a `Chardev`.
#[pin_data(PinnedDrop)]
pub(crate) struct Chardev {
    dev: Arc<Dma24>,
    #[pin]
    fops: Opaque<bindings::file_operations>,
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: Registration and deregistration may happen on any task; `&Chardev` only reads.
unsafe impl Send for Chardev {}
// SAFETY: See above.
unsafe impl Sync for Chardev {}

impl Chardev {
    /// Registers `/dev/<dev.name>`.
    pub(crate) fn register(dev: Arc<Dma24>) -> impl PinInit<Self, Error> {
        let opts = MiscDeviceOptions { name: dev.name };
        try_pin_init!(&this in Self {
            dev,
            fops <- Opaque::ffi_init(move |slot: *mut bindings::file_operations| {
                let raw = opts.into_raw::<Dma24File>();
                // SAFETY: `raw.fops` points to the static operations table `kernel::miscdevice`
                // builds for `Dma24File`.
                let mut fops = unsafe { *raw.fops };
                fops.owner = crate::THIS_MODULE.as_ptr();
                fops.llseek = Some(dma24_llseek);
                // SAFETY: `slot` is valid for writes.
                unsafe { slot.write(fops) };
            }),
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut misc = opts.into_raw::<Dma24File>();
                // SAFETY: `fops` was initialised above and is pinned in the same allocation.
                misc.fops = Opaque::cast_into(unsafe { &raw const (*this.as_ptr()).fops });
                // SAFETY: `slot` is valid for writes.
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a filled-in miscdevice that stays pinned until `drop`
                // deregisters it; `dev` (read by `open`) is already initialised.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
            _pin: PhantomPinned,
        })
    }

    /// The `Chardev` a `Dma24File` misc registration belongs to.
    fn from_registration(misc: &MiscDeviceRegistration<Dma24File>) -> &Chardev {
        let field = Opaque::cast_from(misc.as_raw()).cast_mut();
        // SAFETY: By the type invariants every registered miscdevice with `Dma24File`'s operations is
        // the `misc` field of a live, pinned `Chardev` (`misc_open()` holds `misc_mtx`, so it
        // cannot be deregistered and freed meanwhile).
        unsafe { &*kernel::container_of!(field, Chardev, misc) }
    }
}

#[pinned_drop]
impl PinnedDrop for Chardev {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants `misc` is registered; deregistered once, here.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}
