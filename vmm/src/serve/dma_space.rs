//! The guest memory a vfio-user client lets the device reach: the regions
//! it announces with DMA_MAP, each an mmap of the file descriptor it sent.
//! This is the `GuestMemory` the dma24 engine runs on, so its mask and RAM
//! checks apply as in `dmalab run`; an address no active map covers is not
//! RAM (a `not_ram` fault in the trace and the error register).
//!
//! Maps come and go while the device's worker may be copying. A region is
//! therefore never unmapped while the connection lasts: DMA_UNMAP only
//! retires its slot, so a copy already under way finishes into memory that
//! is still mapped (as with an IOMMU invalidation racing a real device, the
//! bytes land where the map pointed), and new accesses no longer find it.
//! Slots are a fixed arena of [`MAX_SLOTS`] (`OnceLock`: set once through a
//! shared reference, no unsafe code); a client that maps more gets ENOSPC.
//! QEMU maps a handful (RAM below and above 4 GiB, plus the shadowed ROM
//! pieces the firmware toggles at boot).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use thiserror::Error;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestRegionMmap, MmapRegion};

/// Maps (live and retired) one connection may make.
pub const MAX_SLOTS: usize = 256;

#[derive(Debug, Error)]
pub enum DmaSpaceError {
    #[error("DMA map of {size:#x} bytes at {addr:#x} is empty or wraps around")]
    BadRange { addr: u64, size: u64 },
    #[error("DMA map [{addr:#x}, +{size:#x}) overlaps an existing map")]
    Overlap { addr: u64, size: u64 },
    #[error("DMA map [{addr:#x}, +{size:#x}) at file offset {offset:#x} goes past the end of its file ({file_len:#x} bytes)")]
    PastFile {
        addr: u64,
        size: u64,
        offset: u64,
        file_len: u64,
    },
    #[error("DMA map file is not a sealed memfd (F_SEAL_SHRINK): a client could truncate it under the device")]
    NotSealed,
    #[error("cannot inspect the DMA map file: {0}")]
    Stat(#[source] std::io::Error),
    #[error("cannot mmap the DMA map: {0}")]
    Mmap(String),
    #[error("all {MAX_SLOTS} DMA map slots of this connection are used")]
    NoSlot,
    #[error("no DMA map is exactly [{addr:#x}, +{size:#x})")]
    NoSuchMap { addr: u64, size: u64 },
}

impl DmaSpaceError {
    /// The errno the client gets back.
    pub fn errno(&self) -> i32 {
        match self {
            DmaSpaceError::NoSlot => libc::ENOSPC,
            DmaSpaceError::Mmap(_) | DmaSpaceError::Stat(_) => libc::ENOMEM,
            _ => libc::EINVAL,
        }
    }
}

struct Slot {
    region: GuestRegionMmap,
    active: AtomicBool,
}

impl Slot {
    fn range(&self) -> (u64, u64) {
        let start = vm_memory::GuestMemoryRegion::start_addr(&self.region).0;
        let len = vm_memory::GuestMemoryRegion::len(&self.region);
        (start, start.saturating_add(len))
    }
}

struct Inner {
    slots: Vec<OnceLock<Slot>>,
    /// Serialises map/unmap (the worker only reads).
    update: Mutex<usize>,
}

/// The DMA-reachable memory of one connection (cheap to clone).
#[derive(Clone)]
pub struct DmaSpace(Arc<Inner>);

impl Default for DmaSpace {
    fn default() -> Self {
        DmaSpace(Arc::new(Inner {
            slots: (0..MAX_SLOTS).map(|_| OnceLock::new()).collect(),
            update: Mutex::new(0),
        }))
    }
}

fn file_len_sealed(file: &File) -> Result<u64, DmaSpaceError> {
    // SAFETY: F_GET_SEALS on a descriptor we own; no memory is passed.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(DmaSpaceError::NotSealed);
    }
    Ok(file.metadata().map_err(DmaSpaceError::Stat)?.len())
}

