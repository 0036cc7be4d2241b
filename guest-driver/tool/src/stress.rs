//! `dma24-tool stress SECONDS WORKERS DEV [DEV...]`: concurrent users.
//!
//! WORKERS processes (forks of this one) per device transfer on it at once
//! for SECONDS, each in a region of device memory (and of the device's
//! shared mmap buffer) of its own, with its own patterns, cycling through
//! the three ways in: `pwrite`/`pread` (the driver's bounce buffer),
//! `DMA24_IOC_XFER_USER` (user pages, zero copy or bounced) and
//! `DMA24_IOC_MMAP_XFER` (the mmap buffer). Every round trip writes a
//! pattern, reads it back and compares every byte.
//!
//! The parent turns the kernel's hung-task detector on for the run
//! (`/proc/sys/kernel/hung_task_timeout_secs`, the kernel is built with a
//! default of 0 = off), waits for the workers (a worker that does not end
//! within the run plus [`GRACE`] is a deadlock: reported, the run fails),
//! and then compares, per device, the driver's counters with the device's:
//! STARTs written == transfers the device counted, one interrupt per
//! transfer, none lost, no timeout. The harness compares both with the
//! host's trace (`ci/tests/stress_unbind.rs`).
//!
//! Lines: one `dma24-tool: stress worker ...` per worker, one
//! `dma24-tool: stress device ...` per device, then
//! `dma24-tool: stress result workers=N round_trips=R bytes_verified=B failed=F`.

use crate::zerocopy::{self as zc, errno_name, Map, MmapXfer, XferUser};
use dma24_tool::pattern;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// How long after the run's end a worker may still be busy before the
/// parent calls it a deadlock (one transfer takes milliseconds; a wait for
/// the device's interrupt times out after the driver's `timeout_ms`; at
/// load 14 on the 2-core host one round trip took up to a minute).
const GRACE: Duration = Duration::from_secs(300);
/// Round trips every worker makes even past the deadline: one each way.
const MIN_ROUND_TRIPS: usize = 3;
/// The hung-task timeout for the run: any task blocked in D state this long
/// is reported on the console ("blocked for more than N seconds").
const HUNG_TASK_SECS: &str = "5";
const HUNG_TASK_SYSCTL: &str = "/proc/sys/kernel/hung_task_timeout_secs";
/// Per worker, in the shared result page: round trips, bytes verified,
/// failures, and the three ways' counts.
const SLOTS: usize = 6;
/// Most workers per run (the shared result page holds their slots).
const MAX_WORKERS: usize = 16;

/// The driver's and the device's counters (`dma24_counters`, 17 `u64`s).
#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    pub starts: u64,
    pub transfers_ok: u64,
    pub transfers_failed: u64,
    pub timeouts: u64,
    pub irqs: u64,
    pub spurious_irqs: u64,
    pub lost_irqs: u64,
    pub dev_transfers: u64,
    /// REG_LAST_SEQ: the trace seq of the device's last finished transfer.
    pub dev_last_seq: u64,
}

impl Counters {
    pub fn read(dev: &File) -> Result<Counters, std::io::Error> {
        let mut c = [0u64; 17];
        zc::ioctl(dev, zc::GET_COUNTERS, &mut c)?;
        Ok(Counters {
            starts: c[0],
            transfers_ok: c[1],
            transfers_failed: c[2],
            timeouts: c[7],
            irqs: c[8],
            spurious_irqs: c[9],
            lost_irqs: c[10],
            dev_transfers: c[11],
            dev_last_seq: c[15],
        })
    }

    fn since(&self, before: &Counters) -> Counters {
        Counters {
            starts: self.starts.wrapping_sub(before.starts),
            transfers_ok: self.transfers_ok.wrapping_sub(before.transfers_ok),
            transfers_failed: self.transfers_failed.wrapping_sub(before.transfers_failed),
            timeouts: self.timeouts.wrapping_sub(before.timeouts),
            irqs: self.irqs.wrapping_sub(before.irqs),
            spurious_irqs: self.spurious_irqs.wrapping_sub(before.spurious_irqs),
            lost_irqs: self.lost_irqs.wrapping_sub(before.lost_irqs),
            dev_transfers: self.dev_transfers.wrapping_sub(before.dev_transfers),
            dev_last_seq: self.dev_last_seq,
        }
    }
}

/// Where one worker works: its slice of device memory and of the device's
/// mmap buffer (the same offsets in both).
struct Region {
    offset: usize,
    len: usize,
}

/// One worker's tally, kept in the shared result page.
#[derive(Default)]
struct Tally {
    round_trips: u64,
    bytes: u64,
    failed: u64,
    by_way: [u64; 3],
}

