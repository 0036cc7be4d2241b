//! `cargo xtask demo`: the main job. Builds what is missing, boots the guest
//! with the dma24 device and the trace on, loads the driver, runs the
//! user-space transfer tool, prints the guest's result and the trace
//! summary, and ends by writing the trace report (`dmalab trace view`) and
//! printing its path.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use ci::build::{self, BuildError};
use ci::guest::cache_dir;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DemoError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the guest run failed ({status}); console in {console}")]
    Guest { status: String, console: String },
    #[error("the transfer tool reported failures: {0}")]
    ToolFailures(String),
    #[error("the guest printed no transfer result")]
    NoResult,
    #[error("dmalab trace summary failed")]
    Summary,
    #[error("dmalab trace view failed")]
    Report,
    #[error("{0}\n{USAGE}")]
    Usage(String),
}

/// `cargo xtask demo [--module FILE [--module-args STR]]`.
pub const USAGE: &str =
    "usage: cargo xtask demo [--module FILE.ko [--module-args \"name=value ...\"]]";

/// The demo's options: a developer's own module instead of the images' dmalab.ko.
fn parse_args(args: &[String]) -> Result<(Option<String>, Option<String>), DemoError> {
    let (mut module, mut module_args) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| DemoError::Usage(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--module" => module = Some(value()?),
            "--module-args" => module_args = Some(value()?),
            other => return Err(DemoError::Usage(format!("unknown option {other:?}"))),
        }
    }
    if module_args.is_some() && module.is_none() {
        return Err(DemoError::Usage("--module-args needs --module".into()));
    }
    Ok((module, module_args))
}

pub fn run(args: &[String]) -> Result<(), DemoError> {
    let (module, module_args) = parse_args(args)?;
    let started = Instant::now();
    let dir = build::images()?;
    let dmalab = build::dmalab()?;
    let out = cache_dir().join("demo");
    std::fs::create_dir_all(&out).map_err(|source| DemoError::CreateDir {
        path: out.display().to_string(),
        source,
    })?;
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
        .arg("--trace")
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| DemoError::Spawn {
            program: dmalab.display().to_string(),
            source,
        })?;
    let mut console = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            console.push_str(&line);
            console.push('\n');
        }
    }
    let status = child.wait().map_err(|source| DemoError::Spawn {
        program: dmalab.display().to_string(),
        source,
    })?;
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
        .map_err(|source| DemoError::Spawn {
            program: "dmalab trace summary".into(),
            source,
        })?;
    // Last: the trace as pictures, whatever the guest did (a failed run is
    // where they help most).
    let report = out.join("report.html");
    let view = Command::new(&dmalab)
        .args(["trace", "view"])
        .arg(&trace)
        .arg("-o")
        .arg(&report)
        .stdout(Stdio::null())
        .status()
        .map_err(|source| DemoError::Spawn {
            program: "dmalab trace view".into(),
            source,
        })?;
    println!("== demo took {:.0} s", started.elapsed().as_secs_f64());
    if view.success() {
        println!(
            "== trace report (open it in a browser): {}",
            report.display()
        );
    }

    if !status.success() {
        return Err(DemoError::Guest {
            status: status.to_string(),
            console: console_log.display().to_string(),
        });
    }
    match result {
        Some(r) if r.contains(" failed=0 ") => {}
        Some(r) => return Err(DemoError::ToolFailures(r)),
        None => return Err(DemoError::NoResult),
    }
    if !summary.success() {
        return Err(DemoError::Summary);
    }
    if !view.success() {
        return Err(DemoError::Report);
    }
    Ok(())
}
