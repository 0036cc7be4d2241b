//! `dma24-tool mmap DEV` and `dma24-tool zerocopy DEV` (see [`crate::zerocopy`]).

use crate::zerocopy::{self as zc, errno_name, hash, Map, MmapXfer, Tally, XferUser};
use dma24_tool::pattern;
use std::fs::File;
use std::os::fd::AsRawFd;

const PAGE: usize = 4096;

/// An ABI `u32` field from a size or offset (all of them small here; an
/// impossible one becomes `u32::MAX`, which the driver refuses).
fn n32<T: TryInto<u32>>(v: T) -> u32 {
    v.try_into().unwrap_or(u32::MAX)
}

/// One DMA between the mmap buffer and device memory.
fn mmap_xfer(
    dev: &File,
    buf_offset: usize,
    dev_offset: u64,
    len: usize,
    flags: u32,
) -> Result<MmapXfer, String> {
    let mut x = MmapXfer {
        buf_offset: n32(buf_offset),
        dev_offset: n32(dev_offset),
        len: n32(len),
        flags,
        ..MmapXfer::default()
    };
    zc::ioctl(dev, zc::MMAP_XFER, &mut x)
        .map_err(|e| format!("MMAP_XFER {x:?}: {}", errno_name(&e)))?;
    Ok(x)
}

/// Pattern into the mapping, to the device, poison, back, compare.
fn mmap_round_trip(
    dev: &File,
    map: &mut Map,
    buf_offset: usize,
    dev_offset: u64,
    len: usize,
    seed: u8,
) -> Result<String, String> {
    let data = pattern::bytes(len, seed);
    map.bytes()[buf_offset..buf_offset + len].copy_from_slice(&data);
    let out = mmap_xfer(dev, buf_offset, dev_offset, len, 0)?;
    map.bytes()[buf_offset..buf_offset + len].fill(0x5a);
    mmap_xfer(dev, buf_offset, dev_offset, len, zc::FROM_DEVICE)?;
    if let Some(i) = pattern::first_difference(&data, &map.bytes()[buf_offset..buf_offset + len]) {
        return Err(format!(
            "byte {i} differs after the round trip through the mapping"
        ));
    }
    Ok(format!(
        "mmap ok offset={dev_offset} len={len} seed={seed} buf_offset={buf_offset} bus={:#x} segments={} hash={:016x}",
        out.bus_addr,
        out.segments,
        hash(len, seed)
    ))
}

/// The mapping lives on after close(): still readable, writable, unmappable.
fn outlives_close(path: &str, size: usize) -> Result<String, String> {
    let dev = zc::open(path)?;
    let mut map =
        Map::new(dev.as_raw_fd(), size, libc::MAP_SHARED, 0).map_err(|e| format!("mmap: {e}"))?;
    drop(dev);
    let data = pattern::bytes(size, 0x77);
    map.bytes().copy_from_slice(&data);
    if map.bytes() != &data[..] {
        return Err("mapping lost bytes after close".into());
    }
    drop(map);
    Ok("mmap lifetime close-then-munmap ok".into())
}

