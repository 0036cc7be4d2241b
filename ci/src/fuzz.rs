//! `cargo xtask fuzz [--seconds N] [--runs N] [--sanitizer S] [TARGET...]`: builds the
//! libFuzzer targets of `fuzz/` and runs each in turn, seeded from the text
//! and hex seeds in `fuzz/seeds/<target>/`; prints executions, exec/s and
//! coverage per target and fails on the first crash, leak or timeout.
//!
//! No cargo-fuzz: it is a thin wrapper over `cargo build` with sanitizer
//! flags, and installing it on a fresh machine costs a build of its own. We
//! pass the same flags it does (sanitizer-coverage for libFuzzer, ASan, which
//! brings LeakSanitizer) on the machine's stable toolchain with
//! `RUSTC_BOOTSTRAP=1` (needed for `-Zsanitizer`), into
//! `fuzz/target/<sanitizer>/`. `--sanitizer leak` keeps LeakSanitizer and
//! drops ASan's checks of every access: about twice the executions per
//! second, for the long runs (all the crates' own code is safe Rust).
//! `cargo xtask test` runs [`smoke`]: a few seconds of every target.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ci::build::workspace_root;
use thiserror::Error;

/// Every target, in the order they run (binaries in fuzz/Cargo.toml).
pub const TARGETS: [&str; 5] = [
    "dma24_access",
    "sg_list",
    "trace_reader",
    "cli_parsers",
    "kernel_loader",
];
/// The host triple: an explicit `--target` keeps the sanitizer flags off
/// build scripts and proc macros.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// What `cargo xtask test` gives each target.
const SMOKE_SECONDS: u64 = 4;

/// Which sanitizer runtime the targets are built with (`-Zsanitizer=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sanitizer {
    /// AddressSanitizer with LeakSanitizer (cargo-fuzz's default).
    Address,
    /// LeakSanitizer alone.
    Leak,
    /// Coverage instrumentation only: panics, debug assertions and overflow
    /// checks still stop a run, leaks are not looked for. For long runs of
    /// targets that start threads (`dma24_access`), whose memory under a
    /// sanitizer grows with every thread the process ever started.
    None,
}

impl Sanitizer {
    fn name(self) -> &'static str {
        match self {
            Sanitizer::Address => "address",
            Sanitizer::Leak => "leak",
            Sanitizer::None => "none",
        }
    }
}

#[derive(Debug, Error)]
pub enum FuzzError {
    #[error("unknown fuzz target {0:?}: choose from {targets}", targets = TARGETS.join(", "))]
    UnknownTarget(String),
    #[error(
        "{0}: usage: cargo xtask fuzz [--seconds N] [--runs N] [--fork N] [--sanitizer address|leak|none] [TARGET...]"
    )]
    Usage(String),
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("building the fuzz targets failed ({0}): see the cargo output above")]
    Build(std::process::ExitStatus),
    #[error("seed {path}: {why}")]
    Seed { path: PathBuf, why: String },
    #[error(
        "fuzz target {target} failed ({status}): the input is in {artifacts}, the log in {log}; \
         reproduce with `{bin} <input>`"
    )]
    Crash {
        target: String,
        bin: String,
        status: std::process::ExitStatus,
        artifacts: String,
        log: String,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How long each target runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seconds: u64,
    /// Stop after this many executions (libFuzzer `-runs`), if given.
    pub runs: Option<u64>,
    /// libFuzzer's fork mode (`-fork=N`): N child processes, each replaced
    /// after a job of a few minutes. For long runs of `dma24_access`: the
    /// sanitizer runtime's per-thread state grows with every thread a process
    /// ever started (one per input there), and N processes use N cores.
    pub fork: Option<u64>,
    pub sanitizer: Sanitizer,
    pub targets: Vec<String>,
}

/// What one run reported (libFuzzer's final stats and last status line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub executions: u64,
    pub exec_per_sec: u64,
    /// Coverage points (`cov:`) and features (`ft:`) at the end.
    pub cov: u64,
    pub ft: u64,
    pub corpus: u64,
}

