//! Shared helpers for the integration tests: a tiny x86 assembler for
//! 32-bit protected-mode guests, an ELF wrapper with a PVH note (so `dmalab`
//! boots them exactly like a vmlinux), and a runner for the binary.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where mini guests are loaded (and entered, through PVH).
pub const GUEST_BASE: u32 = 0x10_0000;
/// The boot GDT's 32-bit code selector (vmm::boot::BOOT_CS32).
pub const CS32: u16 = 0x28;

/// A little assembler for 32-bit protected mode.
#[derive(Default)]
pub struct Asm {
    pub code: Vec<u8>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.code.extend_from_slice(b);
        self
    }
    /// Address of the next instruction.
    pub fn here(&self) -> u32 {
        GUEST_BASE + u32::try_from(self.code.len()).expect("mini guest code is tiny")
    }
    pub fn mov_dx(&mut self, v: u16) -> &mut Self {
        let b = v.to_le_bytes();
        self.bytes(&[0x66, 0xba, b[0], b[1]])
    }
    pub fn mov_al(&mut self, v: u8) -> &mut Self {
        self.bytes(&[0xb0, v])
    }
    pub fn mov_eax(&mut self, v: u32) -> &mut Self {
        self.bytes(&[0xb8]);
        self.bytes(&v.to_le_bytes())
    }
    pub fn mov_esp(&mut self, v: u32) -> &mut Self {
        self.bytes(&[0xbc]);
        self.bytes(&v.to_le_bytes())
    }
    /// `out imm8, al`
    pub fn out_al(&mut self, port: u8) -> &mut Self {
        self.bytes(&[0xe6, port])
    }
    /// `out dx, al`
    pub fn out_dx_al(&mut self) -> &mut Self {
        self.bytes(&[0xee])
    }
    /// `out dx, eax`
    pub fn out_dx_eax(&mut self) -> &mut Self {
        self.bytes(&[0xef])
    }
    /// Write `s` to the UART, byte by byte.
    pub fn print(&mut self, s: &str) -> &mut Self {
        self.mov_dx(0x3f8);
        for b in s.bytes() {
            self.mov_al(b).out_dx_al();
        }
        self
    }
    /// i8042 reset (what Linux does with reboot=k).
    pub fn reset(&mut self) -> &mut Self {
        self.mov_al(0xfe).out_al(0x64)
    }
    /// Write `status` to the exit port.
    pub fn exit(&mut self, status: u32) -> &mut Self {
        self.mov_dx(0xf4).mov_eax(status).out_dx_eax()
    }
    /// Write a byte to the boot-timer port.
    pub fn timer(&mut self, v: u8) -> &mut Self {
        self.mov_al(v).out_al(0xf5)
    }
    pub fn cli_hlt(&mut self) -> &mut Self {
        self.bytes(&[0xfa, 0xf4])
    }
    /// `jmp $`
    pub fn hang(&mut self) -> &mut Self {
        self.bytes(&[0xeb, 0xfe])
    }
    pub fn int3(&mut self) -> &mut Self {
        self.bytes(&[0xcc])
    }
    pub fn ud2(&mut self) -> &mut Self {
        self.bytes(&[0x0f, 0x0b])
    }
    pub fn iret(&mut self) -> &mut Self {
        self.bytes(&[0xcf])
    }
    /// `lidt [addr]`
    pub fn lidt(&mut self, addr: u32) -> &mut Self {
        self.bytes(&[0x0f, 0x01, 0x1d]);
        self.bytes(&addr.to_le_bytes())
    }
    /// `iretq` (64-bit mode)
    pub fn iretq(&mut self) -> &mut Self {
        self.bytes(&[0x48, 0xcf])
    }
    /// `lidt [addr]` with an absolute address (64-bit mode: no RIP-relative).
    pub fn lidt64(&mut self, addr: u32) -> &mut Self {
        self.bytes(&[0x0f, 0x01, 0x1c, 0x25]);
        self.bytes(&addr.to_le_bytes())
    }
    /// A 64-bit interrupt gate to `handler`.
    pub fn gate64(&mut self, handler: u32) -> &mut Self {
        self.bytes(&((handler & 0xffff) as u16).to_le_bytes());
        self.bytes(&CS64.to_le_bytes());
        self.bytes(&[0, 0x8e]);
        self.bytes(&((handler >> 16) as u16).to_le_bytes());
        self.bytes(&[0; 8])
    }
    /// Pad with `nop`s up to guest address `addr`.
    pub fn org(&mut self, addr: u32) -> &mut Self {
        while self.here() < addr {
            self.code.push(0x90);
        }
        self
    }
    /// A 32-bit interrupt gate to `handler`.
    pub fn gate(&mut self, handler: u32) -> &mut Self {
        let lo = (handler & 0xffff) as u16;
        let hi = (handler >> 16) as u16;
        self.bytes(&lo.to_le_bytes());
        self.bytes(&CS32.to_le_bytes());
        self.bytes(&[0, 0x8e]);
        self.bytes(&hi.to_le_bytes())
    }
}

/// The boot GDT's 64-bit code selector (vmm::boot::BOOT_CS64).
pub const CS64: u16 = 0x10;

