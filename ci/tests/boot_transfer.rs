//! The boot-and-transfer suite: real guests in dmalab with the dma24 device,
//! the driver's KUnit suites and the user-space tool, cross-checked against
//! the host's DMA trace.
//!
//! Each guest configuration boots once (about 1.5 minutes of emulated guest
//! kernel on PVM hosts) and every test of that configuration reads the same
//! run. Without images these tests are skipped with a message, unless
//! DMALAB_REQUIRE_IMAGES=1 (set by `cargo xtask test`), which fails them.

#![forbid(unsafe_code)]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use ci::crosscheck::{self, Trace};
use ci::guest::{self, Artifacts, GuestRun, GuestSpec};
use common::*;
use device_model::Outcome;

#[path = "boot/stress_unbind.rs"]
mod stress_unbind;

fn boot(spec: GuestSpec) -> Option<Booted> {
    let artifacts = Artifacts::for_test(&spec.name)?;
    let run =
        guest::boot(&artifacts, &spec, &out_dir()).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    let trace = run
        .trace
        .as_ref()
        .map(|p| Trace::load(p).unwrap_or_else(|e| panic!("{}: {e}\n{}", spec.name, tail(&run))));
    Some(Booted {
        run,
        trace,
        no_warnings: false,
    })
}

/// Boots `spec` the first time a test asks for it; every later caller reads
/// the same run.
fn once(
    cell: &'static OnceLock<Option<Booted>>,
    spec: impl FnOnce() -> GuestSpec,
) -> Option<&'static Booted> {
    cell.get_or_init(|| boot(spec())).as_ref()
}

/// The driver built in, default device (24 bits, reject), MSI: KUnit at boot,
/// then the user-space tool through /dev/dma24-0.
fn kunit_reject_msi() -> Option<&'static Booted> {
    static RUN: OnceLock<Option<Booted>> = OnceLock::new();
    once(&RUN, || {
        spec("kunit-reject-msi", "vmlinux-kunit", "", "dma24")
    })
}

/// The driver built in, a truncating device, INTx forced. Also the
/// allocator lab's boot-time reservation: a CMA area inside ZONE_DMA
/// ([`BOOT_CMA_ARG`]) and 8 MiB of device memory for its 6 MiB round trip
/// (the other boots have neither and show the same request failing).
fn kunit_truncate_intx() -> Option<&'static Booted> {
    static RUN: OnceLock<Option<Booted>> = OnceLock::new();
    once(&RUN, || {
        spec(
            "kunit-truncate-intx",
            "vmlinux-kunit",
            &format!("dmalab.force_intx=1 dmalab.run=none {BOOT_CMA_ARG}"),
            "dma24,overflow=truncate,mem=8192",
        )
    })
}

/// 8 MiB anywhere below 16 MiB: ZONE_DMA, below the kernel image at
/// `CONFIG_PHYSICAL_START` = 16 MiB; CMA aligns areas to 4 MiB here
/// (pageblock order 10), memblock places it top-down.
const BOOT_CMA_ARG: &str = "cma=8M@0-16M";

/// The module kernel with two devices, the default (/dev/dma24-0) and a
/// 32-bit-mask one (/dev/dma24-1, which reaches every page of the 64 MiB
/// guest: user-page DMA is zero copy there): busybox init loads dmalab.ko
/// (no KUnit suites in it), runs dma24-tool on both, the concurrency run and
/// the surprise unbind (`dmalab.stress`, `stress_unbind.rs`), removes the
/// module. Read through [`module_userspace`] and [`module_userspace_mask32`],
/// one device each.
fn module_userspace_boot() -> Option<&'static Booted> {
    static RUN: OnceLock<Option<Booted>> = OnceLock::new();
    once(&RUN, || GuestSpec {
        // Two devices' tool runs, the stress run and the unbind: at load 12
        // on the shared 2-core host the whole took more than 600 s (with the
        // KUnit suites then in the module, insmod alone ended at 435 s).
        timeout: Duration::from_secs(1200),
        ..spec(
            "module-userspace",
            "vmlinux",
            &format!("dmalab.stress={}", stress_unbind::STRESS_SECONDS),
            "dma24 dma24,mask-bits=32",
        )
    })
}

