//! What CPUID does the guest actually see? A 40-byte real-mode guest runs
//! CPUID leaves 1 and 7 and reports EAX/EBX/ECX through port writes; the VMM
//! sets the CPUID table exactly as `dmalab run` does (KVM_SET_CPUID2 with the
//! policy applied).
//!
//! Finding on PVM hosts (the project's machines): KVM_SET_CPUID2 does not
//! change what the CPUID instruction returns at CPL0: the guest sees the
//! host's bits (xsave, popcnt, smap, smep...) under both policies, so only
//! the guest kernel's own masking (`clearcpuid=`, on dmalab's default command
//! line) hides them; tests/boot_linux.rs checks /proc/cpuinfo for that. On a
//! hardware KVM host the filtered table is what the guest sees.

mod common;

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};
use vmm::bus::{Bus, BusDevice};
use vmm::cpuid::{hidden_features_in, CpuPolicy, Reg, HIDDEN};
use vmm::memory::{create_guest_memory, MIB};
use vmm::stop::{StopReason, VmControl};
use vmm::vcpu::Vcpu;
use vmm::vm::{open_kvm, register_memory};

/// Records 4-byte writes to ports 0x10..0x18.
#[derive(Default)]
struct Probe {
    values: Vec<(u64, u32)>,
}

impl BusDevice for Probe {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        self.values.push((offset, u32::from_le_bytes(b)));
    }
}

/// Real-mode code: CPUID(1) -> out 0x10 ECX; CPUID(7,0) -> out 0x11 EBX,
/// out 0x12 ECX; hlt.
const PROBE_CODE: &[u8] = &[
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x66, 0x31, 0xc9, // xor ecx, ecx
    0x0f, 0xa2, // cpuid
    0x66, 0x89, 0xc8, // mov eax, ecx
    0x66, 0xe7, 0x10, // out 0x10, eax
    0x66, 0xb8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
    0x66, 0x31, 0xc9, // xor ecx, ecx
    0x0f, 0xa2, // cpuid
    0x66, 0x89, 0xd8, // mov eax, ebx
    0x66, 0xe7, 0x11, // out 0x11, eax
    0x66, 0x89, 0xc8, // mov eax, ecx
    0x66, 0xe7, 0x12, // out 0x12, eax
    0xf4, // hlt
];

const CODE_ADDR: u64 = 0x1000;

struct Seen {
    leaf1_ecx: u32,
    leaf7_ebx: u32,
    leaf7_ecx: u32,
    /// What KVM_SET_CPUID2 was given for the same registers.
    set_leaf1_ecx: u32,
    set_leaf7_ebx: u32,
}

fn probe(policy: CpuPolicy) -> Seen {
    let kvm = open_kvm().expect("open /dev/kvm");
    // No in-kernel irqchip: `hlt` exits to the VMM.
    let vm = kvm.create_vm().expect("create VM");
    let mem = create_guest_memory(2 * MIB).unwrap();
    register_memory(&vm, &mem).unwrap();
    mem.write_slice(PROBE_CODE, GuestAddress(CODE_ADDR))
        .unwrap();

    let dev = Arc::new(Mutex::new(Probe::default()));
    let mut pio = Bus::new();
    pio.insert(dev.clone(), 0x10, 8).unwrap();
    let control = Arc::new(VmControl::new().unwrap());
    let mut vcpu = Vcpu::new(
        &kvm,
        &vm,
        0,
        Arc::new(pio),
        Arc::new(Bus::new()),
        control.clone(),
        mem.clone(),
        policy,
    )
    .unwrap();
    let table = vcpu.configure_cpuid(&kvm, 1).unwrap();
    let mut sregs = vcpu.fd().get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.fd().set_sregs(&sregs).unwrap();
    let mut regs = vcpu.fd().get_regs().unwrap();
    regs.rip = CODE_ADDR;
    regs.rflags = 2;
    vcpu.fd().set_regs(&regs).unwrap();

    vcpu.run();
    assert_eq!(control.reason(), Some(StopReason::Halted));
    let v = dev.lock().unwrap().values.clone();
    let get = |port: u64| v.iter().find(|(p, _)| *p == port).map(|(_, x)| *x).unwrap();
    let l1 = vmm::cpuid::lookup(&table, 1, 0).unwrap();
    let l7 = vmm::cpuid::lookup(&table, 7, 0).unwrap_or_default();
    Seen {
        leaf1_ecx: get(0),
        leaf7_ebx: get(1),
        leaf7_ecx: get(2),
        set_leaf1_ecx: l1.ecx,
        set_leaf7_ebx: l7.ebx,
    }
}

