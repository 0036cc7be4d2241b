//! Issue 17, concurrent users and surprise unbind, read from the two-device
//! module boot (`module_userspace_boot`: no boot of its own). The guest's
//! `dma24-tool stress` and `dma24-tool unbind` check bytes and the driver's
//! counters against the device's; these tests add the host's side: each
//! device's own trace.

use std::collections::BTreeSet;

use device_model::trace::DmaRecord;
use device_model::Outcome;

use super::{check_trace_complete, module_userspace_boot, tail, Booted, Trace};

/// How long the guest's stress run lasts (`dmalab.stress=`), in seconds.
pub const STRESS_SECONDS: u32 = 10;

/// `key=value` of a tool line, as a number.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn text_field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// The trace of device `n` of the boot, complete and gap-free.
fn device_trace(b: &Booted, n: usize) -> Trace {
    let path = b
        .run
        .traces
        .get(n)
        .unwrap_or_else(|| panic!("no trace for device {n}: {:?}", b.run.traces));
    let t = Trace::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let view = Booted {
        run: ci::guest::GuestRun {
            name: b.run.name.clone(),
            exit: b.run.exit,
            console: String::new(),
            trace: Some(path.clone()),
            traces: vec![path.clone()],
            wall: b.run.wall,
        },
        trace: Some(t),
        no_warnings: b.no_warnings,
    };
    check_trace_complete(&view);
    view.trace.expect("loaded above")
}

fn moved_bytes(r: &DmaRecord) -> bool {
    matches!(r.outcome, Outcome::Ok | Outcome::Truncated)
}

/// Several processes on /dev/dma24-0 and /dev/dma24-1 at once: every byte
/// verified in the guest; per device, driver STARTs == device transfers ==
/// the transfers in that device's trace for the run's window, all of them
/// completed; one interrupt each, none lost; no hung task.
#[test]
fn concurrent_users_on_two_devices_match_each_trace() {
    let Some(b) = module_userspace_boot() else {
        return;
    };
    let console = &b.run.console;
    let init = b.run.init_lines();
    assert!(
        init.contains(&"dma24-tool stress exit=0"),
        "the stress run failed: {init:?}\n{}",
        tail(&b.run)
    );
    assert!(
        console.contains("dma24-tool: stress hung-task detector on: timeout 5 s"),
        "the hung-task detector was not on for the run\n{}",
        tail(&b.run)
    );
    assert!(
        !console.contains("blocked for more than"),
        "the hung-task detector reported a blocked task\n{}",
        tail(&b.run)
    );
    let result = console
        .lines()
        .find(|l| l.contains("dma24-tool: stress result "))
        .unwrap_or_else(|| panic!("no stress result line\n{}", tail(&b.run)));
    assert_eq!(field(result, "failed"), 0, "{result}");
    let workers = console
        .lines()
        .filter(|l| l.contains("dma24-tool: stress worker="))
        .collect::<Vec<_>>();
    assert_eq!(
        workers.len() as u64,
        field(result, "workers"),
        "{workers:?}"
    );
    assert_eq!(
        workers.len(),
        6,
        "3 workers on each of 2 devices: {workers:?}"
    );
    for w in &workers {
        assert!(field(w, "round_trips") > 0, "{w}");
        for way in ["rw", "user", "mmap"] {
            assert!(field(w, way) > 0, "a worker never used {way}: {w}");
        }
    }
    let bytes: u64 = workers.iter().map(|w| field(w, "bytes_verified")).sum();
    assert_eq!(bytes, field(result, "bytes_verified"));
    let devices: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("dma24-tool: stress device="))
        .collect();
    assert_eq!(devices.len(), 2, "{devices:?}");
    for line in devices {
        let dev = text_field(line, "device");
        let n: usize = dev
            .strip_prefix("/dev/dma24-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        let starts = field(line, "starts");
        assert!(starts > 0, "{line}");
        assert_eq!(
            starts,
            field(line, "dev_transfers"),
            "driver vs device: {line}"
        );
        assert_eq!(
            starts,
            field(line, "irqs"),
            "one interrupt per transfer: {line}"
        );
        assert_eq!(field(line, "lost_irqs"), 0, "{line}");
        assert_eq!(field(line, "timeouts"), 0, "{line}");
        let t = device_trace(b, n);
        assert_eq!(
            t.header.mask_bits,
            [24, 32][n],
            "device {n}'s trace is another device's"
        );
        let (lo, hi) = (field(line, "seq_before"), field(line, "seq_after"));
        let window: Vec<&DmaRecord> = t
            .records
            .iter()
            .filter(|r| r.seq > lo && r.seq <= hi)
            .collect();
        let transfers: BTreeSet<u64> = window.iter().map(|r| r.transfer).collect();
        assert_eq!(
            transfers.len() as u64,
            starts,
            "{dev}: transfers in its trace during the run vs the driver's STARTs"
        );
        let bad: Vec<_> = window.iter().filter(|r| r.outcome != Outcome::Ok).collect();
        assert!(bad.is_empty(), "{dev}: refused or cut short: {bad:?}");
        assert!(
            window.iter().all(|r| r.bdf == t.header.bdf),
            "{dev}: a record of another device"
        );
        eprintln!(
            "{dev}: {starts} transfers, {} trace records in the stress window",
            window.len()
        );
    }
    eprintln!(
        "stress: {} workers x {STRESS_SECONDS} s, {} round trips, {bytes} bytes verified",
        workers.len(),
        field(result, "round_trips")
    );
}

