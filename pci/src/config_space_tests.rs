use super::*;

fn r32(c: &ConfigSpace, off: u16) -> u32 {
    let mut b = [0; 4];
    c.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn w32(c: &mut ConfigSpace, off: u16, v: u32) -> Vec<BarReprogrammingParams> {
    c.write(off, &v.to_le_bytes())
}

fn two_bars() -> ConfigSpace {
    ConfigSpaceBuilder::new(0x1234, 0xabcd)
        .class(0x08, 0x80, 0)
        .revision(2)
        .interrupt_pin(PCI_INTERRUPT_PIN_INTA)
        .add_bar(0, BarKind::Memory32, 0x1000)
        .unwrap()
        .add_bar(1, BarKind::Memory32, 0x1_0000)
        .unwrap()
        .build()
}

#[test]
fn identity_is_read_only() {
    let mut c = two_bars();
    assert_eq!(r32(&c, 0), 0xabcd_1234);
    assert_eq!(r32(&c, 8), 0x0880_0002);
    assert_eq!(r32(&c, 0x3c), 0x0100);
    w32(&mut c, 0, 0);
    w32(&mut c, 8, 0);
    assert_eq!(r32(&c, 0), 0xabcd_1234);
    assert_eq!(r32(&c, 8), 0x0880_0002);
    // Interrupt line and cache line size are writable, the pin is not.
    w32(&mut c, 0x3c, 0xffff_ffff);
    assert_eq!(r32(&c, 0x3c), 0x01ff);
}

#[test]
fn memory_bar_sizing_and_moves_are_events() {
    let mut c = two_bars();
    // Sizing while decoding is off: no event, size readable.
    assert!(w32(&mut c, 0x10, u32::MAX).is_empty());
    assert_eq!(r32(&c, 0x10), 0xffff_f000);
    w32(&mut c, 0x14, u32::MAX);
    assert_eq!(r32(&c, 0x14), 0xffff_0000);
    assert!(w32(&mut c, 0x10, 0xc000_0000).is_empty());
    assert!(w32(&mut c, 0x14, 0xc001_0000).is_empty());
    // Memory decoding on: both BARs start decoding.
    let ev = c.write(PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[0],
        BarReprogrammingParams {
            bar: 0,
            kind: BarKind::Memory32,
            size: 0x1000,
            old_base: None,
            new_base: Some(0xc000_0000)
        }
    );
    assert_eq!(ev[1].new_base, Some(0xc001_0000));
    // A move by a 16-bit write of the upper half: one event, old and new.
    let ev = c.write(0x12, &0xe000u16.to_le_bytes());
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].bar, ev[0].old_base, ev[0].new_base),
        (0, Some(0xc000_0000), Some(0xe000_0000))
    );
    // Writing the same address again, or an unrelated register: nothing.
    assert!(w32(&mut c, 0x10, 0xe000_0000).is_empty());
    assert!(w32(&mut c, 0x3c, 5).is_empty());
    // Sizing a decoding BAR stops its decode, restoring it resumes.
    let ev = w32(&mut c, 0x14, u32::MAX);
    assert_eq!((ev[0].bar, ev[0].new_base), (1, None));
    let ev = w32(&mut c, 0x14, 0xc001_0000);
    assert_eq!((ev[0].old_base, ev[0].new_base), (None, Some(0xc001_0000)));
    // Decoding off: every decoding BAR reports it.
    assert_eq!(c.write(PCI_COMMAND, &[0]).len(), 2);
    assert!(c.bars().iter().all(|b| !b.decoding));
}

#[test]
fn unimplemented_bars_and_rom_read_zero() {
    let mut c = two_bars();
    w32(&mut c, 0x18, u32::MAX);
    w32(&mut c, PCI_ROM_ADDRESS, u32::MAX);
    assert_eq!(r32(&c, 0x18), 0);
    assert_eq!(r32(&c, PCI_ROM_ADDRESS), 0);
    assert_eq!(c.bars().len(), 2);
}

#[test]
fn sixty_four_bit_and_io_bars() {
    let mut c = ConfigSpaceBuilder::new(1, 2)
        .add_bar(0, BarKind::Memory64, 1 << 33)
        .unwrap()
        .add_bar(2, BarKind::Io, 0x20)
        .unwrap()
        .build();
    w32(&mut c, 0x10, u32::MAX);
    w32(&mut c, 0x14, u32::MAX);
    assert_eq!(
        r32(&c, 0x10),
        0x0000_0004,
        "64-bit type, address bits 31:4 hardwired"
    );
    assert_eq!(r32(&c, 0x14), 0xffff_fffe, "8 GiB");
    w32(&mut c, 0x18, u32::MAX);
    assert_eq!(r32(&c, 0x18), 0xffff_ffe1, "32 ports, I/O space");
    w32(&mut c, 0x10, 0);
    w32(&mut c, 0x14, 0x4);
    w32(&mut c, 0x18, 0x1000);
    let ev = c.write(
        PCI_COMMAND,
        &(PCI_COMMAND_MEMORY | PCI_COMMAND_IO).to_le_bytes(),
    );
    assert_eq!(ev.len(), 2);
    let bars = c.bars();
    assert_eq!(
        (
            bars[0].kind,
            bars[0].address,
            bars[0].size,
            bars[0].decoding
        ),
        (BarKind::Memory64, 0x4_0000_0000, 1 << 33, true)
    );
    assert_eq!(
        (
            bars[1].index,
            bars[1].kind,
            bars[1].address,
            bars[1].decoding
        ),
        (2, BarKind::Io, 0x1000, true)
    );
    // IO off leaves the memory BAR decoding.
    let ev = c.write(PCI_COMMAND, &PCI_COMMAND_MEMORY.to_le_bytes());
    assert_eq!((ev.len(), ev[0].kind), (1, BarKind::Io));
}

