//! The 16550 UART at 0x3f8 / IRQ 4 (vm-superio), wired to stdout and stdin,
//! with a console watcher that recognises the guest's panic, halt and
//! boot-marker lines.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::console_tx::TxQueue;
use crate::logger;
use crate::stop::{StopReason, VmControl};

/// COM1 base port.
pub const COM1_PORT: u16 = 0x3f8;
/// Number of UART registers.
pub const COM1_LEN: u16 = 8;
/// COM1 interrupt line (ISA IRQ / IOAPIC pin / GSI).
pub const COM1_IRQ: u32 = 4;

/// Console line that starts a kernel panic report.
pub const PANIC_START: &str = "Kernel panic - not syncing";
/// Console line that ends it (only printed when the kernel does not reboot).
pub const PANIC_END: &str = "---[ end Kernel panic";
/// Printed by `kernel_halt()`: `halt`, or `poweroff` without a power-off method.
pub const HALT_LINE: &str = "reboot: System halted";

/// An eventfd as a vm-superio interrupt trigger (bound to a GSI by irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Signals the stdin reader when the guest has drained the receive FIFO.
#[derive(Debug)]
pub struct RxReady(pub EventFd);

impl SerialEvents for RxReady {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.0.write(1);
    }
}

/// Longest console line the watcher keeps; longer lines are cut (the
/// markers it looks for are near the start of a line).
const MAX_LINE: usize = 512;

/// Watches the guest console line by line.
pub struct ConsoleWatcher {
    control: Arc<VmControl>,
    line: Vec<u8>,
    boot_marker: Option<String>,
    boot_marker_seen: bool,
}

impl ConsoleWatcher {
    /// A watcher reporting to `control`; `boot_marker` is a string whose
    /// first appearance at the start of a console line logs the guest boot time.
    pub fn new(control: Arc<VmControl>, boot_marker: Option<String>) -> Self {
        ConsoleWatcher {
            control,
            line: Vec::with_capacity(MAX_LINE),
            boot_marker: boot_marker.filter(|m| !m.is_empty()),
            boot_marker_seen: false,
        }
    }

    /// Feed one byte of console output.
    #[inline]
    pub fn push(&mut self, b: u8) {
        if b == b'\n' {
            self.end_line();
        } else if self.line.len() < MAX_LINE {
            self.line.push(b);
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        // The end line contains the start text too: check it first.
        if line.contains(PANIC_END) {
            self.control.note_panic();
            self.control.request_stop(StopReason::Panic);
        } else if line.contains(PANIC_START) {
            self.control.note_panic();
            log::error!("guest kernel panic seen on the console");
        } else if line.contains(HALT_LINE) {
            self.control.request_stop(StopReason::Halted);
        }
        if let Some(m) = &self.boot_marker {
            // At the start of a line: the kernel echoes its command line
            // (which may contain the marker) long before user space runs.
            if !self.boot_marker_seen && line.trim_start().starts_with(m.as_str()) {
                self.boot_marker_seen = true;
                log::info!(
                    "guest boot time: {:.1} ms (boot marker {:?} on the console)",
                    logger::ms_since_start(),
                    m
                );
            }
        }
        self.line.clear();
    }
}

/// Where the UART's output goes: a file descriptor (stdout) written
/// unbuffered, so the console is interactive, and the watcher.
pub struct ConsoleOut<W: Write> {
    out: W,
    watcher: ConsoleWatcher,
}

impl<W: Write> ConsoleOut<W> {
    /// Output to `out`, watched by `watcher`.
    pub fn new(out: W, watcher: ConsoleWatcher) -> Self {
        ConsoleOut { out, watcher }
    }

    /// The underlying writer.
    pub fn inner(&self) -> &W {
        &self.out
    }
}

impl<W: Write> Write for ConsoleOut<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            self.watcher.push(b);
        }
        // A closed stdout must not stop the guest: drop the output.
        match self.out.write_all(buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(e),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        }
    }
}

/// Unbuffered stdout.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: fd 1 stays open for the life of the process; the buffer is
        // valid for `buf.len()` bytes.
        let n = unsafe { libc::write(io::stdout().as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        // A negative count is an error, anything else a byte count.
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// UART register offsets and bits the device looks at itself.
const THR: u8 = 0;
const IER: u8 = 1;
const IIR: u8 = 2;
const LCR: u8 = 3;
const MCR: u8 = 4;
const IER_THR_EMPTY: u8 = 0x02;
const LCR_DLAB: u8 = 0x80;
/// The PC's interrupt gate: Linux sets it when the tty starts up; the
/// console and the port probe leave it clear.
const MCR_OUT2: u8 = 0x08;

/// The UART as a bus device.
pub struct SerialDevice<W: Write + Send> {
    pub serial: Serial<EventFdTrigger, RxReady, ConsoleOut<W>>,
    /// Queues the kernel console's THR writes (`console_tx.rs`).
    tx_queue: Option<Arc<TxQueue>>,
}

impl<W: Write + Send> SerialDevice<W> {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: EventFdTrigger, rx_ready: RxReady, out: ConsoleOut<W>) -> Self {
        SerialDevice {
            serial: Serial::with_events(irq, rx_ready, out),
            tx_queue: None,
        }
    }

    /// Let `queue` take the console's THR writes (`console_tx.rs`).
    pub fn use_tx_queue(&mut self, queue: Arc<TxQueue>) {
        self.tx_queue = Some(queue);
    }

    /// Queue bytes for the guest to read; returns how many fit.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        if self.serial.fifo_capacity() == 0 {
            return 0;
        }
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Whether the guest has the THR-empty interrupt on. With DLAB set
    /// offsets 1 and 2 are other registers (the divisor; EFR on enhanced
    /// UARTs, which Linux's port probe reads), so no.
    fn thr_interrupt_on(&mut self) -> bool {
        self.serial.read(LCR) & LCR_DLAB == 0 && self.serial.read(IER) & IER_THR_EMPTY != 0
    }
}

