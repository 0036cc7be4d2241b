//! Reading a trace back: counts per outcome and direction, bytes moved, and
//! every fault with the address the driver asked for. Backs
//! `dmalab trace summary FILE [--json]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use thiserror::Error;

use super::{DmaRecord, Hex, TraceFooter, TraceHeader};
use crate::outcome::{Direction, Outcome};

/// How many faults the table lists before it says "... and N more" (the
/// JSON form lists them all).
const TABLE_FAULTS: usize = 50;

#[derive(Debug, Error)]
pub enum SummaryError {
    #[error("cannot open trace file {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read trace line {line}: {source}")]
    Read { line: usize, source: io::Error },
    #[error("trace line {line} is not a valid record: {message}")]
    Parse { line: usize, message: String },
    #[error("not a dma24 trace: the first line is not a version-1 header")]
    NotATrace,
}

/// One record that did not move bytes where the driver asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub seq: u64,
    pub transfer: u64,
    pub dir: Direction,
    pub outcome: Outcome,
    pub error: u32,
    pub requested_addr: Hex,
    pub effective_addr: Option<Hex>,
    pub len: u64,
    pub mask_bits: u8,
}

/// What a trace file says, in numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub header: Option<TraceHeader>,
    /// The footer, absent when the VMM did not finish the trace (crash).
    pub footer: Option<TraceFooter>,
    pub records: u64,
    pub transfers: u64,
    pub by_outcome: BTreeMap<Outcome, u64>,
    pub by_dir: BTreeMap<Direction, u64>,
    pub bytes_to_device: u64,
    pub bytes_from_device: u64,
    pub descriptor_bytes: u64,
    /// Sequence numbers missing between records (dropped records).
    pub seq_gaps: u64,
    /// Records refused: no memory touched (outcomes other than ok/truncated).
    pub faults: Vec<Fault>,
    /// Records that moved bytes to a wrapped address (overflow=truncate).
    pub truncated: Vec<Fault>,
}

/// Summarises the trace file at `path`.
pub fn summarize_file(path: impl AsRef<Path>) -> Result<Summary, SummaryError> {
    let file = File::open(path.as_ref()).map_err(|source| SummaryError::Open {
        path: path.as_ref().display().to_string(),
        source,
    })?;
    summarize(BufReader::new(file))
}

/// Summarises a trace read from `input`.
pub fn summarize(input: impl BufRead) -> Result<Summary, SummaryError> {
    let mut s = Summary::default();
    let mut transfers = BTreeSet::new();
    let mut last_seq = 0u64;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|source| SummaryError::Read { line: n, source })?;
        if line.trim().is_empty() {
            continue;
        }
        let parse_err = |e: serde_json::Error| SummaryError::Parse {
            line: n,
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(&line).map_err(parse_err)?;
        let kind = value.get("type").and_then(|t| t.as_str()).unwrap_or("");
        match (n, kind) {
            (1, "header") => {
                let h: TraceHeader = serde_json::from_value(value).map_err(parse_err)?;
                if h.version != super::TRACE_VERSION {
                    return Err(SummaryError::NotATrace);
                }
                s.header = Some(h);
            }
            (1, _) => return Err(SummaryError::NotATrace),
            (_, "dma") => {
                let r: DmaRecord = serde_json::from_value(value).map_err(parse_err)?;
                s.seq_gaps = s
                    .seq_gaps
                    .saturating_add(r.seq.saturating_sub(last_seq.saturating_add(1)));
                last_seq = last_seq.max(r.seq);
                transfers.insert(r.transfer);
                s.add(&r);
            }
            (_, "footer") => {
                let f: TraceFooter = serde_json::from_value(value).map_err(parse_err)?;
                s.footer = Some(f);
            }
            (_, other) => {
                return Err(SummaryError::Parse {
                    line: n,
                    message: format!("unknown record type `{other}`"),
                })
            }
        }
    }
    if s.header.is_none() {
        return Err(SummaryError::NotATrace);
    }
    // Drops after the last written record leave no gap; the footer has them.
    if let Some(f) = s.footer {
        s.seq_gaps = s.seq_gaps.max(f.dropped);
    }
    s.transfers = transfers.len() as u64;
    Ok(s)
}

