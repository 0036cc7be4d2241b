//! The driver's KUnit time, as its own row of the `boot` part.
//!
//! The plain `dmalab.ko` carries no KUnit suites (guest-driver/Kbuild: they
//! are compiled only into the built-in driver of `vmlinux-kunit`), so the
//! suites' cost is measured where they run: one `vmlinux-kunit` boot with the
//! dma24 attached, from the first `KTAP version` line to the last suite's
//! result line (guest printk times). That boot also prints the probe suite's
//! register round trip (`mmio_read_ns=`), which the `mmio` rows report.

use std::path::Path;
use std::time::Duration;

use super::console::{parse_driver_mmio, printk_time};
use super::inputs::{progress, Inputs};
use super::table::{row, Row};
use super::vmm::{dmalab_command_with_kernel, Vmm};

/// What `/init` prints when the driver is built in (it has nothing to insmod).
const BUILT_IN_READY: &str = "dmalab-init: driver built in";

/// What the built-in KUnit boot measured.
pub struct KunitTime {
    pub row: Row,
    /// The probe suite's register read round trip: (mean ns, reads).
    pub driver_mmio_read: Option<(f64, u64)>,
}

/// Guest seconds of the KTAP run in `console` (printk-timed lines): first
/// `KTAP version` to the last top-level suite result, and the suites seen.
pub fn ktap_span(console: &[(f64, String)]) -> Option<(f64, f64, usize)> {
    let mut start = None;
    let mut end = None;
    let mut suites = 0;
    for (_, l) in console {
        let Some((g, text)) = printk_time(l) else {
            continue;
        };
        if start.is_none() && text.trim_start().starts_with("KTAP version") {
            start = Some(g);
        }
        // Top-level results are not indented: `ok 3 dmalab_uapi`.
        let result = text
            .strip_prefix("ok ")
            .or_else(|| text.strip_prefix("not ok "));
        if let (Some(_), Some(r)) = (start, result) {
            if r.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.starts_with("dmalab_"))
            {
                end = Some(g);
                suites += 1;
            }
        }
    }
    Some((start?, end?, suites))
}

pub fn kunit_time(inputs: &Inputs, images: &Path, dmalab: &Path) -> KunitTime {
    let how = "one dmalab boot of vmlinux-kunit (the driver built in, its KUnit suites at boot) with the dma24 device: guest printk time from the first 'KTAP version' line to the last suite's result. The plain dmalab.ko carries no suites (guest-driver/Kbuild), so none of this is in the module boots above";
    let r = row(
        "boot",
        "driver KUnit suites, built-in kernel (dmalab, guest clock)",
        how,
    );
    let mut out = KunitTime {
        row: r.clone(),
        driver_mmio_read: None,
    };
    progress("boot: dmalab, vmlinux-kunit with the device (the driver's KUnit suites, 1 run)");
    let extra = "dmalab.run=none";
    let cmd = dmalab_command_with_kernel(
        dmalab,
        &images.join("vmlinux-kunit"),
        images,
        extra,
        true,
        None,
    );
    let (b, cap) = match inputs.one_boot_until(
        Vmm::Dmalab,
        1,
        cmd,
        "boot-dmalab-kunit",
        Duration::from_secs(60),
        BUILT_IN_READY,
    ) {
        Ok(bc) => bc,
        Err(note) => {
            out.row = r.not_measured(&note);
            return out;
        }
    };
    let console = cap.stdout_lines();
    out.driver_mmio_read = console.iter().find_map(|(_, l)| parse_driver_mmio(l));
    out.row = match (ktap_span(&console), &b.error) {
        (_, Some(e)) => r.not_measured(e.lines().next().unwrap_or("boot failed")),
        (Some((from, to, suites)), None) => r.value(
            to - from,
            "s",
            format!(
                "{:.1} s ({suites} suites, {from:.1} s to {to:.1} s of guest time; Run /init at {})",
                to - from,
                b.run_init_guest_s
                    .map_or("?".to_string(), |g| format!("{g:.1} s"))
            ),
        ),
        (None, None) => r.not_measured("no dmalab KTAP suite results on the console"),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ktap_span_of_a_console() {
        let console: Vec<(f64, String)> = [
            "[    9.000000] dmalab 0000:00:01.0: probed",
            "[   10.000000] KTAP version 1",
            "[   10.000100] 1..2",
            "[   10.100000]     KTAP version 1",
            "[   10.100001]     # Subtest: dmalab_probe",
            "[   11.000000]     ok 1 register_read_round_trip",
            "[   12.000000] ok 1 dmalab_probe",
            "[   20.000000]     not ok 1 some_case",
            "[   21.500000] not ok 2 dmalab_faults",
            "[   22.000000] Run /init as init process",
            "dmalab-init: driver built in",
        ]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l.to_string()))
        .collect();
        assert_eq!(ktap_span(&console), Some((10.0, 21.5, 2)));
        assert_eq!(ktap_span(&console[..2]), None);
        assert_eq!(ktap_span(&console[9..]), None);
    }
}
