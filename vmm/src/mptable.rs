//! The Intel MultiProcessor Specification 1.4 table: how a guest without ACPI
//! finds its CPUs, its IOAPIC, the ISA interrupts and the PCI interrupt
//! routing.
//!
//! Written at [`EBDA_START`] (Linux scans the last KiB of base memory): the
//! 16-byte floating pointer, then the configuration table with processor,
//! bus (PCI = 0, ISA = 1), IOAPIC, I/O interrupt and local interrupt entries.

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::memory::{EBDA_START, IOAPIC_ADDR, LAPIC_ADDR, LOW_RAM_END};

/// Bus id of the PCI bus.
pub const BUS_PCI: u8 = 0;
/// Bus id of the ISA bus.
pub const BUS_ISA: u8 = 1;
/// Number of IOAPIC pins KVM's in-kernel IOAPIC has.
pub const IOAPIC_PINS: u8 = 24;
/// First IOAPIC pin free for PCI INTx (0-15 are the ISA IRQs).
pub const PCI_IRQ_BASE: u8 = 16;
/// Local APIC version reported for each CPU.
const LAPIC_VERSION: u8 = 0x14;
/// IOAPIC version (KVM's is 0x11).
const IOAPIC_VERSION: u8 = 0x11;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IOINT: u8 = 3;
const ENTRY_LOCALINT: u8 = 4;

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

/// Polarity and trigger "conform to the bus" (ISA: edge, active high).
const IRQ_FLAGS_CONFORM: u16 = 0;
/// Active high, level triggered (PCI INTx as the VMM delivers it: the irqfd
/// raises the IOAPIC pin to 1 while asserted, as SeaBIOS's tables also say).
const IRQ_FLAGS_PCI: u16 = 0b01 | (0b11 << 2);

/// The APIC addresses as the table stores them (both below 4 GiB).
#[allow(clippy::cast_possible_truncation)] // 0xfee0_0000 fits
const LAPIC_ADDR_32: u32 = LAPIC_ADDR as u32;
#[allow(clippy::cast_possible_truncation)] // 0xfec0_0000 fits
const IOAPIC_ADDR_32: u32 = IOAPIC_ADDR as u32;

/// Errors building or writing the table.
#[derive(Debug, Error)]
pub enum MptableError {
    /// Too many CPUs for the APIC ids below the IOAPIC's.
    #[error("{0} vCPUs do not fit in an MP table (1..=254)")]
    TooManyCpus(u8),
    /// An interrupt route names a pin the IOAPIC does not have.
    #[error("PCI interrupt route to IOAPIC pin {0} (the IOAPIC has {IOAPIC_PINS})")]
    BadPin(u8),
    /// The table does not fit below 640 KiB.
    #[error("the MP table ({0} bytes) does not fit in the EBDA")]
    TooLarge(usize),
    /// Guest memory write failed.
    #[error("cannot write the MP table to guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// One PCI INTx route: device `slot`'s pin `pin` (1 = INTA .. 4 = INTD) is
/// wired to IOAPIC pin `ioapic_pin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIrqRoute {
    pub slot: u8,
    pub pin: u8,
    pub ioapic_pin: u8,
}

/// The byte that makes `bytes` sum to zero (mod 256), as the MP spec and
/// other firmware tables (pirq.rs) want.
pub(crate) fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_sub(*b))
}

fn push_u16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn push_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// An I/O or local interrupt entry: `src` = (bus id, bus IRQ), `dst` =
/// (APIC id, pin).
fn int_entry(v: &mut Vec<u8>, kind: u8, int_type: u8, flags: u16, src: (u8, u8), dst: (u8, u8)) {
    v.push(kind);
    v.push(int_type);
    push_u16(v, flags);
    v.push(src.0);
    v.push(src.1);
    v.push(dst.0);
    v.push(dst.1);
}

/// The IOAPIC's APIC id: right after the CPUs'.
pub fn ioapic_id(ncpus: u8) -> u8 {
    ncpus
}

