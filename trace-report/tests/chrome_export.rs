//! The Chrome Trace Event export, parsed back: one transfer slice and one
//! slice per record of each transfer, an instant per fault, the record's
//! fields as args, and timestamps that never go back on a track.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use device_model::trace::{Trace, TraceReader};
use device_model::Outcome;
use serde_json::Value;
use trace_report::chrome::export;
use trace_report::synth;

fn exported(text: &str) -> (Value, trace_report::ExportStats) {
    let mut out = Vec::new();
    let stats = export(TraceReader::new(text.as_bytes()).unwrap(), &mut out).unwrap();
    (serde_json::from_slice(&out).expect("valid JSON"), stats)
}

#[test]
fn events_per_transfer_and_fault() {
    let text = synth::trace_text(500, 8);
    let trace = Trace::parse(&text).unwrap();
    let (json, stats) = exported(&text);
    let events = json["traceEvents"].as_array().unwrap();
    let mut per_transfer: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &trace.records {
        *per_transfer.entry(r.transfer).or_default() += 1;
    }
    let slices = |cat: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == cat)
            .count()
    };
    assert_eq!(slices("transfer"), per_transfer.len());
    assert_eq!(stats.transfers, u64::try_from(per_transfer.len()).unwrap());
    // Each transfer slice says how many segments it holds; the segment
    // slices carrying that transfer number agree.
    for e in events.iter().filter(|e| e["cat"] == "transfer") {
        let t = e["args"]["transfer"].as_u64().unwrap();
        let segs = events
            .iter()
            .filter(|s| s["ph"] == "X" && s["cat"] != "transfer" && s["args"]["transfer"] == t)
            .count();
        assert_eq!(segs, per_transfer[&t], "transfer {t}");
        assert_eq!(
            e["args"]["segments"].as_u64(),
            Some(u64::try_from(segs).unwrap())
        );
    }
    let faults = trace
        .records
        .iter()
        .filter(|r| r.outcome != Outcome::Ok)
        .count();
    assert!(faults > 0);
    let instants: Vec<&Value> = events.iter().filter(|e| e["ph"] == "i").collect();
    assert_eq!(instants.len(), faults);
    assert!(instants
        .iter()
        .all(|e| e["s"] == "t" && e["cat"] == "fault"));
    // The record's fields are the args of its slice.
    let r = &trace.records[0];
    let seg = events
        .iter()
        .find(|e| e["ph"] == "X" && e["args"]["seq"] == r.seq)
        .unwrap();
    assert_eq!(seg["args"]["requested_addr"], r.requested_addr.to_string());
    assert_eq!(seg["args"]["outcome"], r.outcome.as_str());
    assert_eq!(seg["ts"].as_f64().unwrap(), r.t_ns as f64 / 1000.0);
    assert_eq!(
        json["otherData"]["trace"],
        "complete: 500 records written, 0 dropped"
    );
}

#[test]
fn a_track_per_device_with_monotonic_timestamps() {
    let text = synth::trace_text(800, 3);
    // A second device in the same file gets its own track.
    let second: String = text
        .lines()
        .filter(|l| l.contains("\"type\":\"dma\""))
        .take(20)
        .map(|l| {
            l.replace("0000:00:01.0", "0000:00:02.0")
                .replace("\"transfer\":", "\"transfer\":9000")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (head, tail) = text.split_at(text.find("{\"type\":\"footer\"").unwrap());
    let text = format!("{head}{second}{tail}");
    let (json, _) = exported(&text);
    let events = json["traceEvents"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dma24 0000:00:01.0", "dma24 0000:00:02.0"]);
    let mut last: BTreeMap<u64, f64> = BTreeMap::new();
    let mut seen = 0;
    for e in events.iter().filter(|e| e["ph"] != "M") {
        let tid = e["tid"].as_u64().unwrap();
        let ts = e["ts"].as_f64().unwrap();
        if let Some(prev) = last.get(&tid) {
            assert!(ts >= *prev, "track {tid}: {ts} after {prev}");
        }
        assert!(e["dur"].as_f64().unwrap_or(0.0) >= 0.0);
        last.insert(tid, ts);
        seen += 1;
    }
    assert_eq!(last.len(), 2);
    assert!(seen > 800);
}

#[test]
fn incomplete_trace_exports_and_says_so() {
    let text: String = synth::trace_text(30, 1)
        .lines()
        .take(11)
        .map(|l| format!("{l}\n"))
        .collect();
    let (json, stats) = exported(&text);
    assert_eq!(stats.records, 10);
    assert_eq!(
        json["otherData"]["trace"],
        "incomplete: 10 records, no footer"
    );
}
