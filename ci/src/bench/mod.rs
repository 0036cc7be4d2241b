//! `cargo xtask bench`: what a user would compare, measured side by side in
//! one run on one machine, printed as a table (with targets) and written as
//! JSON. Benchmarks, not tests: timings never fail the command; a part that
//! cannot run yet prints "not measured: why" instead.
//!
//! Parts (each can be picked with `--only`):
//! - `boot`: the same guest kernel and initramfs booted by dmalab and by
//!   QEMU (`-enable-kvm -kernel vmlinux`, PVH), same RAM, vCPUs and kernel
//!   command line, interleaved runs; wall time from process spawn to the
//!   console line `dmalab-init: insmod dmalab ok` (driver ready), the guest's
//!   own printk times, dmalab's start-to-first-instruction log, and the
//!   resident memory of each VMM beyond the guest RAM it touched.
//! - `initcall`: one more dmalab boot with `initcall_debug`: the ten slowest
//!   initcalls and where boot time goes, for tuning the image config.
//! - `mmio`: `cargo bench -p ci --bench mmio`: host-side bus dispatch to a
//!   dma24 register (criterion) and the round trip of a register access from
//!   a mini guest through dmalab's vCPU loop.
//! - `dma`: `cargo bench -p device-model --bench dma` (engine against memcpy,
//!   trace off/on, START to idle) and, when dmalab can attach the device, the
//!   end-to-end transfer rate of the guest's `dma24-tool selftest`.
//! - `trace`: `cargo bench -p trace-report --bench report`: the HTML report
//!   and the Chrome export of a generated million-record trace, next to
//!   `trace summary` of the same file.
//! - `zerocopy`: one boot with a 32-bit-mask dma24: read()/write(), mmap +
//!   ioctl and user-page DMA side by side (`dma24-tool bench`), fits.
//! - `vfio`: the same guest under dmalab and under QEMU + `dmalab serve`
//!   (vfio-user): driver-ready, read()/write() rate, one register read.
//!
//! Each part returns its own result; this file assembles the report.

mod analysis;
mod boot;
mod console;
mod criterion;
mod dma;
mod guest;
mod initcall;
mod inputs;
mod kunit_time;
mod machine;
mod memory;
mod mmio;
mod options;
mod report;
mod stats;
mod table;
mod tiny_kernel;
mod trace;
mod vfio;
mod vmm;
mod zerocopy;

use std::path::Path;
use std::time::Instant;

use ci::build;
use ci::guest::cache_dir;
use thiserror::Error;

use self::boot::{boot_part, BootPart};
use self::dma::{dma_part, DmaPart};
use self::initcall::{initcall_part, InitcallPart};
use self::inputs::{progress, Inputs};
use self::machine::{loadavg, machine};
use self::mmio::{mmio_part, MmioPart};
use self::options::{parse_options, Part, USAGE};
use self::report::{print_report, Report};
use self::table::row;
use self::trace::{trace_part, TracePart};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Options(String),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the report: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn run(args: &[String]) -> Result<(), BenchError> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let out = cache_dir().join("bench");
    let opts = parse_options(args, out.join("latest.json")).map_err(BenchError::Options)?;
    let started = Instant::now();
    // Logs of this run only (a part skipped now must not leave an old log).
    let _ = std::fs::remove_dir_all(out.join("logs"));
    std::fs::create_dir_all(out.join("logs")).map_err(|source| BenchError::CreateDir {
        path: out.display().to_string(),
        source,
    })?;
    progress(&format!(
        "parts {:?}, {} boot(s) per VMM{}; logs in {}",
        opts.parts,
        opts.runs,
        if opts.quick { ", quick" } else { "" },
        out.join("logs").display()
    ));
    let needs_guest = opts.parts.iter().any(|p| {
        matches!(
            p,
            Part::Boot | Part::Initcall | Part::Dma | Part::Zerocopy | Part::Vfio
        )
    });
    let (images, dmalab) = if needs_guest {
        progress("guest images (images/build.sh; cached after the first time)");
        let images = build::images().map_err(|e| e.to_string());
        progress("dmalab (cargo build --release -p vmm)");
        let dmalab = build::dmalab().map_err(|e| e.to_string());
        (images, dmalab)
    } else {
        (Err("not needed".into()), Err("not needed".into()))
    };
    let inputs = Inputs {
        opts,
        out,
        images,
        dmalab,
    };
    let mut report = Report {
        machine: machine(),
        options: Some(inputs.opts.clone()),
        ..Report::default()
    };
    if let Ok(dir) = &inputs.images {
        report.machine.images = images_summary(dir);
    }
    if report
        .machine
        .loadavg_start
        .split(' ')
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        > Some(1.0)
    {
        report.notes.push(format!(
            "the machine was busy when the bench started (load average {}): timings are noisy",
            report.machine.loadavg_start
        ));
    }
    let parts = &inputs.opts.parts;
    if parts.contains(&Part::Boot) {
        add_boot(&mut report, boot_part(&inputs));
    }
    if parts.contains(&Part::Initcall) {
        add_initcall(&mut report, initcall_part(&inputs));
    }
    if parts.contains(&Part::Mmio) {
        add_mmio(&mut report, mmio_part(&inputs));
    }
    if parts.contains(&Part::Dma) {
        add_dma(&mut report, dma_part(&inputs));
    }
    if parts.contains(&Part::Zerocopy) {
        report.rows.extend(zerocopy::zerocopy_part(&inputs));
    }
    if parts.contains(&Part::Vfio) {
        report.rows.extend(vfio::vfio_part(&inputs));
    }
    if parts.contains(&Part::Mmio) || parts.contains(&Part::Dma) {
        driver_mmio_row(&mut report, parts.contains(&Part::Boot));
    }
    if parts.contains(&Part::Trace) {
        add_trace(&mut report, trace_part(&inputs));
    }
    report.machine.loadavg_end = loadavg();
    report.duration_s = started.elapsed().as_secs_f64();
    print_report(&report);
    let json = serde_json::to_string_pretty(&report)?;
    let path = &inputs.opts.json;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, json + "\n").map_err(|source| BenchError::Write {
        path: path.display().to_string(),
        source,
    })?;
    println!("JSON: {}", path.display());
    Ok(())
}

