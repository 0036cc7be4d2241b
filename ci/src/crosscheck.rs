//! Cross-checks what a guest says it transferred against what the device
//! recorded in the DMA trace.
//!
//! A guest reports a transfer as (direction, device-memory offset, length,
//! pattern seed): the bytes were `dma24_tool::pattern::bytes(len, seed)`. The
//! driver may split it into chunks or scatter-gather segments, so the check is
//! on coverage: the trace's records of that direction inside
//! `[offset, offset + len)` must tile the range exactly, every one with
//! outcome `ok`, and each record's hash must be the hash of its slice of the
//! pattern.

use std::collections::BTreeSet;

use device_model::trace::DmaRecord;
pub use device_model::trace::Trace;
use device_model::{Direction, Outcome};
use dma24_tool::pattern;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("{transfer:?}: no ok {} record with the right bytes at device offset {at} ({accounted} of {} bytes accounted for)", transfer.dir.as_str(), transfer.len)]
    NotCovered {
        transfer: Reported,
        at: u64,
        accounted: u64,
    },
    #[error("{0:?}: the reported range does not fit in memory")]
    TooLong(Reported),
}

/// One transfer as a guest reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub dir: Direction,
    pub dev_offset: u64,
    pub len: u64,
    pub seed: u8,
}

/// Checks one reported transfer; returns the seqs of the records that
/// account for it. At each offset the newest record whose hash matches the
/// pattern counts: a range may have been written again by a later test.
pub fn check_transfer(trace: &Trace, t: &Reported) -> Result<Vec<u64>, CheckError> {
    let too_long = || CheckError::TooLong(t.clone());
    let end = t.dev_offset.checked_add(t.len).ok_or_else(too_long)?;
    let data = pattern::bytes(usize::try_from(t.len).map_err(|_| too_long())?, t.seed);
    let mut seqs = Vec::new();
    let mut covered = t.dev_offset;
    while covered < end {
        // covered - dev_offset < len, which fits in usize (checked above).
        let from = usize::try_from(covered - t.dev_offset).map_err(|_| too_long())?;
        let slice_hash = |len: u64| {
            let to = usize::try_from(len)
                .ok()
                .and_then(|n| from.checked_add(n))?;
            data.get(from..to).map(pattern::trace_hash)
        };
        let matching = trace
            .records
            .iter()
            .filter(|r| r.dir == t.dir && r.outcome == Outcome::Ok && r.dev_offset == covered)
            .filter(|r| r.len > 0 && r.len <= end - covered)
            .filter(|r| r.hash.is_some() && r.hash.map(|h| h.0) == slice_hash(r.len))
            .max_by_key(|r| r.seq);
        let Some(r) = matching else {
            return Err(CheckError::NotCovered {
                transfer: t.clone(),
                at: covered,
                accounted: covered - t.dev_offset,
            });
        };
        seqs.push(r.seq);
        covered += r.len;
    }
    Ok(seqs)
}

/// Records whose outcome is not `ok`, minus the ones `expected` accounts for.
pub fn unexpected_faults<'a>(trace: &'a Trace, expected: &BTreeSet<u64>) -> Vec<&'a DmaRecord> {
    trace
        .records
        .iter()
        .filter(|r| r.outcome != Outcome::Ok && !expected.contains(&r.seq))
        .collect()
}

/// Round trips reported on a console: lines containing `marker`, followed by
/// `OFFSET_KEY=O len=N seed=S` fields. Each is one DMA to the device and one
/// back of the same pattern bytes, so it yields two [`Reported`] transfers.
fn round_trips(console: &str, marker: &str, offset_key: &str) -> Vec<Reported> {
    let mut out = Vec::new();
    for line in console.lines() {
        let Some((_, rest)) = line.split_once(marker) else {
            continue;
        };
        let field = |k: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let seed = field("seed").and_then(|s| u8::try_from(s).ok());
        if let (Some(o), Some(n), Some(seed)) = (field(offset_key), field("len"), seed) {
            for dir in [Direction::ToDevice, Direction::FromDevice] {
                out.push(Reported {
                    dir,
                    dev_offset: o,
                    len: n,
                    seed,
                });
            }
        }
    }
    out
}

/// `dma24-tool: ok offset=O len=N seed=S hash=H` lines (user space).
pub fn tool_transfers(console: &str) -> Vec<Reported> {
    round_trips(console, "dma24-tool: ok ", "offset")
}

