//! Runs the image recipe (images/build.sh) and returns its output folder.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci/ has a parent")
        .to_path_buf()
}

/// Builds what is missing; the recipe prints progress on stderr and the
/// output folder as its last stdout line.
pub fn build() -> Result<PathBuf, String> {
    let script = repo_root().join("images/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("build")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): see the messages above",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| "images/build.sh printed no output folder".to_string())?;
    if !dir.join("vmlinux").is_file() {
        return Err(format!(
            "images/build.sh said {} but it has no vmlinux",
            dir.display()
        ));
    }
    Ok(dir)
}
