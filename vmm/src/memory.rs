//! The guest-physical memory layout, the e820 map, and guest RAM itself.
//!
//! ```text
//! 0x0000_0500  GDT (boot segments)            0x0000_0520  IDT (empty)
//! 0x0000_1000  entry trampoline (see boot.rs)
//! 0x0000_6000  PVH hvm_start_info, module list, memory map
//! 0x0000_7000  Linux zero page (boot_params)  0x0000_8ff0  boot stack
//! 0x0000_9000  identity page tables (PML4, PDPT, 4 PDs: 4 GiB in 2 MiB pages)
//! 0x0002_0000  kernel command line (2 KiB)
//! 0x0009_fc00  MP floating pointer + MP configuration table (EBDA, reserved)
//! 0x000a_0000  legacy VGA/BIOS hole (not RAM)
//! 0x000f_0000  BIOS area: PCI IRQ routing table header (pirq.rs, reserved)
//! 0x0010_0000  RAM: ZONE_DMA is [0, 16 MiB), all usable RAM but the EBDA
//! 0x0100_0000  vmlinux load address (CONFIG_PHYSICAL_START)
//! top of RAM below 2 GiB: initrd
//! 0xc000_0000  MMIO hole up to 4 GiB: PCI BAR window, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 0x1_0000_0000 RAM above the hole when --mem > 3 GiB
//! ```

use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// One MiB.
pub const MIB: u64 = 1 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;

/// Boot GDT.
pub const GDT_ADDR: u64 = 0x500;
/// Empty boot IDT.
pub const IDT_ADDR: u64 = 0x520;
/// The first instructions the vCPU runs (`out` to the boot-timer port, `jmp` to the kernel).
pub const TRAMPOLINE_ADDR: u64 = 0x1000;
/// PVH `hvm_start_info`.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// PVH module list (the initrd).
pub const PVH_MODLIST_ADDR: u64 = 0x6040;
/// PVH memory map.
pub const PVH_MEMMAP_ADDR: u64 = 0x6080;
/// Linux boot protocol zero page.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer (64-bit boot protocol).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// PML4 of the identity map; PDPT and PDs follow.
pub const PML4_ADDR: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// x86 COMMAND_LINE_SIZE, including the terminating NUL.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the EBDA, where the MP table lives (Linux scans 639 KiB-640 KiB).
pub const EBDA_START: u64 = 0x9fc00;
/// End of conventional memory.
pub const LOW_RAM_END: u64 = 0xa0000;
/// The legacy BIOS area (0xF0000-0xFFFFF, inside the reserved hole), where
/// Linux looks for firmware tables.
pub const BIOS_AREA_START: u64 = 0xf0000;
/// Start of "high" memory (the bzImage protected-mode code loads here).
pub const HIGHMEM_START: u64 = 0x100000;
/// ZONE_DMA's upper bound on x86-64: a 24-bit device can address below it.
pub const ZONE_DMA_END: u64 = 16 * MIB;
/// Start of the MMIO hole below 4 GiB.
pub const MMIO_HOLE_START: u64 = 3 * GIB;
/// End of the 32-bit address space.
pub const FOUR_GIB: u64 = 4 * GIB;
/// PCI memory BARs are assigned from here...
pub const PCI_MMIO_WINDOW_START: u64 = MMIO_HOLE_START;
/// ...up to here (exclusive): below the IOAPIC and LAPIC pages.
pub const PCI_MMIO_WINDOW_END: u64 = 0xfe00_0000;
/// IOAPIC registers.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Local APIC registers.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// KVM's TSS pages (three pages, in the hole, never RAM).
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// Highest address the initrd may end at (bzImage `initrd_addr_max` default).
pub const INITRD_ADDR_MAX: u64 = 2 * GIB;

const _: () =
    assert!(BOOT_STACK_POINTER > ZERO_PAGE_ADDR + 0x1000 && BOOT_STACK_POINTER < PML4_ADDR);
