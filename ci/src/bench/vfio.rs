//! `--only vfio`: the same guest under dmalab and under QEMU with dma24
//! served by `dmalab serve` over vfio-user, side by side in one run: boot to
//! driver-ready, the read()/write() transfer rate (`dma24-tool bench`), and
//! one register read from the guest driver (KUnit `register_read_round_trip`:
//! a KVM MMIO exit handled in dmalab's vCPU thread, against QEMU's exit plus
//! a REGION_READ round trip over the socket).
//!
//! One boot per VMM of the module kernel with a 32-bit dma24 (user pages are
//! reachable, so nothing WARNs under QEMU on PVM: see `ci::vfio_user`), only
//! the probe suite at insmod (it holds the register-read case).

use std::process::Command;
use std::time::Duration;

use super::console::parse_driver_mmio;
use super::guest::{DRIVER_READY, MEM_MIB};
use super::inputs::{progress, Inputs};
use super::memory::guest_ram_regions;
use super::table::{fmt_ns, row, Row};
use super::vmm::{dmalab_command, run_vmm, Capture};
use super::zerocopy::parse;
use ci::vfio_user::{guest_cmdline, qemu_args, Server};

/// A 32-bit dma24 with the default 64 KiB: `dma24-tool bench` then times
/// 4 KiB and 64 KiB round trips only (the zerocopy part's 1 MiB size adds
/// minutes of emulated copying, twice).
const DEVICE: &str = "dma24,mask-bits=32";
/// What each boot runs after the driver is up.
const EXTRA: &str = "kunit.filter_glob=dmalab_probe dma24-tool.bench";
/// The read()/write() size the rate row compares.
const RATE_LEN: u64 = 65536;

/// What one boot gave: driver-ready wall time, register read ns, rw rate.
struct Figures {
    ready_s: Option<f64>,
    mmio_ns: Option<f64>,
    rw_kib_s: Option<f64>,
}

fn figures(cap: &Capture) -> Figures {
    let lines = cap.stdout_lines();
    Figures {
        ready_s: cap.marker_s,
        mmio_ns: lines
            .iter()
            .find_map(|(_, l)| parse_driver_mmio(l))
            .map(|(ns, _)| ns),
        rw_kib_s: parse(&lines).kib_per_s("rw", RATE_LEN),
    }
}

fn boot(inputs: &Inputs, name: &str, cmd: Command) -> Result<Figures, String> {
    let cap = run_vmm(
        cmd,
        DRIVER_READY,
        Duration::from_secs(1200),
        Duration::from_secs(900),
        &guest_ram_regions(MEM_MIB),
    )?;
    let _ = std::fs::write(inputs.out.join(format!("logs/{name}.log")), cap.console());
    Ok(figures(&cap))
}

fn qemu_boot(
    inputs: &Inputs,
    images: &std::path::Path,
    dmalab: &std::path::Path,
) -> Result<Figures, String> {
    let qemu = ci::build::current_qemu()?;
    let logs = private_dir()?;
    let socket = logs.join("vfio-bench.sock");
    let server = Server::start(
        dmalab,
        DEVICE,
        &socket,
        Some(&logs.join("vfio-bench.trace.jsonl")),
        &logs.join("vfio-bench-serve.log"),
    )?;
    let append = guest_cmdline(EXTRA);
    let args = qemu_args(
        &images.join("vmlinux"),
        Some(&images.join("initramfs.cpio")),
        u32::try_from(MEM_MIB).unwrap_or(128),
        &socket,
        &append,
    );
    let mut cmd = Command::new(qemu);
    cmd.args(args);
    let f = boot(inputs, "vfio-bench-qemu", cmd);
    let _ = server.wait(Duration::from_secs(30));
    f
}

fn pair_row(
    metric: &str,
    how: &str,
    unit: &str,
    d: Option<f64>,
    q: Option<f64>,
    show: fn(f64) -> String,
) -> Row {
    let r = row("vfio", metric, how);
    match (d, q) {
        (Some(d), Some(q)) => r.value(
            q / d,
            "x",
            format!(
                "QEMU + vfio-user {} vs dmalab {}: {:.2}x",
                show(q),
                show(d),
                q / d
            ),
        ),
        (d, q) => r.not_measured(&format!(
            "dmalab {unit}: {}, QEMU + vfio-user: {}",
            d.map_or("none".into(), show),
            q.map_or("none".into(), show)
        )),
    }
}

