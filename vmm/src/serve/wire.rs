//! The vfio-user wire format (libvfio-user's protocol, version 0.x): the
//! 16-byte header every message starts with, reading one whole message with
//! the file descriptors that came with it, and writing replies.
//!
//! Every length comes from the client and is checked before anything is
//! allocated: a message larger than [`MAX_MESSAGE`] or smaller than a header
//! is a protocol error that ends the connection (the stream cannot be
//! resynchronised), a short payload is an `EINVAL` reply.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;

use libc::{c_void, iovec};
use thiserror::Error;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Header size on the wire.
pub const HEADER_LEN: usize = 16;
/// The most a REGION_READ/WRITE moves in one message (advertised as
/// `max_data_xfer_size`).
pub const MAX_DATA_XFER: usize = 1 << 20;
/// The largest message accepted: a maximal region write plus its header.
pub const MAX_MESSAGE: usize = MAX_DATA_XFER + 4096;
/// File descriptors accepted with one message (advertised as `max_msg_fds`).
pub const MAX_FDS: usize = 8;

/// Commands (the protocol's numbering).
pub mod cmd {
    pub const VERSION: u16 = 1;
    pub const DMA_MAP: u16 = 2;
    pub const DMA_UNMAP: u16 = 3;
    pub const DEVICE_GET_INFO: u16 = 4;
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    pub const DEVICE_GET_REGION_IO_FDS: u16 = 6;
    pub const DEVICE_GET_IRQ_INFO: u16 = 7;
    pub const DEVICE_SET_IRQS: u16 = 8;
    pub const REGION_READ: u16 = 9;
    pub const REGION_WRITE: u16 = 10;
    pub const DMA_READ: u16 = 11;
    pub const DMA_WRITE: u16 = 12;
    pub const DEVICE_RESET: u16 = 13;
}

const FLAG_TYPE_MASK: u32 = 0xf;
const FLAG_REPLY: u32 = 1;
const FLAG_NO_REPLY: u32 = 1 << 4;
const FLAG_ERROR: u32 = 1 << 5;

#[derive(Debug, Error)]
pub enum WireError {
    #[error("cannot read from the client: {0}")]
    Read(#[source] std::io::Error),
    #[error("cannot write to the client: {0}")]
    Write(#[source] std::io::Error),
    #[error("message size {0} is outside {HEADER_LEN}..={MAX_MESSAGE} bytes")]
    Size(u32),
    #[error("message type {0:#x} is not a command")]
    NotCommand(u32),
}

/// One message from the client.
#[derive(Debug)]
pub struct Message {
    pub id: u16,
    pub command: u16,
    pub no_reply: bool,
    /// What follows the header.
    pub payload: Vec<u8>,
    /// File descriptors that came with the message.
    pub fds: Vec<File>,
}

/// Reads little-endian integers out of a payload; every read is bounds
/// checked, a short payload gives `None`.
pub struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.0
            .get(at..at.checked_add(N)?)
            .and_then(|b| b.try_into().ok())
    }
    pub fn u16(&self, at: usize) -> Option<u16> {
        self.take(at).map(u16::from_le_bytes)
    }
    pub fn u32(&self, at: usize) -> Option<u32> {
        self.take(at).map(u32::from_le_bytes)
    }
    pub fn u64(&self, at: usize) -> Option<u64> {
        self.take(at).map(u64::from_le_bytes)
    }
}

/// Reads one message. `Ok(None)`: the client closed the connection between
/// messages.
pub fn read_message(stream: &mut UnixStream) -> Result<Option<Message>, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let mut raw_fds: [RawFd; MAX_FDS] = [-1; MAX_FDS];
    let mut iov = [iovec {
        iov_base: header.as_mut_ptr().cast::<c_void>(),
        iov_len: header.len(),
    }];
    // SAFETY: the iovec points at `header`, which lives for the call and may
    // hold any bytes; `raw_fds` is large enough for MAX_FDS descriptors.
    let (got, nfds) = unsafe { stream.recv_with_fds(&mut iov, &mut raw_fds) }
        .map_err(|e| WireError::Read(std::io::Error::from_raw_os_error(e.errno())))?;
    let fds: Vec<File> = raw_fds[..nfds.min(MAX_FDS)]
        .iter()
        .filter(|&&fd| fd >= 0)
        // SAFETY: the kernel just installed these descriptors for us
        // (SCM_RIGHTS); nothing else owns them.
        .map(|&fd| unsafe { File::from_raw_fd(fd) })
        .collect();
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        let rest = header.get_mut(got..).unwrap_or_default();
        stream.read_exact(rest).map_err(WireError::Read)?;
    }
    let f = Fields(&header);
    let (id, command) = (f.u16(0).unwrap_or(0), f.u16(2).unwrap_or(0));
    let size = f.u32(4).unwrap_or(0);
    let flags = f.u32(8).unwrap_or(0);
    let total = usize::try_from(size).unwrap_or(usize::MAX);
    if !(HEADER_LEN..=MAX_MESSAGE).contains(&total) {
        return Err(WireError::Size(size));
    }
    let mut payload = vec![0u8; total - HEADER_LEN];
    stream.read_exact(&mut payload).map_err(WireError::Read)?;
    if flags & FLAG_TYPE_MASK != 0 {
        return Err(WireError::NotCommand(flags & FLAG_TYPE_MASK));
    }
    Ok(Some(Message {
        id,
        command,
        no_reply: flags & FLAG_NO_REPLY != 0,
        payload,
        fds,
    }))
}

fn header(id: u16, command: u16, total: usize, flags: u32, error: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&command.to_le_bytes());
    // Replies are built from checked lengths: at most MAX_MESSAGE bytes.
    h.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&error.to_le_bytes());
    h
}

/// Sends a successful reply to `msg` with `body` after the header.
pub fn reply(stream: &mut UnixStream, msg: &Message, body: &[u8]) -> Result<(), WireError> {
    let mut out = header(msg.id, msg.command, HEADER_LEN + body.len(), FLAG_REPLY, 0);
    out.extend_from_slice(body);
    stream.write_all(&out).map_err(WireError::Write)
}

/// Sends an error reply (`errno`) to `msg`.
pub fn reply_error(stream: &mut UnixStream, msg: &Message, errno: i32) -> Result<(), WireError> {
    let out = header(
        msg.id,
        msg.command,
        HEADER_LEN,
        FLAG_REPLY | FLAG_ERROR,
        errno.unsigned_abs(),
    );
    stream.write_all(&out).map_err(WireError::Write)
}
