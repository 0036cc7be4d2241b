//! dmalab's debug ports: the exit port and the boot-timer port.
//!
//! | port | access | meaning |
//! | --- | --- | --- |
//! | `0xf4` ([`EXIT_PORT`]) | write 1, 2 or 4 bytes: status | stop the VM: status 0 -> exit code 0, anything else -> exit code 5 |
//! | `0xf5` ([`TIMER_PORT`]) | write 1 byte | `123` ([`BOOT_DONE_MAGIC`]): log "guest boot time"; `0xff`: the VMM's entry trampoline (first guest instruction); other values: log a numbered checkpoint |
//!
//! Reads return 0; ports 0xf6-0xf7 are reserved (a 4-byte exit write spans them). Both sit in the legacy math-coprocessor
//! range (0xf0-0xff) which a 64-bit Linux guest never touches beyond 0xf0/0xf1.
//! Port 0xf4 is where QEMU's `isa-debug-exit` usually lives, but the status
//! mapping differs (QEMU exits with `status << 1 | 1`).

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::logger;
use crate::stop::{StopReason, VmControl};

/// The exit port.
pub const EXIT_PORT: u16 = 0xf4;
/// The boot-timer port.
pub const TIMER_PORT: u16 = 0xf5;
/// Both ports as one bus range.
pub const DEBUG_PORTS_BASE: u16 = EXIT_PORT;
/// Length of the range: a 4-byte write to the exit port spans 0xf4-0xf7
/// (0xf6 and 0xf7 are reserved and ignored).
pub const DEBUG_PORTS_LEN: u16 = 4;
/// Written to [`TIMER_PORT`] by the guest when it has booted (Firecracker's value).
pub const BOOT_DONE_MAGIC: u8 = 123;
/// Written to [`TIMER_PORT`] by the entry trampoline: the guest's first instruction.
pub const FIRST_INSN_MARK: u8 = 0xff;

/// The exit and boot-timer ports.
pub struct DebugPorts {
    control: Arc<VmControl>,
    first_insn_ms: Option<f64>,
}

impl DebugPorts {
    /// Ports reporting to `control`.
    pub fn new(control: Arc<VmControl>) -> Self {
        DebugPorts {
            control,
            first_insn_ms: None,
        }
    }

    /// When the first guest instruction ran (ms since VMM start), if it has.
    pub fn first_insn_ms(&self) -> Option<f64> {
        self.first_insn_ms
    }
}

fn le_value(data: &[u8]) -> u32 {
    let mut v = [0u8; 4];
    let n = data.len().min(4);
    v[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(v)
}

impl BusDevice for DebugPorts {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let now = logger::ms_since_start();
        match offset {
            0 => {
                let status = le_value(data);
                log::info!("guest wrote {status} to the exit port at {now:.1} ms");
                self.control.request_stop(StopReason::ExitPort(status));
            }
            1 => match data.first().copied().unwrap_or(0) {
                FIRST_INSN_MARK if self.first_insn_ms.is_none() => {
                    self.first_insn_ms = Some(now);
                    log::info!("first guest instruction at {now:.3} ms after VMM start");
                }
                BOOT_DONE_MAGIC => {
                    log::info!("guest boot time: {now:.1} ms (boot-timer port)");
                }
                v => log::info!("guest checkpoint {v} at {now:.1} ms"),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_port_stops_with_status() {
        let c = Arc::new(VmControl::new().unwrap());
        let mut p = DebugPorts::new(c.clone());
        p.write(1, &[BOOT_DONE_MAGIC]);
        assert!(!c.should_stop());
        p.write(0, &[3, 1]);
        assert!(c.should_stop());
        assert_eq!(c.reason(), Some(StopReason::ExitPort(0x103)));
    }

    #[test]
    fn first_instruction_is_recorded_once() {
        let c = Arc::new(VmControl::new().unwrap());
        let mut p = DebugPorts::new(c);
        assert!(p.first_insn_ms().is_none());
        p.write(1, &[FIRST_INSN_MARK]);
        let t = p.first_insn_ms().unwrap();
        p.write(1, &[FIRST_INSN_MARK]);
        assert_eq!(p.first_insn_ms(), Some(t));
        let mut d = [9u8; 4];
        p.read(0, &mut d);
        assert_eq!(d, [0; 4]);
        p.write(7, &[]);
    }
}
