//! Boots a guest under QEMU with dma24 served by `dmalab serve` over
//! vfio-user: the server, QEMU's command line, and what they leave (the same
//! [`GuestRun`] as a dmalab boot, so the same checks read it).
//!
//! QEMU shares guest RAM with the server through a memfd backend
//! (`share=on`), which is what DMA_MAP hands over. On PVM hosts QEMU gets
//! the options the boot bench uses (`-cpu host,arch-capabilities=off`, the
//! `clearcpuid=` list, `no_int3_selftest`) and, because PVM cannot run a
//! kernel `WARN()` (`ud1` at CPL0) and QEMU cannot complete it as dmalab
//! does, the command-line additions of [`PVM_NO_WARN`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::guest::{Artifacts, GuestRun, GuestSpec};

/// QEMU's `-cpu` on PVM hosts (QEMU aborts on MSR 0x10a with plain `host`).
pub const QEMU_CPU: &str = "host,arch-capabilities=off";

/// QEMU only (the bench's QEMU rows too): on PVM hosts the kernel's int3
/// self-test and the `fwait` of `fpu__drop()` cannot be emulated at CPL0;
/// dmalab completes both (#BP injected, fwait skipped), QEMU cannot, so the
/// patched kernel leaves them out (images/patches/0002 and 0004).
pub const QEMU_ONLY: &str = "no_int3_selftest no_fpu_drop_fwait";

/// Under QEMU on PVM every kernel `WARN()` ends the guest ("KVM internal
/// error", the `ud1` it is built on cannot be emulated at CPL0). The driver's
/// allocator labs plant WARNs on purpose (dma-direct refusing out-of-mask
/// buffers, DMA-API debugging reporting a module's static buffer), so these
/// boots leave the two lab suites out and keep DMA-API debugging counting
/// errors without printing them as WARNINGs (`dma_debug_driver=` names no
/// driver). The trace and `error_count` checks are unchanged.
pub const PVM_NO_WARN: &str = "kunit.filter_glob=dmalab_[!a]* dma_debug_driver=none";

/// The KUnit suites [`PVM_NO_WARN`] leaves out.
pub const PVM_SKIPPED_SUITES: &[&str] =
    &["dmalab_alloc_lab", "dmalab_alloc_lab2", "dmalab_alloc_lab3"];

/// Whether /dev/kvm is PVM (the project's machines): see HOST-KVM.md.
pub fn host_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// The guest command line for QEMU: dmalab's defaults (without `lpj=`,
/// which dmalab computes from its own TSC query), the PVM additions, then
/// `extra`.
pub fn guest_cmdline(extra: &str) -> String {
    let defaults = vmm::cmdline::default_cmdline(vmm::cpuid::CpuPolicy::Filtered, 0);
    let mut words: Vec<&str> = defaults
        .split_whitespace()
        .filter(|w| !w.starts_with("lpj="))
        .collect();
    words.push(QEMU_ONLY);
    if host_is_pvm() {
        words.push(PVM_NO_WARN);
    }
    let mut s = words.join(" ");
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// QEMU's arguments for a guest with a vfio-user dma24 at `socket`.
pub fn qemu_args(
    kernel: &Path,
    initrd: Option<&Path>,
    mem_mib: u32,
    socket: &Path,
    append: &str,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "-enable-kvm",
        "-cpu",
        QEMU_CPU,
        "-smp",
        "1",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "-m".into(),
        mem_mib.to_string(),
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={mem_mib}M,share=on"),
        "-machine".into(),
        "pc,memory-backend=mem".into(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-device".into(),
        format!(
            "{{\"driver\":\"vfio-user-pci\",\"socket\":{{\"path\":{},\"type\":\"unix\"}}}}",
            serde_json::Value::String(socket.display().to_string())
        ),
        "-append".into(),
        append.into(),
    ]);
    if let Some(i) = initrd {
        a.extend(["-initrd".into(), i.display().to_string()]);
    }
    a
}

/// A running `dmalab serve`, killed (by its PID) if dropped unfinished.
pub struct Server {
    child: Option<Child>,
    pub socket: PathBuf,
}

