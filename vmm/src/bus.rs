//! Dispatch of port I/O and MMIO exits to devices by address range.
//!
//! A [`Bus`] is built once before the vCPUs start and never changes after
//! (devices whose decode moves at run time, such as PCI BARs, sit behind one
//! fixed window owned by the PCI root, which routes inside it). Lookup is a
//! binary search over a sorted vector plus the entry's mutex; an access to a
//! dma24 BAR then takes three more locks behind the window (PCI root,
//! device, device state): a few tens of nanoseconds in all, far below the
//! ~10 µs an exit costs on PVM.

use std::sync::{Arc, Mutex};

use thiserror::Error;

/// A device on a bus. `offset` is relative to the base of the range the
/// device was inserted at; `data.len()` is the access size (1, 2, 4 or 8, or
/// anything for a string access split by the vCPU). Implementations must not
/// panic on any guest input.
pub trait BusDevice: Send {
    /// Fill `data` for a read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handle a write at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else needs it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors building a bus.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    /// Empty or wrapping range.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    BadRange { base: u64, len: u64 },
}

#[derive(Clone)]
struct Entry {
    base: u64,
    /// Last address of the range (inclusive), so a range may end at u64::MAX.
    last: u64,
    dev: SharedDevice,
}

/// A set of non-overlapping address ranges, each mapped to a device.
#[derive(Clone, Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for e in &self.entries {
            l.entry(&format_args!("{:#x}..={:#x}", e.base, e.last));
        }
        l.finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `[base, base + len)` to `dev`.
    pub fn insert(&mut self, dev: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::BadRange { base, len });
        }
        let last = base
            .checked_add(len - 1)
            .ok_or(BusError::BadRange { base, len })?;
        let idx = self.entries.partition_point(|e| e.base < base);
        let overlaps_prev = idx > 0 && self.entries[idx - 1].last >= base;
        let overlaps_next = idx < self.entries.len() && self.entries[idx].base <= last;
        if overlaps_prev || overlaps_next {
            return Err(BusError::Overlap { base, len });
        }
        self.entries.insert(idx, Entry { base, last, dev });
        Ok(())
    }

    /// The device and offset for an access of `len` bytes at `addr`; the
    /// whole access must fall inside one range.
    #[inline]
    fn resolve(&self, addr: u64, len: usize) -> Option<(&SharedDevice, u64)> {
        let idx = self.entries.partition_point(|e| e.base <= addr);
        let e = self.entries.get(idx.checked_sub(1)?)?;
        let end = addr.checked_add((len as u64).checked_sub(1)?)?;
        if end > e.last {
            return None;
        }
        Some((&e.dev, addr - e.base))
    }

    /// Dispatch a read. Returns false (and leaves `data` alone) when no
    /// device claims the access.
    #[inline]
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((dev, offset)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatch a write. Returns false when no device claims the access.
    #[inline]
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((dev, offset)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(offset, data);
                true
            }
            None => false,
        }
    }

    /// Number of mapped ranges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = offset as u8 + i as u8;
            }
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn dev() -> (Arc<Mutex<Recorder>>, SharedDevice) {
        let d = Arc::new(Mutex::new(Recorder::default()));
        let s: SharedDevice = d.clone();
        (d, s)
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let mut bus = Bus::new();
        let (a, sa) = dev();
        let (b, sb) = dev();
        bus.insert(sa, 0x3f8, 8).unwrap();
        bus.insert(sb, 0x60, 5).unwrap();
        let mut d = [0u8; 1];
        assert!(bus.read(0x3fd, &mut d));
        assert_eq!(d[0], 5);
        assert!(bus.write(0x64, &[0xfe]));
        assert_eq!(b.lock().unwrap().last_write, Some((4, vec![0xfe])));
        assert!(a.lock().unwrap().last_write.is_none());
        assert!(!bus.read(0x3f7, &mut d));
        assert!(!bus.read(0x400, &mut d));
        assert!(!bus.write(0x65, &[0]));
        assert!(!bus.read(0, &mut d));
    }

    #[test]
    fn accesses_must_fit_inside_the_range() {
        let mut bus = Bus::new();
        let (_, s) = dev();
        bus.insert(s, 0x1000, 0x10).unwrap();
        let mut d = [0u8; 4];
        assert!(bus.read(0x100c, &mut d));
        assert!(!bus.read(0x100d, &mut d));
        assert!(!bus.read(0x1000, &mut []));
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let mut bus = Bus::new();
        let (_, s1) = dev();
        let (_, s2) = dev();
        let (_, s3) = dev();
        bus.insert(s1.clone(), 0x100, 0x10).unwrap();
        assert_eq!(
            bus.insert(s2.clone(), 0x10f, 1),
            Err(BusError::Overlap {
                base: 0x10f,
                len: 1
            })
        );
        assert!(bus.insert(s2.clone(), 0xf8, 0x9).is_err());
        assert!(bus.insert(s2.clone(), 0xf8, 0x8).is_ok());
        assert!(bus.insert(s3.clone(), 0, 0).is_err());
        assert!(bus.insert(s3.clone(), u64::MAX, 2).is_err());
        assert!(bus.insert(s3, u64::MAX, 1).is_ok());
        assert_eq!(bus.len(), 3);
        let mut d = [0u8; 1];
        assert!(bus.read(u64::MAX, &mut d));
    }
}
