//! Helpers for the unit tests: guest memory, an in-memory trace, an
//! interrupt recorder.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::dma24_config::Dma24Config;
use crate::trace::{DmaRecord, TraceOptions, TraceSink};
use pci::InterruptSink;

pub type Mem = GuestMemoryMmap<()>;

/// Guest memory made of `(start, len)` regions (gaps between them are not RAM).
pub fn mem(ranges: &[(u64, usize)]) -> Mem {
    let r: Vec<_> = ranges.iter().map(|&(a, n)| (GuestAddress(a), n)).collect();
    GuestMemoryMmap::from_ranges(&r).expect("test guest memory")
}

/// A trace writer the test can read back.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The `dma` records written so far.
    pub fn records(&self) -> Vec<DmaRecord> {
        self.text()
            .lines()
            .filter(|l| l.contains("\"type\":\"dma\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub fn trace(config: &Dma24Config) -> (TraceSink, SharedBuf) {
    let buf = SharedBuf::default();
    let sink = TraceSink::from_writer(
        "test".into(),
        Box::new(buf.clone()),
        config,
        TraceOptions::default(),
    )
    .unwrap();
    (sink, buf)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Irq {
    Intx(bool),
    Msi(u64, u32),
}

/// Records every interrupt call in order.
#[derive(Default)]
pub struct IrqLog(pub Mutex<Vec<Irq>>);

impl IrqLog {
    pub fn take(&self) -> Vec<Irq> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl InterruptSink for IrqLog {
    fn set_intx(&self, asserted: bool) {
        self.0.lock().unwrap().push(Irq::Intx(asserted));
    }
    fn signal_msi(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push(Irq::Msi(address, data));
    }
}

/// Asserts two byte buffers are equal, naming the first difference
/// (instead of printing megabytes).
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "first difference at byte {i:#x}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}
