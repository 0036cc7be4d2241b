//! Building and running the VM: check the inputs, open KVM, create the VM
//! (in-kernel IOAPIC/PIC/LAPIC and PIT), guest RAM, load the kernel, write the
//! boot tables, wire the devices, start the vCPU threads and run the event
//! loop until the guest stops.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};
use thiserror::Error;
use vm_memory::{
    Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::boot::{write_entry_structures, BootError, EntryPoint};
use crate::bus::{Bus, BusError, SharedDevice};
use crate::cpuid::CpuPolicy;
use crate::debugport::{DebugPorts, DEBUG_PORTS_BASE, DEBUG_PORTS_LEN};
use crate::eventloop::{Console, VmmLoop};
use crate::exit::{ExitCode, VmControl};
use crate::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::loader::{self, LoaderError};
use crate::logger;
use crate::memory::{self, MemoryError, KVM_TSS_ADDR};
use crate::mptable::{self, MptableError};
use crate::pci::{self, AttachError, HostBridge, PciConfigPorts, PciError, PciMmioWindow, PciRoot};
use crate::serial::{
    ConsoleOut, ConsoleWatcher, EventFdTrigger, RxReady, SerialDevice, Stdout, COM1_IRQ, COM1_LEN,
    COM1_PORT,
};
use crate::vcpu::{Vcpu, VcpuError};

/// Everything a run needs (built from the command line by `cli`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Appended to the default command line.
    pub cmdline: Option<String>,
    pub mem_mib: u64,
    pub vcpus: u8,
    pub cpu: CpuPolicy,
    pub timeout: Option<Duration>,
    /// A console string whose first appearance logs the guest boot time.
    pub boot_marker: Option<String>,
    /// Relay stdin to the guest console.
    pub stdin: bool,
    /// A dma24 device at 00:01.0.
    pub device: Option<device_model::Dma24Config>,
    /// Where the device's DMA trace goes.
    pub trace: Option<PathBuf>,
}

/// Errors setting up or running the VM.
#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(
        "cannot open {0}: it does not exist. dmalab needs KVM: load the kvm module \
         (kvm_intel, kvm_amd or kvm_pvm) or run on a host that provides it"
    )]
    NoKvm(PathBuf),
    #[error(
        "cannot open {0}: permission denied. Add your user to the group that owns \
         it (usually `kvm`: sudo usermod -aG kvm $USER, then log in again) or run as root"
    )]
    KvmPermission(PathBuf),
    #[error("cannot open {0}: {1}")]
    KvmOpen(PathBuf, kvm_ioctls::Error),
    #[error("this KVM lacks {0}, which dmalab needs")]
    KvmMissing(&'static str),
    #[error("KVM {op} failed: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Mptable(#[from] MptableError),
    #[error("cannot map device: {0}")]
    Bus(#[from] BusError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("event loop failed: {0:?}")]
    EventLoop(event_manager::Error),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("cannot start vCPU thread: {0}")]
    Thread(std::io::Error),
}

impl VmError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            VmError::Loader(_)
            | VmError::Memory(MemoryError::BadSize(_))
            | VmError::Attach(AttachError::Trace(_) | AttachError::Options { .. }) => {
                ExitCode::Usage
            }
            _ => ExitCode::VmmError,
        }
    }
}

fn kvm_op(op: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { op, source }
}

/// The KVM device: `/dev/kvm`, or `$DMALAB_KVM_DEVICE` (a test hook).
pub fn kvm_device_path() -> PathBuf {
    std::env::var_os("DMALAB_KVM_DEVICE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/dev/kvm"), PathBuf::from)
}

/// The error for a failed open of the KVM device.
pub fn kvm_open_error(path: &std::path::Path, e: kvm_ioctls::Error) -> VmError {
    let path = path.to_path_buf();
    match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => VmError::NoKvm(path),
        libc::EACCES | libc::EPERM => VmError::KvmPermission(path),
        _ => VmError::KvmOpen(path, e),
    }
}

/// Open the KVM device with a clear error for the usual problems, and check
/// the capabilities dmalab needs.
pub fn open_kvm() -> Result<Kvm, VmError> {
    let path = kvm_device_path();
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| VmError::NoKvm(path.clone()))?;
    let kvm = Kvm::new_with_path(cpath).map_err(|e| kvm_open_error(&path, e))?;
    for (cap, name) in [
        (Cap::Irqchip, "an in-kernel irqchip (KVM_CAP_IRQCHIP)"),
        (Cap::UserMemory, "user memory regions (KVM_CAP_USER_MEMORY)"),
        (Cap::Pit2, "an in-kernel PIT (KVM_CAP_PIT2)"),
        (Cap::Irqfd, "irqfd (KVM_CAP_IRQFD)"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(VmError::KvmMissing(name));
        }
    }
    Ok(kvm)
}

