//! Boots one guest in dmalab and collects what it left: the console, the exit
//! status and the DMA trace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the built images and the dmalab binary are.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub images: PathBuf,
    pub dmalab: PathBuf,
}

impl Artifacts {
    /// From the environment `cargo xtask test` sets (DMALAB_IMAGES, DMALAB_BIN),
    /// else the cache's `images/current` and the workspace's own build of
    /// dmalab. `None` when something is missing: the caller decides whether
    /// that skips (plain `cargo test`) or fails (DMALAB_REQUIRE_IMAGES=1).
    pub fn find() -> Result<Artifacts, String> {
        let images = match std::env::var_os("DMALAB_IMAGES") {
            Some(p) => PathBuf::from(p),
            None => dmalab_paths::images_dir(),
        };
        if !images.join("vmlinux").is_file() {
            return Err(format!(
                "no guest images in {} (build them with `cargo xtask images`)",
                images.display()
            ));
        }
        Ok(Artifacts {
            images,
            dmalab: dmalab_binary()?,
        })
    }

    /// Like [`Artifacts::find`], but prints why a test is skipped, and panics
    /// instead when images are required (CI).
    pub fn for_test(test: &str) -> Option<Artifacts> {
        match Artifacts::find() {
            Ok(a) => Some(a),
            Err(why) if std::env::var_os("DMALAB_REQUIRE_IMAGES").is_some_and(|v| v == "1") => {
                panic!("{test}: {why}, and DMALAB_REQUIRE_IMAGES=1")
            }
            Err(why) => {
                eprintln!("SKIPPED {test}: {why}");
                None
            }
        }
    }
}

/// The dmalab binary alone: DMALAB_BIN (set by `cargo xtask test`), else
/// the workspace's own release or debug build.
pub fn dmalab_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DMALAB_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = crate::build::target_dir();
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("dmalab"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no dmalab binary (run `cargo build --release -p vmm`)".to_string())
}

pub use dmalab_paths::cache_dir;

/// Where the harness leaves consoles, traces and reports: one folder per
/// checkout under `$DMALAB_CACHE/test-runs/`, so two checkouts testing at
/// once (several worktrees on one machine) never overwrite each other's
/// traces while they read them.
pub fn runs_dir() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let root = crate::workspace_root();
    let mut h = std::hash::DefaultHasher::new();
    root.hash(&mut h);
    let name = root
        .file_name()
        .map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned());
    cache_dir()
        .join("test-runs")
        .join(format!("{name}-{:08x}", h.finish() & 0xffff_ffff))
}

/// One guest to boot.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// A short name, used for the files it leaves.
    pub name: String,
    /// File name inside the images folder: `vmlinux` or `vmlinux-kunit`.
    pub kernel: String,
    pub initrd: bool,
    /// Appended to dmalab's default guest command line.
    pub cmdline: String,
    /// `--device` value, e.g. `dma24,overflow=truncate`; several devices
    /// separated by spaces (`dma24 dma24,mask-bits=32`: /dev/dma24-0 and
    /// /dev/dma24-1, traces in [`GuestRun::traces`]); None: no device.
    pub device: Option<String>,
    pub mem_mib: u32,
    pub timeout: Duration,
    /// `--module` (a .ko the init loads instead of the images' dmalab.ko)
    /// and its `--module-args`.
    pub module: Option<PathBuf>,
    pub module_args: Option<String>,
}

/// What a finished guest left.
#[derive(Debug)]
pub struct GuestRun {
    pub name: String,
    /// dmalab's exit status (None if it was killed by a signal).
    pub exit: Option<i32>,
    /// Everything dmalab printed: guest console and VMM log.
    pub console: String,
    /// The first device's trace.
    pub trace: Option<PathBuf>,
    /// Every device's trace, in `--device` order (`traces[0]` is `trace`).
    pub traces: Vec<PathBuf>,
    pub wall: Duration,
}

impl GuestRun {
    /// The last `n` lines of the console, for failure messages.
    pub fn console_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Lines printed by the initramfs' init (`dmalab-init: ...`), prefix removed.
    pub fn init_lines(&self) -> Vec<&str> {
        self.console
            .lines()
            .filter_map(|l| l.split_once("dmalab-init: ").map(|(_, r)| r))
            .collect()
    }
}

/// Boots `spec` with `artifacts`, writing console and trace under `out_dir`.
pub fn boot(artifacts: &Artifacts, spec: &GuestSpec, out_dir: &Path) -> Result<GuestRun, String> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let kernel = artifacts.images.join(&spec.kernel);
    if !kernel.is_file() {
        return Err(format!("{} is missing from the images", kernel.display()));
    }
    let mut cmd = Command::new(&artifacts.dmalab);
    cmd.arg("run")
        .arg("--kernel")
        .arg(&kernel)
        .arg("--mem")
        .arg(spec.mem_mib.to_string())
        .arg("--timeout")
        .arg(spec.timeout.as_secs().to_string())
        .arg("--log-level")
        .arg("info");
    if spec.initrd {
        cmd.arg("--initrd")
            .arg(artifacts.images.join("initramfs.cpio"));
    }
    if !spec.cmdline.is_empty() {
        cmd.arg("--cmdline").arg(&spec.cmdline);
    }
    let trace = spec
        .device
        .as_ref()
        .map(|_| out_dir.join(format!("{}.trace.jsonl", spec.name)));
    let devices: Vec<&str> = spec
        .device
        .as_deref()
        .map_or_else(Vec::new, |d| d.split_whitespace().collect());
    for device in &devices {
        cmd.arg("--device").arg(device);
    }
    let traces: Vec<PathBuf> = trace
        .iter()
        .flat_map(|base| {
            (0..devices.len()).map(|i| device_model::trace::device_trace_path(base, i))
        })
        .collect();
    for t in &traces {
        let _ = std::fs::remove_file(t);
    }
    if let Some(module) = &spec.module {
        cmd.arg("--module").arg(module);
    }
    if let Some(args) = &spec.module_args {
        cmd.arg("--module-args").arg(args);
    }
    if let Some(trace) = &trace {
        cmd.arg("--trace").arg(trace);
    }
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", artifacts.dmalab.display()))?;
    let mut console = String::from_utf8_lossy(&out.stdout).into_owned();
    console.push_str(&String::from_utf8_lossy(&out.stderr));
    let log = out_dir.join(format!("{}.console.log", spec.name));
    let _ = std::fs::write(&log, &console);
    Ok(GuestRun {
        name: spec.name.clone(),
        exit: out.status.code(),
        console,
        trace,
        traces,
        wall: started.elapsed(),
    })
}
