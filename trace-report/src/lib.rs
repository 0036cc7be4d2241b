//! Pictures of a dma24 DMA trace, for people who would rather look than
//! read JSON lines:
//! - [`write_report`]: one self-contained HTML file (inline SVG, CSS and
//!   script, nothing fetched) with an address map (where each DMA went,
//!   against the device's mask, ZONE_DMA, the guest's RAM and MMIO window),
//!   a zoomable timeline, the fault list and the summary; backs
//!   `dmalab trace view`.
//! - [`write_chrome`]: Chrome Trace Event JSON for the Perfetto UI and
//!   chrome://tracing; backs `dmalab trace export --format chrome`.
//!
//! Both read the trace with `device_model::trace::read`, the reader
//! `dmalab trace summary` uses, so a bad trace gets the same errors.

#![forbid(unsafe_code)]

mod addrmap;
pub mod chrome;
pub mod model;
mod page;
mod scale;
mod svg;
pub mod synth;
mod timeline;

use std::fs::File;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use device_model::trace::{read, Completeness, ReadError, TraceReader};
use thiserror::Error;

pub use chrome::{ExportError, ExportStats};
pub use model::{Model, DETAIL_LIMIT, FAULT_LIST_LIMIT};

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot write {path}: {source}; choose a writable path with -o")]
    Write { path: String, source: io::Error },
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// What a written report shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportStats {
    pub records: u64,
    pub completeness: Completeness,
    /// Every record is a mark of its own (else: bins).
    pub detailed: bool,
    pub bytes: usize,
}

/// `trace.jsonl` -> `trace.html` next to it.
pub fn default_output(input: &Path) -> PathBuf {
    input.with_extension("html")
}

/// The HTML report of the trace `reader` yields, as a string.
pub fn render<R: BufRead>(
    reader: TraceReader<R>,
    title: &str,
) -> Result<(String, ReportStats), ReadError> {
    let model = Model::read(reader)?;
    let html = page::render(&model, title);
    let stats = ReportStats {
        records: model.summary.records,
        completeness: model.completeness,
        detailed: model.detail.is_some(),
        bytes: html.len(),
    };
    Ok((html, stats))
}

/// Reads the trace at `input` and writes its HTML report to `output`.
pub fn write_report(input: &Path, output: &Path) -> Result<ReportStats, ReportError> {
    let title = input.file_name().map_or_else(
        || input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (html, stats) = render(read(input)?, &title)?;
    std::fs::write(output, html).map_err(|source| ReportError::Write {
        path: output.display().to_string(),
        source,
    })?;
    Ok(stats)
}

/// Reads the trace at `input` and writes its Chrome Trace Event JSON to `output`.
pub fn write_chrome(input: &Path, output: &Path) -> Result<ExportStats, ReportError> {
    let reader = read(input)?;
    let file = File::create(output).map_err(|source| ReportError::Write {
        path: output.display().to_string(),
        source,
    })?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let stats = chrome::export(reader, &mut out)?;
    out.flush().map_err(|source| ReportError::Write {
        path: output.display().to_string(),
        source,
    })?;
    Ok(stats)
}
