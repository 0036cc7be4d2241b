//! Reading a trace back: counts per outcome and direction, bytes moved, and
//! every fault with the address the driver asked for. Backs
//! `dmalab trace summary FILE [--json]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use super::read::{read, Completeness, ReadError, Record, TraceReader};
use super::{DmaRecord, Hex, TraceFooter, TraceHeader};
use crate::outcome::{Direction, Outcome};

/// How many faults the table lists before it says "... and N more" (the
/// JSON form lists them all).
const TABLE_FAULTS: usize = 50;

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
pub fn summarize_file(path: impl AsRef<Path>) -> Result<Summary, ReadError> {
    summarize_records(read(path)?)
}

/// Summarises a trace read from `input`.
pub fn summarize(input: impl BufRead) -> Result<Summary, ReadError> {
    summarize_records(TraceReader::new(input)?)
}

/// Summarises what `reader` yields, stopping at the first bad line.
pub fn summarize_records<R: BufRead>(mut reader: TraceReader<R>) -> Result<Summary, ReadError> {
    let mut s = Summary::new(reader.header().clone());
    let mut acc = Accumulator::default();
    for record in reader.by_ref() {
        if let Record::Dma(r) = record? {
            acc.add(&mut s, &r);
        }
    }
    s.footer = reader.footer();
    s.finish(acc);
    Ok(s)
}

/// What a summary needs while records stream past that it does not keep.
#[derive(Default)]
pub struct Accumulator {
    transfers: BTreeSet<u64>,
    last_seq: u64,
}

impl Accumulator {
    /// Counts one record into `s`.
    pub fn add(&mut self, s: &mut Summary, r: &DmaRecord) {
        s.seq_gaps = s
            .seq_gaps
            .saturating_add(r.seq.saturating_sub(self.last_seq.saturating_add(1)));
        self.last_seq = self.last_seq.max(r.seq);
        self.transfers.insert(r.transfer);
        s.add(r);
    }
}

impl Summary {
    /// An empty summary of a trace with this header.
    pub fn new(header: TraceHeader) -> Self {
        Summary {
            header: Some(header),
            ..Summary::default()
        }
    }

    /// Completes the figures once every record was added.
    pub fn finish(&mut self, acc: Accumulator) {
        // Drops after the last written record leave no gap; the footer has them.
        if let Some(f) = self.footer {
            self.seq_gaps = self.seq_gaps.max(f.dropped);
        }
        self.transfers = acc.transfers.len().try_into().unwrap_or(u64::MAX);
    }

    /// "complete: ..." or "incomplete: N records, no footer".
    pub fn completeness(&self) -> Completeness {
        match self.footer {
            Some(f) => Completeness::Complete(f),
            None => Completeness::Incomplete {
                records: self.records,
            },
        }
    }

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
        let _ = match self.footer {
            Some(_) => writeln!(o, "{}", self.completeness()),
            None => writeln!(
                o,
                "{} (the VMM did not finish the trace)",
                self.completeness()
            ),
        };
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

    use crate::trace::testdata::{trace_text, HEADER, RECORDS};

    #[test]
    fn counts_and_faults() {
        let s = summarize(trace_text().as_bytes()).unwrap();
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
        let cut: String = trace_text()
            .lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect();
        let s = summarize(cut.as_bytes()).unwrap();
        assert!(s.footer.is_none());
        let table = s.render_table();
        assert!(
            table.contains("incomplete: 2 records, no footer"),
            "{table}"
        );
    }

    #[test]
    fn bad_input() {
        assert!(matches!(summarize("".as_bytes()), Err(ReadError::Empty)));
        assert!(matches!(
            summarize("{\"type\":\"dma\"}\n".as_bytes()),
            Err(ReadError::MissingHeader { .. })
        ));
        let bad = format!("{HEADER}\nnot json\n");
        let err = summarize(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, ReadError::Parse { line: 2, .. }), "{err}");
        // Extreme values do not overflow.
        let rec = RECORDS[0].replace("\"seq\":1", "\"seq\":18446744073709551615");
        let rec = rec.replace("\"len\":4096", "\"len\":18446744073709551615");
        let s = summarize(format!("{HEADER}\n{rec}\n{rec}\n").as_bytes()).unwrap();
        assert_eq!(s.bytes_to_device, u64::MAX);
        assert_eq!(s.seq_gaps, u64::MAX - 1);
        let err = summarize_file("/nonexistent/trace.jsonl").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot open trace file /nonexistent/trace.jsonl"));
    }
}
