//! `dma24-tool unbind DEV`: surprise unbind through sysfs.
//!
//! With DEV open (file A), mapped (the mmap buffer, with a pattern in it)
//! and a child process looping `pwrite`/`pread` round trips of 32 KiB on a
//! file of its own, the parent writes DEV's PCI address to
//! `/sys/bus/pci/drivers/dmalab/unbind` while the child's transfers run.
//! Then:
//! - every round trip the child finished before the unbind moved the right
//!   bytes, and its first failure is `ENODEV` (no other error, no hang);
//! - file A's `pread` and `MMAP_XFER` get `ENODEV`, its `GET_COUNTERS` still
//!   answers (the driver's side; the device's side reads 0 once unbound);
//! - the mapping still holds the pattern (it is memory, not the device);
//! - DEV is gone from /dev until the device is bound again through
//!   `/sys/bus/pci/drivers/dmalab/bind`, after which a round trip works.
//!
//! The host side (no DMA between the unbind's reset and the rebind's, every
//! transfer the driver started complete) is the harness' to check in the
//! trace (`ci/tests/stress_unbind.rs`). Lines: `dma24-tool: unbind ...`,
//! `dma24-tool: unbind result passed=N failed=M child_round_trips=R
//! starts_at_unbind=S bdf=BDF`.

use crate::stress::Counters;
use crate::zerocopy::{self as zc, errno_name, Map, MmapXfer, Tally};
use dma24_tool::pattern;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

const DRIVER: &str = "/sys/bus/pci/drivers/dmalab";
/// The child's round trips: large, so the unbind likely meets one running.
const CHILD_LEN: usize = 32 * 1024;

/// The PCI address (`0000:00:01.0`) of the device behind `/dev/dma24-N`,
/// from the driver's debugfs `info` file (`pci ...` line).
pub fn bdf_of(path: &str) -> Result<String, String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let info = format!("/sys/kernel/debug/dmalab/{name}/info");
    let text = std::fs::read_to_string(&info).map_err(|e| format!("{info}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("pci "))
        .map(str::to_string)
        .ok_or_else(|| format!("{info} has no pci line"))
}

/// Writes `bdf` to the driver's `bind` or `unbind` file.
pub fn driver_write(what: &str, bdf: &str) -> Result<(), String> {
    std::fs::write(format!("{DRIVER}/{what}"), bdf).map_err(|e| format!("{what} {bdf}: {e}"))
}

/// Binds `bdf` again and waits (up to 5 s) for `path` to come back.
pub fn rebind(bdf: &str, path: &str) -> Result<(), String> {
    driver_write("bind", bdf)?;
    for _ in 0..100 {
        if std::path::Path::new(path).exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{path} did not come back after bind"))
}

/// A pipe, as two files (read end, write end).
pub fn pipe() -> Result<(File, File), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// The child: round trips until one fails; reports "R ERRNO\n" (or
/// "R BAD detail" for wrong bytes) on `report`. Tells `ready` after the first.
fn child_loop(path: &str, mut ready: File, mut report: File) -> i32 {
    let dev = match zc::open(path) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(report, "0 BAD {e}");
            return 1;
        }
    };
    let mut n = 0u64;
    let outcome = loop {
        let seed = u8::try_from(n % 251).unwrap_or(0);
        let data = pattern::bytes(CHILD_LEN, seed);
        if let Err(e) = dev.write_all_at(&data, 0) {
            break errno_name(&e);
        }
        let mut back = vec![0u8; CHILD_LEN];
        if let Err(e) = dev.read_exact_at(&mut back, 0) {
            break errno_name(&e);
        }
        if let Some(i) = pattern::first_difference(&data, &back) {
            break format!("BAD byte {i} of round trip {n} differs");
        }
        n += 1;
        if n == 1 {
            let _ = ready.write_all(b"1");
        }
        if n > 100_000 {
            break "BAD the device never went away".into();
        }
    };
    let _ = writeln!(report, "{n} {outcome}");
    0
}

fn mmap_xfer(dev: &File, len: usize) -> Result<(), std::io::Error> {
    let mut x = MmapXfer {
        len: u32::try_from(len).unwrap_or(u32::MAX),
        ..MmapXfer::default()
    };
    zc::ioctl(dev, zc::MMAP_XFER, &mut x)
}

fn expect_enodev(what: &str, r: Result<(), std::io::Error>) -> Result<String, String> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            Ok(format!("unbind {what} after unbind errno=ENODEV"))
        }
        other => Err(format!("{what} after unbind: {other:?}, expected ENODEV")),
    }
}

