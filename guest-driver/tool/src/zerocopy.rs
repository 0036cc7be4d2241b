//! The zero-copy paths of `/dev/dma24-N` from user space (the ABI is the C
//! header in guest-driver/README.md; the driver checks these numbers and
//! sizes at build time):
//!
//! - `mmap`: the driver's ZONE_DMA buffer mapped shared, filled and checked
//!   here, moved with `DMA24_IOC_MMAP_XFER`; MAP_PRIVATE and a mapping past
//!   the buffer must fail with EINVAL; the mapping must outlive close() and
//!   an unbind of the device.
//! - `zerocopy`: `DMA24_IOC_XFER_USER` on this process's own pages. On a
//!   device that reaches them (a 32- or 64-bit mask) it is zero copy: the
//!   driver's descriptors carry the pages' physical addresses (also read from
//!   /proc/self/pagemap). On a 24-bit device it must be refused with EIO and
//!   nothing started, and with `DMA24_XFER_BOUNCE` go through ZONE_DMA.
//!
//! Lines the host harness cross-checks with the DMA trace (each `ok` or
//! `bounced` line is one round trip of `pattern::bytes(len, seed)`):
//! `dma24-tool: mmap ok offset=O len=N seed=S bus=B segments=K hash=H`,
//! `dma24-tool: zerocopy ok offset=O len=N seed=S phys=P pagemap=P bus=B segments=K hash=H`,
//! `dma24-tool: zerocopy bounced offset=O len=N seed=S hash=H`,
//! `dma24-tool: zerocopy refused offset=O len=N phys=P errno=EIO starts=0`.

use dma24_tool::pattern;
use std::fs::{File, OpenOptions};
use std::io::{Error, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;

const MAGIC: u64 = 0xd2;
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (MAGIC << 8) | nr
}
const READ: u64 = 2;
const RW: u64 = 3;

/// `struct dma24_info` (48 bytes), the fields used here.
#[repr(C)]
#[derive(Default)]
pub struct Info {
    pub mask_bits: u32,
    caps: u32,
    version: u32,
    pub devmem_size: u32,
    irq_mode: u32,
    index: u32,
    alloc: u32,
    alloc_count: u32,
    dma_mask: u64,
    chunk: u32,
    pub reserved: u32,
}

/// `struct dma24_xfer_user` (48 bytes).
#[repr(C)]
#[derive(Default, Debug)]
pub struct XferUser {
    pub user_addr: u64,
    pub len: u32,
    pub dev_offset: u32,
    pub flags: u32,
    pub segments: u32,
    pub bus_addr: u64,
    pub phys_addr: u64,
    pub bounced: u32,
    pub reserved: u32,
}

/// `struct dma24_mmap_xfer` (32 bytes).
#[repr(C)]
#[derive(Default, Debug)]
pub struct MmapXfer {
    pub buf_offset: u32,
    pub dev_offset: u32,
    pub len: u32,
    pub flags: u32,
    pub bus_addr: u64,
    pub segments: u32,
    pub reserved: u32,
}

/// `struct dma24_zerocopy` (80 bytes).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct Zerocopy {
    pub mmap_size: u64,
    pub mmaps: u64,
    pub mmap_xfers: u64,
    pub mmap_bytes: u64,
    pub user_xfers: u64,
    pub user_bytes: u64,
    pub user_pages_pinned: u64,
    pub user_refused: u64,
    pub bounced_xfers: u64,
    pub bounced_bytes: u64,
}

pub const GET_INFO: u64 = ioc(READ, 0, std::mem::size_of::<Info>());
/// `GET_COUNTERS`: 17 `u64`s, `starts` first.
pub const GET_COUNTERS: u64 = ioc(READ, 3, 136);
pub const XFER_USER: u64 = ioc(RW, 0x10, std::mem::size_of::<XferUser>());
pub const MMAP_XFER: u64 = ioc(RW, 0x11, std::mem::size_of::<MmapXfer>());
pub const GET_ZEROCOPY: u64 = ioc(READ, 0x12, std::mem::size_of::<Zerocopy>());
pub const FROM_DEVICE: u32 = 1;
pub const BOUNCE: u32 = 2;

/// `ioctl(fd, cmd, arg)`: the tool's one ioctl call. `cmd` holds the
/// kernel's 32-bit request number; libc's type for it differs (glibc
/// `c_ulong`, musl `c_int`, where numbers with the read bit set are
/// negative), and `as` gives each the same low 32 bits.
pub fn ioctl<T>(dev: &File, cmd: u64, arg: &mut T) -> Result<(), Error> {
    // SAFETY: `arg` is a live `#[repr(C)]` value of the size encoded in `cmd`.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), cmd as _, std::ptr::from_mut(arg)) };
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(())
    }
}

/// STARTs the driver has written so far (`dma24_counters.starts`).
pub fn starts(dev: &File) -> Result<u64, Error> {
    let mut c = [0u64; 17];
    ioctl(dev, GET_COUNTERS, &mut c)?;
    Ok(c[0])
}

pub fn zc_counters(dev: &File) -> Result<Zerocopy, Error> {
    let mut z = Zerocopy::default();
    ioctl(dev, GET_ZEROCOPY, &mut z)?;
    Ok(z)
}

pub fn info(dev: &File) -> Result<Info, Error> {
    let mut i = Info::default();
    ioctl(dev, GET_INFO, &mut i)?;
    Ok(i)
}

pub fn open(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {path}: {e}"))
}

/// A memory mapping, unmapped on drop.
pub struct Map {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Map {
    /// `mmap(NULL, len, RW, flags, fd, offset)`; `fd` -1 for anonymous memory.
    pub fn new(fd: i32, len: usize, flags: i32, offset: i64) -> Result<Map, Error> {
        // SAFETY: A fresh mapping at an address the kernel picks; nothing is overwritten.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(Map { ptr: p.cast(), len })
    }

    pub fn anonymous(len: usize) -> Result<Map, Error> {
        Map::new(-1, len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, 0)
    }

    /// The mapped bytes. The device writes them only during an ioctl this
    /// process makes, so there is no concurrent access while the slice lives.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr..ptr + len` is mapped read/write for the life of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: Unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Physical address of the byte at `addr` from /proc/self/pagemap (root
/// sees PFNs), if the kernel tells.
pub fn pagemap_phys(addr: usize) -> Option<u64> {
    let mut f = File::open("/proc/self/pagemap").ok()?;
    f.seek(SeekFrom::Start((addr / 4096 * 8) as u64)).ok()?;
    let mut e = [0u8; 8];
    f.read_exact(&mut e).ok()?;
    let e = u64::from_le_bytes(e);
    let pfn = e & ((1 << 55) - 1);
    (e >> 63 == 1 && pfn != 0).then(|| pfn * 4096 + (addr % 4096) as u64)
}

/// Tally of one command.
#[derive(Default)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
}

impl Tally {
    pub fn note(&mut self, what: &str, r: Result<String, String>) {
        match r {
            Ok(line) => {
                self.passed += 1;
                println!("dma24-tool: {line}");
            }
            Err(e) => {
                self.failed += 1;
                println!("dma24-tool: FAIL {what}: {e}");
            }
        }
    }
}

pub fn errno_name(e: &Error) -> String {
    match e.raw_os_error() {
        Some(libc::EIO) => "EIO".into(),
        Some(libc::EFAULT) => "EFAULT".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENODEV) => "ENODEV".into(),
        _ => e.to_string(),
    }
}

pub fn hash(len: usize, seed: u8) -> u64 {
    pattern::trace_hash(&pattern::bytes(len, seed))
}
