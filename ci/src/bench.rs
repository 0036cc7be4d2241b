//! `cargo xtask bench`: what a user would compare, measured side by side in
//! one run on one machine, printed as a table (with targets) and written as
//! JSON. Benchmarks, not tests: timings never fail the command; a part that
//! cannot run yet prints "not measured: why" instead.
//!
//! Parts (each can be picked with `--only`):
//! - `boot`: the same guest kernel and initramfs booted by dmalab and by
//!   QEMU (`-enable-kvm -kernel vmlinux`, PVH), same RAM, vCPUs and kernel
//!   command line, interleaved runs; wall time from process spawn to the
//!   console line `dmalab-init: insmod dmalab ok` (driver ready), the guest's
//!   own printk times, dmalab's start-to-first-instruction log, and the
//!   resident memory of each VMM beyond the guest RAM it touched.
//! - `initcall`: one more dmalab boot with `initcall_debug`: the ten slowest
//!   initcalls and where boot time goes, for tuning the image config.
//! - `mmio`: `cargo bench -p ci --bench mmio`: host-side bus dispatch to a
//!   dma24 register (criterion) and the round trip of a register access from
//!   a mini guest through dmalab's vCPU loop.
//! - `dma`: `cargo bench -p device-model --bench dma` (engine against memcpy,
//!   trace off/on, START to idle) and, when dmalab can attach the device, the
//!   end-to-end transfer rate of the guest's `dma24-tool selftest`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use ci::guest::cache_dir;

use crate::{demo, images};

/// Console line the initramfs prints once `insmod dmalab.ko` succeeded.
pub const DRIVER_READY: &str = "dmalab-init: insmod dmalab ok";
/// Guest RAM and vCPUs of every boot (dmalab's defaults).
const MEM_MIB: u64 = 128;
const VCPUS: u32 = 1;
/// Added to dmalab's default command line for both VMMs: the DMA-API debug
/// table demo.rs uses, no self-test after the driver loads (the boot
/// benchmark stops at driver-ready; the init still reboots at once), and no
/// KUnit run inside `insmod` (the module carries the driver's suites; they
/// are tests, not driver start-up: 7 s on PVM).
const BOOT_EXTRA: &str = "dmalab.run=none kunit.enable=0";
/// QEMU only: on PVM hosts the kernel's int3 self-test cannot be emulated;
/// dmalab completes it by injecting #BP, QEMU cannot, so the patched kernel
/// skips it (images/patches/0002-...).
const QEMU_ONLY: &str = "no_int3_selftest";
const QEMU_CPU: &str = "host,arch-capabilities=off";

// ---------------------------------------------------------------- options

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Boot,
    Initcall,
    Mmio,
    Dma,
}

impl Part {
    const ALL: [Part; 4] = [Part::Boot, Part::Initcall, Part::Mmio, Part::Dma];

    fn parse(s: &str) -> Option<Part> {
        match s {
            "boot" => Some(Part::Boot),
            "initcall" | "initcalls" => Some(Part::Initcall),
            "mmio" => Some(Part::Mmio),
            "dma" => Some(Part::Dma),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Options {
    /// Boots per VMM.
    pub runs: usize,
    pub quick: bool,
    pub json: PathBuf,
    pub parts: Vec<Part>,
    pub qemu: bool,
}

pub const USAGE: &str = "\
usage: cargo xtask bench [--runs N] [--quick] [--json PATH] [--only PARTS] [--no-qemu]
  --runs N       boots per VMM (default 3; --quick: 1)
  --quick        one boot each, no initcall_debug boot, short criterion runs
  --json PATH    where to write the results (default ~/.cache/dmalab/bench/latest.json)
  --only PARTS   comma list of boot,initcall,mmio,dma (default: all)
  --no-qemu      boot dmalab only";

pub fn parse_options(args: &[String], default_json: PathBuf) -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        quick: false,
        json: default_json,
        parts: Part::ALL.to_vec(),
        qemu: true,
    };
    let mut runs = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--runs" => {
                let v = value("--runs")?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| format!("--runs {v}: give a number from 1 to 50"))?;
                runs = Some(n);
            }
            "--quick" => o.quick = true,
            "--json" => o.json = PathBuf::from(value("--json")?),
            "--only" => {
                let v = value("--only")?;
                let mut parts = Vec::new();
                for p in v.split(',').filter(|p| !p.is_empty()) {
                    parts.push(Part::parse(p).ok_or_else(|| {
                        format!("--only: unknown part {p:?} (boot, initcall, mmio, dma)")
                    })?);
                }
                parts.sort();
                parts.dedup();
                o.parts = parts;
            }
            "--no-qemu" => o.qemu = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    o.runs = runs.unwrap_or(if o.quick { 1 } else { 3 });
    Ok(o)
}

// ------------------------------------------------------------- statistics

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    /// None for an empty sample; NaNs are ignored.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            n,
            min: v[0],
            median,
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
        })
    }
}

// ---------------------------------------------------------------- parsers

/// `[   43.393956] Run /init as init process` -> (43.393956, "Run /init ...").
pub fn printk_time(line: &str) -> Option<(f64, &str)> {
    let l = line.trim_start_matches(['\r', '\n']).trim_start();
    let rest = l.strip_prefix('[')?;
    let (ts, text) = rest.split_once(']')?;
    let t: f64 = ts.trim().parse().ok()?;
    Some((t, text.strip_prefix(' ').unwrap_or(text).trim_end()))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Initcall {
    pub name: String,
    pub ret: i64,
    pub usecs: u64,
}

/// `initcall pty_init+0x0/0x40 returned 0 after 25000 usecs` (anywhere in
/// the line, printk time or not); the `+0x0/0x40` and a module tag go.
pub fn parse_initcall(line: &str) -> Option<Initcall> {
    let at = line.find("initcall ")?;
    let rest = &line[at + "initcall ".len()..];
    let (sym, rest) = rest.split_once(" returned ")?;
    let (ret, rest) = rest.split_once(" after ")?;
    let usecs = rest.trim().strip_suffix("usecs")?.trim().parse().ok()?;
    let sym = sym.split_whitespace().next()?;
    let name = sym.split('+').next().unwrap_or(sym).to_string();
    Some(Initcall {
        name,
        ret: ret.trim().parse().ok()?,
        usecs,
    })
}

/// The `n` slowest initcalls of a console log, slowest first.
pub fn top_initcalls(console: &str, n: usize) -> Vec<Initcall> {
    let mut v: Vec<Initcall> = console.lines().filter_map(parse_initcall).collect();
    v.sort_by(|a, b| b.usecs.cmp(&a.usecs).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

/// The number in `... <before>NUMBER<after>...` of a dmalab log line, e.g.
/// `log_number(l, "first guest instruction at ", " ms")`.
pub fn log_number(line: &str, before: &str, after: &str) -> Option<f64> {
    let at = line.find(before)?;
    let rest = &line[at + before.len()..];
    let end = rest.find(after)?;
    rest[..end].trim().parse().ok()
}

/// Fields of /proc/PID/status that matter here, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcStatus {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
}

pub fn parse_status(text: &str) -> ProcStatus {
    let mut s = ProcStatus::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let kib = v
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match k {
            "VmRSS" => s.vm_rss_kib = kib,
            "VmHWM" => s.vm_hwm_kib = kib,
            "RssAnon" => s.rss_anon_kib = kib,
            "RssFile" => s.rss_file_kib = kib,
            "RssShmem" => s.rss_shmem_kib = kib,
            _ => {}
        }
    }
    s
}

/// One mapping of /proc/PID/smaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    /// Empty for an anonymous mapping.
    pub path: String,
    pub size_kib: u64,
    pub rss_kib: u64,
}

pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = fields.first() else {
            continue;
        };
        let range = first.split_once('-').and_then(|(a, b)| {
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        });
        if let Some((start, end)) = range {
            // start-end perms offset dev inode [path, which may contain spaces]
            out.push(Mapping {
                start,
                end,
                perms: fields.get(1).copied().unwrap_or("").to_string(),
                path: fields.get(5..).map_or(String::new(), |p| p.join(" ")),
                ..Mapping::default()
            });
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        let kib = fields.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
        match *first {
            "Size:" => m.size_kib = kib,
            "Rss:" => m.rss_kib = kib,
            _ => {}
        }
    }
    out
}

/// Guest RAM regions (bytes) for `mem_mib` MiB, as dmalab lays them out
/// (vmm/src/memory.rs `ram_ranges`): up to 3 GiB below the MMIO hole, the
/// rest above 4 GiB. QEMU's `pc` machine splits at a lower address for
/// large RAM, but for 128 MiB both are one region.
pub fn guest_ram_regions(mem_mib: u64) -> Vec<u64> {
    let mem = mem_mib << 20;
    let low = mem.min(3 << 30);
    let mut v = vec![low];
    if mem > low {
        v.push(mem - low);
    }
    v
}

/// Resident KiB of the guest's RAM: the anonymous, writable mappings whose
/// size is exactly one RAM region (each region matched once, the most
/// resident mapping of that size first). Both dmalab (vm-memory,
/// `MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE`) and QEMU map guest RAM that
/// way; the pages resident there are the guest's, touched by the guest or
/// by the VMM loading the kernel and initrd into it. None when a region
/// has no such mapping.
pub fn guest_ram_rss_kib(maps: &[Mapping], regions: &[u64]) -> Option<u64> {
    let mut used = vec![false; maps.len()];
    let mut total = 0;
    for &bytes in regions {
        let kib = bytes / 1024;
        let best = maps
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                !used[*i] && m.path.is_empty() && m.perms.starts_with("rw") && m.size_kib == kib
            })
            .max_by_key(|(_, m)| m.rss_kib)?;
        used[best.0] = true;
        total += best.1.rss_kib;
    }
    Some(total)
}

/// A criterion `estimates.json`, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub median_ns: f64,
    pub mean_ns: f64,
    pub median_lower_ns: f64,
    pub median_upper_ns: f64,
}

pub fn parse_estimates(json: &str) -> Option<Estimate> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let median = &v["median"];
    Some(Estimate {
        median_ns: median["point_estimate"].as_f64()?,
        mean_ns: v["mean"]["point_estimate"].as_f64()?,
        median_lower_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
        median_upper_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
    })
}

/// Every `<group>/<bench>/new/estimates.json` under a criterion home, by
/// `group/bench`.
pub fn read_criterion(home: &Path, groups: &[&str]) -> BTreeMap<String, Estimate> {
    let mut out = BTreeMap::new();
    for g in groups {
        let Ok(rd) = std::fs::read_dir(home.join(g)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let file = e.path().join("new/estimates.json");
            if let Some(est) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| parse_estimates(&t))
            {
                out.insert(format!("{g}/{name}"), est);
            }
        }
    }
    out
}

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

fn field<T: std::str::FromStr>(text: &str, key: &str) -> Option<T> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
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

/// Least-squares line `y = a + b x` through the points: (a, b). None with
/// fewer than two distinct x.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

// ------------------------------------------------------------ guest runs

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vmm {
    Dmalab,
    Qemu,
}

impl Vmm {
    fn name(self) -> &'static str {
        match self {
            Vmm::Dmalab => "dmalab",
            Vmm::Qemu => "qemu",
        }
    }
}

/// One memory sample of a running VMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MemSample {
    pub t_s: f64,
    pub status: ProcStatus,
    pub guest_ram_rss_kib: Option<u64>,
}

impl MemSample {
    /// Resident KiB beyond the guest's RAM.
    pub fn beyond_guest_kib(&self) -> Option<u64> {
        self.guest_ram_rss_kib
            .map(|g| self.status.vm_rss_kib.saturating_sub(g))
    }
    pub fn anon_beyond_guest_kib(&self) -> Option<u64> {
        self.guest_ram_rss_kib
            .map(|g| self.status.rss_anon_kib.saturating_sub(g))
    }
}

fn sample_memory(pid: u32, t_s: f64, regions: &[u64]) -> Option<MemSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(MemSample {
        t_s,
        status: parse_status(&status),
        guest_ram_rss_kib: guest_ram_rss_kib(&parse_smaps(&smaps), regions),
    })
}

/// What one VMM process left.
struct Capture {
    /// (seconds since spawn, stderr?, line)
    lines: Vec<(f64, bool, String)>,
    marker_s: Option<f64>,
    status: Option<ExitStatus>,
    /// Why the harness killed it, if it did.
    killed: Option<String>,
    mem: Vec<MemSample>,
    mem_at_marker: Option<MemSample>,
    wall_s: f64,
}

