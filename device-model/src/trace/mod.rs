//! The host-side DMA trace: one JSON Lines record per DMA access the device
//! attempts (and per START it refuses), so a driver bug shows up as a line
//! that says what was asked, what happened and why.
//!
//! File layout (schema in `device-model/README.md`):
//! `{"type":"header",...}` first, then `{"type":"dma",...}` records in
//! sequence order, then `{"type":"footer","records":N,"dropped":D}`.
//!
//! Records are formatted and written by a thread of their own ([`TraceSink`])
//! fed through a bounded queue, so the device never waits on the disk; when
//! the queue is full a record is dropped and counted, and the count is in the
//! footer (and sequence numbers have a gap where it was).

mod limit;
pub mod read;
mod sink;
pub mod summary;
#[cfg(test)]
mod testdata;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

pub use limit::{human, parse_size, Stop, DEFAULT_MAX_SIZE, MIN_MAX_SIZE};
pub use read::{read, Completeness, ReadError, Record, Trace, TraceReader};
pub use sink::{
    MemoryTrace, TraceError, TraceOptions, TraceSink, TraceStats, DEFAULT_QUEUE_CAPACITY,
};

use crate::outcome::{Direction, Outcome};

/// Trace format version in the header; bumped on incompatible changes.
pub const TRACE_VERSION: u32 = 1;
/// Name of the hash in `hash` fields, as written in the header.
pub const HASH_NAME: &str = "xxh3_64";

/// The hash of the bytes a DMA access moved: XXH3-64 with seed 0, so it can
/// be checked with any xxHash implementation (e.g. Python's
/// `xxhash.xxh3_64_hexdigest(data)`). It is fast enough (tens of GB/s) to
/// run on every segment.
pub fn hash_bytes(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// A u64 that is written as a `0x`-prefixed hex string: bus addresses read
/// better in hex, and JSON numbers above 2^53 lose precision in many tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hex(pub u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses hex text without allocating (a trace has millions of these).
struct HexVisitor {
    prefixed: bool,
}

impl de::Visitor<'_> for HexVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.prefixed {
            "a 0x-prefixed hex string"
        } else {
            "a hex string"
        })
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        let digits = if self.prefixed {
            s.strip_prefix("0x")
                .ok_or_else(|| E::custom("expected 0x..."))?
        } else {
            s
        };
        u64::from_str_radix(digits, 16).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor { prefixed: true }).map(Hex)
    }
}

/// A 64-bit hash written as 16 hex digits (no prefix), like xxhsum prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashHex(pub u64);

impl Serialize for HashHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:016x}", self.0))
    }
}

impl<'de> Deserialize<'de> for HashHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor { prefixed: false })
            .map(HashHex)
    }
}

/// What the device reports about one DMA access; the sink adds the sequence
/// number, the time and the BDF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaEvent {
    /// Which START this belongs to (1 for the first START of the device).
    pub transfer: u64,
    /// Index of the access within its transfer, descriptor fetches included.
    pub segment: u32,
    pub dir: Direction,
    /// Bus address the guest asked for.
    pub requested_addr: u64,
    /// Where the access went after the mask (None when it was refused
    /// before an address was computed).
    pub effective_addr: Option<u64>,
    pub len: u64,
    /// Offset in device memory (for descriptor fetches: 0).
    pub dev_offset: u64,
    pub mask_bits: u8,
    pub outcome: Outcome,
    /// Hash of the bytes moved; None when nothing moved.
    pub hash: Option<u64>,
}

/// One `{"type":"dma"}` line, as read back from a trace file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmaRecord {
    pub seq: u64,
    pub t_ns: u64,
    pub bdf: String,
    pub transfer: u64,
    pub segment: u32,
    pub dir: Direction,
    pub requested_addr: Hex,
    pub effective_addr: Option<Hex>,
    pub len: u64,
    pub dev_offset: u64,
    pub mask_bits: u8,
    pub outcome: Outcome,
    /// The REG_ERROR code this access produced (0 when it moved bytes).
    pub error: u32,
    pub hash: Option<HashHex>,
}