/// Whether this host's KVM is PVM (the page-table based KVM of the project's
/// machines, see ../shared/HOST-KVM.md).
pub fn host_is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Create a VM with the in-kernel irqchip and PIT.
pub fn create_vm(kvm: &Kvm) -> Result<VmFd, VmError> {
    let vm = kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?;
    vm.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_op("KVM_CREATE_PIT2"))?;
    Ok(vm)
}

/// Register every region of `mem` with KVM.
pub fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| VmError::KvmMissing("a host mapping of guest memory"))?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mmap owned by `mem`, which outlives
        // the VM (the vCPU threads hold clones of it and are joined before
        // `mem` is dropped); slots do not overlap (distinct regions).
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_op("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// A signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn noop_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), noop_handler) {
            log::warn!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// Build and run a VM; returns the exit code for how the guest ended.
pub fn run(cfg: &VmConfig) -> Result<ExitCode, VmError> {
    let t0 = Instant::now();
    // Inputs first: a wrong path or size must be reported even without KVM.
    let mem_size = memory::mem_bytes(cfg.mem_mib)?;
    // The command line (lpj is filled in once the TSC rate is known).
    loader::build_cmdline(cfg.cpu, 0, cfg.cmdline.as_deref())?;
    let kernel = loader::inspect_kernel(&cfg.kernel)?;
    let initrd = cfg
        .initrd
        .as_deref()
        .map(loader::inspect_initrd)
        .transpose()?;
    loader::check_memory(&kernel, initrd.as_ref(), mem_size)?;
    // The trace file too: an unwritable path is the user's to fix. Its clock
    // (t_ns in every record) starts here, at VM creation.
    let trace = match (&cfg.device, &cfg.trace) {
        (Some(dev), Some(path)) => Some(pci::open_trace(path, dev, mem_size)?),
        _ => None,
    };

    let kvm = open_kvm()?;
    let pvm = host_is_pvm();
    log::info!(
        "host KVM: {} ({} MiB guest RAM, {} vCPU{}, --cpu {:?})",
        if pvm {
            "PVM (emulated CPL0)"
        } else {
            "hardware"
        },
        cfg.mem_mib,
        cfg.vcpus,
        if cfg.vcpus == 1 { "" } else { "s" },
        cfg.cpu
    );
    // Shared: the device's MSIs are sent on it from the DMA worker thread.
    let vm = Arc::new(create_vm(&kvm)?);
    let mem = memory::create_guest_memory(mem_size)?;
    register_memory(&vm, &mem)?;

    let lk = loader::load_kernel(&mem, &kernel)?;
    let li = initrd
        .as_ref()
        .map(|i| loader::load_initrd(&mem, i, &kernel, mem_size))
        .transpose()?;
    log::info!(
        "kernel {} ({:?}, entry {:#x} via {}){}",
        kernel.path.display(),
        lk.format,
        lk.entry,
        if lk.pvh {
            "PVH"
        } else {
            "the 64-bit boot protocol"
        },
        match li {
            Some(i) => format!(", initrd {} KiB at {:#x}", i.size / 1024, i.addr),
            None => String::new(),
        }
    );

    // Devices.
    let control = Arc::new(VmControl::new().map_err(|source| VmError::Io {
        what: "cannot create an eventfd",
        source,
    })?);
    crate::signals::forward_stop_signals(control.clone());
    let io_err = |what| move |source| VmError::Io { what, source };
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(io_err("cannot create an eventfd"))?;
    vm.register_irqfd(&serial_irq, COM1_IRQ)
        .map_err(kvm_op("KVM_IRQFD (serial)"))?;
    let rx_ready = EventFd::new(EFD_NONBLOCK).map_err(io_err("cannot create an eventfd"))?;
    let console: Console = Arc::new(Mutex::new(SerialDevice::new(
        EventFdTrigger(serial_irq),
        RxReady(
            rx_ready
                .try_clone()
                .map_err(io_err("cannot clone an eventfd"))?,
        ),
        ConsoleOut::new(
            Stdout,
            ConsoleWatcher::new(control.clone(), cfg.boot_marker.clone()),
        ),
    )));
    let mut pio = Bus::new();
    let console_dev: SharedDevice = console.clone();
    pio.insert(console_dev, u64::from(COM1_PORT), u64::from(COM1_LEN))?;
    pio.insert(
        Arc::new(Mutex::new(I8042::new(control.clone()))),
        u64::from(I8042_BASE),
        u64::from(I8042_LEN),
    )?;
    pio.insert(
        Arc::new(Mutex::new(DebugPorts::new(control.clone()))),
        u64::from(DEBUG_PORTS_BASE),
        u64::from(DEBUG_PORTS_LEN),
    )?;
    let mut mmio = Bus::new();
    let mut pci_routes = Vec::new();
    let mut dma24 = None;
    if let Some(dev_cfg) = cfg.device.clone() {
        let window = memory::PCI_MMIO_WINDOW_END - memory::PCI_MMIO_WINDOW_START;
        let mut root = PciRoot::new(memory::PCI_MMIO_WINDOW_START, window)?;
        root.add_device(0, Arc::new(Mutex::new(HostBridge)), 0)?;
        let attached = pci::attach_dma24(vm.clone(), &mem, &mut root, dev_cfg, trace)?;
        pci_routes.push(attached.route);
        let root = Arc::new(Mutex::new(root));
        pio.insert(
            Arc::new(Mutex::new(PciConfigPorts(root.clone()))),
            u64::from(pci::CONFIG_PORTS_BASE),
            u64::from(pci::CONFIG_PORTS_LEN),
        )?;
        mmio.insert(
            Arc::new(Mutex::new(PciMmioWindow(root))),
            memory::PCI_MMIO_WINDOW_START,
            window,
        )?;
        log::info!(
            "dma24 at 00:{:02x}.0 (INTA -> IOAPIC pin {}, MSI capable), BARs in {:#x}..{:#x}",
            pci::DMA24_SLOT,
            attached.route.ioapic_pin,
            memory::PCI_MMIO_WINDOW_START,
            memory::PCI_MMIO_WINDOW_END
        );
        dma24 = Some(attached.device);
    }
    let pio = Arc::new(pio);
    let mmio = Arc::new(mmio);

    // vCPUs, then what depends on them (lpj from the TSC rate).
    let mut vcpus = Vec::with_capacity(usize::from(cfg.vcpus));
    for id in 0..cfg.vcpus {
        let v = Vcpu::new(
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
        vcpus.push(v);
    }
    let tsc_khz = vcpus.first().map_or(0, Vcpu::tsc_khz);
    let cmdline = loader::build_cmdline(cfg.cpu, loader::lpj_for(tsc_khz), cfg.cmdline.as_deref())?;
    let cmdline_str = cmdline
        .as_cstring()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    log::info!("guest command line: {cmdline_str}");
    let entry: EntryPoint =
        loader::write_boot_info(&mem, &lk, li, &cmdline, &memory::e820_map(mem_size))?;
    write_entry_structures(&mem, &entry)?;
    mptable::write(&mem, cfg.vcpus, &pci_routes)?;
    for v in &vcpus {
        v.configure_boot(&entry)?;
    }
    log::info!(
        "VM ready in {:.1} ms ({:.1} ms after VMM start)",
        t0.elapsed().as_secs_f64() * 1000.0,
        logger::ms_since_start()
    );

    // Run.
    install_kick_handler();
    let mut handles: Vec<JoinHandle<crate::vcpu::ExitStats>> = Vec::new();
    let single = vcpus.len() == 1;
    for mut v in vcpus {
        v.set_halt_probe(single);
        let name = format!("vcpu{}", handles.len());
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                v.run();
                v.stats()
            })
            .map_err(VmError::Thread)?;
        handles.push(h);
    }
    let result = event_loop(cfg, &control, console, rx_ready, &handles);
    if !control.should_stop() {
        // The loop failed: stop the guest anyway.
        control.request_stop(crate::StopReason::VmmError("event loop failed".into()));
    }
    stop_vcpus(&handles);
    for (i, h) in handles.into_iter().enumerate() {
        if !h.is_finished() {
            // Detached: it holds its own references to guest memory and KVM.
            continue;
        }
        match h.join() {
            Ok(s) => log::debug!(
                "vCPU {i}: {} port I/O exits, {} MMIO exits, {} int3 and {} ud completed, {} interrupted",
                s.pio,
                s.mmio,
                s.int3_completed,
                s.ud_completed,
                s.interrupted
            ),
            Err(_) => log::error!("vCPU {i} thread panicked"),
        }
    }
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
    drop(mem);
    // The device's worker stops with the device; the trace sink (held by the
    // device) then writes its footer and closes the file.
    if let Some(dev) = dma24 {
        close_device(dev);
    }
    Ok(code)
}

