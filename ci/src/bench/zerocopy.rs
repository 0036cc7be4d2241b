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

/// The device of this boot (see the module documentation).
pub const DEVICE: &str = "dma24,mask-bits=32,mem=1024";
/// The paths `dma24-tool bench` times, in table order.
pub const PATHS: [(&str, &str); 3] = [
    ("rw", "read()/write()"),
    ("mmap", "mmap + MMAP_XFER ioctl"),
    ("user", "user-page XFER_USER (zero copy)"),
];

/// What the tool printed: round-trip ns per (path, len), the two
/// fixed-cost probes, and the driver's timing sums per (path, len).
#[derive(Debug, Default, PartialEq)]
pub struct ZcBench {
    pub round_trips: BTreeMap<(String, u64), Vec<f64>>,
    pub syscall_ns: Option<u64>,
    pub ioctl_ns: Option<u64>,
    pub phases: BTreeMap<(String, u64), Phases>,
}

/// One `bench phases` line: sums over the round trips of one path and size
/// (the driver's debugfs `timing`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases {
    /// Driver calls (read/write or ioctl) and the time inside them.
    pub calls: u64,
    pub call_ns: u64,
    /// Transfers whose interrupt was timed, START -> handler, handler -> waiter.
    pub irqs: u64,
    pub start_to_irq_ns: u64,
    pub irq_to_wake_ns: u64,
}

/// One driver call's time, split (ns, means over the calls).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallSplit {
    /// What user space saw per call.
    pub visible: f64,
    pub driver_own: f64,
    pub device: f64,
    pub wake: f64,
    /// Syscall entry/exit and user space: visible minus time inside the driver.
    pub outside: f64,
    pub starts_per_call: f64,
}

pub fn parse(lines: &[(f64, String)]) -> ZcBench {
    let mut b = ZcBench::default();
    for (_, l) in lines {
        let Some(rest) = l.trim().strip_prefix("dma24-tool: bench ") else {
            continue;
        };
        if let Some(r) = rest.strip_prefix("phases ") {
            let path = r
                .strip_prefix("path=")
                .and_then(|p| p.split_whitespace().next());
            let num = |k: &str| field::<u64>(r, k);
            if let (Some(path), Some(len)) = (path, num("len=")) {
                let p = Phases {
                    calls: num("calls=").unwrap_or(0),
                    call_ns: num("call_ns=").unwrap_or(0),
                    irqs: num("irqs=").unwrap_or(0),
                    start_to_irq_ns: num("start_to_irq_ns=").unwrap_or(0),
                    irq_to_wake_ns: num("irq_to_wake_ns=").unwrap_or(0),
                };
                b.phases.insert((path.to_string(), len), p);
            }
        } else if let Some(r) = rest.strip_prefix("syscall ") {
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

    /// One call of `path` at `len` split into where its time went: the
    /// round trips' total over the driver's calls, the driver's sums.
    pub fn split(&self, path: &str, len: u64) -> Option<CallSplit> {
        let p = self.phases.get(&(path.to_string(), len))?;
        let total: f64 = self.round_trips.get(&(path.to_string(), len))?.iter().sum();
        if p.calls == 0 || p.irqs == 0 {
            return None;
        }
        let calls = p.calls as f64;
        let (device, wake) = (p.start_to_irq_ns as f64, p.irq_to_wake_ns as f64);
        Some(CallSplit {
            visible: total / calls,
            driver_own: (p.call_ns as f64 - device - wake) / calls,
            device: device / calls,
            wake: wake / calls,
            outside: (total - p.call_ns as f64) / calls,
            starts_per_call: p.irqs as f64 / calls,
        })
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
    let how = "dmalab boot with --device dma24,mask-bits=32,mem=1024 (module kernel, kunit.enable=0), `dma24-tool bench` in the guest: median of 5 round trips (3 at 1 MiB) (DMA to device memory, then back) per path and size, guest CLOCK_MONOTONIC; throughput = 2 x len / time";
    let metric = "zero copy: read()/write() vs mmap vs user pages";
    let (images, dmalab) = match inputs.guest_artifacts("dma", metric, how) {
        Ok(a) => a,
        Err(r) => return vec![*r],
    };
    progress("DMA zero copy: dmalab boot with a 32-bit dma24, dma24-tool bench");
    let mut cmd = dmalab_command(
        &dmalab,
        &images,
        "kunit.enable=0 dma24-tool.bench",
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
    let how_split = "the driver's debugfs timing (guest ktime) summed over each path's round trips: inside the driver per call = its own work (map, sync, descriptors, copies) + device (START written -> IRQ handler: MMIO exit, DMA, MSI injection) + wake-up (handler -> waiting task runs); outside = what user space saw minus time inside the driver (syscall entry/exit on PVM, user space)";
    for &len in lens.iter().take(2) {
        for (path, name) in PATHS {
            let r = row(
                "dma",
                &format!("{name}, {} KiB: where one call's time goes", len / 1024),
                how_split,
            );
            rows.push(match b.split(path, len) {
                Some(x) => r.value(
                    x.visible / 1e3,
                    "µs per call",
                    format!(
                        "{} per call = driver's own work {} + device {} + wake-up {} ({:.1} STARTs per call) + syscall/user space {}",
                        fmt_ns(x.visible),
                        fmt_ns(x.driver_own),
                        fmt_ns(x.device),
                        fmt_ns(x.wake),
                        x.starts_per_call,
                        fmt_ns(x.outside)
                    ),
                ),
                None => r.not_measured("no phases line with timed interrupts (refused path?)"),
            });
        }
    }
    if let (Some(sys), Some(ioctl)) = (b.syscall_ns, b.ioctl_ns) {
        rows.push(
            row(
                "dma",
                "syscall and empty-ioctl cost on this guest",
                "getppid() and GET_ZEROCOPY (80-byte copy out) timed in the guest, 200 calls each",
            )
            .value(
                sys as f64 / 1e3,
                "µs",
                format!(
                    "getppid() {}, ioctl GET_ZEROCOPY {}",
                    fmt_ns(sys as f64),
                    fmt_ns(ioctl as f64)
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
            "dma24-tool: bench phases path=mmap len=4096 calls=2 call_ns=800000 irqs=2 start_to_irq_ns=200000 irq_to_wake_ns=100000",
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
        let x = b.split("mmap", 4096).unwrap();
        assert_eq!(
            (
                x.visible,
                x.driver_own,
                x.device,
                x.wake,
                x.outside,
                x.starts_per_call
            ),
            (500e3, 250e3, 100e3, 50e3, 100e3, 1.0)
        );
        assert!(b.split("rw", 4096).is_none(), "no phases line for rw");
        let mmap = b.kib_per_s("mmap", 65536).unwrap();
        assert!((mmap / b.kib_per_s("rw", 65536).unwrap() - 50.0).abs() < 1e-9);
    }
}
