//! `dmalab run --module FILE [--module-args STR]`: a developer's own kernel
//! module in the default guest, without rebuilding its initramfs.
//!
//! The VMM checks that FILE is an x86-64 ELF relocatable kernel module, wraps
//! it (and its arguments) in a small newc cpio archive and puts that archive
//! in guest memory right in front of the initrd, as one initrd range. Linux
//! unpacks concatenated archives in order (each starting at a 4-byte aligned
//! offset; zero bytes between them are skipped), so the guest's rootfs gets
//! [`GUEST_DIR`]`/<name>.ko` and [`GUEST_DIR`]`/args` besides the default
//! initramfs. The guest's `/init` (dma24-tool, guest-driver/tool/src/init.rs;
//! the init script images/initramfs/init without it) loads that module
//! instead of its own `dmalab.ko` with the arguments, and ends the run
//! through the exit port with a non-zero status (dmalab exit code 5) when
//! the kernel refuses it, e.g. for a module built for another kernel.
//!
//! In front, not behind: the loader puts the initrd at the top of low RAM,
//! so the room is below it. The archive is padded to whole pages so the
//! initrd range starts page-aligned, as the loader's own does.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::loader::LoadedInitrd;

/// Where the module goes in the guest (no leading slash, as in a cpio).
pub const GUEST_DIR: &str = "lib/modules/user";
/// The largest module accepted (the default guest has 128 MiB of RAM).
pub const MAX_MODULE_BYTES: u64 = 32 << 20;
/// The longest `--module-args` accepted.
pub const MAX_ARGS_LEN: usize = 4096;

const PAGE: usize = 4096;
const ET_REL: u16 = 1;
const EM_X86_64: u16 = 62;
/// Every kernel module has it (the `struct module` modpost generates).
const THIS_MODULE_SECTION: &[u8] = b".gnu.linkonce.this_module";

/// Errors with `--module` and `--module-args` (exit code 2: the user's to fix).
#[derive(Debug, Error)]
pub enum ModuleError {
    #[error("--module {0}: no such file")]
    NotFound(PathBuf),
    #[error("--module {path}: cannot read it: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "--module {path} is not a kernel module: {why}. Give the .ko that \
         `make -C <kernel build tree> M=<module dir> modules` writes \
         (the default guest's tree: $DMALAB_CACHE/images/current/kernel-build)"
    )]
    NotAModule { path: PathBuf, why: String },
    #[error("--module {path} is {size} bytes: at most {MAX_MODULE_BYTES} are supported")]
    TooLarge { path: PathBuf, size: u64 },
    #[error(
        "--module-args: {0}; give space-separated name=value pairs on one line, \
         e.g. --module-args \"force_intx=1 timeout_ms=500\""
    )]
    BadArgs(String),
    #[error(
        "--module needs an initrd whose /init loads it: the default guest's \
         (omit --kernel/--initrd) or one built by images/build.sh"
    )]
    NoInitrd,
    #[error(
        "no room for the {kib} KiB module archive between the kernel and the \
         initrd: give the guest more memory (--mem)"
    )]
    NoRoom { kib: u64 },
    #[error("cannot write the module archive to guest memory: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// A checked module, wrapped as a page-padded newc cpio archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleArchive {
    /// The file name in the guest (`<name>.ko`).
    pub file_name: String,
    bytes: Vec<u8>,
}

