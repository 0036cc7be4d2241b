//! What one boot's console and VMM log say: its figures and phases.

use std::path::Path;

use serde::Serialize;

use super::console::{log_number, printk_time};
use super::guest::DRIVER_READY;
use super::memory::MemSample;
use super::vmm::{Capture, Vmm};

/// One boot's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Boot {
    pub vmm: String,
    pub run: usize,
    pub ok: bool,
    pub error: Option<String>,
    /// Process spawn to the driver-ready console line, host clock.
    pub driver_ready_wall_s: Option<f64>,
    pub total_wall_s: f64,
    pub exit_code: Option<i32>,
    pub killed: Option<String>,
    /// Guest printk time of `Kernel command line:`: the guest's clock (its
    /// TSC, from vCPU creation) when the kernel is a little way in, so
    /// firmware time shows here (QEMU's SeaBIOS and option ROM).
    pub cmdline_guest_s: Option<f64>,
    /// Guest printk time of `Run /init`.
    pub run_init_guest_s: Option<f64>,
    /// The init's own `user space up (uptime X s)`.
    pub user_space_up_guest_s: Option<f64>,
    /// Guest time of the driver-ready line (it has no printk time): the last
    /// printk time before it plus the host time between the two lines.
    pub driver_ready_guest_s_est: Option<f64>,
    /// dmalab's log: VMM start to the guest's first instruction, and to
    /// "VM ready".
    pub first_insn_ms: Option<f64>,
    pub vm_ready_ms: Option<f64>,
    /// Host clock: spawn to the log line of the first instruction.
    pub spawn_to_first_insn_ms: Option<f64>,
    /// Peak over the samples of resident memory beyond guest RAM.
    pub rss_beyond_guest_peak_kib: Option<u64>,
    pub anon_beyond_guest_peak_kib: Option<u64>,
    pub mem_at_driver_ready: Option<MemSample>,
    pub mem_samples: usize,
    pub log: String,
}

pub(super) fn analyse_boot(vmm: Vmm, run: usize, cap: &Capture, log: &Path) -> Boot {
    let mut b = Boot {
        vmm: vmm.name().into(),
        run,
        total_wall_s: cap.wall_s,
        exit_code: cap.status.and_then(|s| s.code()),
        killed: cap.killed.clone(),
        driver_ready_wall_s: cap.marker_s,
        mem_at_driver_ready: cap.mem_at_marker,
        mem_samples: cap.mem.len(),
        log: log.display().to_string(),
        ..Boot::default()
    };
    let mut last_printk: Option<(f64, f64)> = None; // (host t, guest t)
    for (t, err, l) in &cap.lines {
        if *err {
            if let Some(ms) = log_number(l, "first guest instruction at ", " ms") {
                b.first_insn_ms = Some(ms);
                b.spawn_to_first_insn_ms = Some(t * 1000.0);
            }
            if let Some(ms) = log_number(l, "VM ready in ", " ms") {
                b.vm_ready_ms = Some(ms);
            }
            continue;
        }
        if let Some((g, text)) = printk_time(l) {
            last_printk = Some((*t, g));
            if text.starts_with("Kernel command line:") && b.cmdline_guest_s.is_none() {
                b.cmdline_guest_s = Some(g);
            }
            if text.starts_with("Run /init") && b.run_init_guest_s.is_none() {
                b.run_init_guest_s = Some(g);
            }
        }
        if let Some(up) = log_number(l, "dmalab-init: user space up (uptime ", " s)") {
            b.user_space_up_guest_s = Some(up);
        }
        if Some(*t) == cap.marker_s && b.driver_ready_guest_s_est.is_none() {
            b.driver_ready_guest_s_est = last_printk.map(|(ht, g)| g + (t - ht));
        }
    }
    let all = cap.mem.iter().chain(cap.mem_at_marker.iter());
    b.rss_beyond_guest_peak_kib = all.clone().filter_map(MemSample::beyond_guest_kib).max();
    b.anon_beyond_guest_peak_kib = all.filter_map(MemSample::anon_beyond_guest_kib).max();
    b.ok = cap.marker_s.is_some();
    if !b.ok {
        b.error = Some(format!(
            "{} never printed {DRIVER_READY:?} ({}; exit {:?}); last lines:\n{}",
            vmm.name(),
            cap.killed.as_deref().unwrap_or("it ended"),
            b.exit_code,
            cap.tail(8)
        ));
    }
    b
}

