//! `dmalab run --profile FILE`: a sampling profiler of the guest, from the
//! host. On PVM hosts guest kernel code runs emulated at about a million
//! instructions a second, so boot time is set by which kernel functions run,
//! and the guest's own tools (perf, ftrace) would cost more of the same
//! emulated time. Instead the VMM kicks the vCPU out of KVM_RUN every
//! [`SAMPLE_INTERVAL`] (the signal the halt probe already uses), reads where
//! it was (RIP, CPL, halted or not) and names the kernel function from the
//! vmlinux ELF's symbol table. The report ranks functions overall and per
//! second of wall time, so a boot phase (initramfs unpack, insmod) can be
//! matched to the code that fills it.
//!
//! What it costs: three vCPU ioctls per sample; see the README ("Profiling a
//! guest") for the measured slowdown.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use object::{Object, ObjectSymbol, SymbolKind};
use thiserror::Error;

/// How often the vCPUs are kicked for a sample.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(1);
/// Samples kept (32 bytes each: 32 MiB, about 17 minutes at 1 kHz); later
/// ones are counted as dropped, so a long run cannot exhaust host memory.
pub const MAX_SAMPLES: usize = 1 << 20;
/// Functions listed in the overall ranking.
const TOP_FUNCTIONS: usize = 60;
/// Functions named per second of wall time.
const TOP_PER_SECOND: usize = 3;
/// Functions whose callers are listed, and callers each.
const TOP_WITH_CALLERS: usize = 20;
const CALLERS_EACH: usize = 3;

/// Errors of `--profile`.
#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("cannot create the profile file {path}: {source}. Give --profile a writable path")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the profile file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a vCPU was when it was kicked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// In HLT: the guest was idle (waiting for an interrupt, a timer, the device).
    Halted,
    /// CPL 3.
    User,
    /// CPL 0 at `rip`; `caller` is the first word on the stack that falls
    /// in a kernel function (most often the return address into the caller;
    /// 0 when none did). Linux's ORC unwinder keeps no frame pointers, so
    /// this is a heuristic: good enough to tell who calls a hot memcpy.
    Kernel { rip: u64, caller: u64 },
}

/// Stack words looked at for the caller.
pub const STACK_WORDS: usize = 24;

#[derive(Clone, Copy, Debug)]
struct Sample {
    ms: u32,
    place: Place,
}

/// The kernel's function symbols, sorted by address.
#[derive(Debug, Default)]
pub struct Symbols {
    /// (start, end, name); `end` is the symbol's size or, for a symbol
    /// without one (assembly labels), the next symbol's start.
    funcs: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// The text symbols of an ELF file (an empty table for a file without
    /// any: a bzImage, a stripped vmlinux; the report then shows addresses).
    pub fn from_elf(data: &[u8]) -> Symbols {
        let Ok(file) = object::File::parse(data) else {
            return Symbols::default();
        };
        let mut syms: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        Symbols::from_table(&mut syms)
    }

    /// From (start, size, name) entries in any order.
    pub fn from_table(syms: &mut [(u64, u64, String)]) -> Symbols {
        syms.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut funcs: Vec<(u64, u64, String)> = Vec::with_capacity(syms.len());
        for i in 0..syms.len() {
            let (start, size, ref name) = syms[i];
            if funcs.last().is_some_and(|l| l.0 == start) {
                continue; // an alias at the same address: keep the first
            }
            let next = syms[i + 1..]
                .iter()
                .find(|s| s.0 > start)
                .map_or(u64::MAX, |s| s.0);
            let end = match size {
                0 => next,
                n => start.saturating_add(n),
            };
            funcs.push((start, end, name.clone()));
        }
        Symbols { funcs }
    }

    pub fn len(&self) -> usize {
        self.funcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.funcs.is_empty()
    }

    /// The function holding `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (_, end, name) = &self.funcs[i];
        (addr < *end).then_some(name.as_str())
    }

    /// A name for a kernel address: its function, or its 4 KiB page.
    fn name(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some(n) => n.to_string(),
            None => format!("[no symbol, page {:#x}]", addr & !0xfff),
        }
    }
}

