//! The root complex on bus 0: configuration mechanism #1 (ports
//! 0xcf8-0xcff), the slots, and firmware-style BAR placement.
//!
//! [`PciRoot`] sits on the port bus; its [`PciMmioWindow`] sits on the MMIO
//! bus. A configuration write that changes where a BAR decodes comes back
//! from the device as a [`pci::BarReprogrammingParams`] and the root applies
//! just that move to the window; nothing is rescanned.

use std::sync::{Arc, Mutex, MutexGuard};

use pci::regs::{
    PCI_BASE_ADDRESS_0, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PCI_INTERRUPT_LINE,
};
use pci::{BarKind, BarReprogrammingParams, PciDevice};
use thiserror::Error;
use vm_allocator::{AddressAllocator, AllocPolicy};

use super::mmio_window::PciMmioWindow;
use crate::bus::BusDevice;

/// Configuration mechanism #1: CONFIG_ADDRESS at 0xcf8, CONFIG_DATA at 0xcfc.
pub const CONFIG_PORTS_BASE: u16 = 0xcf8;
pub const CONFIG_PORTS_LEN: u16 = 8;

/// CONFIG_ADDRESS bit 31: the access goes to configuration space.
const CONFIG_ENABLE: u32 = 1 << 31;
/// Slots (devices) on one bus.
const SLOTS: usize = 32;

/// Errors adding a device.
#[derive(Debug, Error)]
pub enum PciError {
    #[error("PCI slot {0} is taken or out of range (0-31)")]
    SlotTaken(u8),
    #[error("no room for BAR{bar} ({size:#x} bytes) in the PCI MMIO window: {source}")]
    NoRoom {
        bar: u8,
        size: u64,
        source: vm_allocator::Error,
    },
    #[error("bad PCI MMIO window {base:#x}+{size:#x}: {source}")]
    Window {
        base: u64,
        size: u64,
        source: vm_allocator::Error,
    },
}

/// Bus 0 of the guest's PCI hierarchy, as the port-bus device for 0xcf8.
pub struct PciRoot {
    slots: Vec<Option<Arc<dyn PciDevice>>>,
    config_address: u32,
    window: Arc<Mutex<PciMmioWindow>>,
    allocator: AddressAllocator,
}

