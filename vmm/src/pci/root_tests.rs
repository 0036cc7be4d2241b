use super::*;
use crate::pci::HostBridge;
use pci::regs::PCI_COMMAND_MEMORY as CMD_MEM;
use pci::{BarInfo, ConfigSpace, ConfigSpaceBuilder};

/// A function with one 4 KiB memory BAR (laid out with the PCI layer's
/// builder) whose memory echoes writes.
struct Fake {
    cfg: Mutex<ConfigSpace>,
    mem: Mutex<[u8; 4096]>,
}

impl Fake {
    fn new() -> Self {
        let cfg = ConfigSpaceBuilder::new(0x1234, 0xabcd)
            .add_bar(0, BarKind::Memory32, 4096)
            .unwrap()
            .build();
        Fake {
            cfg: Mutex::new(cfg),
            mem: Mutex::new([0; 4096]),
        }
    }
    fn mem0(&self) -> u8 {
        self.mem.lock().unwrap()[0]
    }
}

impl PciDevice for Fake {
    fn read_config(&self, offset: u16, data: &mut [u8]) {
        self.cfg.lock().unwrap().read(offset, data);
    }
    fn write_config(&self, offset: u16, data: &[u8]) -> Vec<BarReprogrammingParams> {
        self.cfg.lock().unwrap().write(offset, data)
    }
    fn bars(&self) -> Vec<BarInfo> {
        self.cfg.lock().unwrap().bars()
    }
    fn read_bar(&self, _bar: u8, offset: u64, data: &mut [u8]) {
        let o = usize::try_from(offset).unwrap();
        data.copy_from_slice(&self.mem.lock().unwrap()[o..o + data.len()]);
    }
    fn write_bar(&self, _bar: u8, offset: u64, data: &[u8]) {
        let o = usize::try_from(offset).unwrap();
        self.mem.lock().unwrap()[o..o + data.len()].copy_from_slice(data);
    }
}

const BASE: u64 = 0xc000_0000;

/// The root (as the port device), its window, and the fake at 00:01.0.
fn setup() -> (PciRoot, Arc<Mutex<PciMmioWindow>>, Arc<Fake>) {
    let mut root = PciRoot::new(BASE, 0x1000_0000).unwrap();
    root.add_device(0, Arc::new(HostBridge), 0).unwrap();
    let fake = Arc::new(Fake::new());
    root.add_device(1, fake.clone(), 16).unwrap();
    let window = root.mmio_window();
    (root, window, fake)
}

fn cf8(slot: u32, reg: u32) -> [u8; 4] {
    (CONFIG_ENABLE | slot << 11 | reg).to_le_bytes()
}

fn read32(p: &mut PciRoot, slot: u32, reg: u32) -> u32 {
    p.write(0, &cf8(slot, reg));
    let mut d = [0u8; 4];
    p.read(4, &mut d);
    u32::from_le_bytes(d)
}

fn wread(w: &Mutex<PciMmioWindow>, offset: u64, data: &mut [u8]) {
    w.lock().unwrap().read(offset, data);
}

fn wwrite(w: &Mutex<PciMmioWindow>, offset: u64, data: &[u8]) {
    w.lock().unwrap().write(offset, data);
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
    // A read running past 0xcff is refused.
    ports.read(7, &mut w);
    assert_eq!(w, [0xff; 2]);
    // CONFIG_ADDRESS reads back; byte writes to it are ignored.
    ports.write(0, &[0x12]);
    let mut a = [0u8; 4];
    ports.read(0, &mut a);
    assert_eq!(a, cf8(1, 0));
}

#[test]
fn firmware_placement_and_mmio_decode() {
    let (mut ports, window, fake) = setup();
    let bar = read32(&mut ports, 1, 0x10);
    assert_eq!(u64::from(bar), BASE, "first BAR at the window base");
    assert_eq!(read32(&mut ports, 1, 0x3c) & 0xff, 16, "interrupt line");
    assert_eq!(read32(&mut ports, 1, 4) & 0xffff, u32::from(CMD_MEM));
    assert_eq!(window.lock().unwrap().mapped_bars(), 1);
    wwrite(&window, 0x10, &[1, 2, 3, 4]);
    assert_eq!(&fake.mem.lock().unwrap()[0x10..0x14], &[1, 2, 3, 4]);
    let mut d = [0u8; 2];
    wread(&window, 0x11, &mut d);
    assert_eq!(d, [2, 3]);
    // Past the BAR: nothing decodes it.
    wread(&window, 0x1000, &mut d);
    assert_eq!(d, [0xff, 0xff]);
    // Straddling the BAR's end is refused, not split.
    let mut q = [0u8; 4];
    wread(&window, 0xffe, &mut q);
    assert_eq!(q, [0xff; 4]);
}

#[test]
fn guest_relocation_and_decode_off_are_honoured() {
    let (mut ports, window, fake) = setup();
    // Size the BAR, then move it 1 MiB up.
    ports.write(0, &cf8(1, 0x10));
    ports.write(4, &u32::MAX.to_le_bytes());
    let mut d = [0u8; 4];
    ports.read(4, &mut d);
    assert_eq!(u32::from_le_bytes(d), !0xfff);
    wwrite(&window, 0, &[9]);
    assert_eq!(fake.mem0(), 0, "no decode while sizing");
    ports.write(4, &u32::try_from(BASE + 0x10_0000).unwrap().to_le_bytes());
    wwrite(&window, 0x10_0000, &[7]);
    assert_eq!(fake.mem0(), 7);
    wwrite(&window, 0, &[8]);
    assert_eq!(fake.mem0(), 7, "old address no longer decodes");
    // Memory decoding off in Command: nothing decodes.
    ports.write(0, &cf8(1, 4));
    ports.write(4, &[0, 0]);
    assert_eq!(window.lock().unwrap().mapped_bars(), 0);
    wwrite(&window, 0x10_0000, &[5]);
    assert_eq!(fake.mem0(), 7);
    // And on again: the BAR decodes where the guest left it.
    ports.write(4, &CMD_MEM.to_le_bytes());
    wwrite(&window, 0x10_0000, &[6]);
    assert_eq!(fake.mem0(), 6);
}

#[test]
fn config_writes_that_move_nothing_leave_the_map_alone() {
    let (mut ports, window, _) = setup();
    // Interrupt line, then a rewrite of the same BAR address.
    ports.write(0, &cf8(1, 0x3c));
    ports.write(4, &[5]);
    ports.write(0, &cf8(1, 0x10));
    ports.write(4, &u32::try_from(BASE).unwrap().to_le_bytes());
    assert_eq!(window.lock().unwrap().mapped_bars(), 1);
    let mut d = [0u8; 1];
    wread(&window, 0, &mut d);
    assert_eq!(d, [0]);
}

#[test]
fn slots_are_checked() {
    let mut root = PciRoot::new(BASE, 0x10_0000).unwrap();
    root.add_device(3, Arc::new(HostBridge), 0).unwrap();
    assert!(matches!(
        root.add_device(3, Arc::new(HostBridge), 0),
        Err(PciError::SlotTaken(3))
    ));
    assert!(matches!(
        root.add_device(32, Arc::new(HostBridge), 0),
        Err(PciError::SlotTaken(32))
    ));
}

#[test]
fn a_full_window_is_an_error() {
    let mut root = PciRoot::new(BASE, 0x1000).unwrap();
    root.add_device(1, Arc::new(Fake::new()), 16).unwrap();
    assert!(matches!(
        root.add_device(2, Arc::new(Fake::new()), 16),
        Err(PciError::NoRoom { bar: 0, .. })
    ));
}
