//! dmalab's task runner: `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `images`: build (or find in the cache) the guest kernel, initramfs and
//!   driver module; prints the output folder.
//! - `demo`: `images`, then boot the guest with the device and the trace on,
//!   run transfers, print the result and the trace summary.
//! - `test`: `cargo fmt --check` and `cargo clippy -D warnings` over the
//!   workspace (the lints the docs promise), `images`, then every test of
//!   the workspace with the images required (a missing image fails instead
//!   of skipping).
//! - `bench`: boot time against QEMU, VMM start-up and memory, MMIO dispatch,
//!   DMA throughput: a table with targets, and JSON (see bench/mod.rs).
//! - `fuzz`: build the libFuzzer targets of `fuzz/` and run them
//!   (`fuzz --help`-less: `[--seconds N] [--runs N] [TARGET...]`, see fuzz.rs);
//!   `test` runs a few seconds of each.
//! - `qemu`: dma24 under QEMU 11 (installed when missing): `dmalab serve`
//!   and QEMU's vfio-user-pci, the module + tool guest on the console.
//! - `setup`: the host tools the tests need beyond the image recipe's
//!   (chromium, for the trace report's browser test); `test` runs it too.
//!
//! What each does in more words: ci/README.md.

#![forbid(unsafe_code)]

mod bench;
mod demo;
mod fuzz;
mod qemu;
mod tally;

use std::process::{Command, ExitCode};

use ci::browser::{ensure_chromium, BrowserError};
use ci::build::{self, BuildError};
use thiserror::Error;

fn usage() -> ExitCode {
    eprintln!("usage: cargo xtask <images|demo|test|bench|fuzz|qemu|setup>");
    eprintln!(
        "  images   build the guest images into the cache (DMALAB_CACHE, default ~/.cache/dmalab)"
    );
    eprintln!("  demo     boot the guest with the device, run transfers, write the trace report");
    eprintln!(
        "  test     build the images, then run every test (unit, property, boot-and-transfer)"
    );
    eprintln!(
        "  bench    measure boot (dmalab vs QEMU), memory, MMIO dispatch, DMA; `bench --help`"
    );
    eprintln!(
        "  fuzz     run the fuzz targets: fuzz [--seconds N] [--runs N] [TARGET...] ({})",
        fuzz::TARGETS.join(", ")
    );
    eprintln!(
        "  qemu     dma24 under QEMU 11: dmalab serve + vfio-user-pci, the module + tool guest"
    );
    eprintln!("  setup    install the host tools the tests need (chromium)");
    ExitCode::from(2)
}

/// What a task can fail with.
#[derive(Debug, Error)]
enum TaskError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Browser(#[from] BrowserError),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    #[error(transparent)]
    Fuzz(#[from] fuzz::FuzzError),
    #[error(transparent)]
    Qemu(#[from] qemu::QemuError),
    #[error("cannot install QEMU for the vfio-user tests: {0}")]
    QemuInstall(String),
    #[error("cannot run cargo test: {0}")]
    Spawn(std::io::Error),
    #[error("cargo test --workspace failed ({0})")]
    Tests(std::process::ExitStatus),
    #[error(
        "`cargo {0}` failed ({1}): fix what it printed above, then run `cargo xtask test` again"
    )]
    Lint(&'static str, std::process::ExitStatus),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result: Result<(), TaskError> = match args.first().map(String::as_str) {
        Some("images") => build::images()
            .map(|dir| println!("{}", dir.display()))
            .map_err(TaskError::from),
        Some("demo") => demo::run(&args[1..]).map_err(TaskError::from),
        Some("setup") => ensure_chromium()
            .map(|p| println!("{}", p.display()))
            .map_err(TaskError::from),
        Some("test") => run_tests(&args[1..]),
        Some("qemu") => qemu::run(&args[1..]).map_err(TaskError::from),
        Some("bench") => bench::run(&args[1..]).map_err(TaskError::from),
        Some("fuzz") => fuzz::run(&args[1..]).map_err(TaskError::from),
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
fn run_tests(extra: &[String]) -> Result<(), TaskError> {
    run_lints()?;
    fuzz::smoke()?;
    let dir = build::images()?;
    let dmalab = build::dmalab()?;
    // The report's browser test needs it; CI machines start without one.
    let chromium = ensure_chromium()?;
    // The vfio-user boots need QEMU 11 (installed into the cache if missing).
    let qemu = build::current_qemu().map_err(TaskError::QemuInstall)?;
    let mut child = Command::new(env!("CARGO"))
        .args(["test", "--workspace"])
        .args(extra)
        .env("DMALAB_IMAGES", &dir)
        .env("DMALAB_BIN", &dmalab)
        .env("DMALAB_CHROMIUM", &chromium)
        .env("DMALAB_QEMU", &qemu)
        .env("DMALAB_REQUIRE_IMAGES", "1")
        .current_dir(build::workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(TaskError::Spawn)?;
    let mut totals = tally::Totals::default();
    if let Some(out) = child.stdout.take() {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            totals.add_line(&line);
        }
    }
    let status = child.wait().map_err(TaskError::Spawn)?;
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    if status.success() {
        Ok(())
    } else {
        Err(TaskError::Tests(status))
    }
}

/// The workspace's formatting and lints (the `[workspace.lints]` table in
/// Cargo.toml, warnings as errors), first: they are cheap next to the boots.
fn run_lints() -> Result<(), TaskError> {
    let checks: [(&'static str, &[&str]); 3] = [
        ("fmt --all --check", &["fmt", "--all", "--check"]),
        // The fuzz crate is a workspace of its own (fuzz/README.md).
        (
            "fmt --manifest-path fuzz/Cargo.toml --check",
            &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"],
        ),
        (
            "clippy --workspace --all-targets -- -D warnings",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    for (name, args) in checks {
        let status = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(build::workspace_root())
            .status()
            .map_err(TaskError::Spawn)?;
        if !status.success() {
            return Err(TaskError::Lint(name, status));
        }
    }
    Ok(())
}