impl DmaSpace {
    /// Maps `size` bytes of `file` at `offset` as bus addresses
    /// `[addr, addr + size)`. `require_seal`: refuse files that could shrink
    /// (always true for clients; unit tests use plain files).
    pub fn map(
        &self,
        addr: u64,
        size: u64,
        file: File,
        offset: u64,
        require_seal: bool,
    ) -> Result<(), DmaSpaceError> {
        let end = addr
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or(DmaSpaceError::BadRange { addr, size })?;
        let file_len = if require_seal {
            file_len_sealed(&file)?
        } else {
            file.metadata().map_err(DmaSpaceError::Stat)?.len()
        };
        if offset.checked_add(size).is_none_or(|e| e > file_len) {
            return Err(DmaSpaceError::PastFile {
                addr,
                size,
                offset,
                file_len,
            });
        }
        let mut used = self.0.update.lock().unwrap_or_else(PoisonError::into_inner);
        if self.live().any(|s| {
            let (a, b) = s.range();
            addr < b && a < end
        }) {
            return Err(DmaSpaceError::Overlap { addr, size });
        }
        let slot = self.0.slots.get(*used).ok_or(DmaSpaceError::NoSlot)?;
        let len = usize::try_from(size).map_err(|_| DmaSpaceError::BadRange { addr, size })?;
        let mapping = MmapRegion::from_file(FileOffset::new(file, offset), len)
            .map_err(|e| DmaSpaceError::Mmap(e.to_string()))?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(addr))
            .ok_or(DmaSpaceError::BadRange { addr, size })?;
        if slot
            .set(Slot {
                region,
                active: AtomicBool::new(true),
            })
            .is_err()
        {
            return Err(DmaSpaceError::NoSlot); // cannot happen: `used` is ours
        }
        *used += 1;
        Ok(())
    }

    /// Retires the map that is exactly `[addr, addr + size)`.
    pub fn unmap(&self, addr: u64, size: u64) -> Result<(), DmaSpaceError> {
        let _guard = self.0.update.lock().unwrap_or_else(PoisonError::into_inner);
        let end = addr.saturating_add(size);
        let slot = self
            .live()
            .find(|s| s.range() == (addr, end))
            .ok_or(DmaSpaceError::NoSuchMap { addr, size })?;
        slot.active.store(false, Ordering::Release);
        Ok(())
    }

    /// Retires every map (DMA_UNMAP with the "all" flag, disconnect).
    pub fn unmap_all(&self) {
        let _guard = self.0.update.lock().unwrap_or_else(PoisonError::into_inner);
        for s in self.live() {
            s.active.store(false, Ordering::Release);
        }
    }

    /// The active maps as (start, end) bus addresses, for logs and tests.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.live().map(Slot::range).collect()
    }

    fn live(&self) -> impl Iterator<Item = &Slot> {
        self.0
            .slots
            .iter()
            .map_while(OnceLock::get)
            .filter(|s| s.active.load(Ordering::Acquire))
    }
}

impl GuestMemoryBackend for DmaSpace {
    type R = GuestRegionMmap;

    fn iter(&self) -> impl Iterator<Item = &Self::R> {
        self.live().map(|s| &s.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::{Bytes, GuestMemory, Permissions};

    fn file(len: usize) -> File {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("dmalab-dma-space-{}-{n}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(&vec![0u8; len]).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn maps_reach_the_file_and_unmapped_space_is_not_ram() {
        let space = DmaSpace::default();
        space
            .map(0x10000, 0x2000, file(0x3000), 0x1000, false)
            .unwrap();
        space
            .write_slice(&[1, 2, 3], GuestAddress(0x10010))
            .unwrap();
        let mut b = [0u8; 3];
        space.read_slice(&mut b, GuestAddress(0x10010)).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(GuestMemory::check_range(
            &space,
            GuestAddress(0x10000),
            0x2000,
            Permissions::ReadWrite
        ));
        assert!(!GuestMemory::check_range(
            &space,
            GuestAddress(0x11000),
            0x1001,
            Permissions::Read
        ));
        assert!(!GuestMemory::check_range(
            &space,
            GuestAddress(0),
            1,
            Permissions::Read
        ));
        space.unmap(0x10000, 0x2000).unwrap();
        assert!(!GuestMemory::check_range(
            &space,
            GuestAddress(0x10000),
            1,
            Permissions::Read
        ));
        assert!(space.ranges().is_empty());
    }

    #[test]
    fn hostile_maps_are_refused() {
        let space = DmaSpace::default();
        let e = space
            .map(0x1000, 0x2000, file(0x1000), 0, false)
            .unwrap_err();
        assert!(matches!(e, DmaSpaceError::PastFile { .. }), "{e}");
        let e = space
            .map(u64::MAX - 10, 0x1000, file(0x1000), 0, false)
            .unwrap_err();
        assert!(matches!(e, DmaSpaceError::BadRange { .. }), "{e}");
        let e = space.map(0, 0, file(0x1000), 0, false).unwrap_err();
        assert!(matches!(e, DmaSpaceError::BadRange { .. }), "{e}");
        let e = space
            .map(0, 0x1000, file(0x1000), u64::MAX, false)
            .unwrap_err();
        assert!(matches!(e, DmaSpaceError::PastFile { .. }), "{e}");
        space.map(0x4000, 0x1000, file(0x1000), 0, false).unwrap();
        let e = space
            .map(0x4800, 0x1000, file(0x1000), 0, false)
            .unwrap_err();
        assert!(matches!(e, DmaSpaceError::Overlap { .. }), "{e}");
        let e = space.unmap(0x4000, 0x800).unwrap_err();
        assert!(matches!(e, DmaSpaceError::NoSuchMap { .. }), "{e}");
        // A plain file is not a sealed memfd: refused for clients.
        let e = space
            .map(0x8000, 0x1000, file(0x1000), 0, true)
            .unwrap_err();
        assert!(matches!(e, DmaSpaceError::NotSealed), "{e}");
    }

    #[test]
    fn the_slot_arena_is_bounded() {
        let space = DmaSpace::default();
        for i in 0..MAX_SLOTS as u64 {
            space
                .map(i * 0x1000, 0x1000, file(0x1000), 0, false)
                .unwrap();
            space.unmap(i * 0x1000, 0x1000).unwrap();
        }
        let e = space.map(0, 0x1000, file(0x1000), 0, false).unwrap_err();
        assert!(matches!(e, DmaSpaceError::NoSlot), "{e}");
        assert_eq!(e.errno(), libc::ENOSPC);
    }
}
