//! The CPUID policy: what the guest is told about its CPU.
//!
//! By default (`--cpu filtered`) dmalab hides the features the PVM in-kernel
//! emulator cannot run (../shared/HOST-KVM.md), twice:
//!
//! 1. In the CPUID table given to KVM with KVM_SET_CPUID2. On hardware KVM this
//!    is what the guest's CPUID instruction returns.
//! 2. On the guest kernel command line, `clearcpuid=...` ([`clearcpuid_arg`]).
//!    **On PVM KVM_SET_CPUID2 does not change what a CPUID instruction returns
//!    at CPL0** (measured: the guest sees the host's bits either way, see
//!    tests/cpuid_probe.rs), so only the kernel's own masking hides them there.
//!    The kernel parses `clearcpuid=` into a 128-byte buffer: the essential
//!    names come first.
//!
//! `--cpu host` passes KVM's supported CPUID through unfiltered and adds no
//! `clearcpuid=`.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// Which CPU the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CpuPolicy {
    /// Hide what the PVM emulator cannot run (safe on every host).
    #[default]
    Filtered,
    /// Everything KVM supports (hardware KVM hosts only).
    Host,
}

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// One hidden feature bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Linux's flag name (as in /proc/cpuinfo and `clearcpuid=`).
    pub name: &'static str,
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: Reg,
    pub bit: u8,
    /// Also passed in `clearcpuid=` (only room for the essential ones).
    pub cmdline: Cmdline,
}

/// How a hidden feature appears in the guest's `clearcpuid=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmdline {
    /// Only in KVM_SET_CPUID2.
    No,
    /// By its Linux flag name.
    Name,
    /// By Linux's feature number (word * 32 + bit, from
    /// arch/x86/include/asm/cpufeatures.h): for flags Linux gives no name,
    /// and where the number is shorter (the buffer is 128 bytes).
    Number(u16),
}

const NAME: Cmdline = Cmdline::Name;
const NO: Cmdline = Cmdline::No;

const fn f(
    name: &'static str,
    leaf: u32,
    subleaf: u32,
    reg: Reg,
    bit: u8,
    cmdline: Cmdline,
) -> Feature {
    Feature {
        name,
        leaf,
        subleaf,
        reg,
        bit,
        cmdline,
    }
}

