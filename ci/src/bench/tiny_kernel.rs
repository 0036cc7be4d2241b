//! VMM start-up measured with a minimal PVH kernel.

use std::path::Path;
use std::process::{Command, Stdio};

use super::console::log_number;
use super::guest::MEM_MIB;

/// A minimal PVH kernel (`ci::tiny_guest`) whose code writes status 0 to
/// dmalab's exit port (`mov al, 0; out 0xf4, al; hlt`). Booting it measures
/// the VMM's own start-up, without the copy of a real kernel and initrd
/// into guest RAM.
pub fn tiny_pvh_elf() -> Vec<u8> {
    ci::tiny_guest::pvh_elf(ci::tiny_guest::EXIT_CODE)
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
