//! Building a VM from a [`VmConfig`] ([`VmBuilder::build`]) and running it
//! to its end ([`Vm::run`]). Shared by `dmalab run` and any other front end
//! (a `dmalab serve` later): they differ in how they fill the config, not in
//! how a VM is put together.
//!
//! Order matters: every input the user can get wrong (memory size, command
//! line, kernel, initrd, trace path) is checked before KVM is opened, so the
//! error is a usage error (exit 2) even on a host without KVM.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::boot::write_entry_structures;
use crate::boot_info::write_boot_info;
use crate::bus::Bus;
use crate::cmdline::{self, lpj_for, CmdlineSpec};
use crate::console_tx::TxQueue;
use crate::device_manager::{LegacyDevices, PciDevices, PlacedDevice};
use crate::eventloop::VmmLoop;
use crate::initrd_module::{ModuleArchive, ModuleError};
use crate::loader::{self, InitrdInfo, KernelInfo};
use crate::logger;
use crate::memory;
use crate::mptable;
use crate::pci;
use crate::pirq;
use crate::profile::{self, Profile};
use crate::serial::COM1_PORT;
use crate::stop::{ExitCode, StopReason, VmControl};
use crate::vcpu::Vcpu;
use crate::vcpu_threads::VcpuThreads;
use crate::vm::{create_vm_with_memory, host_is_pvm, open_kvm, VmConfig, VmError};

/// How often the vCPUs are kicked to check for a halted guest.
const HALT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Builds a [`Vm`].
#[derive(Clone, Debug)]
pub struct VmBuilder {
    cfg: VmConfig,
}

/// What the user gave, checked.
struct Inputs {
    mem_size: u64,
    cmdline: CmdlineSpec,
    kernel: KernelInfo,
    initrd: Option<InitrdInfo>,
    /// `--module`: a cpio put in front of the initrd.
    module: Option<ModuleArchive>,
    /// The dma24 devices with their slots (`pci::place_devices`).
    devices: Vec<(u8, device_model::Dma24Config)>,
    /// `--profile`, its file already created.
    profile: Option<Arc<Profile>>,
}

/// A VM ready to run: memory loaded, devices wired, vCPUs configured.
pub struct Vm {
    cfg: VmConfig,
    control: Arc<VmControl>,
    vcpus: Vec<Vcpu>,
    legacy: LegacyDevices,
    pci: PciDevices,
    mem: GuestMemoryMmap,
    profile: Option<Arc<Profile>>,
    // Kept open until the VM is done (the vCPU fds refer to them).
    _vm: Arc<VmFd>,
    _kvm: Kvm,
}

impl VmBuilder {
    pub fn new(cfg: VmConfig) -> Self {
        VmBuilder { cfg }
    }

    /// Checks the inputs without touching KVM.
    fn check_inputs(&self) -> Result<Inputs, VmError> {
        let cfg = &self.cfg;
        let mem_size = memory::mem_bytes(cfg.mem_mib)?;
        let cmdline = CmdlineSpec::new(cfg.cpu, cfg.cmdline.as_deref())?;
        let kernel = loader::inspect_kernel(&cfg.kernel)?;
        let parts: Vec<_> = cfg.initrd.iter().chain(&cfg.initrd_extra).collect();
        let initrd = match parts.is_empty() {
            true => None,
            false => Some(loader::inspect_initrd_parts(&parts)?),
        };
        let module = match (&cfg.module, &initrd) {
            (None, _) => None,
            (Some(_), None) => return Err(ModuleError::NoInitrd.into()),
            (Some(m), Some(_)) => Some(ModuleArchive::from_file(m, cfg.module_args.as_deref())?),
        };
        let with_module = initrd.clone().map(|mut i| {
            i.size += module.as_ref().map_or(0, ModuleArchive::len);
            i
        });
        loader::check_memory(&kernel, with_module.as_ref(), mem_size)?;
        let devices = pci::place_devices(&cfg.devices)?;
        let profile = match &cfg.profile {
            Some(path) => Some(Arc::new(Profile::create(path, &cfg.kernel)?)),
            None => None,
        };
        Ok(Inputs {
            mem_size,
            cmdline,
            kernel,
            initrd,
            module,
            devices,
            profile,
        })
    }