/// The two-device boot as the 24-bit /dev/dma24-0 sees it.
fn module_userspace() -> Option<&'static Booted> {
    static VIEW: OnceLock<Option<Booted>> = OnceLock::new();
    VIEW.get_or_init(|| module_userspace_boot().map(|b| device_view(b, 0)))
        .as_ref()
}

/// The two-device boot as the 32-bit /dev/dma24-1 sees it (until the VMM
/// hosted two devices this was a boot of its own).
fn module_userspace_mask32() -> Option<&'static Booted> {
    static VIEW: OnceLock<Option<Booted>> = OnceLock::new();
    VIEW.get_or_init(|| module_userspace_boot().map(|b| device_view(b, 1)))
        .as_ref()
}

/// One device's view of a boot with several: its trace, and the console
/// without the other devices' tool lines. The tool (and init) print the
/// lines of /dev/dma24-N, N > 0, between `dma24-tool: device DEV begin` and
/// `... end`; device 0 sees every line outside those sections, device N
/// the lines of its sections and every line outside them that is not the
/// tool's (kernel, VMM and init lines); neither sees the driver's lines
/// about the other (`dma24-M: ...`).
fn device_view(b: &Booted, n: usize) -> Booted {
    let mine = format!("/dev/dma24-{n}");
    let mut section: Option<String> = None;
    let mut console = String::new();
    for line in b.run.console.lines() {
        if let Some(rest) = line.split_once("dma24-tool: device ").map(|(_, r)| r) {
            let (dev, what) = rest.split_once(' ').unwrap_or((rest, ""));
            section = (what == "begin").then(|| dev.to_string());
            continue;
        }
        // The driver's lines name their device (`dma24-M: ...`).
        // Every view keeps what the boot-wide checks count, inside sections
        // too: the planted DMA-API errors (`dma-api error_count` is one
        // kernel-wide count), the kernel's WARNINGs and sleep-in-atomic
        // reports, and the probe lines with the masks (the WARNINGs expected
        // depend on a 24-bit device being there).
        let boot_wide = [
            ": dma-api planted: ",
            "-bit DMA mask, ",
            "WARNING: ",
            "BUG: sleeping function",
        ]
        .iter()
        .any(|k| line.contains(k));
        let other_driver_line =
            !boot_wide && (0..8).any(|m| m != n && line.contains(&format!("dma24-{m}: ")));
        let keep = boot_wide
            || match &section {
                Some(dev) => *dev == mine,
                None => !other_driver_line && (n == 0 || !line.contains("dma24-tool: ")),
            };
        if keep {
            console.push_str(line);
            console.push('\n');
        }
    }
    let path = b.run.traces.get(n).cloned();
    let trace = path.as_ref().map(|p| {
        Trace::load(p).unwrap_or_else(|e| panic!("{}: {e}\n{}", b.run.name, tail(&b.run)))
    });
    Booted {
        run: GuestRun {
            name: b.run.name.clone(),
            exit: b.run.exit,
            console,
            trace: path.clone(),
            traces: path.into_iter().collect(),
            wall: b.run.wall,
        },
        trace,
        no_warnings: b.no_warnings,
    }
}

#[test]
fn kunit_suites_pass_on_a_24_bit_device_with_msi() {
    let Some(b) = kunit_reject_msi() else { return };
    check_clean_exit(b);
    check_kunit(b, &[]);
    assert!(
        b.run.console.contains("Msi, /dev/dma24-0"),
        "the driver did not use MSI\n{}",
        tail(&b.run)
    );
}

#[test]
fn trace_holds_exactly_the_transfers_the_suites_made() {
    let Some(b) = kunit_reject_msi() else { return };
    let t = check_trace_complete(b);
    let starts = reported_starts(&b.run.console);
    // read()/write(), mmap, zero-copy and bounced round trips of the tool.
    let tool_starts = crosscheck::tool_starts(&b.run.console);
    assert!(
        starts > 0,
        "the suites reported no STARTs\n{}",
        tail(&b.run)
    );
    assert_eq!(
        transfers_in(t).len() as u64,
        starts + tool_starts,
        "transfers in the trace vs STARTs the guest reported (KUnit {starts}, tool {tool_starts})"
    );
    assert_eq!(
        fault_counts(t),
        planted_faults_reject(),
        "faults in the trace vs the planted ones"
    );
    assert_eq!(t.header.mask_bits, 24);
    assert_eq!(t.header.overflow, "reject");
}

