//! The DMA trace under a hostile guest (issue 17, section 4), with the
//! hand-made flood guest of `ci::tiny_guest` (a real KVM VM, no Linux boot):
//! every refused START is one record, so the counts are exact.
//!
//! - a flood against a small `--trace-max-size`: the file stays under the
//!   cap, the VM runs to its end, written + dropped = STARTs, memory bounded;
//! - the trace disk fills mid-run (a small tmpfs; a file-size rlimit where
//!   mount is not allowed): same, with its own message;
//! - SIGKILL in the middle of a flood: what the file lacks is bounded by
//!   the writer's queue (figures printed, and in README "Reliability");
//! - SIGTERM in the middle of a flood: the VMM stops the orderly way.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ci::guest;
use ci::tiny_guest::{flood_code, pvh_elf, STARTS_PER_CHECKPOINT};
use device_model::trace::{Trace, DEFAULT_QUEUE_CAPACITY};

/// STARTs of the bounded floods: 200 checkpoints.
const STARTS: u32 = 200 * STARTS_PER_CHECKPOINT;

struct Run {
    dir: PathBuf,
    elf: PathBuf,
    dmalab: PathBuf,
}

fn setup(name: &str, starts: u32) -> Option<Run> {
    let dmalab = match guest::dmalab_binary() {
        Ok(p) => p,
        Err(e) => {
            assert!(std::env::var_os("DMALAB_REQUIRE_IMAGES").is_none(), "{e}");
            eprintln!("skipping: {e}");
            return None;
        }
    };
    if !Path::new("/dev/kvm").exists() {
        eprintln!("skipping: no /dev/kvm");
        return None;
    }
    let dir = guest::runs_dir().join(format!("trace-limits-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let elf = dir.join("flood.elf");
    std::fs::write(&elf, pvh_elf(&flood_code(starts))).unwrap();
    Some(Run { dir, elf, dmalab })
}

/// `dmalab run` of the flood guest with the trace at `trace` (`wrap`: a
/// command to run dmalab under, e.g. prlimit).
fn spawn(run: &Run, trace: &Path, extra: &[&str], wrap: &[&str]) -> Child {
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&run.dmalab);
            c
        }
        None => Command::new(&run.dmalab),
    };
    cmd.arg("run")
        .arg("--kernel")
        .arg(&run.elf)
        .args(["--mem", "64", "--no-stdin", "--device", "dma24"])
        .args(["--timeout", "300", "--trace"])
        .arg(trace)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dmalab")
}

