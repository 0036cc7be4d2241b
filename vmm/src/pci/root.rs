//! The root complex: configuration mechanism #1 and the MMIO window that
//! routes accesses to whichever BAR the guest placed there.
//!
//! Two bus devices share one [`PciRoot`]: [`PciConfigPorts`] on the port bus
//! (0xcf8-0xcff) and [`PciMmioWindow`] on the MMIO bus. A route table of the
//! decoding BARs is rebuilt after every configuration write (rare) so an MMIO
//! access (hot) is a short scan, never a call into every device.

use std::sync::{Arc, Mutex, MutexGuard};

use device_model::{BarKind, PciDevice};
use thiserror::Error;
use vm_allocator::{AddressAllocator, AllocPolicy};

use crate::bus::BusDevice;

/// Configuration mechanism #1: CONFIG_ADDRESS at 0xcf8, CONFIG_DATA at 0xcfc.
pub const CONFIG_PORTS_BASE: u16 = 0xcf8;
pub const CONFIG_PORTS_LEN: u16 = 8;

const CONFIG_ENABLE: u32 = 1 << 31;
const OFF_COMMAND: u16 = 0x04;
const OFF_BAR0: u16 = 0x10;
const OFF_INT_LINE: u16 = 0x3c;
const CMD_IO: u16 = 1 << 0;
const CMD_MEM: u16 = 1 << 1;

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

/// A PCI function as the root holds it.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    start: u64,
    last: u64,
    slot: u8,
    bar: u8,
}

/// Bus 0 of the guest's PCI hierarchy.
pub struct PciRoot {
    slots: Vec<Option<SharedPciDevice>>,
    config_address: u32,
    routes: Vec<Route>,
    window: AddressAllocator,
    window_base: u64,
}

fn lock(d: &SharedPciDevice) -> MutexGuard<'_, dyn PciDevice + 'static> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

impl PciRoot {
    /// A root whose BARs are placed in `[base, base + size)`.
    pub fn new(base: u64, size: u64) -> Result<Self, PciError> {
        let window = AddressAllocator::new(base, size).map_err(|source| PciError::Window {
            base,
            size,
            source,
        })?;
        Ok(PciRoot {
            slots: vec![None; 32],
            config_address: 0,
            routes: Vec::new(),
            window,
            window_base: base,
        })
    }

    /// Puts `dev` in `slot` (function 0) and, like firmware, places its
    /// memory BARs in the window, sets its interrupt line and turns on
    /// memory decoding. Bus mastering stays off: that is the driver's job.
    pub fn add_device(
        &mut self,
        slot: u8,
        dev: SharedPciDevice,
        irq_line: u8,
    ) -> Result<(), PciError> {
        match self.slots.get(usize::from(slot)) {
            Some(None) => {}
            _ => return Err(PciError::SlotTaken(slot)),
        }
        {
            let mut d = lock(&dev);
            let mut command = CMD_MEM;
            for bar in d.bars() {
                if bar.kind == BarKind::Io {
                    command |= CMD_IO;
                    continue;
                }
                let range = self
                    .window
                    .allocate(bar.size, bar.size.max(4096), AllocPolicy::FirstMatch)
                    .map_err(|source| PciError::NoRoom {
                        bar: bar.index,
                        size: bar.size,
                        source,
                    })?;
                let off = OFF_BAR0 + 4 * u16::from(bar.index);
                d.write_config(off, &(range.start() as u32).to_le_bytes());
                if bar.kind == BarKind::Memory64 {
                    d.write_config(off + 4, &((range.start() >> 32) as u32).to_le_bytes());
                }
            }
            d.write_config(OFF_INT_LINE, &[irq_line]);
            d.write_config(OFF_COMMAND, &command.to_le_bytes());
        }
        self.slots[usize::from(slot)] = Some(dev);
        self.refresh_routes();
        Ok(())
    }

    /// The window's base (for logs).
    pub fn window_base(&self) -> u64 {
        self.window_base
    }

