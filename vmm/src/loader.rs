//! Kernel, initrd and command line: checking the inputs, loading them into
//! guest memory (linux-loader), and writing the boot information the entry
//! protocol needs (PVH `hvm_start_info` or the Linux zero page).
//!
//! Formats:
//! * ELF `vmlinux` (x86-64): entered through its PVH note
//!   (`XEN_ELFNOTE_PHYS32_ENTRY`) when it has one, else at `e_entry` with the
//!   64-bit boot protocol.
//! * `bzImage`: the 64-bit boot protocol at load address + 0x200 (the
//!   kernel decompresses itself; slow on PVM, prefer `vmlinux`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, E820_MAX_ENTRIES_ZEROPAGE};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info, XEN_HVM_START_MAGIC_VALUE,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, BzImage, KernelLoader};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::boot::{EntryPoint, EntryProtocol};
use crate::cpuid::{clearcpuid_arg, CpuPolicy};
use crate::memory::{
    low_ram_end, E820Entry, CMDLINE_ADDR, CMDLINE_MAX_SIZE, HIGHMEM_START, INITRD_ADDR_MAX, MIB,
    PVH_INFO_ADDR, PVH_MEMMAP_ADDR, PVH_MODLIST_ADDR, ZERO_PAGE_ADDR,
};

/// Memory the guest kernel needs beyond its image and the initrd (and the
/// initrd's unpacked copy) to boot: page structs, slabs, the early stack.
pub const GUEST_HEADROOM: u64 = 8 * MIB;
/// The guest kernel's timer frequency (images/kernel/dmalab.config: HZ=100),
/// used to compute `lpj=`.
pub const GUEST_HZ: u64 = 100;

