//! Checks shared by the boot suites (dmalab's own boots in
//! boot_transfer.rs, QEMU + `dmalab serve` in vfio_user.rs): what a finished
//! guest's console and DMA trace must show.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use ci::crosscheck::{self, Trace};
use ci::guest::{self, GuestRun, GuestSpec};
use ci::ktap;
use device_model::{Direction, Outcome};

pub struct Booted {
    pub run: GuestRun,
    pub trace: Option<Trace>,
    /// The boot kept the kernel from printing WARNINGs and left out the
    /// suites that plant them (QEMU on PVM, `ci::vfio_user::PVM_NO_WARN`):
    /// no WARNING is expected and those suites are not required.
    pub no_warnings: bool,
}

/// A guest of the suites: `kernel` from the images with the initramfs, the
/// extra command line `cmdline` (to dmalab's default one), one
/// `device`, dmalab's default RAM, a 600 s timeout (callers override fields
/// they need).
pub fn spec(name: &str, kernel: &str, cmdline: &str, device: &str) -> GuestSpec {
    GuestSpec {
        name: name.into(),
        kernel: kernel.into(),
        initrd: true,
        cmdline: cmdline.trim().to_string(),
        device: Some(device.into()),
        mem_mib: u32::try_from(vmm::vm::DEFAULT_MEM_MIB).expect("MiB fit u32"),
        timeout: Duration::from_secs(600),
        module: None,
        module_args: None,
    }
}

/// A module boot's init ran its whole course: insmod, the tool, rmmod.
pub fn check_module_lifecycle(b: &Booted) {
    let init = b.run.init_lines();
    for line in ["insmod dmalab ok", "dma24-tool exit=0", "rmmod dmalab ok"] {
        assert!(
            init.contains(&line),
            "init did not print {line:?}: {init:?}\n{}",
            tail(&b.run)
        );
    }
}

pub fn out_dir() -> PathBuf {
    guest::runs_dir()
}

pub fn tail(run: &GuestRun) -> String {
    let summary = run
        .trace
        .as_ref()
        .and_then(|p| device_model::trace::summary::summarize_file(p).ok())
        .map(|s| s.render_table())
        .unwrap_or_else(|| "(no trace)".into());
    format!(
        "--- {} console tail (full log in {}) ---\n{}\n--- trace summary ---\n{summary}",
        run.name,
        out_dir()
            .join(format!("{}.console.log", run.name))
            .display(),
        run.console_tail(60)
    )
}

/// The suites the driver must run, with at least this many cases each.
pub const SUITES: &[(&str, usize)] = &[
    ("dmalab_probe", 2),
    ("dmalab_transfer", 6),
    ("dmalab_uapi", 3),
    ("dmalab_alloc_lab", 8),
    ("dmalab_alloc_lab2", 6),
    ("dmalab_alloc_lab3", 2),
    ("dmalab_faults", 9),
    ("dmalab_lifecycle", 1),
    ("dmalab_zerocopy", 3),
];

pub fn check_clean_exit(b: &Booted) {
    assert_eq!(b.run.exit, Some(0), "dmalab exit status\n{}", tail(&b.run));
    let init = b.run.init_lines();
    assert!(
        init.contains(&"done"),
        "init did not finish\n{}",
        tail(&b.run)
    );
    // The allocator lab plants DMA-API debug errors on purpose (the private
    // buffer of a module, README "Allocator lab"), each announced by a
    // `dma-api planted:` line: the count must be exactly those.
    let planted = b.run.console.matches(": dma-api planted: ").count();
    let reported = format!("dma-api error_count={planted}");
    assert!(
        init.contains(&reported.as_str()),
        "the kernel's DMA-API debugging found other errors than the {planted} planted ones (or did not report): {init:?}\n{}",
        tail(&b.run)
    );
    check_sleep_in_atomic_reports(b);
    check_expected_warnings(b);
}

/// Kernel WARNINGs are counted exactly: dma-direct warns once per boot at
/// each of its two call sites (single mapping, SG mapping) when the
/// allocator lab's out-of-mask buffers are refused, and DMA-API debugging
/// prints the first of its errors (show_num_errors=1) as a WARNING: one when
/// a DMA-API error was planted. Any other WARNING fails. A device with a
/// wider mask (the 32-bit boot) refuses none of those buffers in dma-direct
/// (they are all below 4 GiB): no dma-direct warning is expected there.
pub fn check_expected_warnings(b: &Booted) {
    let console = &b.run.console;
    let warnings: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("WARNING: "))
        .collect();
    if b.no_warnings {
        assert!(
            warnings.is_empty(),
            "kernel warnings: {warnings:?}\n{}",
            tail(&b.run)
        );
        return;
    }
    let planted = console.contains(": dma-api planted: ");
    let mut direct_sites = BTreeSet::new();
    for w in &warnings {
        if w.contains("kernel/dma/direct.h") {
            // The function the WARN names depends on inlining: at -O2
            // dma_map_phys() is folded into dma_direct_map_phys.constprop.N.
            let site = [
                ("dma_map_phys+", "dma_map_phys"),
                ("dma_direct_map_phys", "dma_map_phys"),
                ("dma_direct_map_sg+", "dma_direct_map_sg"),
            ]
            .into_iter()
            .find(|(s, _)| w.contains(s))
            .map(|(_, site)| site)
            .unwrap_or_else(|| panic!("unexpected dma-direct warning: {w}\n{}", tail(&b.run)));
            assert!(
                direct_sites.insert(site),
                "dma-direct warned twice at {site}"
            );
        } else {
            assert!(
                planted && w.contains("kernel/dma/debug.c") && w.contains("debug_dma_map_single"),
                "unexpected kernel warning: {w}\n{}",
                tail(&b.run)
            );
        }
    }
    let direct_expected = if console.contains(", 24-bit DMA mask") {
        2
    } else {
        0
    };
    assert_eq!(
        warnings.len(),
        direct_expected + usize::from(planted),
        "kernel warnings: {warnings:?}\n{}",
        tail(&b.run)
    );
}