const _: () = assert!(PCI_MMIO_WINDOW_END <= IOAPIC_ADDR);
const _: () = assert!(KVM_TSS_ADDR > LAPIC_ADDR);

/// Smallest `--mem`, in MiB.
pub const MIN_MEM_MIB: u64 = 8;
/// Largest `--mem`, in MiB.
pub const MAX_MEM_MIB: u64 = 256 * 1024;

/// Errors from building guest memory.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// `--mem` outside the accepted range.
    #[error("guest memory of {0} MiB is outside {MIN_MEM_MIB}..={MAX_MEM_MIB} MiB")]
    BadSize(u64),
    /// mmap of guest RAM failed.
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Mmap {
        mib: u64,
        source: vm_memory::mmap::FromRangesError,
    },
}

/// An e820 entry type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Reserved (firmware tables, holes).
    Reserved = 2,
}

/// One e820 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Kind,
}

impl E820Entry {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// Validate a `--mem` value in MiB and return bytes.
pub fn mem_bytes(mib: u64) -> Result<u64, MemoryError> {
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib) {
        return Err(MemoryError::BadSize(mib));
    }
    Ok(mib * MIB)
}

/// The guest RAM ranges for `mem` bytes: up to 3 GiB below the MMIO hole,
/// the rest from 4 GiB.
pub fn ram_ranges(mem: u64) -> Vec<(GuestAddress, usize)> {
    // A size this host cannot address becomes usize::MAX, which the mmap
    // then refuses with an error (`mem_bytes` keeps sizes far below that).
    let len = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
    let low = mem.min(MMIO_HOLE_START);
    let mut v = vec![(GuestAddress(0), len(low))];
    if mem > MMIO_HOLE_START {
        v.push((GuestAddress(FOUR_GIB), len(mem - MMIO_HOLE_START)));
    }
    v
}

/// End of the RAM below the MMIO hole.
pub fn low_ram_end(mem: u64) -> u64 {
    mem.min(MMIO_HOLE_START)
}

/// The e820 map the guest gets. The first 16 MiB are usable RAM except the
/// EBDA (MP table) and the legacy hole, so ZONE_DMA exists in the guest.
pub fn e820_map(mem: u64) -> Vec<E820Entry> {
    let mut v = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820Kind::Ram,
        },
        E820Entry {
            addr: EBDA_START,
            size: LOW_RAM_END - EBDA_START,
            kind: E820Kind::Reserved,
        },
    ];
    let low_end = low_ram_end(mem);
    if low_end > HIGHMEM_START {
        v.push(E820Entry {
            addr: HIGHMEM_START,
            size: low_end - HIGHMEM_START,
            kind: E820Kind::Ram,
        });
    }
    if mem > MMIO_HOLE_START {
        v.push(E820Entry {
            addr: FOUR_GIB,
            size: mem - MMIO_HOLE_START,
            kind: E820Kind::Ram,
        });
    }
    v
}