/// Errors in the kernel, initrd or command line.
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
    #[error("kernel command line is {len} bytes, the limit is {} bytes", CMDLINE_MAX_SIZE - 1)]
    CmdlineTooLong { len: usize },
    #[error("invalid kernel command line {cmdline:?}: {why}")]
    CmdlineInvalid { cmdline: String, why: String },
    #[error("cannot load the kernel: {0}")]
    Load(#[from] linux_loader::loader::Error),
    #[error("cannot write the boot parameters: {0}")]
    BootParams(#[from] linux_loader::configurator::Error),
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

/// A checked initrd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitrdInfo {
    pub path: PathBuf,
    pub size: u64,
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
const BZ_MAGIC: u32 = 0x5372_6448; // "HdrS"
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
        let end = pref_address.max(HIGHMEM_START) + init_size;
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
    Ok(InitrdInfo {
        path: path.to_path_buf(),
        size: meta.len(),
    })
}

fn page_align_up(x: u64) -> u64 {
    x.div_ceil(4096) * 4096
}

/// Minimum guest RAM for this kernel and initrd, in bytes: the kernel image,
/// the initrd twice (the cpio and its unpacked files), and [`GUEST_HEADROOM`].
pub fn min_guest_memory(kernel: &KernelInfo, initrd: Option<&InitrdInfo>) -> u64 {
    let initrd = initrd.map_or(0, |i| page_align_up(i.size));
    (page_align_up(kernel.end) + 2 * initrd + GUEST_HEADROOM).div_ceil(MIB) * MIB
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

/// The command line dmalab starts every guest with (before `--cmdline`):
/// a serial console, `reboot=k` (reset through the i8042, which ends the
/// VMM), `panic=-1` (reboot at once after a panic, which the VMM reports as
/// exit code 3), no TSC calibration, no spectre mitigations, one UART, and
/// for `--cpu filtered` the `clearcpuid=` list of [`crate::cpuid`].
pub fn default_cmdline(policy: CpuPolicy, lpj: u64) -> String {
    let mut s = format!(
        "console=ttyS0 reboot=k panic=-1 tsc=reliable lpj={lpj} 8250.nr_uarts=1 mitigations=off"
    );
    if let Some(c) = clearcpuid_arg(policy) {
        s.push(' ');
        s.push_str(&c);
    }
    s
}

/// `lpj=` for a TSC of `tsc_khz` (the delay loop uses the TSC on x86-64).
pub fn lpj_for(tsc_khz: u32) -> u64 {
    let lpj = u64::from(tsc_khz) * 1000 / GUEST_HZ;
    if lpj == 0 {
        // Unknown TSC rate: a 2 GHz guess.
        20_000_000
    } else {
        lpj
    }
}

/// The full command line: defaults, then the user's `--cmdline`.
pub fn build_cmdline(
    policy: CpuPolicy,
    lpj: u64,
    extra: Option<&str>,
) -> Result<Cmdline, LoaderError> {
    let mut s = default_cmdline(policy, lpj);
    if let Some(e) = extra.map(str::trim).filter(|e| !e.is_empty()) {
        s.push(' ');
        s.push_str(e);
    }
    if s.len() >= CMDLINE_MAX_SIZE {
        return Err(LoaderError::CmdlineTooLong { len: s.len() });
    }
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(LoaderError::CmdlineInvalid {
            cmdline: s.clone(),
            why: format!("character {c:?} is not printable ASCII"),
        });
    }
    Cmdline::try_from(&s, CMDLINE_MAX_SIZE).map_err(|e| LoaderError::CmdlineInvalid {
        cmdline: s.clone(),
        why: e.to_string(),
    })
}

/// The kernel as loaded: where to enter and with which protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    pub entry: u64,
    pub pvh: bool,
    /// bzImage setup header, copied into the zero page.
    setup_header: Option<linux_loader::loader::bootparam::setup_header>,
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
    let mut f = File::open(&initrd.path).map_err(|source| LoaderError::InitrdUnreadable {
        path: initrd.path.clone(),
        source,
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(LoaderError::InitrdWrite)?;
    Ok(LoadedInitrd { addr, size })
}

/// Write the command line and the boot information; return the entry point.
pub fn write_boot_info(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    initrd: Option<LoadedInitrd>,
    cmdline: &Cmdline,
    e820: &[E820Entry],
) -> Result<EntryPoint, LoaderError> {
    load_cmdline(mem, GuestAddress(CMDLINE_ADDR), cmdline)?;
    let cmdline_len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes().len())
        .unwrap_or(0);
    if kernel.pvh {
        let mut info = hvm_start_info {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            cmdline_paddr: CMDLINE_ADDR,
            memmap_paddr: PVH_MEMMAP_ADDR,
            memmap_entries: e820.len() as u32,
            ..Default::default()
        };
        let memmap: Vec<hvm_memmap_table_entry> = e820
            .iter()
            .map(|e| hvm_memmap_table_entry {
                addr: e.addr,
                size: e.size,
                type_: e.kind as u32,
                reserved: 0,
            })
            .collect();
        let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
        if let Some(i) = initrd {
            info.nr_modules = 1;
            info.modlist_paddr = PVH_MODLIST_ADDR;
            params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
            let m = hvm_modlist_entry {
                paddr: i.addr,
                size: i.size,
                ..Default::default()
            };
            params.set_modules(&[m], GuestAddress(PVH_MODLIST_ADDR));
        }
        params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_ADDR));
        PvhBootConfigurator::write_bootparams(&params, mem)?;
        return Ok(EntryPoint {
            kernel_entry: kernel.entry,
            protocol: EntryProtocol::Pvh {
                start_info: PVH_INFO_ADDR,
            },
        });
    }

    let mut bp = boot_params::default();
    if let Some(h) = kernel.setup_header {
        bp.hdr = h;
    } else {
        bp.hdr.boot_flag = 0xaa55;
        bp.hdr.header = BZ_MAGIC;
        bp.hdr.kernel_alignment = 0x0100_0000;
    }
    bp.hdr.type_of_loader = 0xff;
    bp.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    bp.hdr.cmdline_size = cmdline_len as u32;
    if let Some(i) = initrd {
        bp.hdr.ramdisk_image = i.addr as u32;
        bp.hdr.ramdisk_size = i.size as u32;
    }
    let mut table = [boot_e820_entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    for (slot, e) in table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    bp.e820_table = table;
    bp.e820_entries = e820.len().min(E820_MAX_ENTRIES_ZEROPAGE) as u8;
    let params = BootParams::new(&bp, GuestAddress(ZERO_PAGE_ADDR));
    LinuxBootConfigurator::write_bootparams(&params, mem)?;
    Ok(EntryPoint {
        kernel_entry: kernel.entry,
        protocol: EntryProtocol::Linux64 {
            zero_page: ZERO_PAGE_ADDR,
        },
    })
}