/// Waits for `child`, collecting its log lines and the peak RSS (KiB) seen
/// in /proc while it ran. `on_line` may kill it.
fn watch(mut child: Child, mut on_line: impl FnMut(&str, &mut Child)) -> (i32, Vec<String>, u64) {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut lines = Vec::new();
    let mut peak_kib = 0u64;
    let code = loop {
        while let Ok(l) = rx.try_recv() {
            on_line(&l, &mut child);
            lines.push(l);
        }
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    (code, lines, peak_kib)
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

/// `N records written, M dropped` in a log line.
fn written_dropped(line: &str) -> Option<(u64, u64)> {
    let (head, tail) = line.split_once(" records written, ")?;
    let n = head.rsplit(' ').next()?.parse().ok()?;
    let m = tail.split(' ').next()?.parse().ok()?;
    Some((n, m))
}

#[test]
fn flood_is_capped_counted_and_survived() {
    let Some(run) = setup("cap", STARTS) else {
        return;
    };
    let trace = run.dir.join("flood.jsonl");
    let child = spawn(&run, &trace, &["--trace-max-size", "1M"], &[]);
    let (code, log, peak_kib) = watch(child, |_, _| {});
    assert_eq!(
        code,
        0,
        "the guest ran to its exit port:\n{}",
        log.join("\n")
    );
    let size = std::fs::metadata(&trace).unwrap().len();
    assert!(size <= 1 << 20, "trace is {size} bytes, over its 1 MiB cap");
    let t = Trace::load(&trace).expect("a capped trace reads back");
    let footer = t.footer.expect("a capped trace keeps its footer");
    assert_eq!(footer.max_size, Some(1 << 20));
    assert_eq!(footer.records, t.records.len() as u64);
    assert_eq!(
        footer.records + footer.dropped,
        u64::from(STARTS),
        "every START is written or counted as dropped"
    );
    assert!(t.records.iter().all(|r| r.seq <= u64::from(STARTS)));
    assert!(has(&log, "size cap of 1 MiB reached"), "{}", log.join("\n"));
    assert!(has(&log, "(size cap of 1 MiB reached: --trace-max-size)"));
    // Guest RAM (64 MiB, mostly untouched) + the bounded queue + the VMM.
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    eprintln!(
        "flood: {STARTS} STARTs, {} records written, {} dropped, file {size} bytes, peak RSS {} MiB",
        footer.records,
        footer.dropped,
        peak_kib / 1024
    );
}

/// Unmounts a tmpfs on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_trace_disk_drops_counts_and_says_so() {
    let Some(run) = setup("disk", STARTS) else {
        return;
    };
    let mnt = run.dir.join("tmpfs");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _guard = mounted.then(|| Mounted(mnt.clone()));
    // Without mount rights, a file-size limit fills the "disk" instead
    // (dmalab ignores SIGXFSZ, so the write fails with EFBIG).
    let wrap: &[&str] = if mounted {
        &[]
    } else {
        &["prlimit", "--fsize=262144", "--"]
    };
    eprintln!(
        "trace disk: {}",
        if mounted {
            "256 KiB tmpfs"
        } else {
            "256 KiB RLIMIT_FSIZE"
        }
    );
    let trace = mnt.join("flood.jsonl");
    let (code, log, _) = watch(spawn(&run, &trace, &[], wrap), |_, _| {});
    let text = log.join("\n");
    assert_eq!(
        code, 0,
        "the VM goes on when the trace disk is full:\n{text}"
    );
    let reason = if mounted {
        "No space left on device"
    } else {
        "File too large"
    };
    assert!(has(&log, "the trace disk is full or failing"), "{text}");
    assert!(has(&log, reason), "{text}");
    let closing = log
        .iter()
        .find(|l| l.contains("stopped early"))
        .unwrap_or_else(|| panic!("no closing message:\n{text}"));
    let (written, dropped) = written_dropped(closing).expect("counts in the message");
    assert_eq!(written + dropped, u64::from(STARTS), "{closing}");
    assert!(dropped > 0);
    let t = Trace::load(&trace).expect("what reached the disk reads back");
    assert!(t.footer.is_none());
    assert!(
        t.records.len() as u64 >= written,
        "{} < {written}",
        t.records.len()
    );
    eprintln!("disk full: {written} records written, {dropped} dropped");
}

#[test]
fn sigkill_loses_at_most_the_queue() {
    let Some(run) = setup("sigkill", 0) else {
        return;
    };
    let trace = run.dir.join("flood.jsonl");
    let child = spawn(&run, &trace, &[], &[]);
    let t0 = Instant::now();
    let mut checkpoints = 0u64;
    let mut killed = false;
    let (_, log, _) = watch(child, |line, child| {
        if line.contains("guest checkpoint") {
            checkpoints += 1;
        }
        if !killed && (checkpoints >= 160 || t0.elapsed() > Duration::from_secs(120)) {
            child.kill().expect("SIGKILL dmalab");
            killed = true;
        }
    });
    // Every checkpoint logged before the kill is in the pipe: count them all.
    let logged = log
        .iter()
        .filter(|l| l.contains("guest checkpoint"))
        .count() as u64;
    assert!(logged >= 2, "the flood did not get going");
    let t = Trace::load(&trace).expect("a killed trace reads back (no footer)");
    assert!(t.footer.is_none());
    let last = t.records.last().map_or(0, |r| r.seq);
    let per = u64::from(STARTS_PER_CHECKPOINT);
    // Checkpoint i is logged after START (i-1)*per+1, so at the kill the
    // guest had made between (logged-1)*per+1 and logged*per STARTs.
    let lost_min = ((logged - 1) * per + 1).saturating_sub(last);
    let lost_max = (logged * per).saturating_sub(last);
    let gaps = last - t.records.len() as u64;
    // The flood's rate, from the checkpoints' times ("... at 123.4 ms").
    let ms: Vec<f64> = log
        .iter()
        .filter(|l| l.contains("guest checkpoint"))
        .filter_map(|l| l.rsplit(" at ").next()?.strip_suffix(" ms")?.parse().ok())
        .collect();
    let rate = match (ms.first(), ms.last()) {
        (Some(a), Some(b)) if b > a => (ms.len() - 1) as f64 * per as f64 / (b - a) * 1000.0,
        _ => 0.0,
    };
    eprintln!(
        "\nSIGKILL: flood at {rate:.0} STARTs/s; {} records in the file, last seq {last}, \
         {gaps} dropped on a full queue before; lost to the kill: {lost_min}..={lost_max} records",
        t.records.len()
    );
    assert!(
        lost_max <= 2 * DEFAULT_QUEUE_CAPACITY as u64 + per,
        "lost up to {lost_max} records"
    );
    let _ = std::fs::remove_file(&trace);
}

/// The VMM stays responsive under a flood: SIGTERM in the middle of one
/// stops it the orderly way, and the footer accounts for every record.
#[test]
fn sigterm_during_a_flood_closes_the_trace() {
    let Some(run) = setup("sigterm", 0) else {
        return;
    };
    let trace = run.dir.join("flood.jsonl");
    let child = spawn(&run, &trace, &[], &[]);
    let mut checkpoints = 0u64;
    let mut sent: Option<Instant> = None;
    let (code, log, _) = watch(child, |line, child| {
        if line.contains("guest checkpoint") {
            checkpoints += 1;
        }
        if sent.is_none() && checkpoints >= 20 {
            let ok = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -TERM");
            sent = Some(Instant::now());
        }
    });
    let stop = sent.expect("the flood got going").elapsed();
    assert_eq!(code, 130, "stopped by the signal:\n{}", log.join("\n"));
    let t = Trace::load(&trace).expect("trace reads back");
    let footer = t
        .footer
        .expect("SIGTERM during a flood still writes the footer");
    assert_eq!(footer.records, t.records.len() as u64);
    let last = t.records.last().map_or(0, |r| r.seq);
    assert!(footer.records + footer.dropped >= last);
    // A hang check, not a timing goal: the flood must not starve the stop.
    assert!(stop < Duration::from_secs(30), "stop took {stop:?}");
    eprintln!(
        "\nSIGTERM during a flood: stopped {:.0} ms after the signal; {} records, {} dropped",
        stop.as_secs_f64() * 1000.0,
        footer.records,
        footer.dropped
    );
    let _ = std::fs::remove_file(&trace);
}
