//! dmalab's virtual machine monitor: boots a Linux guest on `/dev/kvm` with a
//! 16550 console, an i8042 reset line, debug ports (exit, boot timer) and, for
//! the dma24 device, a PCI host bridge.
//!
//! The binary (`src/main.rs`) is a thin shell over [`run`]; the modules are
//! public so the integration tests can drive pieces (a tiny CPUID probe guest,
//! the bus) without a Linux kernel.
//!
//! Design rules (Firecracker's, see README.md): small modules, one error enum
//! per module, `// SAFETY:` on every `unsafe`, and nothing the guest does may
//! panic the VMM.

pub mod boot;
pub mod boot_info;
pub mod builder;
pub mod bus;
pub mod cli;
pub mod cmdline;
pub mod console_tx;
pub mod cpuid;
pub mod debugport;
pub mod device_manager;
pub mod eventloop;
pub mod fault;
pub mod i8042;
pub mod initrd_module;
pub mod kvm_exit;
pub mod loader;
pub mod logger;
pub mod memory;
pub mod mptable;
pub mod pci;
pub mod pirq;
pub mod profile;
pub mod serial;
pub mod serve;
pub mod signals;
pub mod stop;
pub mod vcpu;
pub mod vcpu_threads;
pub mod vm;

pub use builder::{Vm, VmBuilder};
pub use stop::{ExitCode, StopReason};
pub use vm::{run, VmConfig};