/// Build the floating pointer and configuration table as they will sit at
/// `addr` in guest memory.
pub fn build(addr: u64, ncpus: u8, pci_routes: &[PciIrqRoute]) -> Result<Vec<u8>, MptableError> {
    if ncpus == 0 || ncpus == 255 {
        return Err(MptableError::TooManyCpus(ncpus));
    }
    if let Some(r) = pci_routes.iter().find(|r| r.ioapic_pin >= IOAPIC_PINS) {
        return Err(MptableError::BadPin(r.ioapic_pin));
    }
    let ioapic = ioapic_id(ncpus);

    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..ncpus {
        entries.push(ENTRY_PROCESSOR);
        entries.push(cpu); // local APIC id
        entries.push(LAPIC_VERSION);
        entries.push(if cpu == 0 { 0b11 } else { 0b01 }); // enabled (| BSP)
        push_u32(&mut entries, 0x600); // family 6
        push_u32(&mut entries, (1 << 0) | (1 << 9)); // FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    for (id, name) in [(BUS_PCI, b"PCI   "), (BUS_ISA, b"ISA   ")] {
        entries.push(ENTRY_BUS);
        entries.push(id);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.push(ENTRY_IOAPIC);
    entries.push(ioapic);
    entries.push(IOAPIC_VERSION);
    entries.push(1); // enabled
    push_u32(&mut entries, IOAPIC_ADDR_32);
    count += 1;
    // ISA IRQ n -> IOAPIC pin n (KVM's default GSI routing; the PIT is GSI 0).
    for irq in 0..16u8 {
        int_entry(
            &mut entries,
            ENTRY_IOINT,
            INT_TYPE_INT,
            IRQ_FLAGS_CONFORM,
            (BUS_ISA, irq),
            (ioapic, irq),
        );
        count += 1;
    }
    for r in pci_routes {
        // Source bus IRQ for PCI: device number in bits 2-6, pin (0 = INTA) in 0-1.
        let bus_irq = ((r.slot & 0x1f) << 2) | (r.pin.wrapping_sub(1) & 3);
        int_entry(
            &mut entries,
            ENTRY_IOINT,
            INT_TYPE_INT,
            IRQ_FLAGS_PCI,
            (BUS_PCI, bus_irq),
            (ioapic, r.ioapic_pin),
        );
        count += 1;
    }
    // LINT0 = ExtINT (the PIC, virtual wire mode), LINT1 = NMI, on every CPU.
    int_entry(
        &mut entries,
        ENTRY_LOCALINT,
        INT_TYPE_EXTINT,
        IRQ_FLAGS_CONFORM,
        (BUS_ISA, 0),
        (0xff, 0),
    );
    int_entry(
        &mut entries,
        ENTRY_LOCALINT,
        INT_TYPE_NMI,
        IRQ_FLAGS_CONFORM,
        (BUS_ISA, 0),
        (0xff, 1),
    );
    count += 2;

    const FLOATING_LEN: usize = 16;
    const HEADER_LEN: usize = 44;
    let table_addr = addr + FLOATING_LEN as u64;
    let table_len = HEADER_LEN + entries.len();

    let mut header = Vec::with_capacity(table_len);
    header.extend_from_slice(b"PCMP");
    push_u16(
        &mut header,
        u16::try_from(table_len).map_err(|_| MptableError::TooLarge(table_len))?,
    );
    header.push(4); // spec revision 1.4
    header.push(0); // checksum, below
    header.extend_from_slice(b"DMALAB  ");
    header.extend_from_slice(b"DMALAB VMM  ");
    push_u32(&mut header, 0); // OEM table
    push_u16(&mut header, 0);
    push_u16(&mut header, count);
    push_u32(&mut header, LAPIC_ADDR_32);
    push_u16(&mut header, 0); // extended table
    header.push(0);
    header.push(0);
    debug_assert_eq!(header.len(), HEADER_LEN);
    header.extend_from_slice(&entries);
    header[7] = checksum(&header);

    let mut out = Vec::with_capacity(FLOATING_LEN + table_len);
    out.extend_from_slice(b"_MP_");
    // The table sits in the EBDA, below 640 KiB.
    push_u32(
        &mut out,
        u32::try_from(table_addr).map_err(|_| MptableError::TooLarge(table_len))?,
    );
    out.push(1); // length in 16-byte units
    out.push(4); // spec revision
    out.push(0); // checksum, below
    out.extend_from_slice(&[0; 5]); // feature bytes: table present, no IMCR
    out[10] = checksum(&out);
    out.extend_from_slice(&header);

    if addr + out.len() as u64 > LOW_RAM_END {
        return Err(MptableError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Build and write the table at [`EBDA_START`].
pub fn write(
    mem: &GuestMemoryMmap,
    ncpus: u8,
    pci_routes: &[PciIrqRoute],
) -> Result<(), MptableError> {
    let bytes = build(EBDA_START, ncpus, pci_routes)?;
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(MptableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, MIB};

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    /// Walk the entries: (type, bytes) pairs.
    fn entries(t: &[u8]) -> Vec<(u8, &[u8])> {
        let mut v = Vec::new();
        let mut at = 16 + 44;
        while at < t.len() {
            let len = if t[at] == ENTRY_PROCESSOR { 20 } else { 8 };
            v.push((t[at], &t[at..at + len]));
            at += len;
        }
        v
    }

    #[test]
    fn checksums_and_pointers() {
        let t = build(EBDA_START, 1, &[]).unwrap();
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0);
        let table = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
        assert_eq!(table, EBDA_START + 16);
        assert_eq!(&t[16..20], b"PCMP");
        let len = u16::from_le_bytes([t[20], t[21]]) as usize;
        assert_eq!(len, t.len() - 16);
        assert_eq!(sum(&t[16..]), 0);
        let count = u16::from_le_bytes([t[16 + 34], t[16 + 35]]) as usize;
        assert_eq!(count, entries(&t).len());
        assert_eq!(
            u32::from_le_bytes(t[16 + 36..16 + 40].try_into().unwrap()) as u64,
            LAPIC_ADDR
        );
    }

    #[test]
    fn cpus_ioapic_and_isa_irqs() {
        let t = build(EBDA_START, 2, &[]).unwrap();
        let e = entries(&t);
        let cpus: Vec<_> = e.iter().filter(|(k, _)| *k == ENTRY_PROCESSOR).collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].1[3], 0b11, "BSP enabled");
        assert_eq!(cpus[1].1[1], 1, "APIC id");
        let ioapic: Vec<_> = e.iter().filter(|(k, _)| *k == ENTRY_IOAPIC).collect();
        assert_eq!(ioapic.len(), 1);
        assert_eq!(ioapic[0].1[1], 2);
        assert_eq!(
            u32::from_le_bytes(ioapic[0].1[4..8].try_into().unwrap()) as u64,
            IOAPIC_ADDR
        );
        let isa: Vec<_> = e
            .iter()
            .filter(|(k, b)| *k == ENTRY_IOINT && b[4] == BUS_ISA)
            .collect();
        assert_eq!(isa.len(), 16);
        // COM1: ISA IRQ 4 -> pin 4.
        assert!(isa.iter().any(|(_, b)| b[5] == 4 && b[7] == 4));
        let lint: Vec<_> = e.iter().filter(|(k, _)| *k == ENTRY_LOCALINT).collect();
        assert_eq!(lint.len(), 2);
    }

    #[test]
    fn pci_routes() {
        let r = PciIrqRoute {
            slot: 1,
            pin: 1,
            ioapic_pin: 16,
        };
        let t = build(EBDA_START, 1, &[r]).unwrap();
        let pci: Vec<_> = entries(&t)
            .into_iter()
            .filter(|(k, b)| *k == ENTRY_IOINT && b[4] == BUS_PCI)
            .collect();
        assert_eq!(pci.len(), 1);
        let b = pci[0].1;
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), IRQ_FLAGS_PCI);
        assert_eq!(b[5], 1 << 2, "slot 1, INTA");
        assert_eq!(b[7], 16);
        assert!(build(
            EBDA_START,
            1,
            &[PciIrqRoute {
                ioapic_pin: 24,
                ..r
            }]
        )
        .is_err());
    }

    #[test]
    fn bad_cpu_counts() {
        assert!(build(EBDA_START, 0, &[]).is_err());
        assert!(build(EBDA_START, 255, &[]).is_err());
        // The EBDA's kilobyte holds 32 CPUs, not 64.
        assert!(build(EBDA_START, 32, &[]).is_ok());
        assert!(matches!(
            build(EBDA_START, 64, &[]),
            Err(MptableError::TooLarge(_))
        ));
    }

    #[test]
    fn writes_to_guest_memory() {
        let mem = create_guest_memory(16 * MIB).unwrap();
        write(&mem, 1, &[]).unwrap();
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(EBDA_START)).unwrap();
        assert_eq!(&sig, b"_MP_");
    }
}