/// Wrap `code` (loaded and entered at [`GUEST_BASE`]) in an x86-64 ELF with
/// a PT_LOAD segment and a PVH entry note: entered in 32-bit protected mode.
pub fn pvh_elf(code: &[u8]) -> Vec<u8> {
    elf(code, true)
}

/// The same without the PVH note: entered in long mode through the 64-bit
/// boot protocol (identity-mapped page tables).
pub fn long_mode_elf(code: &[u8]) -> Vec<u8> {
    elf(code, false)
}

fn elf(code: &[u8], pvh: bool) -> Vec<u8> {
    let paddr = u64::from(GUEST_BASE);
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // 64-bit
    v[5] = 1; // little-endian
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&paddr.to_le_bytes());
    v[32..40].copy_from_slice(&64u64.to_le_bytes());
    v[52..54].copy_from_slice(&64u16.to_le_bytes());
    v[54..56].copy_from_slice(&56u16.to_le_bytes());
    v[56..58].copy_from_slice(&(if pvh { 2u16 } else { 1 }).to_le_bytes());
    let code_off = 64 + if pvh { 2 * 56u64 } else { 56 };
    let note_off = code_off + code.len() as u64;
    let mut load = vec![0u8; 56];
    load[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    load[8..16].copy_from_slice(&code_off.to_le_bytes());
    load[16..24].copy_from_slice(&paddr.to_le_bytes());
    load[24..32].copy_from_slice(&paddr.to_le_bytes());
    load[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    load[40..48].copy_from_slice(&(code.len() as u64).max(0x1000).to_le_bytes());
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&GUEST_BASE.to_le_bytes());
    let mut nph = vec![0u8; 56];
    nph[0..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    nph[8..16].copy_from_slice(&note_off.to_le_bytes());
    nph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
    nph[40..48].copy_from_slice(&(note.len() as u64).to_le_bytes());
    v.extend_from_slice(&load);
    if pvh {
        v.extend_from_slice(&nph);
    }
    v.extend_from_slice(code);
    if pvh {
        v.extend_from_slice(&note);
    }
    v
}

/// A minimal bzImage: one setup sector after the boot sector, a boot
/// protocol 2.15 header, and `payload` (loaded at 1 MiB; its 64-bit entry is
/// at payload offset 0x200, as in a real bzImage).
pub fn tiny_bzimage(payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[0x1f1] = 1; // setup_sects
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x211] = 1; // loadflags: LOADED_HIGH
    b[0x214..0x218].copy_from_slice(&GUEST_BASE.to_le_bytes()); // code32_start
    b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    b[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    b[0x258..0x260].copy_from_slice(&u64::from(GUEST_BASE).to_le_bytes()); // pref_address
    b[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes()); // init_size
    b.extend_from_slice(payload);
    b
}

/// A file that is deleted when dropped.
pub struct TempPath(pub PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write `bytes` to a fresh temporary file.
pub fn temp_file(name: &str, bytes: &[u8]) -> TempPath {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "dmalab-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(bytes).unwrap();
    TempPath(p)
}

/// Whether /dev/kvm can be opened (tests that run guests skip without it).
pub fn have_kvm() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Whether the host's KVM is PVM.
pub fn host_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// The result of one `dmalab` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn dump(&self) -> String {
        format!(
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run the `dmalab` binary with `args`, stdin closed.
pub fn dmalab(args: &[&str]) -> Run {
    dmalab_env(args, &[])
}

/// Run the `dmalab` binary with `args`, feeding `input` on stdin.
pub fn dmalab_stdin(args: &[&str], input: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmalab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run dmalab");
    // Keep stdin open (no EOF) until the guest has stopped the VMM.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let out = child.wait_with_output().expect("dmalab did not finish");
    drop(stdin);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run the `dmalab` binary with `args` and extra environment.
pub fn dmalab_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmalab"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("cannot run dmalab");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Boot `code` as a PVH mini kernel with 16 MiB and a 60 s safety timeout.
pub fn run_mini(code: &[u8], extra: &[&str]) -> Run {
    run_elf(&pvh_elf(code), extra)
}

/// Boot an ELF mini kernel with 16 MiB and a 60 s safety timeout.
pub fn run_elf(elf: &[u8], extra: &[&str]) -> Run {
    run_elf_for(elf, "60", extra)
}

/// Boot `code` as a PVH mini kernel with 16 MiB, stopped after `secs`.
pub fn run_mini_for(code: &[u8], secs: &str, extra: &[&str]) -> Run {
    run_elf_for(&pvh_elf(code), secs, extra)
}

fn run_elf_for(elf: &[u8], secs: &str, extra: &[&str]) -> Run {
    let elf = temp_file("mini.elf", elf);
    let path = elf.0.to_str().unwrap().to_string();
    let mut args = vec![
        "run",
        "--kernel",
        &path,
        "--mem",
        "16",
        "--timeout",
        secs,
        "--no-stdin",
    ];
    args.extend_from_slice(extra);
    dmalab(&args)
}

/// The rel8 byte of a short jump to `target` whose next instruction is at
/// `next` (both offsets in the code).
pub fn rel8(target: usize, next: usize) -> u8 {
    let d = i64::try_from(target).unwrap() - i64::try_from(next).unwrap();
    i8::try_from(d).expect("short jump in range").to_le_bytes()[0]
}
