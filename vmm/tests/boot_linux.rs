//! Boots the project's guest kernel (built by `cargo xtask images`) to a
//! marker printed from guest user space and checks the clean shutdown, the
//! panic exit code and the CPUID flags Linux ends up with.
//!
//! Images: `$DMALAB_KERNEL` / `$DMALAB_INITRD` when set, else
//! `${DMALAB_CACHE:-~/.cache/dmalab}/images/current/{vmlinux,initramfs.cpio}`.
//! Without them the tests are skipped loudly, unless `DMALAB_REQUIRE_IMAGES=1`
//! (CI), which makes them fail.
//!
//! The guest runs a shell command given on the kernel command line
//! (`rdinit=/bin/busybox -- sh -c "..."`), so the test depends only on busybox
//! being in the initramfs, not on what /init does.

mod common;

use std::path::PathBuf;

use common::*;

const MARKER: &str = "DMALAB_BOOT_OK";

/// (kernel, initrd), or None with the reason.
fn images() -> Result<(PathBuf, PathBuf), String> {
    let dir = vmm::cli::images_dir();
    let kernel = std::env::var_os("DMALAB_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("vmlinux"));
    let initrd = std::env::var_os("DMALAB_INITRD")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("initramfs.cpio"));
    for p in [&kernel, &initrd] {
        if !p.is_file() {
            return Err(format!("{} not found", p.display()));
        }
    }
    Ok((kernel, initrd))
}

/// The images, or None after a loud skip message (or a panic under
/// DMALAB_REQUIRE_IMAGES=1).
fn images_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    if !have_kvm() {
        assert!(
            std::env::var("DMALAB_REQUIRE_IMAGES").as_deref() != Ok("1"),
            "{test}: /dev/kvm is not available"
        );
        eprintln!("SKIPPED {test}: /dev/kvm is not available");
        return None;
    }
    match images() {
        Ok(i) => Some(i),
        Err(why) => {
            let msg = format!(
                "{test}: guest images missing ({why}). Build them with `cargo xtask images` \
                 (output in ${{DMALAB_CACHE:-~/.cache/dmalab}}/images/current/) or set \
                 DMALAB_KERNEL and DMALAB_INITRD."
            );
            assert!(
                std::env::var("DMALAB_REQUIRE_IMAGES").as_deref() != Ok("1"),
                "{msg}"
            );
            eprintln!("\n*** SKIPPED {msg}\n");
            None
        }
    }
}

/// "... at 39.261 ms ..." -> 39.261 for the first stderr line containing `key`.
fn ms_after(stderr: &str, key: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

#[test]
fn boots_linux_to_a_marker_and_shuts_down_cleanly() {
    let Some((kernel, initrd)) = images_or_skip("boots_linux_to_a_marker") else {
        return;
    };
    let script = format!(
        "/bin/busybox mount -t proc proc /proc; /bin/busybox grep -m1 ^flags /proc/cpuinfo; \
         echo {MARKER}; /bin/busybox reboot -f"
    );
    let cmdline = format!("rdinit=/bin/busybox -- sh -c \"{script}\"");
    let t = std::time::Instant::now();
    let r = dmalab(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--timeout",
        "900",
        "--no-stdin",
        "--boot-marker",
        MARKER,
        "--cmdline",
        &cmdline,
    ]);
    let wall = t.elapsed();
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(
        r.stdout.lines().any(|l| l.trim() == MARKER),
        "marker missing: {}",
        r.dump()
    );
    // What Linux sees: the filtered features are gone from /proc/cpuinfo.
    let flags = r
        .stdout
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_else(|| panic!("no flags line: {}", r.dump()));
    let words: Vec<&str> = flags.split_whitespace().collect();
    for hidden in [
        "xsave", "smap", "smep", "popcnt", "avx", "avx2", "ssse3", "sse4_2", "rdrand", "fsgsbase",
    ] {
        assert!(
            !words.contains(&hidden),
            "guest Linux still has {hidden}: {flags}"
        );
    }
    assert!(words.contains(&"hypervisor"), "{flags}");
    // Kernel rodata is read-only: the kernel's own test
    // (images/kernel/dmalab.config), as patch 0006 changes how rodata is
    // laid out.
    let rodata = "rodata_test: all tests were successful";
    assert!(r.stdout.contains(rodata), "no {rodata:?}: {}", r.dump());
    let first = ms_after(&r.stderr, "first guest instruction at");
    let boot = ms_after(&r.stderr, "guest boot time:");
    assert!(first.is_some() && boot.is_some(), "{}", r.dump());
    eprintln!(
        "boot_linux: VMM start -> first guest instruction {:.1} ms, -> marker {:.1} s, \
         whole run {:.1} s ({})",
        first.unwrap(),
        boot.unwrap() / 1000.0,
        wall.as_secs_f64(),
        kernel.display()
    );
}

#[test]
fn kernel_panic_exits_3() {
    let Some((kernel, _)) = images_or_skip("kernel_panic_exits_3") else {
        return;
    };
    // No initramfs and no root device: "VFS: Unable to mount root fs", then
    // panic=-1 resets through the i8042.
    let r = dmalab(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--mem",
        "64",
        "--timeout",
        "900",
        "--no-stdin",
    ]);
    assert_eq!(r.code, 3, "{}", r.dump());
    assert!(
        r.stdout.contains("Kernel panic - not syncing"),
        "{}",
        r.dump()
    );
}

#[test]
fn pvm_needs_the_filtered_cpu_policy() {
    if !host_is_pvm() {
        eprintln!("SKIPPED pvm_needs_the_filtered_cpu_policy: not a PVM host");
        return;
    }
    let Some((kernel, _)) = images_or_skip("pvm_needs_the_filtered_cpu_policy") else {
        return;
    };
    // With --cpu host there is no clearcpuid=: the kernel uses XSAVE and the
    // PVM emulator fails on xrstor. dmalab must report it and exit 4, not hang.
    let r = dmalab(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--mem",
        "64",
        "--timeout",
        "900",
        "--no-stdin",
        "--cpu",
        "host",
    ]);
    assert_eq!(r.code, 4, "{}", r.dump());
    assert!(r.stderr.contains("emulation failure"), "{}", r.dump());
    assert!(r.stderr.contains("instruction at RIP"), "{}", r.dump());
}
