//! Running a VMM with a guest: the dmalab and QEMU command lines, and a
//! process whose console is streamed and whose memory is sampled.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::guest::{DRIVER_READY, MEM_MIB, QEMU_CPU, VCPUS};
use super::memory::{sample_memory, MemSample};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vmm {
    Dmalab,
    /// A current QEMU (trixie-backports, installed by images/qemu.sh).
    Qemu,
    /// The machine's own QEMU (bookworm: 7.2).
    QemuBookworm,
}

impl Vmm {
    pub(super) fn name(self) -> &'static str {
        match self {
            Vmm::Dmalab => "dmalab",
            Vmm::Qemu => "qemu",
            Vmm::QemuBookworm => "qemu-bookworm",
        }
    }
}

/// What one VMM process left.
pub(super) struct Capture {
    /// (seconds since spawn, stderr?, line)
    pub(super) lines: Vec<(f64, bool, String)>,
    pub(super) marker_s: Option<f64>,
    pub(super) status: Option<ExitStatus>,
    /// Why the harness killed it, if it did.
    pub(super) killed: Option<String>,
    pub(super) mem: Vec<MemSample>,
    pub(super) mem_at_marker: Option<MemSample>,
    pub(super) wall_s: f64,
}

impl Capture {
    pub(super) fn console(&self) -> String {
        let mut s = String::new();
        for (t, err, l) in &self.lines {
            s.push_str(&format!("{t:9.3} {} {l}\n", if *err { "E" } else { "O" }));
        }
        s
    }
    /// The lines the VMM wrote to stdout (the guest console), with their times.
    pub(super) fn stdout_lines(&self) -> Vec<(f64, String)> {
        self.lines
            .iter()
            .filter(|(_, err, _)| !err)
            .map(|(t, _, l)| (*t, l.clone()))
            .collect()
    }
    pub(super) fn text(&self) -> String {
        let mut s = String::new();
        for (_, _, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
    pub(super) fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..]
            .iter()
            .map(|(_, _, l)| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    r: R,
    err: bool,
    t0: Instant,
    tx: mpsc::Sender<(f64, bool, String)>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let t = t0.elapsed().as_secs_f64();
                    let l = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .trim_start_matches('\r')
                        .to_string();
                    if tx.send((t, err, l)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Runs `cmd` (a VMM with a guest), streaming its output: notes when a
/// console line starts with `marker`, samples its memory every second,
/// waits at most `timeout` for the marker and `grace` after it for the
/// process to end, and kills it (by its PID) otherwise.
pub(super) fn run_vmm(
    mut cmd: Command,
    marker: &str,
    timeout: Duration,
    grace: Duration,
    regions: &[u64],
) -> Result<Capture, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let (tx, rx) = mpsc::channel();
    if let Some(o) = child.stdout.take() {
        spawn_reader(o, false, t0, tx.clone());
    }
    if let Some(e) = child.stderr.take() {
        spawn_reader(e, true, t0, tx);
    }
    let pid = child.id();
    let mut cap = Capture {
        lines: Vec::new(),
        marker_s: None,
        status: None,
        killed: None,
        mem: Vec::new(),
        mem_at_marker: None,
        wall_s: 0.0,
    };
    let mut next_sample = 0.5;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((t, err, l)) => {
                if cap.marker_s.is_none() && !err && l.trim_start().starts_with(marker) {
                    cap.marker_s = Some(t);
                    cap.mem_at_marker = sample_memory(pid, t, regions);
                }
                cap.lines.push((t, err, l));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Both pipes closed: the process is ending.
                cap.status = child.wait().ok();
                break;
            }
        }
        let now = t0.elapsed().as_secs_f64();
        if cap.status.is_none() {
            if let Ok(Some(st)) = child.try_wait() {
                cap.status = Some(st);
            }
        }
        if cap.status.is_none() && now >= next_sample {
            if let Some(s) = sample_memory(pid, now, regions) {
                cap.mem.push(s);
            }
            next_sample = now + 1.0;
        }
        let limit = match cap.marker_s {
            None => timeout.as_secs_f64(),
            Some(m) => m + grace.as_secs_f64(),
        };
        if cap.status.is_none() && now > limit {
            cap.killed = Some(match cap.marker_s {
                None => format!("no {marker:?} within {} s", timeout.as_secs()),
                Some(_) => format!("still running {} s after the marker", grace.as_secs()),
            });
            let _ = child.kill(); // SIGKILL to this child's PID only
            cap.status = child.wait().ok();
        }
        if cap.status.is_some() {
            // Drain what the readers still have.
            while let Ok((t, err, l)) = rx.recv_timeout(Duration::from_millis(200)) {
                cap.lines.push((t, err, l));
            }
            break;
        }
    }
    cap.wall_s = t0.elapsed().as_secs_f64();
    Ok(cap)
}

pub(super) fn dmalab_command(
    dmalab: &Path,
    images: &Path,
    extra: &str,
    device: bool,
    trace: Option<&Path>,
) -> Command {
    dmalab_command_with_kernel(
        dmalab,
        &images.join("vmlinux"),
        images,
        extra,
        device,
        trace,
    )
}

/// [`dmalab_command`] booting `kernel` (e.g. the images' `vmlinux-kunit`).
pub(super) fn dmalab_command_with_kernel(
    dmalab: &Path,
    kernel: &Path,
    images: &Path,
    extra: &str,
    device: bool,
    trace: Option<&Path>,
) -> Command {
    let mut c = Command::new(dmalab);
    c.arg("run")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(images.join("initramfs.cpio"))
        .args(["--mem", &MEM_MIB.to_string(), "--vcpus", &VCPUS.to_string()])
        .args(["--no-stdin", "--log-level", "info", "--timeout", "600"])
        .args(["--boot-marker", DRIVER_READY]);
    if !extra.is_empty() {
        c.args(["--cmdline", extra]);
    }
    if device {
        c.args(["--device", "dma24"]);
    }
    if let Some(t) = trace {
        c.arg("--trace").arg(t);
    }
    c
}

pub(super) fn qemu_args(images: &Path, append: &str) -> Vec<String> {
    vec![
        "-enable-kvm".into(),
        "-cpu".into(),
        QEMU_CPU.into(),
        "-m".into(),
        MEM_MIB.to_string(),
        "-smp".into(),
        VCPUS.to_string(),
        "-kernel".into(),
        images.join("vmlinux").display().to_string(),
        "-initrd".into(),
        images.join("initramfs.cpio").display().to_string(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-append".into(),
        append.into(),
    ]
}
