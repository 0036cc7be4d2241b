//! Kernel and initrd: checking the inputs (before KVM is opened) and
//! loading them into guest memory (linux-loader). The command line is
//! `cmdline.rs`, the boot information the entry protocol reads (PVH start
//! info, zero page) is `boot_info.rs`.
//!
//! Formats:
//! * ELF `vmlinux` (x86-64): entered through its PVH note
//!   (`XEN_ELFNOTE_PHYS32_ENTRY`) when it has one, else at `e_entry` with the
//!   64-bit boot protocol.
//! * `bzImage`: the 64-bit boot protocol at load address + 0x200 (the
//!   kernel decompresses itself; slow on PVM, prefer `vmlinux`).
//!
//! The initrd may come in parts (the image's cpio, then e.g. a cpio with an
//! extra module): they are loaded back to back, each starting on a 4-byte
//! boundary, which is how the kernel expects concatenated cpio archives.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{BzImage, KernelLoader};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::memory::{low_ram_end, HIGHMEM_START, INITRD_ADDR_MAX, MAX_MEM_MIB, MIB};

/// Memory the guest kernel needs beyond its image and the initrd (and the
/// initrd's unpacked copy) to boot: page structs, slabs, the early stack.
pub const GUEST_HEADROOM: u64 = 8 * MIB;
/// Errors in the kernel or initrd.
#[derive(Debug, Error)]
pub enum LoaderError {
    #[error("kernel image {0} not found: build it with `cargo xtask images` or pass --kernel")]
    KernelNotFound(PathBuf),
    #[error("cannot read kernel image {path}: {source}")]
    KernelUnreadable { path: PathBuf, source: io::Error },
    #[error("{path} is not a kernel image: {why}")]
    NotAKernel { path: PathBuf, why: String },
    #[error("initrd {0} not found")]
    InitrdNotFound(PathBuf),
    #[error("cannot read initrd {path}: {source}")]
    InitrdUnreadable { path: PathBuf, source: io::Error },
    #[error(
        "guest memory too small: {what} needs at least {needed_mib} MiB of guest RAM, \
         --mem is {have_mib} MiB"
    )]
    MemoryTooSmall {
        what: String,
        needed_mib: u64,
        have_mib: u64,
    },
    #[error("cannot load the kernel: {0}")]
    Load(#[from] linux_loader::loader::Error),
    #[error("cannot write the initrd to guest memory: {0}")]
    InitrdWrite(vm_memory::GuestMemoryError),
}

/// The kernel image formats dmalab boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF `vmlinux`.
    Elf,
    /// `bzImage`.
    BzImage,
}

/// What [`inspect_kernel`] learned without loading anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    pub path: PathBuf,
    pub format: KernelFormat,
    /// One past the highest guest-physical byte the kernel occupies once
    /// loaded (for a bzImage: once decompressed, `pref_address + init_size`).
    pub end: u64,
}

/// One file of the initrd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitrdPart {
    pub path: PathBuf,
    pub size: u64,
}

/// A checked initrd: its parts in load order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitrdInfo {
    pub parts: Vec<InitrdPart>,
    /// Bytes from the start of the first part to the end of the last.
    pub size: u64,
}

/// Where each part starts: on a 4-byte boundary after the one before.
fn part_offsets(parts: &[InitrdPart]) -> impl Iterator<Item = (u64, &InitrdPart)> {
    let mut next = 0u64;
    parts.iter().map(move |p| {
        let at = next;
        next = (at + p.size).next_multiple_of(4);
        (at, p)
    })
}

/// Where the initrd went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedInitrd {
    pub addr: u64,
    pub size: u64,
}