/// The round trip lengths a worker cycles through (capped by its region):
/// a byte, odd, a page, across pages, its whole region.
const LENGTHS: [usize; 5] = [1, 333, 4096, 5000, usize::MAX];

/// One round trip the `way`-th way: pattern out, poison, back, compare.
fn round_trip(
    dev: &File,
    mmap: &mut Map,
    way: usize,
    dev_offset: usize,
    len: usize,
    seed: u8,
) -> Result<(), String> {
    let data = pattern::bytes(len, seed);
    match way {
        0 => {
            let off = dev_offset as u64;
            dev.write_all_at(&data, off)
                .map_err(|e| format!("pwrite: {}", errno_name(&e)))?;
            let mut back = vec![0x5a; len];
            dev.read_exact_at(&mut back, off)
                .map_err(|e| format!("pread: {}", errno_name(&e)))?;
            compare(&data, &back, "pwrite/pread")
        }
        1 => {
            let mut src = data.clone();
            let mut back = vec![0x5a; len];
            user_xfer(dev, &mut src, dev_offset, 0)?;
            user_xfer(dev, &mut back, dev_offset, zc::FROM_DEVICE)?;
            compare(&data, &back, "XFER_USER")
        }
        _ => {
            let buf = &mut mmap.bytes()[dev_offset..dev_offset + len];
            buf.copy_from_slice(&data);
            mmap_xfer(dev, dev_offset, len, 0)?;
            mmap.bytes()[dev_offset..dev_offset + len].fill(0x5a);
            mmap_xfer(dev, dev_offset, len, zc::FROM_DEVICE)?;
            compare(
                &data,
                &mmap.bytes()[dev_offset..dev_offset + len],
                "MMAP_XFER",
            )
        }
    }
}

fn compare(want: &[u8], got: &[u8], way: &str) -> Result<(), String> {
    match pattern::first_difference(want, got) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{way}: byte {i} of {} differs: wrote {:#04x}, read {:#04x}",
            want.len(),
            want[i],
            got[i]
        )),
    }
}

/// `DMA24_IOC_XFER_USER` on `buf`: zero copy where the device reaches the
/// pages, bounced through ZONE_DMA where it does not (`BOUNCE`).
fn user_xfer(dev: &File, buf: &mut [u8], dev_offset: usize, dir: u32) -> Result<(), String> {
    let mut x = XferUser {
        user_addr: buf.as_mut_ptr() as u64,
        len: u32::try_from(buf.len()).map_err(|e| e.to_string())?,
        dev_offset: u32::try_from(dev_offset).map_err(|e| e.to_string())?,
        flags: dir | zc::BOUNCE,
        ..XferUser::default()
    };
    zc::ioctl(dev, zc::XFER_USER, &mut x).map_err(|e| format!("XFER_USER: {}", errno_name(&e)))
}

fn mmap_xfer(dev: &File, offset: usize, len: usize, dir: u32) -> Result<(), String> {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let mut x = MmapXfer {
        buf_offset: n(offset),
        dev_offset: n(offset),
        len: n(len),
        flags: dir,
        ..MmapXfer::default()
    };
    zc::ioctl(dev, zc::MMAP_XFER, &mut x).map_err(|e| format!("MMAP_XFER: {}", errno_name(&e)))
}

/// A worker: opens and maps, waits at `start` (EOF once every worker is
/// forked: forks are seconds each on PVM hosts), then round trips for
/// `seconds`; returns its tally.
fn work(
    path: &str,
    id: usize,
    region: &Region,
    mmap_len: usize,
    start: File,
    seconds: u64,
) -> Tally {
    let mut t = Tally::default();
    let fail = |t: &mut Tally, e: String| {
        t.failed += 1;
        println!("dma24-tool: FAIL stress worker={id} {path}: {e}");
    };
    let dev = match zc::open(path) {
        Ok(d) => d,
        Err(e) => {
            fail(&mut t, e);
            return t;
        }
    };
    // Each worker maps the device's (shared) buffer; it only touches its region.
    let mut mmap = match Map::new(dev.as_raw_fd(), mmap_len, libc::MAP_SHARED, 0) {
        Ok(m) => m,
        Err(e) => {
            fail(&mut t, format!("mmap: {e}"));
            return t;
        }
    };
    let mut gate = start;
    let _ = gate.read(&mut [0u8; 1]);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // The driver logs every bounced user-page transfer (a console line, slow
    // on PVM): on a device that cannot reach user pages, every fourth turn
    // of the user way only.
    let bounces = zc::info(&dev).map_or(true, |i| i.mask_bits < 32);
    let mut i = 0usize;
    // At least one round trip each way, however slow the host (a loaded
    // PVM host made one round trip take seconds).
    while (Instant::now() < deadline || i < MIN_ROUND_TRIPS) && t.failed == 0 {
        let mut way = i % 3;
        if way == 1 && bounces && !(i / 3).is_multiple_of(4) {
            way = 0;
        }
        let len = LENGTHS[(i / 3) % LENGTHS.len()].min(region.len);
        // Walk the start through the region in 64-byte steps.
        let start = region.offset + (i * 64) % (region.len - len + 1);
        // A seed per worker and round trip: neighbours never write the same bytes.
        let seed = u8::try_from((id * 37 + i) % 251).unwrap_or(0);
        match round_trip(&dev, &mut mmap, way, start, len, seed) {
            Ok(()) => {
                t.round_trips += 1;
                t.bytes += len as u64;
                t.by_way[way] += 1;
            }
            Err(e) => fail(
                &mut t,
                format!("round trip {i} offset={start} len={len}: {e}"),
            ),
        }
        i += 1;
    }
    t
}

