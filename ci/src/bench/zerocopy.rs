//! The `dma` part's zero-copy comparison: one boot with a 32-bit-mask dma24
//! of 1 MiB (so user pages are reachable and the largest size is what one
//! descriptor list carries), `dma24-tool bench` timing read()/write(), mmap +
//! ioctl and user-page DMA side by side on the guest clock; a fit of fixed
//! cost per round trip + cost per byte for each path.

use std::collections::BTreeMap;
use std::time::Duration;

use super::console::field;
use super::guest::{DRIVER_READY, MEM_MIB};
use super::inputs::{progress, Inputs};
use super::memory::guest_ram_regions;
use super::stats::{linear_fit, Stats};
use super::table::Row;
use super::table::{fmt_ns, row};
use super::vmm::{dmalab_command, run_vmm};
use ci::guest::GUEST_CMDLINE;

/// The device of this boot (see the module documentation).
pub const DEVICE: &str = "dma24,mask-bits=32,mem=1024";
/// The paths `dma24-tool bench` times, in table order.
pub const PATHS: [(&str, &str); 3] = [
    ("rw", "read()/write()"),
    ("mmap", "mmap + MMAP_XFER ioctl"),
    ("user", "user-page XFER_USER (zero copy)"),
];

/// What the tool printed: round-trip ns per (path, len), and the two
/// fixed-cost probes.
#[derive(Debug, Default, PartialEq)]
pub struct ZcBench {
    pub round_trips: BTreeMap<(String, u64), Vec<f64>>,
    pub syscall_ns: Option<u64>,
    pub ioctl_ns: Option<u64>,
}

pub fn parse(lines: &[(f64, String)]) -> ZcBench {
    let mut b = ZcBench::default();
    for (_, l) in lines {
        let Some(rest) = l.trim().strip_prefix("dma24-tool: bench ") else {
            continue;
        };
        if let Some(r) = rest.strip_prefix("syscall ") {
            b.syscall_ns = field(r, "ns=");
        } else if let Some(r) = rest.strip_prefix("ioctl ") {
            b.ioctl_ns = field(r, "ns=");
        } else if let Some(path) = rest
            .strip_prefix("path=")
            .and_then(|r| r.split_whitespace().next())
        {
            if let (Some(len), Some(ns)) = (field::<u64>(rest, "len="), field::<f64>(rest, "ns=")) {
                b.round_trips
                    .entry((path.to_string(), len))
                    .or_default()
                    .push(ns);
            }
        }
    }
    b
}

impl ZcBench {
    /// Median round-trip ns per length of one path.
    pub fn medians(&self, path: &str) -> Vec<(u64, f64)> {
        self.round_trips
            .iter()
            .filter(|((p, _), _)| p == path)
            .filter_map(|((_, len), v)| Some((*len, Stats::of(v)?.median)))
            .collect()
    }

    /// User-visible throughput (both directions) of `path` at `len`, KiB/s.
    pub fn kib_per_s(&self, path: &str, len: u64) -> Option<f64> {
        let (_, ns) = self.medians(path).into_iter().find(|(l, _)| *l == len)?;
        Some(2.0 * len as f64 / ns * 1e9 / 1024.0)
    }

    /// (fixed ns per round trip, ns per byte moved one way).
    pub fn fit(&self, path: &str) -> Option<(f64, f64)> {
        let pts: Vec<(f64, f64)> = self
            .medians(path)
            .iter()
            .map(|(l, ns)| (*l as f64, *ns))
            .collect();
        linear_fit(&pts)
    }
}