impl Capture {
    fn console(&self) -> String {
        let mut s = String::new();
        for (t, err, l) in &self.lines {
            s.push_str(&format!("{t:9.3} {} {l}\n", if *err { "E" } else { "O" }));
        }
        s
    }
    fn text(&self) -> String {
        let mut s = String::new();
        for (_, _, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
    fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..]
            .iter()
            .map(|(_, _, l)| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    r: R,
    err: bool,
    t0: Instant,
    tx: mpsc::Sender<(f64, bool, String)>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let t = t0.elapsed().as_secs_f64();
                    let l = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .trim_start_matches('\r')
                        .to_string();
                    if tx.send((t, err, l)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Runs `cmd` (a VMM with a guest), streaming its output: notes when a
/// console line starts with `marker`, samples its memory every second,
/// waits at most `timeout` for the marker and `grace` after it for the
/// process to end, and kills it (by its PID) otherwise.
fn run_vmm(
    mut cmd: Command,
    marker: &str,
    timeout: Duration,
    grace: Duration,
    regions: &[u64],
) -> Result<Capture, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let (tx, rx) = mpsc::channel();
    if let Some(o) = child.stdout.take() {
        spawn_reader(o, false, t0, tx.clone());
    }
    if let Some(e) = child.stderr.take() {
        spawn_reader(e, true, t0, tx);
    }
    let pid = child.id();
    let mut cap = Capture {
        lines: Vec::new(),
        marker_s: None,
        status: None,
        killed: None,
        mem: Vec::new(),
        mem_at_marker: None,
        wall_s: 0.0,
    };
    let mut next_sample = 0.5;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((t, err, l)) => {
                if cap.marker_s.is_none() && !err && l.trim_start().starts_with(marker) {
                    cap.marker_s = Some(t);
                    cap.mem_at_marker = sample_memory(pid, t, regions);
                }
                cap.lines.push((t, err, l));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Both pipes closed: the process is ending.
                cap.status = child.wait().ok();
                break;
            }
        }
        let now = t0.elapsed().as_secs_f64();
        if cap.status.is_none() {
            if let Ok(Some(st)) = child.try_wait() {
                cap.status = Some(st);
            }
        }
        if cap.status.is_none() && now >= next_sample {
            if let Some(s) = sample_memory(pid, now, regions) {
                cap.mem.push(s);
            }
            next_sample = now + 1.0;
        }
        let limit = match cap.marker_s {
            None => timeout.as_secs_f64(),
            Some(m) => m + grace.as_secs_f64(),
        };
        if cap.status.is_none() && now > limit {
            cap.killed = Some(match cap.marker_s {
                None => format!("no {marker:?} within {} s", timeout.as_secs()),
                Some(_) => format!("still running {} s after the marker", grace.as_secs()),
            });
            let _ = child.kill(); // SIGKILL to this child's PID only
            cap.status = child.wait().ok();
        }
        if cap.status.is_some() {
            // Drain what the readers still have.
            while let Ok((t, err, l)) = rx.recv_timeout(Duration::from_millis(200)) {
                cap.lines.push((t, err, l));
            }
            break;
        }
    }
    cap.wall_s = t0.elapsed().as_secs_f64();
    Ok(cap)
}

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

fn analyse_boot(vmm: Vmm, run: usize, cap: &Capture, log: &Path) -> Boot {
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
    let up = console
        .iter()
        .find_map(|(_, l)| log_number(l, "dmalab-init: user space up (uptime ", " s)"));
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
        ("init script: mounts, forks (to 'user space up')", up),
        (
            "boot-done, insmod reads the module (to its first printk)",
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

// ------------------------------------------------------------ the table

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub part: String,
    pub metric: String,
    /// Main figure in `unit` (None: not measured).
    pub value: Option<f64>,
    pub unit: String,
    /// What the table shows.
    pub shown: String,
    pub target: Option<String>,
    /// None: no target or not measured.
    pub met: Option<bool>,
    pub how: String,
}

fn row(part: &str, metric: &str, how: &str) -> Row {
    Row {
        part: part.into(),
        metric: metric.into(),
        value: None,
        unit: String::new(),
        shown: String::new(),
        target: None,
        met: None,
        how: how.into(),
    }
}

impl Row {
    fn value(mut self, v: f64, unit: &str, shown: String) -> Row {
        self.value = Some(v);
        self.unit = unit.into();
        self.shown = shown;
        self
    }
    fn not_measured(mut self, why: &str) -> Row {
        self.value = None;
        self.met = None;
        self.shown = format!("not measured: {why}");
        self
    }
    /// Target "≤ limit": met when the value is at most `limit`.
    fn at_most(mut self, limit: f64, shown: &str) -> Row {
        self.target = Some(format!("≤ {shown}"));
        self.met = self.value.map(|v| v <= limit);
        self
    }
    fn at_least(mut self, limit: f64, shown: &str) -> Row {
        self.target = Some(format!("≥ {shown}"));
        self.met = self.value.map(|v| v >= limit);
        self
    }
}

fn fmt_stats(s: &Stats, unit: &str, digits: usize) -> String {
    if s.n == 1 {
        format!("{:.*} {unit} (1 run)", digits, s.median)
    } else {
        format!(
            "{:.*} {unit} (min {:.*}, max {:.*}; {} runs)",
            digits, s.median, digits, s.min, digits, s.max, s.n
        )
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn gib_per_s(bytes: u64, ns: f64) -> f64 {
    bytes as f64 / ns / (1u64 << 30) as f64 * 1e9
}

/// Renders rows as a text table, wrapping long cells.
pub fn render_table(rows: &[Row]) -> String {
    let head = ["metric", "value", "target", "met"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.metric.clone(),
                r.shown.clone(),
                r.target.clone().unwrap_or_else(|| "-".into()),
                match (r.met, r.value) {
                    (Some(true), _) => "met".into(),
                    (Some(false), _) => "NOT met".into(),
                    (None, None) => "n/a".into(),
                    (None, Some(_)) => "-".into(),
                },
            ]
        })
        .collect();
    let max = [44usize, 58, 12, 7];
    let mut width = [0usize; 4];
    for (i, h) in head.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for c in &cells {
        for i in 0..4 {
            width[i] = width[i].max(c[i].chars().count().min(max[i]));
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, parts: &[String; 4]| {
        let wrapped: Vec<Vec<String>> = (0..4).map(|i| wrap(&parts[i], width[i])).collect();
        let h = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..h {
            let mut l = String::from("|");
            for i in 0..4 {
                let s = wrapped[i].get(k).map_or("", String::as_str);
                l.push_str(&format!(
                    " {s}{} |",
                    " ".repeat(width[i] - s.chars().count())
                ));
            }
            out.push_str(l.trim_end());
            out.push('\n');
        }
    };
    line(&mut out, &head.map(String::from));
    let sep: Vec<String> = width.iter().map(|w| "-".repeat(*w + 2)).collect();
    out.push_str(&format!("|{}|\n", sep.join("|")));
    let mut part = "";
    for (r, c) in rows.iter().zip(&cells) {
        if r.part != part {
            part = &r.part;
            let title = format!("[{part}]");
            line(
                &mut out,
                &[title, String::new(), String::new(), String::new()],
            );
        }
        line(&mut out, c);
    }
    out
}

/// Greedy word wrap to `w` columns (long words are cut).
fn wrap(s: &str, w: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in s.split(' ') {
        let cur = out.last_mut().expect("never empty");
        let need = cur.chars().count() + usize::from(!cur.is_empty()) + word.chars().count();
        if need <= w || cur.is_empty() && word.chars().count() <= w {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        } else if word.chars().count() <= w {
            out.push(word.to_string());
        } else {
            let chars: Vec<char> = word.chars().collect();
            for chunk in chars.chunks(w) {
                out.push(chunk.iter().collect());
            }
        }
    }
    out.retain(|l| !l.is_empty());
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

// ----------------------------------------------------------- the machine

#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub mem_gib: f64,
    pub host_kernel: String,
    pub kvm: String,
    pub hostname: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub git: String,
    pub qemu: String,
    pub images: String,
    pub date: String,
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn command_line_out(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let kvm = if Path::new("/sys/module/kvm_pvm").exists() {
        "PVM (guest kernel code emulated, about 1M instructions/s)"
    } else if Path::new("/sys/module/kvm_intel").exists() {
        "kvm_intel (hardware)"
    } else if Path::new("/sys/module/kvm_amd").exists() {
        "kvm_amd (hardware)"
    } else if Path::new("/dev/kvm").exists() {
        "/dev/kvm (unknown kind)"
    } else {
        "none"
    };
    let root = images::repo_root();
    let git = command_line_out(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .map(|h| {
        let dirty = command_line_out(
            "git",
            &["-C", &root.display().to_string(), "status", "--porcelain"],
        )
        .is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{h} (with uncommitted changes)")
        } else {
            h
        }
    })
    .unwrap_or_default();
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib: mem_kib / (1024.0 * 1024.0),
        host_kernel: read("/proc/sys/kernel/osrelease").trim().into(),
        kvm: kvm.into(),
        hostname: read("/proc/sys/kernel/hostname").trim().into(),
        loadavg_start: loadavg(),
        git,
        date: command_line_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
        ..Machine::default()
    }
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_root() -> bool {
    command_line_out("id", &["-u"]).is_some_and(|u| u == "0")
}

fn in_path(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|f| f.is_file())
    })
}

/// `qemu-system-x86_64`, installed with apt (Debian's qemu-system-x86) when
/// missing and we are root.
fn ensure_qemu() -> Result<PathBuf, String> {
    if let Some(p) = in_path("qemu-system-x86_64") {
        return Ok(p);
    }
    if !is_root() {
        return Err(
            "qemu-system-x86_64 is missing (install Debian's qemu-system-x86, or run as root)"
                .into(),
        );
    }
    eprintln!("bench: installing qemu-system-x86 (apt-get)");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "qemu-system-x86",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        if !install() {
            return Err("apt-get install qemu-system-x86 failed".into());
        }
    }
    in_path("qemu-system-x86_64").ok_or_else(|| "qemu-system-x86_64 still missing".into())
}

// --------------------------------------------------------------- report

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub options: Option<Options>,
    pub duration_s: f64,
    pub rows: Vec<Row>,
    pub dmalab_cmdline: Option<String>,
    pub qemu_command: Option<String>,
    pub boots: Vec<Boot>,
    pub initcalls_top10: Vec<Initcall>,
    pub initcall_boot: Option<Boot>,
    pub phases: Vec<Phase>,
    pub criterion: BTreeMap<String, Estimate>,
    pub mmio_guest: Option<MmioGuest>,
    pub e2e: Vec<E2eCase>,
    pub e2e_boot: Option<Boot>,
    /// From the driver's KUnit case in the end-to-end boot: (ns per readl, reads).
    pub driver_mmio_read: Option<(f64, u64)>,
    pub notes: Vec<String>,
}