/// The server's socket, log and trace: a folder of this process's own (the
/// bench's shared logs folder is emptied by every bench that starts, and a
/// socket path must stay under 108 bytes).
fn private_dir() -> Result<std::path::PathBuf, String> {
    let d = std::env::temp_dir().join(format!("dmalab-vfio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    Ok(d)
}

/// REGION_READs of one register a host client makes against a fresh server.
const SOCKET_READS: u32 = 2000;

/// Mean ns of one 4-byte REGION_READ of BAR0 round trip from a raw host
/// client to `dmalab serve` (no QEMU, no guest): the socket's and the
/// server's share of a guest register read under QEMU.
fn socket_read_ns(dmalab: &std::path::Path) -> Result<f64, String> {
    use std::io::{Read, Write};
    let logs = private_dir()?;
    let socket = logs.join("vfio-socket-bench.sock");
    let server = Server::start(
        dmalab,
        "dma24",
        &socket,
        None,
        &logs.join("vfio-socket-bench.log"),
    )?;
    let mut s = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| e.to_string())?;
    let mut msg = Vec::with_capacity(32);
    let mut reply = [0u8; 36];
    let t0 = std::time::Instant::now();
    for id in 0..SOCKET_READS {
        msg.clear();
        msg.extend_from_slice(&u16::try_from(id & 0xffff).unwrap_or(0).to_le_bytes());
        msg.extend_from_slice(&9u16.to_le_bytes()); // REGION_READ
        msg.extend_from_slice(&32u32.to_le_bytes());
        msg.extend_from_slice(&[0; 8]); // flags, error
        msg.extend_from_slice(&0u64.to_le_bytes()); // offset: REG_MAGIC
        msg.extend_from_slice(&0u32.to_le_bytes()); // region: BAR0
        msg.extend_from_slice(&4u32.to_le_bytes());
        s.write_all(&msg).map_err(|e| e.to_string())?;
        s.read_exact(&mut reply).map_err(|e| e.to_string())?;
    }
    let ns = t0.elapsed().as_secs_f64() * 1e9 / f64::from(SOCKET_READS);
    drop(s);
    let _ = server.wait(Duration::from_secs(10));
    Ok(ns)
}

pub(super) fn vfio_part(inputs: &Inputs) -> Vec<Row> {
    let how = "module kernel + initramfs, --device dma24,mask-bits=32, KUnit probe suite at insmod, `dma24-tool bench`; one boot under dmalab, one under QEMU 11 (memfd RAM shared with `dmalab serve`, -device vfio-user-pci)";
    let (images, dmalab) = match inputs.guest_artifacts("vfio", "QEMU + vfio-user vs dmalab", how) {
        Ok(a) => a,
        Err(r) => return vec![*r],
    };
    progress("vfio-user: host REGION_READ round trips against dmalab serve");
    let socket_ns = socket_read_ns(&dmalab);
    progress("vfio-user: dmalab boot");
    let mut cmd = dmalab_command(&dmalab, &images, EXTRA, false, None);
    cmd.args(["--device", DEVICE]);
    let d = boot(inputs, "vfio-bench-dmalab", cmd);
    progress("vfio-user: QEMU + dmalab serve boot");
    let q = qemu_boot(inputs, &images, &dmalab);
    let (d, q) = match (d, q) {
        (Ok(d), Ok(q)) => (d, q),
        (d, q) => {
            let why = [d.err(), q.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            return vec![row("vfio", "QEMU + vfio-user vs dmalab", how).not_measured(&why)];
        }
    };
    vec![
        pair_row(
            "boot to driver-ready (wall, from process start)",
            how,
            "s",
            d.ready_s,
            q.ready_s,
            |s| format!("{s:.1} s"),
        ),
        pair_row(
            "read()/write() 64 KiB round trip rate",
            "dma24-tool bench path=rw len=65536, median of 3, guest clock; the ratio is QEMU's rate over dmalab's",
            "KiB/s",
            d.rw_kib_s,
            q.rw_kib_s,
            |v| format!("{v:.0} KiB/s"),
        ),
        pair_row(
            "one register read from the guest driver",
            "KUnit register_read_round_trip (readl of REG_MAGIC, mean of its reads, guest clock): dmalab's KVM MMIO exit vs QEMU's exit + REGION_READ over the vfio-user socket",
            "ns",
            d.mmio_ns,
            q.mmio_ns,
            fmt_ns,
        ),
        {
            let r = row(
                "vfio",
                "REGION_READ round trip, host client to dmalab serve",
                "a raw client on the same host: 2000 REGION_READs of BAR0's first register (4 bytes), mean; the socket's and the server's share of one guest register read under QEMU (the rest is QEMU's exit and its vfio-user client)",
            );
            match (socket_ns, q.mmio_ns) {
                (Ok(ns), Some(guest)) => r.value(
                    ns / 1e3,
                    "µs",
                    format!("{} ({:.0}% of the guest's {})", fmt_ns(ns), ns / guest * 100.0, fmt_ns(guest)),
                ),
                (Ok(ns), None) => r.value(ns / 1e3, "µs", fmt_ns(ns)),
                (Err(e), _) => r.not_measured(&e),
            }
        },
    ]
}
