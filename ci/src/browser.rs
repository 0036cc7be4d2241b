//! The headless browser the report's end-to-end test loads pages in:
//! Debian's `chromium` package, installed by `cargo xtask test` (or
//! `cargo xtask setup`) when it is missing, since CI machines start fresh.

use std::path::PathBuf;
use std::process::{Command, Stdio};

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
