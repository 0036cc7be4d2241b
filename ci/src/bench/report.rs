//! The whole report (written as JSON) and its printout.

use std::collections::BTreeMap;

use serde::Serialize;

use super::analysis::{Boot, Phase};
use super::criterion::Estimate;
use super::dma::E2eCase;
use super::guest::DRIVER_READY;
use super::initcall::Initcall;
use super::machine::Machine;
use super::mmio::MmioGuest;
use super::options::Options;
use super::table::{fmt_ns, render_table, Row};
use super::trace::TraceReportRun;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub options: Option<Options>,
    pub duration_s: f64,
    pub rows: Vec<Row>,
    pub dmalab_cmdline: Option<String>,
    pub qemu_command: Option<String>,
    pub boots: Vec<Boot>,
    pub initcalls_top10: Vec<Initcall>,
    pub initcall_boot: Option<Boot>,
    pub phases: Vec<Phase>,
    pub criterion: BTreeMap<String, Estimate>,
    pub mmio_guest: Option<MmioGuest>,
    pub e2e: Vec<E2eCase>,
    pub e2e_boot: Option<Boot>,
    /// From the driver's KUnit case in the end-to-end boot: (ns per readl, reads).
    pub driver_mmio_read: Option<(f64, u64)>,
    pub trace_report: Option<TraceReportRun>,
    pub notes: Vec<String>,
}

pub(super) fn print_report(r: &Report) {
    let m = &r.machine;
    println!();
    println!("dmalab bench, {} ({}), git {}", m.date, m.hostname, m.git);
    println!(
        "machine: {}, {} CPUs, {:.1} GiB, host kernel {}, KVM: {}",
        m.cpu, m.cpus, m.mem_gib, m.host_kernel, m.kvm
    );
    println!(
        "load average at start {} / end {}; took {:.0} s; {}",
        m.loadavg_start, m.loadavg_end, r.duration_s, m.qemu
    );
    if !m.images.is_empty() {
        println!("images: {}", m.images);
    }
    println!();
    print!("{}", render_table(&r.rows));
    if !r.boots.is_empty() {
        println!();
        println!("Boots (wall = process spawn to {DRIVER_READY:?} on the console):");
        for b in &r.boots {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
            println!(
                "  {:<6} run {}: wall {} s, guest Run /init {} s, guest driver-ready ~{} s, ended after {:.1} s (exit {:?}){}",
                b.vmm,
                b.run,
                f(b.driver_ready_wall_s),
                f(b.run_init_guest_s),
                f(b.driver_ready_guest_s_est),
                b.total_wall_s,
                b.exit_code,
                b.killed.as_ref().map_or(String::new(), |k| format!(", killed: {k}"))
            );
        }
    }
    if !r.phases.is_empty() {
        println!();
        println!("Where the guest's boot time goes (dmalab, printk times):");
        for p in &r.phases {
            println!(
                "  {:>7.2} s  {:<55} ({:.2} -> {:.2})",
                p.to_s - p.from_s,
                p.name,
                p.from_s,
                p.to_s
            );
        }
    }
    if !r.initcalls_top10.is_empty() {
        println!();
        println!(
            "Slowest initcalls (dmalab boot with initcall_debug ignore_loglevel initramfs_async=0):"
        );
        for i in &r.initcalls_top10 {
            println!("  {:>9.3} s  {}", i.usecs as f64 / 1e6, i.name);
        }
    }
    let dma: Vec<_> = r
        .criterion
        .iter()
        .filter(|(k, _)| !k.starts_with("mmio"))
        .collect();
    if !dma.is_empty() {
        println!();
        println!("device-model criterion medians (95 % interval of the median):");
        for (k, e) in dma {
            println!(
                "  {:<45} {:>10}  [{} .. {}]",
                k,
                fmt_ns(e.median_ns),
                fmt_ns(e.median_lower_ns),
                fmt_ns(e.median_upper_ns)
            );
        }
    }
    if !r.e2e.is_empty() {
        println!();
        println!("dma24-tool selftest transfers (host time between its console lines):");
        for c in &r.e2e {
            println!(
                "  len {:>6} at offset {:>6}: {}",
                c.len,
                c.offset,
                c.host_s.map_or(
                    "(first of the test: no previous transfer line to time it from)".into(),
                    |s| format!(
                        "{:.1} ms, {:.0} KiB/s moved (2 x len)",
                        s * 1e3,
                        2.0 * c.len as f64 / s / 1024.0
                    )
                )
            );
        }
    }
    if let Some(c) = &r.qemu_command {
        println!();
        println!("QEMU command: {c}");
    }
    if !r.notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &r.notes {
            println!("  - {n}");
        }
    }
    println!();
    println!("How each figure is measured:");
    let mut seen = std::collections::BTreeSet::new();
    for row in &r.rows {
        if !row.how.is_empty() && seen.insert(row.how.clone()) {
            println!("  - {}: {}", row.metric, row.how);
        }
    }
}
