//! What to do when KVM cannot run the guest (`KVM_EXIT_INTERNAL_ERROR`):
//! fetch the instruction at RIP, complete it when the VMM can (`int3` on PVM:
//! inject #BP), or produce a report with the bytes and registers so the run
//! ends with a diagnosis instead of a hang.

use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::cpuid::CpuPolicy;

/// x86 instructions are at most 15 bytes.
pub const MAX_INSN_LEN: usize = 15;

const PTE_PRESENT: u64 = 1;
const PTE_PS: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Translate a linear address through 4-level long-mode page tables rooted
/// at `cr3` (software walk over guest memory). With `paging` false the
/// address is physical already. `None` when unmapped.
pub fn translate(mem: &GuestMemoryMmap, cr3: u64, linear: u64, paging: bool) -> Option<u64> {
    if !paging {
        return Some(linear);
    }
    let mut table = cr3 & ADDR_MASK;
    for level in (0..4).rev() {
        let shift = 12 + 9 * level;
        let idx = (linear >> shift) & 0x1ff;
        let pte: u64 = mem.read_obj(GuestAddress(table + idx * 8)).ok()?;
        if pte & PTE_PRESENT == 0 {
            return None;
        }
        // 1 GiB (level 2) or 2 MiB (level 1) page.
        if (level == 1 || level == 2) && pte & PTE_PS != 0 {
            let page_mask = (1u64 << shift) - 1;
            return Some((pte & ADDR_MASK & !page_mask) | (linear & page_mask));
        }
        table = pte & ADDR_MASK;
    }
    Some(table | (linear & 0xfff))
}

/// Whether the vCPU has long-mode paging on (the only paged mode dmalab's
/// guests use; 32-bit paging is reported as unreadable).
fn long_mode_paging(sregs: &kvm_sregs) -> Option<bool> {
    const CR0_PG: u64 = 1 << 31;
    const EFER_LMA: u64 = 1 << 10;
    match (sregs.cr0 & CR0_PG != 0, sregs.efer & EFER_LMA != 0) {
        (false, _) => Some(false),
        (true, true) => Some(true),
        (true, false) => None,
    }
}

/// Read up to 15 instruction bytes at CS:RIP from guest memory. Stops at the
/// first byte it cannot translate or read.
pub fn fetch_insn(mem: &GuestMemoryMmap, regs: &kvm_regs, sregs: &kvm_sregs) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_INSN_LEN);
    let Some(paging) = long_mode_paging(sregs) else {
        return out;
    };
    let base = if paging { 0 } else { sregs.cs.base };
    for i in 0..MAX_INSN_LEN as u64 {
        let linear = base.wrapping_add(regs.rip).wrapping_add(i);
        let Some(phys) = translate(mem, sregs.cr3, linear, paging) else {
            break;
        };
        match mem.read_obj::<u8>(GuestAddress(phys)) {
            Ok(b) => out.push(b),
            Err(_) => break,
        }
    }
    out
}

/// An instruction the VMM can finish for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// `int3` (0xCC): advance RIP by one and inject #BP (vector 3), which is
    /// what the CPU would have done. PVM's emulator fails on it at CPL0 (the
    /// kernel's `int3_selftest()` runs it at every boot).
    Int3,
    /// `ud0`/`ud1`/`ud2` (0F FF, 0F B9, 0F 0B, after any prefixes): inject
    /// #UD (vector 6) with RIP left on the instruction, which is what the CPU
    /// does. Linux's BUG() and WARN() are built on them (7.x WARN uses
    /// `ud1`), and PVM's emulator fails on them at CPL0, so without this every
    /// kernel warning would kill the guest.
    InvalidOpcode,
    /// `fwait` (0x9B): advance RIP by one. It only raises #MF for a pending
    /// unmasked x87 exception, and Linux runs it at CPL0 only in
    /// `fpu__drop()` (a task exits with its FPU registers live), whose
    /// exception-table entry ignores exactly that #MF. PVM's emulator fails
    /// on it, so without this a guest died at a random process exit (seen
    /// 2026-12-01: 1 boot in 6, right after `Run /init`).
    Fwait,
}