/// The two devices' traces are each their own: one header each with its
/// bdf and mask, every record with that bdf.
#[test]
fn two_devices_write_two_traces() {
    let Some(b) = module_userspace_boot() else {
        return;
    };
    assert_eq!(b.run.traces.len(), 2, "{:?}", b.run.traces);
    for (n, (bdf, mask)) in [("0000:00:01.0", 24), ("0000:00:02.0", 32)]
        .into_iter()
        .enumerate()
    {
        let t = device_trace(b, n);
        assert_eq!((t.header.bdf.as_str(), t.header.mask_bits), (bdf, mask));
        assert!(!t.records.is_empty(), "device {n} did no DMA");
        assert!(t.records.iter().all(|r| r.bdf == bdf));
        assert!(t.resets.iter().all(|r| r.bdf == bdf));
    }
    let init = b.run.init_lines();
    for bdf in ["0000:00:01.0", "0000:00:02.0"] {
        assert!(
            init.iter().any(
                |l| l.starts_with(&format!("pci {bdf} vendor=0x1234 device=0xd024"))
                    && l.ends_with("driver=bound")
            ),
            "{bdf} not listed as bound: {init:?}"
        );
    }
}

/// Unbind through sysfs while /dev/dma24-0 is open, mapped and transferring:
/// the guest saw ENODEV on the open file and in the transferring child and
/// the mapping intact; on the host, no byte moved for a transfer after the
/// reset that should have stopped it, and nothing at all between the
/// unbind's reset and the rebind's. DMA-API debugging stays clean
/// (`check_clean_exit` in the module test counts its errors).
#[test]
fn surprise_unbind_stops_dma_at_the_reset() {
    let Some(b) = module_userspace_boot() else {
        return;
    };
    let console = &b.run.console;
    let init = b.run.init_lines();
    assert!(
        init.contains(&"dma24-tool unbind exit=0"),
        "the unbind run failed: {init:?}\n{}",
        tail(&b.run)
    );
    let result = console
        .lines()
        .find(|l| l.contains("dma24-tool: unbind result "))
        .unwrap_or_else(|| panic!("no unbind result line\n{}", tail(&b.run)));
    assert_eq!(field(result, "failed"), 0, "{result}");
    assert!(field(result, "child_round_trips") > 0, "{result}");
    for line in [
        "unbind pread after unbind errno=ENODEV",
        "unbind MMAP_XFER after unbind errno=ENODEV",
        "unbind mapping intact after unbind",
        "unbind /dev/dma24-0 gone while unbound",
        "then errno=ENODEV",
        "round trip ok",
    ] {
        assert!(console.contains(line), "no {line:?}\n{}", tail(&b.run));
    }
    assert!(
        !console.contains("Oops") && !console.contains("Unable to handle"),
        "{}",
        tail(&b.run)
    );
    for n in 0..2 {
        let t = device_trace(b, n);
        // Every reset: nothing started before it moves a byte after it.
        for reset in &t.resets {
            let late: Vec<_> = t
                .records
                .iter()
                .filter(|r| {
                    r.seq > reset.after_seq && r.transfer <= reset.last_transfer && moved_bytes(r)
                })
                .collect();
            assert!(late.is_empty(), "device {n}: DMA after {reset:?}: {late:?}");
        }
    }
    // Device 0's last resets: the tool's unbind, the rebind's probe, rmmod.
    // Between unbind and probe no DMA at all; between probe and rmmod the
    // rebind's one round trip (4096 bytes each way).
    let t = device_trace(b, 0);
    let [.., unbind, probe, rmmod] = t.resets.as_slice() else {
        panic!("fewer than 3 resets on device 0: {:?}", t.resets)
    };
    let between = |a: u64, z: u64| -> Vec<&DmaRecord> {
        t.records
            .iter()
            .filter(|r| r.seq > a && r.seq <= z)
            .collect()
    };
    let unbound = between(unbind.after_seq, probe.after_seq);
    assert!(
        unbound.is_empty(),
        "DMA while unbound (between {unbind:?} and {probe:?}): {unbound:?}"
    );
    let rebound = between(probe.after_seq, rmmod.after_seq);
    let transfers: BTreeSet<u64> = rebound.iter().map(|r| r.transfer).collect();
    assert_eq!(transfers.len(), 2, "the rebind's round trip: {rebound:?}");
    assert!(rebound.iter().all(|r| moved_bytes(r) && r.dev_offset == 0));
    let want = dma24_tool::pattern::trace_hash(&dma24_tool::pattern::bytes(4096, 0x3d));
    assert_eq!(
        rebound.first().and_then(|r| r.hash).map(|h| h.0),
        Some(want),
        "the rebind's bytes"
    );
    // Before the unbind: the child's transfers, the last one whole.
    let before: Vec<_> = t
        .records
        .iter()
        .filter(|r| r.seq <= unbind.after_seq)
        .collect();
    assert!(
        before.last().is_some_and(|r| moved_bytes(r)),
        "{:?}",
        before.last()
    );
}
