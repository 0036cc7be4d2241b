//! SIGINT and SIGTERM stop the VM the orderly way, so the DMA trace gets its
//! footer and is flushed whatever ends the run.
//!
//! The signals are blocked in every thread ([`block_stop_signals`] runs in
//! `main` before any thread exists, and threads inherit the mask); one thread
//! takes them with `sigwait` and asks the VM to stop. Nothing runs in a
//! signal handler, so nothing needs to be async-signal-safe.

use std::sync::Arc;

use crate::stop::{StopReason, VmControl};

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread
/// it starts afterwards).
pub fn block_stop_signals() {
    let set = stop_set();
    // SAFETY: pthread_sigmask with a valid set and a null old-set pointer.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        log::warn!("cannot block SIGINT/SIGTERM: error {r}; Ctrl-C will not close the trace");
    }
    // A file-size limit (ulimit -f) must not kill the VM: ignored, SIGXFSZ
    // becomes an EFBIG write error, which the trace writer handles like a
    // full disk (device-model's trace/limit.rs).
    // SAFETY: SIG_IGN is a valid disposition; no handler code runs.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

/// Starts the thread that turns SIGINT/SIGTERM into a stop request.
pub fn forward_stop_signals(control: Arc<VmControl>) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let set = stop_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait with a valid set and a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                log::warn!("signal {sig}: stopping the guest");
                control.request_stop(StopReason::Signal(sig));
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal thread: {e}");
    }
}