/// The serialized form of an event: same fields as [`DmaRecord`], borrowed
/// so that writing a record allocates nothing.
#[derive(Serialize)]
struct DmaLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    t_ns: u64,
    bdf: &'a str,
    transfer: u64,
    segment: u32,
    dir: Direction,
    requested_addr: Hex,
    effective_addr: Option<Hex>,
    len: u64,
    dev_offset: u64,
    mask_bits: u8,
    outcome: Outcome,
    error: u32,
    hash: Option<HashHex>,
}

impl DmaRecord {
    /// The record a trace file holds for `e`, built without JSON (what
    /// [`TraceSink::in_memory`] keeps).
    pub fn from_event(seq: u64, t_ns: u64, bdf: &str, e: &DmaEvent) -> Self {
        let line = DmaLine::new(seq, t_ns, bdf, e);
        DmaRecord {
            seq,
            t_ns,
            bdf: bdf.to_string(),
            transfer: line.transfer,
            segment: line.segment,
            dir: line.dir,
            requested_addr: line.requested_addr,
            effective_addr: line.effective_addr,
            len: line.len,
            dev_offset: line.dev_offset,
            mask_bits: line.mask_bits,
            outcome: line.outcome,
            error: line.error,
            hash: line.hash,
        }
    }
}

impl<'a> DmaLine<'a> {
    fn new(seq: u64, t_ns: u64, bdf: &'a str, e: &DmaEvent) -> Self {
        DmaLine {
            kind: "dma",
            seq,
            t_ns,
            bdf,
            transfer: e.transfer,
            segment: e.segment,
            dir: e.dir,
            requested_addr: Hex(e.requested_addr),
            effective_addr: e.effective_addr.map(Hex),
            len: e.len,
            dev_offset: e.dev_offset,
            mask_bits: e.mask_bits,
            outcome: e.outcome,
            error: e.outcome.error_code(),
            hash: e.hash.map(HashHex),
        }
    }
}

/// The first line of a trace: how the device was built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub version: u32,
    pub bdf: String,
    pub vendor_id: Hex,
    pub device_id: Hex,
    pub mask_bits: u8,
    pub mask: Hex,
    pub overflow: String,
    pub devmem_size: u64,
    pub hash: String,
    pub queue_capacity: usize,
    /// Where the VMM put guest RAM and the PCI MMIO window (for pictures of
    /// the trace); absent when the host did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryLayout>,
}

/// The guest's physical address map as the host laid it out, in bus
/// addresses (dma24 sees guest-physical addresses: no IOMMU).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLayout {
    /// Guest RAM, `[start, end)` ranges in address order.
    pub ram: Vec<[Hex; 2]>,
    /// The window PCI memory BARs are placed in, `[start, end)`.
    pub mmio_window: Option<[Hex; 2]>,
}

/// A reset of the device's engine (a CTRL_RESET write: the driver's unbind,
/// its probe, a timed-out transfer). It takes no sequence number of its own
/// (seq stays the DMA records' gap-free count); `after_seq` places it: every
/// DMA record with a higher seq was written after the reset. A record after
/// a reset whose `transfer` is at most `last_transfer` is DMA the reset did
/// not stop, unless it is `aborted` (the segment the reset cut short: no
/// byte moved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRecord {
    pub t_ns: u64,
    pub bdf: String,
    /// Seq of the last DMA record submitted before the reset (0: none).
    pub after_seq: u64,
    /// The last transfer number the device had started (0: none).
    pub last_transfer: u64,
}

/// The last line of a complete trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceFooter {
    /// DMA records written.
    pub records: u64,
    /// Records dropped because the queue was full or the size cap was
    /// reached (each left a gap in seq).
    pub dropped: u64,
    pub t_ns: u64,
    /// The size cap (bytes), present when records were dropped to keep the
    /// file under it (`limit.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
}

/// Hands events to the sink, or only counts them when tracing is off, so
/// REG_LAST_SEQ means the same with and without a trace.
pub struct Tracer {
    sink: Option<TraceSink>,
    seq: AtomicU64,
}

impl Tracer {
    pub fn new(sink: Option<TraceSink>) -> Self {
        Tracer {
            sink,
            seq: AtomicU64::new(0),
        }
    }

