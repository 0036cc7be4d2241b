//! The command line (clap): `dmalab run --kernel PATH [--initrd PATH]
//! [--cmdline STR] [--mem MIB] [--vcpus N] [--cpu filtered|host] ...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use log::LevelFilter;

use device_model::Dma24Config;

use crate::cpuid::CpuPolicy;
use crate::memory::{MAX_MEM_MIB, MIN_MEM_MIB};
use crate::vm::VmConfig;

/// Shown after `dmalab run --help` / `dmalab --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the guest shut down cleanly: i8042 reset (reboot=k, e.g. `reboot -f`),
     status 0 written to the exit port, or `poweroff`/`halt` (\"reboot: System halted\")
  1  VMM error (KVM failure, no /dev/kvm, no permission on /dev/kvm)
  2  usage or input error (bad option, kernel/initrd/--module missing or
     unreadable, not a kernel, --module not an x86-64 .ko, --mem too small,
     a --trace or --profile file that cannot be created)
  3  guest kernel panic (\"Kernel panic - not syncing\" seen on the console)
  4  guest fault KVM cannot handle (emulation failure, triple fault)
  5  the guest wrote a non-zero status to the exit port (a test failed, or
     the guest's insmod refused --module, e.g. built for another kernel)
  6  --timeout elapsed
  130  SIGINT or SIGTERM (the guest is stopped and the DMA trace closed first)

Guest-visible ports:
  0x3f8-0x3ff  16550 UART (COM1, IRQ 4) on stdin/stdout
  0x60-0x64    i8042: writing 0xfe to 0x64 resets (ends the VMM)
  0xf4         exit port: write status (1/2/4 bytes); 0 -> exit 0, else exit 5
  0xf5         boot timer: write 123 -> log \"guest boot time\"; other bytes log checkpoints

Default guest command line (before --cmdline):
  console=ttyS0 reboot=k panic=-1 tsc=reliable lpj=<from the TSC> 8250.nr_uarts=1
  mitigations=off clearcpuid=xsave,smap,smep,popcnt,... (not with --cpu host)

Environment: DMALAB_CACHE (default ~/.cache/dmalab) locates the default images,
DMALAB_LOG sets the log level (like --log-level).";

/// dmalab: a small KVM VMM hosting the dma24 PCI DMA device.
#[derive(Debug, Parser)]
#[command(name = "dmalab", version, about, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: off, error, warn, info, debug, trace [env: DMALAB_LOG].
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: Option<LevelFilter>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a Linux guest.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Run(Box<RunArgs>),
    /// Serve a dma24 device over vfio-user (for QEMU's vfio-user-pci) until
    /// the client disconnects (exit 0) or SIGINT/SIGTERM (130).
    Serve(crate::serve::ServeArgs),
    /// Read a DMA trace written by `run --trace`.
    #[command(subcommand)]
    Trace(TraceCommand),
}

/// `dmalab trace ...`.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Counts per outcome and direction, bytes moved, and every fault with
    /// the bus address the guest asked for.
    Summary {
        /// A trace file (JSON Lines) written by `dmalab run --trace`.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a self-contained HTML report: address map with the mask,
    /// timeline, faults and summary (opens offline in any browser).
    View {
        /// A trace file (JSON Lines) written by `dmalab run --trace`.
        file: PathBuf,
        /// The HTML file to write [default: FILE with extension .html].
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Convert the trace for another viewer: `chrome` is Chrome Trace Event
    /// JSON (Perfetto UI, chrome://tracing).
    Export {
        #[arg(long, value_parser = ["chrome"])]
        format: String,
        /// A trace file (JSON Lines) written by `dmalab run --trace`.
        file: PathBuf,
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
    },
}

/// `dmalab run` options.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Guest kernel: ELF vmlinux (PVH note or 64-bit entry) or bzImage
    /// [default: $DMALAB_CACHE/images/current/vmlinux].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk (uncompressed cpio) [default with the default kernel:
    /// $DMALAB_CACHE/images/current/initramfs.cpio when it exists].
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Appended to the default kernel command line.
    #[arg(long, value_name = "STR", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// Guest RAM in MiB (suffix G for GiB).
    #[arg(long, value_name = "MIB", default_value_t = crate::vm::DEFAULT_MEM_MIB, value_parser = parse_mem)]
    pub mem: u64,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=32))]
    pub vcpus: u8,
    /// CPUID policy: `filtered` hides what the PVM emulator cannot run (and
    /// adds clearcpuid= to the command line); `host` passes KVM's CPUID through.
    #[arg(long, value_enum, default_value_t = CpuPolicy::Filtered)]
    pub cpu: CpuPolicy,
    /// Stop the guest after this many seconds (exit code 6).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// Log "guest boot time" when a console line first starts with this string.
    #[arg(long, value_name = "STR")]
    pub boot_marker: Option<String>,
    /// Do not relay stdin to the guest console.
    #[arg(long)]
    pub no_stdin: bool,
    /// Put a dma24 device at PCI 00:01.0:
    /// `dma24[,mask-bits=N][,overflow=reject|truncate][,mem=KIB]`
    /// (defaults: 24 bits, reject, 64 KiB). Give it again for more devices
    /// (at most 4: 00:02.0, 00:03.0, ...; the guest's /dev/dma24-1, ...).
    #[arg(long, value_name = "SPEC", value_parser = parse_device)]
    pub device: Vec<Dma24Config>,
    /// Write the devices' DMA traces (JSON Lines, one record per DMA segment
    /// attempted): the first device's to FILE, device N's to FILE's name
    /// with -N before the extension (t.jsonl, t-1.jsonl); needs --device.
    #[arg(long, value_name = "FILE", requires = "device")]
    pub trace: Option<PathBuf>,
    /// Size cap of the trace file (bytes, or K/M/G): records past it are
    /// dropped and counted in the footer, the VM goes on.
    #[arg(long, value_name = "SIZE", default_value = "256M",
          value_parser = device_model::trace::parse_size)]
    pub trace_max_size: u64,
    /// Load this kernel module (.ko) in the guest instead of the images'
    /// dmalab.ko, without rebuilding the initramfs (vmm/src/initrd_module.rs).
    #[arg(long, value_name = "FILE")]
    pub module: Option<PathBuf>,
    /// Parameters for --module's insmod: "name=value name=value".
    #[arg(
        long,
        value_name = "STR",
        requires = "module",
        allow_hyphen_values = true
    )]
    pub module_args: Option<String>,
    /// Sample where the guest's vCPU is every millisecond (kernel function,
    /// user mode or halted) and write a ranked report to FILE at the end
    /// (function names from the kernel's ELF symbol table).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

