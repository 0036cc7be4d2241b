//! VMM start-up measured with a minimal PVH kernel.

use std::path::Path;
use std::process::{Command, Stdio};

use super::console::log_number;
use super::guest::MEM_MIB;

/// A minimal PVH kernel: an x86-64 ELF with one PT_LOAD at 1 MiB and a
/// `XEN_ELFNOTE_PHYS32_ENTRY` note, entered in 32-bit protected mode, whose
/// code writes status 0 to dmalab's exit port (`mov al, 0; out 0xf4, al;
/// hlt`). Booting it measures the VMM's own start-up, without the copy of a
/// real kernel and initrd into guest RAM.
pub fn tiny_pvh_elf() -> Vec<u8> {
    const BASE32: u32 = 0x10_0000;
    const BASE: u64 = BASE32 as u64;
    let code: &[u8] = &[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe];
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // name size
    note.extend_from_slice(&4u32.to_le_bytes()); // desc size
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&BASE32.to_le_bytes());
    let code_off = 64 + 2 * 56u64;
    let note_off = code_off + code.len() as u64;
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // 64-bit
    v[5] = 1; // little-endian
    v[6] = 1; // version
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&BASE.to_le_bytes()); // entry
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
    v.extend(phdr(1, code_off, BASE, code.len() as u64, 0x1000)); // PT_LOAD
    v.extend(phdr(4, note_off, 0, note.len() as u64, note.len() as u64)); // PT_NOTE
    v.extend_from_slice(code);
    v.extend_from_slice(&note);
    v
}

/// VMM start to first guest instruction with the tiny kernel, `runs` times
/// (ms, from dmalab's log).
pub(super) fn first_insn_tiny(dmalab: &Path, dir: &Path, runs: usize) -> Result<Vec<f64>, String> {
    let elf = dir.join("tiny-pvh.elf");
    std::fs::write(&elf, tiny_pvh_elf()).map_err(|e| format!("{}: {e}", elf.display()))?;
    let mut out = Vec::new();
    for _ in 0..runs {
        let o = Command::new(dmalab)
            .args(["run", "--kernel"])
            .arg(&elf)
            .args([
                "--mem",
                &MEM_MIB.to_string(),
                "--no-stdin",
                "--log-level",
                "info",
            ])
            .args(["--timeout", "10"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", dmalab.display()))?;
        let log = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            return Err(format!(
                "dmalab with a minimal kernel ended with {}: {}",
                o.status,
                log.lines().last().unwrap_or("")
            ));
        }
        match log
            .lines()
            .find_map(|l| log_number(l, "first guest instruction at ", " ms"))
        {
            Some(ms) => out.push(ms),
            None => return Err("no 'first guest instruction' in dmalab's log".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_kernel_is_a_pvh_elf() {
        let e = tiny_pvh_elf();
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([e[56], e[57]]), 2); // two program headers
        let code_off = 64 + 2 * 56;
        assert_eq!(&e[code_off..code_off + 4], &[0xb0, 0x00, 0xe6, 0xf4]);
        // The note's descriptor is the 32-bit entry, 1 MiB.
        assert_eq!(&e[e.len() - 4..], &0x10_0000u32.to_le_bytes());
        assert_eq!(&e[e.len() - 8..e.len() - 4], b"Xen\0");
    }
}
