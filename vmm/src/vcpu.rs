//! One vCPU: its configuration (CPUID, registers, LAPIC) and its run loop.
//! What an exit means is decided by [`crate::kvm_exit::handle_kvm_exit`];
//! this file does what needs the vCPU itself: the port I/O data in
//! `kvm_run`, internal errors (completing `int3`/`ud2`, fault reports) and
//! the halted-for-good probe.

use std::sync::Arc;

use kvm_bindings::{
    kvm_fpu, kvm_msr_entry, kvm_regs, kvm_run, kvm_sregs, CpuId, Msrs, KVM_EXIT_IO_IN,
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
    KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_HALTED,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::boot::{entry_regs, entry_sregs, EntryPoint};
use crate::bus::Bus;
use crate::console_tx::TxQueue;
use crate::cpuid::{apply_policy, CpuPolicy};
use crate::fault::{self, Completion};
pub use crate::kvm_exit::ExitStats;
use crate::kvm_exit::{dispatch_port_io, handle_kvm_exit, ExitAction, ExitContext};
use crate::profile::{self, Place, Profile};
use crate::stop::{StopReason, VmControl};

/// Errors configuring a vCPU.
#[derive(Debug, Error)]
pub enum VcpuError {
    /// A KVM vCPU ioctl failed.
    #[error("KVM {op} failed for vCPU {id}: {source}")]
    Kvm {
        op: &'static str,
        id: u8,
        source: kvm_ioctls::Error,
    },
}

/// A vCPU and what it needs to run.
pub struct Vcpu {
    fd: VcpuFd,
    id: u8,
    run_size: usize,
    control: Arc<VmControl>,
    mem: GuestMemoryMmap,
    policy: CpuPolicy,
    /// The buses and the exit counters.
    exits: ExitContext,
    halt_probe: bool,
    /// `--profile`: every kick out of KVM_RUN is a sample.
    profile: Option<Arc<Profile>>,
    /// Console writes KVM queued instead of exiting (`console_tx.rs`).
    tx_queue: Option<Arc<TxQueue>>,
}

const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

impl Vcpu {
    /// Create vCPU `id`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kvm: &Kvm,
        vm: &VmFd,
        id: u8,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        control: Arc<VmControl>,
        mem: GuestMemoryMmap,
        policy: CpuPolicy,
    ) -> Result<Self, VcpuError> {
        let kerr = |op| move |source| VcpuError::Kvm { op, id, source };
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(kerr("KVM_CREATE_VCPU"))?;
        let run_size = kvm
            .get_vcpu_mmap_size()
            .map_err(kerr("KVM_GET_VCPU_MMAP_SIZE"))?;
        Ok(Vcpu {
            fd,
            id,
            run_size,
            control,
            mem,
            policy,
            exits: ExitContext::new(pio, mmio),
            halt_probe: false,
            profile: None,
            tx_queue: None,
        })
    }

    fn kerr(&self, op: &'static str) -> impl Fn(kvm_ioctls::Error) -> VcpuError {
        let id = self.id;
        move |source| VcpuError::Kvm { op, id, source }
    }

    /// The KVM vCPU file descriptor (for tests and probes).
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Exit counters so far.
    pub fn stats(&self) -> ExitStats {
        self.exits.stats
    }

    /// The TSC frequency KVM gives this vCPU, in kHz (0 if unknown).
    pub fn tsc_khz(&self) -> u32 {
        self.fd.get_tsc_khz().unwrap_or(0)
    }

    /// Set the CPUID table: KVM's supported CPUID with `policy` applied.
    /// Returns the table set.
    pub fn configure_cpuid(&self, kvm: &Kvm, nvcpus: u8) -> Result<CpuId, VcpuError> {
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(self.kerr("KVM_GET_SUPPORTED_CPUID"))?;
        apply_policy(&mut cpuid, self.policy, self.id, nvcpus);
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(self.kerr("KVM_SET_CPUID2"))?;
        Ok(cpuid)
    }

    /// Registers, FPU, MSRs and LAPIC for entering the kernel at `entry`.
    pub fn configure_boot(&self, entry: &EntryPoint) -> Result<(), VcpuError> {
        let sregs = self.fd.get_sregs().map_err(self.kerr("KVM_GET_SREGS"))?;
        self.fd
            .set_sregs(&entry_sregs(entry, sregs))
            .map_err(self.kerr("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(&entry_regs(entry))
            .map_err(self.kerr("KVM_SET_REGS"))?;
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        self.fd.set_fpu(&fpu).map_err(self.kerr("KVM_SET_FPU"))?;
        self.configure_msrs()?;
        self.configure_lapic()
    }

    fn configure_msrs(&self) -> Result<(), VcpuError> {
        let msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_MISC_ENABLE,
            data: MISC_ENABLE_FAST_STRING,
            ..Default::default()
        }])
        .map_err(|_| VcpuError::Kvm {
            op: "building the MSR list",
            id: self.id,
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        match self.fd.set_msrs(&msrs) {
            Ok(1) => {}
            Ok(n) => log::debug!("vCPU {}: KVM set {n} of 1 boot MSRs", self.id),
            Err(e) => log::debug!("vCPU {}: cannot set boot MSRs: {e}", self.id),
        }
        Ok(())
    }

    /// LINT0 = ExtINT (the 8259 in virtual-wire mode), LINT1 = NMI, as the
    /// MP table says.
    fn configure_lapic(&self) -> Result<(), VcpuError> {
        let mut lapic = self.fd.get_lapic().map_err(self.kerr("KVM_GET_LAPIC"))?;
        let set_mode = |regs: &mut [libc::c_char], off: usize, mode: u32| {
            let mut b = [0u8; 4];
            for (i, x) in b.iter_mut().enumerate() {
                *x = u8::from_ne_bytes(regs[off + i].to_ne_bytes());
            }
            let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
            for (i, x) in v.to_le_bytes().iter().enumerate() {
                regs[off + i] = libc::c_char::from_ne_bytes([*x]);
            }
        };
        set_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
        set_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
        self.fd
            .set_lapic(&lapic)
            .map_err(self.kerr("KVM_SET_LAPIC"))
    }

    /// Run until the VM is asked to stop (by a device, another thread, or
    /// this vCPU's own exits). Reasons found here go to the [`VmControl`].
    pub fn run(&mut self) {
        loop {
            if self.control.should_stop() {
                self.log_stop_position();
                return;
            }
            if let Some(reason) = self.run_once() {
                self.control.request_stop(reason);
                return;
            }
        }
    }

    /// One KVM_RUN and the handling of its exit. `Some` when this exit ends
    /// the run.
    #[inline]
    pub fn run_once(&mut self) -> Option<StopReason> {
        let action = handle_kvm_exit(&mut self.exits, self.fd.run());
        // Queued console writes happened before this exit: apply them first.
        if let Some(q) = &self.tx_queue {
            self.exits.stats.pio_queued += q.drain(&mut self.fd, &self.exits.pio);
        }
        match action {
            ExitAction::Resume => None,
            ExitAction::Stop(reason) => Some(reason),
            ExitAction::PortIo => {
                self.handle_pio();
                None
            }
            ExitAction::InternalError => self.handle_internal_error().err(),
            ExitAction::Interrupted => self.on_kick(),
        }
    }

    /// Port I/O, including string I/O (`count` > 1), read from kvm_run.
    fn handle_pio(&mut self) {
        let run: &mut kvm_run = self.fd.get_kvm_run();
        // SAFETY: the last exit was KVM_EXIT_IO (handle_kvm_exit said so), so
        // `io` is the active member of the union.
        let io = unsafe { run.__bindgen_anon_1.io };
        let base = (run as *mut kvm_run).cast::<u8>();
        let size = usize::from(io.size);
        let (Ok(count), Ok(offset)) = (usize::try_from(io.count), usize::try_from(io.data_offset))
        else {
            return;
        };
        let total = size.saturating_mul(count);
        if size == 0
            || offset
                .checked_add(total)
                .is_none_or(|end| end > self.run_size)
        {
            return;
        }
        // SAFETY: KVM put `total` bytes of I/O data at `data_offset` inside
        // the kvm_run mapping, which is `run_size` bytes long (checked above)
        // and lives as long as `self.fd`; nothing else references it while
        // this vCPU thread handles the exit.
        let data = unsafe { std::slice::from_raw_parts_mut(base.add(offset), total) };
        let is_in = u32::from(io.direction) == KVM_EXIT_IO_IN;
        dispatch_port_io(&mut self.exits, io.port, size, is_in, data);
    }

    /// KVM_EXIT_INTERNAL_ERROR: complete `int3`, else report and stop.
    #[cold]
    fn handle_internal_error(&mut self) -> Result<(), StopReason> {
        let run: &mut kvm_run = self.fd.get_kvm_run();
        // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal`
        // is the active member of the union.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let ndata = (internal.ndata as usize).min(internal.data.len());
        let data = internal.data[..ndata].to_vec();
        let mut kvm_insn = Vec::new();
        if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
            // SAFETY: for emulation failures KVM fills `emulation_failure`
            // (a layout-compatible extension of `internal`); its flags say
            // whether the instruction bytes are valid.
            let ef = unsafe { run.__bindgen_anon_1.emulation_failure };
            if ef.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 {
                // SAFETY: the union has a single member.
                let b = unsafe { ef.__bindgen_anon_1.__bindgen_anon_1 };
                let n = usize::from(b.insn_size).min(b.insn_bytes.len());
                kvm_insn = b.insn_bytes[..n].to_vec();
            }
        }
        let vmm_err = |what: &str, e: kvm_ioctls::Error| {
            StopReason::VmmError(format!("{what} after an internal error: {e}"))
        };
        let regs = self.fd.get_regs().map_err(|e| vmm_err("KVM_GET_REGS", e))?;
        let sregs = self
            .fd
            .get_sregs()
            .map_err(|e| vmm_err("KVM_GET_SREGS", e))?;
        let insn = if kvm_insn.is_empty() {
            fault::fetch_insn(&self.mem, &regs, &sregs)
        } else {
            kvm_insn
        };
        if internal.suberror == KVM_INTERNAL_ERROR_EMULATION {
            match fault::completion_for(&insn) {
                Some(Completion::Int3) => {
                    self.complete_int3(regs)
                        .map_err(|e| vmm_err("completing int3", e))?;
                    self.exits.stats.int3_completed += 1;
                    log::debug!(
                        "vCPU {}: KVM could not emulate int3 at RIP {:#x}: completed it \
                         (RIP += 1, #BP injected)",
                        self.id,
                        regs.rip
                    );
                    return Ok(());
                }
                Some(Completion::Fwait) => {
                    self.step_over(regs, 1)
                        .map_err(|e| vmm_err("completing fwait", e))?;
                    self.exits.stats.fwait_completed += 1;
                    log::debug!(
                        "vCPU {}: KVM could not emulate fwait at RIP {:#x}: skipped it \
                         (no x87 exception is pending in kernel code)",
                        self.id,
                        regs.rip
                    );
                    return Ok(());
                }
                Some(Completion::InvalidOpcode) => {
                    self.inject_exception(6)
                        .map_err(|e| vmm_err("injecting #UD", e))?;
                    self.exits.stats.ud_completed += 1;
                    log::debug!(
                        "vCPU {}: KVM could not emulate ud0/ud1/ud2 at RIP {:#x} \
                         (a kernel BUG/WARN): #UD injected",
                        self.id,
                        regs.rip
                    );
                    return Ok(());
                }
                None => {}
            }
        }
        let report = fault::report(internal.suberror, &data, &insn, &regs, &sregs, self.policy);
        log::error!("vCPU {}: guest cannot continue: {report}", self.id);
        let summary = match insn.first() {
            Some(_) => format!(
                "KVM internal error {} at RIP {:#x} (instruction {})",
                internal.suberror,
                regs.rip,
                insn.iter()
                    .take(6)
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => format!(
                "KVM internal error {} at RIP {:#x}",
                internal.suberror, regs.rip
            ),
        };
        Err(StopReason::Fault(summary))
    }

    /// Where the guest was when the VM was stopped from outside (timeout,
    /// another device): the first thing to know about a hung guest.
    fn log_stop_position(&self) {
        if let (Ok(regs), Ok(sregs)) = (self.fd.get_regs(), self.fd.get_sregs()) {
            let insn = fault::fetch_insn(&self.mem, &regs, &sregs);
            let bytes: Vec<String> = insn.iter().take(8).map(|b| format!("{b:02x}")).collect();
            let msg = format!(
                "vCPU {} stopped at RIP {:#x} (cs {:#x}, rflags {:#x}, cr3 {:#x}; bytes {})",
                self.id,
                regs.rip,
                sregs.cs.selector,
                regs.rflags,
                sregs.cr3,
                bytes.join(" ")
            );
            if self.control.reason() == Some(StopReason::Timeout) {
                log::warn!("{msg}");
            } else {
                log::debug!("{msg}");
            }
        }
    }

    /// Treat "halted with interrupts disabled" as the end of the guest: only
    /// an NMI could wake it, and nothing sends one. The VMM kicks the vCPU out
    /// of KVM_RUN about once a second to look (see `vm.rs`); only enabled for
    /// single-vCPU guests (with more, another vCPU could still send an IPI).
    pub fn set_halt_probe(&mut self, on: bool) {
        self.halt_probe = on;
    }

    /// Samples every kick into this profile.
    pub fn set_profile(&mut self, profile: Arc<Profile>) {
        self.profile = Some(profile);
    }

    /// Applies `queue`'s writes after every exit (maps its ring now).
    pub fn set_tx_queue(&mut self, queue: Arc<TxQueue>) {
        queue.map_ring(&mut self.fd);
        self.tx_queue = Some(queue);
    }

    /// Kicked out of KVM_RUN (see `vcpu_threads.rs`): take a profile sample,
    /// and stop if the guest halted for good.
    fn on_kick(&self) -> Option<StopReason> {
        const RFLAGS_IF: u64 = 1 << 9;
        if !self.halt_probe && self.profile.is_none() {
            return None;
        }
        let halted = self
            .fd
            .get_mp_state()
            .is_ok_and(|s| s.mp_state == KVM_MP_STATE_HALTED);
        let regs = self.fd.get_regs().ok();
        if let (Some(p), Some(r)) = (&self.profile, &regs) {
            let place = match self.fd.get_sregs() {
                _ if halted => Place::Halted,
                Ok(s) if s.cs.dpl == 3 => Place::User,
                Ok(s) => Place::Kernel {
                    rip: r.rip,
                    caller: p.caller(r.rip, &self.stack_words(r.rsp, &s)),
                },
                Err(_) => Place::Kernel {
                    rip: r.rip,
                    caller: 0,
                },
            };
            p.record(crate::logger::ms_since_start(), place);
        }
        let for_good = halted && regs.is_some_and(|r| r.rflags & RFLAGS_IF == 0);
        (self.halt_probe && for_good).then_some(StopReason::Halted)
    }

    /// Up to [`profile::STACK_WORDS`] words from the guest stack at `rsp`
    /// (kernel stacks are vmalloc memory: walked through the page tables),
    /// within its page; none outside long mode.
    fn stack_words(&self, rsp: u64, sregs: &kvm_sregs) -> Vec<u64> {
        const EFER_LMA: u64 = 1 << 10;
        let room = usize::try_from((0x1000 - (rsp & 0xfff)) / 8).unwrap_or(0);
        if sregs.efer & EFER_LMA == 0 {
            return Vec::new();
        }
        let Some(phys) = fault::translate(&self.mem, sregs.cr3, rsp, true) else {
            return Vec::new();
        };
        (0..profile::STACK_WORDS.min(room))
            .map_while(|i| self.mem.read_obj(GuestAddress(phys + 8 * i as u64)).ok())
            .collect()
    }

    /// Finish an `int3` the way the CPU would: step over it and deliver #BP.
    fn complete_int3(&self, regs: kvm_regs) -> Result<(), kvm_ioctls::Error> {
        self.step_over(regs, 1)?;
        self.inject_exception(3)
    }

    /// Moves RIP past an instruction of `len` bytes the VMM completed.
    fn step_over(&self, mut regs: kvm_regs, len: u64) -> Result<(), kvm_ioctls::Error> {
        regs.rip = regs.rip.wrapping_add(len);
        self.fd.set_regs(&regs)
    }

    /// Injects exception `vector` (one without an error code) at the current RIP.
    fn inject_exception(&self, vector: u8) -> Result<(), kvm_ioctls::Error> {
        let mut events = self.fd.get_vcpu_events()?;
        events.exception.injected = 1;
        events.exception.pending = 0;
        events.exception.nr = vector;
        events.exception.has_error_code = 0;
        events.exception.error_code = 0;
        // Leave NMI, SIPI, shadow and SMM state alone.
        events.flags = 0;
        self.fd.set_vcpu_events(&events)
    }
}