/// Allocate guest RAM (anonymous, private mappings), asking for transparent
/// huge pages (fewer host page faults as the guest first touches its RAM).
pub fn create_guest_memory(mem: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let gm =
        GuestMemoryMmap::from_ranges(&ram_ranges(mem)).map_err(|source| MemoryError::Mmap {
            mib: mem / MIB,
            source,
        })?;
    if std::env::var_os("DMALAB_NO_THP").is_none() {
        for r in gm.iter() {
            let host = r.get_host_address(vm_memory::MemoryRegionAddress(0));
            if let (Ok(host), Ok(len)) = (host, usize::try_from(r.len())) {
                // SAFETY: `host` and `r.len()` describe a live anonymous
                // mapping owned by `gm`; MADV_HUGEPAGE only changes how the
                // kernel backs it, never its contents.
                let ret = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
                if ret != 0 {
                    log::debug!(
                        "madvise(MADV_HUGEPAGE) on guest RAM failed: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    }
    Ok(gm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn ram_covers(map: &[E820Entry], start: u64, end: u64) -> bool {
        let mut at = start;
        for e in map.iter().filter(|e| e.kind == E820Kind::Ram) {
            if e.addr <= at && e.end() > at {
                at = e.end();
            }
        }
        at >= end
    }

    #[test]
    fn mem_bounds() {
        assert!(mem_bytes(0).is_err());
        assert!(mem_bytes(MIN_MEM_MIB - 1).is_err());
        assert_eq!(mem_bytes(128).unwrap(), 128 * MIB);
        assert!(mem_bytes(MAX_MEM_MIB + 1).is_err());
    }

    #[test]
    fn zone_dma_is_usable_ram() {
        for mib in [32, 64, 128, 4096] {
            let map = e820_map(mib * MIB);
            assert!(ram_covers(&map, HIGHMEM_START, ZONE_DMA_END), "{mib} MiB");
            assert!(ram_covers(&map, 0, EBDA_START));
        }
    }

    #[test]
    fn e820_is_sorted_disjoint_and_accounts_for_all_ram() {
        for mib in [16, 128, 3072, 3073, 8192] {
            let mem = mib * MIB;
            let map = e820_map(mem);
            for w in map.windows(2) {
                assert!(w[0].end() <= w[1].addr, "{mib}: {:?}", map);
            }
            // RAM in e820 + the legacy hole [EBDA, 1 MiB) == guest memory size.
            let ram: u64 = map
                .iter()
                .filter(|e| e.kind == E820Kind::Ram)
                .map(|e| e.size)
                .sum();
            assert_eq!(ram + (HIGHMEM_START - EBDA_START), mem, "{mib} MiB");
            // Nothing in the MMIO hole.
            assert!(map
                .iter()
                .all(|e| e.end() <= MMIO_HOLE_START || e.addr >= FOUR_GIB));
        }
    }

    #[test]
    fn the_mp_table_area_is_reserved() {
        let map = e820_map(64 * MIB);
        assert!(map.iter().any(|e| e.kind == E820Kind::Reserved
            && e.addr <= EBDA_START
            && e.end() >= LOW_RAM_END));
    }

    #[test]
    fn ram_above_4g_when_large() {
        let r = ram_ranges(5 * GIB);
        assert_eq!(r.len(), 2);
        let size = |x: u64| usize::try_from(x).unwrap();
        assert_eq!(r[0], (GuestAddress(0), size(3 * GIB)));
        assert_eq!(r[1], (GuestAddress(FOUR_GIB), size(2 * GIB)));
        assert_eq!(ram_ranges(64 * MIB).len(), 1);
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let mut areas = [
            (GDT_ADDR, IDT_ADDR),
            (IDT_ADDR, IDT_ADDR + 8),
            (TRAMPOLINE_ADDR, TRAMPOLINE_ADDR + 0x100),
            (PVH_INFO_ADDR, PVH_MODLIST_ADDR),
            (PVH_MODLIST_ADDR, PVH_MEMMAP_ADDR),
            (PVH_MEMMAP_ADDR, ZERO_PAGE_ADDR),
            (ZERO_PAGE_ADDR, ZERO_PAGE_ADDR + 0x1000),
            (PML4_ADDR, PML4_ADDR + 6 * 0x1000),
            (CMDLINE_ADDR, CMDLINE_ADDR + CMDLINE_MAX_SIZE as u64),
            (EBDA_START, LOW_RAM_END),
        ];
        areas.sort();
        for w in areas.windows(2) {
            assert!(w[0].1 <= w[1].0, "{:x?}", w);
        }
    }

    #[test]
    fn guest_memory_is_usable() {
        let m = create_guest_memory(16 * MIB).unwrap();
        m.write_obj(0xdead_beefu32, GuestAddress(ZONE_DMA_END - 4))
            .unwrap();
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(ZONE_DMA_END - 4)).unwrap(),
            0xdead_beef
        );
        assert_eq!(m.last_addr(), GuestAddress(ZONE_DMA_END - 1));
    }
}
