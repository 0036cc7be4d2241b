//! dma24-tool: the guest's user-space side of the end-to-end tests.
//!
//! - `dma24-tool selftest [DEV]`: writes patterns of several sizes at several
//!   offsets through `/dev/dma24-0` (each `write` is a DMA to device memory),
//!   reads them back (a DMA from device memory) and compares. Prints one line
//!   per transfer and a result line the host harness parses:
//!   `dma24-tool: result passed=N failed=M bytes_to_device=X bytes_from_device=Y`.
//!   Then runs `mmap` and `zerocopy` on every `/dev/dma24-N` (the first one
//!   also unbinds and rebinds its device while mapped); for N > 0 the
//!   read/write cases too, all between `dma24-tool: device DEV begin` and
//!   `... end` lines.
//! - `dma24-tool mmap [DEV]`: the mmap buffer path, see `zerocopy.rs`;
//!   result line `dma24-tool: mmap result passed=N failed=M`.
//! - `dma24-tool zerocopy [DEV]`: the user-page path (zero copy, refusal,
//!   bounce), see `zerocopy.rs`; result line `dma24-tool: zerocopy result ...`.
//! - `dma24-tool bench [DEV]`: times each path (see `bench.rs`); `selftest`
//!   runs it too when the kernel command line has `dma24-tool.bench`.
//! - `dma24-tool alloc SOURCE [DEV]`: the allocator lab for one buffer
//!   source (number or name, e.g. `coherent`, `static-buffer`): selects it
//!   with `DMA24_IOC_SET_ALLOC`, does one round trip through write()/read()
//!   (800 bytes for the private and stack buffers, 4096 otherwise) and prints
//!   `dma24-tool: ok ...` (as selftest) or `dma24-tool: lab SOURCE refused:
//!   ERRNO`; then selects allocator 0 again. Exit 0 for both; 1 if the round
//!   trip moved wrong bytes or failed otherwise, 2 for bad usage.
//! - `dma24-tool sizes [DEV]`: the size-class table, measured by the driver
//!   (`DMA24_IOC_SIZE_CLASS` per allocator and size, then
//!   `DMA24_IOC_ZONE_DMA_LIMITS`), one `dma24-tool: size ...` line per row.
//! - `dma24-tool boot-cma [DEV]`: the boot-time reservation (`lab.rs`): one
//!   6 MiB round trip through `dma_alloc_coherent()` memory; `dma24-tool: ok
//!   ...` and exit 0 with a CMA area inside ZONE_DMA (`cma=8M@0-16M`), exit 3
//!   with `dma24-tool: boot-cma refused: ENOMEM ...` without one.
//! - `dma24-tool stress SECONDS WORKERS DEV...`: WORKERS processes per
//!   device transfer at once for SECONDS, every byte verified, the driver's
//!   counters checked against the device's (see `stress.rs`).
//! - `dma24-tool unbind DEV`: unbinds DEV's PCI device through sysfs while
//!   it is open, mapped and transferring, checks ENODEV, binds it again
//!   (see `unbind.rs`).
//! - `dma24-tool boot-done`: tells the VMM the guest has booted (writes the
//!   boot-timer magic to dmalab's debug port 0xf5).
//! - `dma24-tool exit STATUS`: ends the VM through dmalab's exit port 0xf4
//!   (dmalab exits 0 for status 0, 5 otherwise). Not for other VMMs.
//! - As `/init` (or `dma24-tool init`): the guest's init up to driver-ready
//!   without a fork (mounts, the module), then `sh /etc/init.sh`; see `init.rs`.
//!
//! Built as a static binary (glibc with crt-static) by images/build.sh.

use dma24_tool::pattern;

mod bench;
mod init;
mod lab;
mod stress;
mod unbind;
mod zc_commands;
mod zerocopy;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

/// dmalab's exit port: a status written there ends the VM (0 -> dmalab exits 0).
const EXIT_PORT: u16 = 0xf4;
/// dmalab's boot-timer port and the value that means "booted" (vmm/src/debugport.rs).
const TIMER_PORT: u16 = 0xf5;
const BOOT_DONE_MAGIC: u8 = 123;