#[test]
fn driver_round_trips_match_the_trace() {
    let Some(b) = kunit_reject_msi() else { return };
    check_driver_round_trips(b);
}

#[test]
fn faults_are_refused_before_memory_is_touched() {
    let Some(b) = kunit_reject_msi() else { return };
    let t = check_trace_complete(b);
    for r in t.records.iter().filter(|r| r.outcome != Outcome::Ok) {
        assert_eq!(r.hash, None, "a refused access moved bytes: {r:?}");
        assert_ne!(r.error, 0, "a refused access without an error code: {r:?}");
    }
    let over: Vec<_> = t
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::RejectedMask)
        .collect();
    assert!(
        over.iter().all(|r| r.requested_addr.0 + r.len > 0x100_0000),
        "{over:?}"
    );
    for r in t.records.iter().filter(|r| r.outcome == Outcome::Ok) {
        let end = r.effective_addr.expect("ok records have an address").0 + r.len;
        assert!(
            end <= 0x100_0000,
            "an ok access beyond the 24-bit mask: {r:?}"
        );
    }
}

#[test]
fn user_space_tool_transfers_match_the_trace_builtin() {
    let Some(b) = kunit_reject_msi() else { return };
    check_tool(b);
}

#[test]
fn truncating_device_with_intx() {
    let Some(b) = kunit_truncate_intx() else {
        return;
    };
    check_clean_exit(b);
    // The crossing-the-mask case cannot fault on a device that wraps.
    check_kunit(b, &["over_mask_crossing"]);
    assert!(
        b.run.console.contains("Intx, /dev/dma24-0"),
        "the driver did not use INTx\n{}",
        tail(&b.run)
    );
    let t = check_trace_complete(b);
    assert_eq!(t.header.overflow, "truncate");
    let truncated: Vec<_> = t
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Truncated)
        .collect();
    assert!(
        !truncated.is_empty(),
        "no truncated records on a truncating device"
    );
    for r in &truncated {
        let eff = r
            .effective_addr
            .expect("truncated records have the effective address")
            .0;
        assert_eq!(
            eff,
            r.requested_addr.0 & 0xff_ffff,
            "effective = requested & mask: {r:?}"
        );
        assert_ne!(eff, r.requested_addr.0);
    }
    assert!(
        !t.records.iter().any(|r| r.outcome == Outcome::RejectedMask),
        "a truncating device rejected an address"
    );
    assert_eq!(
        transfers_in(t).len() as u64,
        reported_starts(&b.run.console)
    );
    check_driver_round_trips(b);
}