impl<W: Write + Send> BusDevice for SerialDevice<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // An interrupt handler reads IIR: interrupt-driven output, so every
        // write exits from now on (`console_tx.rs`).
        if offset == u64::from(IIR) && self.thr_interrupt_on() {
            if let Some(q) = &self.tx_queue {
                q.retire();
            }
        }
        let v = match u8::try_from(offset) {
            Ok(off) if offset < u64::from(COM1_LEN) => self.serial.read(off),
            _ => 0xff,
        };
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = u8::try_from(offset) else {
            return;
        };
        if offset >= u64::from(COM1_LEN) {
            return;
        }
        if let Some(&b) = data.first() {
            // The UART's state before this write (reading it has no side
            // effect); with DLAB set, offsets 0 and 1 are the divisor.
            let dlab = self.serial.read(LCR) & LCR_DLAB != 0;
            let thr_interrupt = self.thr_interrupt_on();
            let mcr_out2 = self.serial.read(MCR) & MCR_OUT2 != 0;
            if let Some(q) = &self.tx_queue {
                // The queue stops for good when the THR-empty interrupt can
                // reach the guest: the bit on with OUT2 set. Linux's port
                // probe sets the bit with OUT2 clear (and at once clears it
                // again); the tty's startup sets OUT2 first.
                match off {
                    THR if !dlab && !thr_interrupt => q.console_write(),
                    IER if !dlab && b & IER_THR_EMPTY != 0 && mcr_out2 => q.retire(),
                    MCR if b & MCR_OUT2 != 0 && thr_interrupt => q.retire(),
                    _ => {}
                }
            }
            if let Err(e) = self.serial.write(off, b) {
                log::debug!("serial write failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn watcher(marker: Option<&str>) -> (Arc<VmControl>, ConsoleWatcher) {
        let c = Arc::new(VmControl::new().unwrap());
        let w = ConsoleWatcher::new(c.clone(), marker.map(String::from));
        (c, w)
    }

    fn feed(w: &mut ConsoleWatcher, s: &str) {
        for b in s.bytes() {
            w.push(b);
        }
    }

    #[test]
    fn panic_then_reset_is_a_panic() {
        let (c, mut w) = watcher(None);
        feed(
            &mut w,
            "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root\n",
        );
        assert!(c.panic_seen());
        assert!(!c.should_stop());
        c.request_stop(StopReason::Reset);
        assert_eq!(c.exit_code(), crate::ExitCode::GuestPanic);
    }

    #[test]
    fn panic_end_stops() {
        let (c, mut w) = watcher(None);
        feed(&mut w, "---[ end Kernel panic - not syncing: x ]---\r\n");
        assert_eq!(c.reason(), Some(StopReason::Panic));
    }

    #[test]
    fn halt_stops_cleanly() {
        let (c, mut w) = watcher(None);
        feed(&mut w, "[   12.3] reboot: System halted\r\n");
        assert_eq!(c.reason(), Some(StopReason::Halted));
        assert_eq!(c.exit_code(), crate::ExitCode::Clean);
    }

    #[test]
    fn partial_and_long_lines_are_harmless() {
        let (c, mut w) = watcher(Some("READY"));
        feed(&mut w, &"x".repeat(5000));
        feed(&mut w, "\nKernel pan");
        assert!(!c.panic_seen());
        feed(&mut w, "\n[0.1] Kernel command line: echo READY\n");
        assert!(!w.boot_marker_seen);
        feed(&mut w, "\r\nREADY\n");
        assert!(w.boot_marker_seen);
    }

    #[test]
    fn uart_output_reaches_the_writer_and_raises_the_irq() {
        let (c, w) = watcher(None);
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(
            EventFdTrigger(irq.try_clone().unwrap()),
            RxReady(EventFd::new(EFD_NONBLOCK).unwrap()),
            ConsoleOut::new(Vec::new(), w),
        );
        dev.write(1, &[0x02]); // IER: THR empty interrupt
        for b in b"reboot: System halted\n" {
            dev.write(0, &[*b]);
        }
        assert_eq!(dev.serial.writer().inner(), b"reboot: System halted\n");
        assert!(irq.read().unwrap() > 0);
        assert_eq!(c.reason(), Some(StopReason::Halted));
        // Input.
        assert_eq!(dev.enqueue_input(b"ab"), 2);
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1);
        let mut d = [0u8];
        dev.read(0, &mut d);
        assert_eq!(d[0], b'a');
        // Out-of-range offsets are ignored.
        dev.write(100, &[1]);
        dev.read(100, &mut d);
        assert_eq!(d[0], 0xff);
    }
}
