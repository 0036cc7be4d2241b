//! The kernel loader on arbitrary files (ELF with or without a PVH note,
//! bzImage setup headers, anything else): `inspect_kernel` gives a clear
//! error or a kernel; a kernel that fits is then loaded into a small guest
//! through linux-loader, which must refuse what does not fit. Never a panic,
//! never a read or write outside the file or guest RAM.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmm::loader::{check_memory, inspect_kernel, load_kernel, min_guest_memory};
use vmm::memory::{create_guest_memory, MIB};

/// Guest RAM the loaded kernels get: enough for a small kernel at 1 MiB.
const GUEST_MEM: u64 = 32 * MIB;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("dmalab-fuzz-kernel-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    let kernel = match inspect_kernel(path) {
        Ok(k) => k,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let _ = min_guest_memory(&kernel, None);
    if check_memory(&kernel, None, GUEST_MEM).is_err() {
        return;
    }
    let mem = create_guest_memory(GUEST_MEM).expect("guest memory");
    if let Err(e) = load_kernel(&mem, &kernel) {
        assert!(!e.to_string().is_empty());
    }
});
