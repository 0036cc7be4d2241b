//! The `dma` part: the device model's engine (criterion) and the guest's
//! end-to-end transfers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use std::collections::BTreeMap;

use super::analysis::Boot;
use super::console::{field, parse_driver_mmio};
use super::criterion::{cargo_bench, criterion_args, read_criterion, Estimate};
use super::inputs::{progress, Inputs};
use super::stats::linear_fit;
use super::table::{fmt_ns, row, Row};
use super::vmm::{dmalab_command, Vmm};

/// What the dma part measured.
#[derive(Default)]
pub struct DmaPart {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub criterion: BTreeMap<String, Estimate>,
    pub e2e: Vec<E2eCase>,
    pub e2e_boot: Option<Boot>,
    /// From the driver's KUnit case in the end-to-end boot: (ns per readl, reads).
    pub driver_mmio_read: Option<(f64, u64)>,
}

/// One `dma24-tool: ok offset=O len=L ...` line and the host time it took
/// since the tool's previous line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct E2eCase {
    pub offset: u64,
    pub len: u64,
    /// Host seconds since the previous console line of dma24-tool (None for
    /// the first case: that includes starting the tool).
    pub host_s: Option<f64>,
    /// Guest-measured times, if dma24-tool prints them (`write_ns=`, `read_ns=`).
    pub write_ns: Option<u64>,
    pub read_ns: Option<u64>,
}

/// The self-test's transfers from console lines with their host arrival
/// time (seconds).
pub fn e2e_cases(lines: &[(f64, String)]) -> Vec<E2eCase> {
    let mut out = Vec::new();
    let mut prev_tool: Option<f64> = None;
    for (t, l) in lines {
        let Some(rest) = l.trim().strip_prefix("dma24-tool: ") else {
            continue;
        };
        if let Some(ok) = rest.strip_prefix("ok ") {
            if let (Some(offset), Some(len)) = (field(ok, "offset="), field(ok, "len=")) {
                out.push(E2eCase {
                    offset,
                    len,
                    host_s: prev_tool.map(|p| t - p),
                    write_ns: field(ok, "write_ns="),
                    read_ns: field(ok, "read_ns="),
                });
            }
        }
        // Only the transfer lines delimit transfers (the tool prints other
        // lines, e.g. from `boot-done`, long before the self-test).
        if rest.starts_with("ok ") || rest.starts_with("FAIL ") {
            prev_tool = Some(*t);
        }
    }
    out
}

fn gib_per_s(bytes: u64, ns: f64) -> f64 {
    bytes as f64 / ns / (1u64 << 30) as f64 * 1e9
}

