//! dmalab's task runner: `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `images`: build (or find in the cache) the guest kernel, initramfs and
//!   driver module; prints the output folder.
//! - `demo`: `images`, then boot the guest with the device and the trace on,
//!   run transfers, print the result and the trace summary.
//! - `test`: `images`, then every test of the workspace with the images
//!   required (a missing image fails instead of skipping).
//! - `bench`: boot time against QEMU, VMM start-up and memory, MMIO dispatch,
//!   DMA throughput: a table with targets, and JSON (see bench/mod.rs).

mod bench;
mod demo;
mod images;
mod tally;

use std::process::{Command, ExitCode};

fn usage() -> ExitCode {
    eprintln!("usage: cargo xtask <images|demo|test|bench>");
    eprintln!(
        "  images   build the guest images into the cache (DMALAB_CACHE, default ~/.cache/dmalab)"
    );
    eprintln!(
        "  test     build the images, then run every test (unit, property, boot-and-transfer)"
    );
    eprintln!(
        "  bench    measure boot (dmalab vs QEMU), memory, MMIO dispatch, DMA; `bench --help`"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("images") => images::build().map(|dir| println!("{}", dir.display())),
        Some("demo") => demo::run(&args[1..]),
        Some("test") => run_tests(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every test of the workspace, with the images in place and required. The
/// output is passed through; at the end one line totals every test binary
/// (cargo's own last line is the doc-tests', often "0 passed").
fn run_tests(extra: &[String]) -> Result<(), String> {
    let dir = images::build()?;
    let dmalab = demo::build_dmalab()?;
    let mut child = Command::new(env!("CARGO"))
        .args(["test", "--workspace"])
        .args(extra)
        .env("DMALAB_IMAGES", &dir)
        .env("DMALAB_BIN", &dmalab)
        .env("DMALAB_REQUIRE_IMAGES", "1")
        .current_dir(images::repo_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let mut totals = tally::Totals::default();
    if let Some(out) = child.stdout.take() {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            totals.add_line(&line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo test: {e}"))?;
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test --workspace failed ({status})"))
    }
}