impl Summary {
    fn add(&mut self, r: &DmaRecord) {
        self.records += 1;
        *self.by_outcome.entry(r.outcome).or_default() += 1;
        *self.by_dir.entry(r.dir).or_default() += 1;
        if r.outcome.moved() {
            match r.dir {
                // Saturating: the file may come from anywhere.
                Direction::ToDevice => {
                    self.bytes_to_device = self.bytes_to_device.saturating_add(r.len)
                }
                Direction::FromDevice => {
                    self.bytes_from_device = self.bytes_from_device.saturating_add(r.len)
                }
                Direction::DescriptorFetch => {
                    self.descriptor_bytes = self.descriptor_bytes.saturating_add(r.len)
                }
            }
        }
        let fault = Fault {
            seq: r.seq,
            transfer: r.transfer,
            dir: r.dir,
            outcome: r.outcome,
            error: r.error,
            requested_addr: r.requested_addr,
            effective_addr: r.effective_addr,
            len: r.len,
            mask_bits: r.mask_bits,
        };
        match r.outcome {
            Outcome::Ok => {}
            Outcome::Truncated => self.truncated.push(fault),
            _ => self.faults.push(fault),
        }
    }

    /// The summary as pretty JSON (`--json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The summary as a table for people.
    pub fn render_table(&self) -> String {
        let mut o = String::new();
        if let Some(h) = &self.header {
            let _ = writeln!(
                o,
                "dma24 trace: device {} ({}:{}), mask {} bits ({}), overflow={}, device memory {} KiB",
                h.bdf,
                h.vendor_id,
                h.device_id,
                h.mask_bits,
                h.mask,
                h.overflow,
                h.devmem_size / 1024
            );
        }
        match self.footer {
            Some(f) => {
                let _ = writeln!(
                    o,
                    "complete: {} records written, {} dropped",
                    f.records, f.dropped
                );
            }
            None => o.push_str("INCOMPLETE: no footer (the VMM did not finish the trace)\n"),
        }
        if self.seq_gaps > 0 {
            let _ = writeln!(o, "WARNING: {} records missing (queue full)", self.seq_gaps);
        }
        let _ = writeln!(
            o,
            "\n{} records, {} transfers",
            self.records, self.transfers
        );
        let _ = writeln!(o, "bytes to device:   {:>12}", self.bytes_to_device);
        let _ = writeln!(o, "bytes from device: {:>12}", self.bytes_from_device);
        let _ = writeln!(o, "descriptor bytes:  {:>12}", self.descriptor_bytes);
        o.push_str("\nby direction:\n");
        for (d, n) in &self.by_dir {
            let _ = writeln!(o, "  {:<18} {:>10}", d.as_str(), n);
        }
        o.push_str("by outcome:\n");
        for (k, n) in &self.by_outcome {
            let _ = writeln!(o, "  {:<18} {:>10}", k.as_str(), n);
        }
        for (title, list) in [("faults", &self.faults), ("truncated", &self.truncated)] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(o, "\n{title} ({}):", list.len());
            let _ = writeln!(
                o,
                "  {:>8} {:>8} {:<16} {:<14} {:>18} {:>18} {:>8} {:>4}",
                "seq", "transfer", "dir", "outcome", "requested", "effective", "len", "mask"
            );
            for f in list.iter().take(TABLE_FAULTS) {
                let eff = f.effective_addr.map_or("-".to_string(), |a| a.to_string());
                let _ = writeln!(
                    o,
                    "  {:>8} {:>8} {:<16} {:<14} {:>18} {:>18} {:>8} {:>4}",
                    f.seq,
                    f.transfer,
                    f.dir.as_str(),
                    f.outcome.as_str(),
                    f.requested_addr.to_string(),
                    eff,
                    f.len,
                    f.mask_bits
                );
            }
            if list.len() > TABLE_FAULTS {
                let _ = writeln!(
                    o,
                    "  ... and {} more (use --json)",
                    list.len() - TABLE_FAULTS
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = r#"{"type":"header","version":1,"bdf":"0000:00:01.0","vendor_id":"0x1234","device_id":"0xd024","mask_bits":24,"mask":"0xffffff","overflow":"reject","devmem_size":65536,"hash":"xxh3_64","queue_capacity":65536}
{"type":"dma","seq":1,"t_ns":10,"bdf":"0000:00:01.0","transfer":1,"segment":0,"dir":"to_device","requested_addr":"0x1000","effective_addr":"0x1000","len":4096,"dev_offset":0,"mask_bits":24,"outcome":"ok","error":0,"hash":"0123456789abcdef"}
{"type":"dma","seq":2,"t_ns":20,"bdf":"0000:00:01.0","transfer":2,"segment":0,"dir":"from_device","requested_addr":"0x1000000","effective_addr":null,"len":512,"dev_offset":0,"mask_bits":24,"outcome":"rejected_mask","error":1,"hash":null}
{"type":"dma","seq":4,"t_ns":30,"bdf":"0000:00:01.0","transfer":3,"segment":0,"dir":"descriptor_fetch","requested_addr":"0x2000","effective_addr":"0x2000","len":16,"dev_offset":0,"mask_bits":24,"outcome":"ok","error":0,"hash":"0000000000000001"}
{"type":"dma","seq":5,"t_ns":40,"bdf":"0000:00:01.0","transfer":3,"segment":1,"dir":"from_device","requested_addr":"0x3000","effective_addr":"0x3000","len":100,"dev_offset":0,"mask_bits":24,"outcome":"ok","error":0,"hash":"0000000000000002"}
{"type":"footer","records":4,"dropped":1,"t_ns":50}
"#;

    #[test]
    fn counts_and_faults() {
        let s = summarize(TRACE.as_bytes()).unwrap();
        assert_eq!(s.records, 4);
        assert_eq!(s.transfers, 3);
        assert_eq!(s.bytes_to_device, 4096);
        assert_eq!(s.bytes_from_device, 100);
        assert_eq!(s.descriptor_bytes, 16);
        assert_eq!(s.seq_gaps, 1);
        assert_eq!(s.by_outcome[&Outcome::Ok], 3);
        assert_eq!(s.by_outcome[&Outcome::RejectedMask], 1);
        assert_eq!(s.by_dir[&Direction::DescriptorFetch], 1);
        assert_eq!(s.faults.len(), 1);
        assert_eq!(s.faults[0].requested_addr, Hex(0x100_0000));
        assert_eq!(s.faults[0].error, 1);
        assert_eq!(s.footer.unwrap().dropped, 1);
        let table = s.render_table();
        assert!(table.contains("rejected_mask"), "{table}");
        assert!(table.contains("0x1000000"), "{table}");
        assert!(table.contains("WARNING: 1 records missing"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["by_outcome"]["rejected_mask"], 1);
        assert_eq!(json["faults"][0]["requested_addr"], "0x1000000");
        assert_eq!(json["bytes_to_device"], 4096);
    }

    #[test]
    fn incomplete_trace_is_flagged() {
        let cut: String = TRACE.lines().take(3).map(|l| format!("{l}\n")).collect();
        let s = summarize(cut.as_bytes()).unwrap();
        assert!(s.footer.is_none());
        assert!(s.render_table().contains("INCOMPLETE"));
    }

    #[test]
    fn bad_input() {
        assert!(matches!(
            summarize("".as_bytes()),
            Err(SummaryError::NotATrace)
        ));
        assert!(matches!(
            summarize("{\"type\":\"dma\"}\n".as_bytes()),
            Err(SummaryError::NotATrace)
        ));
        let bad = format!("{}\nnot json\n", TRACE.lines().next().unwrap());
        let err = summarize(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, SummaryError::Parse { line: 2, .. }), "{err}");
        // Extreme values do not overflow.
        let header = TRACE.lines().next().unwrap();
        let rec = TRACE
            .lines()
            .nth(1)
            .unwrap()
            .replace("\"seq\":1", "\"seq\":18446744073709551615");
        let rec = rec.replace("\"len\":4096", "\"len\":18446744073709551615");
        let s = summarize(format!("{header}\n{rec}\n{rec}\n").as_bytes()).unwrap();
        assert_eq!(s.bytes_to_device, u64::MAX);
        assert_eq!(s.seq_gaps, u64::MAX - 1);
        let err = summarize_file("/nonexistent/trace.jsonl").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot open trace file /nonexistent/trace.jsonl"));
    }
}
