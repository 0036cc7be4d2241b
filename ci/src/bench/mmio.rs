//! The `mmio` part: host-side dispatch (criterion), the mini guest's round
//! trip, and the driver's own register read.

use serde::Serialize;

use super::console::field;
use super::criterion::{cargo_bench, criterion_args, read_criterion};
use super::report::Report;
use super::stats::Stats;
use super::table::{fmt_ns, row};
use super::{progress, Ctx};

/// The mini-guest line of `ci/benches/mmio.rs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MmioGuest {
    pub iterations: u64,
    pub mmio_read_ns: Vec<f64>,
    pub mmio_write_ns: Vec<f64>,
    pub ram_read_ns: Vec<f64>,
}

pub fn parse_mmio_guest(output: &str) -> Result<MmioGuest, String> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("mmio_guest_json: "))
        .ok_or("the mmio bench printed no mini-guest result")?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("mini-guest result: {e}"))?;
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

/// The driver's KUnit case `register_read_round_trip` prints
/// `# <dev>: mmio_read_ns=N reads=R (readl of REG_MAGIC, mean)`: (N, R).
pub fn parse_driver_mmio(line: &str) -> Option<(f64, u64)> {
    let at = line.find("mmio_read_ns=")?;
    let rest = &line[at..];
    let ns = field(rest, "mmio_read_ns=")?;
    Some((ns, field(rest, "reads=").unwrap_or(0)))
}

pub(super) fn mmio_part(ctx: &mut Ctx) {
    let home = ctx.out.join("criterion");
    let _ = std::fs::remove_dir_all(home.join("mmio_dispatch"));
    progress("MMIO: cargo bench -p ci --bench mmio (host dispatch, then mini-guest round trips)");
    let iters = if ctx.opts.quick { 5000 } else { 20000 };
    let res = cargo_bench(
        "ci",
        "mmio",
        &criterion_args(ctx.opts.quick),
        &home,
        &[("DMALAB_BENCH_MMIO_ITERS", iters.to_string())],
        &ctx.out.join("logs/cargo-bench-mmio.log"),
    );
    let how_host = "criterion (ci/benches/mmio.rs), host side only, built as vmm::device_manager::PciDevices builds it: vmm::bus::Bus lookup + the window's bus-entry lock -> PciMmioWindow BAR map scan -> dma24 state lock and register decode, and back";
    let est = read_criterion(&home, &["mmio_dispatch"]);
    let rows = &mut ctx.report.rows;
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
    ctx.report.mmio_guest = guest.ok();
    ctx.report.criterion.extend(est);
}

/// The register round trip as the Linux driver sees it, placed after the
/// other MMIO rows.
pub(super) fn driver_mmio_row(report: &mut Report, dma_ran: bool) {
    let r = row(
        "mmio",
        "register read round trip, from the Linux driver (per readl)",
        "the driver's KUnit case register_read_round_trip (dmalab_probe suite, run by insmod in the end-to-end boot with the device): 200 readl() of REG_MAGIC timed with the guest's monotonic clock, mean per read",
    );
    let r = match report.driver_mmio_read {
        Some((ns, reads)) => r.value(
            ns / 1e3,
            "µs",
            format!("{:.1} µs (mean of {reads} reads, one boot)", ns / 1e3),
        ),
        None if !dma_ran => r.not_measured("it comes from the end-to-end boot: run with --only including dma"),
        None => match &report.e2e_boot {
            Some(b) if b.ok => r.not_measured(
                "no 'mmio_read_ns=' line on the console (the driver's KUnit case register_read_round_trip did not run or print)",
            ),
            _ => r.not_measured("the end-to-end boot with the device did not run or did not reach driver-ready"),
        },
    };
    let at = report
        .rows
        .iter()
        .rposition(|row| row.part == "mmio")
        .map_or(report.rows.len(), |i| i + 1);
    report.rows.insert(at, r);
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

    #[test]
    fn driver_mmio_line() {
        let l = "[   40.1]     # dma24-0: mmio_read_ns=14250 reads=200 (readl of REG_MAGIC, mean)";
        assert_eq!(parse_driver_mmio(l), Some((14250.0, 200)));
        assert_eq!(parse_driver_mmio("mmio_read_ns=7"), Some((7.0, 0)));
        assert_eq!(parse_driver_mmio("mmio_read_ns=x"), None);
        assert_eq!(parse_driver_mmio("nothing"), None);
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