    /// True when records are written.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// True when records carry a hash of the bytes moved.
    pub fn hashes(&self) -> bool {
        self.sink.as_ref().is_some_and(TraceSink::hashes)
    }

    pub fn sink(&self) -> Option<&TraceSink> {
        self.sink.as_ref()
    }

    /// Records an engine reset after the events recorded so far.
    pub fn reset(&self, last_transfer: u64) {
        if let Some(sink) = &self.sink {
            sink.submit_reset(last_transfer);
        }
    }

    /// Records one event and returns its sequence number (1, 2, ...).
    pub fn record(&self, event: DmaEvent) -> u64 {
        match &self.sink {
            Some(sink) => sink.submit(event),
            None => self.seq.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
}

/// The trace file of the `index`-th device (0-based, in `--device` order)
/// when the user asked for `base`: device 0 writes `base` itself, device N
/// writes `base`'s stem with `-N` before the extension (`t.jsonl`,
/// `t-1.jsonl`, ...). One file per device, each with its own header (bdf,
/// mask), so every reader and cross-check works on it unchanged. One
/// definition for the VMM that writes the files and the harness that reads
/// them.
pub fn device_trace_path(base: &std::path::Path, index: usize) -> std::path::PathBuf {
    if index == 0 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().unwrap_or_default().to_string_lossy();
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{index}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{index}"),
    };
    base.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trace_file_per_device() {
        use std::path::{Path, PathBuf};
        let p = |s: &str, i| device_trace_path(Path::new(s), i);
        assert_eq!(p("/r/t.jsonl", 0), PathBuf::from("/r/t.jsonl"));
        assert_eq!(p("/r/t.jsonl", 1), PathBuf::from("/r/t-1.jsonl"));
        assert_eq!(
            p("/r/run.trace.jsonl", 3),
            PathBuf::from("/r/run.trace-3.jsonl")
        );
        assert_eq!(p("trace", 2), PathBuf::from("trace-2"));
    }

    #[test]
    fn hash_is_xxh3_64() {
        // Reference values of XXH3_64bits(seed 0).
        assert_eq!(hash_bytes(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(hash_bytes(b"a"), 0xe6c6_32b6_1e96_4e1f);
    }

    #[test]
    fn line_round_trips_through_record() {
        let e = DmaEvent {
            transfer: 3,
            segment: 1,
            dir: Direction::FromDevice,
            requested_addr: 0x100_0000,
            effective_addr: Some(0),
            len: 4096,
            dev_offset: 16,
            mask_bits: 24,
            outcome: Outcome::Truncated,
            hash: Some(0xab),
        };
        let line = serde_json::to_string(&DmaLine::new(7, 99, "0000:00:01.0", &e)).unwrap();
        assert_eq!(
            line,
            r#"{"type":"dma","seq":7,"t_ns":99,"bdf":"0000:00:01.0","transfer":3,"segment":1,"dir":"from_device","requested_addr":"0x1000000","effective_addr":"0x0","len":4096,"dev_offset":16,"mask_bits":24,"outcome":"truncated","error":0,"hash":"00000000000000ab"}"#
        );
        let r: DmaRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(r.seq, 7);
        assert_eq!(r.requested_addr, Hex(0x100_0000));
        assert_eq!(r.effective_addr, Some(Hex(0)));
        assert_eq!(r.hash, Some(HashHex(0xab)));
        assert_eq!(r.outcome, Outcome::Truncated);
        // The in-memory trace holds exactly what the file gives back.
        assert_eq!(DmaRecord::from_event(7, 99, "0000:00:01.0", &e), r);
    }

    #[test]
    fn tracer_without_sink_counts() {
        let t = Tracer::new(None);
        assert!(!t.enabled());
        let e = DmaEvent {
            transfer: 1,
            segment: 0,
            dir: Direction::ToDevice,
            requested_addr: 0,
            effective_addr: None,
            len: 0,
            dev_offset: 0,
            mask_bits: 24,
            outcome: Outcome::BadLength,
            hash: None,
        };
        assert_eq!(t.record(e), 1);
        assert_eq!(t.record(e), 2);
    }
}