/// Reads a file's first line, trimmed.
fn read_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `dma24-tool stress SECONDS WORKERS DEV...`; returns the failures.
pub fn stress(seconds: u64, workers_per_dev: usize, devs: &[String]) -> u32 {
    let workers = workers_per_dev * devs.len();
    if workers == 0 || workers > MAX_WORKERS {
        println!("dma24-tool: stress: 1..={MAX_WORKERS} workers in all, not {workers}");
        return 1;
    }
    let mut failed = 0u32;
    // Per device: the file the parent reads counters through, the counters
    // before, the mmap buffer length, the region length.
    let mut setup = Vec::new();
    for path in devs {
        let dev = match zc::open(path) {
            Ok(d) => d,
            Err(e) => {
                println!("dma24-tool: FAIL stress: {e}");
                return 1;
            }
        };
        let (info, before, zcnt) =
            match (zc::info(&dev), Counters::read(&dev), zc::zc_counters(&dev)) {
                (Ok(i), Ok(c), Ok(z)) => (i, c, z),
                _ => {
                    println!(
                    "dma24-tool: FAIL stress: {path}: GET_INFO/GET_COUNTERS/GET_ZEROCOPY failed"
                );
                    return 1;
                }
            };
        let mmap_len = usize::try_from(zcnt.mmap_size).unwrap_or(0);
        let span = (info.devmem_size as usize).min(mmap_len);
        // Page-aligned regions, one per worker on this device.
        let region = span / workers_per_dev / 4096 * 4096;
        if region == 0 {
            println!("dma24-tool: FAIL stress: {path}: {span} bytes are too few for {workers_per_dev} workers");
            return 1;
        }
        setup.push((dev, before, mmap_len, region));
    }
    let old_hung = read_line(HUNG_TASK_SYSCTL);
    match std::fs::write(HUNG_TASK_SYSCTL, HUNG_TASK_SECS) {
        Ok(()) => println!("dma24-tool: stress hung-task detector on: timeout {HUNG_TASK_SECS} s"),
        Err(e) => {
            println!("dma24-tool: FAIL stress: cannot turn on the hung-task detector ({HUNG_TASK_SYSCTL}: {e}; CONFIG_DETECT_HUNG_TASK?)");
            failed += 1;
        }
    }
    // The workers' tallies: one shared anonymous page, SLOTS u64s each.
    let mut results = match Map::new(-1, 4096, libc::MAP_SHARED | libc::MAP_ANONYMOUS, 0) {
        Ok(m) => m,
        Err(e) => {
            println!("dma24-tool: FAIL stress: result page: {e}");
            return failed + 1;
        }
    };
    // The start gate: every worker blocks reading it until the parent
    // closes the write end after the last fork.
    let (gate_rx, gate_tx) = match crate::unbind::pipe() {
        Ok(p) => p,
        Err(e) => {
            println!("dma24-tool: FAIL stress: {e}");
            return failed + 1;
        }
    };
    let mut children = Vec::new();
    for id in 0..workers {
        let d = id % devs.len();
        let (_, _, mmap_len, region_len) = setup[d];
        let region = Region {
            offset: (id / devs.len()) * region_len,
            len: region_len,
        };
        // SAFETY: this process is single-threaded; the child only runs `work`
        // (its own files and mappings) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(gate_tx);
            let t = work(&devs[d], id, &region, mmap_len, gate_rx, seconds);
            let slot = &mut results.bytes()[id * SLOTS * 8..(id + 1) * SLOTS * 8];
            let vals = [
                t.round_trips,
                t.bytes,
                t.failed,
                t.by_way[0],
                t.by_way[1],
                t.by_way[2],
            ];
            for (dst, v) in slot.chunks_exact_mut(8).zip(vals) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(i32::from(t.failed != 0)) };
        }
        if pid < 0 {
            println!(
                "dma24-tool: FAIL stress: fork: {}",
                std::io::Error::last_os_error()
            );
            failed += 1;
            break;
        }
        children.push(pid);
    }
    drop(gate_tx);
    drop(gate_rx);
    let started = Instant::now();
    println!(
        "dma24-tool: stress {} workers forked and started",
        children.len()
    );
    failed += reap(&children, started + Duration::from_secs(seconds) + GRACE);
    if let Some(old) = old_hung {
        let _ = std::fs::write(HUNG_TASK_SYSCTL, old);
    }
    let (mut round_trips, mut bytes, mut worker_failed) = (0u64, 0u64, 0u64);
    let page = results.bytes();
    for (id, slot) in page
        .chunks_exact(SLOTS * 8)
        .take(children.len())
        .enumerate()
    {
        let v: Vec<u64> = slot
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        println!(
            "dma24-tool: stress worker={id} dev={} round_trips={} bytes_verified={} failed={} rw={} user={} mmap={}",
            devs[id % devs.len()],
            v[0], v[1], v[2], v[3], v[4], v[5]
        );
        round_trips += v[0];
        bytes += v[1];
        worker_failed += v[2];
        if v[0] < MIN_ROUND_TRIPS as u64 {
            println!(
                "dma24-tool: FAIL stress worker={id}: fewer than {MIN_ROUND_TRIPS} round trips"
            );
            failed += 1;
        }
    }
    for (path, (dev, before, _, _)) in devs.iter().zip(&setup) {
        failed += check_device(path, dev, before);
    }
    failed += u32::try_from(worker_failed).unwrap_or(u32::MAX);
    println!(
        "dma24-tool: stress result workers={} seconds={seconds} round_trips={round_trips} bytes_verified={bytes} failed={failed}",
        children.len()
    );
    failed
}