fn hidden_on_cmdline(leaf: u32, reg: Reg, value: u32) -> Vec<&'static str> {
    let names = hidden_features_in(leaf, 0, reg, value);
    names
        .into_iter()
        .filter(|n| {
            HIDDEN
                .iter()
                .any(|f| f.name == *n && f.cmdline != vmm::cpuid::Cmdline::No)
        })
        .collect()
}

#[test]
fn what_the_guest_cpuid_instruction_returns() {
    if !common::have_kvm() {
        eprintln!("SKIPPED: /dev/kvm is not available");
        return;
    }
    let f = probe(CpuPolicy::Filtered);
    let h = probe(CpuPolicy::Host);
    let visible: Vec<&str> = [
        hidden_on_cmdline(1, Reg::Ecx, f.leaf1_ecx),
        hidden_on_cmdline(7, Reg::Ebx, f.leaf7_ebx),
        hidden_on_cmdline(7, Reg::Ecx, f.leaf7_ecx),
    ]
    .concat();
    eprintln!(
        "guest CPUID with --cpu filtered: leaf1.ecx={:#010x} leaf7.ebx={:#010x} leaf7.ecx={:#010x} \
         (KVM_SET_CPUID2 got leaf1.ecx={:#010x} leaf7.ebx={:#010x}); with --cpu host: \
         leaf1.ecx={:#010x} leaf7.ebx={:#010x}; filtered features still visible: {:?}",
        f.leaf1_ecx,
        f.leaf7_ebx,
        f.leaf7_ecx,
        f.set_leaf1_ecx,
        f.set_leaf7_ebx,
        h.leaf1_ecx,
        h.leaf7_ebx,
        visible
    );
    // The table given to KVM never contains a hidden feature.
    assert!(hidden_features_in(1, 0, Reg::Ecx, f.set_leaf1_ecx).is_empty());
    assert!(hidden_features_in(7, 0, Reg::Ebx, f.set_leaf7_ebx).is_empty());
    if common::host_is_pvm() {
        // PVM: the guest sees the same bits whatever the VMM set. If this
        // starts failing, PVM honours KVM_SET_CPUID2 now: update
        // vmm/src/cpuid.rs, vmm/README.md and ../shared/HOST-KVM.md.
        let mask1 = (1 << 26) | (1 << 23); // xsave, popcnt
        let mask7 = (1 << 20) | (1 << 7); // smap, smep
        assert_eq!(
            f.leaf1_ecx & mask1,
            h.leaf1_ecx & mask1,
            "PVM: filtered and host policies should look the same to the guest"
        );
        assert_eq!(f.leaf7_ebx & mask7, h.leaf7_ebx & mask7);
        assert_ne!(
            f.leaf1_ecx & mask1,
            0,
            "PVM now hides xsave/popcnt from CPL0 CPUID: KVM_SET_CPUID2 took effect"
        );
    } else {
        // Hardware KVM: the filtered table is what the guest sees.
        assert!(visible.is_empty(), "guest still sees {visible:?}");
        assert_eq!(f.leaf1_ecx & (1 << 26), 0, "xsave visible");
        assert_ne!(f.leaf1_ecx & (1 << 31), 0, "hypervisor bit missing");
    }
}