/// Can the instruction starting with `bytes` be completed by the VMM?
pub fn completion_for(bytes: &[u8]) -> Option<Completion> {
    match bytes.first() {
        Some(0xcc) => return Some(Completion::Int3),
        Some(0x9b) => return Some(Completion::Fwait),
        _ => {}
    }
    // Operand/address-size, segment, lock/rep and REX prefixes.
    let body = {
        let skip = bytes
            .iter()
            .take_while(|b| {
                matches!(
                    b,
                    0x66 | 0x67
                        | 0x26
                        | 0x2e
                        | 0x36
                        | 0x3e
                        | 0x64
                        | 0x65
                        | 0xf0
                        | 0xf2
                        | 0xf3
                        | 0x40..=0x4f
                )
            })
            .count();
        &bytes[skip..]
    };
    match body {
        [0x0f, 0x0b | 0xb9 | 0xff, ..] => Some(Completion::InvalidOpcode),
        _ => None,
    }
}

/// A hint naming the instruction and the `clearcpuid=` flag that avoids it,
/// for the instructions the PVM emulator is known to fail on.
pub fn hint_for(bytes: &[u8], policy: CpuPolicy) -> Option<String> {
    // Skip legacy/REX prefixes.
    let mut i = 0;
    while i < bytes.len() && matches!(bytes[i], 0x66 | 0xf2 | 0xf3 | 0x40..=0x4f) {
        i += 1;
    }
    let rest = &bytes[i..];
    let prefix_f3 = bytes[..i].contains(&0xf3);
    let (insn, flag) = match rest {
        [0x0f, 0x01, 0xca, ..] => ("clac", "smap"),
        [0x0f, 0x01, 0xcb, ..] => ("stac", "smap"),
        [0x0f, 0xae, m, ..] if (m >> 3) & 7 == 5 && m >> 6 != 3 => ("xrstor", "xsave"),
        [0x0f, 0xae, m, ..] if (m >> 3) & 7 == 4 && m >> 6 != 3 => ("xsave", "xsave"),
        [0x0f, 0xae, m, ..] if (m >> 3) & 7 == 2 && m >> 6 != 3 => ("ldmxcsr", "ssse3 (any SIMD)"),
        [0x0f, 0xae, m, ..] if m >> 6 == 3 && prefix_f3 => ("rd/wr{fs,gs}base", "fsgsbase"),
        [0x0f, 0xb8, ..] if prefix_f3 => ("popcnt", "popcnt"),
        [0x0f, 0xc7, m, ..] if (m >> 3) & 7 == 6 && m >> 6 == 3 => ("rdrand", "rdrand"),
        [0x0f, 0xc7, m, ..] if (m >> 3) & 7 == 7 && m >> 6 == 3 && prefix_f3 => ("rdpid", "rdpid"),
        [0x0f, 0xc7, m, ..] if (m >> 3) & 7 == 7 && m >> 6 == 3 => ("rdseed", "rdseed"),
        [0x0f, 0x01, 0xd0, ..] => ("xgetbv", "xsave"),
        [0x0f, 0x01, 0xd1, ..] => ("xsetbv", "xsave"),
        _ => return None,
    };
    let advice = match policy {
        CpuPolicy::Host => format!(
            "this host's KVM cannot emulate `{insn}`: drop --cpu host (the default \
             hides it with clearcpuid={flag})"
        ),
        CpuPolicy::Filtered => format!(
            "this host's KVM cannot emulate `{insn}`; the guest kernel used it although \
             clearcpuid hides {flag}: check the guest's command line and config"
        ),
    };
    Some(advice)
}