pub fn parse_args(args: &[String]) -> Result<Plan, FuzzError> {
    let mut plan = Plan {
        seconds: 60,
        runs: None,
        fork: None,
        sanitizer: Sanitizer::Address,
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| FuzzError::Usage(format!("{name} needs a whole number")))
        };
        match a.as_str() {
            "--seconds" => plan.seconds = number("--seconds")?,
            "--runs" => plan.runs = Some(number("--runs")?),
            "--fork" => plan.fork = Some(number("--fork")?.max(1)),
            "--sanitizer" => {
                plan.sanitizer = match it.next().map(String::as_str) {
                    Some("address") => Sanitizer::Address,
                    Some("leak") => Sanitizer::Leak,
                    Some("none") => Sanitizer::None,
                    _ => {
                        return Err(FuzzError::Usage(
                            "--sanitizer needs `address`, `leak` or `none`".into(),
                        ))
                    }
                }
            }
            t if TARGETS.contains(&t) => plan.targets.push(t.to_string()),
            t if t.starts_with('-') => return Err(FuzzError::Usage(format!("unknown option {t}"))),
            t => return Err(FuzzError::UnknownTarget(t.to_string())),
        }
    }
    if plan.targets.is_empty() {
        plan.targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok(plan)
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// `cargo xtask fuzz ...`.
pub fn run(args: &[String]) -> Result<(), FuzzError> {
    let plan = parse_args(args)?;
    let results = run_plan(&plan)?;
    println!("{}", table(&results));
    Ok(())
}

/// A few seconds of every target (part of `cargo xtask test`).
pub fn smoke() -> Result<(), FuzzError> {
    let plan = Plan {
        seconds: SMOKE_SECONDS,
        runs: None,
        fork: None,
        sanitizer: Sanitizer::Address,
        targets: TARGETS.iter().map(|t| t.to_string()).collect(),
    };
    let results = run_plan(&plan)?;
    println!("{}", table(&results));
    Ok(())
}

fn run_plan(plan: &Plan) -> Result<Vec<(String, Stats)>, FuzzError> {
    build(plan.sanitizer)?;
    let mut results = Vec::new();
    for target in &plan.targets {
        let stats = run_target(target, plan)?;
        results.push((target.clone(), stats));
    }
    Ok(results)
}

/// The flags cargo-fuzz passes by default (sanitizer-coverage as libFuzzer
/// wants it, ASan, debug assertions and overflow checks in release).
fn rustflags(sanitizer: Sanitizer) -> String {
    let sanitizer = match sanitizer {
        Sanitizer::None => String::new(),
        // The standard library is the prebuilt one, without a sanitizer.
        s => format!(
            "-Zsanitizer={} -Cunsafe-allow-abi-mismatch=sanitizer",
            s.name()
        ),
    };
    [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg=fuzzing",
        &sanitizer,
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ]
    .join(" ")
}

fn target_dir(sanitizer: Sanitizer) -> PathBuf {
    fuzz_dir().join("target").join(sanitizer.name())
}

fn bin_path(target: &str, sanitizer: Sanitizer) -> PathBuf {
    target_dir(sanitizer)
        .join(TRIPLE)
        .join("release")
        .join(target)
}

fn build(sanitizer: Sanitizer) -> Result<(), FuzzError> {
    let dir = fuzz_dir();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--bins",
            "--locked",
            "--target",
            TRIPLE,
        ])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir(sanitizer))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", rustflags(sanitizer))
        .status()
        .map_err(|source| FuzzError::Spawn {
            what: "cargo build (fuzz)".into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(FuzzError::Build(status))
    }
}

fn mkdir(path: &Path) -> Result<(), FuzzError> {
    fs::create_dir_all(path).map_err(|source| FuzzError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes a `.hex` seed: hex digit pairs, whitespace ignored, `#` starts a
/// comment to the end of the line.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).map_err(|e| e.to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not a hex byte"))
        })
        .collect()
}

