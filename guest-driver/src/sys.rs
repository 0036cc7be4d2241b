// SPDX-License-Identifier: GPL-2.0

//! Small non-DMA pieces the 7.2 Rust API lacks, as safe wrappers over
//! `kernel::bindings`:
//!
//! - [`IrqCompletion`]: a `struct completion` with `reinit_completion()`,
//!   `complete()` (callable from hard-IRQ context) and
//!   `wait_for_completion_timeout()`; `kernel::sync::Completion` only has
//!   `complete_all()` and an unbounded wait.
//! - [`kunit_skip`]: `kunit_mark_skipped()` for the current KUnit test (the
//!   Rust `#[kunit_tests]` macro has no skip).
//! - [`kunit_fail`]: mark the current KUnit test failed with a reason, without
//!   aborting it (an abort would skip unlocking and unmapping).
//! - [`pci_device_present`]: is a function with given IDs on the PCI bus,
//!   bound or not.
//! - [`disable_on_unbind`]: `pci_disable_device()` when the device is unbound
//!   (the Rust PCI API enables a device but has no managed disable).
//! - [`release_driver`] / [`attach_driver`]: unbind a device from its driver
//!   and probe it again (`device_release_driver()`, `device_attach()`), for
//!   the KUnit unbind/rebind cycle.

use crate::dma_raw::raw_dev;
use kernel::{
    bindings,
    device::{Core, Device},
    devres, pci,
    prelude::*,
    sync::aref::ARef,
    time::msecs_to_jiffies,
    types::Opaque,
};

/// A completion signalled by the interrupt handler and waited for, with a
/// timeout, by the task that started a transfer.
#[pin_data]
pub(crate) struct IrqCompletion {
    #[pin]
    inner: Opaque<bindings::completion>,
}

// SAFETY: A `struct completion` is designed to be signalled and waited on from any task or IRQ
// context; all its state is protected by its internal lock.
unsafe impl Send for IrqCompletion {}
// SAFETY: See above.
unsafe impl Sync for IrqCompletion {}

impl IrqCompletion {
    /// `init_completion()`.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- Opaque::ffi_init(|slot: *mut bindings::completion| {
                // SAFETY: `slot` is valid, pinned, uninitialised memory for a completion.
                unsafe { bindings::init_completion(slot) };
            }),
        })
    }

    /// `reinit_completion()`: forget earlier `complete()` calls. Called before each transfer is
    /// started, while the device has no interrupt pending for it.
    pub(crate) fn reinit(&self) {
        // SAFETY: `inner` is an initialised completion. `reinit_completion()` is a static inline
        // that stores 0 to `done`; this does the same, as a volatile store like the C code's
        // plain store.
        unsafe { core::ptr::addr_of_mut!((*self.inner.get()).done).write_volatile(0) };
    }

    /// `complete()`: wake the waiter. Safe in hard-IRQ context.
    pub(crate) fn complete(&self) {
        // SAFETY: `inner` is an initialised completion.
        unsafe { bindings::complete(self.inner.get()) };
    }

    /// `wait_for_completion_timeout()`. Returns `true` if completed, `false` on timeout.
    pub(crate) fn wait_timeout_ms(&self, ms: u32) -> bool {
        let jiffies = msecs_to_jiffies(ms).max(1);
        // SAFETY: `inner` is an initialised completion; we are in process context (callers hold
        // a mutex, so they may sleep).
        unsafe { bindings::wait_for_completion_timeout(self.inner.get(), jiffies) != 0 }
    }
}

/// Sets the running KUnit test's status and status comment (the text after
/// `# SKIP` in KTAP). Does nothing outside KUnit.
fn kunit_set_status(status: bindings::kunit_status, reason: &str) {
    // SAFETY: FFI call without preconditions.
    let test = unsafe { bindings::kunit_get_current_test() };
    if test.is_null() {
        return;
    }
    // SAFETY: `test` is the current task's running test, valid until the test function returns;
    // only this task writes `status` and `status_comment` while the test runs.
    unsafe {
        let comment = &mut (*test).status_comment;
        let n = reason.len().min(comment.len() - 1);
        for (dst, src) in comment.iter_mut().zip(reason.as_bytes()[..n].iter()) {
            *dst = *src as c_char;
        }
        comment[n] = 0;
        core::ptr::addr_of_mut!((*test).status).write_volatile(status);
    }
}

/// Marks the running KUnit test as skipped with `reason`, like `kunit_mark_skipped()`.
/// The test should then return without asserting anything.
pub(crate) fn kunit_skip(reason: &str) {
    kunit_set_status(bindings::kunit_status_KUNIT_SKIPPED, reason);
}

/// Marks the running KUnit test as failed; the caller logs why and returns.
pub(crate) fn kunit_fail(reason: &str) {
    kunit_set_status(bindings::kunit_status_KUNIT_FAILURE, reason);
}

/// `device_release_driver()`: unbinds `dev` from its driver (runs the
/// driver's remove path and releases its devres resources).
pub(crate) fn release_driver(dev: &Device) {
    // SAFETY: `dev` is a live, registered device (the reference keeps it alive); the call takes
    // the device lock itself and must not be made with it held, which we do not.
    unsafe { bindings::device_release_driver(raw_dev(dev)) };
}

/// `device_attach()`: probes drivers for `dev`. `Ok(true)` if one bound.
pub(crate) fn attach_driver(dev: &Device) -> Result<bool> {
    // SAFETY: As for `release_driver()`.
    let ret = unsafe { bindings::device_attach(raw_dev(dev)) };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(ret == 1)
}

/// Whether a PCI function with the given IDs exists (bound to a driver or not).
pub(crate) fn pci_device_present(vendor: u16, device: u16) -> bool {
    // SAFETY: FFI call; `from == NULL` starts a new search. The result holds a reference.
    let pdev = unsafe {
        bindings::pci_get_device(vendor.into(), device.into(), core::ptr::null_mut())
    };
    if pdev.is_null() {
        return false;
    }
    // SAFETY: `pdev` was returned with a reference by `pci_get_device()`; dropped once.
    unsafe { bindings::pci_dev_put(pdev) };
    true
}

/// Undoes `pci_enable_device_mem()` when dropped.
struct PciEnabled(ARef<pci::Device>);

impl Drop for PciEnabled {
    fn drop(&mut self) {
        let pdev: &pci::Device = &self.0;
        // CAST: `pci::Device` is a `#[repr(transparent)]` wrapper of `Opaque<struct pci_dev>`.
        let raw = core::ptr::from_ref(pdev).cast_mut().cast::<bindings::pci_dev>();
        // SAFETY: `raw` is a live PCI device (we hold a reference) that probe enabled once with
        // `pci_enable_device_mem()`; this is the matching disable, run once by devres on unbind.
        unsafe { bindings::pci_disable_device(raw) };
    }
}

/// Registers a devres action that calls `pci_disable_device()` on unbind,
/// after the driver's other device resources are released (devres runs in
/// reverse order, so call this right after enabling the device).
pub(crate) fn disable_on_unbind(pdev: &pci::Device<Core<'_>>) -> Result {
    let dev: &Device<Core<'_>> = pdev.as_ref();
    devres::register(dev, PciEnabled(pdev.into()), GFP_KERNEL)
}
