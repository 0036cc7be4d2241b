//! Runs the image recipe (images/build.sh) and returns its output folder.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci/ has a parent")
        .to_path_buf()
}

/// Runs `images/<script> <command>`, which prints progress on stderr and a
/// path as its last stdout line; returns that path.
fn run_recipe(script: &str, command: &str) -> Result<PathBuf, String> {
    let script = repo_root().join("images").join(script);
    let out = Command::new("bash")
        .arg(&script)
        .arg(command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {command} failed ({}): see the messages above",
            script.display(),
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no path", script.display()))
}

/// A current QEMU (11.x from trixie-backports in a cached trixie root):
/// `images/qemu.sh install`; returns its wrapper.
pub fn current_qemu() -> Result<PathBuf, String> {
    let qemu = run_recipe("qemu.sh", "install")?;
    if !qemu.is_file() {
        return Err(format!(
            "images/qemu.sh said {} but it is missing",
            qemu.display()
        ));
    }
    Ok(qemu)
}

/// Builds what is missing; the recipe prints progress on stderr and the
/// output folder as its last stdout line.
pub fn build() -> Result<PathBuf, String> {
    let dir = run_recipe("build.sh", "build")?;
    if !dir.join("vmlinux").is_file() {
        return Err(format!(
            "images/build.sh said {} but it has no vmlinux",
            dir.display()
        ));
    }
    Ok(dir)
}
