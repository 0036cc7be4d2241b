//! `cargo xtask demo`: the main job. Builds what is missing, boots the guest
//! with the dma24 device and the trace on, loads the driver, runs the
//! user-space transfer tool, and prints the guest's result and the trace
//! summary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use ci::guest::cache_dir;

use crate::images;

/// The guest's own settings: DMA-API debugging with a small preallocated
/// table (the default 65536 entries cost 4 s of emulated boot).
pub const GUEST_CMDLINE: &str = "dma_debug_entries=1024";

/// `cargo xtask demo [--module FILE [--module-args STR]]`.
pub const USAGE: &str =
    "usage: cargo xtask demo [--module FILE.ko [--module-args \"name=value ...\"]]";

/// The demo's options: a developer's own module instead of the images' dmalab.ko.
fn parse_args(args: &[String]) -> Result<(Option<String>, Option<String>), String> {
    let (mut module, mut module_args) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--module" => module = Some(value()?),
            "--module-args" => module_args = Some(value()?),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    if module_args.is_some() && module.is_none() {
        return Err(format!("--module-args needs --module\n{USAGE}"));
    }
    Ok((module, module_args))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let (module, module_args) = parse_args(args)?;
    let started = Instant::now();
    let dir = images::build()?;
    let dmalab = build_dmalab()?;
    let out = cache_dir().join("demo");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let trace = out.join("trace.jsonl");
    let console_log = out.join("console.log");
    eprintln!(
        "demo: booting the guest (about a minute on PVM hosts); console below, also in {}",
        console_log.display()
    );

    let mut cmd = Command::new(&dmalab);
    cmd.arg("run");
    if let Some(m) = &module {
        eprintln!("demo: with your module {m} instead of the images' dmalab.ko");
        cmd.arg("--module").arg(m);
    }
    if let Some(a) = &module_args {
        cmd.arg("--module-args").arg(a);
    }
    let mut child = cmd
        .arg("--kernel")
        .arg(dir.join("vmlinux"))
        .arg("--initrd")
        .arg(dir.join("initramfs.cpio"))
        .args([
            "--device",
            "dma24",
            "--timeout",
            "300",
            "--no-stdin",
            "--log-level",
            "info",
        ])
        .args(["--cmdline", GUEST_CMDLINE])
        .arg("--trace")
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", dmalab.display()))?;
    let mut console = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            console.push_str(&line);
            console.push('\n');
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for dmalab: {e}"))?;
    let _ = std::fs::write(&console_log, &console);

    let result = console.lines().find_map(|l| {
        l.split_once("dma24-tool: result ")
            .map(|(_, r)| r.to_string())
    });
    println!();
    println!(
        "== guest result: {}",
        result
            .as_deref()
            .unwrap_or("(no result line from dma24-tool)")
    );
    println!("== dmalab trace summary {}", trace.display());
    let summary = Command::new(&dmalab)
        .args(["trace", "summary"])
        .arg(&trace)
        .status()
        .map_err(|e| format!("cannot run dmalab trace summary: {e}"))?;
    println!("== demo took {:.0} s", started.elapsed().as_secs_f64());

    if !status.success() {
        return Err(format!(
            "the guest run failed ({status}); console in {}",
            console_log.display()
        ));
    }
    match result {
        Some(r) if r.contains(" failed=0 ") => {}
        Some(r) => return Err(format!("the transfer tool reported failures: {r}")),
        None => return Err("the guest printed no transfer result".into()),
    }
    if !summary.success() {
        return Err("dmalab trace summary failed".into());
    }
    Ok(())
}

/// `cargo build --release -p vmm`, returning the binary.
pub fn build_dmalab() -> Result<std::path::PathBuf, String> {
    let root = images::repo_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "vmm"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p vmm failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/dmalab");
    if Path::new(&bin).is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}
