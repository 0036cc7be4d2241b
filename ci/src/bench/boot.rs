//! The `boot` part: dmalab and QEMU boots to driver-ready, side by side.

use std::process::Command;
use std::time::Duration;

use ci::guest::GUEST_CMDLINE;

use super::analysis::{boot_phases, Boot, Phase};
use super::guest::{BOOT_EXTRA, MEM_MIB, QEMU_CPU, QEMU_ONLY};
use super::inputs::{progress, Inputs};
use super::machine::{command_line_out, ensure_qemu};
use super::stats::Stats;
use super::table::{fmt_stats, row, Row};
use super::tiny_kernel::first_insn_tiny;
use super::vmm::{dmalab_command, qemu_args, Vmm};

/// What the boot part measured.
#[derive(Default)]
pub struct BootPart {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub boots: Vec<Boot>,
    pub phases: Vec<Phase>,
    /// First line of `qemu --version`, when QEMU ran.
    pub qemu_version: Option<String>,
    pub qemu_command: Option<String>,
    pub dmalab_cmdline: Option<String>,
}

pub fn boot_part(inputs: &Inputs) -> BootPart {
    let mut part = BootPart::default();
    let (images, dmalab) = match inputs.guest_artifacts("boot", "boot to driver-ready, dmalab", "")
    {
        Ok(a) => a,
        Err(r) => {
            part.rows.push(*r);
            return part;
        }
    };
    let qemu = if inputs.opts.qemu {
        let q = ensure_qemu();
        if let Ok(p) = &q {
            part.qemu_version = command_line_out(&p.display().to_string(), &["--version"])
                .and_then(|v| v.lines().next().map(str::to_string));
        }
        q
    } else {
        Err("--no-qemu".into())
    };
    progress("VMM start-up with a minimal kernel (5 runs)");
    let tiny = first_insn_tiny(&dmalab, &inputs.out.join("logs"), 5);
    let r = row(
        "boot",
        "VMM start to first guest instruction, minimal kernel (dmalab)",
        "dmalab's own log (as above) when it boots a 7-byte PVH kernel (tiny ELF written by the bench): the VMM's start-up without copying a real kernel and initrd into guest RAM; 5 runs",
    );
    part.rows.push(
        match tiny {
            Ok(v) => match Stats::of(&v) {
                Some(s) => r.value(s.median, "ms", fmt_stats(&s, "ms", 2)),
                None => r.not_measured("no runs"),
            },
            Err(e) => r.not_measured(&e),
        }
        .at_most(5.0, "5 ms"),
    );
    let extra = format!("{GUEST_CMDLINE} {BOOT_EXTRA}");
    let mut cmdline: Option<String> = None;
    let mut boots = Vec::new();
    let runs = inputs.opts.runs;
    for run in 1..=runs {
        progress(&format!("boot {run}/{runs}: dmalab"));
        let cmd = dmalab_command(&dmalab, &images, &extra, false, None);
        match inputs.one_boot(
            Vmm::Dmalab,
            run,
            cmd,
            &format!("boot-dmalab-{run}"),
            Duration::from_secs(60),
        ) {
            Err(note) => part.notes.push(note),
            Ok((b, cap)) => {
                if cmdline.is_none() {
                    cmdline = cap
                        .lines
                        .iter()
                        .filter(|(_, err, _)| *err)
                        .find_map(|(_, _, l)| l.split_once("guest command line: "))
                        .map(|(_, c)| c.trim().to_string());
                }
                if run == 1 && b.ok {
                    part.phases = boot_phases(&cap.stdout_lines(), b.driver_ready_guest_s_est);
                }
                boots.push(b);
            }
        }
        if let (Ok(q), Some(c)) = (&qemu, &cmdline) {
            progress(&format!("boot {run}/{runs}: qemu"));
            let append = format!("{c} {QEMU_ONLY}");
            let args = qemu_args(&images, &append);
            if part.qemu_command.is_none() {
                part.qemu_command = Some(format!(
                    "{} {}",
                    q.display(),
                    args.iter()
                        .map(|a| if a.contains(' ') {
                            format!("\"{a}\"")
                        } else {
                            a.clone()
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            let mut cmd = Command::new(q);
            cmd.args(&args);
            match inputs.one_boot(
                Vmm::Qemu,
                run,
                cmd,
                &format!("boot-qemu-{run}"),
                Duration::from_secs(60),
            ) {
                Ok((b, _)) => boots.push(b),
                Err(note) => part.notes.push(note),
            }
        }
    }
    part.dmalab_cmdline = cmdline.clone();
    let qemu_why: Option<String> = match (&qemu, &cmdline) {
        (Err(e), _) => Some(e.clone()),
        (_, None) => Some("dmalab printed no 'guest command line' to reproduce".into()),
        _ => None,
    };
    if qemu_why.is_none() {
        part.notes.push(format!(
            "QEMU gets dmalab's exact guest command line plus `{QEMU_ONLY}`: on PVM hosts the kernel's \
             int3 self-test cannot be emulated; dmalab completes that int3 by injecting #BP, QEMU cannot, \
             so the patched guest kernel skips the test (images/patches/0002). `-cpu {QEMU_CPU}`: Debian's \
             QEMU 7.2 aborts on MSR 0x10a with plain `-cpu host` here; the clearcpuid= list is already in \
             dmalab's command line. `{BOOT_EXTRA}`: both guests reboot right after driver-ready."
        ));
    }
    boot_rows(&mut part.rows, &boots, qemu_why.as_deref());
    part.boots = boots;
    part
}

fn boot_rows(rows: &mut Vec<Row>, boots: &[Boot], qemu_why: Option<&str>) {
    let pick = |vmm: Vmm, f: &dyn Fn(&Boot) -> Option<f64>| -> Vec<f64> {
        boots
            .iter()
            .filter(|b| b.vmm == vmm.name() && b.ok)
            .filter_map(f)
            .collect()
    };
    let failures = |vmm: Vmm| {
        boots
            .iter()
            .filter(|b| b.vmm == vmm.name() && !b.ok)
            .count()
    };
    let how_wall = "wall time from spawning the VMM to the console line 'dmalab-init: insmod dmalab ok' (host clock, console streamed)";
    let d_wall = Stats::of(&pick(Vmm::Dmalab, &|b| b.driver_ready_wall_s));
    let q_wall = Stats::of(&pick(Vmm::Qemu, &|b| b.driver_ready_wall_s));
    let fail_note = |vmm: Vmm| match failures(vmm) {
        0 => String::new(),
        n => format!("; {n} run(s) FAILED, see below"),
    };
    let r = row("boot", "boot to driver-ready, dmalab (wall)", how_wall);
    rows.push(match d_wall {
        Some(s) => r
            .value(
                s.median,
                "s",
                fmt_stats(&s, "s", 1) + &fail_note(Vmm::Dmalab),
            )
            .at_most(30.0, "30 s"),
        None => r
            .not_measured("no dmalab boot reached driver-ready")
            .at_most(30.0, "30 s"),
    });
    let r = row("boot", "boot to driver-ready, QEMU (wall)", how_wall);
    rows.push(match (q_wall, qemu_why) {
        (Some(s), _) => r.value(s.median, "s", fmt_stats(&s, "s", 1) + &fail_note(Vmm::Qemu)),
        (None, Some(why)) => r.not_measured(why),
        (None, None) => r.not_measured("no QEMU boot reached driver-ready"),
    });
    let r = row(
        "boot",
        "dmalab / QEMU, boot to driver-ready",
        "ratio of the medians above",
    );
    rows.push(match (d_wall, q_wall) {
        (Some(d), Some(q)) => {
            let x = d.median / q.median;
            r.value(x, "x", format!("{x:.2}x")).at_most(0.5, "0.5x")
        }
        _ => r.not_measured("needs both VMMs").at_most(0.5, "0.5x"),
    });
    for (vmm, label) in [(Vmm::Dmalab, "dmalab"), (Vmm::Qemu, "QEMU")] {
        let run_init = Stats::of(&pick(vmm, &|b| b.run_init_guest_s));
        let ready = Stats::of(&pick(vmm, &|b| b.driver_ready_guest_s_est));
        if let (Some(ri), Some(rd)) = (run_init, ready) {
            rows.push(
                row(
                    "boot",
                    &format!("guest clock, {label}: Run /init / driver-ready"),
                    "the guest's printk time of 'Run /init'; driver-ready has no printk time: last printk time before it + host time since",
                )
                .value(
                    rd.median,
                    "s",
                    format!("{:.1} s / {:.1} s (medians)", ri.median, rd.median),
                ),
            );
        }
    }
    let d_cl = Stats::of(&pick(Vmm::Dmalab, &|b| b.cmdline_guest_s));
    let q_cl = Stats::of(&pick(Vmm::Qemu, &|b| b.cmdline_guest_s));
    if let (Some(d), Some(q)) = (d_cl, q_cl) {
        rows.push(
            row(
                "boot",
                "guest clock at 'Kernel command line', dmalab / QEMU",
                "the guest's printk time of its 'Kernel command line:' line; the guest clock (TSC) runs from vCPU creation, so this is firmware (QEMU: SeaBIOS and the PVH option ROM; dmalab: none) plus the same early kernel work in both",
            )
            .value(
                q.median - d.median,
                "s",
                format!(
                    "{:.1} s / {:.1} s (medians): {:.1} s more before the kernel in QEMU",
                    d.median,
                    q.median,
                    q.median - d.median
                ),
            ),
        );
    }
    let first = Stats::of(&pick(Vmm::Dmalab, &|b| b.first_insn_ms));
    let r = row(
        "boot",
        "VMM start to first guest instruction (dmalab)",
        "dmalab's log: its entry trampoline's first instruction is an `out` to the boot-timer port, logged with the time since main() started",
    );
    rows.push(match first {
        Some(s) => r
            .value(s.median, "ms", fmt_stats(&s, "ms", 2))
            .at_most(5.0, "5 ms"),
        None => r
            .not_measured("no 'first guest instruction' in dmalab's log")
            .at_most(5.0, "5 ms"),
    });
    if let Some(s) = Stats::of(&pick(Vmm::Dmalab, &|b| b.spawn_to_first_insn_ms)) {
        rows.push(
            row(
                "boot",
                "process spawn to first guest instruction (dmalab)",
                "host clock from spawn to the arrival of that log line (adds exec, dynamic loading, log pipe)",
            )
            .value(s.median, "ms", fmt_stats(&s, "ms", 1)),
        );
    }
    let how_mem = "VmRSS of the running VMM (sampled every second and at driver-ready; peak shown) minus the Rss of its guest-RAM mapping in /proc/PID/smaps (the anonymous rw mapping exactly as large as guest RAM): what the VMM itself keeps resident. Anonymous part = RssAnon minus the same";
    for (vmm, label) in [(Vmm::Dmalab, "dmalab"), (Vmm::Qemu, "QEMU")] {
        let peak = pick(vmm, &|b| {
            b.rss_beyond_guest_peak_kib.map(|k| k as f64 / 1024.0)
        });
        let anon = pick(vmm, &|b| {
            b.anon_beyond_guest_peak_kib.map(|k| k as f64 / 1024.0)
        });
        let guest = pick(vmm, &|b| {
            b.mem_at_driver_ready
                .and_then(|m| m.guest_ram_rss_kib)
                .map(|k| k as f64 / 1024.0)
        });
        let r = row(
            "boot",
            &format!("resident memory beyond guest RAM, {label}"),
            how_mem,
        );
        let r = match (Stats::of(&peak), Stats::of(&anon)) {
            (Some(p), Some(a)) => r.value(
                p.max,
                "MiB",
                format!(
                    "{:.1} MiB peak ({:.1} MiB anonymous; guest RAM resident at driver-ready {:.0} of {MEM_MIB} MiB)",
                    p.max,
                    a.max,
                    Stats::of(&guest).map_or(f64::NAN, |g| g.median)
                ),
            ),
            _ if vmm == Vmm::Qemu && qemu_why.is_some() => r.not_measured(qemu_why.unwrap_or("")),
            _ => r.not_measured("no memory samples (guest RAM mapping not found?)"),
        };
        rows.push(if vmm == Vmm::Dmalab {
            r.at_most(5.0, "5 MiB")
        } else {
            r
        });
    }
}