/// Waits for every child until `limit`; a child still running then is
/// reported as a deadlock (and left: a task stuck in D state cannot be killed).
fn reap(children: &[i32], limit: Instant) -> u32 {
    let mut failed = 0;
    let mut left: Vec<i32> = children.to_vec();
    while !left.is_empty() {
        let mut status = 0;
        // SAFETY: waits for a child of this process; `status` is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            left.retain(|&c| c != pid);
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                println!("dma24-tool: FAIL stress: worker pid {pid} ended with status {status:#x}");
                failed += 1;
            }
            continue;
        }
        if Instant::now() > limit {
            println!(
                "dma24-tool: FAIL stress: deadlock? workers {left:?} still running {} s after the run ended",
                GRACE.as_secs()
            );
            return failed + 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    failed
}

/// The driver's counters against the device's for the run, per device.
fn check_device(path: &str, dev: &File, before: &Counters) -> u32 {
    let after = match Counters::read(dev) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "dma24-tool: FAIL stress: {path}: GET_COUNTERS: {}",
                errno_name(&e)
            );
            return 1;
        }
    };
    let d = after.since(before);
    // seq_before..seq_after: the trace records of the run (nothing else
    // transfers on the device meanwhile), for the harness' cross-check.
    println!(
        "dma24-tool: stress device={path} starts={} dev_transfers={} transfers_ok={} transfers_failed={} irqs={} spurious_irqs={} lost_irqs={} timeouts={} seq_before={} seq_after={}",
        d.starts, d.dev_transfers, d.transfers_ok, d.transfers_failed, d.irqs, d.spurious_irqs, d.lost_irqs, d.timeouts, before.dev_last_seq, after.dev_last_seq
    );
    let mut failed = 0;
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            println!("dma24-tool: FAIL stress: {path}: {what}");
            failed += 1;
        }
    };
    expect(d.starts > 0, "no START during the run");
    expect(
        d.starts == d.dev_transfers,
        "the driver's STARTs differ from the device's transfer count",
    );
    expect(
        d.transfers_ok == d.starts && d.transfers_failed == 0,
        "a transfer failed",
    );
    expect(d.irqs == d.starts, "not one interrupt per transfer");
    expect(
        d.lost_irqs == 0 && d.timeouts == 0,
        "an interrupt was lost (the wait timed out)",
    );
    failed
}