struct Ctx {
    opts: Options,
    out: PathBuf,
    images: Result<PathBuf, String>,
    dmalab: Result<PathBuf, String>,
    report: Report,
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let out = cache_dir().join("bench");
    let opts = parse_options(args, out.join("latest.json"))?;
    let started = Instant::now();
    // Logs of this run only (a part skipped now must not leave an old log).
    let _ = std::fs::remove_dir_all(out.join("logs"));
    std::fs::create_dir_all(out.join("logs"))
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    progress(&format!(
        "parts {:?}, {} boot(s) per VMM{}; logs in {}",
        opts.parts,
        opts.runs,
        if opts.quick { ", quick" } else { "" },
        out.join("logs").display()
    ));
    let needs_guest = opts
        .parts
        .iter()
        .any(|p| matches!(p, Part::Boot | Part::Initcall | Part::Dma));
    let (images, dmalab) = if needs_guest {
        progress("guest images (images/build.sh; cached after the first time)");
        let images = images::build();
        progress("dmalab (cargo build --release -p vmm)");
        let dmalab = demo::build_dmalab();
        (images, dmalab)
    } else {
        (Err("not needed".into()), Err("not needed".into()))
    };
    let mut ctx = Ctx {
        report: Report {
            machine: machine(),
            options: Some(opts.clone()),
            ..Report::default()
        },
        opts,
        out,
        images,
        dmalab,
    };
    if let Ok(dir) = &ctx.images {
        ctx.report.machine.images = images_summary(dir);
    }
    if ctx
        .report
        .machine
        .loadavg_start
        .split(' ')
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        > Some(1.0)
    {
        ctx.report.notes.push(format!(
            "the machine was busy when the bench started (load average {}): timings are noisy",
            ctx.report.machine.loadavg_start
        ));
    }
    let parts = ctx.opts.parts.clone();
    if parts.contains(&Part::Boot) {
        boot_part(&mut ctx);
    }
    if parts.contains(&Part::Initcall) {
        initcall_part(&mut ctx);
    }
    if parts.contains(&Part::Mmio) {
        mmio_part(&mut ctx);
    }
    if parts.contains(&Part::Dma) {
        dma_part(&mut ctx);
    }
    if parts.contains(&Part::Mmio) || parts.contains(&Part::Dma) {
        driver_mmio_row(&mut ctx.report, parts.contains(&Part::Dma));
    }
    ctx.report.machine.loadavg_end = loadavg();
    ctx.report.duration_s = started.elapsed().as_secs_f64();
    print_report(&ctx.report);
    let json = serde_json::to_string_pretty(&ctx.report).map_err(|e| e.to_string())?;
    if let Some(dir) = ctx.opts.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&ctx.opts.json, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", ctx.opts.json.display()))?;
    println!("JSON: {}", ctx.opts.json.display());
    Ok(())
}

/// The images folder, its cache keys and the sizes that set boot time.
fn images_summary(dir: &Path) -> String {
    let manifest = std::fs::read_to_string(dir.join("manifest.txt")).unwrap_or_default();
    let keys: Vec<&str> = manifest
        .lines()
        .filter(|l| l.contains("_key=") || l.starts_with("kernel_pkg="))
        .collect();
    let size = |f: &str| {
        std::fs::metadata(dir.join(f))
            .map(|m| format!("{f} {:.2} MiB", m.len() as f64 / (1 << 20) as f64))
            .unwrap_or_default()
    };
    format!(
        "{} ({}; {}, {}, {})",
        dir.display(),
        keys.join(", "),
        size("vmlinux"),
        size("initramfs.cpio"),
        size("dmalab.ko")
    )
}