/// `dma24-tool unbind DEV`; returns the failures.
pub fn unbind(path: &str) -> u32 {
    let mut t = Tally::default();
    let mut child_trips = 0u64;
    let mut starts_at_unbind = 0u64;
    let bdf = match bdf_of(path) {
        Ok(b) => b,
        Err(e) => {
            t.note("unbind", Err(e));
            println!("dma24-tool: unbind result passed=0 failed=1 child_round_trips=0 starts_at_unbind=0 bdf=?");
            return 1;
        }
    };
    let mut run = |t: &mut Tally| -> Result<(), String> {
        let file_a = zc::open(path)?;
        let size = usize::try_from(
            zc::zc_counters(&file_a)
                .map_err(|e| e.to_string())?
                .mmap_size,
        )
        .map_err(|e| e.to_string())?;
        let mut map = Map::new(file_a.as_raw_fd(), size, libc::MAP_SHARED, 0)
            .map_err(|e| format!("mmap: {e}"))?;
        let data = pattern::bytes(size, 0x3c);
        map.bytes().copy_from_slice(&data);
        let (mut ready_rx, ready_tx) = pipe()?;
        let (mut report_rx, report_tx) = pipe()?;
        // SAFETY: single-threaded; the child runs `child_loop` on its own file and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(ready_rx);
            drop(report_rx);
            let code = child_loop(path, ready_tx, report_tx);
            // SAFETY: ends the child without the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        drop(ready_tx);
        drop(report_tx);
        let mut one = [0u8; 1];
        ready_rx
            .read_exact(&mut one)
            .map_err(|e| format!("the child did no round trip: {e}"))?;
        // The child is in its second round trip (or between two): unbind now.
        driver_write("unbind", &bdf)?;
        t.note(
            "unbind",
            Ok(format!(
                "unbind {bdf} done while {path} was open, mapped and transferring"
            )),
        );
        let mut back = [0u8; 64];
        t.note(
            "pread",
            expect_enodev("pread", file_a.read_exact_at(&mut back, 0)),
        );
        t.note(
            "MMAP_XFER",
            expect_enodev("MMAP_XFER", mmap_xfer(&file_a, 4096)),
        );
        t.note(
            "GET_COUNTERS",
            Counters::read(&file_a)
                .map(|c| {
                    starts_at_unbind = c.starts;
                    format!(
                        "unbind GET_COUNTERS after unbind starts={} dev_transfers={}",
                        c.starts, c.dev_transfers
                    )
                })
                .map_err(|e| format!("GET_COUNTERS after unbind: {}", errno_name(&e))),
        );
        t.note(
            "mapping",
            if map.bytes() == &data[..] {
                Ok("unbind mapping intact after unbind".into())
            } else {
                Err("the mapping changed when the device was unbound".into())
            },
        );
        t.note(
            "reopen",
            match zc::open(path) {
                Err(_) => Ok(format!("unbind {path} gone while unbound")),
                Ok(_) => Err(format!("{path} could be opened while unbound")),
            },
        );
        let mut report = String::new();
        let _ = report_rx.read_to_string(&mut report);
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let (trips, outcome) = report.trim().split_once(' ').unwrap_or(("0", "no report"));
        child_trips = trips.parse().unwrap_or(0);
        t.note(
            "child",
            if outcome == "ENODEV" && child_trips > 0 {
                Ok(format!(
                    "unbind child round_trips={child_trips} then errno=ENODEV"
                ))
            } else {
                Err(format!(
                    "the transferring child: {} round trips, then {outcome:?} (expected ENODEV)",
                    child_trips
                ))
            },
        );
        drop(map);
        drop(file_a);
        rebind(&bdf, path)?;
        let dev = zc::open(path)?;
        let data = pattern::bytes(4096, 0x3d);
        dev.write_all_at(&data, 0)
            .map_err(|e| format!("pwrite after rebind: {e}"))?;
        let mut back = vec![0u8; 4096];
        dev.read_exact_at(&mut back, 0)
            .map_err(|e| format!("pread after rebind: {e}"))?;
        t.note(
            "rebind",
            match pattern::first_difference(&data, &back) {
                None => Ok(format!("unbind rebind {bdf} round trip ok")),
                Some(i) => Err(format!("byte {i} differs after rebind")),
            },
        );
        Ok(())
    };
    if let Err(e) = run(&mut t) {
        t.note("unbind", Err(e));
        // Leave the device bound for whatever runs next.
        if !std::path::Path::new(path).exists() {
            let _ = rebind(&bdf, path);
        }
    }
    println!(
        "dma24-tool: unbind result passed={} failed={} child_round_trips={child_trips} starts_at_unbind={starts_at_unbind} bdf={bdf}",
        t.passed, t.failed
    );
    t.failed
}
