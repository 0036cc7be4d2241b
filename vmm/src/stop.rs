//! How a run ends: why the VM stopped ([`StopReason`]), the process exit codes
//! ([`ExitCode`]), and the shared [`VmControl`] through which devices and vCPUs
//! ask the VM to stop.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The exit status of the `dmalab` process. Documented in `dmalab --help`
/// and vmm/README.md; tests and CI rely on these numbers.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// The guest shut down cleanly: i8042 reset (`reboot=k`), exit port
    /// status 0, or a halt after "reboot: System halted" (power-off without ACPI).
    Clean = 0,
    /// The VMM failed: KVM refused an operation, `/dev/kvm` missing or not
    /// accessible, an I/O error while running.
    VmmError = 1,
    /// Bad usage or input: command line errors, missing/unreadable kernel or
    /// initrd, not a kernel, memory too small for the kernel.
    Usage = 2,
    /// The guest kernel panicked ("Kernel panic - not syncing" on the console).
    GuestPanic = 3,
    /// KVM could not run the guest: emulation failure that the VMM could not
    /// complete, triple fault, failed VM entry.
    GuestFault = 4,
    /// The guest wrote a non-zero status to the exit port (a test failed).
    GuestFailure = 5,
    /// `--timeout` elapsed before the guest stopped.
    Timeout = 6,
    /// dmalab was stopped by SIGINT or SIGTERM (the trace is still closed).
    Interrupted = 130,
}

impl ExitCode {
    /// The numeric process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest reset the machine: i8042 command 0xFE (`reboot=k`).
    Reset,
    /// The guest halted for good: "reboot: System halted" on the console
    /// (`poweroff`/`halt` in a guest without ACPI).
    Halted,
    /// The guest wrote this status to the exit port.
    ExitPort(u32),
    /// The guest kernel's panic message ended (`panic=0` guests spin after it).
    Panic,
    /// KVM_EXIT_SHUTDOWN: a triple fault (or a reset KVM handled as one).
    TripleFault,
    /// KVM could not run the guest; the report says why.
    Fault(String),
    /// The VMM failed while the guest ran.
    VmmError(String),
    /// `--timeout` elapsed.
    Timeout,
    /// dmalab received this signal (SIGINT, SIGTERM).
    Signal(i32),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Reset => write!(f, "guest reset the machine (i8042 reset)"),
            StopReason::Halted => write!(f, "guest halted (power-off without ACPI)"),
            StopReason::ExitPort(s) => write!(f, "guest wrote status {s} to the exit port"),
            StopReason::Panic => write!(f, "guest kernel panic"),
            StopReason::TripleFault => write!(f, "guest triple fault (KVM_EXIT_SHUTDOWN)"),
            StopReason::Fault(r) => write!(f, "guest fault: {r}"),
            StopReason::VmmError(e) => write!(f, "VMM error: {e}"),
            StopReason::Timeout => write!(f, "timeout elapsed"),
            StopReason::Signal(n) => write!(f, "dmalab received signal {n}"),
        }
    }
}

/// The exit code for a stop reason, given whether a kernel panic was seen on
/// the console first (a panicking kernel with `panic=-1` resets, and that
/// reset must not count as a clean shutdown).
pub fn exit_code(reason: Option<&StopReason>, panic_seen: bool) -> ExitCode {
    let code = match reason {
        None => ExitCode::VmmError,
        Some(StopReason::Reset | StopReason::Halted | StopReason::ExitPort(0)) => ExitCode::Clean,
        Some(StopReason::ExitPort(_)) => ExitCode::GuestFailure,
        Some(StopReason::Panic) => ExitCode::GuestPanic,
        Some(StopReason::TripleFault | StopReason::Fault(_)) => ExitCode::GuestFault,
        Some(StopReason::VmmError(_)) => ExitCode::VmmError,
        Some(StopReason::Timeout) => ExitCode::Timeout,
        Some(StopReason::Signal(_)) => ExitCode::Interrupted,
    };
    match code {
        // A VMM error stays a VMM error; anything the guest did after a panic
        // message is a consequence of the panic.
        ExitCode::VmmError => code,
        _ if panic_seen => ExitCode::GuestPanic,
        _ => code,
    }
}

