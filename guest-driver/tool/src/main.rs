//! dma24-tool: the guest's user-space side of the end-to-end tests.
//!
//! - `dma24-tool selftest [DEV]`: writes patterns of several sizes at several
//!   offsets through `/dev/dma24-0` (each `write` is a DMA to device memory),
//!   reads them back (a DMA from device memory) and compares. Prints one line
//!   per transfer and a result line the host harness parses:
//!   `dma24-tool: result passed=N failed=M bytes_to_device=X bytes_from_device=Y`.
//! - `dma24-tool boot-done`: tells the VMM the guest has booted (writes the
//!   boot-timer magic to dmalab's debug port 0xf5).
//!
//! Built as a static binary (glibc with crt-static) by images/build.sh.

use dma24_tool::pattern;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

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
    match args.get(1).map(String::as_str) {
        Some("selftest") => selftest(args.get(2).map_or("/dev/dma24-0", String::as_str)),
        Some("boot-done") => boot_done(),
        _ => {
            eprintln!("usage: dma24-tool selftest [DEVICE] | boot-done");
            ExitCode::from(2)
        }
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
    for (i, &(offset, len)) in CASES.iter().enumerate() {
        match transfer(&mut dev, offset, len, i as u8) {
            Ok(()) => {
                passed += 1;
                bytes += len;
                println!(
                    "dma24-tool: ok offset={offset} len={len} seed={i} hash={:016x}",
                    pattern::trace_hash(&pattern::bytes(len, i as u8))
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

fn boot_done() -> ExitCode {
    // SAFETY: ioperm only changes this process's I/O permission bitmap; it
    // fails with EPERM without CAP_SYS_RAWIO, which is reported.
    if unsafe { libc::ioperm(TIMER_PORT.into(), 1, 1) } != 0 {
        eprintln!(
            "dma24-tool: ioperm({TIMER_PORT:#x}): {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::FAILURE;
    }
    // SAFETY: the port was granted above; writing it only informs the VMM.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") TIMER_PORT, in("al") BOOT_DONE_MAGIC, options(nomem, nostack));
    }
    ExitCode::SUCCESS
}
