//! The headless browser the report's end-to-end test loads pages in:
//! Debian's `chromium` package, installed by `cargo xtask test` (or
//! `cargo xtask setup`) when it is missing, since CI machines start fresh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use thiserror::Error;

/// Debian's package, and the names its binary has on other systems.
const PACKAGE: &str = "chromium";
const BINARIES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

#[derive(Debug, Error)]
pub enum BrowserError {
    #[error(
        "no chromium in PATH (install it with `apt-get install chromium`, or set DMALAB_CHROMIUM)"
    )]
    NotFound,
    #[error(
        "chromium is missing and installing it needs root: run `sudo apt-get install chromium`"
    )]
    NotRoot,
    #[error("`{command}` failed ({status}): is Debian's package archive reachable?")]
    Apt { command: String, status: String },
    #[error("chromium did not finish within {0} s")]
    Timeout(u64),
    #[error("chromium failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// The browser binary: DMALAB_CHROMIUM, else the first of [`BINARIES`] in PATH.
pub fn chromium() -> Result<PathBuf, BrowserError> {
    if let Some(p) = std::env::var_os("DMALAB_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| BINARIES.iter().map(move |b| dir.join(b)))
        .find(|p| p.is_file())
        .ok_or(BrowserError::NotFound)
}

/// [`chromium`], installing Debian's package first when it is missing.
pub fn ensure_chromium() -> Result<PathBuf, BrowserError> {
    if let Ok(p) = chromium() {
        return Ok(p);
    }
    if !is_root() {
        return Err(BrowserError::NotRoot);
    }
    eprintln!("xtask: installing {PACKAGE} (apt-get; the report's browser test needs it)");
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", PACKAGE])?;
    chromium()
}

/// Flags for a headless run as root in a container: no sandbox (it needs
/// user namespaces), no GPU, no first-run work, and a budget of virtual time
/// so the page's script has run before the DOM is dumped or the shot taken.
fn headless(chromium: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ]);
    c
}

/// Loads `page` (a local file) and returns the DOM after its scripts ran
/// (`--dump-dom`).
pub fn dump_dom(chromium: &Path, page: &Path) -> Result<String, BrowserError> {
    let out = run(headless(chromium).arg("--dump-dom").arg(file_url(page)))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Loads `page` and writes a PNG of its first `width` x `height` pixels to `png`.
pub fn screenshot(
    chromium: &Path,
    page: &Path,
    png: &Path,
    (width, height): (u32, u32),
) -> Result<(), BrowserError> {
    run(headless(chromium)
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(file_url(page)))?;
    Ok(())
}

fn file_url(p: &Path) -> String {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    format!("file://{}", abs.display())
}

/// Runs the browser with a time limit (a hung browser must not hang the
/// tests); returns its stdout.
fn run(cmd: &mut Command) -> Result<Vec<u8>, BrowserError> {
    const LIMIT: Duration = Duration::from_secs(120);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BrowserError::Spawn {
            program: "chromium".into(),
            source,
        })?;
    // Both pipes drained on threads of their own: a full stderr pipe would
    // stall the browser.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_reader = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err_reader = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BrowserError::Timeout(LIMIT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => {
                return Err(BrowserError::Spawn {
                    program: "chromium".into(),
                    source,
                })
            }
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if status.success() {
        Ok(out)
    } else {
        Err(BrowserError::Failed {
            status: status.to_string(),
            stderr: err.lines().rev().take(5).collect::<Vec<_>>().join(" / "),
        })
    }
}

fn apt(args: &[&str]) -> Result<(), BrowserError> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .map_err(|source| BrowserError::Spawn {
            program: "apt-get".into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BrowserError::Apt {
            command: format!("apt-get {}", args.join(" ")),
            status: status.to_string(),
        })
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
