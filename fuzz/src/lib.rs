//! What the dma24 fuzz targets share: a guest RAM layout with holes built
//! from fuzz input, a canary that shows which bytes were written, and an
//! in-memory trace the targets read back to check the device's records.
//!
//! The targets live in `fuzz_targets/`; `cargo xtask fuzz` builds and runs
//! them (ci/src/fuzz.rs, README "Reliability").

use arbitrary::Arbitrary;
use device_model::dma24_config::{mask_of, MAX_MASK_BITS, MIN_MASK_BITS};
use device_model::trace::{DmaRecord, MemoryTrace, Record};
use device_model::{Dma24Config, Overflow, TraceOptions, TraceSink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub type Mem = GuestMemoryMmap<()>;

const PAGE: u64 = 4096;
/// Every byte of guest RAM starts as this, so a write shows.
pub const CANARY: u8 = 0xa5;

/// The device's shape, from fuzz input.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Shape {
    mask_bits: u8,
    truncate: bool,
    /// log2 of device memory in KiB, 2..=6 (4 KiB..64 KiB).
    devmem_log_kib: u8,
}

impl Shape {
    pub fn config(self) -> Dma24Config {
        let span = MAX_MASK_BITS - MIN_MASK_BITS + 1;
        Dma24Config {
            mask_bits: MIN_MASK_BITS + self.mask_bits % span,
            overflow: if self.truncate {
                Overflow::Truncate
            } else {
                Overflow::Reject
            },
            devmem_size: 1024 << (2 + self.devmem_log_kib % 5),
            ..Dma24Config::default()
        }
    }
}

/// One RAM region: a gap (in pages) after the previous one, then its length.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct RegionSpec {
    gap_pages: u8,
    pages: u8,
}

/// Guest RAM: up to 6 regions of 1..=4 pages with holes between them,
/// starting a little below the mask's end (so some RAM lies beyond the
/// mask, where reject mode must never write) or at 0 for a 64-bit mask.
#[derive(Debug, Clone)]
pub struct Layout {
    pub ranges: Vec<(u64, u64)>,
}

impl Layout {
    pub fn new(mask_bits: u8, regions: &[RegionSpec]) -> Layout {
        let boundary = if mask_bits >= 48 {
            0
        } else {
            mask_of(mask_bits) + 1
        };
        let mut at = boundary.saturating_sub(24 * PAGE);
        let mut ranges = Vec::new();
        for r in regions.iter().take(6) {
            at += u64::from(r.gap_pages % 8) * PAGE;
            let len = u64::from(r.pages % 4 + 1) * PAGE;
            ranges.push((at, len));
            at += len;
        }
        if ranges.is_empty() {
            ranges.push((at, PAGE));
        }
        Layout { ranges }
    }

    /// Guest memory for the layout, every byte set to [`CANARY`].
    pub fn memory(&self) -> Mem {
        let r: Vec<_> = self
            .ranges
            .iter()
            .map(|&(a, n)| (GuestAddress(a), usize::try_from(n).expect("small region")))
            .collect();
        let mem = GuestMemoryMmap::from_ranges(&r).expect("fuzz guest memory");
        for &(a, n) in &self.ranges {
            let fill = vec![CANARY; usize::try_from(n).expect("small region")];
            mem.write_slice(&fill, GuestAddress(a)).expect("fill RAM");
        }
        mem
    }

    /// An address derived from fuzz input: mostly inside or near RAM.
    pub fn address(&self, pick: AddrPick) -> u64 {
        match pick {
            AddrPick::InRegion { region, offset } => {
                let (a, n) = self.ranges[usize::from(region) % self.ranges.len()];
                a + u64::from(offset) % n
            }
            AddrPick::NearRegionEnd { region, back } => {
                let (a, n) = self.ranges[usize::from(region) % self.ranges.len()];
                (a + n).wrapping_sub(u64::from(back))
            }
            AddrPick::Raw(a) => a,
        }
    }

