//! The `trace` part: the HTML report and the Chrome export of a generated
//! trace of a million records (`cargo bench -p trace-report --bench
//! report`), next to `trace summary` of the same file (reading alone).

use serde::{Deserialize, Serialize};

use super::criterion::{bench_result, cargo_bench};
use super::inputs::{progress, Inputs};
use super::table::{row, Row};

/// The bench's `trace_report_json:` line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceReportRun {
    pub records: u64,
    pub trace_bytes: u64,
    pub report_bytes: u64,
    pub chrome_bytes: u64,
    pub view_s: f64,
    pub view_cpu_s: f64,
    pub summary_s: f64,
    pub summary_cpu_s: f64,
    pub export_s: f64,
}

/// What the trace part measured.
#[derive(Default)]
pub struct TracePart {
    pub rows: Vec<Row>,
    pub run: Option<TraceReportRun>,
}

pub fn parse_trace_run(output: &str) -> Result<TraceReportRun, String> {
    serde_json::from_value(bench_result(output, "trace_report")?)
        .map_err(|e| format!("trace_report result: {e}"))
}

const HOW: &str = "cargo bench -p trace-report --bench report: a generated trace (trace_report::synth: transfers of 1-4 segments, SG descriptor fetches, mask rejections, truncations) written to a temp file, then `trace summary` (reading alone) and `trace view` (reading + the HTML) of it, 3 runs each, medians; wall time and this process's CPU time";

pub fn trace_part(inputs: &Inputs) -> TracePart {
    let mut part = TracePart::default();
    let records: u64 = if inputs.opts.quick {
        200_000
    } else {
        1_000_000
    };
    progress(&format!(
        "trace report: cargo bench -p trace-report --bench report ({records} records)"
    ));
    let res = cargo_bench(
        "trace-report",
        "report",
        &[],
        &inputs.out.join("criterion"),
        &[("DMALAB_BENCH_TRACE_RECORDS", records.to_string())],
        &inputs.out.join("logs/cargo-bench-trace-report.log"),
    )
    .and_then(|out| parse_trace_run(&out));
    let metric = "trace view: HTML report, per million records";
    match &res {
        Ok(r) => part.rows.extend(rows(r)),
        Err(e) => part.rows.push(
            row("trace", metric, HOW)
                .not_measured(e)
                .at_most(2.0, "2 s"),
        ),
    }
    part.run = res.ok();
    part
}

// Counts of records and bytes are far below 2^53.
#[allow(clippy::cast_precision_loss)]
fn rows(r: &TraceReportRun) -> Vec<Row> {
    let per_m = 1e6 / (r.records.max(1) as f64);
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let view = r.view_s * per_m;
    vec![
        row("trace", "trace view: HTML report, per million records", HOW)
            .value(
                view,
                "s",
                format!(
                    "{view:.2} s (CPU {:.2} s; trace summary of the same file {:.2} s, so the pictures cost {:.2}x the reading; {:.0} MiB trace -> {:.1} MiB page)",
                    r.view_cpu_s * per_m,
                    r.summary_s * per_m,
                    r.view_s / r.summary_s.max(1e-9),
                    mib(r.trace_bytes),
                    mib(r.report_bytes)
                ),
            )
            .at_most(2.0, "2 s"),
        row(
            "trace",
            "trace export --format chrome, per million records",
            "the same bench: one run of the Chrome Trace Event export of that trace",
        )
        .value(
            r.export_s * per_m,
            "s",
            format!(
                "{:.2} s ({:.0} MiB of JSON)",
                r.export_s * per_m,
                mib(r.chrome_bytes)
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_line_becomes_rows_per_million() {
        let out = "noise\ntrace_report_json: {\"chrome_bytes\":1048576,\"export_s\":0.5,\"records\":500000,\"report_bytes\":2097152,\"summary_cpu_s\":0.4,\"summary_s\":0.5,\"trace_bytes\":134217728,\"view_cpu_s\":0.6,\"view_s\":0.75}\n";
        let r = parse_trace_run(out).unwrap();
        assert_eq!(r.records, 500_000);
        let rows = rows(&r);
        assert_eq!(rows[0].value, Some(1.5));
        assert_eq!(rows[0].met, Some(true));
        assert!(
            rows[0].shown.contains("1.50x the reading"),
            "{}",
            rows[0].shown
        );
        assert_eq!(rows[1].value, Some(1.0));
        assert!(parse_trace_run("nothing").is_err());
    }
}
