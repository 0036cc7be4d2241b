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
//! - `zerocopy`: one boot with a 32-bit-mask dma24: read()/write(), mmap +
//!   ioctl and user-page DMA side by side (`dma24-tool bench`), fits.

mod analysis;
mod boot;
mod console;
mod criterion;
mod dma;
mod initcall;
mod machine;
mod memory;
mod mmio;
mod options;
mod report;
mod stats;
mod table;
mod tiny_kernel;
mod vmm;
mod zerocopy;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ci::guest::cache_dir;

use crate::{demo, images};

use self::boot::boot_part;
use self::dma::dma_part;
use self::initcall::initcall_part;
use self::machine::{loadavg, machine};
use self::mmio::{driver_mmio_row, mmio_part};
use self::options::{parse_options, Options, Part, USAGE};
use self::report::{print_report, Report};

/// Console line the initramfs prints once `insmod dmalab.ko` succeeded.
pub const DRIVER_READY: &str = "dmalab-init: insmod dmalab ok";

/// Guest RAM and vCPUs of every boot (dmalab's defaults).
const MEM_MIB: u64 = 128;

const VCPUS: u32 = 1;

/// Added to dmalab's default command line for both VMMs: the DMA-API debug
/// table demo.rs uses, no self-test after the driver loads (the boot
/// benchmark stops at driver-ready; the init still reboots at once), and no
/// KUnit run inside `insmod` (the module carries the driver's suites; they
/// are tests, not driver start-up: 7 s on PVM).
const BOOT_EXTRA: &str = "dmalab.run=none kunit.enable=0";

/// QEMU only: on PVM hosts the kernel's int3 self-test cannot be emulated;
/// dmalab completes it by injecting #BP, QEMU cannot, so the patched kernel
/// skips it (images/patches/0002-...).
const QEMU_ONLY: &str = "no_int3_selftest";

const QEMU_CPU: &str = "host,arch-capabilities=off";

struct Ctx {
    opts: Options,
    out: PathBuf,
    images: Result<PathBuf, String>,
    dmalab: Result<PathBuf, String>,
    report: Report,
}

impl Ctx {
    /// The images folder and dmalab binary a boot needs; when either is
    /// missing, records `metric` as not measured (and why) and returns None.
    fn guest_artifacts(
        &mut self,
        part: &str,
        metric: &str,
        how: &str,
    ) -> Option<(PathBuf, PathBuf)> {
        match (&self.images, &self.dmalab) {
            (Ok(i), Ok(d)) => Some((i.clone(), d.clone())),
            (Err(e), _) | (_, Err(e)) => {
                let why = format!("no images or no dmalab: {e}");
                self.report
                    .rows
                    .push(table::row(part, metric, how).not_measured(&why));
                None
            }
        }
    }
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let out = cache_dir().join("bench");
    let opts = parse_options(args, out.join("latest.json"))?;
    let started = Instant::now();
    // Logs of this run only (a part skipped now must not leave an old log).
    let _ = std::fs::remove_dir_all(out.join("logs"));
    std::fs::create_dir_all(out.join("logs"))
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    progress(&format!(
        "parts {:?}, {} boot(s) per VMM{}; logs in {}",
        opts.parts,
        opts.runs,
        if opts.quick { ", quick" } else { "" },
        out.join("logs").display()
    ));
    let needs_guest = opts
        .parts
        .iter()
        .any(|p| matches!(p, Part::Boot | Part::Initcall | Part::Dma | Part::Zerocopy));
    let (images, dmalab) = if needs_guest {
        progress("guest images (images/build.sh; cached after the first time)");
        let images = images::build();
        progress("dmalab (cargo build --release -p vmm)");
        let dmalab = demo::build_dmalab();
        (images, dmalab)
    } else {
        (Err("not needed".into()), Err("not needed".into()))
    };
    let mut ctx = Ctx {
        report: Report {
            machine: machine(),
            options: Some(opts.clone()),
            ..Report::default()
        },
        opts,
        out,
        images,
        dmalab,
    };
    if let Ok(dir) = &ctx.images {
        ctx.report.machine.images = images_summary(dir);
    }
    if ctx
        .report
        .machine
        .loadavg_start
        .split(' ')
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        > Some(1.0)
    {
        ctx.report.notes.push(format!(
            "the machine was busy when the bench started (load average {}): timings are noisy",
            ctx.report.machine.loadavg_start
        ));
    }
    let parts = ctx.opts.parts.clone();
    if parts.contains(&Part::Boot) {
        boot_part(&mut ctx);
    }
    if parts.contains(&Part::Initcall) {
        initcall_part(&mut ctx);
    }
    if parts.contains(&Part::Mmio) {
        mmio_part(&mut ctx);
    }
    if parts.contains(&Part::Dma) {
        dma_part(&mut ctx);
    }
    if parts.contains(&Part::Zerocopy) {
        zerocopy::zerocopy_e2e(&mut ctx);
    }
    if parts.contains(&Part::Mmio) || parts.contains(&Part::Dma) {
        driver_mmio_row(&mut ctx.report, parts.contains(&Part::Dma));
    }
    ctx.report.machine.loadavg_end = loadavg();
    ctx.report.duration_s = started.elapsed().as_secs_f64();
    print_report(&ctx.report);
    let json = serde_json::to_string_pretty(&ctx.report).map_err(|e| e.to_string())?;
    if let Some(dir) = ctx.opts.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&ctx.opts.json, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", ctx.opts.json.display()))?;
    println!("JSON: {}", ctx.opts.json.display());
    Ok(())
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