    /// True when `[addr, addr + len)` is inside one or more adjacent regions.
    pub fn holds(&self, addr: u64, len: u64) -> bool {
        let mut at = addr;
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        while at < end {
            let Some(&(a, n)) = self.ranges.iter().find(|&&(a, n)| a <= at && at < a + n) else {
                return false;
            };
            at = a + n;
        }
        true
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AddrPick {
    InRegion { region: u8, offset: u16 },
    NearRegionEnd { region: u8, back: u16 },
    Raw(u64),
}

/// The RAM beyond the mask as the guest left it: in reject mode the device
/// must never write there, so after a run it must still hold exactly what
/// the guest itself wrote (the canary, or descriptors the guest put there).
/// Compared a slice at a time: the coverage instrumentation makes loops
/// over bytes slow.
pub struct BeyondMask {
    /// `(start, expected bytes)` of every RAM part beyond the mask.
    parts: Vec<(u64, Vec<u8>)>,
}

impl BeyondMask {
    pub fn snapshot(mem: &Mem, layout: &Layout, mask: u64) -> BeyondMask {
        let mut parts = Vec::new();
        for &(a, n) in &layout.ranges {
            let Some(first) = mask.checked_add(1).map(|f| f.max(a)) else {
                continue;
            };
            if first >= a + n {
                continue;
            }
            let mut buf = vec![0u8; usize::try_from(a + n - first).expect("small region")];
            mem.read_slice(&mut buf, GuestAddress(first))
                .expect("read RAM");
            parts.push((first, buf));
        }
        BeyondMask { parts }
    }

    /// The guest wrote `data` at `addr` (it may write anywhere in its RAM).
    pub fn guest_wrote(&mut self, addr: u64, data: &[u8]) {
        for (start, bytes) in &mut self.parts {
            for (i, &b) in data.iter().enumerate() {
                let Some(at) = addr.checked_add(i as u64) else {
                    break;
                };
                if let Some(slot) = at
                    .checked_sub(*start)
                    .and_then(|o| usize::try_from(o).ok())
                    .and_then(|o| bytes.get_mut(o))
                {
                    *slot = b;
                }
            }
        }
    }

    /// Panics, naming the first byte, if the device wrote beyond the mask.
    pub fn assert_untouched(&self, mem: &Mem, mask: u64) {
        for (start, want) in &self.parts {
            let mut got = vec![0u8; want.len()];
            mem.read_slice(&mut got, GuestAddress(*start))
                .expect("read RAM");
            if got != *want {
                let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                panic!(
                    "reject mode wrote {:#04x} at {:#x}, beyond the mask {mask:#x}",
                    got[i],
                    start + i as u64
                );
            }
        }
    }
}

/// A trace sink that keeps its records in memory (the trace's own
/// [`MemoryTrace`]: what the file would hold, without the JSON, which took
/// three quarters of the target's time), with a queue large enough that
/// nothing is dropped, so records can be counted exactly.
pub fn memory_sink(config: &Dma24Config) -> (TraceSink, MemoryTrace) {
    let options = TraceOptions {
        capacity: 1 << 20,
        ..TraceOptions::default()
    };
    TraceSink::in_memory(config, options).expect("in-memory trace")
}

/// The `dma` records of a finished trace; it must be complete, with no
/// drop and no gap in seq.
pub fn dma_records(trace: &MemoryTrace) -> Vec<DmaRecord> {
    let mut records = Vec::new();
    let mut footer = None;
    for r in trace.take() {
        match r {
            Record::Dma(d) => records.push(d),
            // An engine reset (CTRL_RESET): a line of its own, not a record.
            Record::Reset(_) | Record::Header(_) => {}
            Record::Footer(f) => footer = Some(f),
        }
    }
    let footer = footer.expect("finished trace has a footer");
    assert_eq!(footer.dropped, 0, "records dropped");
    assert_eq!(footer.records, records.len() as u64, "footer count");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "sequence numbers without gaps");
    }
    records
}

/// Checks every record that says bytes moved: its effective range is inside
/// the mask and guest RAM, piece by piece where it wraps at the mask (an
/// access longer than the mask's span wraps more than once: a counter with
/// only `bits` bits does).
pub fn assert_moves_inside_ram(records: &[DmaRecord], layout: &Layout, mask: u64) {
    for r in records.iter().filter(|r| r.outcome.moved()) {
        let eff = r
            .effective_addr
            .expect("moved record has an effective address")
            .0;
        assert!(
            eff <= mask,
            "effective address {eff:#x} beyond mask {mask:#x}"
        );
        let (mut addr, mut left) = (eff, r.len);
        while left > 0 {
            let piece = (mask - addr).saturating_add(1).min(left);
            assert!(
                layout.holds(addr, piece),
                "moved bytes outside RAM at {addr:#x}: {r:?}"
            );
            left -= piece;
            addr = addr.wrapping_add(piece) & mask;
        }
    }
}
