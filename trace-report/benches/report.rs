//! The report's cost on a generated trace of DMALAB_BENCH_TRACE_RECORDS
//! records (default one million), side by side with `trace summary` of the
//! same file (reading alone: the peer). Prints one line
//! `trace_report_json: {...}` that `cargo xtask bench` reads. Not criterion:
//! one run of each takes seconds; three runs each, medians.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Instant;

use device_model::trace::summary::summarize_file;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (wall seconds, CPU seconds of this process) of one call to `f`.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let cpu0 = cpu_s();
    let t = Instant::now();
    f();
    (t.elapsed().as_secs_f64(), cpu_s() - cpu0)
}

/// utime + stime of this process from /proc/self/stat (clock ticks of 10 ms).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat(5), counted after the ")" that ends field 2.
    (ticks(11) + ticks(12)) / 100.0
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let records: usize = std::env::var("DMALAB_BENCH_TRACE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("dmalab-trace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace = dir.join("synthetic.trace.jsonl");
    {
        let file = std::fs::File::create(&trace).expect("create the trace");
        let mut w = std::io::BufWriter::new(file);
        trace_report::synth::write_trace(&mut w, records, 1).expect("write the trace");
    }
    let html = dir.join("report.html");
    let chrome = dir.join("chrome.json");
    let (mut sum, mut view, mut export) = (Vec::new(), Vec::new(), Vec::new());
    let (mut view_cpu, mut sum_cpu) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (w, c) = timed(|| {
            summarize_file(&trace).expect("summary");
        });
        sum.push(w);
        sum_cpu.push(c);
        let (w, c) = timed(|| {
            trace_report::write_report(&trace, &html).expect("report");
        });
        view.push(w);
        view_cpu.push(c);
    }
    let (w, _) = timed(|| {
        trace_report::write_chrome(&trace, &chrome).expect("export");
    });
    export.push(w);
    let line = serde_json::json!({
        "records": records,
        "trace_bytes": size(&trace),
        "report_bytes": size(&html),
        "chrome_bytes": size(&chrome),
        "view_s": median(view),
        "view_cpu_s": median(view_cpu),
        "summary_s": median(sum),
        "summary_cpu_s": median(sum_cpu),
        "export_s": median(export),
    });
    println!("trace_report_json: {line}");
    let _ = std::fs::remove_dir_all(&dir);
}