/// The trace report of a real guest's trace (the truncating device's: ok,
/// truncated and refused records) in headless chromium: the page's script
/// ran without an error, the DOM holds one address-map mark per record, and
/// a screenshot is left under the cache for a person to look at.
#[test]
fn trace_report_opens_in_headless_chromium() {
    let Some(b) = kunit_truncate_intx() else {
        return;
    };
    let chromium = match ci::browser::chromium() {
        Ok(p) => p,
        Err(e) if std::env::var_os("DMALAB_REQUIRE_IMAGES").is_some_and(|v| v == "1") => {
            panic!("{e} (cargo xtask test installs it)")
        }
        Err(e) => {
            eprintln!("SKIPPED trace_report_opens_in_headless_chromium: {e}");
            return;
        }
    };
    let t = check_trace_complete(b);
    let trace = b.run.trace.as_ref().expect("a trace");
    // The binary only: the images may be gone by now (another checkout's
    // build prunes the cache), and this test reads the trace it left.
    let dmalab = guest::dmalab_binary().expect("the dmalab binary");
    let report = out_dir().join(format!("{}.report.html", b.run.name));
    let out = std::process::Command::new(&dmalab)
        .args(["trace", "view"])
        .arg(trace)
        .arg("-o")
        .arg(&report)
        .output()
        .expect("run dmalab trace view");
    assert!(
        out.status.success(),
        "dmalab trace view: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = ci::browser::dump_dom(&chromium, &report).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not finish (report {})",
        report.display()
    );
    assert!(
        !dom.contains("data-errors="),
        "script errors in {}: {}",
        report.display(),
        dom.split("data-errors=")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(40)
            .collect::<String>()
    );
    let records = t.records.len();
    assert!(records > 0 && records <= trace_report::DETAIL_LIMIT);
    assert!(
        dom.contains(&format!("data-marks=\"{records}\"")),
        "the DOM should hold {records} marks (one per record); report {}",
        report.display()
    );
    let truncated = t
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Truncated)
        .count();
    assert_eq!(dom.matches("class=\"trunc-link\"").count(), truncated);
    // The script drew the legend from the marks it found.
    assert!(
        dom.contains(&format!("truncated {truncated}</span>")),
        "legend"
    );
    let shots = guest::cache_dir().join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let png = shots.join(format!("{}.report.png", b.run.name));
    let _ = std::fs::remove_file(&png);
    ci::browser::screenshot(&chromium, &report, &png, (1300, 1500))
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000);
    eprintln!(
        "trace report {} -> screenshot {}",
        report.display(),
        png.display()
    );
}

#[test]
fn module_loads_transfers_from_user_space_and_unloads() {
    let Some(b) = module_userspace() else { return };
    check_clean_exit(b);
    check_module_lifecycle(b);
    let init = b.run.init_lines();
    assert!(
        init.iter().any(
            |l| l.starts_with("pci 0000:00:01.0 vendor=0x1234 device=0xd024")
                && l.ends_with("driver=bound")
        ),
        "the guest did not list the bound dma24: {init:?}"
    );
    for (bar, size) in [(0, 0x1000u64), (1, 0x10000)] {
        let line = init
            .iter()
            .find(|l| l.starts_with(&format!("pci 0000:00:01.0 resource{bar} ")))
            .unwrap_or_else(|| panic!("no BAR{bar} line: {init:?}"));
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
                .unwrap_or_else(|| panic!("{line}"))
        };
        assert_eq!(
            field("end=") - field("start=") + 1,
            size,
            "BAR{bar} size: {line}"
        );
    }
    check_tool(b);
    check_plain_module_ran_no_suites(b);
}

/// The images' dmalab.ko is built without the KUnit suites (guest-driver/
/// Kbuild: they run in the vmlinux-kunit boots above, every suite of
/// SUITES): insmod runs none, and every transfer in the trace is one the
/// user-space tool reported. The driver's own round-trip lines (the tool's
/// allocator-lab commands) still match the trace.
fn check_plain_module_ran_no_suites(b: &Booted) {
    let console = &b.run.console;
    assert!(
        !console.contains("# Subtest: dmalab_"),
        "a KUnit suite ran at insmod: the plain module should carry none\n{}",
        tail(&b.run)
    );
    assert_eq!(reported_starts(console), 0, "KUnit STARTs in a module boot");
    let t = check_trace_complete(b);
    // The concurrency run and the surprise unbind come after the tool's
    // reported round trips and are checked by stress_unbind.rs against
    // their own window: count the transfers before it (REG_LAST_SEQ as the
    // stress run read it first).
    let before_stress = console
        .lines()
        .find(|l| l.contains("dma24-tool: stress device=/dev/dma24-0 "))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("seq_before="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no seq_before: {l}"))
        })
        .unwrap_or(u64::MAX);
    let transfers: BTreeSet<u64> = t
        .records
        .iter()
        .filter(|r| r.seq <= before_stress)
        .map(|r| r.transfer)
        .collect();
    assert_eq!(
        transfers.len() as u64,
        crosscheck::tool_starts(console),
        "transfers in the trace (before the stress run, seq <= {before_stress}) vs STARTs dma24-tool reported\n{}",
        tail(&b.run)
    );
    for x in &crosscheck::driver_transfers(console) {
        crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
    }
}

