//! The vCPU threads: starting them, kicking them out of KVM_RUN (for the
//! halt probe and at the end) and collecting their counters.

use std::sync::Once;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::vcpu::{ExitStats, Vcpu};

/// A signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn noop_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), noop_handler) {
            log::warn!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// The running vCPU threads.
pub struct VcpuThreads {
    handles: Vec<JoinHandle<ExitStats>>,
}

impl VcpuThreads {
    /// One thread per vCPU, named `vcpuN`, each running [`Vcpu::run`]. The
    /// halt probe is on only for a single vCPU (with more, another one could
    /// still wake a halted one with an IPI).
    pub fn start(vcpus: Vec<Vcpu>) -> std::io::Result<Self> {
        install_kick_handler();
        let single = vcpus.len() == 1;
        let mut handles = Vec::with_capacity(vcpus.len());
        for mut v in vcpus {
            v.set_halt_probe(single);
            let h = std::thread::Builder::new()
                .name(format!("vcpu{}", handles.len()))
                .spawn(move || {
                    v.run();
                    v.stats()
                })?;
            handles.push(h);
        }
        Ok(VcpuThreads { handles })
    }

    /// Signal every live vCPU thread out of KVM_RUN; returns how many were live.
    pub fn kick(&self) -> usize {
        let mut running = 0;
        for h in self.handles.iter().filter(|h| !h.is_finished()) {
            running += 1;
            // SAFETY: the thread has not been joined (we hold its handle), so
            // its pthread_t is valid even if it just exited; the signal has a
            // no-op handler installed by install_kick_handler.
            unsafe {
                libc::pthread_kill(
                    std::os::unix::thread::JoinHandleExt::as_pthread_t(h),
                    kick_signal(),
                );
            }
        }
        running
    }

    /// Kicks every vCPU thread out of KVM_RUN until all have returned (they
    /// check the stop flag before re-entering), giving up after two seconds,
    /// and logs their counters. A thread that did not stop is left detached:
    /// it holds its own references to guest memory and KVM.
    pub fn stop(self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let running = self.kick();
            if running == 0 || Instant::now() > deadline {
                if running > 0 {
                    log::warn!("{running} vCPU thread(s) did not stop");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (i, h) in self.handles.into_iter().enumerate() {
            if !h.is_finished() {
                continue;
            }
            match h.join() {
                Ok(s) => log::debug!(
                    "vCPU {i}: {} port I/O exits ({} more port writes queued without one), {} MMIO exits, {} int3, {} ud and {} fwait completed, {} interrupted",
                    s.pio,
                    s.pio_queued,
                    s.mmio,
                    s.int3_completed,
                    s.ud_completed,
                    s.fwait_completed,
                    s.interrupted
                ),
                Err(_) => log::error!("vCPU {i} thread panicked"),
            }
        }
    }
}