/// Unbinds the device while mapped (the mapping stays valid, the file says
/// ENODEV), unmaps, closes, binds it again.
fn outlives_unbind(path: &str, size: usize) -> Result<String, String> {
    let drv = "/sys/bus/pci/drivers/dmalab";
    // This file's device, not just any bound one (a VM may host several).
    let bdf = crate::unbind::bdf_of(path)?;
    let dev = zc::open(path)?;
    let mut map =
        Map::new(dev.as_raw_fd(), size, libc::MAP_SHARED, 0).map_err(|e| format!("mmap: {e}"))?;
    let data = pattern::bytes(size, 0x42);
    map.bytes().copy_from_slice(&data);
    std::fs::write(format!("{drv}/unbind"), &bdf).map_err(|e| format!("unbind {bdf}: {e}"))?;
    let after = mmap_xfer(&dev, 0, 0, 64, 0);
    let intact = map.bytes() == &data[..];
    map.bytes().fill(0);
    drop(map);
    drop(dev);
    std::fs::write(format!("{drv}/bind"), &bdf).map_err(|e| format!("bind {bdf}: {e}"))?;
    for _ in 0..100 {
        if std::path::Path::new(path).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    match after {
        Err(e) if e.contains("ENODEV") => {}
        other => {
            return Err(format!(
                "MMAP_XFER after unbind: {other:?}, expected ENODEV"
            ))
        }
    }
    if !intact {
        return Err("the mapping changed when the device was unbound".into());
    }
    Ok(format!("mmap lifetime unbind-while-mapped ok bdf={bdf}"))
}

pub fn mmap(path: &str, unbind: bool) -> u32 {
    let mut t = Tally::default();
    let run = |t: &mut Tally| -> Result<(), String> {
        let dev = zc::open(path)?;
        let info = zc::info(&dev).map_err(|e| format!("GET_INFO: {e}"))?;
        let size = zc::zc_counters(&dev)
            .map_err(|e| format!("GET_ZEROCOPY: {e}"))?
            .mmap_size;
        let size = usize::try_from(size).map_err(|e| e.to_string())?;
        let fd = dev.as_raw_fd();
        for (what, flags, len) in [
            ("private", libc::MAP_PRIVATE, size),
            ("past the end", libc::MAP_SHARED, size + PAGE),
        ] {
            t.note(
                what,
                match Map::new(fd, len, flags, 0) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        Ok(format!("mmap {what} refused errno=EINVAL"))
                    }
                    Err(e) => Err(format!("mmap {what}: {e}, expected EINVAL")),
                    Ok(_) => Err(format!("mmap {what} was accepted")),
                },
            );
        }
        let mut map = Map::new(fd, size, libc::MAP_SHARED, 0)
            .map_err(|e| format!("mmap {size} bytes: {e}"))?;
        let devmem = info.devmem_size as usize;
        let largest = size.min(devmem);
        for (seed, (buf_offset, dev_offset, len)) in
            (0x60u8..).zip([(0, 0u64, PAGE), (100, 0x1000, 9000), (0, 0, largest)])
        {
            if buf_offset + len > size
                || usize::try_from(dev_offset).unwrap_or(usize::MAX) + len > devmem
            {
                continue;
            }
            t.note(
                "mmap round trip",
                mmap_round_trip(&dev, &mut map, buf_offset, dev_offset, len, seed),
            );
        }
        t.note(
            "mmap beyond",
            match mmap_xfer(&dev, size - 8, 0, 64, 0) {
                Err(e) if e.contains("EINVAL") => {
                    Ok("mmap xfer past the buffer refused errno=EINVAL".into())
                }
                other => Err(format!("{other:?}, expected EINVAL")),
            },
        );
        drop(map);
        drop(dev);
        t.note("close after munmap", outlives_close(path, size));
        if unbind {
            t.note("unbind while mapped", outlives_unbind(path, size));
        }
        Ok(())
    };
    if let Err(e) = run(&mut t) {
        t.note("mmap", Err(e));
    }
    println!(
        "dma24-tool: mmap result passed={} failed={}",
        t.passed, t.failed
    );
    t.failed
}

fn xfer_user(
    dev: &File,
    addr: usize,
    len: usize,
    dev_offset: u64,
    flags: u32,
) -> (XferUser, Result<(), std::io::Error>) {
    let mut x = XferUser {
        user_addr: addr as u64,
        len: n32(len),
        dev_offset: n32(dev_offset),
        flags,
        ..XferUser::default()
    };
    let r = zc::ioctl(dev, zc::XFER_USER, &mut x);
    (x, r)
}