fn print_report(r: &Report) {
    let m = &r.machine;
    println!();
    println!("dmalab bench, {} ({}), git {}", m.date, m.hostname, m.git);
    println!(
        "machine: {}, {} CPUs, {:.1} GiB, host kernel {}, KVM: {}",
        m.cpu, m.cpus, m.mem_gib, m.host_kernel, m.kvm
    );
    println!(
        "load average at start {} / end {}; took {:.0} s; {}",
        m.loadavg_start, m.loadavg_end, r.duration_s, m.qemu
    );
    if !m.images.is_empty() {
        println!("images: {}", m.images);
    }
    println!();
    print!("{}", render_table(&r.rows));
    if !r.boots.is_empty() {
        println!();
        println!("Boots (wall = process spawn to {DRIVER_READY:?} on the console):");
        for b in &r.boots {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
            println!(
                "  {:<6} run {}: wall {} s, guest Run /init {} s, guest driver-ready ~{} s, ended after {:.1} s (exit {:?}){}",
                b.vmm,
                b.run,
                f(b.driver_ready_wall_s),
                f(b.run_init_guest_s),
                f(b.driver_ready_guest_s_est),
                b.total_wall_s,
                b.exit_code,
                b.killed.as_ref().map_or(String::new(), |k| format!(", killed: {k}"))
            );
        }
    }
    if !r.phases.is_empty() {
        println!();
        println!("Where the guest's boot time goes (dmalab, printk times):");
        for p in &r.phases {
            println!(
                "  {:>7.2} s  {:<55} ({:.2} -> {:.2})",
                p.to_s - p.from_s,
                p.name,
                p.from_s,
                p.to_s
            );
        }
    }
    if !r.initcalls_top10.is_empty() {
        println!();
        println!(
            "Slowest initcalls (dmalab boot with initcall_debug ignore_loglevel initramfs_async=0):"
        );
        for i in &r.initcalls_top10 {
            println!("  {:>9.3} s  {}", i.usecs as f64 / 1e6, i.name);
        }
    }
    let dma: Vec<_> = r
        .criterion
        .iter()
        .filter(|(k, _)| !k.starts_with("mmio"))
        .collect();
    if !dma.is_empty() {
        println!();
        println!("device-model criterion medians (95 % interval of the median):");
        for (k, e) in dma {
            println!(
                "  {:<45} {:>10}  [{} .. {}]",
                k,
                fmt_ns(e.median_ns),
                fmt_ns(e.median_lower_ns),
                fmt_ns(e.median_upper_ns)
            );
        }
    }
    if !r.e2e.is_empty() {
        println!();
        println!("dma24-tool selftest transfers (host time between its console lines):");
        for c in &r.e2e {
            println!(
                "  len {:>6} at offset {:>6}: {}",
                c.len,
                c.offset,
                c.host_s.map_or(
                    "(first of the test: no previous transfer line to time it from)".into(),
                    |s| format!(
                        "{:.1} ms, {:.0} KiB/s moved (2 x len)",
                        s * 1e3,
                        2.0 * c.len as f64 / s / 1024.0
                    )
                )
            );
        }
    }
    if let Some(c) = &r.qemu_command {
        println!();
        println!("QEMU command: {c}");
    }
    if !r.notes.is_empty() {
        println!();
        println!("Notes:");
        for n in &r.notes {
            println!("  - {n}");
        }
    }
    println!();
    println!("How each figure is measured:");
    let mut seen = std::collections::BTreeSet::new();
    for row in &r.rows {
        if !row.how.is_empty() && seen.insert(row.how.clone()) {
            println!("  - {}: {}", row.metric, row.how);
        }
    }
}

// ------------------------------------------------------------ boot part

fn dmalab_command(
    dmalab: &Path,
    images: &Path,
    extra: &str,
    device: bool,
    trace: Option<&Path>,
) -> Command {
    let mut c = Command::new(dmalab);
    c.arg("run")
        .arg("--kernel")
        .arg(images.join("vmlinux"))
        .arg("--initrd")
        .arg(images.join("initramfs.cpio"))
        .args(["--mem", &MEM_MIB.to_string(), "--vcpus", &VCPUS.to_string()])
        .args(["--no-stdin", "--log-level", "info", "--timeout", "600"])
        .args(["--boot-marker", DRIVER_READY])
        .args(["--cmdline", extra]);
    if device {
        c.args(["--device", "dma24"]);
    }
    if let Some(t) = trace {
        c.arg("--trace").arg(t);
    }
    c
}