fn add_boot(report: &mut Report, part: BootPart) {
    report.rows.extend(part.rows);
    report.notes.extend(part.notes);
    report.boots.extend(part.boots);
    report.phases = part.phases;
    if let Some(v) = part.qemu_version {
        report.machine.qemu = v;
    }
    report.qemu_command = part.qemu_command;
    report.dmalab_cmdline = part.dmalab_cmdline;
    report.driver_mmio_read = part.driver_mmio_read;
}

fn add_initcall(report: &mut Report, part: InitcallPart) {
    report.rows.extend(part.rows);
    report.notes.extend(part.notes);
    report.initcalls_top10 = part.top10;
    report.initcall_boot = part.boot;
}

fn add_mmio(report: &mut Report, part: MmioPart) {
    report.rows.extend(part.rows);
    report.criterion.extend(part.criterion);
    report.mmio_guest = part.guest;
}

fn add_trace(report: &mut Report, part: TracePart) {
    report.rows.extend(part.rows);
    report.trace_report = part.run;
}

fn add_dma(report: &mut Report, part: DmaPart) {
    report.rows.extend(part.rows);
    report.notes.extend(part.notes);
    report.criterion.extend(part.criterion);
    report.e2e = part.e2e;
    report.e2e_boot = part.e2e_boot;
    // The module boots carry no KUnit suites: the round trip comes from the
    // boot part's built-in KUnit boot, unless a module with suites ran here.
    if part.driver_mmio_read.is_some() {
        report.driver_mmio_read = part.driver_mmio_read;
    }
}

/// The register round trip as the Linux driver sees it, placed after the
/// other MMIO rows.
fn driver_mmio_row(report: &mut Report, boot_ran: bool) {
    let r = row(
        "mmio",
        "register read round trip, from the Linux driver (per readl)",
        "the driver's KUnit case register_read_round_trip (dmalab_probe suite, run at boot by vmlinux-kunit in the boot part's KUnit boot with the device): 200 readl() of REG_MAGIC timed with the guest's monotonic clock, mean per read",
    );
    let r = match report.driver_mmio_read {
        Some((ns, reads)) => r.value(
            ns / 1e3,
            "µs",
            format!("{:.1} µs (mean of {reads} reads, one boot)", ns / 1e3),
        ),
        None if !boot_ran => r.not_measured(
            "it comes from the boot part's built-in KUnit boot: run with --only including boot",
        ),
        None => r.not_measured(
            "no 'mmio_read_ns=' line on the console of the built-in KUnit boot (the driver's KUnit case register_read_round_trip did not run or print)",
        ),
    };
    let at = report
        .rows
        .iter()
        .rposition(|row| row.part == "mmio")
        .map_or(report.rows.len(), |i| i + 1);
    report.rows.insert(at, r);
}

/// The images folder, its cache keys and the sizes that set boot time.
fn images_summary(dir: &Path) -> String {
    let manifest = std::fs::read_to_string(dir.join("manifest.txt")).unwrap_or_default();
    let keys: Vec<&str> = manifest
        .lines()
        .filter(|l| l.contains("_key=") || l.starts_with("kernel_pkg="))
        .collect();
    let size = |f: &str| {
        std::fs::metadata(dir.join(f))
            .map(|m| format!("{f} {:.2} MiB", m.len() as f64 / (1 << 20) as f64))
            .unwrap_or_default()
    };
    format!(
        "{} ({}; {}, {}, {})",
        dir.display(),
        keys.join(", "),
        size("vmlinux"),
        size("initramfs.cpio"),
        size("dmalab.ko")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_mmio_row_follows_the_mmio_rows() {
        let mut r = Report::default();
        r.rows.push(row("mmio", "a", ""));
        r.rows.push(row("dma", "b", ""));
        r.driver_mmio_read = Some((14250.0, 200));
        driver_mmio_row(&mut r, true);
        assert_eq!(r.rows[1].part, "mmio");
        assert_eq!(r.rows[1].value, Some(14.25));
        let mut r = Report::default();
        driver_mmio_row(&mut r, false);
        assert!(r.rows[0].shown.starts_with("not measured"));
    }
}
