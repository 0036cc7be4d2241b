//! Reading a trace file back: the one reader behind `dmalab trace summary`,
//! `dmalab trace view|export` and the harness' cross-checks.
//!
//! [`read`] opens a file and checks its first line is a version-1 header;
//! the [`TraceReader`] then yields one [`Record`] per line (the
//! `#[serde(tag = "type")]` enum: one struct per record type), naming the
//! line of any record it cannot parse. After the last line it knows whether
//! the trace was finished ([`TraceReader::footer`]); a trace without a
//! footer (the VMM was killed) is still readable, and [`Completeness`] says
//! so in words.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use super::{DmaRecord, ResetRecord, TraceFooter, TraceHeader, TRACE_VERSION};

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("cannot open trace file {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read trace line {line}: {source}")]
    Io { line: u64, source: io::Error },
    #[error("the trace is empty: a dma24 trace starts with a header line (was the VMM run with --trace?)")]
    Empty,
    #[error("not a dma24 trace: line 1 is {found}, not a header (a trace written by `dmalab run --trace` starts with {{\"type\":\"header\",...}})")]
    MissingHeader { found: String },
    #[error(
        "trace format version {found} is not supported (this dmalab reads version {TRACE_VERSION})"
    )]
    Version { found: u32 },
    #[error("trace line {line} is not a valid record: {message}")]
    Parse { line: u64, message: String },
    #[error("trace line {line}: a second header (two traces in one file?)")]
    SecondHeader { line: u64 },
    #[error("trace line {line}: a record after the footer")]
    AfterFooter { line: u64 },
}

/// One line of a trace file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header(TraceHeader),
    Dma(DmaRecord),
    Reset(ResetRecord),
    Footer(TraceFooter),
}

/// Whether a trace was finished by the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// The footer is there: `records` written, `dropped` lost to a full queue.
    Complete(TraceFooter),
    /// No footer: the VMM stopped before closing the trace.
    Incomplete { records: u64 },
}

impl fmt::Display for Completeness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Completeness::Complete(ft) => {
                write!(
                    f,
                    "complete: {} records written, {} dropped",
                    ft.records, ft.dropped
                )?;
                match ft.max_size {
                    Some(max) => write!(f, " (size cap of {} reached)", super::human(max)),
                    None => Ok(()),
                }
            }
            Completeness::Incomplete { records } => {
                write!(f, "incomplete: {records} records, no footer")
            }
        }
    }
}

/// Opens the trace at `path` and reads its header.
pub fn read(path: impl AsRef<Path>) -> Result<TraceReader<BufReader<File>>, ReadError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.display().to_string(),
        source,
    })?;
    TraceReader::new(BufReader::with_capacity(1 << 20, file))
}

/// How the sink starts every `dma` line.
const DMA_PREFIX: &str = "{\"type\":\"dma\",";

/// Lines of a trace file, each parsed as a [`Record`].
struct Lines<R> {
    input: R,
    buf: String,
    /// Number of the line last read (1-based).
    line: u64,
}

impl<R: BufRead> Lines<R> {
    /// The next non-blank line, parsed.
    fn next_record(&mut self) -> Option<Result<Record, ReadError>> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(ReadError::Io {
                        line: self.line,
                        source,
                    }))
                }
            }
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            // The common line first, straight into its struct: the tagged
            // enum buffers every field before it picks the variant, which
            // doubles the cost of reading a large trace. Same result (the
            // struct ignores the "type" field).
            let parsed = if text.starts_with(DMA_PREFIX) {
                serde_json::from_str::<DmaRecord>(text).map(Record::Dma)
            } else {
                serde_json::from_str::<Record>(text)
            };
            return Some(match parsed {
                Ok(r) => Ok(r),
                // A last line without its newline that does not parse was cut
                // short (the VMM was killed, or its disk filled mid-write):
                // the trace ends before it, incomplete.
                Err(_) if !self.buf.ends_with('\n') && self.line > 1 => return None,
                Err(_) if self.line == 1 && !text.contains("\"header\"") => {
                    Err(ReadError::MissingHeader {
                        found: format!("`{}`", shorten(text)),
                    })
                }
                Err(e) => Err(ReadError::Parse {
                    line: self.line,
                    message: e.to_string(),
                }),
            });
        }
    }
}