fn lock_window(w: &Mutex<PciMmioWindow>) -> MutexGuard<'_, PciMmioWindow> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl PciRoot {
    /// A root whose BARs are placed in `[base, base + size)`.
    pub fn new(base: u64, size: u64) -> Result<Self, PciError> {
        let allocator = AddressAllocator::new(base, size).map_err(|source| PciError::Window {
            base,
            size,
            source,
        })?;
        Ok(PciRoot {
            slots: vec![None; SLOTS],
            config_address: 0,
            window: Arc::new(Mutex::new(PciMmioWindow::new(base))),
            allocator,
        })
    }

    /// The MMIO window, to insert on the MMIO bus at [`PciRoot::window_base`].
    pub fn mmio_window(&self) -> Arc<Mutex<PciMmioWindow>> {
        Arc::clone(&self.window)
    }

    /// The window's base.
    pub fn window_base(&self) -> u64 {
        lock_window(&self.window).base()
    }

    /// Puts `dev` in `slot` (function 0) and, like firmware, places its
    /// memory BARs in the window, sets its interrupt line and turns on
    /// memory decoding. Bus mastering stays off: that is the driver's job.
    pub fn add_device(
        &mut self,
        slot: u8,
        dev: Arc<dyn PciDevice>,
        irq_line: u8,
    ) -> Result<(), PciError> {
        match self.slots.get(usize::from(slot)) {
            Some(None) => {}
            _ => return Err(PciError::SlotTaken(slot)),
        }
        let mut command = PCI_COMMAND_MEMORY;
        let mut moved = Vec::new();
        for bar in dev.bars() {
            if bar.kind == BarKind::Io {
                command |= PCI_COMMAND_IO;
                continue;
            }
            let range = self
                .allocator
                .allocate(bar.size, bar.size.max(4096), AllocPolicy::FirstMatch)
                .map_err(|source| PciError::NoRoom {
                    bar: bar.index,
                    size: bar.size,
                    source,
                })?;
            let off = PCI_BASE_ADDRESS_0 + 4 * u16::from(bar.index);
            let address = range.start().to_le_bytes();
            moved.extend(dev.write_config(off, &address[..4]));
            if bar.kind == BarKind::Memory64 {
                moved.extend(dev.write_config(off + 4, &address[4..]));
            }
        }
        moved.extend(dev.write_config(PCI_INTERRUPT_LINE, &[irq_line]));
        moved.extend(dev.write_config(PCI_COMMAND, &command.to_le_bytes()));
        self.apply(slot, &dev, &moved);
        self.slots[usize::from(slot)] = Some(dev);
        Ok(())
    }

    /// Brings the MMIO window in line with BAR moves of the device in `slot`.
    fn apply(&self, slot: u8, dev: &Arc<dyn PciDevice>, moved: &[BarReprogrammingParams]) {
        if moved.is_empty() {
            return;
        }
        let mut window = lock_window(&self.window);
        for m in moved {
            log::debug!(
                "PCI 00:{slot:02x}.0 BAR{}: {} -> {}",
                m.bar,
                m.old_base.map_or("off".into(), |a| format!("{a:#x}")),
                m.new_base.map_or("off".into(), |a| format!("{a:#x}"))
            );
            window.move_bar(slot, dev, m);
        }
    }

    /// The slot and register for the current CONFIG_ADDRESS, if it names an
    /// enabled access to a present function on bus 0.
    fn config_target(&self) -> Option<(u8, u16)> {
        let a = self.config_address;
        let bus = (a >> 16) & 0xff;
        let slot = u8::try_from((a >> 11) & 0x1f).ok()?;
        let function = (a >> 8) & 0x7;
        if a & CONFIG_ENABLE == 0 || bus != 0 || function != 0 {
            return None;
        }
        // Register number bits 7:2 plus the extended register bits 27:24
        // some guests use (AMD's CF8 extension): at most 0xffc.
        let reg = u16::try_from((a & 0xfc) | ((a >> 16) & 0xf00)).ok()?;
        self.slots.get(usize::from(slot))?.as_ref()?;
        Some((slot, reg))
    }

    fn device(&self, slot: u8) -> Option<&Arc<dyn PciDevice>> {
        self.slots.get(usize::from(slot))?.as_ref()
    }

    fn config_read(&self, byte: u16, data: &mut [u8]) {
        match self
            .config_target()
            .and_then(|(s, r)| Some((self.device(s)?, r)))
        {
            Some((dev, reg)) => dev.read_config(reg + byte, data),
            // No device: all ones, which the guest reads as "nothing here".
            None => data.fill(0xff),
        }
    }

    fn config_write(&self, byte: u16, data: &[u8]) {
        if let Some((slot, reg)) = self.config_target() {
            if let Some(dev) = self.device(slot) {
                let moved = dev.write_config(reg + byte, data);
                self.apply(slot, dev, &moved);
            }
        }
    }
}

/// For an access of `len` bytes at port offset `offset`: the byte inside
/// CONFIG_DATA (0xcfc-0xcff) it starts at, if it lies wholly inside it.
fn config_data_byte(offset: u64, len: usize) -> Option<u16> {
    offset
        .checked_sub(4)
        .and_then(|b| u16::try_from(b).ok())
        .filter(|&b| usize::from(b) + len <= 4)
}

/// Ports 0xcf8-0xcff.
impl BusDevice for PciRoot {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let data_byte = config_data_byte(offset, data.len());
        match (offset, data_byte) {
            (0, _) if data.len() == 4 => data.copy_from_slice(&self.config_address.to_le_bytes()),
            (_, Some(byte)) => self.config_read(byte, data),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let data_byte = config_data_byte(offset, data.len());
        match (offset, data_byte) {
            // Only a 32-bit write of CONFIG_ADDRESS counts (byte writes to
            // 0xcf8-0xcfb are other chipset registers on real hardware).
            (0, _) if data.len() == 4 => {
                let mut v = [0u8; 4];
                v.copy_from_slice(data);
                self.config_address = u32::from_le_bytes(v);
            }
            (_, Some(byte)) => self.config_write(byte, data),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