fn parse_device(s: &str) -> Result<Dma24Config, String> {
    crate::pci::parse_device_spec(s).map_err(|e| e.to_string())
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    crate::logger::parse_level(s).ok_or_else(|| {
        format!("unknown log level {s:?}: use off, error, warn, info, debug or trace")
    })
}

/// Parse `--mem`: MiB, or with a suffix `M`/`MiB`/`G`/`GiB`.
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower
        .strip_suffix("gib")
        .or_else(|| lower.strip_suffix('g'))
    {
        (n, 1024)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix('m'))
    {
        (n, 1)
    } else {
        (lower.as_str(), 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size: give MiB (256) or GiB with a suffix (2G)"))?;
    let mib = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib) {
        return Err(format!(
            "{mib} MiB is outside the supported {MIN_MEM_MIB}..={MAX_MEM_MIB} MiB"
        ));
    }
    Ok(mib)
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("timeout {s} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `${DMALAB_CACHE:-~/.cache/dmalab}/images/current` (one definition for
/// every crate: the `dmalab-paths` crate).
pub use dmalab_paths::images_dir;

impl RunArgs {
    /// The VM configuration, with the default images filled in.
    pub fn into_config(self) -> VmConfig {
        let (kernel, initrd) = match self.kernel {
            Some(k) => (k, self.initrd),
            None => {
                let dir = images_dir();
                let initrd = self.initrd.or_else(|| {
                    let p = dir.join("initramfs.cpio");
                    p.exists().then_some(p)
                });
                (dir.join("vmlinux"), initrd)
            }
        };
        VmConfig {
            kernel,
            initrd,
            initrd_extra: Vec::new(),
            cmdline: self.cmdline,
            mem_mib: self.mem,
            vcpus: self.vcpus,
            cpu: self.cpu,
            timeout: self.timeout,
            boot_marker: self.boot_marker,
            stdin: !self.no_stdin,
            devices: self.device,
            trace: self.trace,
            trace_max_size: self.trace_max_size,
            module: self.module,
            module_args: self.module_args,
            profile: self.profile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dmalab").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).unwrap().command {
            Command::Run(r) => *r,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn device_and_trace() {
        let r = run_args(&[
            "run",
            "--device",
            "dma24,overflow=truncate",
            "--trace",
            "/t.jsonl",
        ]);
        let c = r.into_config();
        let [d] = c.devices.as_slice() else {
            panic!("one device: {:?}", c.devices)
        };
        assert_eq!(d.overflow, device_model::Overflow::Truncate);
        assert_eq!(c.trace, Some(PathBuf::from("/t.jsonl")));
        let e = parse(&["run", "--device", "edu"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("one device type, dma24"), "{e}");
        let e = parse(&["run", "--device", "dma24,mask-bits=8"]).unwrap_err();
        assert!(e.to_string().contains("mask-bits"), "{e}");
        // A trace without a device is a usage error.
        let e = parse(&["run", "--trace", "/t"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn device_given_twice() {
        let c =
            run_args(&["run", "--device", "dma24", "--device", "dma24,mask-bits=32"]).into_config();
        let masks: Vec<_> = c.devices.iter().map(|d| d.mask_bits).collect();
        assert_eq!(masks, [24, 32]);
        assert!(run_args(&["run"]).into_config().devices.is_empty());
    }

    #[test]
    fn trace_summary_command() {
        match parse(&["trace", "summary", "/t.jsonl", "--json"])
            .unwrap()
            .command
        {
            Command::Trace(TraceCommand::Summary { file, json }) => {
                assert_eq!(file, PathBuf::from("/t.jsonl"));
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trace_view_and_export_commands() {
        match parse(&["trace", "view", "/t.jsonl"]).unwrap().command {
            Command::Trace(TraceCommand::View { file, output }) => {
                assert_eq!((file, output), (PathBuf::from("/t.jsonl"), None));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&[
            "trace", "export", "--format", "chrome", "/t", "-o", "/o.json",
        ]);
        assert!(matches!(
            c.unwrap().command,
            Command::Trace(TraceCommand::Export { .. })
        ));
        let e = parse(&["trace", "export", "--format", "svg", "/t", "-o", "/o"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn defaults() {
        let r = run_args(&["run", "--kernel", "/k"]);
        assert_eq!(r.mem, 64);
        assert_eq!(r.vcpus, 1);
        assert_eq!(r.cpu, CpuPolicy::Filtered);
        let c = r.into_config();
        assert_eq!(c.kernel, PathBuf::from("/k"));
        assert_eq!(c.initrd, None);
        assert!(c.stdin);
    }

    #[test]
    fn all_options() {
        let r = run_args(&[
            "run",
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--cmdline",
            "quiet -- -x",
            "--mem",
            "1G",
            "--vcpus",
            "2",
            "--cpu",
            "host",
            "--timeout",
            "1.5",
            "--boot-marker",
            "READY",
            "--no-stdin",
            "--log-level",
            "debug",
        ]);
        assert_eq!(r.mem, 1024);
        assert_eq!(r.cpu, CpuPolicy::Host);
        assert_eq!(r.timeout, Some(Duration::from_millis(1500)));
        let c = r.into_config();
        assert_eq!(c.initrd, Some(PathBuf::from("/i")));
        assert_eq!(c.cmdline.as_deref(), Some("quiet -- -x"));
        assert!(!c.stdin);
        assert_eq!(c.boot_marker.as_deref(), Some("READY"));
    }

    #[test]
    fn mem_parsing() {
        assert_eq!(parse_mem("256"), Ok(256));
        assert_eq!(parse_mem("256M"), Ok(256));
        assert_eq!(parse_mem("2GiB"), Ok(2048));
        assert!(parse_mem("abc").unwrap_err().contains("not a size"));
        assert!(parse_mem("0").unwrap_err().contains("outside"));
        assert!(parse_mem("-5").is_err());
        assert!(parse_mem("99999999999999999999").is_err());
        assert!(parse_mem("18446744073709551615G").is_err());
    }

    #[test]
    fn usage_errors() {
        let e = parse(&["run", "--mem", "lots"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("--mem"));
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            parse(&["run", "--vcpus", "0"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["run", "--cpu", "fast"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        assert!(parse(&["run", "--timeout", "-1"]).is_err());
        assert_eq!(
            parse(&["run", "--timeout", "0"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["run", "--kernel"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["run", "--bogus"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert!(parse(&["run", "--log-level", "loud"]).is_err());
        // --module-args without --module.
        assert_eq!(
            parse(&["run", "--module-args", "a=1"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn module_and_args() {
        let c = run_args(&[
            "run",
            "--module",
            "/m/mydrv.ko",
            "--module-args",
            "force_intx=1 timeout_ms=-1",
        ])
        .into_config();
        assert_eq!(c.module, Some(PathBuf::from("/m/mydrv.ko")));
        assert_eq!(c.module_args.as_deref(), Some("force_intx=1 timeout_ms=-1"));
        // The default guest: its initrd is what /init loads the module from.
        assert_eq!(c.kernel, images_dir().join("vmlinux"));
    }

    #[test]
    fn help_documents_exit_codes_and_ports() {
        let e = parse(&["run", "--help"]).unwrap_err();
        let h = e.to_string();
        for needle in [
            "Exit codes",
            "0xf4",
            "0xf5",
            "123",
            "reboot=k",
            "clearcpuid",
        ] {
            assert!(h.contains(needle), "help lacks {needle}");
        }
    }

    #[test]
    fn default_images_follow_dmalab_cache() {
        // Only this test touches DMALAB_CACHE in this process.
        // SAFETY: tests in this module do not read the environment concurrently.
        unsafe { std::env::set_var("DMALAB_CACHE", "/tmp/dmalab-cache-test") };
        let c = run_args(&["run"]).into_config();
        assert_eq!(
            c.kernel,
            PathBuf::from("/tmp/dmalab-cache-test/images/current/vmlinux")
        );
        assert_eq!(c.initrd, None);
        // SAFETY: as above.
        unsafe { std::env::remove_var("DMALAB_CACHE") };
    }
}