/// A trace being read: the header, then the records line by line.
pub struct TraceReader<R> {
    lines: Lines<R>,
    header: TraceHeader,
    dma_records: u64,
    footer: Option<TraceFooter>,
    failed: bool,
}

impl<R: BufRead> TraceReader<R> {
    /// Reads the first line of `input`, which must be a version-1 header.
    pub fn new(input: R) -> Result<Self, ReadError> {
        let mut lines = Lines {
            input,
            buf: String::new(),
            line: 0,
        };
        let header = match lines.next_record().ok_or(ReadError::Empty)?? {
            Record::Header(h) if h.version == TRACE_VERSION => h,
            Record::Header(h) => return Err(ReadError::Version { found: h.version }),
            Record::Dma(_) => {
                return Err(ReadError::MissingHeader {
                    found: "a dma record".into(),
                })
            }
            Record::Footer(_) => {
                return Err(ReadError::MissingHeader {
                    found: "a footer".into(),
                })
            }
            Record::Reset(_) => {
                return Err(ReadError::MissingHeader {
                    found: "a reset record".into(),
                })
            }
        };
        Ok(TraceReader {
            lines,
            header,
            dma_records: 0,
            footer: None,
            failed: false,
        })
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The footer, once the reader has passed it (None before, or when the
    /// trace has none).
    pub fn footer(&self) -> Option<TraceFooter> {
        self.footer
    }

    /// DMA records read so far.
    pub fn dma_records(&self) -> u64 {
        self.dma_records
    }

    /// Whether the trace was finished; meaningful after the last record.
    pub fn completeness(&self) -> Completeness {
        match self.footer {
            Some(f) => Completeness::Complete(f),
            None => Completeness::Incomplete {
                records: self.dma_records,
            },
        }
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<Record, ReadError>;

    /// The records after the header, footer included; stops at the first
    /// error (after yielding it).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.lines.next_record()?;
        let checked = match item {
            Ok(Record::Header(_)) => Err(ReadError::SecondHeader {
                line: self.lines.line,
            }),
            Ok(_) if self.footer.is_some() => Err(ReadError::AfterFooter {
                line: self.lines.line,
            }),
            Ok(r) => {
                match &r {
                    Record::Dma(_) => self.dma_records += 1,
                    Record::Footer(f) => self.footer = Some(*f),
                    Record::Header(_) | Record::Reset(_) => {}
                }
                Ok(r)
            }
            Err(e) => Err(e),
        };
        self.failed = checked.is_err();
        Some(checked)
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A whole trace in memory (small traces: tests, the harness).
#[derive(Clone, Debug)]
pub struct Trace {
    pub header: TraceHeader,
    pub records: Vec<DmaRecord>,
    /// The engine resets, in file order.
    pub resets: Vec<ResetRecord>,
    /// None when the file ended without a footer (the VMM did not close it).
    pub footer: Option<TraceFooter>,
}

impl Trace {
    /// Reads the whole trace at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Trace, ReadError> {
        Trace::collect(read(path)?)
    }

    /// Reads a whole trace from text.
    pub fn parse(text: &str) -> Result<Trace, ReadError> {
        Trace::collect(TraceReader::new(text.as_bytes())?)
    }

    fn collect<R: BufRead>(mut reader: TraceReader<R>) -> Result<Trace, ReadError> {
        let (mut records, mut resets) = (Vec::new(), Vec::new());
        for r in reader.by_ref() {
            match r? {
                Record::Dma(d) => records.push(d),
                Record::Reset(x) => resets.push(x),
                Record::Header(_) | Record::Footer(_) => {}
            }
        }
        Ok(Trace {
            header: reader.header.clone(),
            records,
            resets,
            footer: reader.footer,
        })
    }

    pub fn completeness(&self) -> Completeness {
        match self.footer {
            Some(f) => Completeness::Complete(f),
            None => Completeness::Incomplete {
                records: self.records.len().try_into().unwrap_or(u64::MAX),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::testdata::{FOOTER, HEADER, RECORDS};
    use crate::Outcome;

    fn text(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn reads_header_records_and_footer() {
        let mut all = vec![HEADER];
        all.extend(RECORDS);
        all.push(FOOTER);
        let t = Trace::parse(&text(&all)).unwrap();
        assert_eq!(t.header.mask_bits, 24);
        assert_eq!(t.records.len(), RECORDS.len());
        assert_eq!(t.records[1].outcome, Outcome::RejectedMask);
        assert_eq!(t.footer.unwrap().records, 4);
        assert_eq!(
            t.completeness().to_string(),
            "complete: 4 records written, 1 dropped"
        );
    }

    #[test]
    fn a_cut_last_line_ends_the_trace() {
        let mut t = text(&[HEADER, RECORDS[0]]);
        t.push_str(&RECORDS[1][..40]);
        let mut r = TraceReader::new(t.as_bytes()).unwrap();
        assert_eq!(r.by_ref().count(), 1);
        assert_eq!(
            r.completeness().to_string(),
            "incomplete: 1 records, no footer"
        );
        // The same bytes with a newline are a broken record, named.
        t.push('\n');
        let mut r = TraceReader::new(t.as_bytes()).unwrap();
        assert!(r.nth(1).unwrap().is_err());
    }

    #[test]
    fn no_footer_is_incomplete_not_an_error() {
        let mut all = vec![HEADER];
        all.extend(&RECORDS[..3]);
        let t = text(&all);
        let mut r = TraceReader::new(t.as_bytes()).unwrap();
        assert_eq!(r.by_ref().count(), 3);
        assert_eq!(r.footer(), None);
        assert_eq!(
            r.completeness().to_string(),
            "incomplete: 3 records, no footer"
        );
    }

    #[test]
    fn empty_and_headerless_traces_are_refused() {
        let e = TraceReader::new("".as_bytes()).err().unwrap();
        assert!(matches!(e, ReadError::Empty), "{e}");
        let e = TraceReader::new("\n\n".as_bytes()).err().unwrap();
        assert!(matches!(e, ReadError::Empty), "{e}");
        let e = TraceReader::new(text(&[RECORDS[0]]).as_bytes())
            .err()
            .unwrap();
        assert!(e.to_string().contains("line 1 is a dma record"), "{e}");
        let e = TraceReader::new("hello\n".as_bytes()).err().unwrap();
        assert!(e.to_string().contains("line 1 is `hello`"), "{e}");
        let v2 = HEADER.replace("\"version\":1", "\"version\":2");
        let e = TraceReader::new(text(&[&v2]).as_bytes()).err().unwrap();
        assert!(matches!(e, ReadError::Version { found: 2 }), "{e}");
    }

    #[test]
    fn bad_line_is_named() {
        let all = [HEADER, RECORDS[0], "{\"type\":\"dma\",\"seq\":", RECORDS[1]];
        let e = Trace::parse(&text(&all)).unwrap_err();
        assert!(matches!(e, ReadError::Parse { line: 3, .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with("trace line 3 is not a valid record"));
        let all = [HEADER, "{\"type\":\"bogus\"}"];
        let e = Trace::parse(&text(&all)).unwrap_err();
        assert!(matches!(e, ReadError::Parse { line: 2, .. }), "{e}");
        let all = [HEADER, FOOTER, RECORDS[0]];
        let e = Trace::parse(&text(&all)).unwrap_err();
        assert!(matches!(e, ReadError::AfterFooter { line: 3 }), "{e}");
        let all = [HEADER, HEADER];
        let e = Trace::parse(&text(&all)).unwrap_err();
        assert!(matches!(e, ReadError::SecondHeader { line: 2 }), "{e}");
        let e = Trace::load("/nonexistent/t.jsonl").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot open trace file /nonexistent/t.jsonl"));
    }

    #[test]
    fn fast_path_and_tagged_enum_read_the_same_record() {
        // The sink writes "type" first (fast path); any other field order
        // goes through the tagged enum and must give the same record.
        let v: serde_json::Value = serde_json::from_str(RECORDS[1]).unwrap();
        let mut fields: Vec<(String, serde_json::Value)> =
            v.as_object().unwrap().clone().into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let reordered = format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(!reordered.starts_with(DMA_PREFIX));
        let a = Trace::parse(&text(&[HEADER, RECORDS[1]])).unwrap();
        let b = Trace::parse(&text(&[HEADER, &reordered])).unwrap();
        assert_eq!(a.records, b.records);
        let bad = reordered.replace("\"0x1000000\"", "\"1000000\"");
        let e = Trace::parse(&text(&[HEADER, &bad])).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn reader_stops_after_an_error() {
        let all = [HEADER, "junk", RECORDS[0]];
        let t = text(&all);
        let r = TraceReader::new(t.as_bytes()).unwrap();
        let items: Vec<_> = r.collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }
}