/// The kernel's "sleeping function called from invalid context" reports
/// (CONFIG_DEBUG_ATOMIC_SLEEP): one per planted GFP_KERNEL under a spinlock
/// (see below for the one allowed extra), and none other.
pub fn check_sleep_in_atomic_reports(b: &Booted) {
    let console = &b.run.console;
    let planted = console
        .matches("dmalab: planted: GFP_KERNEL under a spinlock")
        .count();
    let reports = console
        .matches("BUG: sleeping function called from invalid context")
        .count();
    // One per planted call. A second can follow within the same call only if
    // the slab needed a new page (the page allocator checks might_sleep too)
    // and printing the first took over a second (the report is rate-limited
    // to one per HZ): seen once on a loaded host, before the driver warmed
    // the slab. Never more, and never one without a planted call.
    assert!(
        (planted..=2 * planted).contains(&reports),
        "{reports} sleeping-in-atomic reports for {planted} planted ones\n{}",
        tail(&b.run)
    );
}

pub fn check_kunit(b: &Booted, skips_allowed: &[&str]) {
    let suites = ktap::parse(&b.run.console);
    let by_name: BTreeMap<&str, &ktap::Suite> =
        suites.iter().map(|s| (s.name.as_str(), s)).collect();
    for (name, min_cases) in SUITES {
        if b.no_warnings && ci::vfio_user::PVM_SKIPPED_SUITES.contains(name) {
            continue;
        }
        let s = by_name
            .get(name)
            .unwrap_or_else(|| panic!("suite {name} did not run\n{}", tail(&b.run)));
        assert_eq!(
            s.ok,
            Some(true),
            "suite {name} did not pass: {:?}\n{}",
            s.cases,
            tail(&b.run)
        );
        assert_eq!(s.failed(), 0, "{name}: {:?}", s.cases);
        assert!(
            s.cases.len() >= *min_cases,
            "{name} ran {} cases: {:?}",
            s.cases.len(),
            s.cases
        );
        for c in &s.cases {
            if let ktap::Outcome::Skip(why) = &c.outcome {
                assert!(
                    skips_allowed.iter().any(|a| c.name == *a),
                    "{name}.{} skipped unexpectedly: {why}\n{}",
                    c.name,
                    tail(&b.run)
                );
            }
        }
    }
}

/// The STARTs the KUnit tests say they made (`# dma24-0: N STARTs; ...`).
pub fn reported_starts(console: &str) -> u64 {
    console
        .lines()
        .filter_map(|l| l.split_once("# dma24-0: ").map(|(_, r)| r))
        .filter_map(|r| {
            r.split_once(" STARTs")
                .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        })
        .sum()
}

pub fn transfers_in(trace: &Trace) -> BTreeSet<u64> {
    trace.records.iter().map(|r| r.transfer).collect()
}

pub fn check_trace_complete(b: &Booted) -> &Trace {
    let t = b.trace.as_ref().expect("the run has a trace");
    let footer = t
        .footer
        .unwrap_or_else(|| panic!("trace has no footer: not closed\n{}", tail(&b.run)));
    assert_eq!(footer.dropped, 0, "trace dropped records");
    assert_eq!(
        footer.records,
        t.records.len() as u64,
        "footer count vs records"
    );
    for (i, r) in t.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "sequence numbers have a gap at {i}");
    }
    t
}

/// The faults the KUnit fault suite plants on a rejecting device, one each.
pub fn planted_faults_reject() -> BTreeMap<Outcome, usize> {
    BTreeMap::from([
        (Outcome::RejectedMask, 3),
        (Outcome::BmeOff, 1),
        (Outcome::BadLength, 1),
        (Outcome::BadOffset, 1),
        (Outcome::BadCommand, 1),
        (Outcome::BadDescriptor, 1),
    ])
}