/// `dmalab ...: dma24-0: xfer dev_offset=O len=N seed=S alloc=A` lines (the
/// driver's round trips, KUnit suites included).
pub fn driver_transfers(console: &str) -> Vec<Reported> {
    round_trips(console, ": xfer ", "dev_offset")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        seq: u64,
        dir: &str,
        dev_offset: u64,
        len: u64,
        outcome: &str,
        hash: Option<u64>,
    ) -> String {
        let hash = hash.map_or("null".to_string(), |h| format!("\"{h:016x}\""));
        format!(
            r#"{{"type":"dma","seq":{seq},"t_ns":1,"bdf":"0000:00:01.0","transfer":1,"segment":0,"dir":"{dir}","requested_addr":"0x1000","effective_addr":"0x1000","len":{len},"dev_offset":{dev_offset},"mask_bits":24,"outcome":"{outcome}","error":0,"hash":{hash}}}"#
        )
    }

    fn header() -> String {
        r#"{"type":"header","version":1,"bdf":"0000:00:01.0","vendor_id":"0x1234","device_id":"0xd024","mask_bits":24,"mask":"0xffffff","overflow":"reject","devmem_size":65536,"hash":"xxh3_64","queue_capacity":4096}"#.to_string()
    }

    fn slice_hash(len: usize, seed: u8, from: usize, n: usize) -> u64 {
        pattern::trace_hash(&pattern::bytes(len, seed)[from..from + n])
    }

    #[test]
    fn chunked_transfer_is_covered() {
        let text = [
            header(),
            record(
                1,
                "to_device",
                100,
                4096,
                "ok",
                Some(slice_hash(5000, 3, 0, 4096)),
            ),
            record(
                2,
                "to_device",
                4196,
                904,
                "ok",
                Some(slice_hash(5000, 3, 4096, 904)),
            ),
        ]
        .join("\n");
        let trace = Trace::parse(&text).unwrap();
        let t = Reported {
            dir: Direction::ToDevice,
            dev_offset: 100,
            len: 5000,
            seed: 3,
        };
        assert_eq!(check_transfer(&trace, &t).unwrap(), vec![1, 2]);
        // The other direction was never traced.
        let back = Reported {
            dir: Direction::FromDevice,
            ..t
        };
        assert!(check_transfer(&trace, &back).is_err());
    }

    #[test]
    fn wrong_bytes_or_gaps_fail() {
        let text = [
            header(),
            record(1, "to_device", 0, 64, "ok", Some(slice_hash(64, 9, 0, 64))),
        ]
        .join("\n");
        let trace = Trace::parse(&text).unwrap();
        let wrong_seed = Reported {
            dir: Direction::ToDevice,
            dev_offset: 0,
            len: 64,
            seed: 8,
        };
        assert!(check_transfer(&trace, &wrong_seed).is_err());
        let longer = Reported {
            dir: Direction::ToDevice,
            dev_offset: 0,
            len: 128,
            seed: 9,
        };
        assert!(check_transfer(&trace, &longer).is_err());
    }

    #[test]
    fn newer_record_at_same_offset_wins_but_older_matching_one_counts() {
        let text = [
            header(),
            record(1, "to_device", 0, 64, "ok", Some(slice_hash(64, 1, 0, 64))),
            record(2, "to_device", 0, 64, "ok", Some(slice_hash(64, 2, 0, 64))),
        ]
        .join("\n");
        let trace = Trace::parse(&text).unwrap();
        let first = Reported {
            dir: Direction::ToDevice,
            dev_offset: 0,
            len: 64,
            seed: 1,
        };
        assert_eq!(check_transfer(&trace, &first).unwrap(), vec![1]);
        let second = Reported { seed: 2, ..first };
        assert_eq!(check_transfer(&trace, &second).unwrap(), vec![2]);
    }

    #[test]
    fn faults_not_expected_are_listed() {
        let text = [
            header(),
            record(1, "to_device", 0, 64, "rejected_mask", None),
            record(2, "from_device", 0, 64, "bme_off", None),
        ]
        .join("\n");
        let trace = Trace::parse(&text).unwrap();
        let expected: BTreeSet<u64> = [1].into();
        let left = unexpected_faults(&trace, &expected);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].outcome, Outcome::BmeOff);
    }

    #[test]
    fn driver_lines_become_two_transfers() {
        let console = "[ 17.1] dmalab 0000:00:01.0: dma24-0: xfer dev_offset=4096 len=8192 seed=7 alloc=kmalloc-dma\n";
        let t = driver_transfers(console);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            Reported {
                dir: Direction::ToDevice,
                dev_offset: 4096,
                len: 8192,
                seed: 7
            }
        );
        assert!(tool_transfers(console).is_empty());
    }

    #[test]
    fn tool_lines_become_two_transfers() {
        let console = "junk\ndma24-tool: ok offset=3 len=333 seed=2 hash=00\ndma24-tool: FAIL offset=0 len=1: x\n";
        let t = tool_transfers(console);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            Reported {
                dir: Direction::ToDevice,
                dev_offset: 3,
                len: 333,
                seed: 2
            }
        );
        assert_eq!(t[1].dir, Direction::FromDevice);
    }
}
