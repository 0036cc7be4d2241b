//! `dma24-tool bench [DEV]`: user-visible time of one round trip (DMA to
//! device memory, then back) through each path, guest clock
//! (CLOCK_MONOTONIC), for `cargo xtask bench` to fit and compare:
//!
//! - `rw`: `pwrite()` + `pread()` (copy through the driver's bounce buffer);
//! - `mmap`: two `DMA24_IOC_MMAP_XFER` on the mapped buffer (no copy);
//! - `user`: two `DMA24_IOC_XFER_USER` on this process's pages (zero copy on
//!   a device that reaches them, else reported as refused).
//!
//! Lines: `dma24-tool: bench path=P len=N rep=R ns=T` (T: both directions),
//! `dma24-tool: bench syscall ns=T` (one `getppid()`), `dma24-tool: bench
//! ioctl ns=T` (one `DMA24_IOC_GET_ZEROCOPY`: syscall + 80-byte copy out),
//! `dma24-tool: bench phases path=P len=N calls=C call_ns=T irqs=I
//! start_to_irq_ns=D irq_to_wake_ns=W` (sums over the R round trips of P at
//! N, from the driver's debugfs `timing`: time inside the driver's calls,
//! and of it the device's and the wake-up's; see the driver's `timing.rs`),
//! `dma24-tool: bench result passed=N failed=M`.

use crate::zerocopy::{self as zc, Map, MmapXfer, Tally, XferUser};
use dma24_tool::pattern;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Round trips per path and size (the median is used): more for the sizes
/// where one descheduled vCPU slice (tens of ms on a shared host) is most of
/// a round trip.
fn reps(len: usize) -> u32 {
    if len <= 65536 {
        5
    } else {
        3
    }
}

fn u32_of(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<u128, String> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_nanos())
}

fn rw(dev: &File, buf: &mut [u8]) -> Result<(), String> {
    let n = dev.write_at(buf, 0).map_err(|e| format!("pwrite: {e}"))?;
    let m = dev.read_at(buf, 0).map_err(|e| format!("pread: {e}"))?;
    if n != buf.len() || m != buf.len() {
        return Err(format!("short transfer: {n}/{m} of {}", buf.len()));
    }
    Ok(())
}

fn mmap_pair(dev: &File, len: usize) -> Result<(), String> {
    for flags in [0, zc::FROM_DEVICE] {
        let mut x = MmapXfer {
            len: u32_of(len),
            flags,
            ..MmapXfer::default()
        };
        zc::ioctl(dev, zc::MMAP_XFER, &mut x)
            .map_err(|e| format!("MMAP_XFER: {}", zc::errno_name(&e)))?;
    }
    Ok(())
}

fn user_pair(dev: &File, addr: usize, len: usize) -> Result<(), String> {
    for flags in [0, zc::FROM_DEVICE] {
        let mut x = XferUser {
            user_addr: addr as u64,
            len: u32_of(len),
            flags,
            ..XferUser::default()
        };
        zc::ioctl(dev, zc::XFER_USER, &mut x)
            .map_err(|e| format!("XFER_USER: {}", zc::errno_name(&e)))?;
    }
    Ok(())
}

/// The driver's debugfs `timing` of `dev` (`/dev/dma24-N`) as key -> value;
/// empty when debugfs is not mounted.
fn timing(dev: &str) -> std::collections::BTreeMap<String, u64> {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    let text = std::fs::read_to_string(format!("/sys/kernel/debug/dmalab/{name}/timing"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The `bench phases` line of `path` at `len`: the driver's timing sums
/// between `before` and `after`.
fn phases_line(
    path: &str,
    len: usize,
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Option<String> {
    let d = |k: &str| Some(after.get(k)?.saturating_sub(*before.get(k)?));
    Some(format!(
        "dma24-tool: bench phases path={path} len={len} calls={} call_ns={} irqs={} start_to_irq_ns={} irq_to_wake_ns={}",
        d(&format!("{path}_calls"))?,
        d(&format!("{path}_ns"))?,
        d("irqs_timed")?,
        d("start_to_irq_ns")?,
        d("irq_to_wake_ns")?,
    ))
}

/// Mean time of `n` calls of `f`.
fn mean_ns(n: u32, mut f: impl FnMut()) -> u128 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() / u128::from(n)
}

pub fn bench(path: &str) -> u32 {
    let mut t = Tally::default();
    let run = |t: &mut Tally| -> Result<(), String> {
        let dev = zc::open(path)?;
        let info = zc::info(&dev).map_err(|e| format!("GET_INFO: {e}"))?;
        let mmap_size =
            usize::try_from(zc::zc_counters(&dev).map_err(|e| e.to_string())?.mmap_size)
                .map_err(|e| e.to_string())?;
        let largest = mmap_size.min(info.devmem_size as usize);
        let mut map = Map::new(dev.as_raw_fd(), mmap_size, libc::MAP_SHARED, 0)
            .map_err(|e| format!("mmap: {e}"))?;
        let mut user = Map::anonymous(largest).map_err(|e| format!("mmap: {e}"))?;
        let data = pattern::bytes(largest, 0x99);
        map.bytes()[..largest].copy_from_slice(&data);
        user.bytes().copy_from_slice(&data);
        // SAFETY: `getppid()` has no preconditions.
        let syscall = mean_ns(200, || unsafe {
            libc::getppid();
        });
        println!("dma24-tool: bench syscall ns={syscall}");
        let ioctl = mean_ns(200, || {
            let _ = zc::zc_counters(&dev);
        });
        println!("dma24-tool: bench ioctl ns={ioctl}");
        let mut sizes = vec![4096, 65536, largest];
        sizes.retain(|&s| s <= largest);
        sizes.dedup();
        let addr = user.ptr as usize;
        for &len in &sizes {
            let mut phases = Vec::new();
            for name in ["rw", "mmap", "user"] {
                let before = timing(path);
                for rep in 0..reps(len) {
                    let mut buf = data[..len].to_vec();
                    let r = match name {
                        "rw" => timed(|| rw(&dev, &mut buf)),
                        "mmap" => timed(|| mmap_pair(&dev, len)),
                        _ => timed(|| user_pair(&dev, addr, len)),
                    };
                    t.note(
                        name,
                        r.map(|ns| format!("bench path={name} len={len} rep={rep} ns={ns}")),
                    );
                    if name == "rw" && buf != data[..len] {
                        t.note("data", Err(format!("rw: bytes differ after {len} bytes")));
                    }
                }
                phases.extend(phases_line(name, len, &before, &timing(path)));
            }
            if map.bytes()[..len] != data[..len] || user.bytes()[..len] != data[..len] {
                t.note(
                    "data",
                    Err(format!("bytes differ after the {len}-byte round trips")),
                );
            }
            // After the timed loops: printing to the serial console is slow on PVM.
            for line in phases {
                println!("{line}");
            }
        }
        Ok(())
    };
    if let Err(e) = run(&mut t) {
        t.note("bench", Err(e));
    }
    println!(
        "dma24-tool: bench result passed={} failed={}",
        t.passed, t.failed
    );
    t.failed
}
