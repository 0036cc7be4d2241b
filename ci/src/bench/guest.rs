//! How every bench boot is set up: the marker it waits for, the guest's size
//! and the command-line additions (the same for dmalab and QEMU).

/// Console line the initramfs prints once `insmod dmalab.ko` succeeded.
pub const DRIVER_READY: &str = "dmalab-init: insmod dmalab ok";

/// Guest RAM and vCPUs of every boot (dmalab's defaults).
pub const MEM_MIB: u64 = vmm::vm::DEFAULT_MEM_MIB;

pub const VCPUS: u32 = 1;

/// Added to dmalab's default command line for both VMMs: the DMA-API debug
/// table the demo uses, no self-test after the driver loads (the boot
/// benchmark stops at driver-ready; the init still reboots at once), and no
/// KUnit run inside `insmod` (the images' module carries no suites since
/// they moved to vmlinux-kunit only; this keeps a `--module` built with
/// DMALAB_KUNIT=y comparable: suites are tests, not driver start-up).
pub const BOOT_EXTRA: &str = "dmalab.run=none kunit.enable=0";

pub use ci::vfio_user::QEMU_ONLY;

pub const QEMU_CPU: &str = "host,arch-capabilities=off";
