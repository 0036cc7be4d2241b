//! How big a trace may grow, and what happens when it cannot grow: the one
//! policy every front end gets (dmalab's VMM, a vfio-user server), because
//! it lives in the sink, not in the code that opens the file.
//!
//! A guest that floods refused STARTs makes about 125 000 records/s, some
//! 30 MB/s of trace, so a trace without a bound is a way for the guest to
//! fill the host's disk. Two limits stop records, the VMM goes on, and
//! every record not written is counted in the footer's `dropped`:
//!
//! - the size cap ([`TraceOptions::max_size`], `--trace-max-size`): a record
//!   that would take the file past it is dropped; room for the footer is
//!   kept, so a capped trace is still complete, and its footer says
//!   `"max_size":N`;
//! - a write that fails (disk full, file-size limit, I/O error): writing
//!   stops there, the records of the batch that failed and every later one
//!   are dropped, and [`TraceSink::finish`] says so with
//!   [`TraceError::Full`]. The file has no footer then (there is no room
//!   for one), and its last line may be cut short; the reader treats it
//!   as an incomplete trace.
//!
//! [`TraceOptions::max_size`]: super::TraceOptions::max_size
//! [`TraceSink::finish`]: super::TraceSink::finish
//! [`TraceError::Full`]: super::TraceError::Full

use std::fmt;

/// Default cap on a trace file: 256 MiB. A guest under test writes a few
/// thousand records (about 300 bytes each) per second of DMA; 256 MiB holds
/// about 900 000 records, minutes of a busy driver, and a hostile flood
/// reaches it in about 9 s, so a host disk loses at most 256 MiB per device
/// and run.
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
/// The smallest cap accepted: the header and the footer must fit.
pub const MIN_MAX_SIZE: u64 = 4096;
/// Bytes kept free below the cap for the footer line (about 100 bytes).
pub const FOOTER_RESERVE: u64 = 256;

/// Parses a trace size: bytes, or with a suffix `K`, `M`, `G` (binary,
/// `KiB`/`MiB`/`GiB` too); at least [`MIN_MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size: give bytes or a K, M or G suffix (256M)"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < MIN_MAX_SIZE {
        return Err(format!(
            "a trace size cap of {bytes} bytes cannot hold the header and footer: give at least {MIN_MAX_SIZE}"
        ));
    }
    Ok(bytes)
}

/// Why the writer stopped writing records (None: it did not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The next record would have passed the size cap.
    SizeCap { max_size: u64, at_seq: u64 },
    /// A write failed: disk full, file-size limit, I/O error.
    WriteFailed { reason: String, at_seq: u64 },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::SizeCap { max_size, at_seq } => write!(
                f,
                "size cap of {} reached at record {at_seq} (--trace-max-size)",
                human(*max_size)
            ),
            Stop::WriteFailed { reason, at_seq } => {
                write!(f, "write failed at record {at_seq}: {reason}")
            }
        }
    }
}

/// `n` bytes in words: `256 MiB`, `4096 bytes`.
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The writer thread's account of bytes and records against the limits.
#[derive(Debug)]
pub(super) struct Budget {
    max_size: u64,
    /// Bytes handed to the writer so far (header included).
    used: u64,
    /// Records not written because of a limit.
    pub(super) dropped: u64,
    pub(super) stop: Option<Stop>,
    path: String,
}

impl Budget {
    pub(super) fn new(path: &str, max_size: u64, header_len: u64) -> Budget {
        Budget {
            max_size: max_size.max(MIN_MAX_SIZE),
            used: header_len,
            dropped: 0,
            stop: None,
            path: path.to_string(),
        }
    }

    /// Whether the line of record `seq`, `len` bytes, may be written; when
    /// not, it is counted as dropped (and the first one is logged). A line
    /// that is not a DMA record (`record` false: a `reset` line, which has
    /// no seq of its own) obeys the same limits but is not counted.
    pub(super) fn admit(&mut self, seq: u64, len: u64, record: bool) -> bool {
        if self.stop.is_some() {
            self.dropped += u64::from(record);
            return false;
        }
        if self.used + len + FOOTER_RESERVE > self.max_size {
            let stop = Stop::SizeCap {
                max_size: self.max_size,
                at_seq: seq,
            };
            log::warn!(
                "dma24 trace {}: {stop}: later records are dropped and counted in the footer",
                self.path
            );
            self.stop = Some(stop);
            self.dropped += u64::from(record);
            return false;
        }
        self.used += len;
        true
    }

    /// A write failed: `lost` records (the batch that was being written)
    /// are dropped, and so is everything after.
    pub(super) fn write_failed(&mut self, reason: String, at_seq: u64, lost: u64) {
        self.dropped += lost;
        if self.stop.is_none() {
            log::error!(
                "dma24 trace {}: cannot write ({reason}): the trace disk is full or failing; \
                 later records are dropped and counted, the VM goes on",
                self.path
            );
        }
        if !matches!(self.stop, Some(Stop::WriteFailed { .. })) {
            self.stop = Some(Stop::WriteFailed { reason, at_seq });
        }
    }

    /// The cap, when it was reached (the footer's `max_size`).
    pub(super) fn capped(&self) -> Option<u64> {
        match self.stop {
            Some(Stop::SizeCap { max_size, .. }) => Some(max_size),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("100").unwrap_err().contains("at least 4096"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("99999999999999G")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(human(DEFAULT_MAX_SIZE), "256 MiB");
        assert_eq!(human(4097), "4097 bytes");
    }

    #[test]
    fn budget_stops_at_the_cap_and_counts() {
        let mut b = Budget::new("t", 4096, 100);
        // 4096 - 100 - 256 = 3740 bytes of records: 37 of 100 bytes.
        let admitted = (1..=50).filter(|&s| b.admit(s, 100, true)).count();
        assert_eq!(admitted, 37);
        assert_eq!(b.dropped, 13);
        assert_eq!(
            b.stop,
            Some(Stop::SizeCap {
                max_size: 4096,
                at_seq: 38
            })
        );
        assert_eq!(b.capped(), Some(4096));
    }

    #[test]
    fn write_failure_drops_the_batch_and_the_rest() {
        let mut b = Budget::new("t", DEFAULT_MAX_SIZE, 100);
        assert!(b.admit(1, 100, true));
        b.write_failed("No space left on device".into(), 2, 5);
        assert!(!b.admit(7, 100, true));
        assert_eq!(b.dropped, 6);
        assert_eq!(b.capped(), None);
        assert!(b
            .stop
            .as_ref()
            .unwrap()
            .to_string()
            .contains("No space left"));
    }
}
