//! `dmalab serve` at the protocol level, without QEMU: the rust-vmm
//! `vfio_user` crate's client (an implementation we did not write) for the
//! normal path, and a raw socket for what a broken or hostile client sends.
//! Each test starts the real binary on its own socket.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use device_model::regs::*;
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A server process with its socket and trace, killed (by PID) if a test
/// fails before it ends.
struct Server {
    child: Option<Child>,
    socket: PathBuf,
    trace: PathBuf,
}

impl Server {
    fn start(name: &str, device: &str) -> Server {
        let dir = std::env::temp_dir();
        let tag = format!("dmalab-serve-{}-{name}", std::process::id());
        let socket = dir.join(format!("{tag}.sock"));
        let trace = dir.join(format!("{tag}.trace.jsonl"));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(env!("CARGO_BIN_EXE_dmalab"))
            .args(["serve", "--device", device, "--socket"])
            .arg(&socket)
            .arg("--trace")
            .arg(&trace)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dmalab serve");
        let t0 = Instant::now();
        while !socket.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child: Some(child),
            socket,
            trace,
        }
    }

    /// Waits for the server to end; returns its exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let mut child = self.child.take().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let trace = std::fs::read_to_string(&self.trace).unwrap_or_default();
        (status.code(), err, trace)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.trace);
    }
}

/// A sealed memfd of `len` bytes: guest RAM as QEMU's memfd backend gives it.
fn guest_ram(len: u64) -> File {
    let name = c"dmalab-test-ram";
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: `fd` was just created and is owned by nothing else.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(len).unwrap();
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    // SAFETY: fcntl on a descriptor we own, no pointers.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    assert_eq!(r, 0);
    f
}

