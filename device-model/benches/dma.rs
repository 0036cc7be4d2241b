//! DMA engine throughput against a plain memcpy of the same size, with the
//! trace off and on, and the whole device path (START -> worker -> idle).
//!
//! Run: `cargo bench -p device-model --bench dma`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use device_model::devmem::DeviceMemory;
use device_model::engine::{DmaMask, Engine, Job};
use device_model::regs::*;
use device_model::trace::{TraceOptions, TraceSink, Tracer};
use device_model::{Direction, Dma24, Dma24Config, InterruptSink, Overflow, PciDevice};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const SIZES: [usize; 2] = [4096, 64 * 1024];
const BUF: u64 = 0x10_0000;

struct NoIrq;
impl InterruptSink for NoIrq {
    fn set_intx(&self, _: bool) {}
    fn signal_msi(&self, _: u64, _: u32) {}
}

fn guest() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
}

fn trace_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dma24-bench-{}-{name}.jsonl", std::process::id()))
}

fn finish(sink: TraceSink, path: &std::path::Path) {
    let stats = sink.finish().unwrap();
    eprintln!(
        "    trace: {} records written, {} dropped",
        stats.records, stats.dropped
    );
    let _ = std::fs::remove_file(path);
}

fn engine(c: &mut Criterion) {
    let mem = guest();
    let config = Dma24Config::default();
    let mask = DmaMask {
        bits: 24,
        overflow: Overflow::Reject,
    };
    for size in SIZES {
        let mut g = c.benchmark_group(format!("dma_{}k", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));

        // Page-aligned source and destination, like the engine's (see
        // `DeviceMemory` for why alignment matters to memcpy here).
        let src = DeviceMemory::new(size);
        let mut dst = DeviceMemory::new(size);
        g.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.as_mut_slice()
                    .copy_from_slice(black_box(src.as_slice()))
            });
        });

        let mut devmem = DeviceMemory::new(64 * 1024);
        let devmem = devmem.as_mut_slice();
        for dir in [Direction::ToDevice, Direction::FromDevice] {
            let job = Job {
                transfer: 1,
                dir,
                sg: false,
                addr: BUF,
                len: u32::try_from(size).expect("bench sizes fit a u32"),
                dev_offset: 0,
            };
            let off = Tracer::new(None);
            g.bench_function(format!("engine_{}_trace_off", dir.as_str()), |b| {
                let e = Engine::new(&mem, mask, &off);
                b.iter(|| black_box(e.run(&job, devmem, &|| Ok(()))));
            });
            for hash in [false, true] {
                let path = trace_path("engine");
                let opts = TraceOptions {
                    hash,
                    ..TraceOptions::default()
                };
                let sink = TraceSink::create_with(&path, &config, opts).unwrap();
                let on = Tracer::new(Some(sink.clone()));
                let name = if hash { "trace_on" } else { "trace_on_nohash" };
                g.bench_function(format!("engine_{}_{name}", dir.as_str()), |b| {
                    let e = Engine::new(&mem, mask, &on);
                    b.iter(|| black_box(e.run(&job, devmem, &|| Ok(()))));
                });
                drop(on);
                finish(sink, &path);
            }
        }
        g.finish();
    }
}

/// START through BAR0 to idle: includes the hand-off to the worker thread
/// and its wake-up, which is what a guest driver actually waits for.
fn device(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("device_{}k", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));
        for traced in [false, true] {
            let config = Dma24Config::default();
            let path = trace_path("device");
            let sink = traced.then(|| TraceSink::create(&path, &config).unwrap());
            let dev = Dma24::new(config, guest(), Arc::new(NoIrq), sink.clone()).unwrap();
            dev.write_config(0x04, &6u16.to_le_bytes());
            dev.write_bar(0, REG_DMA_ADDR, &BUF.to_le_bytes());
            dev.write_bar(
                0,
                REG_DMA_LEN,
                &u32::try_from(size)
                    .expect("bench sizes fit a u32")
                    .to_le_bytes(),
            );
            let name = if traced {
                "start_to_idle_trace_on"
            } else {
                "start_to_idle_trace_off"
            };
            g.bench_function(name, |b| {
                b.iter(|| {
                    dev.write_bar(0, REG_DMA_CMD, &CMD_START.to_le_bytes());
                    assert!(dev.wait_idle(Duration::from_secs(5)));
                })
            });
            drop(dev);
            if let Some(sink) = sink {
                finish(sink, &path);
            }
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine, device
}
criterion_main!(benches);