fn open_kernel(path: &Path) -> Result<File, LoaderError> {
    let unreadable = |source| LoaderError::KernelUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => LoaderError::KernelNotFound(path.to_path_buf()),
        _ => unreadable(e),
    })?;
    if !meta.is_file() {
        return Err(LoaderError::NotAKernel {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    File::open(path).map_err(unreadable)
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
/// "HdrS": the bzImage setup header signature (also written to a zero page).
pub(crate) const BZ_MAGIC: u32 = 0x5372_6448;
const XLF_KERNEL_64: u16 = 1;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

fn read_at(f: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    f.seek(SeekFrom::Start(offset))?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Check that `path` is a kernel dmalab can boot and find how much memory it
/// occupies. Reads headers only.
pub fn inspect_kernel(path: &Path) -> Result<KernelInfo, LoaderError> {
    let mut f = open_kernel(path)?;
    let not = |why: String| LoaderError::NotAKernel {
        path: path.to_path_buf(),
        why,
    };
    let unreadable = |source| LoaderError::KernelUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut head = [0u8; 0x270];
    let n = read_at(&mut f, 0, &mut head).map_err(unreadable)?;
    if n >= 64 && &head[..4] == ELF_MAGIC {
        if head[4] != ELFCLASS64 || head[5] != ELFDATA2LSB {
            return Err(not("an ELF file, but not 64-bit little-endian".into()));
        }
        let machine = u16_at(&head, 18);
        if machine != EM_X86_64 {
            return Err(not(format!(
                "an ELF file for machine {machine}, not x86-64"
            )));
        }
        let phoff = u64_at(&head, 32);
        let phentsize = u16_at(&head, 54) as usize;
        let phnum = u16_at(&head, 56) as usize;
        if phentsize != 56 || phnum == 0 || phnum > 64 {
            return Err(not("an ELF file without usable program headers".into()));
        }
        let mut ph = vec![0u8; phentsize * phnum];
        let got = read_at(&mut f, phoff, &mut ph).map_err(unreadable)?;
        if got != ph.len() {
            return Err(not("truncated ELF program headers".into()));
        }
        let mut end = 0u64;
        for p in ph.chunks_exact(phentsize) {
            if u32_at(p, 0) == PT_LOAD {
                let paddr = u64_at(p, 24);
                let memsz = u64_at(p, 40);
                let seg_end = paddr
                    .checked_add(memsz)
                    .ok_or_else(|| not("an ELF segment wraps around".into()))?;
                end = end.max(seg_end);
            }
        }
        if end == 0 {
            return Err(not("an ELF file without loadable segments".into()));
        }
        check_kernel_end(end).map_err(not)?;
        return Ok(KernelInfo {
            path: path.to_path_buf(),
            format: KernelFormat::Elf,
            end,
        });
    }
    if n >= 0x268 && u32_at(&head, 0x202) == BZ_MAGIC {
        let version = u16_at(&head, 0x206);
        if version < 0x020c {
            return Err(not(format!(
                "a bzImage with boot protocol {}.{:02}: 2.12 or later is needed for 64-bit entry",
                version >> 8,
                version & 0xff
            )));
        }
        let xloadflags = u16_at(&head, 0x236);
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(not("a bzImage without a 64-bit entry point".into()));
        }
        let pref_address = u64_at(&head, 0x258);
        let init_size = u64::from(u32_at(&head, 0x260));
        let end = pref_address
            .max(HIGHMEM_START)
            .checked_add(init_size)
            .ok_or_else(|| not("a bzImage whose pref_address + init_size wraps around".into()))?;
        check_kernel_end(end).map_err(not)?;
        return Ok(KernelInfo {
            path: path.to_path_buf(),
            format: KernelFormat::BzImage,
            end,
        });
    }
    Err(not(
        "neither an ELF vmlinux nor a bzImage (no ELF magic, no \"HdrS\" at 0x202)".into(),
    ))
}

/// Check that the initrd exists and is readable.
pub fn inspect_initrd(path: &Path) -> Result<InitrdInfo, LoaderError> {
    inspect_initrd_parts(&[path])
}

/// Check every part of an initrd (see the module doc).
pub fn inspect_initrd_parts<P: AsRef<Path>>(paths: &[P]) -> Result<InitrdInfo, LoaderError> {
    let parts = paths
        .iter()
        .map(|p| inspect_initrd_part(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let size = part_offsets(&parts).last().map_or(0, |(at, p)| at + p.size);
    Ok(InitrdInfo { parts, size })
}

fn inspect_initrd_part(path: &Path) -> Result<InitrdPart, LoaderError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => LoaderError::InitrdNotFound(path.to_path_buf()),
        _ => LoaderError::InitrdUnreadable {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if !meta.is_file() {
        return Err(LoaderError::InitrdUnreadable {
            path: path.to_path_buf(),
            source: io::Error::other("not a regular file"),
        });
    }
    File::open(path).map_err(|source| LoaderError::InitrdUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(InitrdPart {
        path: path.to_path_buf(),
        size: meta.len(),
    })
}

/// A kernel must end inside the largest guest RAM dmalab can give (found by
/// fuzzing: an ELF segment ending near 2^64 overflowed the memory sums).
fn check_kernel_end(end: u64) -> Result<(), String> {
    let max = MAX_MEM_MIB * MIB;
    if end > max {
        return Err(format!(
            "it ends at {end:#x}, beyond the largest guest RAM dmalab supports ({MAX_MEM_MIB} MiB)"
        ));
    }
    Ok(())
}

fn page_align_up(x: u64) -> u64 {
    x.div_ceil(4096).saturating_mul(4096)
}

/// Minimum guest RAM for this kernel and initrd, in bytes: the kernel image,
/// the initrd twice (the cpio and its unpacked files), and [`GUEST_HEADROOM`].
pub fn min_guest_memory(kernel: &KernelInfo, initrd: Option<&InitrdInfo>) -> u64 {
    let initrd = initrd.map_or(0, |i| page_align_up(i.size));
    page_align_up(kernel.end)
        .saturating_add(initrd.saturating_mul(2))
        .saturating_add(GUEST_HEADROOM)
        .div_ceil(MIB)
        .saturating_mul(MIB)
}

/// Fail early with a clear message when `mem` cannot hold kernel and initrd.
pub fn check_memory(
    kernel: &KernelInfo,
    initrd: Option<&InitrdInfo>,
    mem: u64,
) -> Result<(), LoaderError> {
    let needed = min_guest_memory(kernel, initrd);
    if low_ram_end(mem) < needed {
        let what = match initrd {
            Some(i) => format!(
                "the kernel (ends at {:.1} MiB) with a {:.1} MiB initrd",
                kernel.end as f64 / MIB as f64,
                i.size as f64 / MIB as f64
            ),
            None => format!(
                "the kernel (ends at {:.1} MiB)",
                kernel.end as f64 / MIB as f64
            ),
        };
        return Err(LoaderError::MemoryTooSmall {
            what,
            needed_mib: needed / MIB,
            have_mib: mem / MIB,
        });
    }
    Ok(())
}

/// The kernel as loaded: where to enter and with which protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    pub entry: u64,
    pub pvh: bool,
    /// bzImage setup header, copied into the zero page.
    pub(crate) setup_header: Option<linux_loader::loader::bootparam::setup_header>,
}

/// Load the kernel image into guest memory.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    kernel: &KernelInfo,
) -> Result<LoadedKernel, LoaderError> {
    let mut f = open_kernel(&kernel.path)?;
    let highmem = Some(GuestAddress(HIGHMEM_START));
    match kernel.format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut f, highmem)?;
            let (entry, pvh) = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(a) => (a.0, true),
                _ => (r.kernel_load.0, false),
            };
            Ok(LoadedKernel {
                format: KernelFormat::Elf,
                entry,
                pvh,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, &mut f, highmem)?;
            Ok(LoadedKernel {
                format: KernelFormat::BzImage,
                // The 64-bit entry point is 0x200 past the protected-mode code.
                entry: r.kernel_load.0 + 0x200,
                pvh: false,
                setup_header: r.setup_header,
            })
        }
    }
}

/// Load the initrd at the top of low RAM (below 2 GiB), above the kernel.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    initrd: &InitrdInfo,
    kernel: &KernelInfo,
    mem_size: u64,
) -> Result<LoadedInitrd, LoaderError> {
    let top = low_ram_end(mem_size).min(INITRD_ADDR_MAX);
    let size = initrd.size;
    let addr = top.checked_sub(size).map(|a| a & !0xfff).unwrap_or(0);
    if addr < page_align_up(kernel.end) {
        return Err(LoaderError::MemoryTooSmall {
            what: format!("the initrd ({} KiB) above the kernel", size / 1024),
            needed_mib: min_guest_memory(kernel, Some(initrd)) / MIB,
            have_mib: mem_size / MIB,
        });
    }
    for (at, part) in part_offsets(&initrd.parts) {
        let unreadable = |source| LoaderError::InitrdUnreadable {
            path: part.path.clone(),
            source,
        };
        let mut f = File::open(&part.path).map_err(unreadable)?;
        let len = usize::try_from(part.size)
            .map_err(|_| unreadable(io::Error::other("too big for this host")))?;
        mem.read_exact_volatile_from(GuestAddress(addr + at), &mut f, len)
            .map_err(LoaderError::InitrdWrite)?;
    }
    Ok(LoadedInitrd { addr, size })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::create_guest_memory;
    use std::io::Write;
    use vmm_sys_util::tempfile::TempFile;

    pub(crate) fn file_with(bytes: &[u8]) -> TempFile {
        let t = TempFile::new().unwrap();
        t.as_file().write_all(bytes).unwrap();
        t
    }

    /// A minimal x86-64 ELF: one PT_LOAD of `code` at `paddr`, and a PVH
    /// note when `pvh` is given.
    pub(crate) fn tiny_elf(paddr: u64, code: &[u8], memsz: u64, pvh: Option<u32>) -> Vec<u8> {
        let phnum: u16 = if pvh.is_some() { 2 } else { 1 };
        let mut v = vec![0u8; 64];
        v[..4].copy_from_slice(ELF_MAGIC);
        v[4] = ELFCLASS64;
        v[5] = ELFDATA2LSB;
        v[6] = 1;
        v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        v[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        v[20..24].copy_from_slice(&1u32.to_le_bytes());
        v[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry
        v[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        v[52..54].copy_from_slice(&64u16.to_le_bytes());
        v[54..56].copy_from_slice(&56u16.to_le_bytes());
        v[56..58].copy_from_slice(&phnum.to_le_bytes());
        let data_off = 64 + 56 * u64::from(phnum);
        let note_off = data_off + code.len() as u64;
        let mut ph = vec![0u8; 56];
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[8..16].copy_from_slice(&data_off.to_le_bytes());
        ph[16..24].copy_from_slice(&paddr.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        v.extend_from_slice(&ph);
        let mut note = Vec::new();
        if let Some(entry) = pvh {
            note.extend_from_slice(&4u32.to_le_bytes()); // namesz
            note.extend_from_slice(&4u32.to_le_bytes()); // descsz
            note.extend_from_slice(&18u32.to_le_bytes()); // PHYS32_ENTRY
            note.extend_from_slice(b"Xen\0");
            note.extend_from_slice(&entry.to_le_bytes());
            let mut ph = vec![0u8; 56];
            ph[0..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
            ph[8..16].copy_from_slice(&note_off.to_le_bytes());
            ph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&(note.len() as u64).to_le_bytes());
            v.extend_from_slice(&ph);
        }
        v.extend_from_slice(code);
        v.extend_from_slice(&note);
        v
    }

    #[test]
    fn missing_kernel_says_how_to_build_it() {
        let e = inspect_kernel(Path::new("/nonexistent/vmlinux")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LoaderError::KernelNotFound(_)));
        assert!(msg.contains("/nonexistent/vmlinux"), "{msg}");
        assert!(msg.contains("cargo xtask images"), "{msg}");
        assert!(msg.contains("--kernel"), "{msg}");
    }

    #[test]
    fn not_a_kernel() {
        let t = file_with(b"#!/bin/sh\necho hello\n");
        let e = inspect_kernel(t.as_path()).unwrap_err();
        assert!(matches!(e, LoaderError::NotAKernel { .. }), "{e}");
        assert!(e.to_string().contains("not a kernel image"));
        let empty = file_with(b"");
        assert!(matches!(
            inspect_kernel(empty.as_path()),
            Err(LoaderError::NotAKernel { .. })
        ));
        assert!(matches!(
            inspect_kernel(Path::new("/tmp")),
            Err(LoaderError::NotAKernel { .. })
        ));
        // An ELF for another machine.
        let mut elf = tiny_elf(0x100_0000, &[0xf4], 0x1000, None);
        elf[18] = 183; // aarch64
        let t = file_with(&elf);
        let e = inspect_kernel(t.as_path()).unwrap_err();
        assert!(e.to_string().contains("not x86-64"), "{e}");
    }

    #[test]
    fn unreadable_kernel() {
        // Root can read anything; only check the error kind mapping when we are not root.
        let t = file_with(&tiny_elf(0x100_0000, &[0xf4], 0x1000, None));
        std::fs::set_permissions(
            t.as_path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(matches!(
                inspect_kernel(t.as_path()),
                Err(LoaderError::KernelUnreadable { .. })
            ));
        }
    }

    #[test]
    fn elf_inspection_and_memory_check() {
        let t = file_with(&tiny_elf(0x100_0000, &[0xf4], 0x80_0000, Some(0x100_0000)));
        let k = inspect_kernel(t.as_path()).unwrap();
        assert_eq!(k.format, KernelFormat::Elf);
        assert_eq!(k.end, 0x180_0000);
        assert_eq!(min_guest_memory(&k, None), 24 * MIB + GUEST_HEADROOM);
        assert!(check_memory(&k, None, 32 * MIB).is_ok());
        let e = check_memory(&k, None, 16 * MIB).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("too small") && msg.contains("32 MiB") && msg.contains("16 MiB"),
            "{msg}"
        );
        let i = InitrdInfo {
            parts: vec![InitrdPart {
                path: "x".into(),
                size: 4 * MIB,
            }],
            size: 4 * MIB,
        };
        assert!(check_memory(&k, Some(&i), 32 * MIB).is_err());
        assert!(check_memory(&k, Some(&i), 40 * MIB).is_ok());
    }

    /// Fuzzing regression (kernel_loader): a segment ending near 2^64 made
    /// min_guest_memory overflow; now it is refused by name.
    #[test]
    fn kernel_ending_beyond_guest_ram_is_refused() {
        let t = file_with(&tiny_elf(0xffff_ffff_ffff_0000, &[0xf4], 0xffff, None));
        let e = inspect_kernel(t.as_path()).unwrap_err().to_string();
        assert!(e.contains("beyond the largest guest RAM"), "{e}");
        let k = KernelInfo {
            path: "x".into(),
            format: KernelFormat::Elf,
            end: u64::MAX,
        };
        assert_eq!(min_guest_memory(&k, None), u64::MAX); // saturates
        assert!(check_memory(&k, None, 64 * MIB).is_err());
    }

    #[test]
    fn bzimage_header_inspection() {
        let mut b = vec![0u8; 0x1000];
        b[0x1f1] = 1; // setup_sects
        b[0x202..0x206].copy_from_slice(&BZ_MAGIC.to_le_bytes());
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x211] = 1; // loadflags: LOADED_HIGH
        b[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
        b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[0x260..0x264].copy_from_slice(&0x200_0000u32.to_le_bytes());
        let t = file_with(&b);
        let k = inspect_kernel(t.as_path()).unwrap();
        assert_eq!(k.format, KernelFormat::BzImage);
        assert_eq!(k.end, 0x300_0000);
        // Old protocol.
        b[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
        let t = file_with(&b);
        assert!(inspect_kernel(t.as_path())
            .unwrap_err()
            .to_string()
            .contains("2.12"));
    }

    #[test]
    fn missing_initrd() {
        assert!(matches!(
            inspect_initrd(Path::new("/nonexistent/initrd")),
            Err(LoaderError::InitrdNotFound(_))
        ));
    }

    #[test]
    fn initrd_that_does_not_fit_above_the_kernel() {
        let mem_size = 20 * MIB;
        let mem = create_guest_memory(mem_size).unwrap();
        let k = KernelInfo {
            path: "x".into(),
            format: KernelFormat::Elf,
            end: 18 * MIB,
        };
        let it = file_with(&vec![0u8; 3 << 20]);
        let ii = inspect_initrd(it.as_path()).unwrap();
        assert!(matches!(
            load_initrd(&mem, &ii, &k, mem_size),
            Err(LoaderError::MemoryTooSmall { .. })
        ));
    }

    #[test]
    fn initrd_parts_load_back_to_back_on_4_byte_boundaries() {
        let mem_size = 32 * MIB;
        let mem = create_guest_memory(mem_size).unwrap();
        let t = file_with(&tiny_elf(0x100_0000, &[0xf4], 0x1000, None));
        let k = inspect_kernel(t.as_path()).unwrap();
        let (a, b) = (file_with(b"first"), file_with(b"second part"));
        let ii = inspect_initrd_parts(&[a.as_path(), b.as_path()]).unwrap();
        assert_eq!(ii.parts.len(), 2);
        assert_eq!(ii.size, 8 + 11, "5 bytes padded to 8, then 11");
        let li = load_initrd(&mem, &ii, &k, mem_size).unwrap();
        assert_eq!(li.size, ii.size);
        let mut got = vec![0u8; 19];
        mem.read_slice(&mut got, GuestAddress(li.addr)).unwrap();
        assert_eq!(&got, b"first\0\0\0second part");
        // One missing part fails the whole initrd, naming it.
        let e =
            inspect_initrd_parts(&[a.as_path(), Path::new("/nonexistent/extra.cpio")]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/extra.cpio"), "{e}");
    }
}
