//! The i8042 keyboard controller, reduced to its reset line: a guest write of
//! 0xFE to port 0x64 (Linux `reboot=k`) stops the VM. Reads return 0 (the
//! status "input buffer empty" that Linux's `kb_wait()` polls for).

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;
use crate::stop::{StopReason, VmControl};

/// First i8042 port (data).
pub const I8042_BASE: u16 = 0x60;
/// Ports 0x60..=0x64.
pub const I8042_LEN: u16 = 5;

/// Turns vm-superio's reset trigger into a stop request.
#[derive(Debug)]
pub struct ResetTrigger(pub Arc<VmControl>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        log::info!("guest requested a reset through the i8042");
        self.0.request_stop(StopReason::Reset);
        Ok(())
    }
}

/// The i8042 as a bus device.
pub struct I8042 {
    dev: I8042Device<ResetTrigger>,
}

impl I8042 {
    /// An i8042 whose reset stops the VM through `control`.
    pub fn new(control: Arc<VmControl>) -> Self {
        I8042 {
            dev: I8042Device::new(ResetTrigger(control)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        // The bus gives offsets inside the 5-port range only.
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.dev.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            let _ = self.dev.write(off, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_stops_the_vm() {
        let c = Arc::new(VmControl::new().unwrap());
        let mut d = I8042::new(c.clone());
        let mut s = [0xffu8];
        d.read(4, &mut s);
        assert_eq!(s[0], 0);
        d.write(4, &[0xaa]);
        d.write(0, &[0xfe]);
        assert!(!c.should_stop());
        d.write(4, &[0xfe]);
        assert_eq!(c.reason(), Some(StopReason::Reset));
    }
}