    fn refresh_routes(&mut self) {
        self.routes.clear();
        for (slot, dev) in self.slots.iter().enumerate() {
            let Some(dev) = dev else { continue };
            for bar in lock(dev).bars() {
                if bar.decoding && bar.kind != BarKind::Io && bar.size > 0 {
                    if let Some(last) = bar.address.checked_add(bar.size - 1) {
                        self.routes.push(Route {
                            start: bar.address,
                            last,
                            slot: slot as u8,
                            bar: bar.index,
                        });
                    }
                }
            }
        }
    }

    /// The device and register for the current CONFIG_ADDRESS, if it names
    /// an enabled access to a present function on bus 0.
    fn config_target(&self) -> Option<(&SharedPciDevice, u16)> {
        let a = self.config_address;
        let bus = (a >> 16) & 0xff;
        let slot = (a >> 11) & 0x1f;
        let function = (a >> 8) & 0x7;
        if a & CONFIG_ENABLE == 0 || bus != 0 || function != 0 {
            return None;
        }
        // Register number bits 7:2 plus the extended register bits 27:24
        // some guests use (AMD's CF8 extension).
        let reg = ((a & 0xfc) | ((a >> 16) & 0xf00)) as u16;
        let dev = self.slots.get(slot as usize)?.as_ref()?;
        Some((dev, reg))
    }

    fn config_read(&self, byte: u16, data: &mut [u8]) {
        match self.config_target() {
            Some((dev, reg)) => lock(dev).read_config(reg + byte, data),
            // No device: all ones, which the guest reads as "nothing here".
            None => data.fill(0xff),
        }
    }

    fn config_write(&mut self, byte: u16, data: &[u8]) {
        if let Some((dev, reg)) = self.config_target() {
            lock(dev).write_config(reg + byte, data);
            self.refresh_routes();
        }
    }

    /// The device and BAR offset decoding `addr`, for an access of `len` bytes.
    fn mmio_target(&self, addr: u64, len: usize) -> Option<(&SharedPciDevice, u8, u64)> {
        let end = addr.checked_add(len.checked_sub(1)? as u64)?;
        let r = self
            .routes
            .iter()
            .find(|r| r.start <= addr && end <= r.last)?;
        let dev = self.slots.get(usize::from(r.slot))?.as_ref()?;
        Some((dev, r.bar, addr - r.start))
    }
}

fn lock_root(r: &Mutex<PciRoot>) -> MutexGuard<'_, PciRoot> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ports 0xcf8-0xcff.
pub struct PciConfigPorts(pub Arc<Mutex<PciRoot>>);

impl BusDevice for PciConfigPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let root = lock_root(&self.0);
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&root.config_address.to_le_bytes()),
            4..=7 if offset as usize + data.len() <= 8 => root.config_read(offset as u16 - 4, data),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut root = lock_root(&self.0);
        match offset {
            // Only a 32-bit write of CONFIG_ADDRESS counts (byte writes to
            // 0xcf8-0xcfb are other chipset registers on real hardware).
            0 if data.len() == 4 => {
                let mut v = [0u8; 4];
                v.copy_from_slice(data);
                root.config_address = u32::from_le_bytes(v);
            }
            4..=7 if offset as usize + data.len() <= 8 => {
                root.config_write(offset as u16 - 4, data)
            }
            _ => {}
        }
    }
}

/// The PCI MMIO window on the MMIO bus, inserted at [`PciRoot::window_base`].
pub struct PciMmioWindow(pub Arc<Mutex<PciRoot>>);