    /// Checks the inputs, opens KVM, creates the VM (in-kernel IOAPIC, PIC,
    /// LAPIC and PIT) and guest RAM, loads kernel and initrd, wires the
    /// devices, creates the vCPUs and writes the boot tables.
    pub fn build(self) -> Result<Vm, VmError> {
        let t0 = Instant::now();
        let cfg = self.cfg.clone();
        let inputs = self.check_inputs()?;
        // The trace files too (one per device): an unwritable path is the
        // user's to fix. Their clock (t_ns in every record) starts here, at
        // VM creation.
        let mut devices = Vec::with_capacity(inputs.devices.len());
        for (index, (slot, config)) in inputs.devices.iter().enumerate() {
            let trace = match &cfg.trace {
                Some(base) => {
                    let path = device_model::trace::device_trace_path(base, index);
                    Some(pci::open_trace(
                        &path,
                        config,
                        inputs.mem_size,
                        cfg.trace_max_size,
                    )?)
                }
                None => None,
            };
            devices.push(PlacedDevice {
                slot: *slot,
                config: config.clone(),
                trace,
            });
        }

        let kvm = open_kvm()?;
        log::info!(
            "host KVM: {} ({} MiB guest RAM, {} vCPU{}, --cpu {:?})",
            if host_is_pvm() {
                "PVM (emulated CPL0)"
            } else {
                "hardware"
            },
            cfg.mem_mib,
            cfg.vcpus,
            if cfg.vcpus == 1 { "" } else { "s" },
            cfg.cpu
        );
        let mem = memory::create_guest_memory(inputs.mem_size)?;
        // Shared: the device's MSIs are sent on it from the DMA worker thread.
        let vm = Arc::new(create_vm_with_memory(&kvm, &mem)?);

        let kernel = loader::load_kernel(&mem, &inputs.kernel)?;
        let initrd = inputs
            .initrd
            .as_ref()
            .map(|i| loader::load_initrd(&mem, i, &inputs.kernel, inputs.mem_size))
            .transpose()?;
        let initrd = match (initrd, &inputs.module) {
            (Some(i), Some(m)) => {
                log::info!("module {} in front of the initrd", m.file_name);
                Some(m.prepend_to(&mem, i, inputs.kernel.end.div_ceil(4096) * 4096)?)
            }
            (initrd, _) => initrd,
        };
        log::info!(
            "kernel {} ({:?}, entry {:#x} via {}){}",
            inputs.kernel.path.display(),
            kernel.format,
            kernel.entry,
            if kernel.pvh {
                "PVH"
            } else {
                "the 64-bit boot protocol"
            },
            match initrd {
                Some(i) => format!(", initrd {} KiB at {:#x}", i.size / 1024, i.addr),
                None => String::new(),
            }
        );

        let control = Arc::new(VmControl::new().map_err(|source| VmError::Io {
            what: "cannot create an eventfd",
            source,
        })?);
        crate::signals::forward_stop_signals(control.clone());
        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        let legacy = LegacyDevices::attach(&vm, &control, cfg.boot_marker.clone(), &mut pio)?;
        let pci = PciDevices::attach(&vm, &mem, devices, &mut pio, &mut mmio)?;
        let (pio, mmio) = (Arc::new(pio), Arc::new(mmio));

        // vCPUs, then what depends on them (lpj from the TSC rate).
        let mut vcpus = Vec::with_capacity(usize::from(cfg.vcpus));
        for id in 0..cfg.vcpus {
            let mut v = Vcpu::new(
                &kvm,
                &vm,
                id,
                pio.clone(),
                mmio.clone(),
                control.clone(),
                mem.clone(),
                cfg.cpu,
            )?;
            v.configure_cpuid(&kvm, cfg.vcpus)?;
            if let Some(p) = &inputs.profile {
                v.set_profile(p.clone());
            }
            vcpus.push(v);
        }
        // Console writes without an exit per byte, where KVM can queue them.
        if let Some(queue) = TxQueue::new(&kvm, vm.clone(), COM1_PORT) {
            for v in &mut vcpus {
                v.set_tx_queue(queue.clone());
            }
            legacy
                .console
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .use_tx_queue(queue);
        }
        let tsc_khz = vcpus.first().map_or(0, Vcpu::tsc_khz);
        let cmdline = inputs.cmdline.build(lpj_for(tsc_khz))?;
        log::info!("guest command line: {}", cmdline::to_string_lossy(&cmdline));
        let e820 = memory::e820_map(inputs.mem_size);
        let entry = write_boot_info(&mem, &kernel, initrd, &cmdline, &e820)?;
        write_entry_structures(&mem, &entry)?;
        mptable::write(&mem, cfg.vcpus, &pci.irq_routes)?;
        pirq::write(&mem)?;
        for v in &vcpus {
            v.configure_boot(&entry)?;
        }
        log::info!(
            "VM ready in {:.1} ms ({:.1} ms after VMM start)",
            t0.elapsed().as_secs_f64() * 1000.0,
            logger::ms_since_start()
        );
        Ok(Vm {
            cfg,
            control,
            vcpus,
            legacy,
            pci,
            mem,
            profile: inputs.profile,
            _vm: vm,
            _kvm: kvm,
        })
    }
}