/// The features hidden by [`CpuPolicy::Filtered`]. Those with a `cmdline` spelling
/// come first, in order of importance (what the emulator was seen to fail on
/// first), because the guest's `clearcpuid=` buffer is 128 bytes.
pub const HIDDEN: &[Feature] = &[
    f("xsave", 1, 0, Reg::Ecx, 26, NAME),   // xrstor in FPU init
    f("smap", 7, 0, Reg::Ebx, 20, NAME),    // clac/stac in every entry
    f("smep", 7, 0, Reg::Ebx, 7, NAME),     // hidden with smap
    f("popcnt", 1, 0, Reg::Ecx, 23, NAME),  // popcnt
    f("fsgsbase", 7, 0, Reg::Ebx, 0, NAME), // rd/wr{fs,gs}base
    f("ssse3", 1, 0, Reg::Ecx, 9, NAME),    // SIMD: ldmxcsr in kernel_fpu_begin
    f("sse4_1", 1, 0, Reg::Ecx, 19, NAME),
    f("sse4_2", 1, 0, Reg::Ecx, 20, NAME),
    f("avx", 1, 0, Reg::Ecx, 28, NAME),
    f("avx2", 7, 0, Reg::Ebx, 5, NAME),
    f("aes", 1, 0, Reg::Ecx, 25, NAME),
    f("pclmulqdq", 1, 0, Reg::Ecx, 1, Cmdline::Number(4 * 32 + 1)),
    f("rdrand", 1, 0, Reg::Ecx, 30, NAME),
    f("rdseed", 7, 0, Reg::Ebx, 18, NAME),
    f("invpcid", 7, 0, Reg::Ebx, 10, NAME),
    f("pcid", 1, 0, Reg::Ecx, 17, NAME),
    f("rdpid", 7, 0, Reg::Ecx, 22, NAME),
    f("sha_ni", 7, 0, Reg::Ebx, 29, NAME),
    // Not emulator gaps but speed: the emulator runs `rep movsb`/`rep stosb`
    // one byte per step (about 1 us each). Without these three the kernel's
    // memcpy, memset and page clearing take its `rep stosq`/unrolled-loop
    // paths, eight bytes or more per emulated step.
    f("erms", 7, 0, Reg::Ebx, 9, NAME),
    f("fsrm", 7, 0, Reg::Edx, 4, NAME),
    // No Linux name ("" in cpufeatures.h); AMD's FSRM implies it in init_amd.
    f("fsrs", 7, 1, Reg::Eax, 11, Cmdline::Number(12 * 32 + 11)),
    // Only in KVM_SET_CPUID2 (precautions, and what XSAVE/AVX imply).
    f("osxsave", 1, 0, Reg::Ecx, 27, NO),
    f("fma", 1, 0, Reg::Ecx, 12, NO),
    f("movbe", 1, 0, Reg::Ecx, 22, NO),
    f("f16c", 1, 0, Reg::Ecx, 29, NO),
    f("bmi1", 7, 0, Reg::Ebx, 3, NO),
    f("hle", 7, 0, Reg::Ebx, 4, NO),
    f("bmi2", 7, 0, Reg::Ebx, 8, NO),
    f("rtm", 7, 0, Reg::Ebx, 11, NO),
    f("avx512f", 7, 0, Reg::Ebx, 16, NO),
    f("avx512dq", 7, 0, Reg::Ebx, 17, NO),
    f("adx", 7, 0, Reg::Ebx, 19, NO),
    f("avx512ifma", 7, 0, Reg::Ebx, 21, NO),
    f("avx512cd", 7, 0, Reg::Ebx, 28, NO),
    f("avx512bw", 7, 0, Reg::Ebx, 30, NO),
    f("avx512vl", 7, 0, Reg::Ebx, 31, NO),
    f("avx512vbmi", 7, 0, Reg::Ecx, 1, NO),
    f("pku", 7, 0, Reg::Ecx, 3, NO),
    f("ospke", 7, 0, Reg::Ecx, 4, NO),
    f("avx512_vbmi2", 7, 0, Reg::Ecx, 6, NO),
    f("gfni", 7, 0, Reg::Ecx, 8, NO),
    f("vaes", 7, 0, Reg::Ecx, 9, NO),
    f("vpclmulqdq", 7, 0, Reg::Ecx, 10, NO),
    f("avx512_vnni", 7, 0, Reg::Ecx, 11, NO),
    f("avx512_bitalg", 7, 0, Reg::Ecx, 12, NO),
    f("avx512_vpopcntdq", 7, 0, Reg::Ecx, 14, NO),
    f("avx_vnni", 7, 1, Reg::Eax, 4, NO),
    f("avx512_bf16", 7, 1, Reg::Eax, 5, NO),
    f("abm", 0x8000_0001, 0, Reg::Ecx, 5, NO),
    f("sse4a", 0x8000_0001, 0, Reg::Ecx, 6, NO),
    f("xop", 0x8000_0001, 0, Reg::Ecx, 11, NO),
    f("fma4", 0x8000_0001, 0, Reg::Ecx, 16, NO),
    f("tbm", 0x8000_0001, 0, Reg::Ecx, 21, NO),
];

/// The guest kernel's `clearcpuid=` buffer (COMMAND_LINE_SIZE would allow
/// more, but arch/x86/kernel/cpu/common.c copies the value into 128 bytes).
pub const CLEARCPUID_BUF: usize = 128;

/// `clearcpuid=xsave,smap,...` for [`CpuPolicy::Filtered`], `None` for host.
pub fn clearcpuid_arg(policy: CpuPolicy) -> Option<String> {
    match policy {
        CpuPolicy::Host => None,
        CpuPolicy::Filtered => {
            let names: Vec<String> = HIDDEN
                .iter()
                .filter_map(|f| match f.cmdline {
                    Cmdline::No => None,
                    Cmdline::Name => Some(f.name.to_string()),
                    Cmdline::Number(n) => Some(n.to_string()),
                })
                .collect();
            Some(format!("clearcpuid={}", names.join(",")))
        }
    }
}

/// The features [`CpuPolicy::Filtered`] hides that are set in `(leaf,
/// subleaf)` register `reg` value `value` (for reports and tests).
pub fn hidden_features_in(leaf: u32, subleaf: u32, reg: Reg, value: u32) -> Vec<&'static str> {
    HIDDEN
        .iter()
        .filter(|f| f.leaf == leaf && f.subleaf == subleaf && f.reg == reg)
        .filter(|f| value & (1 << f.bit) != 0)
        .map(|f| f.name)
        .collect()
}

fn reg_mut(e: &mut kvm_cpuid_entry2, reg: Reg) -> &mut u32 {
    match reg {
        Reg::Eax => &mut e.eax,
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

/// CPUID leaf 1 ECX "hypervisor present".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// The XSAVE state-components leaf.
const LEAF_XSAVE: u32 = 0xd;

/// Apply `policy` to KVM's supported CPUID for vCPU `vcpu_id` of `nvcpus`:
/// hide features, set the APIC IDs, announce the hypervisor.
pub fn apply_policy(cpuid: &mut CpuId, policy: CpuPolicy, vcpu_id: u8, nvcpus: u8) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // Initial APIC ID, logical processor count, CLFLUSH size 8.
                e.ebx = (u32::from(vcpu_id) << 24) | (u32::from(nvcpus) << 16) | (8 << 8);
                e.ecx |= LEAF1_ECX_HYPERVISOR;
            }
            0xb | 0x1f => e.edx = u32::from(vcpu_id),
            0x8000_001e => e.eax = u32::from(vcpu_id),
            _ => {}
        }
        if policy == CpuPolicy::Filtered {
            if e.function == LEAF_XSAVE {
                // No XSAVE: no state components.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            for f in HIDDEN {
                if f.leaf == e.function && f.subleaf == e.index {
                    *reg_mut(e, f.reg) &= !(1u32 << f.bit);
                }
            }
        }
    }
}