/// The 24-bit device's zero-copy story, from user space: the mmap buffer
/// works (ZONE_DMA addresses in the trace), the user pages are refused with
/// EIO and a `dev_err` naming the page, nothing started, and with the bounce
/// flag the bytes go through ZONE_DMA; private and oversized mappings are
/// refused; a mapping outlives close() and unbind.
fn check_zero_copy_on_24_bits(b: &Booted) {
    let console = &b.run.console;
    for result in ["mmap result ", "zerocopy result "] {
        let line = console
            .lines()
            .find(|l| l.contains(&format!("dma24-tool: {result}")))
            .unwrap_or_else(|| panic!("no dma24-tool {result}line\n{}", tail(&b.run)));
        assert!(line.ends_with(" failed=0"), "{line}\n{}", tail(&b.run));
    }
    for line in [
        "mmap private refused errno=EINVAL",
        "mmap past the end refused errno=EINVAL",
        "mmap xfer past the buffer refused errno=EINVAL",
        "mmap lifetime close-then-munmap ok",
        "mmap lifetime unbind-while-mapped ok",
        "zerocopy bad pointer refused errno=EFAULT",
    ] {
        assert!(
            console.contains(&format!("dma24-tool: {line}")),
            "no {line:?}\n{}",
            tail(&b.run)
        );
    }
    let t = check_trace_complete(b);
    let in_zone_dma = |seqs: &[u64], what: &str| {
        for s in seqs {
            let r = t
                .records
                .iter()
                .find(|r| r.seq == *s)
                .unwrap_or_else(|| panic!("{what}: no trace record with seq {s}"));
            assert!(
                r.requested_addr.0 + r.len <= 0x100_0000,
                "{what}: {r:?} is not in ZONE_DMA"
            );
        }
    };
    let mmap = crosscheck::mmap_transfers(console);
    assert!(
        mmap.len() >= 6,
        "expected 3 mmap round trips: {mmap:?}\n{}",
        tail(&b.run)
    );
    for x in &mmap {
        let seqs =
            crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
        in_zone_dma(&seqs, "mmap buffer");
    }
    let refused: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("dma24-tool: zerocopy refused "))
        .collect();
    assert!(
        refused.len() >= 2,
        "user pages were not refused on a 24-bit device\n{}",
        tail(&b.run)
    );
    for line in &refused {
        assert!(line.contains("errno=EIO starts=0"), "{line}");
        let phys = crosscheck::hex_field(line, "phys").unwrap_or_else(|| panic!("{line}"));
        assert!(phys >= 0x100_0000, "refused a page below 16 MiB: {line}");
        let named =
            format!("user page at physical {phys:#x} is beyond the device's DMA mask 0xffffff");
        assert!(
            console.contains(&named),
            "no dev_err naming {phys:#x}\n{}",
            tail(&b.run)
        );
        assert!(
            !t.records.iter().any(|r| r.requested_addr.0 == phys),
            "the refused page {phys:#x} reached the device"
        );
    }
    let bounced = crosscheck::bounced_transfers(console);
    assert!(
        bounced.len() >= 4,
        "expected 2 bounced round trips: {bounced:?}"
    );
    for x in &bounced {
        let seqs =
            crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
        in_zone_dma(&seqs, "bounce buffer");
    }
}

#[test]
fn zero_copy_on_a_24_bit_device_builtin() {
    let Some(b) = kunit_reject_msi() else { return };
    check_zero_copy_on_24_bits(b);
}

#[test]
fn zero_copy_on_a_24_bit_device_module() {
    let Some(b) = module_userspace() else { return };
    check_zero_copy_on_24_bits(b);
}

/// With a 32-bit mask the user pages themselves are DMA'd: the trace's
/// descriptors carry the tool's own pages' physical addresses (as the driver
/// reported and /proc/self/pagemap says), above ZONE_DMA, with the right bytes.
#[test]
fn user_page_dma_is_zero_copy_with_a_32_bit_mask() {
    let Some(b) = module_userspace_mask32() else {
        return;
    };
    check_user_page_zero_copy_32(b);
}

