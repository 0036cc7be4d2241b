//! dma24 under QEMU: `dmalab serve` hosts the same device model over
//! vfio-user and QEMU's `vfio-user-pci` drives it, so QEMU's own code reads
//! the config space, sizes the BARs, sets up MSI/INTx and maps guest RAM.
//! The same guest images and the same checks as boot_transfer.rs (KTAP,
//! trace cross-checks, planted faults, `dma-api error_count`).
//!
//! Two boots (QEMU's firmware alone costs 18-27 s of guest clock on PVM):
//! the KUnit kernel on the default 24-bit device with INTx, and the
//! module and tool guest on a 32-bit device with MSI. On PVM hosts a kernel
//! WARN() kills a QEMU guest (see `ci::vfio_user::PVM_NO_WARN`), so there
//! the boots leave out what plants WARNs on purpose: the allocator-lab
//! suites, and the tool's zero-copy refusals of the 24-bit device (hence
//! the 32-bit module boot).

#![forbid(unsafe_code)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use ci::crosscheck::{self, Trace};
use ci::guest::{Artifacts, GuestSpec};
use ci::vfio_user;
use common::*;
use device_model::Outcome;

struct QemuBooted {
    b: Booted,
    server_exit: Option<i32>,
}

fn boot(spec: GuestSpec) -> Option<QemuBooted> {
    let artifacts = Artifacts::for_test(&spec.name)?;
    let qemu = vfio_user::qemu().unwrap_or_else(|e| panic!("{}: no QEMU: {e}", spec.name));
    let r = vfio_user::boot(&artifacts, &qemu, &spec, &out_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    let trace =
        r.run.trace.as_ref().map(|p| {
            Trace::load(p).unwrap_or_else(|e| panic!("{}: {e}\n{}", spec.name, tail(&r.run)))
        });
    Some(QemuBooted {
        b: Booted {
            run: r.run,
            trace,
            no_warnings: vfio_user::host_is_pvm(),
        },
        server_exit: r.server_exit,
    })
}

/// [`spec`] with more time: QEMU's firmware and the socket round trips.
fn qemu_spec(name: &str, kernel: &str, cmdline: &str, device: &str) -> GuestSpec {
    GuestSpec {
        timeout: Duration::from_secs(900),
        ..spec(name, kernel, cmdline, device)
    }
}

/// The KUnit kernel, default device (24 bits, reject), INTx forced (the
/// module boot below uses MSI); the suites only (`dmalab.run=none`: the
/// tool's 24-bit zero-copy refusals WARN).
fn kunit_qemu() -> Option<&'static QemuBooted> {
    static RUN: OnceLock<Option<QemuBooted>> = OnceLock::new();
    RUN.get_or_init(|| {
        boot(qemu_spec(
            "qemu-kunit-reject",
            "vmlinux-kunit",
            "dmalab.run=none dmalab.force_intx=1",
            "dma24",
        ))
    })
    .as_ref()
}

/// The module kernel: init loads dmalab.ko, runs dma24-tool (transfers,
/// mmap, zero copy, the allocator lab from user space), removes the module.
fn module_qemu() -> Option<&'static QemuBooted> {
    static RUN: OnceLock<Option<QemuBooted>> = OnceLock::new();
    RUN.get_or_init(|| {
        boot(qemu_spec(
            "qemu-module-mask32",
            "vmlinux",
            "kunit.enable=0",
            "dma24,mask-bits=32",
        ))
    })
    .as_ref()
}

/// The server ended on its own when QEMU left (exit 0), and QEMU never sent
/// it anything it had to refuse: our device answered QEMU's vfio-user code
/// in every case.
fn check_server(q: &QemuBooted) {
    let console = &q.b.run.console;
    assert_eq!(
        q.server_exit,
        Some(0),
        "dmalab serve exit\n{}",
        tail(&q.b.run)
    );
    assert!(
        console.contains("client disconnected"),
        "{}",
        tail(&q.b.run)
    );
    assert!(
        console.contains("): RAM"),
        "QEMU mapped no RAM for DMA\n{}",
        tail(&q.b.run)
    );
    let refused: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("] client command ") && l.contains(" refused: "))
        .collect();
    assert!(refused.is_empty(), "the server refused QEMU: {refused:?}");
    assert!(!console.contains("panicked"), "{}", tail(&q.b.run));
}

#[test]
fn kunit_suites_pass_under_qemu_with_the_device_over_vfio_user_and_intx() {
    let Some(q) = kunit_qemu() else { return };
    check_clean_exit(&q.b);
    check_kunit(&q.b, &[]);
    check_server(q);
    assert!(
        q.b.run.console.contains("Intx, /dev/dma24-0"),
        "the driver did not use INTx (QEMU's INTx through the server's eventfd)\n{}",
        tail(&q.b.run)
    );
}

#[test]
fn qemu_trace_holds_the_suites_transfers_and_the_planted_faults() {
    let Some(q) = kunit_qemu() else { return };
    let t = check_trace_complete(&q.b);
    let starts = reported_starts(&q.b.run.console);
    assert!(starts > 0, "no STARTs reported\n{}", tail(&q.b.run));
    assert_eq!(
        transfers_in(t).len() as u64,
        starts,
        "transfers in the trace vs STARTs the suites reported"
    );
    assert_eq!(
        fault_counts(t),
        planted_faults_reject(),
        "faults in the trace vs the planted ones (nothing unexpected, e.g. no rejected_ram: every address the driver used was in a map QEMU sent)"
    );
    assert_eq!(t.header.mask_bits, 24);
    check_driver_round_trips(&q.b);
    for r in t.records.iter().filter(|r| r.outcome != Outcome::Ok) {
        assert_eq!(r.hash, None, "a refused access moved bytes: {r:?}");
    }
}

#[test]
fn module_and_tool_under_qemu_with_the_device_over_vfio_user() {
    let Some(q) = module_qemu() else { return };
    let b = &q.b;
    check_clean_exit(b);
    check_server(q);
    assert!(
        b.run.console.contains("Msi, /dev/dma24-0"),
        "the driver did not use MSI (QEMU's MSI through the server's eventfd)\n{}",
        tail(&b.run)
    );
    check_module_lifecycle(b);
    let init = b.run.init_lines();
    // QEMU places the device itself: whatever slot, it is dma24 and bound.
    assert!(
        init.iter().any(|l| l.starts_with("pci ")
            && l.contains(" vendor=0x1234 device=0xd024")
            && l.ends_with("driver=bound")),
        "the guest did not list the bound dma24: {init:?}"
    );
    check_tool(b);
    check_user_page_zero_copy_32(b);
    // The tool's transfers are all there is in this boot (no KUnit).
    let t = check_trace_complete(b);
    assert_eq!(
        transfers_in(t).len() as u64,
        crosscheck::tool_starts(&b.run.console),
        "transfers in the trace vs the tool's STARTs"
    );
    // The tool plants nothing the device refuses: any fault here would be
    // ours (e.g. rejected_ram for an address QEMU did map).
    assert!(
        fault_counts(t).is_empty(),
        "unexpected faults: {:?}\n{}",
        fault_counts(t),
        tail(&b.run)
    );
}