/// Samples of one run, shared by the vCPU threads, and the file they go to.
pub struct Profile {
    path: PathBuf,
    file: Mutex<Option<File>>,
    kernel: PathBuf,
    symbols: Symbols,
    samples: Mutex<Vec<Sample>>,
    dropped: Mutex<u64>,
}

impl Profile {
    /// Creates `path` now (an unwritable path is a usage error before the
    /// guest starts) and reads the symbols of `kernel`.
    pub fn create(path: &Path, kernel: &Path) -> Result<Profile, ProfileError> {
        let file = File::create(path).map_err(|source| ProfileError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let symbols = std::fs::read(kernel)
            .map(|d| Symbols::from_elf(&d))
            .unwrap_or_default();
        Ok(Profile {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
            kernel: kernel.to_path_buf(),
            symbols,
            samples: Mutex::new(Vec::new()),
            dropped: Mutex::new(0),
        })
    }

    /// The first of `stack` (words from RSP up) that lies in a kernel
    /// function other than the one at `rip`.
    pub fn caller(&self, rip: u64, stack: &[u64]) -> u64 {
        let own = self.symbols.lookup(rip);
        stack
            .iter()
            .copied()
            .find(|&w| self.symbols.lookup(w).is_some_and(|f| Some(f) != own))
            .unwrap_or(0)
    }

    /// Records one sample taken `ms` after VMM start.
    pub fn record(&self, ms: f64, place: Place) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= MAX_SAMPLES {
            *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            return;
        }
        // Wall time since start fits u32 milliseconds for 49 days.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = ms.clamp(0.0, f64::from(u32::MAX)) as u32;
        s.push(Sample { ms, place });
    }

    /// Writes the report (once; later calls do nothing).
    pub fn finish(&self) -> Result<(), ProfileError> {
        let Some(mut file) = self.file.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = *self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        let text = report(&samples, dropped, &self.symbols, &self.kernel);
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|source| ProfileError::Write {
                path: self.path.clone(),
                source,
            })?;
        log::info!(
            "profile: {} samples written to {}",
            samples.len(),
            self.path.display()
        );
        Ok(())
    }
}

fn pct(n: usize, of: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let r = n as f64 * 100.0 / of.max(1) as f64;
    r
}

/// Counts per name, most first (ties by name, so the report is stable).
fn ranked<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v
}

/// The kernel functions among per-sample names.
fn kernel_names(names: &[Option<String>]) -> impl Iterator<Item = &str> {
    names.iter().flatten().map(String::as_str)
}

