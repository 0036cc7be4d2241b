//! Definitions the device model, the guest driver, the guest tool and the
//! harness share exist once. The register map is `device-model/src/regs.rs`,
//! which the driver compiles through a symlink; the test pattern is
//! `guest-driver/src/pattern.rs`, which the module and the tool compile (and
//! the harness uses through the tool's library). These tests fail on what
//! could make two sides drift: a second copy, a symlink replaced by a file
//! (editors that save by rename do that), a shared file the kernel's `no_std`
//! build cannot compile, or an images recipe that stops copying it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The register map, the file every side compiles.
const REGISTER_MAP: &str = "device-model/src/regs.rs";
/// The driver's name for it.
const DRIVER_REGS: &str = "guest-driver/src/regs.rs";
/// The test pattern.
const PATTERN: &str = "guest-driver/src/pattern.rs";
/// The allocator lab's user-space ABI (module and tool).
const LAB_ABI: &str = "guest-driver/src/lab_abi.rs";

/// Every `.rs` file under `dir` (no build output), sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `(file, line number, line)` of every line in the driver's sources (the
/// module and the tool, not the shared files) for which `hit` is true.
fn driver_lines(hit: impl Fn(&str) -> bool) -> Vec<String> {
    let root = ci::workspace_root();
    let shared = [
        root.join(DRIVER_REGS),
        root.join(PATTERN),
        root.join(LAB_ABI),
    ];
    let mut found = Vec::new();
    for file in rust_files(&root.join("guest-driver")) {
        if shared.contains(&file) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if hit(line.trim_start()) {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    found
}

/// The `#[path = "..."]` targets in a Rust file.
fn path_attributes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("#[path = \""))
        .filter_map(|l| l.strip_suffix("\"]"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_driver_compiles_the_device_models_register_map() {
    let root = ci::workspace_root();
    let link = root.join(DRIVER_REGS);
    let meta = fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "{DRIVER_REGS} must be a symlink to {REGISTER_MAP} (it was replaced by a file: \
         restore it with `ln -sf ../../device-model/src/regs.rs {DRIVER_REGS}`)"
    );
    assert_eq!(
        link.canonicalize().unwrap(),
        root.join(REGISTER_MAP).canonicalize().unwrap(),
        "{DRIVER_REGS} points somewhere else"
    );
    let root_rs = fs::read_to_string(root.join("guest-driver/dmalab.rs")).unwrap();
    assert!(
        path_attributes(&root_rs).contains(&"src/regs.rs".to_string()),
        "dmalab.rs does not compile src/regs.rs"
    );
}

#[test]
fn the_driver_defines_no_register_errno_or_pci_constant_of_its_own() {
    // Register offsets and bits, error codes, descriptor flags: regs.rs only.
    let prefixes = [
        "REG_", "CMD_", "STATUS_", "CTRL_", "IRQ_", "ERR_", "DESC_", "CAPS_", "BAR_",
    ];
    let copies = driver_lines(|l| {
        let Some(rest) = l
            .strip_prefix("pub(crate) const ")
            .or_else(|| l.strip_prefix("pub const "))
            .or_else(|| l.strip_prefix("const "))
        else {
            return l.contains("fn err_name(") || l.contains("fn err_cause(");
        };
        prefixes.iter().any(|p| rest.starts_with(p))
            // errnos: kernel::error::code, or made from `bindings::E*`.
            || (rest.starts_with('E') && rest.contains(": i32"))
            // PCI config space: the kernel's pci_regs.h through bindings.
            || (rest.starts_with("PCI_") && !rest.contains("bindings::"))
    });
    assert!(
        copies.is_empty(),
        "second definitions in the driver (use regs.rs, kernel::error::code or bindings):\n{}",
        copies.join("\n")
    );
}

#[test]
fn the_pattern_formula_exists_once() {
    // The formula's multiplier, as any re-implementation would write it, in
    // the crates that write or check guest patterns (the device model's own
    // tests fill memory their own way, unrelated to traces).
    let root = ci::workspace_root();
    let mut copies = Vec::new();
    for dir in ["guest-driver", "ci"] {
        for file in rust_files(&root.join(dir)) {
            if file == root.join(PATTERN) || file == root.join("ci/tests/one_source.rs") {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap();
            if text.contains("wrapping_mul(31)") {
                copies.push(file.display().to_string());
            }
        }
    }
    assert!(
        copies.is_empty(),
        "the test pattern is computed outside {PATTERN}: {copies:?}"
    );
    let tool = fs::read_to_string(root.join("guest-driver/tool/src/pattern.rs")).unwrap();
    let target = path_attributes(&tool);
    assert_eq!(
        target,
        ["../../src/pattern.rs"],
        "the tool's pattern module"
    );
    assert_eq!(
        root.join("guest-driver/tool/src")
            .join(&target[0])
            .canonicalize()
            .unwrap(),
        root.join(PATTERN)
    );
    let module = fs::read_to_string(root.join("guest-driver/dmalab.rs")).unwrap();
    assert!(path_attributes(&module).contains(&"src/pattern.rs".to_string()));
}

#[test]
fn the_lab_abi_exists_once() {
    // The module and the tool compile the same file; neither spells the
    // lab's ioctl numbers or allocator names itself.
    let root = ci::workspace_root();
    let tool = fs::read_to_string(root.join("guest-driver/tool/src/lab.rs")).unwrap();
    assert_eq!(
        path_attributes(&tool),
        ["../../src/lab_abi.rs"],
        "the tool's lab ABI module"
    );
    let module = fs::read_to_string(root.join("guest-driver/dmalab.rs")).unwrap();
    assert!(path_attributes(&module).contains(&"src/lab_abi.rs".to_string()));
    let copies = driver_lines(|l| {
        !l.starts_with("//")
            && (l.contains("0xc030_d220")
                || l.contains("0x8010_d221")
                || l.contains("\"static-buffer\""))
    });
    assert!(
        copies.is_empty(),
        "lab ABI defined outside {LAB_ABI}: {copies:?}"
    );
}

#[test]
fn shared_files_compile_in_a_no_std_crate_with_nothing_else() {
    let root = ci::workspace_root();
    for file in [REGISTER_MAP, PATTERN, LAB_ABI] {
        let text = fs::read_to_string(root.join(file)).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap().trim();
            assert!(
                !(code.starts_with("use ") || code.starts_with("extern crate")),
                "{file}:{}: shared files import nothing: {line}",
                n + 1
            );
        }
    }
    // What the kernel build does, in a second: the files as modules of a
    // `no_std` library with every warning an error.
    let dir = std::env::temp_dir().join(format!("dmalab-one-source-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("lib.rs");
    fs::write(
        &lib,
        format!(
            "#![no_std]\n#![deny(warnings)]\n#[path = {:?}]\npub mod regs;\n#[path = {:?}]\npub mod pattern;\n\
             #[path = {:?}]\npub mod lab_abi;\n\
             pub const CHECK: (&str, u8, &str) = (regs::err_name(regs::ERR_MASK), pattern::byte(0, 0), lab_abi::zone_name(0));\n",
            root.join(REGISTER_MAP),
            root.join(PATTERN),
            root.join(LAB_ABI)
        ),
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--edition=2021", "--crate-type=lib", "--emit=metadata"])
        .arg("--out-dir")
        .arg(&dir)
        .arg(&lib)
        .output()
        .expect("run rustc");
    fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "the shared files do not build as no_std modules:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_images_recipe_copies_every_file_the_module_compiles() {
    let root = ci::workspace_root();
    let dest = std::env::temp_dir().join(format!("dmalab-driver-copy-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dest);
    let script = format!(
        "REPO={:?}; IMAGES=$REPO/images; . \"$IMAGES/lib/common.sh\"; copy_driver_sources {:?}",
        root, dest
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "copy_driver_sources failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every module file the crate root names, and the files they name.
    let mut files = vec![PathBuf::from("dmalab.rs")];
    let mut i = 0;
    while i < files.len() {
        let rel = files[i].clone();
        i += 1;
        let copied = dest.join(&rel);
        let meta = fs::symlink_metadata(&copied)
            .unwrap_or_else(|e| panic!("the copy lacks {}: {e}", rel.display()));
        assert!(
            meta.file_type().is_file(),
            "{} is not a regular file in the copy (a kernel tree gets no symlinks)",
            rel.display()
        );
        assert_eq!(
            fs::read(&copied).unwrap(),
            fs::read(root.join("guest-driver").join(&rel)).unwrap(),
            "{} differs from the repo's",
            rel.display()
        );
        let text = fs::read_to_string(&copied).unwrap();
        let base = rel.parent().unwrap().to_path_buf();
        for target in path_attributes(&text) {
            files.push(base.join(target));
        }
        // `mod x;` inside a directory module (src/tests/mod.rs).
        if rel.file_name().is_some_and(|n| n == "mod.rs") {
            for l in text.lines() {
                if let Some(name) = l.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                    files.push(base.join(format!("{name}.rs")));
                }
            }
        }
    }
    assert!(
        files.len() > 10,
        "found only {files:?}: the crate root's #[path] lines?"
    );
    assert_eq!(
        fs::read(dest.join("src/regs.rs")).unwrap(),
        fs::read(root.join(REGISTER_MAP)).unwrap(),
        "the copied register map is not the device model's"
    );
    fs::remove_dir_all(dest).unwrap();
}