impl Vm {
    /// Starts the vCPUs and runs the event loop until the guest stops;
    /// returns the exit code for how it ended. Everything is torn down on
    /// every path: vCPUs stopped, device DMA finished, trace closed.
    pub fn run(self) -> Result<ExitCode, VmError> {
        let control = self.control;
        let threads = VcpuThreads::start(self.vcpus).map_err(VmError::Thread)?;
        let kick_every = match self.profile {
            Some(_) => profile::SAMPLE_INTERVAL,
            None => HALT_PROBE_INTERVAL,
        };
        let result = event_loop(&self.cfg, &control, self.legacy, &threads, kick_every);
        if !control.should_stop() {
            // The loop failed: stop the guest anyway.
            control.request_stop(StopReason::VmmError("event loop failed".into()));
        }
        threads.stop();
        // Written now (the vCPUs are done), reported after the teardown so
        // a full disk cannot keep the trace from being closed.
        let profiled = self.profile.as_ref().map(|p| p.finish());
        result?;
        let reason = control.reason();
        let code = control.exit_code();
        log::info!(
            "guest stopped after {:.1} ms: {} -> exit code {}",
            logger::ms_since_start(),
            reason.map_or_else(|| "no reason".to_string(), |r| r.to_string()),
            code.code()
        );
        // Keep guest memory alive until the vCPUs are gone (register_memory's SAFETY).
        drop(self.mem);
        // The device's worker stops with the device; the trace sink (held by
        // the device) then writes its footer and closes the file.
        self.pci.close();
        profiled.transpose()?;
        Ok(code)
    }
}

fn event_loop(
    cfg: &VmConfig,
    control: &Arc<VmControl>,
    legacy: LegacyDevices,
    vcpus: &VcpuThreads,
    kick_every: Duration,
) -> Result<(), VmError> {
    let mut em: EventManager<Arc<Mutex<VmmLoop>>> =
        EventManager::new().map_err(VmError::EventLoop)?;
    let lp = VmmLoop::new(
        control.clone(),
        legacy.console,
        legacy.rx_ready,
        cfg.stdin,
        cfg.timeout,
    )
    .map_err(|source| VmError::Io {
        what: "cannot set up the event loop",
        source,
    })?;
    em.add_subscriber(Arc::new(Mutex::new(lp)));
    // Wake up at least as often as the vCPUs are kicked.
    let wait_ms = i32::try_from(kick_every.as_millis().clamp(1, 200)).unwrap_or(200);
    let mut next_kick = Instant::now() + kick_every;
    while !control.should_stop() {
        em.run_with_timeout(wait_ms).map_err(VmError::EventLoop)?;
        let now = Instant::now();
        if now >= next_kick {
            // Let the vCPUs look whether the guest halted for good (and
            // take a profile sample, with --profile).
            vcpus.kick();
            next_kick = now + kick_every;
        }
    }
    Ok(())
}