/// Stops the device's worker and closes its trace, reporting what it wrote.
fn close_device(dev: Arc<Mutex<device_model::Dma24<GuestMemoryMmap>>>) {
    let d = dev.lock().unwrap_or_else(|e| e.into_inner());
    d.wait_idle(Duration::from_secs(2));
    if let Some(sink) = d.trace_sink() {
        match sink.finish() {
            Ok(stats) => log::info!(
                "DMA trace closed: {} records, {} dropped",
                stats.records,
                stats.dropped
            ),
            Err(e) => log::error!("DMA trace: {e}"),
        }
    }
}

fn event_loop(
    cfg: &VmConfig,
    control: &Arc<VmControl>,
    console: Console,
    rx_ready: EventFd,
    vcpus: &[JoinHandle<crate::vcpu::ExitStats>],
) -> Result<(), VmError> {
    let mut em: EventManager<Arc<Mutex<VmmLoop>>> =
        EventManager::new().map_err(VmError::EventLoop)?;
    let lp = VmmLoop::new(control.clone(), console, rx_ready, cfg.stdin, cfg.timeout).map_err(
        |source| VmError::Io {
            what: "cannot set up the event loop",
            source,
        },
    )?;
    em.add_subscriber(Arc::new(Mutex::new(lp)));
    let mut next_probe = Instant::now() + HALT_PROBE_INTERVAL;
    while !control.should_stop() {
        em.run_with_timeout(200).map_err(VmError::EventLoop)?;
        if Instant::now() >= next_probe {
            // Let the vCPUs look whether the guest halted for good.
            kick(vcpus);
            next_probe = Instant::now() + HALT_PROBE_INTERVAL;
        }
    }
    Ok(())
}