/// (device-memory offset, length) of each self-test transfer: small, odd,
/// page-sized, crossing pages, and the largest the driver's buffer takes.
const CASES: &[(u64, usize)] = &[
    (0, 1),
    (0, 64),
    (3, 333),
    (4096, 4096),
    (1000, 5000),
    (0, 16384),
    (32768, 32768),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The kernel runs /init, a link to this binary (images/lib/initramfs.sh).
    if args.first().map(String::as_str) == Some("/init") {
        init::run();
    }
    match args.get(1).map(String::as_str) {
        Some("init") => init::run(),
        Some("selftest") => {
            let rw = selftest(args.get(2).map_or("/dev/dma24-0", String::as_str));
            let mut failed = 0;
            for n in 0..8 {
                let path = format!("/dev/dma24-{n}");
                if std::path::Path::new(&path).exists() {
                    // The other devices' lines between markers, so the harness
                    // reads each device's lines against its own trace.
                    if n > 0 {
                        println!("dma24-tool: device {path} begin");
                        failed += u32::from(selftest(&path) != ExitCode::SUCCESS);
                    }
                    failed += zc_commands::mmap(&path, n == 0) + zc_commands::zerocopy(&path);
                    if n > 0 {
                        println!("dma24-tool: device {path} end");
                    }
                }
            }
            // `cargo xtask bench` boots with this word on the kernel command line.
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            if cmdline.split_whitespace().any(|w| w == "dma24-tool.bench") {
                failed += bench::bench("/dev/dma24-0");
            }
            if failed == 0 {
                rw
            } else {
                ExitCode::FAILURE
            }
        }
        Some("bench") => exit_for(bench::bench(
            args.get(2).map_or("/dev/dma24-0", String::as_str),
        )),
        Some("mmap") => exit_for(zc_commands::mmap(
            args.get(2).map_or("/dev/dma24-0", String::as_str),
            false,
        )),
        Some("zerocopy") => exit_for(zc_commands::zerocopy(
            args.get(2).map_or("/dev/dma24-0", String::as_str),
        )),
        Some("alloc") => match args.get(2).and_then(|s| lab::parse_allocator(s)) {
            Some(n) => alloc(n, args.get(3).map_or("/dev/dma24-0", String::as_str)),
            None => {
                eprintln!("usage: dma24-tool alloc SOURCE [DEVICE]; SOURCE is one of:");
                for (n, name) in lab::allocators() {
                    eprintln!("  {n} {name}");
                }
                ExitCode::from(2)
            }
        },
        Some("sizes") => sizes(args.get(2).map_or("/dev/dma24-0", String::as_str)),
        Some("boot-cma") => {
            lab::boot_cma_command(args.get(2).map_or("/dev/dma24-0", String::as_str))
        }
        Some("stress") => match (args.get(2), args.get(3), args.get(4..)) {
            (Some(secs), Some(workers), Some(devs)) if !devs.is_empty() => {
                match (secs.parse(), workers.parse()) {
                    (Ok(secs), Ok(workers)) => exit_for(stress::stress(secs, workers, devs)),
                    _ => usage_stress(),
                }
            }
            _ => usage_stress(),
        },
        Some("unbind") => exit_for(unbind::unbind(
            args.get(2).map_or("/dev/dma24-0", String::as_str),
        )),
        Some("boot-done") => boot_done(),
        Some("exit") => match args.get(2).map(|s| s.parse::<u8>()) {
            Some(Ok(status)) => exit_vm(status),
            _ => {
                eprintln!("usage: dma24-tool exit STATUS (0-255)");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: dma24-tool selftest [DEVICE] | mmap [DEVICE] | zerocopy [DEVICE] | bench [DEVICE] | alloc SOURCE [DEVICE] | sizes [DEVICE] | boot-cma [DEVICE] | stress SECONDS WORKERS DEVICE... | unbind [DEVICE] | boot-done | exit STATUS | init"
            );
            ExitCode::from(2)
        }
    }
}

fn usage_stress() -> ExitCode {
    eprintln!("usage: dma24-tool stress SECONDS WORKERS DEVICE... (WORKERS processes per device)");
    ExitCode::from(2)
}

fn exit_for(failed: u32) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn transfer(dev: &mut File, offset: u64, len: usize, seed: u8) -> Result<(), String> {
    let data = pattern::bytes(len, seed);
    dev.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("seek to {offset}: {e}"))?;
    let n = dev.write(&data).map_err(|e| format!("write: {e}"))?;
    if n != len {
        return Err(format!("short write: {n} of {len}"));
    }
    let mut back = vec![0u8; len];
    dev.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("seek to {offset}: {e}"))?;
    dev.read_exact(&mut back)
        .map_err(|e| format!("read: {e}"))?;
    match pattern::first_difference(&data, &back) {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {i} differs: wrote {:#04x}, read {:#04x}",
            data[i], back[i]
        )),
    }
}

