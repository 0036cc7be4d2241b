//! The initramfs stays within its size budget (images/initramfs/initramfs.env,
//! INITRAMFS_BUDGET_BYTES): on PVM hosts the guest kernel copies every byte
//! at about 3 s/MiB before /init runs. The image build only warns.
//!
//! Without images this test is skipped with a message, unless
//! DMALAB_REQUIRE_IMAGES=1 (set by `cargo xtask test`), which fails it.

use ci::guest::Artifacts;

fn initramfs_env(key: &str) -> Option<String> {
    let env = std::fs::read_to_string(ci::workspace_root().join("images/initramfs/initramfs.env"))
        .ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('"').to_string())
}

/// 0.6 MiB, issue 15's lever (history in initramfs.env: 593,920 bytes, then
/// 664,064 under a 0.65 MiB budget, then 527,360 with the -O2 kernel's
/// smaller Rust module).
const BUDGET_GOAL_BYTES: u64 = 629_146;

fn budget() -> u64 {
    initramfs_env("INITRAMFS_BUDGET_BYTES")
        .and_then(|v| v.parse().ok())
        .expect("images/initramfs/initramfs.env has INITRAMFS_BUDGET_BYTES")
}

/// The budget itself stays at the goal: raising it must be a change here,
/// with its reason, not a quiet edit of initramfs.env.
#[test]
fn the_budget_is_at_most_0_6_mib() {
    let budget = budget();
    assert!(
        budget <= BUDGET_GOAL_BYTES,
        "INITRAMFS_BUDGET_BYTES={budget} in images/initramfs/initramfs.env is over 0.6 MiB \
         ({BUDGET_GOAL_BYTES}): shrink the initramfs instead (images/README.md)"
    );
}

#[test]
fn initramfs_stays_within_its_budget() {
    let Some(a) = Artifacts::for_test("initramfs_stays_within_its_budget") else {
        return;
    };
    let budget = budget();
    let cpio = a.images.join("initramfs.cpio");
    let size = std::fs::metadata(&cpio)
        .unwrap_or_else(|e| panic!("{}: {e}", cpio.display()))
        .len();
    assert!(
        size <= budget,
        "{} is {size} bytes, over its budget of {budget} (images/initramfs/initramfs.env)",
        cpio.display()
    );
}