/// Does this dmalab attach the dma24 device (`dmalab run --device`)?
fn dmalab_has_device(dmalab: &Path) -> bool {
    Command::new(dmalab)
        .args(["run", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--device"))
}

pub fn dma_part(inputs: &Inputs) -> DmaPart {
    let mut part = DmaPart::default();
    let home = inputs.out.join("criterion");
    for g in ["dma_4k", "dma_64k", "device_4k", "device_64k"] {
        let _ = std::fs::remove_dir_all(home.join(g));
    }
    progress("DMA: cargo bench -p device-model --bench dma");
    let res = cargo_bench(
        "device-model",
        "dma",
        &criterion_args(inputs.opts.quick),
        &home,
        &[],
        &inputs.out.join("logs/cargo-bench-dma.log"),
    );
    let est = read_criterion(&home, &["dma_4k", "dma_64k", "device_4k", "device_64k"]);
    let why = match &res {
        Err(e) => e.clone(),
        Ok(_) => "no criterion estimate".into(),
    };
    let rows = &mut part.rows;
    let how_engine = "criterion (device-model/benches/dma.rs): Engine::run of one single transfer between page-aligned guest memory and device memory, no worker thread; against copy_from_slice of the same size. Throughput ratio = memcpy time / engine time";
    for (size, label) in [(4096u64, "4k"), (65536, "64k")] {
        let g = format!("dma_{label}");
        let memcpy = est.get(&format!("{g}/memcpy")).map(|e| e.median_ns);
        for dir in ["to_device", "from_device"] {
            let off = est
                .get(&format!("{g}/engine_{dir}_trace_off"))
                .map(|e| e.median_ns);
            let metric = format!(
                "DMA engine {} KiB {}, trace off vs memcpy",
                size / 1024,
                dir.replace('_', " ")
            );
            let r = row("dma", &metric, how_engine);
            let r = match (memcpy, off) {
                (Some(m), Some(o)) => r.value(
                    m / o * 100.0,
                    "%",
                    format!(
                        "{:.0} % of memcpy ({}, {:.1} GiB/s; memcpy {})",
                        m / o * 100.0,
                        fmt_ns(o),
                        gib_per_s(size, o),
                        fmt_ns(m)
                    ),
                ),
                _ => r.not_measured(&why),
            };
            rows.push(if size == 65536 {
                r.at_least(50.0, "50 %")
            } else {
                r
            });
        }
        let off = est
            .get(&format!("{g}/engine_to_device_trace_off"))
            .map(|e| e.median_ns);
        let nohash = est
            .get(&format!("{g}/engine_to_device_trace_on_nohash"))
            .map(|e| e.median_ns);
        let hash = est
            .get(&format!("{g}/engine_to_device_trace_on"))
            .map(|e| e.median_ns);
        if let (Some(o), Some(n), Some(h)) = (off, nohash, hash) {
            rows.push(
                row(
                    "dma",
                    &format!("trace cost, engine hot loop, {} KiB to device", size / 1024),
                    "criterion: the same Engine::run with the JSON Lines trace on (records only / with XXH3 of the bytes moved), relative to trace off; the writer thread competes for the same 2 CPUs",
                )
                .value(
                    (n / o - 1.0) * 100.0,
                    "%",
                    format!(
                        "+{:.0} % without hash ({}), +{:.0} % with xxh3 ({})",
                        (n / o - 1.0) * 100.0,
                        fmt_ns(n),
                        (h / o - 1.0) * 100.0,
                        fmt_ns(h)
                    ),
                ),
            );
        }
        let dg = format!("device_{label}");
        let doff = est
            .get(&format!("{dg}/start_to_idle_trace_off"))
            .map(|e| e.median_ns);
        let don = est
            .get(&format!("{dg}/start_to_idle_trace_on"))
            .map(|e| e.median_ns);
        let r = row(
            "dma",
            &format!("device START to idle, {} KiB, trace on vs off", size / 1024),
            "criterion: START written through PciDevice::write_bar, then wait_idle: hand-off to the worker thread, copy, completion, wake-up (what a driver waits for); trace with hash",
        );
        rows.push(match (doff, don) {
            (Some(o), Some(n)) => r
                .value(
                    (n / o - 1.0) * 100.0,
                    "%",
                    format!(
                        "{:+.0} % ({} on, {} off)",
                        (n / o - 1.0) * 100.0,
                        fmt_ns(n),
                        fmt_ns(o)
                    ),
                )
                .at_most(10.0, "+10 %"),
            _ => r.not_measured(&why).at_most(10.0, "+10 %"),
        });
    }
    part.criterion = est;
    dma_e2e(inputs, &mut part);
    part
}

fn dma_e2e(inputs: &Inputs, part: &mut DmaPart) {
    let how = "dmalab boot with --device dma24 --trace, the initramfs runs `dma24-tool selftest`: per transfer case (write then read back through /dev/dma24-0, compare, one console line) the host time between its console lines; rate = 2 x len / time";
    let metric = "end-to-end guest transfer rate (/dev/dma24-0)";
    let (images, dmalab) = match inputs.guest_artifacts("dma", metric, how) {
        Ok(a) => a,
        Err(r) => {
            part.rows.push(*r);
            return;
        }
    };
    if !dmalab_has_device(&dmalab) {
        part.rows.push(row("dma", metric, how).not_measured(
            "this dmalab cannot attach dma24 yet (no `run --device`: PCI integration in progress)",
        ));
        return;
    }
    progress("DMA end to end: dmalab boot with the device, dma24-tool selftest");
    let trace = inputs.out.join("logs/e2e.trace.jsonl");
    let cmd = dmalab_command(&dmalab, &images, "", true, Some(&trace));
    let (b, cap) = match inputs.one_boot(
        Vmm::Dmalab,
        0,
        cmd,
        "e2e-dmalab-selftest",
        Duration::from_secs(300),
    ) {
        Ok(x) => x,
        Err(note) => {
            part.notes.push(note);
            part.rows
                .push(row("dma", metric, how).not_measured("the boot did not run"));
            return;
        }
    };
    let console = cap.stdout_lines();
    let cases = e2e_cases(&console);
    part.driver_mmio_read = console.iter().find_map(|(_, l)| parse_driver_mmio(l));
    let timed: Vec<(f64, f64)> = cases
        .iter()
        .filter_map(|c| c.host_s.map(|s| (c.len as f64, s)))
        .collect();
    let r = row("dma", metric, how);
    part.rows.push(
        match (
            timed.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0)),
            linear_fit(&timed),
        ) {
            (Some((len, s)), fit) => {
                let rate = 2.0 * len / s / 1024.0;
                let fit_text = match fit {
                    Some((fixed, per_byte)) if per_byte > 0.0 => format!(
                        "; fit over {} sizes: {:.0} ms fixed per write+read + {:.2} µs per byte, i.e. {:.0} KiB/s marginal",
                        timed.len(),
                        fixed * 1e3,
                        per_byte * 1e6,
                        2.0 / per_byte / 1024.0
                    ),
                    _ => String::new(),
                };
                r.value(
                    rate,
                    "KiB/s",
                    format!(
                        "{rate:.0} KiB/s moved at {len:.0} B ({:.0} ms per write+read){fit_text}",
                        s * 1e3
                    ),
                )
            }
            (None, _) if !b.ok => r.not_measured("the guest did not reach driver-ready"),
            (None, _) => r.not_measured("dma24-tool printed no transfer lines"),
        },
    );
    if let Some(w) = b.driver_ready_wall_s {
        part.rows.push(
            row(
                "dma",
                "boot to driver-ready with dma24 attached (dmalab)",
                "the same wall-clock measure as the boot rows, in this run with --device dma24 --trace: insmod now also probes the device",
            )
            .value(w, "s", format!("{w:.1} s (1 run)")),
        );
    }
    part.e2e = cases;
    part.e2e_boot = Some(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2e_transfer_lines() {
        let lines: Vec<(f64, String)> = [
            (10.0, "dmalab-init: pci 0000:00:01.0 resource0"),
            (
                3.0,
                "dma24-tool: port 0xf5: Function not implemented (os error 38)",
            ),
            (11.0, "dma24-tool: ok offset=0 len=1 seed=0 hash=00"),
            (
                11.5,
                "dma24-tool: ok offset=4096 len=4096 seed=3 hash=00 write_ns=900 read_ns=1100",
            ),
            (11.6, "[ 50.0] some kernel line"),
            (12.5, "dma24-tool: FAIL offset=0 len=64: short write"),
            (13.0, "dma24-tool: ok offset=0 len=16384 seed=5 hash=00"),
            (13.1, "dma24-tool: result passed=3 failed=1"),
        ]
        .iter()
        .map(|(t, l)| (*t, l.to_string()))
        .collect();
        let c = e2e_cases(&lines);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].len, c[0].host_s), (1, None));
        assert_eq!(
            (c[1].offset, c[1].len, c[1].host_s),
            (4096, 4096, Some(0.5))
        );
        assert_eq!((c[1].write_ns, c[1].read_ns), (Some(900), Some(1100)));
        assert_eq!(c[2].host_s, Some(0.5));
        assert_eq!(c[2].write_ns, None);
    }
}
