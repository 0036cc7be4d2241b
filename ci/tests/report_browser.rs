//! The trace report of generated traces in headless chromium, without a
//! guest: a small one (a mark per record) and a binned one (100,000
//! records), both must run their script without an error. The report of a
//! real guest's trace is checked in boot_transfer.rs.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use device_model::trace::summary::summarize;
use trace_report::synth;

fn chromium() -> Option<PathBuf> {
    match ci::browser::chromium() {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("DMALAB_REQUIRE_IMAGES").is_some_and(|v| v == "1") => {
            panic!("{e} (cargo xtask test installs it)")
        }
        Err(e) => {
            eprintln!("SKIPPED report_browser: {e}");
            None
        }
    }
}

fn check(records: usize) {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "dmalab-report-browser-{}-{records}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("t.jsonl");
    let text = synth::trace_text(records, 11);
    std::fs::write(&trace, &text).unwrap();
    let page = dir.join("t.html");
    trace_report::write_report(&trace, &page).unwrap();
    let dom = ci::browser::dump_dom(&chromium, &page).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dom.contains("data-ready=\"1\""),
        "the script did not finish"
    );
    assert!(!dom.contains("data-errors="), "script errors");
    // The legend the script builds from the DOM shows the trace's counts.
    for (outcome, n) in summarize(text.as_bytes()).unwrap().by_outcome {
        let swatch = format!("{} {n}</span>", outcome.as_str());
        assert!(dom.contains(&swatch), "legend lacks {swatch:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn small_report_runs_in_chromium() {
    check(500);
}

#[test]
fn binned_report_runs_in_chromium() {
    check(100_000);
}