fn qemu_args(images: &Path, append: &str) -> Vec<String> {
    vec![
        "-enable-kvm".into(),
        "-cpu".into(),
        QEMU_CPU.into(),
        "-m".into(),
        MEM_MIB.to_string(),
        "-smp".into(),
        VCPUS.to_string(),
        "-kernel".into(),
        images.join("vmlinux").display().to_string(),
        "-initrd".into(),
        images.join("initramfs.cpio").display().to_string(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-append".into(),
        append.into(),
    ]
}

fn one_boot(
    ctx: &mut Ctx,
    vmm: Vmm,
    run: usize,
    cmd: Command,
    name: &str,
    grace: Duration,
) -> Option<(Boot, Capture)> {
    let log = ctx.out.join("logs").join(format!("{name}.log"));
    let cap = match run_vmm(
        cmd,
        DRIVER_READY,
        Duration::from_secs(400),
        grace,
        &guest_ram_regions(MEM_MIB),
    ) {
        Ok(c) => c,
        Err(e) => {
            ctx.report.notes.push(format!("{name}: {e}"));
            return None;
        }
    };
    let _ = std::fs::write(&log, cap.console());
    let b = analyse_boot(vmm, run, &cap, &log);
    match (&b.error, b.driver_ready_wall_s) {
        (Some(e), _) => progress(&format!("  {name}: FAILED: {e}")),
        (None, Some(w)) => progress(&format!(
            "  {name}: driver ready after {w:.1} s (guest Run /init at {} s), exit {:?} after {:.1} s",
            b.run_init_guest_s.map_or("?".into(), |g| format!("{g:.1}")),
            b.exit_code,
            b.total_wall_s
        )),
        _ => {}
    }
    Some((b, cap))
}

/// A minimal PVH kernel: an x86-64 ELF with one PT_LOAD at 1 MiB and a
/// `XEN_ELFNOTE_PHYS32_ENTRY` note, entered in 32-bit protected mode, whose
/// code writes status 0 to dmalab's exit port (`mov al, 0; out 0xf4, al;
/// hlt`). Booting it measures the VMM's own start-up, without the copy of a
/// real kernel and initrd into guest RAM.
pub fn tiny_pvh_elf() -> Vec<u8> {
    const BASE: u64 = 0x10_0000;
    let code: &[u8] = &[0xb0, 0x00, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe];
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // name size
    note.extend_from_slice(&4u32.to_le_bytes()); // desc size
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&(BASE as u32).to_le_bytes());
    let code_off = 64 + 2 * 56u64;
    let note_off = code_off + code.len() as u64;
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // 64-bit
    v[5] = 1; // little-endian
    v[6] = 1; // version
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&BASE.to_le_bytes()); // entry
    v[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    v[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    v[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    v[56..58].copy_from_slice(&2u16.to_le_bytes()); // phnum
    let phdr = |kind: u32, off: u64, addr: u64, size: u64, memsz: u64| {
        let mut p = vec![0u8; 56];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&addr.to_le_bytes());
        p[24..32].copy_from_slice(&addr.to_le_bytes());
        p[32..40].copy_from_slice(&size.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p
    };
    v.extend(phdr(1, code_off, BASE, code.len() as u64, 0x1000)); // PT_LOAD
    v.extend(phdr(4, note_off, 0, note.len() as u64, note.len() as u64)); // PT_NOTE
    v.extend_from_slice(code);
    v.extend_from_slice(&note);
    v
}

/// VMM start to first guest instruction with the tiny kernel, `runs` times
/// (ms, from dmalab's log).
fn first_insn_tiny(dmalab: &Path, dir: &Path, runs: usize) -> Result<Vec<f64>, String> {
    let elf = dir.join("tiny-pvh.elf");
    std::fs::write(&elf, tiny_pvh_elf()).map_err(|e| format!("{}: {e}", elf.display()))?;
    let mut out = Vec::new();
    for _ in 0..runs {
        let o = Command::new(dmalab)
            .args(["run", "--kernel"])
            .arg(&elf)
            .args([
                "--mem",
                &MEM_MIB.to_string(),
                "--no-stdin",
                "--log-level",
                "info",
            ])
            .args(["--timeout", "10"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", dmalab.display()))?;
        let log = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            return Err(format!(
                "dmalab with a minimal kernel ended with {}: {}",
                o.status,
                log.lines().last().unwrap_or("")
            ));
        }
        match log
            .lines()
            .find_map(|l| log_number(l, "first guest instruction at ", " ms"))
        {
            Some(ms) => out.push(ms),
            None => return Err("no 'first guest instruction' in dmalab's log".into()),
        }
    }
    Ok(out)
}

fn boot_part(ctx: &mut Ctx) {
    let (images, dmalab) = match (&ctx.images, &ctx.dmalab) {
        (Ok(i), Ok(d)) => (i.clone(), d.clone()),
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("no images or no dmalab: {e}");
            ctx.report
                .rows
                .push(row("boot", "boot to driver-ready, dmalab", "").not_measured(&why));
            return;
        }
    };
    let qemu = if ctx.opts.qemu {
        let q = ensure_qemu();
        if let Ok(p) = &q {
            ctx.report.machine.qemu = command_line_out(&p.display().to_string(), &["--version"])
                .and_then(|v| v.lines().next().map(str::to_string))
                .unwrap_or_default();
        }
        q
    } else {
        Err("--no-qemu".into())
    };
    progress("VMM start-up with a minimal kernel (5 runs)");
    let tiny = first_insn_tiny(&dmalab, &ctx.out.join("logs"), 5);
    let r = row(
        "boot",
        "VMM start to first guest instruction, minimal kernel (dmalab)",
        "dmalab's own log (as above) when it boots a 7-byte PVH kernel (tiny ELF written by the bench): the VMM's start-up without copying a real kernel and initrd into guest RAM; 5 runs",
    );
    ctx.report.rows.push(
        match tiny {
            Ok(v) => match Stats::of(&v) {
                Some(s) => r.value(s.median, "ms", fmt_stats(&s, "ms", 2)),
                None => r.not_measured("no runs"),
            },
            Err(e) => r.not_measured(&e),
        }
        .at_most(5.0, "5 ms"),
    );
    let extra = format!("{} {BOOT_EXTRA}", demo::GUEST_CMDLINE);
    let mut cmdline: Option<String> = None;
    let mut boots = Vec::new();
    for run in 1..=ctx.opts.runs {
        progress(&format!("boot {run}/{}: dmalab", ctx.opts.runs));
        let cmd = dmalab_command(&dmalab, &images, &extra, false, None);
        if let Some((b, cap)) = one_boot(
            ctx,
            Vmm::Dmalab,
            run,
            cmd,
            &format!("boot-dmalab-{run}"),
            Duration::from_secs(60),
        ) {
            if cmdline.is_none() {
                cmdline = cap
                    .lines
                    .iter()
                    .filter(|(_, err, _)| *err)
                    .find_map(|(_, _, l)| l.split_once("guest command line: "))
                    .map(|(_, c)| c.trim().to_string());
            }
            if run == 1 && b.ok {
                let console: Vec<(f64, String)> = cap
                    .lines
                    .iter()
                    .filter(|(_, e, _)| !e)
                    .map(|(t, _, l)| (*t, l.clone()))
                    .collect();
                ctx.report.phases = boot_phases(&console, b.driver_ready_guest_s_est);
            }
            boots.push(b);
        }
        if let (Ok(q), Some(c)) = (&qemu, &cmdline) {
            progress(&format!("boot {run}/{}: qemu", ctx.opts.runs));
            let append = format!("{c} {QEMU_ONLY}");
            let args = qemu_args(&images, &append);
            if ctx.report.qemu_command.is_none() {
                ctx.report.qemu_command = Some(format!(
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
            if let Some((b, _)) = one_boot(
                ctx,
                Vmm::Qemu,
                run,
                cmd,
                &format!("boot-qemu-{run}"),
                Duration::from_secs(60),
            ) {
                boots.push(b);
            }
        }
    }
    ctx.report.dmalab_cmdline = cmdline.clone();
    let qemu_why: Option<String> = match (&qemu, &cmdline) {
        (Err(e), _) => Some(e.clone()),
        (_, None) => Some("dmalab printed no 'guest command line' to reproduce".into()),
        _ => None,
    };
    if qemu_why.is_none() {
        ctx.report.notes.push(format!(
            "QEMU gets dmalab's exact guest command line plus `{QEMU_ONLY}`: on PVM hosts the kernel's \
             int3 self-test cannot be emulated; dmalab completes that int3 by injecting #BP, QEMU cannot, \
             so the patched guest kernel skips the test (images/patches/0002). `-cpu {QEMU_CPU}`: Debian's \
             QEMU 7.2 aborts on MSR 0x10a with plain `-cpu host` here; the clearcpuid= list is already in \
             dmalab's command line. `{BOOT_EXTRA}`: both guests reboot right after driver-ready."
        ));
    }
    boot_rows(ctx, &boots, qemu_why.as_deref());
    ctx.report.boots.extend(boots);
}

fn boot_rows(ctx: &mut Ctx, boots: &[Boot], qemu_why: Option<&str>) {
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
    let rows = &mut ctx.report.rows;
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

// -------------------------------------------------------- initcall part

fn initcall_part(ctx: &mut Ctx) {
    let how = "one extra dmalab boot with `initcall_debug ignore_loglevel initramfs_async=0`: the 'initcall X returned R after N usecs' lines, slowest first (the printing itself slows that boot; initramfs_async=0 unpacks the initramfs inside its initcall, populate_rootfs, instead of in the background, so its cost shows)";
    if ctx.opts.quick {
        ctx.report
            .rows
            .push(row("boot", "slowest initcall", how).not_measured("skipped with --quick"));
        return;
    }
    let (images, dmalab) = match (&ctx.images, &ctx.dmalab) {
        (Ok(i), Ok(d)) => (i.clone(), d.clone()),
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("no images or no dmalab: {e}");
            ctx.report
                .rows
                .push(row("boot", "slowest initcall", how).not_measured(&why));
            return;
        }
    };
    progress("initcall_debug boot: dmalab");
    let extra = format!(
        "{} {BOOT_EXTRA} initcall_debug ignore_loglevel initramfs_async=0",
        demo::GUEST_CMDLINE
    );
    let cmd = dmalab_command(&dmalab, &images, &extra, false, None);
    let Some((b, cap)) = one_boot(
        ctx,
        Vmm::Dmalab,
        0,
        cmd,
        "boot-dmalab-initcall_debug",
        Duration::from_secs(60),
    ) else {
        ctx.report
            .rows
            .push(row("boot", "slowest initcall", how).not_measured("the boot did not run"));
        return;
    };
    let top = top_initcalls(&cap.text(), 10);
    let r = row("boot", "slowest initcall", how);
    ctx.report.rows.push(match top.first() {
        Some(i) => r.value(
            i.usecs as f64 / 1e6,
            "s",
            format!(
                "{} {:.2} s (top 10 total {:.1} s; below)",
                i.name,
                i.usecs as f64 / 1e6,
                top.iter().map(|i| i.usecs).sum::<u64>() as f64 / 1e6
            ),
        ),
        None => r.not_measured("no initcall lines on the console"),
    });
    ctx.report.initcalls_top10 = top;
    ctx.report.initcall_boot = Some(b);
}

// ------------------------------------------------------------ cargo bench

/// `cargo bench -p PKG --bench NAME -- ARGS` with criterion's results under
/// `home`; returns its stdout (or why it failed).
fn cargo_bench(
    pkg: &str,
    bench: &str,
    args: &[&str],
    home: &Path,
    env: &[(&str, String)],
    log: &Path,
) -> Result<String, String> {
    let mut c = Command::new(env!("CARGO"));
    c.args(["bench", "-p", pkg, "--bench", bench, "--"])
        .args(args)
        .env("CRITERION_HOME", home)
        .current_dir(images::repo_root());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::write(log, format!("{stdout}\n--- stderr\n{stderr}"));
    if out.status.success() {
        Ok(stdout)
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        Err(format!(
            "cargo bench -p {pkg} --bench {bench} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

fn criterion_args(quick: bool) -> Vec<&'static str> {
    if quick {
        vec![
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]
    } else {
        vec![
            "--warm-up-time",
            "1",
            "--measurement-time",
            "2",
            "--sample-size",
            "30",
        ]
    }
}

fn mmio_part(ctx: &mut Ctx) {
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
    let how_host = "criterion (ci/benches/mmio.rs), host side only, built as vmm::vm::run builds it: vmm::bus::Bus lookup -> PciMmioWindow (PCI root lock, BAR route scan) -> dma24 lock and register decode, and back";
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
fn driver_mmio_row(report: &mut Report, dma_ran: bool) {
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

/// Does this dmalab attach the dma24 device (`dmalab run --device`)?
fn dmalab_has_device(dmalab: &Path) -> bool {
    Command::new(dmalab)
        .args(["run", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--device"))
}

fn dma_part(ctx: &mut Ctx) {
    let home = ctx.out.join("criterion");
    for g in ["dma_4k", "dma_64k", "device_4k", "device_64k"] {
        let _ = std::fs::remove_dir_all(home.join(g));
    }
    progress("DMA: cargo bench -p device-model --bench dma");
    let res = cargo_bench(
        "device-model",
        "dma",
        &criterion_args(ctx.opts.quick),
        &home,
        &[],
        &ctx.out.join("logs/cargo-bench-dma.log"),
    );
    let est = read_criterion(&home, &["dma_4k", "dma_64k", "device_4k", "device_64k"]);
    let why = match &res {
        Err(e) => e.clone(),
        Ok(_) => "no criterion estimate".into(),
    };
    let rows = &mut ctx.report.rows;
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
    ctx.report.criterion.extend(est);
    dma_e2e(ctx);
}

fn dma_e2e(ctx: &mut Ctx) {
    let how = "dmalab boot with --device dma24 --trace, the initramfs runs `dma24-tool selftest`: per transfer case (write then read back through /dev/dma24-0, compare, one console line) the host time between its console lines; rate = 2 x len / time";
    let metric = "end-to-end guest transfer rate (/dev/dma24-0)";
    let (images, dmalab) = match (&ctx.images, &ctx.dmalab) {
        (Ok(i), Ok(d)) => (i.clone(), d.clone()),
        (Err(e), _) | (_, Err(e)) => {
            ctx.report.rows.push(
                row("dma", metric, how).not_measured(&format!("no images or no dmalab: {e}")),
            );
            return;
        }
    };
    if !dmalab_has_device(&dmalab) {
        ctx.report.rows.push(row("dma", metric, how).not_measured(
            "this dmalab cannot attach dma24 yet (no `run --device`: PCI integration in progress)",
        ));
        return;
    }
    progress("DMA end to end: dmalab boot with the device, dma24-tool selftest");
    let trace = ctx.out.join("logs/e2e.trace.jsonl");
    let cmd = dmalab_command(&dmalab, &images, demo::GUEST_CMDLINE, true, Some(&trace));
    let Some((b, cap)) = one_boot(
        ctx,
        Vmm::Dmalab,
        0,
        cmd,
        "e2e-dmalab-selftest",
        Duration::from_secs(300),
    ) else {
        ctx.report
            .rows
            .push(row("dma", metric, how).not_measured("the boot did not run"));
        return;
    };
    let console: Vec<(f64, String)> = cap
        .lines
        .iter()
        .filter(|(_, e, _)| !e)
        .map(|(t, _, l)| (*t, l.clone()))
        .collect();
    let cases = e2e_cases(&console);
    ctx.report.driver_mmio_read = console.iter().find_map(|(_, l)| parse_driver_mmio(l));
    let timed: Vec<(f64, f64)> = cases
        .iter()
        .filter_map(|c| c.host_s.map(|s| (c.len as f64, s)))
        .collect();
    let r = row("dma", metric, how);
    ctx.report.rows.push(
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
        ctx.report.rows.push(
            row(
                "dma",
                "boot to driver-ready with dma24 attached (dmalab)",
                "the same wall-clock measure as the boot rows, in this run with --device dma24 --trace: insmod now also probes the device",
            )
            .value(w, "s", format!("{w:.1} s (1 run)")),
        );
    }
    ctx.report.e2e = cases;
    ctx.report.e2e_boot = Some(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_odd_even_empty_nan() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            (s.n, s.min, s.median, s.max, s.mean),
            (3, 1.0, 2.0, 3.0, 2.0)
        );
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN]), None);
        assert_eq!(Stats::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn printk_times() {
        assert_eq!(
            printk_time("[   43.393956] Run /init as init process"),
            Some((43.393956, "Run /init as init process"))
        );
        assert_eq!(
            printk_time("\r[    0.000000] Linux\r"),
            Some((0.0, "Linux"))
        );
        assert_eq!(printk_time("dmalab-init: insmod dmalab ok"), None);
        assert_eq!(printk_time("[abc] x"), None);
    }

    #[test]
    fn initcall_lines() {
        let l = "[   12.000001] initcall pty_init+0x0/0x40 returned 0 after 25000 usecs";
        assert_eq!(
            parse_initcall(l),
            Some(Initcall {
                name: "pty_init".into(),
                ret: 0,
                usecs: 25000
            })
        );
        let m = "initcall dmalab_init+0x0/0x1000 [dmalab] returned -19 after 7 usecs";
        let i = parse_initcall(m).unwrap();
        assert_eq!((i.name.as_str(), i.ret, i.usecs), ("dmalab_init", -19, 7));
        assert_eq!(
            parse_initcall("[ 1.0] calling  pty_init+0x0/0x40 @ 1"),
            None
        );
        assert_eq!(
            parse_initcall("initcall x returned 0 after many usecs"),
            None
        );
        let console = "\
[ 1.0] initcall a+0x0/0x1 returned 0 after 5 usecs
[ 1.1] initcall b+0x0/0x1 returned 0 after 500 usecs
noise
[ 1.2] initcall c+0x0/0x1 returned 0 after 50 usecs
";
        let top = top_initcalls(console, 2);
        assert_eq!(
            top.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn vmm_log_numbers() {
        let l = "[   0.058720 dmalab INFO ] first guest instruction at 58.718 ms after VMM start";
        assert_eq!(
            log_number(l, "first guest instruction at ", " ms"),
            Some(58.718)
        );
        let l = "[   0.057214 dmalab INFO ] VM ready in 57.1 ms (57.2 ms after VMM start)";
        assert_eq!(log_number(l, "VM ready in ", " ms"), Some(57.1));
        let l = "dmalab-init: user space up (uptime 50.02 s)";
        assert_eq!(
            log_number(l, "dmalab-init: user space up (uptime ", " s)"),
            Some(50.02)
        );
        assert_eq!(log_number("nothing", "VM ready in ", " ms"), None);
    }

    const SMAPS: &str = "\
55e8e1ba0000-55e8e1c71000 r-xp 00043000 fe:00 5374644                    /work/main/target/release/dmalab
Size:                836 kB
Rss:                 836 kB
VmFlags: rd ex mr mw me
7fbf10000000-7fbf10021000 rw-p 00000000 00:00 0 
Size:                132 kB
Rss:                   8 kB
7fbf15e00000-7fbf1de00000 rw-p 00000000 00:00 0 
Size:             131072 kB
KernelPageSize:        4 kB
Rss:               17476 kB
Anonymous:         17476 kB
VmFlags: rd wr mr mw me nr
7fbf1e000000-7fbf26000000 rw-p 00000000 fe:00 99                         /tmp/a file with spaces
Size:             131072 kB
Rss:               99999 kB
";

    #[test]
    fn smaps_and_guest_ram() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].path, "/work/main/target/release/dmalab");
        assert_eq!((maps[0].size_kib, maps[0].rss_kib), (836, 836));
        assert_eq!(maps[2].path, "");
        assert_eq!(maps[2].start, 0x7fbf15e00000);
        assert_eq!(maps[3].path, "/tmp/a file with spaces");
        // The file mapping of the same size is not guest RAM.
        assert_eq!(
            guest_ram_rss_kib(&maps, &guest_ram_regions(128)),
            Some(17476)
        );
        assert_eq!(guest_ram_rss_kib(&maps, &guest_ram_regions(256)), None);
        assert_eq!(guest_ram_regions(128), vec![128 << 20]);
        assert_eq!(guest_ram_regions(4096), vec![3 << 30, 1 << 30]);
        let s = MemSample {
            t_s: 1.0,
            status: ProcStatus {
                vm_rss_kib: 20388,
                rss_anon_kib: 17696,
                ..ProcStatus::default()
            },
            guest_ram_rss_kib: Some(17476),
        };
        assert_eq!(s.beyond_guest_kib(), Some(2912));
        assert_eq!(s.anon_beyond_guest_kib(), Some(220));
    }

    #[test]
    fn proc_status() {
        let s = parse_status(
            "Name:\tdmalab\nVmHWM:\t   20400 kB\nVmRSS:\t   20388 kB\nRssAnon:\t   17696 kB\nRssFile:\t    2692 kB\nRssShmem:\t       0 kB\n",
        );
        assert_eq!(
            s,
            ProcStatus {
                vm_rss_kib: 20388,
                vm_hwm_kib: 20400,
                rss_anon_kib: 17696,
                rss_file_kib: 2692,
                rss_shmem_kib: 0
            }
        );
    }

    #[test]
    fn criterion_estimates() {
        let j = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":30.4,"upper_bound":37.8},"point_estimate":33.9,"standard_error":1.9},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":27.1,"upper_bound":28.9},"point_estimate":27.6,"standard_error":1.2},"median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":0.4,"upper_bound":3.0},"point_estimate":1.1,"standard_error":1.1},"slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":8.0,"upper_bound":11.9},"point_estimate":10.6,"standard_error":1.1}}"#;
        assert_eq!(
            parse_estimates(j),
            Some(Estimate {
                median_ns: 27.6,
                mean_ns: 33.9,
                median_lower_ns: 27.1,
                median_upper_ns: 28.9
            })
        );
        assert_eq!(parse_estimates("{}"), None);
        assert_eq!(parse_estimates("not json"), None);

        let home = std::env::temp_dir().join(format!("dmalab-bench-test-{}", std::process::id()));
        let dir = home.join("g/b1/new");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("estimates.json"), j).unwrap();
        std::fs::create_dir_all(home.join("g/broken/new")).unwrap();
        std::fs::write(home.join("g/broken/new/estimates.json"), "{").unwrap();
        let m = read_criterion(&home, &["g", "missing"]);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["g/b1"]);
        let _ = std::fs::remove_dir_all(&home);
    }

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
        assert_eq!((p[3].from_s, p[3].to_s), (43.393956, 50.02));
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
    fn tiny_kernel_is_a_pvh_elf() {
        let e = tiny_pvh_elf();
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([e[56], e[57]]), 2); // two program headers
        let code_off = 64 + 2 * 56;
        assert_eq!(&e[code_off..code_off + 4], &[0xb0, 0x00, 0xe6, 0xf4]);
        // The note's descriptor is the 32-bit entry, 1 MiB.
        assert_eq!(&e[e.len() - 4..], &0x10_0000u32.to_le_bytes());
        assert_eq!(&e[e.len() - 8..e.len() - 4], b"Xen\0");
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

    #[test]
    fn least_squares() {
        let (a, b) = linear_fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
        assert_eq!(linear_fit(&[(1.0, 1.0)]), None);
        assert_eq!(linear_fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn options() {
        let d = PathBuf::from("/x.json");
        let o = parse_options(&[], d.clone()).unwrap();
        assert_eq!((o.runs, o.quick, o.qemu), (3, false, true));
        assert_eq!(o.parts, Part::ALL.to_vec());
        let args: Vec<String> = [
            "--quick",
            "--only",
            "mmio,boot",
            "--json",
            "/y.json",
            "--no-qemu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse_options(&args, d.clone()).unwrap();
        assert_eq!(o.runs, 1);
        assert_eq!(o.parts, vec![Part::Boot, Part::Mmio]);
        assert_eq!(o.json, PathBuf::from("/y.json"));
        assert!(!o.qemu);
        let args = vec!["--runs".to_string(), "5".to_string(), "--quick".to_string()];
        assert_eq!(parse_options(&args, d.clone()).unwrap().runs, 5);
        assert!(parse_options(&["--runs".into(), "0".into()], d.clone()).is_err());
        assert!(parse_options(&["--only".into(), "x".into()], d.clone()).is_err());
        assert!(parse_options(&["--bogus".into()], d).is_err());
    }

    #[test]
    fn table_rendering_and_targets() {
        let rows = vec![
            row("boot", "boot to driver-ready", "how")
                .value(40.0, "s", "40.0 s".into())
                .at_most(30.0, "30 s"),
            row("boot", "first instruction", "how")
                .value(1.0, "ms", "1.00 ms".into())
                .at_most(5.0, "5 ms"),
            row("mmio", "guest read", "")
                .not_measured("no device yet")
                .at_most(200.0, "200 ns"),
            row("mmio", "no target", "").value(3.0, "x", "3".into()),
        ];
        assert_eq!(rows[0].met, Some(false));
        assert_eq!(rows[1].met, Some(true));
        assert_eq!(rows[2].met, None);
        let t = render_table(&rows);
        assert!(t.contains("[boot]") && t.contains("[mmio]"), "{t}");
        assert!(t.contains("NOT met") && t.contains("| met"), "{t}");
        assert!(t.contains("n/a"), "{t}");
        assert!(t.contains("≤ 30 s"), "{t}");
        for l in t.lines() {
            assert!(l.starts_with('|'), "{l}");
        }
        assert_eq!(wrap("aaa bbb ccc", 7), vec!["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