/// One user-page round trip: zero copy if the device reaches the pages,
/// refused (nothing started) and then bounced if it does not.
fn user_round_trip(
    dev: &File,
    mask_bits: u32,
    page_offset: usize,
    dev_offset: u64,
    len: usize,
    seed: u8,
) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    let pages = (page_offset + len).div_ceil(PAGE);
    let (mut src, mut dst) = match (Map::anonymous(pages * PAGE), Map::anonymous(pages * PAGE)) {
        (Ok(s), Ok(d)) => (s, d),
        _ => return vec![("buffers".into(), Err("anonymous mmap failed".into()))],
    };
    let data = pattern::bytes(len, seed);
    src.bytes()[page_offset..page_offset + len].copy_from_slice(&data);
    dst.bytes().fill(0xa5);
    let (src_addr, dst_addr) = (
        src.ptr as usize + page_offset,
        dst.ptr as usize + page_offset,
    );
    let pagemap = zc::pagemap_phys(src_addr).map_or("none".into(), |p| format!("{p:#x}"));
    let before = zc::starts(dev).unwrap_or(u64::MAX);
    let (x, r) = xfer_user(dev, src_addr, len, dev_offset, 0);
    match r {
        Ok(()) => {
            let (_, back) = xfer_user(dev, dst_addr, len, dev_offset, zc::FROM_DEVICE);
            let res = back.map_err(|e| format!("XFER_USER from device: {}", errno_name(&e))).and_then(|()| {
                match pattern::first_difference(&data, &dst.bytes()[page_offset..page_offset + len]) {
                    Some(i) => Err(format!("byte {i} differs after the zero-copy round trip")),
                    None => Ok(format!(
                        "zerocopy ok offset={dev_offset} len={len} seed={seed} phys={:#x} pagemap={pagemap} bus={:#x} segments={} hash={:016x}",
                        x.phys_addr, x.bus_addr, x.segments, hash(len, seed)
                    )),
                }
            });
            out.push(("zero copy".into(), res));
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
            let started = zc::starts(dev).unwrap_or(0).wrapping_sub(before);
            let res = if started != 0 {
                Err(format!("refused transfer started {started} DMAs"))
            } else if mask_bits >= 32 {
                Err(format!(
                    "refused on a {mask_bits}-bit device (phys {:#x})",
                    x.phys_addr
                ))
            } else {
                Ok(format!(
                    "zerocopy refused offset={dev_offset} len={len} phys={:#x} errno=EIO starts=0",
                    x.phys_addr
                ))
            };
            out.push(("refusal".into(), res));
            let bounced_before = zc::zc_counters(dev).map_or(0, |z| z.bounced_xfers);
            let (a, ra) = xfer_user(dev, src_addr, len, dev_offset, zc::BOUNCE);
            let (b, rb) = xfer_user(dev, dst_addr, len, dev_offset, zc::BOUNCE | zc::FROM_DEVICE);
            let bounced = zc::zc_counters(dev).map_or(0, |z| z.bounced_xfers) - bounced_before;
            let res = match (ra, rb) {
                (Ok(()), Ok(())) if a.bounced == 1 && b.bounced == 1 && bounced == 2 => {
                    match pattern::first_difference(&data, &dst.bytes()[page_offset..page_offset + len]) {
                        Some(i) => Err(format!("byte {i} differs after the bounced round trip")),
                        None => Ok(format!("zerocopy bounced offset={dev_offset} len={len} seed={seed} hash={:016x} bounced_xfers={bounced}", hash(len, seed))),
                    }
                }
                other => Err(format!("bounce: {other:?}, bounced flags {} {}, counter +{bounced}", a.bounced, b.bounced)),
            };
            out.push(("bounce".into(), res));
        }
        Err(e) => out.push((
            "zero copy".into(),
            Err(format!("XFER_USER to device: {}", errno_name(&e))),
        )),
    }
    out
}

pub fn zerocopy(path: &str) -> u32 {
    let mut t = Tally::default();
    match zc::open(path).and_then(|dev| {
        zc::info(&dev)
            .map(|i| (dev, i))
            .map_err(|e| format!("GET_INFO: {e}"))
    }) {
        Ok((dev, info)) => {
            let devmem = info.devmem_size as u64;
            for (seed, (page_offset, dev_offset, len)) in
                (0x70u8..).zip([(0, 0u64, PAGE), (100, 0x2000, 9000)])
            {
                if dev_offset + len as u64 > devmem {
                    continue;
                }
                for (what, r) in
                    user_round_trip(&dev, info.mask_bits, page_offset, dev_offset, len, seed)
                {
                    t.note(&what, r);
                }
            }
            let (_, r) = xfer_user(&dev, 0x10, 64, 0, 0);
            t.note(
                "bad pointer",
                match r {
                    Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                        Ok("zerocopy bad pointer refused errno=EFAULT".into())
                    }
                    other => Err(format!("{other:?}, expected EFAULT")),
                },
            );
        }
        Err(e) => t.note("open", Err(e)),
    }
    println!(
        "dma24-tool: zerocopy result passed={} failed={}",
        t.passed, t.failed
    );
    t.failed
}
