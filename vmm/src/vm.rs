//! A VM's configuration and errors, and the KVM steps every VM needs:
//! opening `/dev/kvm` with clear errors, creating the VM with the in-kernel
//! irqchip and PIT, registering guest memory. Putting a VM together and
//! running it is `builder.rs`; [`run`] does both.

use std::path::PathBuf;
use std::time::Duration;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};
use thiserror::Error;
use vm_memory::{
    Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

use crate::boot::BootError;
use crate::boot_info::BootInfoError;
use crate::builder::VmBuilder;
use crate::bus::BusError;
use crate::cmdline::CmdlineError;
use crate::cpuid::CpuPolicy;
use crate::device_manager::{LegacyDeviceError, PciDeviceError};
use crate::initrd_module::ModuleError;
use crate::loader::LoaderError;
use crate::memory::{MemoryError, KVM_TSS_ADDR};
use crate::mptable::MptableError;
use crate::pci::{AttachError, PciError};
use crate::stop::ExitCode;
use crate::vcpu::VcpuError;

/// Guest RAM when `--mem` is not given. The guest's boot pays for every
/// page of RAM in emulated kernel code (struct-page init, handing pages to
/// the buddy allocator, the direct map): 64 MiB more cost about 0.7 s of
/// boot on a PVM host. The images' guest has about 24 MiB in use at
/// driver-ready, so 64 MiB leaves it 40 MiB; more with `--mem`.
pub const DEFAULT_MEM_MIB: u64 = 64;

/// Everything a run needs (built from the command line by `cli`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// More initrd parts, loaded after `initrd` (e.g. a cpio with an extra
    /// kernel module); see `loader.rs`.
    pub initrd_extra: Vec<PathBuf>,
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
    /// The dma24 devices, in slot order from 00:01.0 (at most
    /// `pci::MAX_DMA24_DEVICES`).
    pub devices: Vec<device_model::Dma24Config>,
    /// Where the first device's DMA trace goes; the others' files are named
    /// after it (`device_model::trace::device_trace_path`).
    pub trace: Option<PathBuf>,
    /// Size cap of the trace file in bytes (device_model::trace::limit).
    pub trace_max_size: u64,
    /// A kernel module put in front of the initrd for /init to load.
    pub module: Option<PathBuf>,
    pub module_args: Option<String>,
    /// `--profile`: sample where the vCPUs are and write a report here.
    pub profile: Option<PathBuf>,
}

