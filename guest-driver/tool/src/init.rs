//! The guest's `/init` up to driver-ready, in one process.
//!
//! The initramfs links `/init` to this binary (images/lib/initramfs.sh). On
//! PVM hosts every fork and exec is emulated guest kernel work: the init
//! script's `mount -a` (a fork and an exec) and `insmod` (a fork) cost about
//! 1.3 s before the driver was ready. Here they are system calls: the mounts
//! of `/etc/fstab`, the kernel command line, the module (`finit_module`), then an exec
//! of the rest of the init script, `/etc/init.sh` (the tests, the shell, the
//! end of the VM), with `DMALAB_EARLY_INIT=1` so it skips what was done.
//!
//! The lines printed are the script's own (`dmalab-init: ...`), which the
//! host harness parses; images/initramfs/init documents them.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The file systems the rest of the init and the tests use: the same file
/// the script's own `mount -a` reads (images/initramfs/fstab).
const FSTAB: &str = "/etc/fstab";
/// The images' driver, and where `dmalab run --module` puts a developer's
/// module and its arguments (vmm/src/initrd_module.rs).
const IMAGES_MODULE: &str = "/lib/modules/dmalab.ko";
const USER_MODULES: &str = "/lib/modules/user";
/// The rest of the init script, run after the driver is loaded.
const SCRIPT: &str = "/etc/init.sh";
/// Exit-port status for "the --module was refused" (dmalab then exits 5).
const REFUSED_STATUS: u8 = 2;

fn say(line: &str) {
    println!("dmalab-init: {line}");
}

/// Runs as PID 1: never returns (it execs the script, or ends the VM).
pub fn run() -> ! {
    mount_fstab();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let uptime = uptime.split_whitespace().next().unwrap_or("?");
    say(&format!("user space up (uptime {uptime} s)"));

    let load = !cmdline.split_whitespace().any(|w| w == "dmalab.noload");
    let user = user_module();
    let (module, args) = match &user {
        Some((m, a)) => (m.clone(), a.clone()),
        None => (PathBuf::from(IMAGES_MODULE), String::new()),
    };
    let name = module
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    if Path::new("/sys/module/dmalab").is_dir() && user.is_none() {
        say("driver built in");
    } else if load && module.is_file() {
        if user.is_some() {
            say(&format!(
                "loading {} (--module) with arguments: {args}",
                module.display()
            ));
        }
        match finit_module(&module, &args) {
            Ok(()) => say(&format!("insmod {name} ok")),
            Err(e) => {
                say(&format!("insmod {name}: {}", module_error(&e)));
                say(&format!("insmod {name} FAILED"));
                if user.is_some() {
                    say("the module given with --module was refused: see the kernel's message above (built for another kernel?)");
                    end_vm(REFUSED_STATUS);
                }
            }
        }
    }
    exec_script()
}

/// The last `.ko` under [`USER_MODULES`] (the one the script's glob loop
/// picks) and its arguments: one line, its words joined by single spaces, as
/// insmod joins its arguments.
fn user_module() -> Option<(PathBuf, String)> {
    let mut kos: Vec<PathBuf> = std::fs::read_dir(USER_MODULES)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko") && p.is_file())
        .collect();
    kos.sort();
    let module = kos.pop()?;
    let args = std::fs::read_to_string(Path::new(USER_MODULES).join("args")).unwrap_or_default();
    let args = args.lines().next().unwrap_or("");
    Some((
        module,
        args.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}

/// What `finit_module`'s errno means (insmod's wording, as busybox prints
/// it); the kernel says which symbol, parameter or magic on the console.
fn module_error(e: &std::io::Error) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ENOEXEC) => "invalid module format (built for another kernel?)",
        Some(libc::ENOENT) => "unknown symbol in module, or unknown parameter",
        Some(libc::EEXIST) => "module already loaded",
        Some(libc::EINVAL) => "invalid parameters",
        _ => return e.to_string(),
    };
    format!("{what} ({e})")
}

/// Mounts what [`FSTAB`] lists, in order (`mount -a` for its fields 1-4:
/// options other than `defaults` go to the file system as its data).
fn mount_fstab() {
    let fstab = match std::fs::read_to_string(FSTAB) {
        Ok(f) => f,
        Err(e) => return say(&format!("{FSTAB}: {e}")),
    };
    for line in fstab.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(spec), Some(target), Some(fstype)) = (f.first(), f.get(1), f.get(2)) else {
            say(&format!(
                "{FSTAB}: not spec, mount point and type: {line:?}"
            ));
            continue;
        };
        let options = f.get(3).copied().filter(|o| *o != "defaults");
        if let Err(e) = mount(spec, target, fstype, options) {
            say(&format!("mount {fstype} on {target}: {e}"));
        }
    }
}

fn mount(spec: &str, target: &str, fstype: &str, options: Option<&str>) -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let (spec, target, fstype) = (c(spec)?, c(target)?, c(fstype)?);
    let data = options.map(c).transpose()?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a NUL-terminated string (or null for no data)
    // that outlives the call.
    let rc = unsafe { libc::mount(spec.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, data_ptr) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn finit_module(module: &Path, args: &str) -> std::io::Result<()> {
    let file = File::open(module)?;
    let params = CString::new(args).map_err(std::io::Error::other)?;
    // SAFETY: finit_module(2) reads the open file and the NUL-terminated
    // parameter string; both outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Replaces this process with `sh /etc/init.sh`, with the environment the
/// kernel gave init plus `DMALAB_EARLY_INIT=1`; if that fails, PID 1 has
/// nothing left to run, so the VM ends with the exit port (dmalab) or a
/// reboot (other VMMs).
fn exec_script() -> ! {
    let e = Command::new("/bin/sh")
        .arg(SCRIPT)
        .env("DMALAB_EARLY_INIT", "1")
        .exec();
    say(&format!("cannot run {SCRIPT}: {e}"));
    end_vm(1)
}

fn end_vm(status: u8) -> ! {
    let _ = crate::exit_vm(status);
    // SAFETY: reboot(2) with RB_AUTOBOOT; PID 1 runs as root. Where the exit
    // port did not end the VM (another VMM), this does.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    // reboot(2) returns only on failure; PID 1 must not exit, so wait.
    loop {
        // SAFETY: pause(2) has no arguments.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::module_error;
    use std::io::Error;

    #[test]
    fn module_errors_read_like_insmod() {
        let e = |n| module_error(&Error::from_raw_os_error(n));
        assert!(
            e(libc::ENOEXEC).starts_with("invalid module format"),
            "{}",
            e(libc::ENOEXEC)
        );
        assert!(
            e(libc::ENOENT).starts_with("unknown symbol in module"),
            "{}",
            e(libc::ENOENT)
        );
        assert!(
            e(libc::EEXIST).starts_with("module already loaded"),
            "{}",
            e(libc::EEXIST)
        );
        // Others keep the system's own words.
        assert_eq!(
            e(libc::EPERM),
            Error::from_raw_os_error(libc::EPERM).to_string()
        );
    }
}
