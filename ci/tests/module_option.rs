//! `dmalab run --module FILE [--module-args STR]`: the default guest loads a
//! developer's own .ko without a rebuilt initramfs; bad files are refused
//! before any boot (exit 2); a module the guest refuses fails the run (5).
//!
//! Without images these tests are skipped with a message, unless
//! DMALAB_REQUIRE_IMAGES=1 (set by `cargo xtask test`), which fails them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ci::guest::{self, Artifacts, GuestSpec};

/// Runs `dmalab run` on the default images with `args`; (exit code, stderr).
fn dmalab(a: &Artifacts, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(&a.dmalab)
        .arg("run")
        .arg("--kernel")
        .arg(a.images.join("vmlinux"))
        .arg("--initrd")
        .arg(a.images.join("initramfs.cpio"))
        .args(["--timeout", "5", "--no-stdin"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dmalab");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmalab-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_file_that_is_not_a_module_is_refused_before_boot() {
    let Some(a) = Artifacts::for_test("a_file_that_is_not_a_module_is_refused_before_boot") else {
        return;
    };
    let text = scratch("notes.ko", b"not a module\n");
    let (code, err) = dmalab(&a, &["--module", &text.display().to_string()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is not a kernel module: no ELF magic"),
        "{err}"
    );
    // An ELF that is not relocatable: the dmalab binary itself.
    let (code, err) = dmalab(&a, &["--module", &a.dmalab.display().to_string()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a relocatable object"), "{err}");
    let (code, err) = dmalab(&a, &["--module", "/nonexistent/mydrv.ko"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no such file"), "{err}");
}

fn module_spec(name: &str, module: &Path, args: &str) -> GuestSpec {
    GuestSpec {
        name: name.into(),
        kernel: "vmlinux".into(),
        initrd: true,
        // The module's KUnit suites are not what this test is about (35 s).
        cmdline: "kunit.enable=0".into(),
        device: Some("dma24".into()),
        mem_mib: u32::try_from(vmm::vm::DEFAULT_MEM_MIB).expect("MiB fit u32"),
        timeout: Duration::from_secs(600),
        module: Some(module.to_path_buf()),
        module_args: Some(args.into()),
    }
}

#[test]
fn module_option_loads_the_given_ko_with_its_arguments() {
    let Some(a) = Artifacts::for_test("module_option_loads_the_given_ko_with_its_arguments") else {
        return;
    };
    // The images' own module, but from outside the initramfs, with arguments
    // that differ from its defaults.
    let ko = a.images.join("dmalab.ko");
    let spec = module_spec("module-option", &ko, "force_intx=1 timeout_ms=1500");
    let run = guest::boot(&a, &spec, &guest::cache_dir().join("test-runs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let init = run.init_lines();
    let tail = || run.console_tail(40);
    assert_eq!(run.exit, Some(0), "exit status\n{}", tail());
    assert!(
        init.contains(
            &"loading /lib/modules/user/dmalab.ko (--module) with arguments: force_intx=1 timeout_ms=1500"
        ),
        "the init did not load the --module file: {init:?}"
    );
    // force_intx=1 took effect: the driver's probe line names the mode (Msi by default).
    assert!(
        run.console.contains("64 KiB device memory, Intx,"),
        "the module's arguments did not reach it\n{}",
        tail()
    );
    for line in [
        "insmod dmalab ok",
        "dma24-tool exit=0",
        "rmmod dmalab ok",
        "done",
    ] {
        assert!(init.contains(&line), "no {line:?} in {init:?}\n{}", tail());
    }
}

#[test]
fn module_for_another_kernel_fails_the_run_with_exit_5() {
    let Some(a) = Artifacts::for_test("module_for_another_kernel_fails_the_run_with_exit_5") else {
        return;
    };
    // The images' module with its version magic changed (same length):
    // what a .ko built against another kernel tree looks like to insmod.
    let mut ko = std::fs::read(a.images.join("dmalab.ko")).expect("images have dmalab.ko");
    let at = ko
        .windows(9)
        .position(|w| w == b"vermagic=")
        .expect("dmalab.ko has a vermagic");
    ko[at + 9] = if ko[at + 9] == b'0' { b'1' } else { b'0' };
    let other = scratch("dmalab.ko", &ko);
    let spec = module_spec("module-other-kernel", &other, "");
    let run = guest::boot(&a, &spec, &guest::cache_dir().join("test-runs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let init = run.init_lines();
    assert_eq!(run.exit, Some(5), "exit status\n{}", run.console_tail(40));
    assert!(
        init.contains(&"insmod dmalab FAILED"),
        "no insmod failure in {init:?}"
    );
    assert!(
        run.console.contains("version magic"),
        "the kernel's own reason is not on the console\n{}",
        run.console_tail(40)
    );
}