/// The zero-copy rows: one boot, three paths side by side.
pub(super) fn zerocopy_part(inputs: &Inputs) -> Vec<Row> {
    let mut rows = Vec::new();
    let how = "dmalab boot with --device dma24,mask-bits=32,mem=1024 (module kernel, kunit.enable=0), `dma24-tool bench` in the guest: median of 3 round trips (DMA to device memory, then back) per path and size, guest CLOCK_MONOTONIC; throughput = 2 x len / time";
    let metric = "zero copy: read()/write() vs mmap vs user pages";
    let (images, dmalab) = match inputs.guest_artifacts("dma", metric, how) {
        Ok(a) => a,
        Err(r) => return vec![*r],
    };
    progress("DMA zero copy: dmalab boot with a 32-bit dma24, dma24-tool bench");
    let mut cmd = dmalab_command(
        &dmalab,
        &images,
        &format!("{} kunit.enable=0 dma24-tool.bench", GUEST_CMDLINE),
        false,
        None,
    );
    cmd.args(["--device", DEVICE]);
    // Not `one_boot`: its 400 s to driver-ready is too short for a 2-core
    // host that other guests share; this part only needs the console.
    let cap = match run_vmm(
        cmd,
        DRIVER_READY,
        Duration::from_secs(1200),
        Duration::from_secs(900),
        &guest_ram_regions(MEM_MIB),
    ) {
        Ok(c) => c,
        Err(e) => {
            rows.push(row("dma", metric, how).not_measured(&format!("the boot did not run: {e}")));
            return rows;
        }
    };
    let _ = std::fs::write(inputs.out.join("logs/zerocopy-bench.log"), cap.console());
    let b = parse(&cap.stdout_lines());
    if b.round_trips.is_empty() {
        rows.push(row("dma", metric, how).not_measured("dma24-tool printed no bench lines"));
        return rows;
    }
    let lens: Vec<u64> = {
        let mut v: Vec<u64> = b.round_trips.keys().map(|(_, l)| *l).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for &len in &lens {
        let rw = b.kib_per_s("rw", len);
        for (path, name) in PATHS {
            let r = row(
                "dma",
                &format!("{name}, {} KiB round trip", len / 1024),
                how,
            );
            let r = match (b.kib_per_s(path, len), rw) {
                (Some(v), Some(base)) => r.value(
                    v,
                    "KiB/s",
                    format!("{v:.0} KiB/s ({:.1}x read()/write())", v / base),
                ),
                (Some(v), None) => r.value(v, "KiB/s", format!("{v:.0} KiB/s")),
                _ => r.not_measured("no lines for this path and size (refused?)"),
            };
            rows.push(r);
        }
    }
    let ratio = match (b.kib_per_s("mmap", 65536), b.kib_per_s("rw", 65536)) {
        (Some(m), Some(r)) => Some(m / r),
        _ => None,
    };
    let r = row("dma", "mmap + ioctl vs read()/write() at 64 KiB", how);
    rows.push(
        match ratio {
            Some(x) => r.value(x, "x", format!("{x:.1}x")),
            None => r.not_measured("no 64 KiB lines for both paths"),
        }
        .at_least(10.0, "10x"),
    );
    for (path, name) in PATHS {
        let r = row(
            "dma",
            &format!("{name}: fit per round trip"),
            "least squares over the sizes: time = fixed + per_byte x len (len moved each way)",
        );
        rows.push(match b.fit(path) {
            Some((fixed, per_byte)) => r.value(
                fixed / 1e3,
                "µs fixed",
                format!(
                    "{} fixed + {:.3} µs per byte ({:.0} KiB/s marginal)",
                    fmt_ns(fixed),
                    per_byte / 1e3,
                    2.0 / per_byte * 1e9 / 1024.0
                ),
            ),
            None => r.not_measured("fewer than two sizes"),
        });
    }
    if let (Some(sys), Some(ioctl), Some((fixed, _))) = (b.syscall_ns, b.ioctl_ns, b.fit("mmap")) {
        // A round trip is two ioctls; what is left of the fixed cost is, per
        // transfer: dma_map_sgtable, descriptor list (dma_alloc_coherent),
        // six MMIO register writes (each a VM exit), the device's work, the
        // MSI, the IRQ handler and the wake-up of the waiting task, unmap.
        let per_transfer = fixed / 2.0 - ioctl as f64;
        rows.push(
            row("dma", "where the fixed cost of one transfer goes (mmap path)", "getppid() and an empty ioctl (GET_ZEROCOPY) timed in the guest, 200 calls each; the rest of half the mmap round trip's fitted fixed cost is driver + device: map, descriptor list, MMIO writes (VM exits), engine, MSI, IRQ handler, wake-up")
                .value(
                    fixed / 2.0 / 1e3,
                    "µs",
                    format!(
                        "{} per transfer = syscall entry/exit {} + ioctl copy/dispatch {} + map/descriptors/MMIO/device/interrupt/wake-up {}",
                        fmt_ns(fixed / 2.0),
                        fmt_ns(sys as f64),
                        fmt_ns(ioctl.saturating_sub(sys) as f64),
                        fmt_ns(per_transfer)
                    ),
                ),
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse_and_fit() {
        let lines: Vec<(f64, String)> = [
            "dma24-tool: bench syscall ns=20000",
            "dma24-tool: bench ioctl ns=30000",
            "dma24-tool: bench path=rw len=4096 rep=0 ns=10000000",
            "dma24-tool: bench path=rw len=4096 rep=1 ns=12000000",
            "dma24-tool: bench path=rw len=65536 rep=0 ns=100000000",
            "dma24-tool: bench path=mmap len=4096 rep=0 ns=1000000",
            "dma24-tool: bench path=mmap len=65536 rep=0 ns=2000000",
            "dma24-tool: FAIL user: XFER_USER: EIO",
        ]
        .iter()
        .map(|l| (0.0, l.to_string()))
        .collect();
        let b = parse(&lines);
        assert_eq!((b.syscall_ns, b.ioctl_ns), (Some(20000), Some(30000)));
        assert_eq!(b.medians("rw"), vec![(4096, 11e6), (65536, 100e6)]);
        assert!(b.medians("user").is_empty());
        let (fixed, per_byte) = b.fit("mmap").unwrap();
        assert!((per_byte - 1e6 / 61440.0).abs() < 1e-9 && fixed > 0.0);
        let mmap = b.kib_per_s("mmap", 65536).unwrap();
        assert!((mmap / b.kib_per_s("rw", 65536).unwrap() - 50.0).abs() < 1e-9);
    }
}
