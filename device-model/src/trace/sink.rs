//! The trace writer: a bounded queue drained by a thread of its own.
//!
//! Cost on the device side is one lock (shared with the writer, which holds
//! it only to swap the whole batch out), an `Instant::now()` and a push. Waking the writer needs a futex syscall, so the device only wakes it
//! when it sleeps with nothing to do, or when the queue passes a high-water
//! mark while it lingers; the rest of the time the writer picks up batches by
//! itself every `LINGER`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::{
    DmaEvent, DmaLine, Hex, MemoryLayout, TraceFooter, TraceHeader, HASH_NAME, TRACE_VERSION,
};
use crate::regs;
use crate::Dma24Config;

/// Records the queue holds before it drops (about 150 bytes each once
/// formatted; the queue holds events, about 80 bytes each).
pub const DEFAULT_QUEUE_CAPACITY: usize = 64 * 1024;
/// How long the writer waits for more records before writing a batch: bounds
/// how stale the file is while the device is active.
const LINGER: Duration = Duration::from_millis(2);

/// How to build a [`TraceSink`].
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Time zero of `t_ns`: the VM's start.
    pub start: Instant,
    /// Queue bound; a record submitted while it is full is dropped and counted.
    pub capacity: usize,
    /// Hash the bytes each access moved (the `hash` field). Hashing reads
    /// every byte again on the device's thread, which costs about as much as
    /// the copy itself; without it the trace costs a few percent, and
    /// `hash` is null (the header says `"hash":"none"`).
    pub hash: bool,
    /// The guest's address map, written in the header (the device model
    /// does not know it; the VMM does).
    pub memory: Option<MemoryLayout>,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            start: Instant::now(),
            capacity: DEFAULT_QUEUE_CAPACITY,
            hash: true,
            memory: None,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TraceError {
    #[error("cannot create trace file {path}: {reason}; choose a writable path with --trace")]
    Create { path: String, reason: String },
    #[error("cannot write trace file {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot start the trace writer thread: {0}")]
    Thread(String),
}

/// What a finished trace contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceStats {
    pub records: u64,
    pub dropped: u64,
}

/// A handle on a trace file being written. Cheap to clone; the file is
/// completed (footer written, flushed) by [`TraceSink::finish`] or when the
/// last handle is dropped.
#[derive(Clone)]
pub struct TraceSink {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<Result<TraceStats, String>>>>,
    result: Mutex<Option<Result<TraceStats, TraceError>>>,
    path: String,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    start: Instant,
    bdf: String,
    capacity: usize,
    hash: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Waiting with no timeout: must be woken for the next record.
    Idle,
    /// Waiting up to LINGER for more records: wake only at high water.
    Lingering,
    /// Writing: will look at the queue again by itself.
    Busy,
}

/// What the writer is handed, in submission order.
enum Queued {
    /// A DMA record (its seq in the tuple).
    Dma(DmaEvent),
    /// An engine reset (the tuple's seq is the last DMA record's before it).
    Reset { last_transfer: u64 },
}

/// The serialized form of a reset ([`super::ResetRecord`], borrowed).
#[derive(serde::Serialize)]
struct ResetLine<'a> {
    t_ns: u64,
    bdf: &'a str,
    after_seq: u64,
    last_transfer: u64,
}

struct Queue {
    events: Vec<(u64, u64, Queued)>,
    next_seq: u64,
    dropped: u64,
    closed: bool,
    writer: WriterState,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

impl TraceSink {
    /// Creates (truncates) `path` and writes the header for `config`.
    pub fn create(path: impl AsRef<Path>, config: &Dma24Config) -> Result<Self, TraceError> {
        Self::create_with(path, config, TraceOptions::default())
    }

    pub fn create_with(
        path: impl AsRef<Path>,
        config: &Dma24Config,
        options: TraceOptions,
    ) -> Result<Self, TraceError> {
        let name = path.as_ref().display().to_string();
        let file = File::create(path.as_ref()).map_err(|e| TraceError::Create {
            path: name.clone(),
            reason: describe(&e),
        })?;
        Self::from_writer(name, Box::new(file), config, options)
    }

