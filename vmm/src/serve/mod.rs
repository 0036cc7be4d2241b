//! `dmalab serve`: dma24 as a vfio-user device for another VMM (QEMU's
//! `vfio-user-pci`), on the same device model, trace and interrupt rules as
//! `dmalab run`.
//!
//! - `wire.rs`: the message format, reading and replying;
//! - `session.rs`: the device and what each command does;
//! - `dma_space.rs`: the client's DMA maps as the device's `GuestMemory`;
//! - `irqs.rs`: INTx and MSI through the client's eventfds.
//!
//! One client is served; when it disconnects the trace footer is written and
//! the server exits 0 (a VMM's device lives as long as its VM; a new guest
//! gets a new server and a new trace). SIGINT/SIGTERM end it the same way
//! with exit code 130. A client that breaks the protocol gets an error reply
//! and a log line; one whose stream cannot be followed any more (a message
//! size out of bounds, a stalled half message) is disconnected.

mod dma_space;
mod irqs;
mod session;
mod wire;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use device_model::Dma24Config;
use thiserror::Error;

pub use dma_space::{DmaSpace, DmaSpaceError, MAX_SLOTS};
pub use irqs::{EventfdInterrupts, IrqError};
pub use session::{server_capabilities, Session, SessionError};
pub use wire::{cmd, WireError, HEADER_LEN, MAX_DATA_XFER, MAX_MESSAGE};

use crate::pci::{open_trace_with_layout, parse_device_spec, AttachError};
use crate::stop::{ExitCode, StopReason, VmControl};

/// A half-sent message may stall at most this long.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// `dmalab serve` options.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct ServeArgs {
    /// The device: `dma24[,mask-bits=N][,overflow=reject|truncate][,mem=KIB]`.
    #[arg(long, value_name = "SPEC", default_value = "dma24", value_parser = parse_device)]
    pub device: Dma24Config,
    /// The vfio-user socket to listen on (must not exist yet).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Write the device's DMA trace (JSON Lines) to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Size cap of the trace file (bytes, or K/M/G): records past it are
    /// dropped and counted in the footer, the server goes on.
    #[arg(long, value_name = "SIZE", default_value = "256M",
          value_parser = device_model::trace::parse_size)]
    pub trace_max_size: u64,
}

fn parse_device(s: &str) -> Result<Dma24Config, String> {
    parse_device_spec(s).map_err(|e| e.to_string())
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "--socket {0}: the path exists; remove it (a server that ended leaves none) or pick another"
    )]
    SocketExists(PathBuf),
    #[error("--socket {path}: cannot listen: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Trace(#[from] AttachError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl ServeError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ServeError::SocketExists(_) | ServeError::Bind { .. } | ServeError::Trace(_) => {
                ExitCode::Usage
            }
            _ => ExitCode::VmmError,
        }
    }
}

/// Removes the socket file when the server ends, whatever the path.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Which of the watched descriptors are readable (poll(2)).
fn poll_readable(fds: &[RawFd]) -> Result<Vec<bool>, std::io::Error> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a valid array of p.len() pollfds for the call.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, 1000) };
        if r >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(p.iter().map(|x| x.revents != 0).collect())
}

/// Runs the server until the client leaves or a signal stops it.
pub fn serve(args: &ServeArgs) -> Result<ExitCode, ServeError> {
    // Inputs first: a bad trace path or socket is the user's to fix.
    if args.socket.exists() {
        return Err(ServeError::SocketExists(args.socket.clone()));
    }
    let trace = match &args.trace {
        Some(path) => Some(open_trace_with_layout(
            path,
            &args.device,
            None,
            args.trace_max_size,
        )?),
        None => None,
    };
    let listener = UnixListener::bind(&args.socket).map_err(|source| ServeError::Bind {
        path: args.socket.clone(),
        source,
    })?;
    let _socket_file = SocketFile(args.socket.clone());
    let control = Arc::new(VmControl::new().map_err(|source| ServeError::Io {
        what: "cannot create the stop eventfd",
        source,
    })?);
    crate::signals::forward_stop_signals(control.clone());
    let mut session = Session::new(args.device.clone(), trace)?;
    log::info!(
        "dma24 vfio-user server on {} ({} bits, {:?}); waiting for a client",
        args.socket.display(),
        args.device.mask_bits,
        args.device.overflow
    );
    let stop_fd = control.stop_evt().as_raw_fd();
    let stream = loop {
        let ready = poll_readable(&[listener.as_raw_fd(), stop_fd]).map_err(io("poll"))?;
        if ready[1] {
            break None;
        }
        if ready[0] {
            let (s, _) = listener.accept().map_err(io("cannot accept the client"))?;
            break Some(s);
        }
    };
    let code = match stream {
        Some(stream) => {
            log::info!("client connected");
            drop(listener);
            run_client(stream, &mut session, &control)?
        }
        None => ExitCode::Interrupted,
    };
    if let Some(StopReason::Signal(sig)) = control.reason() {
        log::warn!("signal {sig}: server stopped");
    }
    session.close();
    Ok(code)
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> ServeError {
    move |source| ServeError::Io { what, source }
}

/// Serves one client; returns the exit code for how it ended.
fn run_client(
    mut stream: UnixStream,
    session: &mut Session,
    control: &VmControl,
) -> Result<ExitCode, ServeError> {
    stream
        .set_read_timeout(Some(MESSAGE_TIMEOUT))
        .map_err(io("cannot set the socket timeout"))?;
    let stop_fd = control.stop_evt().as_raw_fd();
    loop {
        let mut fds = vec![stream.as_raw_fd(), stop_fd];
        if let Some(r) = session.irqs().resample_fd() {
            fds.push(r);
        }
        let ready = poll_readable(&fds).map_err(io("poll"))?;
        if ready[1] || control.should_stop() {
            return Ok(ExitCode::Interrupted);
        }
        if ready.get(2) == Some(&true) {
            session.irqs().resampled();
        }
        if !ready[0] {
            continue;
        }
        match serve_one(&mut stream, session) {
            Ok(true) => {}
            Ok(false) => {
                log::info!("client disconnected");
                return Ok(ExitCode::Clean);
            }
            Err(e) => {
                log::error!("client protocol error, disconnecting: {e}");
                return Ok(ExitCode::Clean);
            }
        }
    }
}

/// Reads and answers one message; false when the client has gone.
fn serve_one(stream: &mut UnixStream, session: &mut Session) -> Result<bool, WireError> {
    let Some(msg) = wire::read_message(stream)? else {
        return Ok(false);
    };
    let (id, command, no_reply) = (msg.id, msg.command, msg.no_reply);
    let probe = wire::Message {
        id,
        command,
        no_reply,
        payload: Vec::new(),
        fds: Vec::new(),
    };
    match session.handle(msg) {
        Ok(body) if !no_reply => wire::reply(stream, &probe, &body)?,
        Ok(_) => {}
        Err(e) => {
            log::warn!("client command {command} (id {id}) refused: {e}");
            if !no_reply {
                wire::reply_error(stream, &probe, e.errno())?;
            }
        }
    }
    Ok(true)
}