/// How often the vCPUs are kicked to check for a halted guest.
const HALT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Signal every live vCPU thread out of KVM_RUN; returns how many were live.
fn kick(handles: &[JoinHandle<crate::vcpu::ExitStats>]) -> usize {
    let mut running = 0;
    for h in handles.iter().filter(|h| !h.is_finished()) {
        running += 1;
        // SAFETY: the thread has not been joined (we hold its handle), so
        // its pthread_t is valid even if it just exited; the signal has a
        // no-op handler installed by install_kick_handler.
        unsafe {
            libc::pthread_kill(
                std::os::unix::thread::JoinHandleExt::as_pthread_t(h),
                kick_signal(),
            );
        }
    }
    running
}

/// Kick every vCPU thread out of KVM_RUN until all have returned (they check
/// the stop flag before re-entering). Gives up after two seconds.
fn stop_vcpus(handles: &[JoinHandle<crate::vcpu::ExitStats>]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let running = kick(handles);
        if running == 0 || Instant::now() > deadline {
            if running > 0 {
                log::warn!("{running} vCPU thread(s) did not stop");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn kvm_open_errors_are_explained() {
        let p = Path::new("/dev/kvm");
        let e = kvm_open_error(p, kvm_ioctls::Error::new(libc::ENOENT));
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(e.exit_code(), ExitCode::VmmError);
        let e = kvm_open_error(p, kvm_ioctls::Error::new(libc::EACCES));
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert!(e.to_string().contains("kvm"), "{e}");
        let e = kvm_open_error(p, kvm_ioctls::Error::new(libc::EIO));
        assert!(e.to_string().starts_with("cannot open /dev/kvm"), "{e}");
    }

    #[test]
    fn input_errors_are_usage_errors() {
        let e = VmError::Loader(LoaderError::KernelNotFound("/x".into()));
        assert_eq!(e.exit_code(), ExitCode::Usage);
        let e = VmError::Memory(MemoryError::BadSize(1));
        assert_eq!(e.exit_code(), ExitCode::Usage);
    }

    #[test]
    fn bad_inputs_fail_before_kvm_is_opened() {
        // SAFETY: no other test in this binary reads DMALAB_KVM_DEVICE.
        unsafe { std::env::set_var("DMALAB_KVM_DEVICE", "/nonexistent/kvm") };
        let cfg = VmConfig {
            kernel: "/nonexistent/vmlinux".into(),
            initrd: None,
            cmdline: None,
            mem_mib: 64,
            vcpus: 1,
            cpu: CpuPolicy::Filtered,
            timeout: None,
            boot_marker: None,
            stdin: false,
            device: None,
            trace: None,
        };
        let e = run(&cfg).unwrap_err();
        assert!(
            matches!(e, VmError::Loader(LoaderError::KernelNotFound(_))),
            "{e}"
        );
        let e = run(&VmConfig {
            mem_mib: 1,
            ..cfg.clone()
        })
        .unwrap_err();
        assert!(matches!(e, VmError::Memory(MemoryError::BadSize(1))), "{e}");
        // A valid kernel: now the missing KVM device is the error.
        let elf = crate::loader::tests::tiny_elf(0x10_0000, &[0xf4], 0x1000, Some(0x10_0000));
        let t = vmm_sys_util::tempfile::TempFile::new().unwrap();
        std::io::Write::write_all(&mut t.as_file(), &elf).unwrap();
        let e = run(&VmConfig {
            kernel: t.as_path().to_path_buf(),
            ..cfg
        })
        .unwrap_err();
        assert!(matches!(e, VmError::NoKvm(_)), "{e}");
        // SAFETY: as above.
        unsafe { std::env::remove_var("DMALAB_KVM_DEVICE") };
    }
}