/// Read back the command line from guest memory (tests, debugging).
pub fn read_cmdline(mem: &GuestMemoryMmap) -> Option<String> {
    let mut buf = vec![0u8; CMDLINE_MAX_SIZE];
    mem.read_slice(&mut buf, GuestAddress(CMDLINE_ADDR)).ok()?;
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::{create_guest_memory, e820_map};
    use std::io::Write;
    use vmm_sys_util::tempfile::TempFile;

    fn file_with(bytes: &[u8]) -> TempFile {
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
            path: "x".into(),
            size: 4 * MIB,
        };
        assert!(check_memory(&k, Some(&i), 32 * MIB).is_err());
        assert!(check_memory(&k, Some(&i), 40 * MIB).is_ok());
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
    fn cmdline_defaults_and_append() {
        let c = build_cmdline(CpuPolicy::Filtered, 25_000_000, Some(" rdinit=/bin/sh ")).unwrap();
        let s = c.as_cstring().unwrap().into_string().unwrap();
        assert!(s.starts_with("console=ttyS0 reboot=k panic=-1 tsc=reliable lpj=25000000 "));
        assert!(s.contains(" 8250.nr_uarts=1 mitigations=off clearcpuid=xsave,smap,"));
        assert!(s.ends_with(" rdinit=/bin/sh"), "{s}");
        let h = build_cmdline(CpuPolicy::Host, 1, None).unwrap();
        let s = h.as_cstring().unwrap().into_string().unwrap();
        assert!(!s.contains("clearcpuid"));
        // Init arguments after "--" stay at the end.
        let c =
            build_cmdline(CpuPolicy::Host, 1, Some("rdinit=/bin/sh -- -c \"echo hi\"")).unwrap();
        let s = c.as_cstring().unwrap().into_string().unwrap();
        assert!(s.ends_with("rdinit=/bin/sh -- -c \"echo hi\""), "{s}");
    }

    #[test]
    fn cmdline_errors() {
        let long = "x".repeat(CMDLINE_MAX_SIZE);
        assert!(matches!(
            build_cmdline(CpuPolicy::Filtered, 1, Some(&long)),
            Err(LoaderError::CmdlineTooLong { .. })
        ));
        assert!(matches!(
            build_cmdline(CpuPolicy::Filtered, 1, Some("a\nb")),
            Err(LoaderError::CmdlineInvalid { .. })
        ));
    }

    #[test]
    fn lpj_from_tsc() {
        assert_eq!(lpj_for(2_500_000), 25_000_000);
        assert_eq!(lpj_for(0), 20_000_000);
    }

    #[test]
    fn loads_a_pvh_elf_with_initrd() {
        let mem_size = 64 * MIB;
        let mem = create_guest_memory(mem_size).unwrap();
        let t = file_with(&tiny_elf(
            0x100_0000,
            &[0xf4, 0x90],
            0x1000,
            Some(0x100_0001),
        ));
        let k = inspect_kernel(t.as_path()).unwrap();
        let lk = load_kernel(&mem, &k).unwrap();
        assert!(lk.pvh);
        assert_eq!(lk.entry, 0x100_0001);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x100_0000)).unwrap(), 0xf4);
        let it = file_with(b"070701 initrd bytes");
        let ii = inspect_initrd(it.as_path()).unwrap();
        let li = load_initrd(&mem, &ii, &k, mem_size).unwrap();
        assert_eq!(li.addr % 4096, 0);
        assert!(li.addr + li.size <= mem_size);
        let cmd = build_cmdline(CpuPolicy::Filtered, 1, None).unwrap();
        let ep = write_boot_info(&mem, &lk, Some(li), &cmd, &e820_map(mem_size)).unwrap();
        assert_eq!(
            ep.protocol,
            EntryProtocol::Pvh {
                start_info: PVH_INFO_ADDR
            }
        );
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_ADDR)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.memmap_entries as usize, e820_map(mem_size).len());
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST_ADDR)).unwrap();
        assert_eq!((m.paddr, m.size), (li.addr, li.size));
        let e0: hvm_memmap_table_entry = mem.read_obj(GuestAddress(PVH_MEMMAP_ADDR)).unwrap();
        assert_eq!((e0.addr, e0.type_), (0, 1));
        assert!(read_cmdline(&mem).unwrap().starts_with("console=ttyS0"));
    }

    #[test]
    fn loads_an_elf_without_pvh_through_the_64bit_protocol() {
        let mem_size = 32 * MIB;
        let mem = create_guest_memory(mem_size).unwrap();
        let t = file_with(&tiny_elf(0x100_0000, &[0xf4], 0x1000, None));
        let k = inspect_kernel(t.as_path()).unwrap();
        let lk = load_kernel(&mem, &k).unwrap();
        assert!(!lk.pvh);
        assert_eq!(lk.entry, 0x100_0000);
        let cmd = build_cmdline(CpuPolicy::Host, 1, None).unwrap();
        let ep = write_boot_info(&mem, &lk, None, &cmd, &e820_map(mem_size)).unwrap();
        assert_eq!(
            ep.protocol,
            EntryProtocol::Linux64 {
                zero_page: ZERO_PAGE_ADDR
            }
        );
        let bp: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        let hdr = bp.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
        assert_eq!({ bp.e820_entries } as usize, e820_map(mem_size).len());
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
        let it = file_with(&vec![0u8; 3 * MIB as usize]);
        let ii = inspect_initrd(it.as_path()).unwrap();
        assert!(matches!(
            load_initrd(&mem, &ii, &k, mem_size),
            Err(LoaderError::MemoryTooSmall { .. })
        ));
    }
}
