//! The legacy devices on the port bus: the 16550 console (COM1, IRQ 4
//! through an irqfd), the i8042 reset line and dmalab's debug ports.

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::bus::{Bus, BusError, SharedDevice};
use crate::debugport::{DebugPorts, DEBUG_PORTS_BASE, DEBUG_PORTS_LEN};
use crate::eventloop::Console;
use crate::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::serial::{
    ConsoleOut, ConsoleWatcher, EventFdTrigger, RxReady, SerialDevice, Stdout, COM1_IRQ, COM1_LEN,
    COM1_PORT,
};
use crate::stop::VmControl;

#[derive(Debug, Error)]
pub enum LegacyDeviceError {
    #[error("cannot create an eventfd for the console: {0}")]
    EventFd(std::io::Error),
    #[error("KVM_IRQFD (serial) failed: {0}")]
    Irqfd(kvm_ioctls::Error),
    #[error("cannot map a legacy device: {0}")]
    Bus(#[from] BusError),
}

/// What the rest of the VMM keeps of the legacy devices: the console (the
/// event loop feeds it stdin) and the eventfd it signals when it can take
/// more input.
pub struct LegacyDevices {
    pub console: Console,
    pub rx_ready: EventFd,
}

impl LegacyDevices {
    /// Builds the three devices and inserts them on `pio`. `boot_marker`: a
    /// console line prefix whose first appearance logs the guest boot time.
    pub fn attach(
        vm: &VmFd,
        control: &Arc<VmControl>,
        boot_marker: Option<String>,
        pio: &mut Bus,
    ) -> Result<Self, LegacyDeviceError> {
        let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(LegacyDeviceError::EventFd)?;
        vm.register_irqfd(&serial_irq, COM1_IRQ)
            .map_err(LegacyDeviceError::Irqfd)?;
        let rx_ready = EventFd::new(EFD_NONBLOCK).map_err(LegacyDeviceError::EventFd)?;
        let console: Console = Arc::new(Mutex::new(SerialDevice::new(
            EventFdTrigger(serial_irq),
            RxReady(rx_ready.try_clone().map_err(LegacyDeviceError::EventFd)?),
            ConsoleOut::new(Stdout, ConsoleWatcher::new(control.clone(), boot_marker)),
        )));
        let console_dev: SharedDevice = console.clone();
        pio.insert(console_dev, u64::from(COM1_PORT), u64::from(COM1_LEN))?;
        pio.insert(
            Arc::new(Mutex::new(I8042::new(control.clone()))),
            u64::from(I8042_BASE),
            u64::from(I8042_LEN),
        )?;
        pio.insert(
            Arc::new(Mutex::new(DebugPorts::new(control.clone()))),
            u64::from(DEBUG_PORTS_BASE),
            u64::from(DEBUG_PORTS_LEN),
        )?;
        Ok(LegacyDevices { console, rx_ready })
    }
}
