//! What every task builds before it runs a guest: the guest images (the
//! recipe images/build.sh) and the `dmalab` binary. One place for both, used
//! by `cargo xtask images|demo|test|bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{script} failed ({status}): see the messages above")]
    Recipe { script: String, status: String },
    #[error("images/build.sh printed no output folder")]
    NoOutput,
    #[error("images/build.sh said {0} but it has no vmlinux")]
    NoKernel(String),
    #[error("cargo build --release -p vmm failed")]
    Dmalab,
    #[error("{0} was not built")]
    NoBinary(String),
}

/// The repository's root (the workspace: ci/ is one of its members).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds what is missing of the guest images and returns their folder; the
/// recipe prints progress on stderr and the output folder as its last stdout
/// line.
pub fn images() -> Result<PathBuf, BuildError> {
    let script = workspace_root().join("images/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("build")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BuildError::Spawn {
            program: script.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(BuildError::Recipe {
            script: script.display().to_string(),
            status: out.status.to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or(BuildError::NoOutput)?;
    if !dir.join("vmlinux").is_file() {
        return Err(BuildError::NoKernel(dir.display().to_string()));
    }
    Ok(dir)
}

/// `cargo build --release -p vmm`, returning the `dmalab` binary.
pub fn dmalab() -> Result<PathBuf, BuildError> {
    let root = workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "vmm"])
        .current_dir(&root)
        .status()
        .map_err(|source| BuildError::Spawn {
            program: "cargo build".into(),
            source,
        })?;
    if !status.success() {
        return Err(BuildError::Dmalab);
    }
    let bin = target_dir().join("release/dmalab");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(BuildError::NoBinary(bin.display().to_string()))
    }
}

/// Cargo's target folder (CARGO_TARGET_DIR, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}
