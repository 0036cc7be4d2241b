//! An empty PCI IRQ routing table (`$PIR`, the PCI BIOS "PIRQ" table) in the
//! BIOS area at [`PIRQ_ADDR`].
//!
//! Why a table that routes nothing: without one, Linux's `pcibios_irq_init`
//! (arch/x86/pci/irq.c) searches 0xF0000-0xFFFFF for it twice, the second
//! time byte by byte for the older `$IRT` format: 64 Ki calls, about 0.35 s
//! of emulated kernel on PVM hosts (`dmalab run --profile`). Firmware always
//! provides one (SeaBIOS does, so QEMU guests never pay for the search), and
//! the first, 16-byte-aligned probe finds this one at once. Interrupts are
//! routed by the MP table (mptable.rs) and the IOAPIC: Linux drops a PIRQ
//! table when the IOAPIC assigns PCI IRQs. The table names an interrupt
//! router at a function that never exists (00:1f.7), so Linux does not
//! look for one to program.

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the table goes: the first address Linux probes.
pub const PIRQ_ADDR: u64 = crate::memory::BIOS_AREA_START;
/// The header; no slot entries (16 bytes each) follow.
pub const PIRQ_LEN: usize = 32;
/// Devfn of the (absent) interrupt router: device 31, function 7.
const ROUTER_DEVFN: u8 = (31 << 3) | 7;
/// A vendor ID that is not 0, so Linux looks only at `ROUTER_DEVFN`.
const ROUTER_VENDOR: u16 = 0xffff;

/// Errors writing the table.
#[derive(Debug, Error)]
pub enum PirqError {
    #[error("cannot write the PCI IRQ routing table at {PIRQ_ADDR:#x}: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// The table's bytes, checksum included.
pub fn build() -> [u8; PIRQ_LEN] {
    let mut t = [0u8; PIRQ_LEN];
    t[0..4].copy_from_slice(b"$PIR");
    t[4..6].copy_from_slice(&0x0100u16.to_le_bytes()); // version 1.0
    t[6..8].copy_from_slice(&u16::try_from(PIRQ_LEN).unwrap_or(0).to_le_bytes());
    t[8] = 0; // router bus
    t[9] = ROUTER_DEVFN;
    // 10..12 exclusive IRQs: none.
    t[12..14].copy_from_slice(&ROUTER_VENDOR.to_le_bytes());
    t[PIRQ_LEN - 1] = crate::mptable::checksum(&t);
    t
}

/// Writes the table at [`PIRQ_ADDR`].
pub fn write(mem: &GuestMemoryMmap) -> Result<(), PirqError> {
    mem.write_slice(&build(), GuestAddress(PIRQ_ADDR))
        .map_err(PirqError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, MIB};

    #[test]
    fn the_table_passes_linux_checks() {
        // pirq_check_routing_table(): signature, version, size a multiple of
        // 16 and at least the header, bytes summing to 0; and it is found by
        // the 16-byte-stride probe of 0xF0000-0xFFFFF.
        let t = build();
        assert_eq!(&t[0..4], b"$PIR");
        assert_eq!(u16::from_le_bytes([t[4], t[5]]), 0x0100);
        let size = usize::from(u16::from_le_bytes([t[6], t[7]]));
        assert!(size.is_multiple_of(16) && size >= 32 && size == t.len());
        assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert!(PIRQ_ADDR.is_multiple_of(16) && (0xf0000..0x100000).contains(&PIRQ_ADDR));
        // A router that is not there, named by vendor (not 0: no search).
        assert_eq!((t[8], t[9]), (0, 0xff));
        assert_ne!(u16::from_le_bytes([t[12], t[13]]), 0);
        assert_eq!(u16::from_le_bytes([t[10], t[11]]), 0, "no exclusive IRQs");
    }

    #[test]
    fn writes_to_guest_memory() {
        let mem = create_guest_memory(16 * MIB).unwrap();
        write(&mem).unwrap();
        let mut back = [0u8; PIRQ_LEN];
        mem.read_slice(&mut back, GuestAddress(PIRQ_ADDR)).unwrap();
        assert_eq!(back, build());
    }
}