impl ModuleArchive {
    /// Reads and checks `path`; `args` become the module's parameters.
    pub fn from_file(path: &Path, args: Option<&str>) -> Result<ModuleArchive, ModuleError> {
        let args = args.unwrap_or("").trim();
        check_args(args)?;
        let module = read_module(path)?;
        check_elf_module(&module).map_err(|why| ModuleError::NotAModule {
            path: path.to_path_buf(),
            why,
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty() && !s.contains(['/', '\0']))
            .unwrap_or("module");
        let file_name = format!("{stem}.ko");
        let mut args_file = args.as_bytes().to_vec();
        args_file.push(b'\n');
        let parts: Vec<&str> = GUEST_DIR.split('/').collect();
        let mut entries = Vec::new();
        for i in 1..=parts.len() {
            entries.push(CpioEntry::dir(parts[..i].join("/")));
        }
        entries.push(CpioEntry::file(format!("{GUEST_DIR}/{file_name}"), &module));
        entries.push(CpioEntry::file(format!("{GUEST_DIR}/args"), &args_file));
        let mut bytes = newc_archive(&entries);
        bytes.resize(bytes.len().div_ceil(PAGE) * PAGE, 0);
        Ok(ModuleArchive { file_name, bytes })
    }

    /// The archive's size in guest memory (whole pages).
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Always false: an archive holds at least its trailer.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The archive bytes (page-padded).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the archive right below `initrd` and returns the combined
    /// initrd range; `lowest` is the first address it may use (the kernel's end).
    pub fn prepend_to(
        &self,
        mem: &GuestMemoryMmap,
        initrd: LoadedInitrd,
        lowest: u64,
    ) -> Result<LoadedInitrd, ModuleError> {
        let no_room = ModuleError::NoRoom {
            kib: self.len() / 1024,
        };
        let addr = initrd.addr.checked_sub(self.len()).ok_or(no_room)?;
        if addr < lowest {
            return Err(ModuleError::NoRoom {
                kib: self.len() / 1024,
            });
        }
        mem.write_slice(&self.bytes, GuestAddress(addr))
            .map_err(ModuleError::Write)?;
        Ok(LoadedInitrd {
            addr,
            size: initrd.size + self.len(),
        })
    }
}

fn check_args(args: &str) -> Result<(), ModuleError> {
    if args.len() > MAX_ARGS_LEN {
        return Err(ModuleError::BadArgs(format!(
            "{} bytes, at most {MAX_ARGS_LEN}",
            args.len()
        )));
    }
    if let Some(c) = args.chars().find(|c| c.is_control()) {
        return Err(ModuleError::BadArgs(format!(
            "contains the control character {c:?}"
        )));
    }
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>, ModuleError> {
    let unreadable = |source| ModuleError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ModuleError::NotFound(path.to_path_buf()),
        _ => unreadable(e),
    })?;
    if !meta.is_file() {
        return Err(ModuleError::NotAModule {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_MODULE_BYTES {
        return Err(ModuleError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    Ok(bytes)
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn usize_at(b: &[u8], off: usize) -> Option<usize> {
    u64_at(b, off).and_then(|v| usize::try_from(v).ok())
}

/// Checks that `b` is a 64-bit little-endian x86-64 ELF relocatable with a
/// `.gnu.linkonce.this_module` section; says what is wrong otherwise. Every
/// offset is bounds-checked: the file is the user's, possibly garbage.
pub fn check_elf_module(b: &[u8]) -> Result<(), String> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("no ELF magic".into());
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let e_type = u16_at(b, 16).ok_or("truncated ELF header")?;
    let e_machine = u16_at(b, 18).ok_or("truncated ELF header")?;
    if e_machine != EM_X86_64 {
        return Err(format!(
            "built for ELF machine {e_machine}, not x86-64 (62)"
        ));
    }
    if e_type != ET_REL {
        return Err(format!(
            "ELF type {e_type} ({}), not a relocatable object (1)",
            match e_type {
                2 => "an executable",
                3 => "a shared object or PIE",
                4 => "a core dump",
                _ => "unknown",
            }
        ));
    }
    let shoff = usize_at(b, 0x28).ok_or("truncated ELF header")?;
    let shentsize = usize::from(u16_at(b, 0x3a).ok_or("truncated ELF header")?);
    let shnum = usize::from(u16_at(b, 0x3c).ok_or("truncated ELF header")?);
    let shstrndx = usize::from(u16_at(b, 0x3e).ok_or("truncated ELF header")?);
    if shentsize < 64 || shnum == 0 || shstrndx >= shnum {
        return Err("no usable section header table".into());
    }
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab_hdr = header(shstrndx).ok_or("section table out of range")?;
    let str_off = usize_at(b, strtab_hdr + 0x18).ok_or("section table beyond the file's end")?;
    let str_size = usize_at(b, strtab_hdr + 0x20).ok_or("section table beyond the file's end")?;
    let names = str_off
        .checked_add(str_size)
        .and_then(|end| b.get(str_off..end))
        .ok_or("section names beyond the file's end")?;
    for i in 0..shnum {
        let h = header(i).ok_or("section table out of range")?;
        let name_off = u32_at(b, h).ok_or("section table beyond the file's end")?;
        let name = usize::try_from(name_off)
            .ok()
            .and_then(|o| names.get(o..))
            .map(|n| n.split(|&c| c == 0).next().unwrap_or_default());
        if name == Some(THIS_MODULE_SECTION) {
            return Ok(());
        }
    }
    Err(
        "an ELF relocatable object without a .gnu.linkonce.this_module section \
         (a plain .o, not the .ko that modpost links)"
            .into(),
    )
}

/// One member of a newc archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry<'a> {
    pub name: String,
    pub mode: u32,
    pub data: &'a [u8],
}

impl<'a> CpioEntry<'a> {
    pub fn dir(name: String) -> CpioEntry<'static> {
        CpioEntry {
            name,
            mode: 0o040_755,
            data: &[],
        }
    }
    pub fn file(name: String, data: &'a [u8]) -> CpioEntry<'a> {
        CpioEntry {
            name,
            mode: 0o100_644,
            data,
        }
    }
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(4) * 4, 0);
}

fn newc_header(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) {
    // newc: "070701" and 13 fields of 8 hex digits; name and data each
    // padded to 4 bytes. Sizes are bounded by MAX_MODULE_BYTES, so they fit.
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// A newc ("070701") cpio archive of `entries` with its trailer, a multiple
/// of 4 bytes long.
pub fn newc_archive(entries: &[CpioEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    // High inode numbers: distinct from the main initramfs's (hard links are
    // only matched for nlink >= 2 regular files, which these are not).
    for (ino, e) in (0x00d0_0000u32..).zip(entries) {
        let nlink = if e.mode & 0o040_000 != 0 { 2 } else { 1 };
        newc_header(&mut out, ino, e.mode, nlink, e.data.len(), &e.name);
        out.extend_from_slice(e.data);
        pad4(&mut out);
    }
    newc_header(&mut out, 0, 0, 1, 0, "TRAILER!!!");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vmm_sys_util::tempdir::TempDir;

    /// A minimal ELF64 relocatable: header, a section-name table and the
    /// sections named in `sections` (all empty).
    pub(crate) fn elf(e_type: u16, machine: u16, sections: &[&str]) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut offs = Vec::new();
        for s in sections.iter().chain([&".shstrtab"]) {
            offs.push(u32::try_from(names.len()).unwrap());
            names.extend_from_slice(s.as_bytes());
            names.push(0);
        }
        let shoff = 64 + names.len().div_ceil(8) * 8;
        let shnum = sections.len() + 2; // null + sections + .shstrtab
        let mut b = vec![0u8; shoff + shnum * 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&u16::try_from(shnum).unwrap().to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&u16::try_from(shnum - 1).unwrap().to_le_bytes());
        b[64..64 + names.len()].copy_from_slice(&names);
        for (i, off) in offs.iter().enumerate() {
            let h = shoff + (i + 1) * 64;
            b[h..h + 4].copy_from_slice(&off.to_le_bytes());
        }
        let h = shoff + (shnum - 1) * 64;
        b[h + 0x18..h + 0x20].copy_from_slice(&64u64.to_le_bytes());
        b[h + 0x20..h + 0x28].copy_from_slice(&(names.len() as u64).to_le_bytes());
        b
    }

    fn module() -> Vec<u8> {
        elf(ET_REL, EM_X86_64, &[".text", ".gnu.linkonce.this_module"])
    }

    #[test]
    fn accepts_a_kernel_module() {
        assert_eq!(check_elf_module(&module()), Ok(()));
    }

    #[test]
    fn rejects_what_is_not_a_module() {
        let why = |b: &[u8]| check_elf_module(b).unwrap_err();
        assert!(why(b"hello world").contains("no ELF magic"));
        assert!(why(b"\x7fELF").contains("64-bit"));
        assert!(why(&elf(2, EM_X86_64, &[])).contains("an executable"));
        assert!(why(&elf(3, EM_X86_64, &[])).contains("shared object"));
        assert!(why(&elf(ET_REL, 183, &[".gnu.linkonce.this_module"])).contains("183"));
        assert!(why(&elf(ET_REL, EM_X86_64, &[".text"])).contains("plain .o"));
        let mut short = module();
        short.truncate(70);
        assert!(
            why(&short).contains("beyond the file's end"),
            "{}",
            why(&short)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let m = module();
        for len in 0..m.len() {
            let _ = check_elf_module(&m[..len]);
        }
        // Section table offsets and counts at their extremes.
        for (off, val) in [(0x28, u64::MAX), (0x28, 1u64 << 40), (0x28, 60)] {
            let mut b = m.clone();
            b[off..off + 8].copy_from_slice(&val.to_le_bytes());
            assert!(check_elf_module(&b).is_err());
        }
        let mut b = m.clone();
        b[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&(u16::MAX - 1).to_le_bytes());
        assert!(check_elf_module(&b).is_err());
    }

    /// Parses a newc archive back: (name, mode, data) of each member up to the trailer.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            assert_eq!((total - b.len()) % 4, 0, "header not 4-byte aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).div_ceil(4) * 4;
            let data = b[data_at..data_at + size].to_vec();
            b = &b[(data_at + size).div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(b.iter().all(|&c| c == 0), "data after the trailer");
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn archive_round_trips() {
        let data = b"odd length!";
        let a = newc_archive(&[
            CpioEntry::dir("lib".into()),
            CpioEntry::file("lib/x.ko".into(), data),
        ]);
        assert_eq!(a.len() % 4, 0);
        let m = parse(&a);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("lib".into(), 0o040_755, vec![]));
        assert_eq!(m[1], ("lib/x.ko".into(), 0o100_644, data.to_vec()));
    }

    fn temp_file(bytes: &[u8]) -> (TempDir, PathBuf) {
        let dir = TempDir::new_with_prefix("/tmp/dmalab-initrd-module").unwrap();
        let p = dir.as_path().join("mydrv.ko");
        File::create(&p).unwrap().write_all(bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn module_archive_holds_module_and_args() {
        let m = module();
        let (_d, p) = temp_file(&m);
        let a = ModuleArchive::from_file(&p, Some(" force_intx=1 alloc=2 ")).unwrap();
        assert_eq!(a.file_name, "mydrv.ko");
        assert_eq!(a.len() % 4096, 0);
        let members = parse(a.bytes());
        let names: Vec<&str> = members.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "lib",
                "lib/modules",
                "lib/modules/user",
                "lib/modules/user/mydrv.ko",
                "lib/modules/user/args"
            ]
        );
        assert_eq!(members[3].2, m);
        assert_eq!(members[4].2, b"force_intx=1 alloc=2\n");
    }

    #[test]
    fn bad_inputs_are_the_users_errors() {
        let (_d, p) = temp_file(b"#!/bin/sh\necho not a module\n");
        let e = ModuleArchive::from_file(&p, None).unwrap_err();
        assert!(matches!(e, ModuleError::NotAModule { .. }), "{e}");
        assert!(e.to_string().contains("no ELF magic"), "{e}");
        let e = ModuleArchive::from_file(Path::new("/nonexistent/x.ko"), None).unwrap_err();
        assert!(matches!(e, ModuleError::NotFound(_)), "{e}");
        let e = ModuleArchive::from_file(Path::new("/"), None).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let (_d, p) = temp_file(&module());
        let e = ModuleArchive::from_file(&p, Some("a=1\nb=2")).unwrap_err();
        assert!(matches!(e, ModuleError::BadArgs(_)), "{e}");
        let long = "x".repeat(MAX_ARGS_LEN + 1);
        assert!(ModuleArchive::from_file(&p, Some(&long)).is_err());
    }

    #[test]
    fn prepends_below_the_initrd() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let (_d, p) = temp_file(&module());
        let a = ModuleArchive::from_file(&p, None).unwrap();
        let initrd = LoadedInitrd {
            addr: 0x8_0000,
            size: 0x1234,
        };
        let both = a.prepend_to(&mem, initrd, 0x1000).unwrap();
        assert_eq!(both.addr, 0x8_0000 - a.len());
        assert_eq!(both.size, 0x1234 + a.len());
        let mut back = vec![0u8; a.bytes().len()];
        mem.read_slice(&mut back, GuestAddress(both.addr)).unwrap();
        assert_eq!(back, a.bytes());
        // No room above the kernel: an error, nothing written.
        let e = a
            .prepend_to(&mem, initrd, 0x8_0000 - a.len() + 1)
            .unwrap_err();
        assert!(matches!(e, ModuleError::NoRoom { .. }), "{e}");
        let low = LoadedInitrd { addr: 0, size: 1 };
        assert!(a.prepend_to(&mem, low, 0).is_err());
    }
}
