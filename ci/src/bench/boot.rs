//! The `boot` part: dmalab and QEMU boots to driver-ready, side by side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::analysis::{boot_phases, Boot, Phase};
use super::guest::{BOOT_EXTRA, MEM_MIB, QEMU_CPU, QEMU_ONLY};
use super::inputs::{progress, Inputs};
use super::kunit_time::kunit_time;
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
    /// First lines of the QEMUs' `--version`, when they ran.
    pub qemu_version: Option<String>,
    pub qemu_command: Option<String>,
    pub dmalab_cmdline: Option<String>,
    /// The driver's register round trip from the built-in KUnit boot.
    pub driver_mmio_read: Option<(f64, u64)>,
}

/// A QEMU the dmalab boots are compared with.
struct Peer {
    vmm: Vmm,
    path: PathBuf,
    /// "QEMU 11.1.3" (from `--version`).
    label: String,
}

/// The peers: a current QEMU (images/qemu.sh) first, the ratio's reference;
/// the machine's own (bookworm's 7.2) as a second row.
fn peers(inputs: &Inputs, part: &mut BootPart) -> (Vec<Peer>, Vec<(Vmm, String)>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    if !inputs.opts.qemu {
        for vmm in [Vmm::Qemu, Vmm::QemuBookworm] {
            missing.push((vmm, "--no-qemu".to_string()));
        }
        return (found, missing);
    }
    progress("QEMU peers: a current QEMU (images/qemu.sh) and the machine's own");
    for (vmm, path) in [
        (Vmm::Qemu, ci::build::current_qemu()),
        (Vmm::QemuBookworm, ensure_qemu()),
    ] {
        match path {
            Ok(path) => {
                let version = command_line_out(&path.display().to_string(), &["--version"])
                    .and_then(|v| v.lines().next().map(str::to_string))
                    .unwrap_or_default();
                let label = version
                    .split_whitespace()
                    .skip_while(|w| *w != "version")
                    .nth(1)
                    .map_or_else(|| "QEMU".to_string(), |v| format!("QEMU {v}"));
                let all = part.qemu_version.get_or_insert_with(String::new);
                if !all.is_empty() {
                    all.push_str("; ");
                }
                all.push_str(&version);
                found.push(Peer { vmm, path, label });
            }
            Err(e) => missing.push((vmm, e)),
        }
    }
    (found, missing)
}

fn quoted_command(prog: &Path, args: &[String]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect();
    format!("{} {}", prog.display(), args.join(" "))
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
    let (peers, missing) = peers(inputs, &mut part);
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
    let extra = BOOT_EXTRA.to_string();
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
        let Some(c) = &cmdline else { continue };
        for peer in &peers {
            progress(&format!(
                "boot {run}/{}: {} ({})",
                runs,
                peer.label,
                peer.vmm.name()
            ));
            let append = format!("{c} {QEMU_ONLY}");
            let args = qemu_args(&images, &append);
            if peer.vmm == Vmm::Qemu && part.qemu_command.is_none() {
                part.qemu_command = Some(quoted_command(&peer.path, &args));
            }
            let mut cmd = Command::new(&peer.path);
            cmd.args(&args);
            let name = format!("boot-{}-{run}", peer.vmm.name());
            match inputs.one_boot(peer.vmm, run, cmd, &name, Duration::from_secs(60)) {
                Ok((b, _)) => boots.push(b),
                Err(note) => part.notes.push(note),
            }
        }
    }
    part.dmalab_cmdline = cmdline.clone();
    let mut why_not: Vec<(Vmm, String)> = missing;
    if cmdline.is_none() {
        for p in &peers {
            why_not.push((
                p.vmm,
                "dmalab printed no 'guest command line' to reproduce".into(),
            ));
        }
    }
    if !peers.is_empty() && cmdline.is_some() {
        part.notes.push(format!(
            "QEMU gets dmalab's exact guest command line plus `{QEMU_ONLY}`: on PVM hosts the kernel's \
             int3 self-test and the fwait of fpu__drop() cannot be emulated; dmalab completes them \
             (#BP injected, fwait skipped), QEMU cannot, so the patched guest kernel leaves them out \
             (images/patches/0002, 0004). `-cpu {QEMU_CPU}`: Debian's \
             QEMU aborts on MSR 0x10a with plain `-cpu host` here; the clearcpuid= list is already in \
             dmalab's command line. `{BOOT_EXTRA}`: both guests reboot right after driver-ready. \
             The current QEMU is trixie-backports' package in a debootstrap'd trixie root (images/qemu.sh), \
             run with that root's loader and libraries."
        ));
    }
    let labels: Vec<(Vmm, String)> = peers.iter().map(|p| (p.vmm, p.label.clone())).collect();
    boot_rows(&mut part.rows, &boots, &labels, &why_not);
    part.boots = boots;
    let kunit = kunit_time(inputs, &images, &dmalab);
    part.rows.push(kunit.row);
    part.driver_mmio_read = kunit.driver_mmio_read;
    part
}

