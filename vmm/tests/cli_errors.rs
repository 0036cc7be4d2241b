//! Bad input through the real binary: clear messages, non-zero exit codes,
//! and nothing started.

mod common;

use common::*;

/// A mini kernel that spins (`jmp $`), in a temporary file.
fn hang_kernel(name: &str) -> TempPath {
    let mut a = Asm::new();
    a.hang();
    temp_file(name, &pvh_elf(&a.code))
}

/// `dmalab run` of a spinning mini kernel with `extra` options: a valid
/// kernel, so an error comes from the options.
fn run_hang_kernel(extra: &[&str]) -> Run {
    let f = hang_kernel("k.elf");
    let mut args = vec!["run", "--kernel", f.0.to_str().unwrap(), "--no-stdin"];
    args.extend_from_slice(extra);
    dmalab(&args)
}

#[test]
fn missing_kernel() {
    let r = dmalab(&["run", "--kernel", "/nonexistent/vmlinux", "--no-stdin"]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(
        r.stderr.contains("kernel image /nonexistent/vmlinux not found: build it with `cargo xtask images` or pass --kernel"),
        "{}",
        r.dump()
    );
}

#[test]
fn default_kernel_missing_names_the_images_folder() {
    let r = dmalab_env(
        &["run", "--no-stdin"],
        &[("DMALAB_CACHE", "/nonexistent/cache")],
    );
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(
        r.stderr
            .contains("/nonexistent/cache/images/current/vmlinux not found"),
        "{}",
        r.dump()
    );
}

#[test]
fn not_a_kernel() {
    let f = temp_file("notakernel", b"this is a text file, not a kernel\n");
    let r = dmalab(&["run", "--kernel", f.0.to_str().unwrap(), "--no-stdin"]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(r.stderr.contains("is not a kernel image"), "{}", r.dump());
}

#[test]
fn kernel_is_a_directory() {
    let r = dmalab(&["run", "--kernel", "/tmp", "--no-stdin"]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(r.stderr.contains("not a regular file"), "{}", r.dump());
}

#[test]
fn memory_too_small_for_the_kernel() {
    // A "kernel" whose image ends at 24 MiB.
    let mut a = Asm::new();
    a.hang();
    let mut elf = pvh_elf(&a.code);
    // p_memsz of the PT_LOAD (program header at 64, p_memsz at +40).
    elf[64 + 40..64 + 48].copy_from_slice(&(23u64 << 20).to_le_bytes());
    let f = temp_file("big.elf", &elf);
    let r = dmalab(&[
        "run",
        "--kernel",
        f.0.to_str().unwrap(),
        "--mem",
        "16",
        "--no-stdin",
    ]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(
        r.stderr.contains("guest memory too small") && r.stderr.contains("--mem is 16 MiB"),
        "{}",
        r.dump()
    );
}

#[test]
fn missing_initrd() {
    let r = run_hang_kernel(&["--initrd", "/nonexistent/initrd.cpio"]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(
        r.stderr
            .contains("initrd /nonexistent/initrd.cpio not found"),
        "{}",
        r.dump()
    );
}

#[test]
fn unwritable_profile_file() {
    // Checked before KVM is opened: exit 2 even on a host without KVM.
    let r = run_hang_kernel(&["--profile", "/nonexistent/dir/profile.txt"]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(
        r.stderr.contains(
            "cannot create the profile file /nonexistent/dir/profile.txt: No such file or directory"
        ) && r.stderr.contains("writable path"),
        "{}",
        r.dump()
    );
}

#[test]
fn bad_mem_values() {
    for v in ["0", "lots", "-1", "300000", "1T"] {
        let arg = format!("--mem={v}");
        let r = dmalab(&["run", "--kernel", "/x", &arg]);
        assert_eq!(r.code, 2, "--mem {v}: {}", r.dump());
        assert!(r.stderr.contains("--mem"), "--mem {v}: {}", r.dump());
    }
}

#[test]
fn no_kvm_device() {
    let f = hang_kernel("k.elf");
    let r = dmalab_env(
        &["run", "--kernel", f.0.to_str().unwrap(), "--no-stdin"],
        &[("DMALAB_KVM_DEVICE", "/nonexistent/kvm")],
    );
    assert_eq!(r.code, 1, "{}", r.dump());
    assert!(
        r.stderr
            .contains("cannot open /nonexistent/kvm: it does not exist"),
        "{}",
        r.dump()
    );
}

#[test]
fn kvm_device_without_permission() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("SKIPPED kvm_device_without_permission: root ignores file permissions");
        return;
    }
    let dev = temp_file("kvm", b"");
    std::fs::set_permissions(&dev.0, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let f = hang_kernel("k.elf");
    let r = dmalab_env(
        &["run", "--kernel", f.0.to_str().unwrap(), "--no-stdin"],
        &[("DMALAB_KVM_DEVICE", dev.0.to_str().unwrap())],
    );
    assert_eq!(r.code, 1, "{}", r.dump());
    assert!(r.stderr.contains("permission denied"), "{}", r.dump());
}

#[test]
fn usage_errors_and_help() {
    let r = dmalab(&["run", "--bogus"]);
    assert_eq!(r.code, 2, "{}", r.dump());
    let r = dmalab(&[]);
    assert_eq!(r.code, 2, "{}", r.dump());
    let r = dmalab(&["run", "--help"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(
        r.stdout.contains("Exit codes:") && r.stdout.contains("0xf4"),
        "{}",
        r.dump()
    );
    let r = dmalab(&["run", "--kernel", "/x", "--cmdline", &"a".repeat(3000)]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(r.stderr.contains("command line is"), "{}", r.dump());
}

#[test]
fn too_many_devices() {
    // A valid kernel, so the device count is the first thing wrong.
    let r = run_hang_kernel(&["--device", "dma24"].repeat(5));
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(
        r.stderr
            .contains("5 dma24 devices asked for: dmalab hosts at most 4")
            && r.stderr.contains("give --device at most 4 times"),
        "{}",
        r.dump()
    );
}
