//! The machine the bench runs on, and the host tools it needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub mem_gib: f64,
    pub host_kernel: String,
    pub kvm: String,
    pub hostname: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub git: String,
    pub qemu: String,
    pub images: String,
    pub date: String,
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

pub(super) fn command_line_out(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(super) fn machine() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let kvm = if Path::new("/sys/module/kvm_pvm").exists() {
        "PVM (guest kernel code emulated, about 1M instructions/s)"
    } else if Path::new("/sys/module/kvm_intel").exists() {
        "kvm_intel (hardware)"
    } else if Path::new("/sys/module/kvm_amd").exists() {
        "kvm_amd (hardware)"
    } else if Path::new("/dev/kvm").exists() {
        "/dev/kvm (unknown kind)"
    } else {
        "none"
    };
    let root = ci::workspace_root();
    let git = command_line_out(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .map(|h| {
        let dirty = command_line_out(
            "git",
            &["-C", &root.display().to_string(), "status", "--porcelain"],
        )
        .is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{h} (with uncommitted changes)")
        } else {
            h
        }
    })
    .unwrap_or_default();
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib: mem_kib / (1024.0 * 1024.0),
        host_kernel: read("/proc/sys/kernel/osrelease").trim().into(),
        kvm: kvm.into(),
        hostname: read("/proc/sys/kernel/hostname").trim().into(),
        loadavg_start: loadavg(),
        git,
        date: command_line_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
        ..Machine::default()
    }
}

pub(super) fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_root() -> bool {
    command_line_out("id", &["-u"]).is_some_and(|u| u == "0")
}

fn in_path(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|f| f.is_file())
    })
}

/// `qemu-system-x86_64`, installed with apt (Debian's qemu-system-x86) when
/// missing and we are root.
pub(super) fn ensure_qemu() -> Result<PathBuf, String> {
    if let Some(p) = in_path("qemu-system-x86_64") {
        return Ok(p);
    }
    if !is_root() {
        return Err(
            "qemu-system-x86_64 is missing (install Debian's qemu-system-x86, or run as root)"
                .into(),
        );
    }
    eprintln!("bench: installing qemu-system-x86 (apt-get)");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "qemu-system-x86",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        if !install() {
            return Err("apt-get install qemu-system-x86 failed".into());
        }
    }
    in_path("qemu-system-x86_64").ok_or_else(|| "qemu-system-x86_64 still missing".into())
}
