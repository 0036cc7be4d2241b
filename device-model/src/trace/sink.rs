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

use super::limit::{Budget, DEFAULT_MAX_SIZE};
use super::{
    DmaEvent, DmaLine, DmaRecord, Hex, MemoryLayout, Record, ResetRecord, TraceFooter, TraceHeader,
    HASH_NAME, TRACE_VERSION,
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
    /// Size cap of the file in bytes (see `limit.rs`): records past it are
    /// dropped and counted.
    pub max_size: u64,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            start: Instant::now(),
            capacity: DEFAULT_QUEUE_CAPACITY,
            hash: true,
            memory: None,
            max_size: DEFAULT_MAX_SIZE,
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
    #[error(
        "trace file {path} stopped early: {stop}; {records} records written, {dropped} dropped, \
         no footer (free space on its disk, or choose another --trace path)"
    )]
    Full {
        path: String,
        stop: String,
        records: u64,
        dropped: u64,
    },
}

/// What a finished trace contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceStats {
    pub records: u64,
    /// Records lost to a full queue or to the size cap.
    pub dropped: u64,
    /// The size cap, when records were dropped because of it.
    pub capped: Option<u64>,
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
    writer: Mutex<Option<JoinHandle<Result<TraceStats, TraceError>>>>,
    /// Set for an in-memory trace (which has no writer thread).
    memory: Option<MemoryTrace>,
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
    max_size: u64,
    path: String,
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

/// The records of a [`TraceSink::in_memory`] trace, in file order: the
/// header, then, once the sink is finished, the DMA and reset records and
/// the footer. What reading the file back would give, without formatting
/// or parsing JSON, and without a writer thread (a fuzz target makes a
/// sink per input; a thread's first allocation under a sanitizer costs
/// more than the whole input): for in-process checks, whose own input
/// bounds the trace. Events wait in the queue until the finish, so its
/// capacity bounds them.
#[derive(Clone, Default)]
pub struct MemoryTrace(Arc<Mutex<Vec<Record>>>);

impl MemoryTrace {
    /// The records so far, leaving none behind (no copy).
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *lock(&self.0))
    }
}