impl BusDevice for PciMmioWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let root = lock_root(&self.0);
        let addr = root.window_base + offset;
        match root.mmio_target(addr, data.len()) {
            Some((dev, bar, off)) => lock(dev).read_bar(bar, off, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let root = lock_root(&self.0);
        let addr = root.window_base + offset;
        if let Some((dev, bar, off)) = root.mmio_target(addr, data.len()) {
            lock(dev).write_bar(bar, off, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::HostBridge;
    use device_model::BarInfo;

    /// A function with one 4 KiB memory BAR whose registers echo writes.
    struct Fake {
        cfg: [u8; 256],
        bar_addr: u64,
        sizing: bool,
        mem: [u8; 4096],
    }

    impl Fake {
        fn new() -> Self {
            let mut cfg = [0u8; 256];
            cfg[0..4].copy_from_slice(&0xabcd_1234u32.to_le_bytes());
            Fake {
                cfg,
                bar_addr: 0,
                sizing: false,
                mem: [0; 4096],
            }
        }
        fn command(&self) -> u16 {
            u16::from_le_bytes([self.cfg[4], self.cfg[5]])
        }
    }

    impl PciDevice for Fake {
        fn read_config(&mut self, offset: u16, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                let o = usize::from(offset) + i;
                *b = if (0x10..0x14).contains(&o) {
                    let v = if self.sizing {
                        !0xfffu32
                    } else {
                        self.bar_addr as u32
                    };
                    (v >> ((o - 0x10) * 8)) as u8
                } else {
                    self.cfg.get(o).copied().unwrap_or(0)
                };
            }
        }
        fn write_config(&mut self, offset: u16, data: &[u8]) {
            if offset == 0x10 && data.len() == 4 {
                let v = u32::from_le_bytes(data.try_into().unwrap());
                self.sizing = v == u32::MAX;
                if !self.sizing {
                    self.bar_addr = u64::from(v & !0xfff);
                }
                return;
            }
            for (i, b) in data.iter().enumerate() {
                if let Some(c) = self.cfg.get_mut(usize::from(offset) + i) {
                    *c = *b;
                }
            }
        }
        fn bars(&self) -> Vec<BarInfo> {
            vec![BarInfo {
                index: 0,
                kind: BarKind::Memory32,
                address: self.bar_addr,
                size: 4096,
                decoding: self.command() & CMD_MEM != 0 && !self.sizing && self.bar_addr != 0,
            }]
        }
        fn read_bar(&mut self, _bar: u8, offset: u64, data: &mut [u8]) {
            let o = offset as usize;
            data.copy_from_slice(&self.mem[o..o + data.len()]);
        }
        fn write_bar(&mut self, _bar: u8, offset: u64, data: &[u8]) {
            let o = offset as usize;
            self.mem[o..o + data.len()].copy_from_slice(data);
        }
        fn intx_asserted(&self) -> bool {
            false
        }
    }

    const BASE: u64 = 0xc000_0000;

    fn setup() -> (PciConfigPorts, PciMmioWindow, Arc<Mutex<Fake>>) {
        let mut root = PciRoot::new(BASE, 0x1000_0000).unwrap();
        root.add_device(0, Arc::new(Mutex::new(HostBridge)), 0)
            .unwrap();
        let fake = Arc::new(Mutex::new(Fake::new()));
        root.add_device(1, fake.clone(), 16).unwrap();
        let root = Arc::new(Mutex::new(root));
        (PciConfigPorts(root.clone()), PciMmioWindow(root), fake)
    }

    fn cf8(slot: u32, reg: u32) -> [u8; 4] {
        (CONFIG_ENABLE | slot << 11 | reg).to_le_bytes()
    }

    fn read32(p: &mut PciConfigPorts, slot: u32, reg: u32) -> u32 {
        p.write(0, &cf8(slot, reg));
        let mut d = [0u8; 4];
        p.read(4, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn config_mechanism_one_reads_ids_and_absent_slots() {
        let (mut ports, _, _) = setup();
        assert_eq!(read32(&mut ports, 0, 0), 0x0008_1b36);
        assert_eq!(read32(&mut ports, 1, 0), 0xabcd_1234);
        assert_eq!(read32(&mut ports, 2, 0), u32::MAX, "empty slot");
        // Disabled address, other bus, other function: all ones.
        ports.write(0, &(1u32 << 11).to_le_bytes());
        let mut d = [0u8; 4];
        ports.read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
        ports.write(0, &(CONFIG_ENABLE | 1 << 16 | 1 << 11).to_le_bytes());
        ports.read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
        ports.write(0, &(CONFIG_ENABLE | 1 << 11 | 1 << 8).to_le_bytes());
        ports.read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
        // Sub-dword reads at 0xcfe.
        ports.write(0, &cf8(1, 0));
        let mut w = [0u8; 2];
        ports.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0xabcd);
        // CONFIG_ADDRESS reads back; byte writes to it are ignored.
        ports.write(0, &[0x12]);
        let mut a = [0u8; 4];
        ports.read(0, &mut a);
        assert_eq!(a, cf8(1, 0));
    }

    #[test]
    fn firmware_placement_and_mmio_routing() {
        let (mut ports, mut window, fake) = setup();
        let bar = read32(&mut ports, 1, 0x10);
        assert_eq!(u64::from(bar), BASE, "first BAR at the window base");
        assert_eq!(read32(&mut ports, 1, 0x3c) & 0xff, 16, "interrupt line");
        assert_eq!(read32(&mut ports, 1, 4) & 0xffff, u32::from(CMD_MEM));
        window.write(0x10, &[1, 2, 3, 4]);
        assert_eq!(&fake.lock().unwrap().mem[0x10..0x14], &[1, 2, 3, 4]);
        let mut d = [0u8; 2];
        window.read(0x11, &mut d);
        assert_eq!(d, [2, 3]);
        // Past the BAR: nothing decodes it.
        window.read(0x1000, &mut d);
        assert_eq!(d, [0xff, 0xff]);
        // Straddling the BAR's end is refused, not split.
        let mut q = [0u8; 4];
        window.read(0xffe, &mut q);
        assert_eq!(q, [0xff; 4]);
    }

    #[test]
    fn guest_relocation_and_decode_off_are_honoured() {
        let (mut ports, mut window, fake) = setup();
        // Size the BAR, then move it 1 MiB up.
        ports.write(0, &cf8(1, 0x10));
        ports.write(4, &u32::MAX.to_le_bytes());
        let mut d = [0u8; 4];
        ports.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), !0xfff);
        window.write(0, &[9]);
        assert_eq!(fake.lock().unwrap().mem[0], 0, "no decode while sizing");
        ports.write(4, &((BASE + 0x10_0000) as u32).to_le_bytes());
        window.write(0x10_0000, &[7]);
        assert_eq!(fake.lock().unwrap().mem[0], 7);
        window.write(0, &[8]);
        assert_eq!(
            fake.lock().unwrap().mem[0],
            7,
            "old address no longer decodes"
        );
        // Memory decoding off in Command: nothing decodes.
        ports.write(0, &cf8(1, 4));
        ports.write(4, &[0, 0]);
        window.write(0x10_0000, &[5]);
        assert_eq!(fake.lock().unwrap().mem[0], 7);
    }

    #[test]
    fn slots_are_checked() {
        let mut root = PciRoot::new(BASE, 0x10_0000).unwrap();
        root.add_device(3, Arc::new(Mutex::new(HostBridge)), 0)
            .unwrap();
        assert!(matches!(
            root.add_device(3, Arc::new(Mutex::new(HostBridge)), 0),
            Err(PciError::SlotTaken(3))
        ));
        assert!(matches!(
            root.add_device(32, Arc::new(Mutex::new(HostBridge)), 0),
            Err(PciError::SlotTaken(32))
        ));
    }

    #[test]
    fn a_full_window_is_an_error() {
        let mut root = PciRoot::new(BASE, 0x1000).unwrap();
        root.add_device(1, Arc::new(Mutex::new(Fake::new())), 16)
            .unwrap();
        assert!(matches!(
            root.add_device(2, Arc::new(Mutex::new(Fake::new())), 16),
            Err(PciError::NoRoom { bar: 0, .. })
        ));
    }
}