impl Server {
    /// Starts the server for `device` on `socket` (removed first), writing
    /// `trace`; returns once the socket exists.
    pub fn start(
        dmalab: &Path,
        device: &str,
        socket: &Path,
        trace: Option<&Path>,
        log: &Path,
    ) -> Result<Server, String> {
        let _ = std::fs::remove_file(socket);
        let log_file = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = Command::new(dmalab);
        cmd.args(["serve", "--device", device, "--socket"])
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(t) = trace {
            let _ = std::fs::remove_file(t);
            cmd.arg("--trace").arg(t);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", dmalab.display()))?;
        let mut server = Server {
            child: Some(child),
            socket: socket.to_path_buf(),
        };
        let t0 = Instant::now();
        while !socket.exists() {
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!(
                        "dmalab serve ended at once ({st}): see {}",
                        log.display()
                    ));
                }
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("dmalab serve made no socket within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Waits (at most `limit`) for the server to end after its client left;
    /// its exit code, or None if it had to be killed.
    pub fn wait(mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a QEMU + `dmalab serve` boot left.
pub struct QemuRun {
    /// `exit` is QEMU's; `console` the guest console, then the server's log.
    pub run: GuestRun,
    /// `dmalab serve`'s exit code (None: killed).
    pub server_exit: Option<i32>,
}

/// Boots `spec` under `qemu` with dma24 served by `dmalab serve`; files go
/// to `out_dir` as for a dmalab boot (`<name>.console.log`, `.trace.jsonl`).
pub fn boot(
    artifacts: &Artifacts,
    qemu: &Path,
    spec: &GuestSpec,
    out_dir: &Path,
) -> Result<QemuRun, String> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let kernel = artifacts.images.join(&spec.kernel);
    if !kernel.is_file() {
        return Err(format!("{} is missing from the images", kernel.display()));
    }
    let device = spec.device.as_deref().unwrap_or("dma24");
    let trace = out_dir.join(format!("{}.trace.jsonl", spec.name));
    let socket = out_dir.join(format!("{}.sock", spec.name));
    let server_log = out_dir.join(format!("{}.serve.log", spec.name));
    let server = Server::start(
        &artifacts.dmalab,
        device,
        &socket,
        Some(&trace),
        &server_log,
    )?;
    let initrd = artifacts.images.join("initramfs.cpio");
    let args = qemu_args(
        &kernel,
        spec.initrd.then_some(initrd.as_path()),
        spec.mem_mib,
        &socket,
        &guest_cmdline(&spec.cmdline),
    );
    let started = Instant::now();
    let qemu_out = out_dir.join(format!("{}.qemu.out", spec.name));
    let out = run_with_timeout(Command::new(qemu).args(&args), spec.timeout, &qemu_out)?;
    let server_exit = server.wait(Duration::from_secs(30));
    let mut console = out.1;
    console.push_str(&std::fs::read_to_string(&server_log).unwrap_or_default());
    let log = out_dir.join(format!("{}.console.log", spec.name));
    let _ = std::fs::write(&log, &console);
    Ok(QemuRun {
        run: GuestRun {
            name: spec.name.clone(),
            exit: out.0,
            console,
            trace: Some(trace.clone()),
            traces: vec![trace],
            wall: started.elapsed(),
        },
        server_exit,
    })
}

/// What QEMU prints when KVM stops the guest for good; QEMU then pauses
/// the VM instead of exiting.
const KVM_INTERNAL_ERROR: &str = "KVM internal error";

/// Runs `cmd` (stdout and stderr together into `out_path`) and kills it by
/// PID after `limit`, or once it reports a KVM internal error; (exit code,
/// output).
fn run_with_timeout(
    cmd: &mut Command,
    limit: Duration,
    out_path: &Path,
) -> Result<(Option<i32>, String), String> {
    let out = std::fs::File::create(out_path)
        .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let t0 = Instant::now();
    let read = || {
        std::fs::read(out_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut next_look = Duration::from_secs(1);
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        let stuck = t0.elapsed() >= next_look && {
            next_look += Duration::from_secs(1);
            read().contains(KVM_INTERNAL_ERROR)
        };
        if stuck || t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok((code, read()))
}

/// The QEMU to use: `$DMALAB_QEMU` (set by `cargo xtask test`), else
/// images/qemu.sh's, installed when missing.
pub fn qemu() -> Result<PathBuf, String> {
    match std::env::var_os("DMALAB_QEMU") {
        Some(p) => Ok(PathBuf::from(p)),
        None => crate::build::current_qemu(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_gets_dmalabs_command_line_and_shared_ram() {
        let c = guest_cmdline("dmalab.run=none");
        assert!(c.starts_with("console=ttyS0 "), "{c}");
        assert!(!c.contains("lpj="), "{c}");
        assert!(c.contains(" clearcpuid=xsave,"), "{c}");
        assert!(c.contains(" no_int3_selftest no_fpu_drop_fwait"), "{c}");
        assert_eq!(c.contains(PVM_NO_WARN), host_is_pvm(), "{c}");
        assert!(c.ends_with(" dmalab.run=none"), "extra comes last: {c}");
        let a = qemu_args(
            Path::new("/k"),
            Some(Path::new("/i")),
            128,
            Path::new("/tmp/a \"b\".sock"),
            &c,
        );
        let joined = a.join(" ");
        assert!(joined.contains("memory-backend-memfd,id=mem,size=128M,share=on"));
        assert!(joined.contains("-machine pc,memory-backend=mem"));
        let dev = a.iter().find(|s| s.contains("vfio-user-pci")).unwrap();
        let v: serde_json::Value = serde_json::from_str(dev).unwrap();
        assert_eq!(
            v["socket"]["path"], "/tmp/a \"b\".sock",
            "path quoted as JSON"
        );
        assert_eq!(v["socket"]["type"], "unix");
    }
}