/// Read a leaf from `cpuid` (tests and reports).
pub fn lookup(cpuid: &CpuId, leaf: u32, subleaf: u32) -> Option<kvm_cpuid_entry2> {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == leaf && e.index == subleaf)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CpuId {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ecx: 0xffff_ffff,
                ebx: 0xffff_ffff,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                index: 0,
                ebx: 0xffff_ffff,
                ecx: 0xffff_ffff,
                edx: 0x1234,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 7,
                index: 1,
                eax: 0xffff_ffff,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xd,
                index: 1,
                eax: 0xf,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                edx: 77,
                ..Default::default()
            },
        ];
        CpuId::from_entries(&entries).unwrap()
    }

    #[test]
    fn clearcpuid_fits_the_guest_buffer_and_starts_with_the_essentials() {
        let arg = clearcpuid_arg(CpuPolicy::Filtered).unwrap();
        let value = arg.strip_prefix("clearcpuid=").unwrap();
        assert!(value.len() < CLEARCPUID_BUF, "{} bytes", value.len());
        assert!(value.starts_with("xsave,smap,smep,popcnt,"));
        assert_eq!(
            arg,
            "clearcpuid=xsave,smap,smep,popcnt,fsgsbase,ssse3,sse4_1,sse4_2,avx,avx2,aes,\
             129,rdrand,rdseed,invpcid,pcid,rdpid,sha_ni,erms,fsrm,395"
        );
        assert_eq!(clearcpuid_arg(CpuPolicy::Host), None);
    }

    #[test]
    fn feature_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for f in HIDDEN {
            assert!(f.bit < 32);
            assert!(
                seen.insert((f.leaf, f.subleaf, f.reg as u8, f.bit)),
                "{}",
                f.name
            );
        }
        // Command-line features come first.
        let first_off = HIDDEN.iter().position(|f| f.cmdline == NO).unwrap();
        assert!(HIDDEN[first_off..].iter().all(|f| f.cmdline == NO));
    }

    #[test]
    fn filtered_hides_the_emulator_gaps() {
        let mut c = table();
        apply_policy(&mut c, CpuPolicy::Filtered, 0, 1);
        let l1 = lookup(&c, 1, 0).unwrap();
        for bit in [26, 27, 23, 9, 19, 20, 28, 25, 1, 30, 17] {
            assert_eq!(l1.ecx & (1 << bit), 0, "leaf 1 ecx bit {bit}");
        }
        assert_ne!(l1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(l1.ebx >> 24, 0);
        let l7 = lookup(&c, 7, 0).unwrap();
        for bit in [0, 5, 7, 10, 18, 20, 29] {
            assert_eq!(l7.ebx & (1 << bit), 0, "leaf 7 ebx bit {bit}");
        }
        assert_eq!(l7.ecx & (1 << 22), 0);
        assert_eq!(l7.edx, 0x1234 & !(1 << 4), "only fsrm cleared in edx");
        assert_eq!(l7.ebx & (1 << 9), 0, "erms");
        assert_eq!(lookup(&c, 7, 1).unwrap().eax & 0x830, 0);
        assert_eq!(lookup(&c, 0xd, 1).unwrap().eax, 0);
        assert!(hidden_features_in(1, 0, Reg::Ecx, l1.ecx).is_empty());
        assert!(hidden_features_in(7, 0, Reg::Ebx, l7.ebx).is_empty());
    }

    #[test]
    fn host_passes_features_through() {
        let mut c = table();
        apply_policy(&mut c, CpuPolicy::Host, 2, 4);
        let l1 = lookup(&c, 1, 0).unwrap();
        assert_eq!(l1.ecx, 0xffff_ffff);
        assert_eq!(l1.ebx >> 24, 2);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(lookup(&c, 7, 0).unwrap().ebx, 0xffff_ffff);
        assert_eq!(lookup(&c, 0xb, 0).unwrap().edx, 2);
        assert_eq!(lookup(&c, 0xd, 1).unwrap().eax, 0xf);
    }

    #[test]
    fn reports_hidden_names() {
        let v = hidden_features_in(1, 0, Reg::Ecx, (1 << 26) | (1 << 23));
        assert_eq!(v, vec!["xsave", "popcnt"]);
    }
}