/// The KUnit `boot_cma` diagnostic of a boot: (outcome, phys_lo, phys_hi).
fn boot_cma_outcome(b: &Booted) -> (String, u64, u64) {
    let line = b
        .run
        .console
        .lines()
        .find_map(|l| l.split_once("# boot_cma ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no boot_cma line from dmalab_alloc_lab3\n{}", tail(&b.run)));
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in `{line}`"))
            .to_string()
    };
    let phys = field("phys=");
    let (lo, hi) = phys.split_once("..").expect("phys=LO..HI");
    let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex");
    (field("result="), hex(lo), hex(hi))
}

/// Lesson 5 of the allocator lab, both outcomes from real boots: with
/// `cma=` the 6 MiB coherent buffer comes from the reserved area (inside
/// ZONE_DMA) and round-trips (matched with the trace by hash); without, the
/// same request is a clean ENOMEM naming the limit, from KUnit and from
/// dma24-tool, and nothing reaches the device. Also the allocation inside
/// the interrupt handler, made once in each boot.
#[test]
fn boot_time_cma_reservation_works_only_when_reserved() {
    const LEN: u64 = 6 << 20;
    let with = kunit_truncate_intx();
    let without = kunit_reject_msi();
    if let Some(b) = with {
        let console = &b.run.console;
        // "cma: Reserved 8 MiB at 0x0000000000800000 on node -1"
        let base = console
            .lines()
            .find_map(|l| {
                l.split_once("cma: Reserved 8 MiB at ")
                    .map(|(_, r)| r.to_string())
            })
            .and_then(|r| {
                u64::from_str_radix(r.split_whitespace().next()?.trim_start_matches("0x"), 16).ok()
            })
            .unwrap_or_else(|| {
                panic!("no CMA area reserved with {BOOT_CMA_ARG}\n{}", tail(&b.run))
            });
        assert!(
            base + (8 << 20) <= 1 << 24,
            "CMA area at {base:#x} is not inside ZONE_DMA"
        );
        let (outcome, lo, hi) = boot_cma_outcome(b);
        assert_eq!(
            outcome,
            "ok",
            "boot-cma with {BOOT_CMA_ARG}\n{}",
            tail(&b.run)
        );
        assert!(
            lo >= base && hi < base + (8 << 20),
            "buffer {lo:#x}..{hi:#x} outside the area at {base:#x}"
        );
        assert_eq!(hi - lo + 1, LEN);
        let t = check_trace_complete(b);
        let x = crosscheck::driver_transfers(console)
            .into_iter()
            .filter(|x| x.len == LEN)
            .collect::<Vec<_>>();
        assert_eq!(
            x.len(),
            2,
            "the 6 MiB round trip's xfer line\n{}",
            tail(&b.run)
        );
        for x in &x {
            crosscheck::check_transfer(t, x).unwrap_or_else(|e| panic!("{e}\n{}", tail(&b.run)));
        }
    }
    if let Some(b) = without {
        let console = &b.run.console;
        assert!(
            !console.contains("cma: Reserved"),
            "a CMA area without cma="
        );
        let (outcome, ..) = boot_cma_outcome(b);
        assert_eq!(
            outcome,
            "ENOMEM",
            "boot-cma without a reservation\n{}",
            tail(&b.run)
        );
        assert!(
            console.contains(
                "the page allocator gives at most 4194304 bytes in one piece (MAX_PAGE_ORDER 10)"
            ),
            "no dev_err naming the limit\n{}",
            tail(&b.run)
        );
        assert!(
            console.contains("dma24-tool: boot-cma refused: ENOMEM"),
            "dma24-tool boot-cma\n{}",
            tail(&b.run)
        );
        assert!(
            b.run.init_lines().contains(&"dma24-tool boot-cma exit=3"),
            "dma24-tool boot-cma exit status"
        );
        let t = check_trace_complete(b);
        assert!(
            !t.records.iter().any(|r| r.len == LEN),
            "a 6 MiB transfer without a buffer"
        );
    }
    for b in [with, without].into_iter().flatten() {
        assert!(
            b.run.console.contains(
                "kmalloc(64, GFP_ATOMIC | GFP_DMA) in the interrupt handler: 1 made, 0 failed"
            ),
            "no allocation in the interrupt handler\n{}",
            tail(&b.run)
        );
    }
}
