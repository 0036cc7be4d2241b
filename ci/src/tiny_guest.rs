//! Hand-made guests that need no Linux boot: a minimal PVH ELF around a few
//! bytes of 32-bit code (the VMM-start bench's guest, and the STARTs flood
//! of the trace-limit tests).
//!
//! PVH enters in 32-bit protected mode with paging off and flat segments,
//! so the code can reach the PCI config ports and a BAR's physical address
//! directly.

/// Where the code is loaded and entered.
pub const LOAD_ADDR: u32 = 0x10_0000;
/// Port the guest reports progress on: dmalab logs "guest checkpoint N"
/// (vmm/src/debugport.rs).
pub const CHECKPOINT_PORT: u8 = 0xf5;
/// The flood guest writes a checkpoint after this many STARTs.
pub const STARTS_PER_CHECKPOINT: u32 = 1024;

/// An x86-64 ELF with one PT_LOAD of `code` at [`LOAD_ADDR`] and a
/// `XEN_ELFNOTE_PHYS32_ENTRY` note pointing at it.
pub fn pvh_elf(code: &[u8]) -> Vec<u8> {
    let base = u64::from(LOAD_ADDR);
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // name size
    note.extend_from_slice(&4u32.to_le_bytes()); // desc size
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&LOAD_ADDR.to_le_bytes());
    let len = |n: usize| u64::try_from(n).expect("small");
    let code_off = 64 + 2 * 56u64;
    let note_off = code_off + len(code.len());
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // 64-bit
    v[5] = 1; // little-endian
    v[6] = 1; // version
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&base.to_le_bytes()); // entry
    v[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    v[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    v[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    v[56..58].copy_from_slice(&2u16.to_le_bytes()); // phnum
    let phdr = |kind: u32, off: u64, addr: u64, size: u64, memsz: u64| {
        let mut p = vec![0u8; 56];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&addr.to_le_bytes());
        p[24..32].copy_from_slice(&addr.to_le_bytes());
        p[32..40].copy_from_slice(&size.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p
    };
    v.extend(phdr(1, code_off, base, len(code.len()), 0x1000)); // PT_LOAD
    v.extend(phdr(4, note_off, 0, len(note.len()), len(note.len()))); // PT_NOTE
    v.extend_from_slice(code);
    v.extend_from_slice(&note);
    v
}

/// Code that writes status 0 to dmalab's exit port at once.
pub const EXIT_CODE: &[u8] = &[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe];

/// A hostile guest: finds dma24's BAR0 at 00:01.0, turns memory decoding
/// on and bus mastering off, then writes CMD_START `starts` times (0: about
/// 2^32, a flood until the VM is stopped). Every START is refused (ERR_BME_OFF)
/// and traced: exactly one record each. A checkpoint every
/// [`STARTS_PER_CHECKPOINT`] STARTs, then exit status 0.
pub fn flood_code(starts: u32) -> Vec<u8> {
    let mut c = Vec::new();
    // mov dx, 0xcf8; mov eax, 0x80000810 (00:01.0, BAR0); out dx, eax
    c.extend_from_slice(&[0x66, 0xba, 0xf8, 0x0c, 0xb8, 0x10, 0x08, 0x00, 0x80, 0xef]);
    // mov dx, 0xcfc; in eax, dx; and eax, ~0xf; mov ebx, eax
    c.extend_from_slice(&[0x66, 0xba, 0xfc, 0x0c, 0xed, 0x83, 0xe0, 0xf0, 0x89, 0xc3]);
    // mov dx, 0xcf8; mov eax, 0x80000804 (Command); out dx, eax
    c.extend_from_slice(&[0x66, 0xba, 0xf8, 0x0c, 0xb8, 0x04, 0x08, 0x00, 0x80, 0xef]);
    // mov dx, 0xcfc; mov ax, 2 (memory space on, bus master off); out dx, ax
    c.extend_from_slice(&[0x66, 0xba, 0xfc, 0x0c, 0x66, 0xb8, 0x02, 0x00, 0x66, 0xef]);
    // mov ecx, starts
    c.push(0xb9);
    c.extend_from_slice(&starts.to_le_bytes());
    // loop: mov dword [ebx + 0x30], CMD_START       (7 bytes)
    //       test ecx, 0xfff; jnz skip; mov al, 1; out 0xf5, al   (6 + 2 + 4)
    // skip: dec ecx; jnz loop                        (1 + 2)
    c.extend_from_slice(&[0xc7, 0x43, 0x30, 0x01, 0x00, 0x00, 0x00]);
    c.extend_from_slice(&[0xf7, 0xc1]);
    c.extend_from_slice(&(STARTS_PER_CHECKPOINT - 1).to_le_bytes());
    c.extend_from_slice(&[0x75, 0x04, 0xb0, 0x01, 0xe6, CHECKPOINT_PORT]);
    c.extend_from_slice(&[0x49, 0x75, 0xea]);
    // mov al, 0; out 0xf4, al; hlt; jmp $
    c.extend_from_slice(EXIT_CODE);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_layout() {
        let e = pvh_elf(EXIT_CODE);
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([e[56], e[57]]), 2);
        let code_off = 64 + 2 * 56;
        assert_eq!(&e[code_off..code_off + 4], &[0xb0, 0x00, 0xe6, 0xf4]);
        assert_eq!(&e[e.len() - 4..], &LOAD_ADDR.to_le_bytes());
        assert_eq!(&e[e.len() - 8..e.len() - 4], b"Xen\0");
    }

    #[test]
    fn flood_loop_jumps_back_to_its_start() {
        let c = flood_code(7);
        // The loop starts after 40 bytes of setup and the 5-byte mov ecx.
        let loop_start: usize = 45;
        assert_eq!(&c[loop_start..loop_start + 3], &[0xc7, 0x43, 0x30]);
        let jnz = c.len() - EXIT_CODE.len() - 2;
        assert_eq!(c[jnz], 0x75);
        let rel = i64::from(i8::from_le_bytes([c[jnz + 1]]));
        assert_eq!(i64::try_from(jnz + 2).unwrap() + rel, 45);
        assert_eq!(&c[41..45], &7u32.to_le_bytes());
    }
}