fn read32(c: &mut vfio_user::Client, region: u32, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(region, off, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn write32(c: &mut vfio_user::Client, region: u32, off: u64, v: u32) {
    c.region_write(region, off, &v.to_le_bytes()).unwrap();
}

fn wait_done(c: &mut vfio_user::Client) -> u32 {
    let t0 = Instant::now();
    loop {
        let s = read32(c, 0, REG_STATUS);
        if s & STATUS_BUSY == 0 {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "transfer never ended"
        );
    }
}

fn start(c: &mut vfio_user::Client, addr: u64, len: u32, cmd: u32) -> u32 {
    c.region_write(0, REG_DMA_ADDR, &addr.to_le_bytes())
        .unwrap();
    write32(c, 0, REG_DMA_LEN, len);
    write32(c, 0, REG_DEV_OFFSET, 0);
    write32(c, 0, REG_DMA_CMD, cmd);
    wait_done(c)
}

#[test]
fn the_crates_client_moves_data_through_mapped_memory_and_faults_elsewhere() {
    let server = Server::start("client", "dma24");
    let mut c = vfio_user::Client::new(&server.socket).expect("version + regions");
    let cfg = VFIO_PCI_CONFIG_REGION_INDEX;
    assert_eq!(c.region(cfg).map(|r| r.size), Some(256));
    assert_eq!(c.region(0).map(|r| r.size), Some(REGS_SIZE));
    assert_eq!(c.region(1).map(|r| r.size), Some(DEFAULT_DEVMEM_SIZE));
    let ids = read32(&mut c, cfg, 0);
    assert_eq!(ids, u32::from(VENDOR_ID) | u32::from(DEVICE_ID) << 16);
    // Memory decoding and bus mastering on, as the guest's driver would.
    c.region_write(cfg, 4, &6u16.to_le_bytes()).unwrap();
    assert_eq!(read32(&mut c, 0, REG_MAGIC), MAGIC);

    // Guest RAM [1 MiB, 2 MiB) is the memfd's second MiB.
    let ram = guest_ram(2 << 20);
    c.dma_map(1 << 20, 1 << 20, 1 << 20, ram.as_raw_fd())
        .unwrap();
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
    std::os::unix::fs::FileExt::write_all_at(&ram, &pattern, (1 << 20) + 0x3000).unwrap();

    // INTx through an eventfd: the device completes, the line fires.
    let intx = EventFd::new(EFD_NONBLOCK).unwrap();
    c.set_irqs(
        VFIO_PCI_INTX_IRQ_INDEX,
        VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD,
        0,
        1,
        &[intx.as_raw_fd()],
    )
    .unwrap();
    write32(&mut c, 0, REG_CONTROL, CTRL_IRQ_ENABLE);

    let status = start(&mut c, (1 << 20) + 0x3000, 4096, CMD_START);
    assert_eq!(status & STATUS_DONE, STATUS_DONE, "status {status:#x}");
    let mut devmem = vec![0u8; 4096];
    c.region_read(1, 0, &mut devmem).unwrap();
    assert_eq!(devmem, pattern, "BAR1 holds what was in the mapped RAM");
    assert_eq!(intx.read().unwrap(), 1, "INTx fired once");
    write32(&mut c, 0, REG_IRQ_STATUS, IRQ_DONE | IRQ_ERROR);

    // Back out to another page, then into memory the client never mapped.
    let status = start(
        &mut c,
        (1 << 20) + 0x8000,
        4096,
        CMD_START | CMD_FROM_DEVICE,
    );
    assert_eq!(status & STATUS_DONE, STATUS_DONE, "status {status:#x}");
    let mut back = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&ram, &mut back, (1 << 20) + 0x8000).unwrap();
    assert_eq!(back, pattern, "the device wrote the guest's RAM");
    let status = start(&mut c, 0x10_0000 - 0x1000, 4096, CMD_START);
    assert_eq!(status & STATUS_ERROR, STATUS_ERROR, "status {status:#x}");
    assert_eq!(read32(&mut c, 0, REG_ERROR), ERR_RAM);

    // After an unmap the same address is no longer RAM.
    c.dma_unmap(1 << 20, 1 << 20).unwrap();
    let status = start(&mut c, (1 << 20) + 0x3000, 4096, CMD_START);
    assert_eq!(read32(&mut c, 0, REG_ERROR), ERR_RAM, "status {status:#x}");

    // Reset: registers as after power-on (bus mastering off again).
    c.reset().unwrap();
    assert_eq!(
        read32(&mut c, 0, REG_MAGIC),
        0xffff_ffff,
        "decode off after reset"
    );
    c.shutdown().unwrap();
    drop(c);
    let (code, err, trace) = server.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("client disconnected"), "{err}");
    let outcomes: Vec<&str> = trace
        .lines()
        .filter_map(|l| l.split("\"outcome\":\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "ok", "rejected_ram", "rejected_ram"],
        "{trace}"
    );
    assert!(
        trace.lines().last().unwrap_or("").contains("\"footer\""),
        "{trace}"
    );
}

/// A raw client: one message, one reply (header fields and body).
struct Raw(UnixStream);

impl Raw {
    fn connect(p: &Path) -> Raw {
        let s = UnixStream::connect(p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw(s)
    }

    fn send(&mut self, id: u16, cmd: u16, size: u32, body: &[u8]) {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_le_bytes());
        m.extend_from_slice(&cmd.to_le_bytes());
        m.extend_from_slice(&size.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(body);
        self.0.write_all(&m).unwrap();
    }

    /// (id, flags, error, body)
    fn reply(&mut self) -> (u16, u32, u32, Vec<u8>) {
        let mut h = [0u8; 16];
        self.0.read_exact(&mut h).unwrap();
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let mut body = vec![0u8; size - 16];
        self.0.read_exact(&mut body).unwrap();
        (
            u16::from_le_bytes(h[0..2].try_into().unwrap()),
            u32::from_le_bytes(h[8..12].try_into().unwrap()),
            u32::from_le_bytes(h[12..16].try_into().unwrap()),
            body,
        )
    }

    /// Sends a well-sized message and expects an error reply with `errno`.
    fn refused(&mut self, id: u16, cmd: u16, body: &[u8], errno: i32) {
        self.send(id, cmd, u32::try_from(16 + body.len()).unwrap(), body);
        let (rid, flags, err, _) = self.reply();
        assert_eq!(rid, id);
        assert_eq!(flags & (1 << 5), 1 << 5, "error flag for command {cmd}");
        assert_eq!(err, errno.unsigned_abs(), "errno for command {cmd}");
    }
}

fn region_access(offset: u64, region: u32, count: u32) -> Vec<u8> {
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&region.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b
}

#[test]
fn malformed_and_hostile_messages_get_errors_and_the_server_survives() {
    let server = Server::start("hostile", "dma24");
    let mut c = Raw::connect(&server.socket);
    // VERSION whose capabilities are not NUL-terminated.
    c.refused(1, 1, b"\0\0\0\0{\"capabilities\":{}}", libc::EINVAL);
    // Too short for its command.
    c.refused(2, 9, &[0; 4], libc::EINVAL);
    // Unknown command; one the server does not implement.
    c.refused(3, 99, &[], libc::ENOTSUP);
    c.refused(4, 11, &[0; 16], libc::ENOTSUP);
    // Region reads out of range, of a region that does not exist, and of
    // 4 GiB (must be refused, not allocated).
    c.refused(5, 9, &region_access(250, 7, 8), libc::EINVAL);
    c.refused(6, 9, &region_access(0, 42, 4), libc::EINVAL);
    c.refused(7, 9, &region_access(0, 1, u32::MAX), libc::EINVAL);
    c.refused(8, 9, &region_access(u64::MAX - 1, 0, 4), libc::EINVAL);
    // A write that claims more data than it carries.
    let mut w = region_access(0, 1, 64);
    w.extend_from_slice(&[1, 2, 3]);
    c.refused(9, 10, &w, libc::EINVAL);
    // DMA map without a descriptor of an impossible range is accepted as
    // unreachable; unmapping what was never mapped is refused.
    let mut unmap = 24u32.to_le_bytes().to_vec();
    unmap.extend_from_slice(&0u32.to_le_bytes());
    unmap.extend_from_slice(&0x5000u64.to_le_bytes());
    unmap.extend_from_slice(&0x1000u64.to_le_bytes());
    c.refused(10, 3, &unmap, libc::EINVAL);
    // IRQs: an index that does not exist, eventfd data without descriptors.
    let mut irq = 20u32.to_le_bytes().to_vec();
    irq.extend_from_slice(&(VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD).to_le_bytes());
    irq.extend_from_slice(&1u32.to_le_bytes()); // MSI
    irq.extend_from_slice(&0u32.to_le_bytes());
    irq.extend_from_slice(&1u32.to_le_bytes());
    c.refused(11, 8, &irq, libc::EINVAL);
    irq[8..12].copy_from_slice(&9u32.to_le_bytes());
    c.refused(12, 8, &irq, libc::EINVAL);
    // Still serving: config space reads back the device.
    c.send(13, 9, 32, &region_access(0, 7, 4));
    let (id, flags, _, body) = c.reply();
    assert_eq!((id, flags & (1 << 5)), (13, 0));
    assert_eq!(
        body[16..20],
        (u32::from(VENDOR_ID) | u32::from(DEVICE_ID) << 16).to_le_bytes()
    );
    // A size no message can have: the stream cannot be followed, the
    // server disconnects (exit 0, trace closed) instead of guessing.
    c.send(14, 9, 8, &[]);
    let (code, err, trace) = server.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("message size 8 is outside"), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(trace.contains("\"footer\""), "{trace}");
}

#[test]
fn a_signal_stops_the_server_and_closes_the_trace() {
    let server = Server::start("signal", "dma24,mask-bits=32");
    let _c = Raw::connect(&server.socket);
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.as_ref().unwrap().id();
    // SAFETY: kill(2) on the PID of the child this test started.
    let r = unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGTERM) };
    assert_eq!(r, 0);
    let (code, err, trace) = server.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(trace.contains("\"footer\""), "{trace}");
    assert!(trace.contains("\"mask_bits\":32"), "{trace}");
}

#[test]
fn an_existing_socket_path_is_a_usage_error() {
    let path = std::env::temp_dir().join(format!("dmalab-serve-{}-exists", std::process::id()));
    std::fs::write(&path, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dmalab"))
        .args(["serve", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the path exists; remove it"), "{err}");
}