/// The text report.
fn report(samples: &[Sample], dropped: u64, symbols: &Symbols, kernel: &Path) -> String {
    let total = samples.len();
    let count = |f: &dyn Fn(&Place) -> bool| samples.iter().filter(|s| f(&s.place)).count();
    let halted = count(&|p| *p == Place::Halted);
    let user = count(&|p| *p == Place::User);
    let kernel_n = total - halted - user;
    let mut out = String::new();
    let _ = writeln!(out, "# dmalab guest profile");
    let _ = writeln!(
        out,
        "# kernel: {} ({} function symbols{})",
        kernel.display(),
        symbols.len(),
        if symbols.is_empty() {
            "; no symbol table: addresses only"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "# {total} samples, one per vCPU kick every {} ms of wall time; {dropped} dropped (cap {MAX_SAMPLES})",
        SAMPLE_INTERVAL.as_millis()
    );
    let _ = writeln!(out, "\n## where the vCPU was\n  samples       %  place");
    for (n, what) in [
        (kernel_n, "guest kernel (CPL 0)"),
        (user, "guest user mode (CPL 3)"),
        (halted, "halted (idle: waiting for an interrupt)"),
    ] {
        let _ = writeln!(out, "{n:>9} {:>7.2}  {what}", pct(n, total));
    }
    // Each sample's function (None outside the kernel), named once: the
    // rankings below all read this.
    let names: Vec<Option<String>> = samples
        .iter()
        .map(|s| match s.place {
            Place::Kernel { rip, .. } => Some(symbols.name(rip)),
            _ => None,
        })
        .collect();
    let _ = writeln!(
        out,
        "\n## kernel functions, most samples first (top {TOP_FUNCTIONS}; % of all samples)\n  samples       %  function"
    );
    let functions = ranked(kernel_names(&names));
    for (name, n) in functions.iter().take(TOP_FUNCTIONS) {
        let _ = writeln!(out, "{n:>9} {:>7.2}  {name}", pct(*n, total));
    }
    let _ = writeln!(
        out,
        "\n## who calls them (top {TOP_WITH_CALLERS}; % of the function's samples; the caller is the first stack word inside another kernel function)"
    );
    // One pass: the callers of every listed function.
    let mut callers: HashMap<&str, Vec<String>> = functions
        .iter()
        .take(TOP_WITH_CALLERS)
        .map(|(name, _)| (*name, Vec::new()))
        .collect();
    for (s, name) in samples.iter().zip(&names) {
        let (Place::Kernel { caller, .. }, Some(name)) = (s.place, name) else {
            continue;
        };
        if let Some(list) = callers.get_mut(name.as_str()) {
            list.push(match caller {
                0 => "[unknown]".to_string(),
                c => symbols.name(c),
            });
        }
    }
    for (name, n) in functions.iter().take(TOP_WITH_CALLERS) {
        let list = callers.get(name).map_or(&[][..], Vec::as_slice);
        let top: Vec<String> = ranked(list.iter().map(String::as_str))
            .into_iter()
            .take(CALLERS_EACH)
            .map(|(c, k)| format!("{c} {:.0}%", pct(k, *n)))
            .collect();
        let _ = writeln!(out, "  {name} <- {}", top.join(", "));
    }
    let _ = writeln!(
        out,
        "\n## per second of wall time since VMM start: samples kernel/user/halted, top {TOP_PER_SECOND} kernel functions"
    );
    let mut at = 0;
    for chunk in samples.chunk_by(|a, b| a.ms / 1000 == b.ms / 1000) {
        let chunk_names = &names[at..at + chunk.len()];
        at += chunk.len();
        let sec = chunk[0].ms / 1000;
        let h = chunk.iter().filter(|s| s.place == Place::Halted).count();
        let u = chunk.iter().filter(|s| s.place == Place::User).count();
        let k = chunk.len() - h - u;
        let top: Vec<String> = ranked(kernel_names(chunk_names))
            .into_iter()
            .take(TOP_PER_SECOND)
            .map(|(name, n)| format!("{name} {:.0}%", pct(n, chunk.len())))
            .collect();
        let _ = writeln!(out, "{sec:>5} s  {k:>4}/{u:>4}/{h:>4}  {}", top.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Symbols {
        Symbols::from_table(&mut [
            (0x2000, 0x10, "b".to_string()),
            (0x1000, 0, "a".to_string()),
            (0x1000, 0x20, "a_alias_with_size".to_string()),
            (0x3000, 0, "c".to_string()),
        ])
    }

    #[test]
    fn lookup_uses_sizes_and_next_symbols() {
        let s = table();
        assert_eq!(s.lookup(0xfff), None);
        // The sized alias wins at the same address (sorted by size, largest first).
        assert_eq!(s.lookup(0x1000), Some("a_alias_with_size"));
        assert_eq!(s.lookup(0x101f), Some("a_alias_with_size"));
        assert_eq!(s.lookup(0x1020), None);
        assert_eq!(s.lookup(0x200f), Some("b"));
        assert_eq!(s.lookup(0x2010), None);
        // Unsized, last: reaches to the end of the address space.
        assert_eq!(s.lookup(u64::MAX - 1), Some("c"));
    }

    #[test]
    fn symbols_of_this_test_binary() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let s = Symbols::from_elf(&exe);
        assert!(s.len() > 100, "{} symbols", s.len());
        // Every function looks itself up.
        for (start, _, name) in s.funcs.iter().take(50) {
            assert_eq!(s.lookup(*start), Some(name.as_str()));
        }
        assert!(Symbols::from_elf(b"not an ELF file").is_empty());
    }

    #[test]
    fn report_ranks_and_splits_by_second() {
        let s = table();
        let mut samples = Vec::new();
        for i in 0..10 {
            samples.push(Sample {
                ms: i,
                place: Place::Kernel {
                    rip: 0x2004,
                    caller: 0x1008,
                },
            });
        }
        samples.push(Sample {
            ms: 11,
            place: Place::Kernel {
                rip: 0x1004,
                caller: 0,
            },
        });
        samples.push(Sample {
            ms: 1500,
            place: Place::Halted,
        });
        samples.push(Sample {
            ms: 1600,
            place: Place::User,
        });
        samples.push(Sample {
            ms: 1700,
            place: Place::Kernel {
                rip: 0x1500,
                caller: 0x2000,
            },
        });
        let r = report(&samples, 3, &s, Path::new("vmlinux"));
        assert!(r.contains("14 samples"), "{r}");
        assert!(r.contains("3 dropped"), "{r}");
        assert!(r.contains("       12   85.71  guest kernel"), "{r}");
        let funcs: Vec<&str> = r
            .lines()
            .skip_while(|l| !l.starts_with("## kernel functions"))
            .skip(2)
            .take(3)
            .collect();
        assert!(
            funcs[0].ends_with("  b") && funcs[0].contains("   10 "),
            "{r}"
        );
        // Ties by name.
        assert!(funcs[1].ends_with("[no symbol, page 0x1000]"), "{r}");
        assert!(funcs[2].ends_with("a_alias_with_size"), "{r}");
        assert!(
            r.contains("    0 s    11/   0/   0  b 91%, a_alias_with_size 9%"),
            "{r}"
        );
        assert!(r.contains("  b <- a_alias_with_size 100%"), "{r}");
        assert!(r.contains("  a_alias_with_size <- [unknown] 100%"), "{r}");
        assert!(r.contains("  [no symbol, page 0x1000] <- b 100%"), "{r}");
        assert!(
            r.contains("    1 s     1/   1/   1  [no symbol, page 0x1000] 33%"),
            "{r}"
        );
    }

    #[test]
    fn the_caller_is_the_first_word_in_another_function() {
        let path = std::env::temp_dir().join(format!("dmalab-caller-{}", std::process::id()));
        let p = Profile {
            symbols: table(),
            ..Profile::create(&path, Path::new("k")).unwrap()
        };
        let _ = std::fs::remove_file(&path);
        // Own function's addresses and non-code words are skipped.
        assert_eq!(p.caller(0x2004, &[0x2008, 0x5, 0x1010, 0x3000]), 0x1010);
        assert_eq!(p.caller(0x2004, &[0x2008, 0x5]), 0);
    }

    #[test]
    fn a_sample_is_32_bytes_at_most() {
        // MAX_SAMPLES' memory bound above.
        assert!(std::mem::size_of::<Sample>() <= 32);
    }

    #[test]
    fn samples_are_capped() {
        let dir = std::env::temp_dir().join(format!("dmalab-profile-{}", std::process::id()));
        let p = Profile::create(&dir, Path::new("/nonexistent/vmlinux")).unwrap();
        for _ in 0..MAX_SAMPLES + 5 {
            p.record(1.0, Place::User);
        }
        p.finish().unwrap();
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert!(text.contains(&format!("{MAX_SAMPLES} samples")), "{text}");
        assert!(text.contains("5 dropped"), "{text}");
        assert!(text.contains("no symbol table"), "{text}");
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let e = Profile::create(Path::new("/nonexistent/dir/p.txt"), Path::new("k"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("writable path"), "{e}");
    }
}
