//! One pass over a trace: the summary (the same figures `dmalab trace
//! summary` prints), a compact copy of every record for the pictures, and
//! the full records of small traces for hovering.

use std::io::BufRead;

use device_model::trace::summary::{Accumulator, Summary};
use device_model::trace::{Completeness, DmaRecord, ReadError, Record, TraceHeader, TraceReader};
use device_model::{Direction, Outcome};

/// Up to this many records, each record is its own mark with all its fields
/// in the page; above, marks are bins with a count (a million records still
/// open in a browser).
pub const DETAIL_LIMIT: usize = 20_000;
/// Faults (and truncated accesses) drawn and listed one by one, whatever the
/// trace's size; the rest are counted in bins and in the summary.
pub const FAULT_LIST_LIMIT: usize = 1_000;

/// What the pictures need of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub seq: u64,
    pub t_ns: u64,
    pub transfer: u64,
    pub dir: Direction,
    pub outcome: Outcome,
    pub requested: u64,
    /// None when the access was refused before an address was computed.
    pub effective: Option<u64>,
    pub len: u64,
    /// Drawn and listed on its own (a fault or truncation within
    /// [`FAULT_LIST_LIMIT`], or any record of a small trace).
    pub single: bool,
}

impl Access {
    /// Where the mark sits: the effective address, or the requested one when
    /// nothing was computed.
    pub fn at(&self) -> u64 {
        self.effective.unwrap_or(self.requested)
    }

    pub fn end(&self) -> u64 {
        self.at().saturating_add(self.len)
    }

    pub fn is_fault(&self) -> bool {
        !matches!(self.outcome, Outcome::Ok)
    }
}

/// A trace, read.
pub struct Model {
    pub header: TraceHeader,
    pub summary: Summary,
    pub completeness: Completeness,
    pub accesses: Vec<Access>,
    /// Every record with all its fields, for traces of at most
    /// [`DETAIL_LIMIT`] records (None above).
    pub detail: Option<Vec<DmaRecord>>,
    /// First record's t_ns (0 without records).
    pub t_min: u64,
    /// Last t_ns seen (records or footer).
    pub t_max: u64,
}

impl Model {
    /// Reads every record `reader` yields; a bad line is an error.
    pub fn read<R: BufRead>(mut reader: TraceReader<R>) -> Result<Model, ReadError> {
        let header = reader.header().clone();
        let mut summary = Summary::new(header.clone());
        let mut acc = Accumulator::default();
        let mut accesses = Vec::new();
        let mut detail = Some(Vec::new());
        let mut listed_faults = 0usize;
        let mut t_max = 0;
        let mut t_min = u64::MAX;
        for record in reader.by_ref() {
            let r = match record? {
                Record::Dma(r) => r,
                Record::Footer(f) => {
                    t_max = t_max.max(f.t_ns);
                    continue;
                }
                Record::Header(_) | Record::Reset(_) => continue,
            };
            acc.add(&mut summary, &r);
            t_max = t_max.max(r.t_ns);
            t_min = t_min.min(r.t_ns);
            let fault = r.outcome != Outcome::Ok;
            let single_fault = fault && listed_faults < FAULT_LIST_LIMIT;
            if single_fault {
                listed_faults += 1;
            }
            accesses.push(Access {
                seq: r.seq,
                t_ns: r.t_ns,
                transfer: r.transfer,
                dir: r.dir,
                outcome: r.outcome,
                requested: r.requested_addr.0,
                effective: r.effective_addr.map(|h| h.0),
                len: r.len,
                single: single_fault,
            });
            if let Some(d) = detail.as_mut() {
                if d.len() < DETAIL_LIMIT {
                    d.push(r);
                } else {
                    detail = None;
                }
            }
        }
        summary.footer = reader.footer();
        summary.finish(acc);
        if detail.is_some() {
            for a in &mut accesses {
                a.single = true;
            }
        }
        Ok(Model {
            completeness: summary.completeness(),
            header,
            summary,
            accesses,
            detail,
            t_min: t_min.min(t_max),
            t_max,
        })
    }

    /// Bus addresses the address axis must reach: every mark, the mask, the
    /// guest's RAM and MMIO window.
    pub fn addr_max(&self) -> u64 {
        let mut m = self.header.mask.0.saturating_add(1);
        for a in &self.accesses {
            m = m.max(a.end()).max(a.requested.saturating_add(a.len));
        }
        if let Some(layout) = &self.header.memory {
            for [_, end] in &layout.ram {
                m = m.max(end.0);
            }
            if let Some([_, end]) = layout.mmio_window {
                m = m.max(end.0);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[test]
    fn small_trace_keeps_every_record() {
        let text = synth::trace_text(200, 7);
        let m = Model::read(TraceReader::new(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(m.accesses.len(), 200);
        assert_eq!(m.detail.as_ref().map(Vec::len), Some(200));
        assert!(m.accesses.iter().all(|a| a.single));
        assert_eq!(m.summary.records, 200);
        assert!(matches!(m.completeness, Completeness::Complete(_)));
    }

    #[test]
    fn large_trace_keeps_compact_records_and_lists_some_faults() {
        let text = synth::trace_text(DETAIL_LIMIT + 500, 3);
        let m = Model::read(TraceReader::new(text.as_bytes()).unwrap()).unwrap();
        assert!(m.detail.is_none());
        assert_eq!(m.accesses.len(), DETAIL_LIMIT + 500);
        let singles = m.accesses.iter().filter(|a| a.single).count();
        assert_eq!(
            singles,
            FAULT_LIST_LIMIT.min(m.accesses.iter().filter(|a| a.is_fault()).count())
        );
    }
}