pub fn fault_counts(trace: &Trace) -> BTreeMap<Outcome, usize> {
    let mut m = BTreeMap::new();
    for r in trace.records.iter().filter(|r| r.outcome != Outcome::Ok) {
        *m.entry(r.outcome).or_insert(0) += 1;
    }
    m
}

/// Every round trip the driver reports (`xfer` lines) is in the trace, both
/// directions, with the right bytes.
pub fn check_driver_round_trips(b: &Booted) {
    let t = check_trace_complete(b);
    let reported = crosscheck::driver_transfers(&b.run.console);
    assert!(
        reported.len() >= 20,
        "the driver reported only {} transfers\n{}",
        reported.len(),
        tail(&b.run)
    );
    for x in &reported {
        crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
    }
}

pub fn check_tool(b: &Booted) {
    let result = b
        .run
        .console
        .lines()
        .find_map(|l| {
            l.split_once("dma24-tool: result ")
                .map(|(_, r)| r.to_string())
        })
        .unwrap_or_else(|| panic!("no dma24-tool result line\n{}", tail(&b.run)));
    assert!(
        result.contains(" failed=0 "),
        "dma24-tool: {result}\n{}",
        tail(&b.run)
    );
    let t = check_trace_complete(b);
    let transfers = crosscheck::tool_transfers(&b.run.console);
    assert!(
        transfers.len() >= 14,
        "expected 7 round trips, got {transfers:?}"
    );
    for x in &transfers {
        crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
    }
    assert!(transfers.iter().any(|x| x.dir == Direction::FromDevice));
    // The allocator lab from user space: coherent memory round-trips (an
    // `ok ... alloc=coherent` line, matched with the trace above), the
    // private and stack buffers are refused, the size table is complete.
    let init = b.run.init_lines();
    assert!(
        init.contains(&"dma24-tool lab exit=0"),
        "dma24-tool alloc/sizes failed: {init:?}\n{}",
        tail(&b.run)
    );
    let console = &b.run.console;
    assert!(
        console
            .lines()
            .any(|l| l.starts_with("dma24-tool: ok ") && l.ends_with(" alloc=coherent")),
        "no coherent round trip from user space\n{}",
        tail(&b.run)
    );
    for source in ["static-buffer", "stack-buffer"] {
        assert!(
            console.contains(&format!("dma24-tool: lab {source} refused: EIO")),
            "{source} was not refused with EIO\n{}",
            tail(&b.run)
        );
    }
    // The built-in run prints the size-class table from user space.
    if init.contains(&"driver built in") {
        let rows = console.matches("dma24-tool: size alloc=").count();
        assert_eq!(
            rows,
            6 * 14,
            "size-class rows from dma24-tool\n{}",
            tail(&b.run)
        );
    }
}

/// With a 32-bit mask the user pages themselves are DMA'd: the trace's
/// descriptors carry the tool's own pages' physical addresses (as the driver
/// reported and /proc/self/pagemap says), above ZONE_DMA, with the right bytes.
pub fn check_user_page_zero_copy_32(b: &Booted) {
    check_clean_exit(b);
    check_tool(b);
    let console = &b.run.console;
    let t = check_trace_complete(b);
    assert_eq!(t.header.mask_bits, 32);
    assert!(
        !console.contains("dma24-tool: zerocopy refused")
            && !console.contains("dma24-tool: zerocopy bounced"),
        "user pages refused or bounced on a 32-bit device\n{}",
        tail(&b.run)
    );
    let lines: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("dma24-tool: zerocopy ok "))
        .collect();
    let transfers = crosscheck::zero_copy_transfers(console);
    assert!(
        lines.len() >= 2 && transfers.len() == 2 * lines.len(),
        "{lines:?}\n{}",
        tail(&b.run)
    );
    for (line, x) in lines.iter().zip(transfers.iter().step_by(2)) {
        let seqs =
            crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
        let first = t
            .records
            .iter()
            .find(|r| r.seq == seqs[0])
            .unwrap_or_else(|| panic!("no trace record with seq {}", seqs[0]));
        let phys = crosscheck::hex_field(line, "phys").unwrap_or_else(|| panic!("{line}"));
        assert_eq!(
            first.requested_addr.0, phys,
            "the device did not read the user's page: {line} vs {first:?}"
        );
        if let Some(p) = crosscheck::hex_field(line, "pagemap") {
            assert_eq!(p, phys, "driver and /proc/self/pagemap disagree: {line}");
        }
        assert!(
            phys >= 0x100_0000,
            "a user page in ZONE_DMA is no proof of zero copy: {line}"
        );
        assert_eq!(
            crosscheck::hex_field(line, "bus"),
            Some(phys),
            "dma-direct: bus address = physical address: {line}"
        );
    }
    for x in &crosscheck::mmap_transfers(console) {
        crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
    }
    assert!(
        console.contains("dma24-tool: zerocopy result passed="),
        "{}",
        tail(&b.run)
    );
    assert!(
        console
            .lines()
            .any(|l| l.contains("dma24-tool: zerocopy result ") && l.ends_with(" failed=0")),
        "{}",
        tail(&b.run)
    );
}
