//! The `mmio` part: host-side dispatch (criterion), the mini guest's round
//! trip, and the driver's own register read.

use serde::Serialize;

use std::collections::BTreeMap;

use super::criterion::{bench_result, cargo_bench, criterion_args, read_criterion, Estimate};
use super::inputs::{progress, Inputs};
use super::stats::Stats;
use super::table::{fmt_ns, row, Row};

/// The mini-guest line of `ci/benches/mmio.rs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MmioGuest {
    pub iterations: u64,
    pub mmio_read_ns: Vec<f64>,
    pub mmio_write_ns: Vec<f64>,
    pub ram_read_ns: Vec<f64>,
}

pub fn parse_mmio_guest(output: &str) -> Result<MmioGuest, String> {
    let v = bench_result(output, "mmio_guest")?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("mini guest: {e}"));
    }
    let list = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    Ok(MmioGuest {
        iterations: v["iterations"].as_u64().unwrap_or(0),
        mmio_read_ns: list("mmio_read_ns"),
        mmio_write_ns: list("mmio_write_ns"),
        ram_read_ns: list("ram_read_ns"),
    })
}

/// What the mmio part measured.
#[derive(Default)]
pub struct MmioPart {
    pub rows: Vec<Row>,
    pub criterion: BTreeMap<String, Estimate>,
    pub guest: Option<MmioGuest>,
}

pub fn mmio_part(inputs: &Inputs) -> MmioPart {
    let mut part = MmioPart::default();
    let home = inputs.out.join("criterion");
    let _ = std::fs::remove_dir_all(home.join("mmio_dispatch"));
    progress("MMIO: cargo bench -p ci --bench mmio (host dispatch, then mini-guest round trips)");
    let iters = if inputs.opts.quick { 5000 } else { 20000 };
    let res = cargo_bench(
        "ci",
        "mmio",
        &criterion_args(inputs.opts.quick),
        &home,
        &[("DMALAB_BENCH_MMIO_ITERS", iters.to_string())],
        &inputs.out.join("logs/cargo-bench-mmio.log"),
    );
    let how_host = "criterion (ci/benches/mmio.rs), host side only, built as vmm::vm::run builds it: vmm::bus::Bus lookup -> PciMmioWindow (PCI root lock, BAR route scan) -> dma24 lock and register decode, and back";
    let est = read_criterion(&home, &["mmio_dispatch"]);
    let rows = &mut part.rows;
    let host = [
        (
            "mmio_dispatch/bus_read_magic_4",
            "MMIO dispatch, host: read MAGIC (4 B)",
        ),
        (
            "mmio_dispatch/bus_write_irq_status_4",
            "MMIO dispatch, host: write IRQ_STATUS (4 B)",
        ),
        (
            "mmio_dispatch/bus_read_counter_8",
            "MMIO dispatch, host: read a counter (8 B)",
        ),
    ];
    for (key, metric) in host {
        let r = row("mmio", metric, how_host);
        rows.push(match (est.get(key), &res) {
            (Some(e), _) => r
                .value(
                    e.median_ns,
                    "ns",
                    format!("{} (median)", fmt_ns(e.median_ns)),
                )
                .at_most(200.0, "200 ns"),
            (None, Err(e)) => r.not_measured(e).at_most(200.0, "200 ns"),
            (None, Ok(_)) => r
                .not_measured("no criterion estimate")
                .at_most(200.0, "200 ns"),
        });
    }
    if let Some(e) = est.get("mmio_dispatch/device_read_magic_4_no_bus") {
        rows.push(
            row("mmio", "  of which dma24 read_bar alone", "criterion: the same register read straight on the device (its lock + register decode)")
                .value(e.median_ns, "ns", format!("{} (median)", fmt_ns(e.median_ns))),
        );
    }
    let how_guest = "a 32-bit mini guest (ci/benches/mmio.rs) reads dma24's MAGIC (or writes IRQ_STATUS) N times in a loop (mov eax,[bar0]; dec ecx; jnz); each access exits to dmalab's own vCPU loop (Vcpu::run_once -> Bus -> PCI root -> dma24 attached by vmm::pci::attach_dma24) and back; host time per iteration, median of 3 runs. Baseline: the same loop reading guest RAM (no exit; on PVM guest CPL0 code is itself emulated)";
    let guest = res
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|out| parse_mmio_guest(out));
    match &guest {
        Ok(g) => {
            let rd = Stats::of(&g.mmio_read_ns);
            let wr = Stats::of(&g.mmio_write_ns);
            let ram = Stats::of(&g.ram_read_ns);
            if let (Some(rd), Some(ram)) = (rd, ram) {
                rows.push(
                    row("mmio", "register read round trip, mini guest (per read)", how_guest).value(
                        rd.median / 1e3,
                        "µs",
                        format!(
                            "{:.1} µs (loop with a RAM read instead: {:.1} µs; difference {:.1} µs)",
                            rd.median / 1e3,
                            ram.median / 1e3,
                            (rd.median - ram.median) / 1e3
                        ),
                    ),
                );
            }
            if let (Some(wr), Some(ram)) = (wr, ram) {
                rows.push(
                    row(
                        "mmio",
                        "register write round trip, mini guest (per write)",
                        how_guest,
                    )
                    .value(
                        wr.median / 1e3,
                        "µs",
                        format!(
                            "{:.1} µs (difference to the RAM loop {:.1} µs)",
                            wr.median / 1e3,
                            (wr.median - ram.median) / 1e3
                        ),
                    ),
                );
            }
        }
        Err(e) => rows
            .push(row("mmio", "register read round trip, mini guest", how_guest).not_measured(e)),
    }
    part.guest = guest.ok();
    part.criterion = est;
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_guest_lines() {
        let out = "criterion noise\nmmio_guest_json: {\"iterations\":20000,\"reps\":3,\"mmio_exits\":20000,\"mmio_read_ns\":[21270.3,17948.0],\"mmio_write_ns\":[18200.7],\"ram_read_ns\":[5190.7]}\n";
        let g = parse_mmio_guest(out).unwrap();
        assert_eq!(g.iterations, 20000);
        assert_eq!(g.mmio_read_ns, vec![21270.3, 17948.0]);
        assert_eq!(g.ram_read_ns, vec![5190.7]);
        let e = parse_mmio_guest("mmio_guest_json: {\"error\":\"no /dev/kvm\"}").unwrap_err();
        assert!(e.contains("no /dev/kvm"), "{e}");
        assert!(parse_mmio_guest("nothing").is_err());
    }
}
