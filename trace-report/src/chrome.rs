//! Chrome Trace Event JSON (opens in the Perfetto UI and chrome://tracing):
//! one track per device (a thread named after its BDF), a complete slice
//! ("X") per transfer and per segment inside it, an instant event ("i") per
//! fault; every record's fields are the args of its segment slice.
//!
//! Records have one time each (when the device made the access), so a
//! segment lasts until the next record of its transfer, and the last one
//! [`LAST_SEGMENT_US`]. Events are written in record order, which is time
//! order per device: each track's timestamps never go back.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use device_model::trace::{DmaRecord, ReadError, Record, TraceReader};
use device_model::Outcome;
use serde_json::json;
use thiserror::Error;

/// How long the last segment of a transfer is drawn (µs).
pub const LAST_SEGMENT_US: f64 = 1.0;
const PID: u32 = 1;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot write the export: {0}")]
    Write(#[from] io::Error),
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub records: u64,
    pub transfers: u64,
    pub faults: u64,
}

/// Writes the Chrome Trace Event form of what `reader` yields to `out`.
pub fn export<R: BufRead>(
    mut reader: TraceReader<R>,
    out: &mut impl Write,
) -> Result<ExportStats, ExportError> {
    let mut w = Events::new(out)?;
    let mut tids: BTreeMap<String, u32> = BTreeMap::new();
    let header_bdf = reader.header().bdf.clone();
    tids.insert(header_bdf.clone(), 1);
    w.event(&json!({"ph":"M","pid":PID,"name":"process_name","args":{"name":"dmalab"}}))?;
    w.event(&json!({"ph":"M","pid":PID,"tid":1,"name":"thread_name","args":{"name":format!("dma24 {header_bdf}")}}))?;
    let mut stats = ExportStats::default();
    let mut open: Vec<DmaRecord> = Vec::new();
    for record in reader.by_ref() {
        let Record::Dma(r) = record? else {
            continue;
        };
        stats.records += 1;
        if open
            .last()
            .is_some_and(|l| l.transfer != r.transfer || l.bdf != r.bdf)
        {
            flush(&mut w, &mut open, &mut tids, &mut stats)?;
        }
        open.push(r);
    }
    flush(&mut w, &mut open, &mut tids, &mut stats)?;
    let completeness = reader.completeness().to_string();
    w.finish(&completeness)?;
    Ok(stats)
}

// Nanoseconds to the format's microseconds; exact below 2^53 ns (104 days).
#[allow(clippy::cast_precision_loss)]
fn us(t_ns: u64) -> f64 {
    t_ns as f64 / 1000.0
}

fn flush<W: Write>(
    w: &mut Events<W>,
    open: &mut Vec<DmaRecord>,
    tids: &mut BTreeMap<String, u32>,
    stats: &mut ExportStats,
) -> Result<(), ExportError> {
    let (Some(first), Some(last)) = (open.first(), open.last()) else {
        return Ok(());
    };
    let next_tid = u32::try_from(tids.len() + 1).unwrap_or(u32::MAX);
    let tid = match tids.get(&first.bdf) {
        Some(t) => *t,
        None => {
            tids.insert(first.bdf.clone(), next_tid);
            w.event(&json!({"ph":"M","pid":PID,"tid":next_tid,"name":"thread_name","args":{"name":format!("dma24 {}", first.bdf)}}))?;
            next_tid
        }
    };
    stats.transfers += 1;
    let t0 = us(first.t_ns);
    let end = us(last.t_ns) + LAST_SEGMENT_US;
    let worst = open
        .iter()
        .map(|r| r.outcome)
        .find(|o| *o != Outcome::Ok)
        .unwrap_or(Outcome::Ok);
    w.event(&json!({
        "ph": "X", "pid": PID, "tid": tid, "cat": "transfer",
        "name": format!("transfer {}", first.transfer),
        "ts": t0, "dur": end - t0,
        "args": {"transfer": first.transfer, "segments": open.len(), "outcome": worst.as_str()},
    }))?;
    for (i, r) in open.iter().enumerate() {
        let ts = us(r.t_ns);
        let until = open.get(i + 1).map_or(end, |n| us(n.t_ns));
        w.event(&json!({
            "ph": "X", "pid": PID, "tid": tid, "cat": r.dir.as_str(),
            "name": format!("{} {}", r.dir.as_str(), r.outcome.as_str()),
            "ts": ts, "dur": (until - ts).max(0.0),
            "args": r,
        }))?;
        if r.outcome != Outcome::Ok {
            stats.faults += 1;
            w.event(&json!({
                "ph": "i", "s": "t", "pid": PID, "tid": tid, "cat": "fault",
                "name": format!("fault: {}", r.outcome.as_str()),
                "ts": ts,
                "args": {"seq": r.seq, "requested_addr": r.requested_addr, "effective_addr": r.effective_addr, "error": r.error},
            }))?;
        }
    }
    open.clear();
    Ok(())
}

/// The `{"traceEvents":[...]}` object, written one event at a time.
struct Events<'a, W: Write> {
    out: &'a mut W,
    first: bool,
}

impl<'a, W: Write> Events<'a, W> {
    fn new(out: &'a mut W) -> io::Result<Self> {
        out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n")?;
        Ok(Events { out, first: true })
    }

    fn event(&mut self, e: &serde_json::Value) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut *self.out, e).map_err(io::Error::from)
    }

    fn finish(self, completeness: &str) -> io::Result<()> {
        self.out.write_all(b"\n],\"otherData\":")?;
        serde_json::to_writer(
            &mut *self.out,
            &json!({"source": "dmalab trace export", "trace": completeness}),
        )?;
        self.out.write_all(b"}\n")?;
        self.out.flush()
    }
}