#[test]
fn bar_layout_mistakes_are_errors() {
    let b = || ConfigSpaceBuilder::new(1, 2);
    assert_eq!(
        b().add_bar(6, BarKind::Memory32, 16).unwrap_err(),
        ConfigSpaceError::BadBarIndex(6)
    );
    assert_eq!(
        b().add_bar(5, BarKind::Memory64, 16).unwrap_err(),
        ConfigSpaceError::BadBarIndex(5)
    );
    assert!(matches!(
        b().add_bar(0, BarKind::Memory32, 100).unwrap_err(),
        ConfigSpaceError::BadBarSize { .. }
    ));
    assert!(matches!(
        b().add_bar(0, BarKind::Memory32, 8).unwrap_err(),
        ConfigSpaceError::BadBarSize { .. }
    ));
    assert!(matches!(
        b().add_bar(0, BarKind::Memory32, 1 << 33).unwrap_err(),
        ConfigSpaceError::BarTooBig { .. }
    ));
    let with64 = b().add_bar(0, BarKind::Memory64, 16).unwrap();
    assert_eq!(
        with64
            .clone()
            .add_bar(1, BarKind::Memory32, 16)
            .unwrap_err(),
        ConfigSpaceError::BarInUse(1)
    );
    assert_eq!(
        with64.add_bar(0, BarKind::Io, 4).unwrap_err(),
        ConfigSpaceError::BarInUse(0)
    );
}

#[test]
fn msi_capability_layout_and_message() {
    let mut b = two_bars_builder();
    let at = b.add_capability(&Capability::msi_64bit()).unwrap();
    assert_eq!(at, 0x40);
    let mut c = b.build();
    assert_eq!(r32(&c, PCI_CAPABILITY_LIST) & 0xff, 0x40);
    assert_ne!(c.get16(PCI_STATUS) & PCI_STATUS_CAP_LIST, 0);
    assert_eq!(r32(&c, 0x40), 0x0080_0005);
    assert!(!c.msi_enabled());
    w32(&mut c, 0x44, 0xfee0_0003);
    w32(&mut c, 0x48, 0x1);
    w32(&mut c, 0x4c, 0xdead_0041);
    w32(&mut c, 0x40, u32::MAX);
    assert!(c.msi_enabled());
    assert_eq!(r32(&c, 0x40), 0x0081_0005, "only Enable is writable");
    assert_eq!(c.msi_message(), Some((0x1_fee0_0000, 0x41)));
}

fn two_bars_builder() -> ConfigSpaceBuilder {
    ConfigSpaceBuilder::new(0x1234, 0xabcd)
        .add_bar(0, BarKind::Memory32, 0x1000)
        .unwrap()
}

#[test]
fn capabilities_chain_and_run_out_of_room() {
    let mut b = ConfigSpaceBuilder::new(1, 2);
    let vendor = Capability {
        id: PCI_CAP_ID_VNDR,
        body: vec![3, 0xaa],
        writable: vec![],
    };
    let first = b.add_capability(&vendor).unwrap();
    let second = b.add_capability(&Capability::msi_64bit()).unwrap();
    assert_eq!((first, second), (0x40, 0x44), "dword aligned");
    let c = b.clone().build();
    let mut next = [0u8; 1];
    c.read(first + PCI_CAP_LIST_NEXT, &mut next);
    assert_eq!(u16::from(next[0]), second);
    c.read(second + PCI_CAP_LIST_NEXT, &mut next);
    assert_eq!(next[0], 0, "end of the list");
    assert!(!c.msi_enabled());
    let big = Capability {
        id: PCI_CAP_ID_VNDR,
        body: vec![0; 200],
        writable: vec![],
    };
    assert!(matches!(
        b.add_capability(&big),
        Err(ConfigSpaceError::NoRoomForCapability { .. })
    ));
    let bad = Capability {
        id: PCI_CAP_ID_VNDR,
        body: vec![0; 2],
        writable: vec![0; 3],
    };
    assert!(matches!(
        b.add_capability(&bad),
        Err(ConfigSpaceError::BadCapabilityMask { .. })
    ));
}

#[test]
fn interrupt_status_is_read_only_and_set_by_the_device() {
    let mut c = two_bars();
    c.set_interrupt_status(true);
    c.write(PCI_STATUS, &0u16.to_le_bytes());
    c.write(PCI_STATUS, &u16::MAX.to_le_bytes());
    assert_eq!(c.get16(PCI_STATUS), PCI_STATUS_INTERRUPT);
    c.set_interrupt_status(false);
    assert_eq!(c.get16(PCI_STATUS), 0);
}

#[test]
fn command_bits_and_out_of_range_accesses() {
    let mut c = two_bars();
    c.write(PCI_COMMAND, &u16::MAX.to_le_bytes());
    assert_eq!(c.command(), DEFAULT_COMMAND_WRITABLE);
    assert!(c.command_has(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    let mut b = [0xaa; 4];
    c.read(0xfe, &mut b);
    assert_eq!(b, [0; 4]);
    c.read(0xffff, &mut b);
    assert_eq!(b, [0; 4]);
    assert!(c.write(0xfff, &[1, 2, 3, 4]).is_empty());
    assert!(c.write(0xfe, &[1, 2, 3, 4]).is_empty());
    assert_eq!(c.get32(0xfe), 0);
}