fn selftest(path: &str) -> ExitCode {
    let mut dev = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) => {
            println!("dma24-tool: cannot open {path}: {e}");
            println!("dma24-tool: result passed=0 failed=1 bytes_to_device=0 bytes_from_device=0");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed, mut bytes) = (0, 0, 0usize);
    // One seed per case (CASES has far fewer than 256 entries).
    for (seed, &(offset, len)) in (0u8..).zip(CASES) {
        match transfer(&mut dev, offset, len, seed) {
            Ok(()) => {
                passed += 1;
                bytes += len;
                println!(
                    "dma24-tool: ok offset={offset} len={len} seed={seed} hash={:016x}",
                    pattern::trace_hash(&pattern::bytes(len, seed))
                );
            }
            Err(e) => {
                failed += 1;
                println!("dma24-tool: FAIL offset={offset} len={len}: {e}");
            }
        }
    }
    println!("dma24-tool: result passed={passed} failed={failed} bytes_to_device={bytes} bytes_from_device={bytes}");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn open_rw(path: &str) -> Result<File, ExitCode> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            println!("dma24-tool: cannot open {path}: {e} (is dmalab loaded and a dma24 bound?)");
            ExitCode::FAILURE
        })
}

/// Device-memory offset of the `alloc` round trip (clear of selftest's
/// small cases) and the pattern seed it uses.
const LAB_OFFSET: u64 = 0xa000;
const LAB_SEED: u8 = 0x70;

fn alloc(n: u32, path: &str) -> ExitCode {
    let mut dev = match open_rw(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let name = lab::allocator_name(n).unwrap_or("?");
    if let Err(e) = lab::set_alloc(&dev, n) {
        println!("dma24-tool: lab {name}: DMA24_IOC_SET_ALLOC failed: {e}");
        return ExitCode::FAILURE;
    }
    let len = if n == 8 || n == 9 {
        lab::VIRT_BUF_LEN
    } else {
        4096
    };
    let seed = LAB_SEED.wrapping_add(u8::try_from(n).unwrap_or(0));
    let code = match transfer(&mut dev, LAB_OFFSET, len, seed) {
        Ok(()) => {
            println!(
                "dma24-tool: ok offset={LAB_OFFSET} len={len} seed={seed} hash={:016x} alloc={name}",
                pattern::trace_hash(&pattern::bytes(len, seed))
            );
            ExitCode::SUCCESS
        }
        // By number, not by text: glibc says "Input/output error", musl "I/O error".
        Err(e) if e.contains(&format!("(os error {})", libc::EIO)) => {
            println!("dma24-tool: lab {name} refused: EIO ({e}); the driver's log says why");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("dma24-tool: FAIL lab {name}: {e}");
            ExitCode::FAILURE
        }
    };
    if let Err(e) = lab::set_alloc(&dev, 0) {
        println!("dma24-tool: lab: could not select allocator 0 again: {e}");
        return ExitCode::FAILURE;
    }
    code
}

fn sizes(path: &str) -> ExitCode {
    let dev = match open_rw(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    for a in lab::SIZED {
        for size in lab::SIZES {
            let name = lab::allocator_name(a).unwrap_or("?");
            match lab::size_class(&dev, a, size) {
                Ok(r) if r.result == 0 => println!(
                    "dma24-tool: size alloc={name} size={size} granted={} slack={}.{}% zone={} phys={:#x}..{:#x} result=ok",
                    r.granted,
                    r.slack_permille / 10,
                    r.slack_permille % 10,
                    lab::zone_name(r.zone),
                    r.phys_lo,
                    r.phys_hi
                ),
                Ok(r) => println!(
                    "dma24-tool: size alloc={name} size={size} result={}",
                    std::io::Error::from_raw_os_error(-r.result)
                ),
                Err(e) => {
                    println!("dma24-tool: FAIL size alloc={name} size={size}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    match lab::zone_dma_limits(&dev) {
        Ok(l) => {
            println!(
                "dma24-tool: zone-dma largest_order={} largest_kmalloc={}",
                l.largest_order, l.largest_kmalloc
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("dma24-tool: FAIL zone-dma limits: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one byte to an I/O port (needs CAP_SYS_RAWIO: init runs as root).
fn outb(port: u16, value: u8) -> Result<(), std::io::Error> {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(port.into(), 1, 1) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the port was granted above; writing it only informs the VMM.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack));
    }
    Ok(())
}

fn exit_vm(status: u8) -> ExitCode {
    match outb(EXIT_PORT, status) {
        // On dmalab the VM is gone before this returns.
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dma24-tool: port {EXIT_PORT:#x}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn boot_done() -> ExitCode {
    match outb(TIMER_PORT, BOOT_DONE_MAGIC) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dma24-tool: port {TIMER_PORT:#x}: {e}");
            ExitCode::FAILURE
        }
    }
}