/// Shared between vCPU threads, devices and the event loop: the first stop
/// request wins, every later one is ignored.
#[derive(Debug)]
pub struct VmControl {
    stop: AtomicBool,
    panic_seen: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    /// Written on every stop request, so the event loop wakes up.
    stop_evt: EventFd,
}

impl VmControl {
    /// A control block with its wake-up eventfd.
    pub fn new() -> std::io::Result<Self> {
        Ok(VmControl {
            stop: AtomicBool::new(false),
            panic_seen: AtomicBool::new(false),
            reason: Mutex::new(None),
            stop_evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Ask the VM to stop. Only the first reason is kept.
    pub fn request_stop(&self, reason: StopReason) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.stop.store(true, Ordering::Release);
        // The counter cannot overflow in practice; a failed wake-up only
        // delays the event loop until its next tick.
        let _ = self.stop_evt.write(1);
    }

    /// Cheap check for the vCPU loop (one relaxed load).
    #[inline]
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Record that the guest printed a kernel panic message.
    pub fn note_panic(&self) {
        self.panic_seen.store(true, Ordering::Release);
    }

    /// Whether a kernel panic message was seen.
    pub fn panic_seen(&self) -> bool {
        self.panic_seen.load(Ordering::Acquire)
    }

    /// The first stop reason, if any.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The eventfd the event loop watches.
    pub fn stop_evt(&self) -> &EventFd {
        &self.stop_evt
    }

    /// The exit code for what happened so far.
    pub fn exit_code(&self) -> ExitCode {
        exit_code(self.reason().as_ref(), self.panic_seen())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let all = [
            ExitCode::Clean,
            ExitCode::VmmError,
            ExitCode::Usage,
            ExitCode::GuestPanic,
            ExitCode::GuestFault,
            ExitCode::GuestFailure,
            ExitCode::Timeout,
        ];
        for (i, c) in (0..).zip(all.iter()) {
            assert_eq!(c.code(), i);
        }
    }

    #[test]
    fn clean_stops() {
        assert_eq!(exit_code(Some(&StopReason::Reset), false), ExitCode::Clean);
        assert_eq!(exit_code(Some(&StopReason::Halted), false), ExitCode::Clean);
        assert_eq!(
            exit_code(Some(&StopReason::ExitPort(0)), false),
            ExitCode::Clean
        );
    }

    #[test]
    fn a_reset_after_a_panic_is_a_panic() {
        assert_eq!(
            exit_code(Some(&StopReason::Reset), true),
            ExitCode::GuestPanic
        );
        assert_eq!(
            exit_code(Some(&StopReason::TripleFault), true),
            ExitCode::GuestPanic
        );
        assert_eq!(
            exit_code(Some(&StopReason::VmmError("x".into())), true),
            ExitCode::VmmError
        );
    }

    #[test]
    fn failures() {
        assert_eq!(
            exit_code(Some(&StopReason::ExitPort(7)), false),
            ExitCode::GuestFailure
        );
        assert_eq!(
            exit_code(Some(&StopReason::Fault("x".into())), false),
            ExitCode::GuestFault
        );
        assert_eq!(
            exit_code(Some(&StopReason::Timeout), false),
            ExitCode::Timeout
        );
        assert_eq!(exit_code(None, false), ExitCode::VmmError);
    }

    #[test]
    fn first_reason_wins() {
        let c = VmControl::new().unwrap();
        assert!(!c.should_stop());
        c.request_stop(StopReason::Reset);
        c.request_stop(StopReason::Timeout);
        assert!(c.should_stop());
        assert_eq!(c.reason(), Some(StopReason::Reset));
        assert_eq!(c.stop_evt().read().unwrap(), 2);
        c.note_panic();
        assert_eq!(c.exit_code(), ExitCode::GuestPanic);
    }
}