/// Seconds of a phase of the guest's boot, from one console.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    pub from_s: f64,
    pub to_s: f64,
}

/// The guest's printk clock when console line `i` arrived: the last printk
/// time before it plus the host time between the two lines (for lines the
/// guest printed without a printk time).
fn printk_clock_at(console: &[(f64, String)], i: usize) -> Option<f64> {
    let (t, _) = console.get(i)?;
    console[..i]
        .iter()
        .rev()
        .find_map(|(ht, l)| printk_time(l).map(|(g, _)| g + (t - ht)))
}

/// Where a dmalab boot's guest time goes, from its printk times.
pub fn boot_phases(console: &[(f64, String)], driver_ready_est: Option<f64>) -> Vec<Phase> {
    let first = |pat: &str| -> Option<f64> {
        console
            .iter()
            .find_map(|(_, l)| printk_time(l).and_then(|(g, text)| text.contains(pat).then_some(g)))
    };
    let unpack = first("Unpacking initramfs");
    let freed = first("Freeing initrd memory");
    let run_init = first("Run /init");
    // On the printk clock, as driver-ready: the init's own uptime is another
    // clock (CLOCK_BOOTTIME), up to a second apart from printk's on PVM hosts.
    let up = console
        .iter()
        .position(|(_, l)| l.starts_with("dmalab-init: user space up"))
        .and_then(|i| printk_clock_at(console, i));
    let insmod = first("loading out-of-tree module");
    // KUnit suites built into the module run inside insmod.
    let kunit = insmod.and_then(|i| {
        console.iter().find_map(|(_, l)| {
            printk_time(l)
                .and_then(|(g, text)| (g >= i && text.contains("KTAP version")).then_some(g))
        })
    });
    let marks: [(&str, Option<f64>); 7] = [
        ("kernel start to initramfs unpack", unpack),
        (
            "initramfs unpack (async; overlaps the later initcalls)",
            freed,
        ),
        ("rest of kernel init to Run /init", run_init),
        ("/init (dma24-tool): exec, mounts (to 'user space up')", up),
        (
            "finit_module: read and check the module (to its first printk)",
            insmod,
        ),
        ("module load and init (to its KUnit suites)", kunit),
        (
            if kunit.is_some() {
                "the module's KUnit suites, run by insmod (to driver-ready, est.)"
            } else {
                "module load and init (to driver-ready, est.)"
            },
            driver_ready_est,
        ),
    ];
    let mut out = Vec::new();
    let mut prev = Some(0.0);
    for (name, at) in marks {
        if let (Some(p), Some(a)) = (prev, at) {
            out.push(Phase {
                name: name.into(),
                from_s: p,
                to_s: a,
            });
        }
        if at.is_some() {
            prev = at;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::memory::ProcStatus;

    #[test]
    fn phases_from_a_console() {
        let console: Vec<(f64, String)> = [
            "[    0.000000] Linux version 7.2",
            "[   10.916550] Unpacking initramfs...",
            "[   39.508417] Freeing initrd memory: 7224K",
            "[   43.393956] Run /init as init process",
            "dmalab-init: user space up (uptime 50.02 s)",
            "[   55.826850] dmalab: loading out-of-tree module taints kernel.",
        ]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l.to_string()))
        .collect();
        let p = boot_phases(&console, Some(57.0));
        assert_eq!(p.len(), 6);
        assert!(p[5].name.starts_with("module load and init"), "{p:?}");
        assert_eq!((p[0].from_s, p[0].to_s), (0.0, 10.91655));
        assert_eq!((p[1].from_s, p[1].to_s), (10.91655, 39.508417));
        // 'user space up' on the printk clock: Run /init's time + 1 s of host time.
        assert_eq!((p[3].from_s, p[3].to_s), (43.393956, 44.393956));
        assert_eq!((p[5].from_s, p[5].to_s), (55.82685, 57.0));
        // A missing mark merges its phase into the next one.
        let p = boot_phases(&console[..3], None);
        assert_eq!(p.len(), 2);
        // KUnit suites inside insmod get their own phase.
        let mut k = console.clone();
        k.push((7.0, "[   60.000000] KTAP version 1".into()));
        let p = boot_phases(&k, Some(70.0));
        assert_eq!(p.len(), 7);
        assert_eq!((p[5].from_s, p[5].to_s), (55.82685, 60.0));
        assert_eq!((p[6].from_s, p[6].to_s), (60.0, 70.0));
        assert!(p[6].name.contains("KUnit"), "{p:?}");
    }

    #[test]
    fn one_boot_analysed() {
        let l = |t: f64, err: bool, s: &str| (t, err, s.to_string());
        let cap = Capture {
            lines: vec![
                l(
                    0.01,
                    true,
                    "[   0.010 dmalab INFO ] VM ready in 9.5 ms (9.6 ms after VMM start)",
                ),
                l(
                    0.012,
                    true,
                    "[   0.011 dmalab INFO ] first guest instruction at 10.250 ms after VMM start",
                ),
                l(
                    5.0,
                    false,
                    "[    2.227717] Kernel command line: console=ttyS0",
                ),
                l(30.0, false, "[   28.371293] Run /init as init process"),
                l(33.0, false, "dmalab-init: user space up (uptime 30.02 s)"),
                l(45.0, false, "[   45.612771]     KTAP version 1"),
                l(46.5, false, "dmalab-init: insmod dmalab ok"),
            ],
            marker_s: Some(46.5),
            status: None,
            killed: None,
            mem: vec![MemSample {
                t_s: 1.0,
                status: ProcStatus {
                    vm_rss_kib: 5000,
                    rss_anon_kib: 3000,
                    ..ProcStatus::default()
                },
                guest_ram_rss_kib: Some(2000),
            }],
            mem_at_marker: Some(MemSample {
                t_s: 46.5,
                status: ProcStatus {
                    vm_rss_kib: 30000,
                    rss_anon_kib: 26000,
                    ..ProcStatus::default()
                },
                guest_ram_rss_kib: Some(25000),
            }),
            wall_s: 48.0,
        };
        let b = analyse_boot(Vmm::Dmalab, 1, &cap, Path::new("/x.log"));
        assert!(b.ok && b.error.is_none());
        assert_eq!(b.driver_ready_wall_s, Some(46.5));
        assert_eq!(b.cmdline_guest_s, Some(2.227717));
        assert_eq!(b.run_init_guest_s, Some(28.371293));
        assert_eq!(b.user_space_up_guest_s, Some(30.02));
        // Last printk (45.612771 at host 45.0) + 1.5 s of host time.
        assert!((b.driver_ready_guest_s_est.unwrap() - 47.112771).abs() < 1e-9);
        assert_eq!(b.first_insn_ms, Some(10.25));
        assert_eq!(b.vm_ready_ms, Some(9.5));
        assert_eq!(b.spawn_to_first_insn_ms, Some(12.0));
        assert_eq!(b.rss_beyond_guest_peak_kib, Some(5000));
        assert_eq!(b.anon_beyond_guest_peak_kib, Some(1000));

        let failed = Capture {
            marker_s: None,
            mem_at_marker: None,
            killed: Some("no marker within 400 s".into()),
            ..cap
        };
        let b = analyse_boot(Vmm::Qemu, 2, &failed, Path::new("/y.log"));
        assert!(!b.ok);
        let e = b.error.unwrap();
        assert!(
            e.contains("qemu never printed") && e.contains("no marker within"),
            "{e}"
        );
    }
}