/// Copies the committed seeds of `target` into its working corpus: `.txt`
/// files as they are, `.hex` files decoded. Returns the corpus directory.
fn seed_corpus(target: &str) -> Result<PathBuf, FuzzError> {
    let corpus = fuzz_dir().join("target/corpus").join(target);
    mkdir(&corpus)?;
    let seeds = fuzz_dir().join("seeds").join(target);
    let Ok(entries) = fs::read_dir(&seeds) else {
        return Ok(corpus);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let seed_err = |why: String| FuzzError::Seed {
            path: path.clone(),
            why,
        };
        let text = fs::read_to_string(&path).map_err(|e| seed_err(e.to_string()))?;
        let bytes = match path.extension().and_then(|e| e.to_str()) {
            Some("hex") => decode_hex(&text).map_err(seed_err)?,
            Some("txt") => text.into_bytes(),
            _ => continue,
        };
        let name = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into());
        let out = corpus.join(format!("seed-{name}"));
        fs::write(&out, bytes).map_err(|source| FuzzError::Io { path: out, source })?;
    }
    Ok(corpus)
}

/// libFuzzer's `-rss_limit_mb` (see [`run_target`]).
const RSS_LIMIT_MB: u64 = 8192;

fn run_target(target: &str, plan: &Plan) -> Result<Stats, FuzzError> {
    let dir = fuzz_dir();
    let corpus = seed_corpus(target)?;
    let artifacts = dir.join("target/artifacts").join(target);
    mkdir(&artifacts)?;
    // Per sanitizer: the test suite's smoke (address) must not overwrite a
    // long run's log (leak) that is still going (seen 2026-12-01).
    let logs = dir.join("target/logs").join(plan.sanitizer.name());
    mkdir(&logs)?;
    let log = logs.join(format!("{target}.log"));
    let log_file = fs::File::create(&log).map_err(|source| FuzzError::Io {
        path: log.clone(),
        source,
    })?;
    let bin = bin_path(target, plan.sanitizer);
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("-max_total_time={}", plan.seconds))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        // A single input that takes this long is a hang: report it.
        .arg("-timeout=30")
        .arg("-detect_leaks=1")
        // libFuzzer's default RSS limit is 2 GiB. The sanitizer runtime keeps
        // about 0.42 KiB per pair of threads ever started (measured: a
        // two-thread spawn/join loop under -Zsanitizer=leak grows 16.5 MiB
        // per 40,000 rounds; the same device-model loop without a sanitizer
        // stays flat), and dma24_access starts one per input (the DMA
        // worker; its trace is in memory, without a writer thread): one
        // process grew about 0.2 KiB per input, 2 GiB at 10 million. 8 GiB
        // still stops a target whose memory really runs away.
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(&corpus)
        .stdout(Stdio::null())
        .stderr(log_file);
    if let Some(n) = plan.fork {
        cmd.arg(format!("-fork={n}"));
    }
    if let Some(runs) = plan.runs {
        cmd.arg(format!("-runs={runs}"));
    }
    eprintln!(
        "fuzz: {target} for up to {} s (log {})",
        plan.seconds,
        log.display()
    );
    let status = cmd.status().map_err(|source| FuzzError::Spawn {
        what: bin.display().to_string(),
        source,
    })?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        // The end of the log says what failed (panic message, leak, timeout).
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        return Err(FuzzError::Crash {
            target: target.into(),
            bin: bin.display().to_string(),
            status,
            artifacts: artifacts.display().to_string(),
            log: log.display().to_string(),
        });
    }
    Ok(parse_stats(&text))
}

