// SPDX-License-Identifier: GPL-2.0

//! KUnit suites that drive a bound dma24: one file per suite, the helpers
//! they share here.
//!
//! They run with no user space: built into the kernel they run at boot after
//! all initcalls (the device is probed by then); in `dmalab.ko` they run at
//! `insmod`, after the driver is registered. Output is KTAP on the console.
//!
//! - No dma24 on the PCI bus: every case is skipped (`# SKIP no dma24 ...`).
//! - A dma24 on the bus that dmalab did not bind: every case fails.
//! - Otherwise each case checks its results and fails on any wrong one.
//!
//! Cases run on the bound device with the lowest index. Each prints, as a
//! KTAP diagnostic, how many transfers it started (`STARTs`) and what the
//! device counted, so the host trace can be matched against the suites:
//! planted faults are the cases of `dmalab_faults` (see README.md).
//!
//! Conventions: a case collects its results with [`Dma24::with_live`] and
//! checks them afterwards (a failed KUnit assertion ends the test thread at
//! once, which must not happen with the transfer mutex held or a DMA mapping
//! alive). Checks are gathered in [`Checks`] and reported one per line.

use crate::{
    alloc_lab::{count_mismatches, devmem_mismatches, fill, Allocator, Mapping, RoundTrip},
    chardev::{self, Dma24Selftest},
    dma_raw, pattern,
    probe::MASK_REFUSED,
    registry,
    regs::*,
    state::{get, DevCounters, Dma24, ErrorSource, IrqMode, LastError, Registers},
    sys,
    transfer::{eopnotsupp, eproto, errno_for, Dir, Live, CHUNK},
};
use kernel::{bindings, io::Io, prelude::*, sync::Arc};

/// The PCI Command register and two of its bits, from the kernel's
/// `pci_regs.h`, typed for `config_space()` accesses.
const PCI_COMMAND: usize = bindings::PCI_COMMAND as usize;
const PCI_COMMAND_MEMORY: u16 = bindings::PCI_COMMAND_MEMORY as u16;
const PCI_COMMAND_MASTER: u16 = bindings::PCI_COMMAND_MASTER as u16;

/// Prints a KTAP diagnostic line inside a test case.
macro_rules! diag {
    ($($arg:tt)+) => {
        pr_info!("    # {}\n", format_args!($($arg)+))
    };
}

/// Failed checks of one case; each failure is printed as it happens.
struct Checks {
    failed: usize,
}

impl Checks {
    fn new() -> Self {
        Self { failed: 0 }
    }

    fn check(&mut self, ok: bool, what: core::fmt::Arguments<'_>) {
        if !ok {
            self.failed += 1;
            pr_err!("    # FAILED: {}\n", what);
        }
    }

    fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

/// `check!(checks, condition, "what was expected {}", args...)`.
macro_rules! check {
    ($c:expr, $cond:expr, $($fmt:tt)+) => {
        $c.check($cond, format_args!($($fmt)+))
    };
}

/// The device under test; `None` after marking the case skipped (no dma24 on
/// the bus) or failed (a dma24 that dmalab did not bind).
fn device_under_test() -> Option<Arc<Dma24>> {
    if let Some(dev) = registry::first_live_device() {
        return Some(dev);
    }
    if sys::pci_device_present(VENDOR_ID, DEVICE_ID) {
        if MASK_REFUSED.load(kernel::sync::atomic::Relaxed) != 0 {
            sys::kunit_skip("dmalab refused the dma24: its DMA mask is narrower than ZONE_DMA");
            return None;
        }
        pr_err!("    # a dma24 (1234:d024) is on the PCI bus but dmalab did not bind it: see the probe messages\n");
        sys::kunit_fail("dma24 present but not bound by dmalab");
    } else {
        sys::kunit_skip("no dma24 device (1234:d024) on the PCI bus");
    }
    None
}

/// `off` if `len` bytes fit there in device memory of `size` bytes, else 0.
fn fit(off: usize, len: usize, size: usize) -> usize {
    if off + len <= size {
        off
    } else {
        0
    }
}

/// STARTs and device counters at one point in time.
struct Tally {
    starts: u64,
    dev: DevCounters,
}

fn tally(dev: &Dma24) -> Tally {
    Tally {
        starts: get(&dev.stats.starts),
        dev: dev.device_counters().unwrap_or_default(),
    }
}

/// Prints what a case did to the device, for matching with the host trace.
fn report(dev: &Dma24, before: &Tally) -> (u64, u64, u64) {
    let now = tally(dev);
    let starts = now.starts - before.starts;
    let ok = now.dev.transfers.wrapping_sub(before.dev.transfers);
    let faults = now.dev.faults.wrapping_sub(before.dev.faults);
    diag!(
        "{}: {} STARTs; device counted {} transfers, {} faults",
        dev.label(),
        starts,
        ok,
        faults
    );
    (starts, ok, faults)
}

/// Checks of a lab or data round trip that should have worked.
fn check_round_trip(c: &mut Checks, what: &str, rt: &RoundTrip) {
    check!(c, rt.result.is_ok(), "{}: round trip failed: {:?}", what, rt.result);
    check!(c, rt.devmem_mismatches == 0, "{}: {} bytes differ in device memory (readb)", what, rt.devmem_mismatches);
    check!(c, rt.mismatches == 0, "{}: {} bytes differ after reading back", what, rt.mismatches);
    check!(c, rt.device_transfers == 2, "{}: device counted {} transfers, expected 2", what, rt.device_transfers);
}

fn with_device_failed(e: Error) -> bool {
    pr_err!("    # FAILED: could not use the device: {:?}\n", e);
    false
}

mod alloc_lab;
mod alloc_lab2;
mod alloc_lab3;
mod faults;
mod lifecycle;
mod probe;
mod transfer;
mod uapi;
mod zerocopy;