/// Where records go.
enum Output {
    /// JSON lines, written by the writer thread: the trace file.
    Json(BufWriter<Box<dyn Write + Send>>),
    /// Records as values, made at the finish. No size cap: the queue bound
    /// applies.
    Memory(MemoryTrace),
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
        let out = Output::Json(BufWriter::with_capacity(256 * 1024, writer));
        Self::start(name, out, config, options)
    }

    /// Keeps the trace in memory as records (see [`MemoryTrace`]); the size
    /// cap does not apply.
    pub fn in_memory(
        config: &Dma24Config,
        options: TraceOptions,
    ) -> Result<(Self, MemoryTrace), TraceError> {
        let trace = MemoryTrace::default();
        let sink = Self::start(
            "memory".into(),
            Output::Memory(trace.clone()),
            config,
            options,
        )?;
        Ok((sink, trace))
    }

    /// Writes the header and starts the writer thread.
    fn start(
        name: String,
        mut out: Output,
        config: &Dma24Config,
        options: TraceOptions,
    ) -> Result<Self, TraceError> {
        let capacity = options.capacity.max(1);
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
        let header_len = match &mut out {
            Output::Json(out) => write_tagged(out, "header", &header)
                .and_then(|n| out.flush().map(|()| n))
                .map_err(|e| TraceError::Write {
                    path: name.clone(),
                    reason: describe(&e),
                })?,
            Output::Memory(trace) => {
                lock(&trace.0).push(Record::Header(header));
                0
            }
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                // Grown on demand: most traces never hold many events at once,
                // and a large first allocation is paid again by every
                // short-lived sink (a fuzz target makes one per input).
                events: Vec::with_capacity(capacity.min(256)),
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
            max_size: options.max_size,
            path: name.clone(),
        });
        let (writer, memory) = match out {
            Output::Json(out) => {
                let thread_shared = Arc::clone(&shared);
                let writer = thread::Builder::new()
                    .name("dma24-trace".into())
                    .spawn(move || write_loop(&thread_shared, out, header_len))
                    .map_err(|e| TraceError::Thread(e.to_string()))?;
                (Some(writer), None)
            }
            Output::Memory(trace) => (None, Some(trace)),
        };
        Ok(TraceSink {
            handle: Arc::new(Handle {
                shared,
                writer: Mutex::new(writer),
                memory,
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
        let t_ns = elapsed_ns(shared.start);
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
        let t_ns = elapsed_ns(shared.start);
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
        if let Some(trace) = &self.memory {
            let r = keep_in_memory(&self.shared, trace);
            *result = Some(r.clone());
            return r;
        }
        self.shared.wake.notify_one();
        let joined = lock(&self.writer).take().map(JoinHandle::join);
        let r = match joined {
            Some(Ok(Ok(stats))) => Ok(stats),
            Some(Ok(Err(e))) => Err(e),
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

/// Waits for a batch worth writing (or the close) and swaps it into `batch`;
/// returns whether the sink was closed.
fn take_batch(shared: &Shared, batch: &mut Vec<(u64, u64, Queued)>) -> bool {
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
    std::mem::swap(batch, &mut q.events);
    q.closed
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The finish of an in-memory trace (the queue is closed): every queued
/// event becomes a record, then the footer.
fn keep_in_memory(shared: &Shared, trace: &MemoryTrace) -> Result<TraceStats, TraceError> {
    let (batch, dropped) = {
        let mut q = lock(&shared.queue);
        (std::mem::take(&mut q.events), q.dropped)
    };
    let mut written = 0u64;
    let mut records = lock(&trace.0);
    for (seq, t_ns, queued) in batch {
        records.push(match queued {
            Queued::Dma(event) => {
                written += 1;
                Record::Dma(DmaRecord::from_event(seq, t_ns, &shared.bdf, &event))
            }
            Queued::Reset { last_transfer } => Record::Reset(ResetRecord {
                t_ns,
                bdf: shared.bdf.clone(),
                after_seq: seq,
                last_transfer,
            }),
        });
    }
    records.push(Record::Footer(TraceFooter {
        records: written,
        dropped,
        t_ns: elapsed_ns(shared.start),
        max_size: None,
    }));
    Ok(TraceStats {
        records: written,
        dropped,
        capped: None,
    })
}

/// Writes one `{"type":"<tag>",...}` line; returns its length in bytes.
fn write_tagged<T: serde::Serialize>(
    out: &mut impl Write,
    tag: &str,
    value: &T,
) -> io::Result<u64> {
    // `{"type":"<tag>",` + the object's fields without its opening brace.
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut line = format!("{{\"type\":\"{tag}\",").into_bytes();
    line.extend_from_slice(body.get(1..).unwrap_or_default());
    line.push(b'\n');
    out.write_all(&line)?;
    Ok(line.len() as u64)
}

/// The writer thread: take a batch, format it, repeat; footer on close.
/// Records count as written once a flush put them in the file; the limits
/// (`limit.rs`) drop the rest, counted.
fn write_loop(
    shared: &Shared,
    mut out: BufWriter<Box<dyn Write + Send>>,
    header_len: u64,
) -> Result<TraceStats, TraceError> {
    let mut batch = Vec::new();
    let mut line = Vec::with_capacity(512);
    let mut written = 0u64;
    let mut budget = Budget::new(&shared.path, shared.max_size, header_len);
    loop {
        let closed = take_batch(shared, &mut batch);
        // DMA records of this batch handed to the writer but not yet flushed,
        // and whether any line (a reset too) waits in the buffer.
        let mut pending = 0u64;
        let mut buffered = false;
        let first_seq = batch.first().map_or(0, |&(seq, _, _)| seq);
        for (seq, t_ns, queued) in batch.drain(..) {
            line.clear();
            let is_dma = matches!(queued, Queued::Dma(_));
            // Serializing plain fields into a Vec cannot fail.
            let _ = match &queued {
                Queued::Dma(event) => {
                    serde_json::to_writer(&mut line, &DmaLine::new(seq, t_ns, &shared.bdf, event))
                        .map_err(io::Error::other)
                        .and_then(|()| line.write_all(b"\n"))
                }
                Queued::Reset { last_transfer } => {
                    let reset = ResetLine {
                        t_ns,
                        bdf: &shared.bdf,
                        after_seq: seq,
                        last_transfer: *last_transfer,
                    };
                    write_tagged(&mut line, "reset", &reset).map(|_| ())
                }
            };
            if !budget.admit(seq, line.len() as u64, is_dma) {
                continue;
            }
            match out.write_all(&line) {
                // The footer's `records` counts DMA records (resets have no seq).
                Ok(()) => {
                    pending += u64::from(is_dma);
                    buffered = true;
                }
                Err(e) => {
                    // This record and the unflushed ones before it are lost.
                    budget.write_failed(describe(&e), first_seq, pending + u64::from(is_dma));
                    pending = 0;
                }
            }
        }
        // Reset lines reach the file on the same cadence as DMA records.
        if buffered {
            match out.flush() {
                Ok(()) => written += pending,
                Err(e) => budget.write_failed(describe(&e), first_seq, pending),
            }
        }
        if closed && lock(&shared.queue).events.is_empty() {
            break;
        }
    }
    let dropped = lock(&shared.queue).dropped + budget.dropped;
    if let Some(stop @ super::limit::Stop::WriteFailed { .. }) = &budget.stop {
        return Err(TraceError::Full {
            path: shared.path.clone(),
            stop: stop.to_string(),
            records: written,
            dropped,
        });
    }
    let t_ns = elapsed_ns(shared.start);
    let footer = TraceFooter {
        records: written,
        dropped,
        t_ns,
        max_size: budget.capped(),
    };
    write_tagged(&mut out, "footer", &footer)
        .and_then(|_| out.flush())
        .map_err(|e| TraceError::Write {
            path: shared.path.clone(),
            reason: describe(&e),
        })?;
    Ok(TraceStats {
        records: written,
        dropped,
        capped: budget.capped(),
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
                dropped: 0,
                capped: None
            })
        );
        assert_eq!(
            sink.finish(),
            Ok(TraceStats {
                records: 100,
                dropped: 0,
                capped: None
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

    #[test]
    fn memory_trace_holds_what_the_file_reads_back() {
        let cfg = Dma24Config::default();
        let opts = TraceOptions::default();
        let buf = SharedBuf::default();
        let file = TraceSink::from_writer("mem".into(), Box::new(buf.clone()), &cfg, opts.clone())
            .unwrap();
        let (memory, trace) = TraceSink::in_memory(&cfg, opts).unwrap();
        for sink in [&file, &memory] {
            for i in 1..=5 {
                sink.submit(event(i));
            }
            sink.submit_reset(5);
            sink.submit(event(6));
        }
        let stats = memory.finish().unwrap();
        assert_eq!(stats, file.finish().unwrap());
        assert_eq!(stats.records, 6);
        let text = lock(&buf.0).clone();
        let reader = crate::trace::TraceReader::new(text.as_slice()).unwrap();
        let header = Record::Header(reader.header().clone());
        let read: Vec<Record> = reader.map(Result::unwrap).collect();
        let kept = trace.take();
        assert!(trace.take().is_empty());
        assert_eq!(kept.len(), 9, "header, 6 dma, a reset, footer");
        assert_eq!(kept[0], header);
        // Times differ between the two sinks; everything else is the same.
        let untimed = |r: &Record| match r.clone() {
            Record::Dma(d) => Record::Dma(DmaRecord { t_ns: 0, ..d }),
            Record::Reset(x) => Record::Reset(ResetRecord { t_ns: 0, ..x }),
            Record::Footer(f) => Record::Footer(TraceFooter { t_ns: 0, ..f }),
            h => h,
        };
        let a: Vec<Record> = kept[1..].iter().map(untimed).collect();
        let b: Vec<Record> = read.iter().map(untimed).collect();
        assert_eq!(a, b);
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
    fn size_cap_drops_counts_and_keeps_the_footer() {
        let buf = SharedBuf::default();
        let opts = TraceOptions {
            max_size: 8192,
            ..TraceOptions::default()
        };
        let sink = TraceSink::from_writer(
            "mem".into(),
            Box::new(buf.clone()),
            &Dma24Config::default(),
            opts,
        )
        .unwrap();
        for i in 1..=200 {
            sink.submit(event(i));
        }
        let stats = sink.finish().unwrap();
        assert_eq!(stats.capped, Some(8192));
        assert_eq!(stats.records + stats.dropped, 200);
        assert!(stats.records > 10 && stats.dropped > 100, "{stats:?}");
        assert!(lock(&buf.0).len() <= 8192, "{} bytes", lock(&buf.0).len());
        let v = lines(&buf);
        assert_eq!(v.len() as u64, stats.records + 2);
        let footer = v.last().unwrap();
        assert_eq!(footer["max_size"], 8192);
        assert_eq!(footer["dropped"], stats.dropped);
    }

    /// Accepts `room` bytes, then fails like a full disk.
    struct FillsUp {
        room: usize,
        buf: SharedBuf,
    }
    impl Write for FillsUp {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.buf.write(&b[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn full_disk_drops_counts_and_says_so() {
        let buf = SharedBuf::default();
        let writer = FillsUp {
            room: 4000,
            buf: buf.clone(),
        };
        let sink = TraceSink::from_writer(
            "disk".into(),
            Box::new(writer),
            &Dma24Config::default(),
            TraceOptions::default(),
        )
        .unwrap();
        let mut last = 0;
        for i in 1..=300 {
            last = sink.submit(event(i));
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(10)); // several batches
            }
        }
        assert_eq!(last, 300, "submitting never stops");
        let err = sink.finish().unwrap_err();
        let TraceError::Full {
            records, dropped, ..
        } = err.clone()
        else {
            panic!("{err}");
        };
        assert_eq!(records + dropped, 300);
        assert!(dropped > 0 && records < 300);
        let msg = err.to_string();
        assert!(
            msg.starts_with("trace file disk stopped early: write failed at record"),
            "{msg}"
        );
        assert!(msg.contains("no footer"), "{msg}");
        // What is in the file reads back as an incomplete trace.
        let text = String::from_utf8(lock(&buf.0).clone()).unwrap();
        let r = crate::trace::Trace::parse(&text).unwrap();
        assert!(r.footer.is_none());
        assert!(r.records.len() as u64 >= records);
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
