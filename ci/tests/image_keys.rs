//! The image cache is keyed by a hash of every input: these tests change one
//! input at a time in a copy of the recipe and check which keys move.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A scratch copy of the inputs the keys read: images/, guest-driver/ and
/// the register map it links to (as in the repo: a symlink).
fn scratch_repo(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmalab-keys-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    copy_tree(&ci::workspace_root().join("images"), &dir.join("images"));
    fs::create_dir_all(dir.join("guest-driver")).unwrap();
    fs::write(dir.join("guest-driver/Kbuild"), "obj-m := dmalab.o\n").unwrap();
    fs::write(dir.join("guest-driver/dmalab.rs"), "// driver\n").unwrap();
    fs::create_dir_all(dir.join("device-model/src")).unwrap();
    fs::write(
        dir.join("device-model/src/regs.rs"),
        "pub const REG_MAGIC: u64 = 0;\n",
    )
    .unwrap();
    fs::create_dir_all(dir.join("guest-driver/src")).unwrap();
    std::os::unix::fs::symlink(
        "../../device-model/src/regs.rs",
        dir.join("guest-driver/src/regs.rs"),
    )
    .unwrap();
    fs::create_dir_all(dir.join("guest-driver/tool/src")).unwrap();
    fs::write(dir.join("guest-driver/tool/src/main.rs"), "fn main() {}\n").unwrap();
    dir
}

fn keys(repo: &Path) -> BTreeMap<String, String> {
    let out = Command::new("bash")
        .arg(repo.join("images/build.sh"))
        .arg("keys")
        .env("DMALAB_REPO", repo)
        .output()
        .expect("run images/build.sh keys");
    assert!(
        out.status.success(),
        "build.sh keys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    before
        .keys()
        .filter(|k| before[*k] != after[*k])
        .cloned()
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut s = fs::read_to_string(path).unwrap();
    s.push_str(text);
    fs::write(path, s).unwrap();
}

#[test]
fn keys_are_stable_and_complete() {
    let repo = scratch_repo("stable");
    let a = keys(&repo);
    let b = keys(&repo);
    assert_eq!(a, b, "keys must not change when nothing changed");
    for stage in ["kernel", "driver", "builtin", "initramfs", "images"] {
        let key = a
            .get(stage)
            .unwrap_or_else(|| panic!("no {stage} key in {a:?}"));
        assert_eq!(key.len(), 16, "{stage} key {key}");
    }
    fs::remove_dir_all(repo).unwrap();
}

#[test]
fn kernel_inputs_move_every_key() {
    for (what, file) in [
        ("config", "images/kernel/dmalab.config"),
        ("pins", "images/versions.env"),
        (
            "patch",
            "images/patches/0001-x86-complete-pvm-half-done-syscall.patch",
        ),
        ("recipe", "images/lib/kernel.sh"),
    ] {
        let repo = scratch_repo(what);
        let before = keys(&repo);
        append(&repo.join(file), "\n# changed\n");
        let after = keys(&repo);
        assert_eq!(
            changed(&before, &after),
            ["builtin", "driver", "images", "initramfs", "kernel"],
            "changing {file}"
        );
        fs::remove_dir_all(repo).unwrap();
    }
}

#[test]
fn a_new_patch_moves_the_kernel_key() {
    let repo = scratch_repo("newpatch");
    let before = keys(&repo);
    fs::write(
        repo.join("images/patches/9999-test.patch"),
        "--- a/x\n+++ b/x\n",
    )
    .unwrap();
    let after = keys(&repo);
    assert!(changed(&before, &after).contains(&"kernel".to_string()));
    fs::remove_dir_all(repo).unwrap();
}

#[test]
fn driver_source_moves_driver_keys_not_the_kernel() {
    // The register map is compiled by the driver through a symlink, and
    // driver.sh holds the module's checks: both are driver inputs.
    for (what, file, line) in [
        ("source", "guest-driver/dmalab.rs", "// more\n"),
        (
            "regs",
            "device-model/src/regs.rs",
            "pub const REG_NEW: u64 = 8;\n",
        ),
        ("checks", "images/lib/driver.sh", "# changed\n"),
    ] {
        let repo = scratch_repo(what);
        let before = keys(&repo);
        append(&repo.join(file), line);
        let after = keys(&repo);
        assert_eq!(
            changed(&before, &after),
            ["builtin", "driver", "images", "initramfs"],
            "changing {file}"
        );
        fs::remove_dir_all(repo).unwrap();
    }
}

#[test]
fn init_script_moves_only_the_initramfs() {
    let repo = scratch_repo("init");
    let before = keys(&repo);
    append(&repo.join("images/initramfs/init"), "# more\n");
    let after = keys(&repo);
    assert_eq!(changed(&before, &after), ["images", "initramfs"]);
    fs::remove_dir_all(repo).unwrap();
}

#[test]
fn guest_tool_moves_only_the_initramfs() {
    let repo = scratch_repo("tool");
    let before = keys(&repo);
    append(&repo.join("guest-driver/tool/src/main.rs"), "// more\n");
    let after = keys(&repo);
    assert_eq!(changed(&before, &after), ["images", "initramfs"]);
    fs::remove_dir_all(repo).unwrap();
}