/// Errors setting up or running the VM.
#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error(transparent)]
    BootInfo(#[from] BootInfoError),
    #[error(transparent)]
    LegacyDevices(#[from] LegacyDeviceError),
    #[error(transparent)]
    PciDevices(#[from] PciDeviceError),
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
    #[error(transparent)]
    Pirq(#[from] crate::pirq::PirqError),
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
            | VmError::Cmdline(_)
            | VmError::Module(_)
            | VmError::Profile(crate::profile::ProfileError::Create { .. })
            | VmError::Memory(MemoryError::BadSize(_))
            | VmError::Attach(
                AttachError::Trace(_)
                | AttachError::Options { .. }
                | AttachError::TooManyDevices { .. },
            )
            | VmError::PciDevices(PciDeviceError::Attach(
                AttachError::Trace(_) | AttachError::Options { .. },
            )) => ExitCode::Usage,
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

/// Create a VM with the in-kernel irqchip and PIT (no guest memory yet).
pub fn create_vm(kvm: &Kvm) -> Result<VmFd, VmError> {
    let vm = new_vm(kvm)?;
    create_irq_devices(&vm)?;
    Ok(vm)
}

/// Create a VM with `mem` registered, then the in-kernel irqchip and PIT.
///
/// In that order because on PVM hosts KVM_SET_USER_MEMORY_REGION takes
/// about 7 ms once an irqchip exists and 0.1 ms before (measured on the
/// project's machines, 128 MiB in one slot): most of the VMM's start-up.
pub fn create_vm_with_memory(kvm: &Kvm, mem: &GuestMemoryMmap) -> Result<VmFd, VmError> {
    let vm = new_vm(kvm)?;
    register_memory(&vm, mem)?;
    create_irq_devices(&vm)?;
    Ok(vm)
}

fn new_vm(kvm: &Kvm) -> Result<VmFd, VmError> {
    let vm = kvm.create_vm().map_err(kvm_op("KVM_CREATE_VM"))?;
    let tss = usize::try_from(KVM_TSS_ADDR).map_err(|_| VmError::KvmMissing("a 64-bit host"))?;
    vm.set_tss_address(tss)
        .map_err(kvm_op("KVM_SET_TSS_ADDR"))?;
    Ok(vm)
}

fn create_irq_devices(vm: &VmFd) -> Result<(), VmError> {
    vm.create_irq_chip().map_err(kvm_op("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_op("KVM_CREATE_PIT2"))?;
    Ok(())
}

/// Register every region of `mem` with KVM.
pub fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| VmError::KvmMissing("a host mapping of guest memory"))?;
        let r = kvm_userspace_memory_region {
            slot: u32::try_from(slot).map_err(|_| VmError::KvmMissing("that many memory slots"))?,
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

/// Build and run a VM; returns the exit code for how the guest ended.
pub fn run(cfg: &VmConfig) -> Result<ExitCode, VmError> {
    VmBuilder::new(cfg.clone()).build()?.run()
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
        let e = VmError::Cmdline(CmdlineError::TooLong { len: 9999 });
        assert_eq!(e.exit_code(), ExitCode::Usage);
        let spec = crate::pci::parse_device_spec("dma24").unwrap();
        let trace = crate::pci::open_trace(
            Path::new("/nonexistent-dir/t.jsonl"),
            &spec,
            64 << 20,
            device_model::trace::DEFAULT_MAX_SIZE,
        );
        let e = VmError::Attach(trace.err().unwrap());
        assert_eq!(e.exit_code(), ExitCode::Usage);
    }

    #[test]
    fn bad_inputs_fail_before_kvm_is_opened() {
        // SAFETY: no other test in this binary reads DMALAB_KVM_DEVICE.
        unsafe { std::env::set_var("DMALAB_KVM_DEVICE", "/nonexistent/kvm") };
        let cfg = VmConfig {
            kernel: "/nonexistent/vmlinux".into(),
            initrd: None,
            initrd_extra: Vec::new(),
            cmdline: None,
            mem_mib: 64,
            vcpus: 1,
            cpu: CpuPolicy::Filtered,
            timeout: None,
            boot_marker: None,
            stdin: false,
            devices: Vec::new(),
            trace: None,
            trace_max_size: device_model::trace::DEFAULT_MAX_SIZE,
            module: None,
            module_args: None,
            profile: None,
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
        let e = run(&VmConfig {
            cmdline: Some("a\u{7f}b".into()),
            ..cfg.clone()
        })
        .unwrap_err();
        assert!(matches!(e, VmError::Cmdline(_)), "{e}");
        // A valid kernel: now the missing KVM device is the error.
        let elf = crate::loader::tests::tiny_elf(0x10_0000, &[0xf4], 0x1000, Some(0x10_0000));
        let t = vmm_sys_util::tempfile::TempFile::new().unwrap();
        std::io::Write::write_all(&mut t.as_file(), &elf).unwrap();
        let e = run(&VmConfig {
            kernel: t.as_path().to_path_buf(),
            ..cfg.clone()
        })
        .unwrap_err();
        assert!(matches!(e, VmError::NoKvm(_)), "{e}");
        // --module: a file that is not a .ko, or no initrd for it, is the user's error.
        let initrd = vmm_sys_util::tempfile::TempFile::new().unwrap();
        std::io::Write::write_all(&mut initrd.as_file(), b"070701").unwrap();
        let with_module = VmConfig {
            kernel: t.as_path().to_path_buf(),
            initrd: Some(initrd.as_path().to_path_buf()),
            module: Some(initrd.as_path().to_path_buf()),
            ..cfg.clone()
        };
        let e = run(&with_module).unwrap_err();
        assert!(
            matches!(
                e,
                VmError::Module(crate::initrd_module::ModuleError::NotAModule { .. })
            ),
            "{e}"
        );
        assert_eq!(e.exit_code(), ExitCode::Usage);
        let e = run(&VmConfig {
            initrd: None,
            ..with_module
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                VmError::Module(crate::initrd_module::ModuleError::NoInitrd)
            ),
            "{e}"
        );
        // A missing extra initrd part is the user's error, found before KVM.
        let initrd = vmm_sys_util::tempfile::TempFile::new().unwrap();
        let e = run(&VmConfig {
            kernel: t.as_path().to_path_buf(),
            initrd: Some(initrd.as_path().to_path_buf()),
            initrd_extra: vec!["/nonexistent/module.cpio".into()],
            ..cfg
        })
        .unwrap_err();
        assert!(
            matches!(e, VmError::Loader(LoaderError::InitrdNotFound(_))),
            "{e}"
        );
        assert_eq!(e.exit_code(), ExitCode::Usage);
        // SAFETY: as above.
        unsafe { std::env::remove_var("DMALAB_KVM_DEVICE") };
    }
}
