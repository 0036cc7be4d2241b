//! The CPU state a kernel is entered with: boot GDT, identity page tables, the
//! entry trampoline, and the registers for the two entry protocols.
//!
//! * PVH (ELF `vmlinux` with a `XEN_ELFNOTE_PHYS32_ENTRY` note): 32-bit
//!   protected mode, paging off, flat segments, EBX = `hvm_start_info`.
//! * 64-bit Linux boot protocol (`bzImage`, or an ELF without the note): long
//!   mode, identity-mapped page tables, `__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18,
//!   RSI = zero page.
//!
//! In both cases the vCPU first runs a 7-byte trampoline at
//! [`TRAMPOLINE_ADDR`]: `out 0xf5, al` (AL = [`FIRST_INSN_MARK`]) then
//! `jmp rel32` to the kernel entry. The `out` exits to the VMM, which is how
//! "time to first guest instruction" is measured exactly. Both instructions
//! encode the same way in 32- and 64-bit mode and touch no register the entry
//! protocols define.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::debugport::{FIRST_INSN_MARK, TIMER_PORT};
use crate::memory::{BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR, PML4_ADDR, TRAMPOLINE_ADDR};

/// Errors writing boot structures.
#[derive(Debug, Error)]
pub enum BootError {
    /// Guest memory write failed (memory too small for the boot structures).
    #[error("cannot write the {what} to guest memory: {source}")]
    Write {
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    /// The kernel entry is too far from the trampoline for a `jmp rel32`.
    #[error("kernel entry {0:#x} is out of reach of the entry trampoline")]
    EntryOutOfReach(u64),
}

/// How the kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryProtocol {
    /// PVH: 32-bit protected mode, EBX = `hvm_start_info` address.
    Pvh { start_info: u64 },
    /// 64-bit Linux boot protocol: long mode, RSI = zero page address.
    Linux64 { zero_page: u64 },
}

/// Where and how the vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    /// The kernel's entry address (physical).
    pub kernel_entry: u64,
    pub protocol: EntryProtocol,
}

/// GDT selector of the 64-bit code segment (Linux's `__BOOT_CS`).
pub const BOOT_CS64: u16 = 0x10;
/// GDT selector of the data segment (Linux's `__BOOT_DS`).
pub const BOOT_DS: u16 = 0x18;
/// GDT selector of the TSS.
pub const BOOT_TSS: u16 = 0x20;
/// GDT selector of the 32-bit code segment (PVH entry).
pub const BOOT_CS32: u16 = 0x28;

/// [`TIMER_PORT`] as the imm8 of `out imm8, al` (checked at compile time).
#[allow(clippy::cast_possible_truncation)]
const TIMER_PORT_IMM8: u8 = {
    assert!(TIMER_PORT < 0x100);
    TIMER_PORT as u8
};

/// The GDTR limit of [`GDT`] (checked at compile time).
#[allow(clippy::cast_possible_truncation)]
const GDT_LIMIT: u16 = {
    assert!(std::mem::size_of_val(&GDT) <= 0x1_0000);
    (std::mem::size_of_val(&GDT) - 1) as u16
};

/// The boot GDT: null, null, code64, data, TSS, code32.
pub const GDT: [u64; 6] = [
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff), // 0x10: code, 64-bit (L), present, DPL0
    gdt_entry(0xc093, 0, 0xfffff), // 0x18: data, 32-bit (D/B), 4 KiB granularity
    gdt_entry(0x808b, 0, 0xfffff), // 0x20: TSS (busy)
    gdt_entry(0xc09b, 0, 0xfffff), // 0x28: code, 32-bit (D/B)
];

/// Pack a GDT descriptor: `flags` holds the access byte in bits 0-7 and the
/// G/DB/L/AVL nibble in bits 12-15.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The `kvm_segment` (hidden part) matching GDT entry `entry` at `selector`.
pub fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    // The masks keep each field within its type: the casts drop zeros.
    #[allow(clippy::cast_possible_truncation)]
    let (base, raw_limit, g) = (
        (((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000)) as u32,
        ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32,
        ((entry >> 55) & 1) as u8,
    );
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: base as u64,
        limit,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    val: T,
    addr: u64,
    what: &'static str,
) -> Result<(), BootError> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|source| BootError::Write { what, source })
}

/// Write the GDT and an empty IDT.
pub fn write_gdt_idt(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    for (i, e) in GDT.iter().enumerate() {
        write(mem, *e, GDT_ADDR + 8 * i as u64, "boot GDT")?;
    }
    write(mem, 0u64, IDT_ADDR, "boot IDT")
}

/// Number of page directories: the identity map covers 4 GiB.
const IDENTITY_PDS: u64 = 4;

/// Identity-map the first 4 GiB with 2 MiB pages: PML4 at [`PML4_ADDR`],
/// PDPT right after it, then four page directories.
pub fn write_identity_page_tables(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    const PRESENT_RW: u64 = 0x3;
    const PAGE_SIZE_2M: u64 = 0x80;
    let pdpt = PML4_ADDR + 0x1000;
    let pd0 = pdpt + 0x1000;
    write(mem, pdpt | PRESENT_RW, PML4_ADDR, "page tables")?;
    for i in 0..IDENTITY_PDS {
        let pd = pd0 + i * 0x1000;
        write(mem, pd | PRESENT_RW, pdpt + 8 * i, "page tables")?;
        for j in 0..512u64 {
            let phys = (i << 30) | (j << 21);
            write(
                mem,
                phys | PRESENT_RW | PAGE_SIZE_2M,
                pd + 8 * j,
                "page tables",
            )?;
        }
    }
    Ok(())
}

