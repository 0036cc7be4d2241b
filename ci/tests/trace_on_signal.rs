//! The DMA trace is closed (footer written) when dmalab is stopped by a
//! signal, not only when the guest ends.

#![forbid(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ci::crosscheck::Trace;
use ci::guest::{self, Artifacts};

fn stop_with(signal: &str, want_code: i32) {
    let Some(a) = Artifacts::for_test("trace_on_signal") else {
        return;
    };
    let dir = guest::runs_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join(format!("signal-{signal}.trace.jsonl"));
    let _ = std::fs::remove_file(&trace);
    let mut child = Command::new(&a.dmalab)
        .arg("run")
        .arg("--kernel")
        .arg(a.images.join("vmlinux"))
        .args([
            "--device",
            "dma24",
            "--no-stdin",
            "--timeout",
            "120",
            "--trace",
        ])
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dmalab");
    // Let the VM start (the trace header is written at start-up).
    let t0 = Instant::now();
    while !trace.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for dmalab");
    assert_eq!(status.code(), Some(want_code), "dmalab after SIG{signal}");
    let t = Trace::load(&trace).expect("the trace is readable");
    let footer = t.footer.expect("the trace has its footer after a signal");
    assert_eq!(footer.records, t.records.len() as u64);
    assert_eq!(footer.dropped, 0);
}

#[test]
fn sigint_closes_the_trace() {
    stop_with("INT", 130);
}

#[test]
fn sigterm_closes_the_trace() {
    stop_with("TERM", 130);
}
