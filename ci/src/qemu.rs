//! `cargo xtask qemu`: dma24 under QEMU in one command. Installs QEMU 11
//! when missing (images/qemu.sh), builds the images and dmalab, starts
//! `dmalab serve` with the trace on, boots the module + tool guest under
//! QEMU with the device over vfio-user (console on this terminal), and stops
//! the server when QEMU ends (it exits on its own when its client leaves;
//! killed by PID if it does not). Prints the trace summary and its path.

use std::process::Command;
use std::time::Duration;

use ci::build::{self, BuildError};
use ci::guest::cache_dir;
use ci::vfio_user::{guest_cmdline, qemu_args, Server};
use thiserror::Error;

/// `cargo xtask qemu [--kunit] [--device SPEC] [--cmdline STR]`.
pub const USAGE: &str = "usage: cargo xtask qemu [--kunit] [--device dma24[,mask-bits=N][,overflow=...]] [--cmdline \"extra kernel args\"]";

#[derive(Debug, Error)]
pub enum QemuError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("QEMU: {0}")]
    Qemu(String),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("QEMU ended with {0}")]
    Guest(std::process::ExitStatus),
    #[error("{0}\n{USAGE}")]
    Usage(String),
}

struct Options {
    kunit: bool,
    device: String,
    cmdline: String,
}

/// On PVM hosts the tool's zero-copy refusals on a 24-bit device WARN,
/// which kills a QEMU guest there (see `ci::vfio_user::PVM_NO_WARN`): the
/// one-command run uses a 32-bit device; `--device dma24` gives the 24-bit
/// one (with `--cmdline dmalab.run=shell` for a shell instead of the tool).
fn default_device() -> &'static str {
    if ci::vfio_user::host_is_pvm() {
        "dma24,mask-bits=32"
    } else {
        "dma24"
    }
}

fn parse_args(args: &[String]) -> Result<Options, QemuError> {
    let mut o = Options {
        kunit: false,
        device: default_device().into(),
        cmdline: String::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| QemuError::Usage(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--kunit" => o.kunit = true,
            "--device" => o.device = value()?,
            "--cmdline" => o.cmdline = value()?,
            other => return Err(QemuError::Usage(format!("unknown option {other:?}"))),
        }
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result<(), QemuError> {
    let o = parse_args(args)?;
    let qemu = build::current_qemu().map_err(QemuError::Qemu)?;
    let images = build::images()?;
    let dmalab = build::dmalab()?;
    let out = cache_dir().join("qemu-demo");
    std::fs::create_dir_all(&out).map_err(|source| QemuError::CreateDir {
        path: out.display().to_string(),
        source,
    })?;
    let (socket, trace, log) = (
        out.join("dma24.sock"),
        out.join("trace.jsonl"),
        out.join("serve.log"),
    );
    let server =
        Server::start(&dmalab, &o.device, &socket, Some(&trace), &log).map_err(QemuError::Qemu)?;
    eprintln!(
        "xtask: dmalab serve --device {} on {} (log {})",
        o.device,
        socket.display(),
        log.display()
    );
    let kernel = images.join(if o.kunit { "vmlinux-kunit" } else { "vmlinux" });
    let initrd = images.join("initramfs.cpio");
    let append = guest_cmdline(o.cmdline.trim());
    let args = qemu_args(&kernel, Some(&initrd), 128, &socket, &append);
    eprintln!("xtask: {} {}", qemu.display(), args.join(" "));
    let status = Command::new(&qemu)
        .args(&args)
        .status()
        .map_err(|e| QemuError::Qemu(format!("cannot start {}: {e}", qemu.display())))?;
    let served = server.wait(Duration::from_secs(30));
    eprintln!(
        "xtask: dmalab serve exit {served:?}; trace {}",
        trace.display()
    );
    let _ = Command::new(&dmalab)
        .args(["trace", "summary"])
        .arg(&trace)
        .status();
    if status.success() {
        Ok(())
    } else {
        Err(QemuError::Guest(status))
    }
}