/// The trampoline bytes for a jump to `entry`: `out TIMER_PORT, al; jmp entry`.
pub fn trampoline(entry: u64) -> Result<[u8; 7], BootError> {
    let next = TRAMPOLINE_ADDR + 7;
    // rel32 is the two's-complement distance: reinterpret the wrapped u64.
    let rel = i64::from_ne_bytes(entry.wrapping_sub(next).to_ne_bytes());
    let rel32 = i32::try_from(rel).map_err(|_| BootError::EntryOutOfReach(entry))?;
    let r = rel32.to_le_bytes();
    Ok([0xe6, TIMER_PORT_IMM8, 0xe9, r[0], r[1], r[2], r[3]])
}

/// Write the trampoline and boot tables the entry protocol needs.
pub fn write_entry_structures(mem: &GuestMemoryMmap, entry: &EntryPoint) -> Result<(), BootError> {
    write_gdt_idt(mem)?;
    if let EntryProtocol::Linux64 { .. } = entry.protocol {
        write_identity_page_tables(mem)?;
    }
    let code = trampoline(entry.kernel_entry)?;
    mem.write_slice(&code, GuestAddress(TRAMPOLINE_ADDR))
        .map_err(|source| BootError::Write {
            what: "entry trampoline",
            source,
        })
}

/// General-purpose registers at entry.
pub fn entry_regs(entry: &EntryPoint) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: TRAMPOLINE_ADDR,
        rax: u64::from(FIRST_INSN_MARK),
        ..Default::default()
    };
    match entry.protocol {
        EntryProtocol::Pvh { start_info } => {
            regs.rbx = start_info;
        }
        EntryProtocol::Linux64 { zero_page } => {
            regs.rsi = zero_page;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
        }
    }
    regs
}

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Special registers at entry, starting from the vCPU's current ones (which
/// carry KVM's APIC base and the like).
pub fn entry_sregs(entry: &EntryPoint, mut sregs: kvm_sregs) -> kvm_sregs {
    let (cs_sel, cs_entry) = match entry.protocol {
        EntryProtocol::Pvh { .. } => (BOOT_CS32, GDT[5]),
        EntryProtocol::Linux64 { .. } => (BOOT_CS64, GDT[2]),
    };
    let data = segment_from_gdt(GDT[3], BOOT_DS);
    sregs.cs = segment_from_gdt(cs_entry, cs_sel);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(GDT[4], BOOT_TSS);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = GDT_LIMIT;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    match entry.protocol {
        EntryProtocol::Pvh { .. } => {
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        EntryProtocol::Linux64 { .. } => {
            sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
            sregs.cr3 = PML4_ADDR;
            sregs.cr4 = CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
        }
    }
    sregs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, MIB};

    #[test]
    fn gdt_entries_decode() {
        let cs = segment_from_gdt(GDT[2], BOOT_CS64);
        assert_eq!((cs.l, cs.db, cs.g, cs.present, cs.s), (1, 0, 1, 1, 1));
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.limit, 0xffff_ffff);
        let cs32 = segment_from_gdt(GDT[5], BOOT_CS32);
        assert_eq!((cs32.l, cs32.db), (0, 1));
        let ds = segment_from_gdt(GDT[3], BOOT_DS);
        assert_eq!((ds.type_, ds.db, ds.base), (0x3, 1, 0));
        let tr = segment_from_gdt(GDT[4], BOOT_TSS);
        assert_eq!((tr.type_, tr.s), (0xb, 0));
        assert_eq!(segment_from_gdt(0, 0).unusable, 1);
        // Linux's boot protocol values for __BOOT_CS/__BOOT_DS.
        assert_eq!(GDT[2], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[3], 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn identity_map_translates() {
        let mem = create_guest_memory(64 * MIB).unwrap();
        write_identity_page_tables(&mem).unwrap();
        for addr in [0u64, 0x1234_5678, 0xfee0_0000, 0xffff_ffff] {
            assert_eq!(
                crate::fault::translate(&mem, PML4_ADDR, addr, true),
                Some(addr)
            );
        }
    }

    #[test]
    fn trampoline_jumps_to_the_entry() {
        let t = trampoline(0x16e_a430).unwrap();
        assert_eq!(&t[..3], &[0xe6, 0xf5, 0xe9]);
        let rel = i32::from_le_bytes([t[3], t[4], t[5], t[6]]);
        assert_eq!(
            i64::try_from(TRAMPOLINE_ADDR).unwrap() + 7 + i64::from(rel),
            0x16e_a430
        );
        assert!(trampoline(0x10_0000_0000).is_err());
    }

    #[test]
    fn entry_registers() {
        let pvh = EntryPoint {
            kernel_entry: 0x1000000,
            protocol: EntryProtocol::Pvh { start_info: 0x6000 },
        };
        let r = entry_regs(&pvh);
        assert_eq!((r.rip, r.rbx, r.rflags), (TRAMPOLINE_ADDR, 0x6000, 2));
        let s = entry_sregs(&pvh, kvm_sregs::default());
        assert_eq!((s.cr0 & CR0_PG, s.efer, s.cs.selector), (0, 0, BOOT_CS32));
        let l = EntryPoint {
            kernel_entry: 0x1000000,
            protocol: EntryProtocol::Linux64 { zero_page: 0x7000 },
        };
        assert_eq!(entry_regs(&l).rsi, 0x7000);
        let s = entry_sregs(&l, kvm_sregs::default());
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_eq!(
            (s.cr3, s.cs.selector, s.ds.selector),
            (PML4_ADDR, 0x10, 0x18)
        );
    }
}