/// libFuzzer's `stat::` lines and its last `cov:`/`ft:`/`corp:` status.
pub fn parse_stats(log: &str) -> Stats {
    let mut s = Stats::default();
    let mut fork_total = None;
    let field = |line: &str, key: &str| -> Option<u64> {
        let rest = line.split(key).nth(1)?;
        let num: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        num.parse().ok()
    };
    for line in log.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            s.executions = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            s.exec_per_sec = v.trim().parse().unwrap_or(0);
        } else if line.starts_with('#') && line.contains(" cov: ") {
            s.cov = field(line, " cov:").unwrap_or(s.cov);
            s.ft = field(line, " ft:").unwrap_or(s.ft);
            s.corpus = field(line, " corp:").unwrap_or(s.corpus);
            // Fork mode's parent: "#N: cov: ... time: Ts job: J", and its
            // own stat:: lines count none of the children's executions.
            if let (Some(n), Some(t)) = (field(line, "#"), field(line, " time:")) {
                fork_total = Some((n, t));
            }
        }
    }
    if let (0, Some((n, t))) = (s.executions, fork_total) {
        s.executions = n;
        s.exec_per_sec = n / t.max(1);
    }
    s
}

fn table(results: &[(String, Stats)]) -> String {
    let mut out = format!(
        "{:<14} {:>12} {:>9} {:>7} {:>7} {:>7}  crashes\n",
        "target", "executions", "exec/s", "cov", "ft", "corpus"
    );
    for (t, s) in results {
        let _ = writeln!(
            out,
            "{t:<14} {:>12} {:>9} {:>7} {:>7} {:>7}  0",
            s.executions, s.exec_per_sec, s.cov, s.ft, s.corpus
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let p = parse_args(&args(&["--seconds", "5", "sg_list"])).unwrap();
        assert_eq!(p.seconds, 5);
        assert_eq!(p.targets, vec!["sg_list".to_string()]);
        assert_eq!(parse_args(&[]).unwrap().targets.len(), TARGETS.len());
        let e = parse_args(&args(&["nope"])).unwrap_err().to_string();
        assert!(e.contains("unknown fuzz target \"nope\""), "{e}");
        assert!(parse_args(&args(&["--seconds", "x"])).is_err());
        assert!(parse_args(&args(&["--frobnicate"])).is_err());
        assert_eq!(parse_args(&args(&["--fork", "2"])).unwrap().fork, Some(2));
    }

    #[test]
    fn hex_seeds() {
        assert_eq!(decode_hex("7f 45 # ELF\n4c46\n").unwrap(), b"\x7fELF");
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
    }

    #[test]
    fn final_stats() {
        let log = "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #100\tDONE   cov: 321 ft: 654 corp: 12/99b lim: 4 exec/s: 50 rss: 31Mb\n\
                   stat::number_of_executed_units: 100\n\
                   stat::average_exec_per_sec:     50\n";
        let s = parse_stats(log);
        assert_eq!(
            s,
            Stats {
                executions: 100,
                exec_per_sec: 50,
                cov: 321,
                ft: 654,
                corpus: 12
            }
        );
    }

    #[test]
    fn fork_mode_stats() {
        let log = "#2000: cov: 1879 ft: 8230 corp: 804 exec/s: 232 oom/timeout/crash: 0/0/0 time: 9s job: 1 dft_time: 0\n\
                   #28664: cov: 1890 ft: 8240 corp: 810 exec/s: 400 oom/timeout/crash: 0/0/0 time: 107s job: 12 dft_time: 0\n\
                   stat::number_of_executed_units: 0\n\
                   stat::average_exec_per_sec:     0\n";
        let s = parse_stats(log);
        assert_eq!((s.executions, s.exec_per_sec), (28664, 267));
        assert_eq!((s.cov, s.ft, s.corpus), (1890, 8240, 810));
    }

    /// Every target has committed seeds, and they decode.
    #[test]
    fn seeds_decode() {
        for t in TARGETS {
            let dir = fuzz_dir().join("seeds").join(t);
            let n = fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .flatten()
                .filter(|e| {
                    let p = e.path();
                    let text = fs::read_to_string(&p).unwrap();
                    match p.extension().and_then(|e| e.to_str()) {
                        Some("hex") => decode_hex(&text).map(|_| true).unwrap(),
                        Some("txt") => true,
                        _ => false,
                    }
                })
                .count();
            assert!(n > 0, "no seeds for {t}");
        }
    }
}