/// A readable dump of an emulation failure.
pub fn report(
    suberror: u32,
    data: &[u64],
    insn: &[u8],
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    policy: CpuPolicy,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let kind = match suberror {
        1 => "emulation failure",
        2 => "simultaneous exceptions",
        3 => "delivery event",
        4 => "unexpected exit reason",
        _ => "unknown suberror",
    };
    let _ = writeln!(s, "KVM_EXIT_INTERNAL_ERROR suberror {suberror} ({kind})");
    let bytes: Vec<String> = insn.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(
        s,
        "  instruction at RIP {:#018x}: {}",
        regs.rip,
        if bytes.is_empty() {
            "<unreadable>".to_string()
        } else {
            bytes.join(" ")
        }
    );
    if let Some(h) = hint_for(insn, policy) {
        let _ = writeln!(s, "  hint: {h}");
    }
    if !data.is_empty() {
        let d: Vec<String> = data.iter().map(|x| format!("{x:#x}")).collect();
        let _ = writeln!(s, "  data: {}", d.join(" "));
    }
    let _ = writeln!(
        s,
        "  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}",
        regs.rax, regs.rbx, regs.rcx, regs.rdx
    );
    let _ = writeln!(
        s,
        "  rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}",
        regs.rsi, regs.rdi, regs.rbp, regs.rsp
    );
    let _ = writeln!(
        s,
        "  r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}",
        regs.r8, regs.r9, regs.r10, regs.r11
    );
    let _ = writeln!(
        s,
        "  r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}",
        regs.r12, regs.r13, regs.r14, regs.r15
    );
    let _ = writeln!(
        s,
        "  rip {:016x} rflags {:08x} cs {:04x} (dpl {} l {}) ss {:04x}",
        regs.rip, regs.rflags, sregs.cs.selector, sregs.cs.dpl, sregs.cs.l, sregs.ss.selector
    );
    let _ = write!(
        s,
        "  cr0 {:08x} cr2 {:016x} cr3 {:016x} cr4 {:08x} efer {:x}",
        sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, MIB};

    #[test]
    fn page_walk_4k_and_2m() {
        let mem = create_guest_memory(16 * MIB).unwrap();
        // PML4 at 0x10000 -> PDPT 0x11000 -> PD 0x12000 -> PT 0x13000
        let w = |a: u64, v: u64| mem.write_obj(v, GuestAddress(a)).unwrap();
        let va: u64 = 0xffff_ffff_8100_0000;
        let i4 = (va >> 39) & 0x1ff;
        let i3 = (va >> 30) & 0x1ff;
        let i2 = (va >> 21) & 0x1ff;
        w(0x10000 + i4 * 8, 0x11000 | 3);
        w(0x11000 + i3 * 8, 0x12000 | 3);
        w(0x12000 + i2 * 8, 0x20_0000 | 3 | PTE_PS); // 2 MiB page at 2 MiB
        w(0x12000 + (i2 + 1) * 8, 0x13000 | 3);
        w(0x13000 + 5 * 8, 0x5000 | 3);
        assert_eq!(translate(&mem, 0x10000, va + 0x1234, true), Some(0x20_1234));
        assert_eq!(
            translate(&mem, 0x10000, va + 0x20_0000 + 0x5abc, true),
            Some(0x5abc)
        );
        assert_eq!(
            translate(&mem, 0x10000, va + 0x20_0000 + 0x6000, true),
            None
        );
        assert_eq!(translate(&mem, 0x10000, 0x1000, true), None);
        assert_eq!(translate(&mem, 0x10000, 0x1000, false), Some(0x1000));
        // A page table pointing outside guest memory is unreadable, not a panic.
        w(0x13000 + 6 * 8, 0x7fff_ffff_f000 | 3);
        assert!(translate(&mem, 0x10000, va + 0x20_0000 + 0x6000, true).is_some());
    }

    #[test]
    fn fetch_in_real_and_protected_mode() {
        let mem = create_guest_memory(16 * MIB).unwrap();
        mem.write_slice(&[0xcc, 0x90], GuestAddress(0x7c00))
            .unwrap();
        let regs = kvm_regs {
            rip: 0x7c00,
            ..Default::default()
        };
        let sregs = kvm_sregs::default();
        let b = fetch_insn(&mem, &regs, &sregs);
        assert_eq!(&b[..2], &[0xcc, 0x90]);
        assert_eq!(b.len(), MAX_INSN_LEN);
        assert_eq!(completion_for(&b), Some(Completion::Int3));
        // Near the end of memory: fewer bytes, no panic.
        let regs = kvm_regs {
            rip: 16 * MIB - 3,
            ..Default::default()
        };
        assert_eq!(fetch_insn(&mem, &regs, &sregs).len(), 3);
    }

    #[test]
    fn completions() {
        assert_eq!(completion_for(&[0xcc, 0x90]), Some(Completion::Int3));
        // fpu__drop(): fwait, then movq $0, fpu_fpregs_owner_ctx(%rip).
        assert_eq!(
            completion_for(&[0x9b, 0x48, 0xc7, 0x05, 0x4a, 0x1e]),
            Some(Completion::Fwait)
        );
        // Only at RIP: a 0x9b byte after a prefix is not fwait.
        assert_eq!(completion_for(&[0x66, 0x9b]), None);
        // WARN() in Linux 7.x: addr32 REX.W ud1.
        assert_eq!(
            completion_for(&[0x67, 0x48, 0x0f, 0xb9, 0x3a, 0x58]),
            Some(Completion::InvalidOpcode)
        );
        assert_eq!(
            completion_for(&[0x0f, 0x0b]),
            Some(Completion::InvalidOpcode)
        );
        assert_eq!(
            completion_for(&[0x0f, 0xff, 0x00]),
            Some(Completion::InvalidOpcode)
        );
        assert_eq!(
            completion_for(&[0x0f, 0xae, 0x2f]),
            None,
            "xrstor is not completed"
        );
        assert_eq!(completion_for(&[0x67, 0x48]), None);
        assert_eq!(completion_for(&[]), None);
    }

    #[test]
    fn hints() {
        let h = hint_for(&[0x0f, 0x01, 0xca], CpuPolicy::Host).unwrap();
        assert!(h.contains("clac") && h.contains("smap"), "{h}");
        assert!(hint_for(&[0x48, 0x0f, 0xae, 0x2f], CpuPolicy::Host)
            .unwrap()
            .contains("xrstor"));
        assert!(
            hint_for(&[0xf3, 0x48, 0x0f, 0xb8, 0xc0], CpuPolicy::Filtered)
                .unwrap()
                .contains("popcnt")
        );
        assert!(hint_for(&[0x0f, 0xae, 0x55, 0x00], CpuPolicy::Host)
            .unwrap()
            .contains("ldmxcsr"));
        assert_eq!(hint_for(&[0x90], CpuPolicy::Host), None);
        assert_eq!(hint_for(&[], CpuPolicy::Host), None);
        assert_eq!(completion_for(&[0x90]), None);
    }

    #[test]
    fn report_mentions_bytes_and_registers() {
        let regs = kvm_regs {
            rip: 0xffff_ffff_8100_0000,
            rax: 0x1234,
            ..Default::default()
        };
        let r = report(
            1,
            &[1, 2],
            &[0x0f, 0x01, 0xca],
            &regs,
            &kvm_sregs::default(),
            CpuPolicy::Host,
        );
        assert!(r.contains("emulation failure"));
        assert!(r.contains("0f 01 ca"));
        assert!(r.contains("ffffffff81000000"));
        assert!(r.contains("0000000000001234"));
        assert!(r.contains("hint"));
        let r = report(
            9,
            &[],
            &[],
            &regs,
            &kvm_sregs::default(),
            CpuPolicy::Filtered,
        );
        assert!(r.contains("<unreadable>"));
    }
}