/// The name a peer's rows carry: its version when it ran, else what it is.
fn peer_label(labels: &[(Vmm, String)], vmm: Vmm) -> String {
    labels
        .iter()
        .find(|(v, _)| *v == vmm)
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| match vmm {
            Vmm::Qemu => "QEMU (trixie-backports)".into(),
            _ => "QEMU (bookworm)".into(),
        })
}

fn boot_rows(
    rows: &mut Vec<Row>,
    boots: &[Boot],
    labels: &[(Vmm, String)],
    why_not: &[(Vmm, String)],
) {
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
    let fail_note = |vmm: Vmm| match failures(vmm) {
        0 => String::new(),
        n => format!("; {n} run(s) FAILED, see below"),
    };
    let why = |vmm: Vmm| {
        why_not
            .iter()
            .find(|(v, _)| *v == vmm)
            .map(|(_, w)| w.as_str())
    };
    let peers = [Vmm::Qemu, Vmm::QemuBookworm];
    let how_wall = "wall time from spawning the VMM to the console line 'dmalab-init: insmod dmalab ok' (host clock, console streamed)";
    let d_wall = Stats::of(&pick(Vmm::Dmalab, &|b| b.driver_ready_wall_s));
    let r = row("boot", "boot to driver-ready, dmalab (wall)", how_wall);
    rows.push(match d_wall {
        Some(s) => r
            .value(
                s.median,
                "s",
                fmt_stats(&s, "s", 1) + &fail_note(Vmm::Dmalab),
            )
            .at_most(20.0, "20 s (stretch 15 s)"),
        None => r
            .not_measured("no dmalab boot reached driver-ready")
            .at_most(20.0, "20 s (stretch 15 s)"),
    });
    for vmm in peers {
        let label = peer_label(labels, vmm);
        let q_wall = Stats::of(&pick(vmm, &|b| b.driver_ready_wall_s));
        let r = row(
            "boot",
            &format!("boot to driver-ready, {label} (wall)"),
            how_wall,
        );
        rows.push(match (q_wall, why(vmm)) {
            (Some(s), _) => r.value(s.median, "s", fmt_stats(&s, "s", 1) + &fail_note(vmm)),
            (None, Some(w)) => r.not_measured(w),
            (None, None) => r.not_measured(&format!("no {label} boot reached driver-ready")),
        });
        let r = row(
            "boot",
            &format!("dmalab / {label}, boot to driver-ready"),
            "ratio of the medians above (same kernel, initramfs, command line, RAM, vCPUs)",
        );
        let r = match (d_wall, q_wall) {
            (Some(d), Some(q)) => {
                let x = d.median / q.median;
                r.value(x, "x", format!("{x:.2}x"))
            }
            _ => r.not_measured(&format!("needs dmalab and {label}")),
        };
        // The target is against a current QEMU; bookworm's is for reference.
        rows.push(if vmm == Vmm::Qemu {
            r.at_most(0.45, "0.45x")
        } else {
            r
        });
    }
    for vmm in [Vmm::Dmalab, Vmm::Qemu, Vmm::QemuBookworm] {
        let label = if vmm == Vmm::Dmalab {
            "dmalab".to_string()
        } else {
            peer_label(labels, vmm)
        };
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
    for vmm in peers {
        let label = peer_label(labels, vmm);
        let q_cl = Stats::of(&pick(vmm, &|b| b.cmdline_guest_s));
        if let (Some(d), Some(q)) = (d_cl, q_cl) {
            rows.push(
                row(
                    "boot",
                    &format!("guest clock at 'Kernel command line', dmalab / {label}"),
                    "the guest's printk time of its 'Kernel command line:' line; the guest clock (TSC) runs from vCPU creation, so this is firmware (QEMU: SeaBIOS and the PVH option ROM; dmalab: none) plus the same early kernel work in both",
                )
                .value(
                    q.median - d.median,
                    "s",
                    format!(
                        "{:.1} s / {:.1} s (medians): {:.1} s more before the kernel in {label}",
                        d.median,
                        q.median,
                        q.median - d.median
                    ),
                ),
            );
        }
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
    for vmm in [Vmm::Dmalab, Vmm::Qemu, Vmm::QemuBookworm] {
        let label = if vmm == Vmm::Dmalab {
            "dmalab".to_string()
        } else {
            peer_label(labels, vmm)
        };
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
            _ => match why(vmm) {
                Some(w) => r.not_measured(w),
                None => r.not_measured("no memory samples (guest RAM mapping not found?)"),
            },
        };
        rows.push(if vmm == Vmm::Dmalab {
            r.at_most(5.0, "5 MiB")
        } else {
            r
        });
    }
}