    /// Writes the trace to any writer (`name` is used in error messages).
    pub fn from_writer(
        name: String,
        writer: Box<dyn Write + Send>,
        config: &Dma24Config,
        options: TraceOptions,
    ) -> Result<Self, TraceError> {
        let capacity = options.capacity.max(1);
        let mut out = BufWriter::with_capacity(256 * 1024, writer);
        let header = TraceHeader {
            version: TRACE_VERSION,
            bdf: config.bdf.clone(),
            vendor_id: Hex(regs::VENDOR_ID.into()),
            device_id: Hex(regs::DEVICE_ID.into()),
            mask_bits: config.mask_bits,
            mask: Hex(config.mask()),
            overflow: config.overflow.as_str().to_string(),
            devmem_size: config.devmem_size,
            hash: if options.hash { HASH_NAME } else { "none" }.to_string(),
            queue_capacity: capacity,
            memory: options.memory.clone(),
        };
        write_tagged(&mut out, "header", &header)
            .and_then(|()| out.flush())
            .map_err(|e| TraceError::Write {
                path: name.clone(),
                reason: describe(&e),
            })?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                events: Vec::with_capacity(capacity.min(4096)),
                next_seq: 1,
                dropped: 0,
                closed: false,
                writer: WriterState::Busy,
            }),
            wake: Condvar::new(),
            start: options.start,
            bdf: config.bdf.clone(),
            capacity,
            hash: options.hash,
        });
        let thread_shared = Arc::clone(&shared);
        let writer = thread::Builder::new()
            .name("dma24-trace".into())
            .spawn(move || write_loop(&thread_shared, out))
            .map_err(|e| TraceError::Thread(e.to_string()))?;
        Ok(TraceSink {
            handle: Arc::new(Handle {
                shared,
                writer: Mutex::new(Some(writer)),
                result: Mutex::new(None),
                path: name,
            }),
        })
    }

    /// Queues one event; returns its sequence number. Never blocks on I/O:
    /// if the queue is full (or the trace finished) the event is counted as
    /// dropped instead.
    pub fn submit(&self, event: DmaEvent) -> u64 {
        let shared = &self.handle.shared;
        let mut q = lock(&shared.queue);
        let seq = q.next_seq;
        q.next_seq += 1;
        if q.closed || q.events.len() >= shared.capacity {
            q.dropped += 1;
            if q.dropped == 1 {
                log::warn!("dma24 trace: queue full, dropping records (counted in the footer)");
            }
            return seq;
        }
        let t_ns = u64::try_from(shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        q.events.push((seq, t_ns, Queued::Dma(event)));
        Self::wake_writer(shared, q);
        seq
    }

    /// Queues a reset record after everything submitted so far. Bounded
    /// like the DMA records: a full queue drops it (counted in `dropped`),
    /// so a guest writing CTRL_RESET in a loop cannot grow host memory.
    pub fn submit_reset(&self, last_transfer: u64) {
        let shared = &self.handle.shared;
        let mut q = lock(&shared.queue);
        if q.closed || q.events.len() >= shared.capacity {
            q.dropped += 1;
            return;
        }
        let t_ns = u64::try_from(shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let after_seq = q.next_seq - 1;
        q.events
            .push((after_seq, t_ns, Queued::Reset { last_transfer }));
        Self::wake_writer(shared, q);
    }

    /// Wakes the writer if it sleeps, or lingers past the high-water mark.
    fn wake_writer(shared: &Shared, q: MutexGuard<'_, Queue>) {
        let wake = match q.writer {
            WriterState::Idle => true,
            WriterState::Lingering => q.events.len() >= shared.capacity / 4,
            WriterState::Busy => false,
        };
        drop(q);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Whether events should carry a hash of the bytes moved.
    pub fn hashes(&self) -> bool {
        self.handle.shared.hash
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        lock(&self.handle.shared.queue).dropped
    }

    /// Writes what is queued and the footer, flushes, and stops the writer.
    /// Later calls return the same result; later events are dropped.
    pub fn finish(&self) -> Result<TraceStats, TraceError> {
        self.handle.finish()
    }
}

impl Handle {
    fn finish(&self) -> Result<TraceStats, TraceError> {
        let mut result = lock(&self.result);
        if let Some(r) = result.as_ref() {
            return r.clone();
        }
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
        let joined = lock(&self.writer).take().map(JoinHandle::join);
        let r = match joined {
            Some(Ok(Ok(stats))) => Ok(stats),
            Some(Ok(Err(reason))) => Err(TraceError::Write {
                path: self.path.clone(),
                reason,
            }),
            _ => Err(TraceError::Write {
                path: self.path.clone(),
                reason: "trace writer thread panicked".into(),
            }),
        };
        *result = Some(r.clone());
        r
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::error!("dma24 trace: {e}");
        }
    }
}

fn write_tagged<T: serde::Serialize>(out: &mut impl Write, tag: &str, value: &T) -> io::Result<()> {
    // `{"type":"<tag>",` + the object's fields without its opening brace.
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    write!(out, "{{\"type\":\"{tag}\",")?;
    out.write_all(body.get(1..).unwrap_or_default())?;
    out.write_all(b"\n")
}

/// The writer thread: take a batch, format it, repeat; footer on close.
fn write_loop(
    shared: &Shared,
    mut out: BufWriter<Box<dyn Write + Send>>,
) -> Result<TraceStats, String> {
    let mut batch = Vec::new();
    let mut written = 0u64;
    let mut failure: Option<String> = None;
    loop {
        let closed = {
            let mut q = lock(&shared.queue);
            let mut lingered = false;
            while !q.closed && (q.events.is_empty() || !lingered) {
                if q.events.is_empty() {
                    q.writer = WriterState::Idle;
                    q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                } else {
                    q.writer = WriterState::Lingering;
                    q = shared
                        .wake
                        .wait_timeout(q, LINGER)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    lingered = true;
                }
            }
            q.writer = WriterState::Busy;
            std::mem::swap(&mut batch, &mut q.events);
            q.closed
        };
        for (seq, t_ns, queued) in batch.drain(..) {
            if failure.is_some() {
                continue;
            }
            let res = match &queued {
                Queued::Dma(event) => {
                    let line = DmaLine::new(seq, t_ns, &shared.bdf, event);
                    serde_json::to_writer(&mut out, &line)
                        .map_err(io::Error::other)
                        .and_then(|()| out.write_all(b"\n"))
                }
                Queued::Reset { last_transfer } => {
                    let line = ResetLine {
                        t_ns,
                        bdf: &shared.bdf,
                        after_seq: seq,
                        last_transfer: *last_transfer,
                    };
                    write_tagged(&mut out, "reset", &line)
                }
            };
            match res {
                // The footer's `records` counts DMA records (resets have no seq).
                Ok(()) => written += u64::from(matches!(queued, Queued::Dma(_))),
                Err(e) => failure = Some(describe(&e)),
            }
        }
        if failure.is_none() {
            if let Err(e) = out.flush() {
                failure = Some(describe(&e));
            }
        }
        if closed && lock(&shared.queue).events.is_empty() {
            break;
        }
    }
    let dropped = lock(&shared.queue).dropped;
    if let Some(reason) = failure {
        return Err(reason);
    }
    let t_ns = u64::try_from(shared.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let footer = TraceFooter {
        records: written,
        dropped,
        t_ns,
    };
    write_tagged(&mut out, "footer", &footer)
        .and_then(|()| out.flush())
        .map_err(|e| describe(&e))?;
    Ok(TraceStats {
        records: written,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Direction, Outcome};

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event(i: u64) -> DmaEvent {
        DmaEvent {
            transfer: i,
            segment: 0,
            dir: Direction::ToDevice,
            requested_addr: 0x1000 * i,
            effective_addr: Some(0x1000 * i),
            len: 64,
            dev_offset: 0,
            mask_bits: 24,
            outcome: Outcome::Ok,
            hash: Some(i),
        }
    }

    fn lines(buf: &SharedBuf) -> Vec<serde_json::Value> {
        let text = String::from_utf8(lock(&buf.0).clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn header_records_footer() {
        let buf = SharedBuf::default();
        let cfg = Dma24Config::default();
        let sink = TraceSink::from_writer(
            "mem".into(),
            Box::new(buf.clone()),
            &cfg,
            TraceOptions::default(),
        )
        .unwrap();
        for i in 1..=100 {
            assert_eq!(sink.submit(event(i)), i);
        }
        assert_eq!(
            sink.finish(),
            Ok(TraceStats {
                records: 100,
                dropped: 0
            })
        );
        assert_eq!(
            sink.finish(),
            Ok(TraceStats {
                records: 100,
                dropped: 0
            })
        );
        let v = lines(&buf);
        assert_eq!(v.len(), 102);
        assert_eq!(v[0]["type"], "header");
        assert_eq!(v[0]["version"], 1);
        assert_eq!(v[0]["mask_bits"], 24);
        assert_eq!(v[0]["mask"], "0xffffff");
        assert_eq!(v[0]["vendor_id"], "0x1234");
        assert_eq!(v[0]["device_id"], "0xd024");
        assert_eq!(v[0]["overflow"], "reject");
        assert_eq!(v[0]["devmem_size"], 65536);
        assert_eq!(v[0]["bdf"], "0000:00:01.0");
        for (i, rec) in v[1..101].iter().enumerate() {
            assert_eq!(rec["type"], "dma");
            assert_eq!(rec["seq"], i as u64 + 1);
            assert_eq!(rec["bdf"], "0000:00:01.0");
        }
        assert_eq!(v[101]["type"], "footer");
        assert_eq!(v[101]["records"], 100);
        assert_eq!(v[101]["dropped"], 0);
        // After finish, events are dropped (and counted), never written.
        assert_eq!(sink.submit(event(1)), 101);
        assert_eq!(sink.dropped(), 1);
        assert_eq!(lines(&buf).len(), 102);
    }

    /// A writer that blocks until released, to fill the queue.
    struct Gate(Arc<(Mutex<bool>, Condvar)>, SharedBuf);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (m, cv) = &*self.0;
            let mut open = lock(m);
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let gate = Arc::new((Mutex::new(true), Condvar::new()));
        let buf = SharedBuf::default();
        let opts = TraceOptions {
            capacity: 8,
            ..TraceOptions::default()
        };
        let sink = TraceSink::from_writer(
            "mem".into(),
            Box::new(Gate(gate.clone(), buf.clone())),
            &Dma24Config::default(),
            opts,
        )
        .unwrap();
        *lock(&gate.0) = false; // header is written; now the disk "hangs"
                                // The writer may take one batch before it blocks; 8 more fill the queue.
        for i in 1..=40 {
            sink.submit(event(i));
        }
        let dropped = sink.dropped();
        assert!(dropped >= 40 - 16, "dropped {dropped}");
        *lock(&gate.0) = true;
        gate.1.notify_all();
        let stats = sink.finish().unwrap();
        assert_eq!(stats.records + stats.dropped, 40);
        assert_eq!(stats.dropped, dropped);
        let v = lines(&buf);
        assert_eq!(v.last().unwrap()["dropped"], dropped);
        assert_eq!(v.last().unwrap()["records"], stats.records);
        assert_eq!(v.len() as u64, stats.records + 2);
    }

    #[test]
    fn unwritable_path_has_a_clear_error() {
        let err = TraceSink::create("/nonexistent-dir/t.jsonl", &Dma24Config::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "cannot create trace file /nonexistent-dir/t.jsonl: no such directory; \
             choose a writable path with --trace"
        );
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn write_failure_is_reported() {
        let err = TraceSink::from_writer(
            "x".into(),
            Box::new(Broken),
            &Dma24Config::default(),
            TraceOptions::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "cannot write trace file x: disk on fire");
    }
}
