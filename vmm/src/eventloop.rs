//! The VMM's main-thread event loop (event-manager): stdin to the UART, the
//! stop eventfd, and the `--timeout` timer.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use crate::serial::{SerialDevice, Stdout};
use crate::stop::{StopReason, VmControl};

/// The serial device type the VMM uses.
pub type Console = Arc<Mutex<SerialDevice<Stdout>>>;

/// Largest chunk read from stdin at once (the UART FIFO is 64 bytes).
const STDIN_CHUNK: usize = 64;

/// Relays stdin to the UART, watches the stop eventfd and the timeout.
pub struct VmmLoop {
    control: Arc<VmControl>,
    console: Console,
    rx_ready: EventFd,
    stdin_open: bool,
    stdin_registered: bool,
    pending: Vec<u8>,
    timer: Option<TimerFd>,
}

impl VmmLoop {
    /// A loop feeding `console` from stdin (unless `stdin` is false), with an
    /// optional timeout. `rx_ready` is signalled by the UART when the guest
    /// has drained its receive FIFO.
    pub fn new(
        control: Arc<VmControl>,
        console: Console,
        rx_ready: EventFd,
        stdin: bool,
        timeout: Option<Duration>,
    ) -> std::io::Result<Self> {
        let timer = match timeout {
            Some(d) => {
                let mut t = TimerFd::new().map_err(std::io::Error::from)?;
                t.reset(d, None).map_err(std::io::Error::from)?;
                Some(t)
            }
            None => None,
        };
        Ok(VmmLoop {
            control,
            console,
            rx_ready,
            stdin_open: stdin,
            stdin_registered: false,
            pending: Vec::new(),
            timer,
        })
    }

    fn stdin_events() -> Events {
        Events::new_raw(std::io::stdin().as_raw_fd(), EventSet::IN)
    }

    /// Move pending input into the UART; returns true when all of it fit.
    fn flush_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let n = self
            .console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .enqueue_input(&self.pending);
        self.pending.drain(..n);
        self.pending.is_empty()
    }

    fn set_stdin(&mut self, ops: &mut EventOps, want: bool) {
        if want == self.stdin_registered {
            return;
        }
        let r = if want {
            ops.add(Self::stdin_events())
        } else {
            ops.remove(Self::stdin_events())
        };
        match r {
            Ok(()) => self.stdin_registered = want,
            Err(e) => {
                log::debug!("stdin cannot be watched ({e:?}): no console input");
                self.stdin_open = false;
            }
        }
    }

    fn read_stdin(&mut self, ops: &mut EventOps) {
        let mut buf = [0u8; STDIN_CHUNK];
        match std::io::stdin().lock().read(&mut buf) {
            Ok(0) => {
                self.stdin_open = false;
                self.set_stdin(ops, false);
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                if !self.flush_pending() {
                    // Wait for the guest to drain the FIFO (rx_ready).
                    self.set_stdin(ops, false);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("stdin read failed: {e}: no more console input");
                self.stdin_open = false;
                self.set_stdin(ops, false);
            }
        }
    }
}

impl MutEventSubscriber for VmmLoop {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(self.control.stop_evt(), EventSet::IN));
        let _ = ops.add(Events::new(&self.rx_ready, EventSet::IN));
        if let Some(t) = &self.timer {
            let _ = ops.add(Events::new(t, EventSet::IN));
        }
        if self.stdin_open {
            self.set_stdin(ops, true);
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.control.stop_evt().as_raw_fd() {
            let _ = self.control.stop_evt().read();
        } else if fd == self.rx_ready.as_raw_fd() {
            let _ = self.rx_ready.read();
            if self.flush_pending() && self.stdin_open {
                self.set_stdin(ops, true);
            }
        } else if self.timer.as_ref().is_some_and(|t| t.as_raw_fd() == fd) {
            if let Some(t) = self.timer.as_mut() {
                let _ = t.wait();
            }
            log::warn!("timeout elapsed: stopping the guest");
            self.control.request_stop(StopReason::Timeout);
        } else if fd == std::io::stdin().as_raw_fd() {
            if events.event_set().contains(EventSet::IN) {
                self.read_stdin(ops);
            } else {
                // HUP or ERR without data.
                self.stdin_open = false;
                self.set_stdin(ops, false);
            }
        }
    }
}
