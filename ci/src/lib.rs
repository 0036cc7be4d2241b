//! The boot-and-transfer harness: runs guests in dmalab and reads what they
//! report (console KTAP, init lines) next to what the device recorded (the
//! DMA trace).

pub mod crosscheck;
pub mod guest;
pub mod ktap;

use std::path::{Path, PathBuf};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci/ has a parent")
        .to_path_buf()
}
