//! MMIO dispatch cost, for `cargo xtask bench` (or on its own:
//! `cargo bench -p ci --bench mmio`).
//!
//! 1. Host side only (criterion, group `mmio_dispatch`): `vmm::bus::Bus`
//!    lookup, its per-device mutex and a dma24 register access, which is what
//!    the vCPU thread does between a KVM MMIO exit and the next KVM_RUN.
//!    The VMM does not put dma24 on its MMIO bus yet (PCI integration is in
//!    progress), so a small adapter here maps BAR0/BAR1 straight onto the
//!    bus: the real PCI root may add one routing step inside its window.
//! 2. Round trip seen by a guest (own harness, printed as one JSON line
//!    `mmio_guest_json: {...}`): a 32-bit mini guest runs N reads (or writes)
//!    of a dma24 register in a loop, through dmalab's own vCPU exit path
//!    (`vmm::vcpu::Vcpu::run_once` -> `Bus` -> dma24), timed on the host from
//!    the first KVM_RUN to the final `hlt`. The same loop reading guest RAM
//!    instead is the baseline for the loop's own (emulated, on PVM) cost.
//!
//! Only the public API of the `vmm` and `device-model` crates is used.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use device_model::regs::{BAR_DEVMEM, BAR_REGS, REG_COUNT_TRANSFERS, REG_IRQ_STATUS, REG_MAGIC};
use device_model::{Dma24, Dma24Config, InterruptSink, PciDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::bus::{Bus, BusDevice, SharedDevice};

/// Where the mini guest (and the host-side bench) finds the BARs: the start
/// of dmalab's PCI MMIO window.
const BAR0_ADDR: u64 = 0xc000_0000;
const BAR1_ADDR: u64 = 0xc001_0000;
const DEVMEM_SIZE: u64 = 64 * 1024;

struct NoIrq;
impl InterruptSink for NoIrq {
    fn set_intx(&self, _: bool) {}
    fn signal_msi(&self, _: u64, _: u32) {}
}

/// One BAR of the device as a bus device: what the PCI root will do once
/// dma24 is wired into the VMM.
struct BarWindow {
    dev: Arc<Mutex<Dma24<GuestMemoryMmap>>>,
    bar: u8,
}

impl BusDevice for BarWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_bar(self.bar, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_bar(self.bar, offset, data);
    }
}

/// A dma24 with memory decoding on and its BARs programmed, and an MMIO bus
/// with both BARs on it.
fn device_and_bus(mem: GuestMemoryMmap) -> (Arc<Mutex<Dma24<GuestMemoryMmap>>>, Bus) {
    let mut dev = Dma24::new(Dma24Config::default(), mem, Arc::new(NoIrq), None)
        .expect("dma24 with the default configuration");
    dev.write_config(0x10, &(BAR0_ADDR as u32).to_le_bytes());
    dev.write_config(0x14, &(BAR1_ADDR as u32).to_le_bytes());
    dev.write_config(0x04, &6u16.to_le_bytes()); // MEM | BUS MASTER
    let dev = Arc::new(Mutex::new(dev));
    let mut bus = Bus::new();
    let bar0: SharedDevice = Arc::new(Mutex::new(BarWindow {
        dev: dev.clone(),
        bar: BAR_REGS,
    }));
    let bar1: SharedDevice = Arc::new(Mutex::new(BarWindow {
        dev: dev.clone(),
        bar: BAR_DEVMEM,
    }));
    bus.insert(bar0, BAR0_ADDR, 4096).expect("BAR0 on the bus");
    bus.insert(bar1, BAR1_ADDR, DEVMEM_SIZE)
        .expect("BAR1 on the bus");
    (dev, bus)
}

fn host_dispatch(c: &mut Criterion) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("1 MiB");
    let (dev, bus) = device_and_bus(mem);
    let mut g = c.benchmark_group("mmio_dispatch");
    g.bench_function("bus_read_magic_4", |b| {
        let mut d = [0u8; 4];
        b.iter(|| {
            assert!(bus.read(black_box(BAR0_ADDR + REG_MAGIC), &mut d));
            black_box(d)
        })
    });
    g.bench_function("bus_read_counter_8", |b| {
        let mut d = [0u8; 8];
        b.iter(|| {
            assert!(bus.read(black_box(BAR0_ADDR + REG_COUNT_TRANSFERS), &mut d));
            black_box(d)
        })
    });
    g.bench_function("bus_write_irq_status_4", |b| {
        let d = 0u32.to_le_bytes();
        b.iter(|| assert!(bus.write(black_box(BAR0_ADDR + REG_IRQ_STATUS), &d)))
    });
    g.bench_function("bus_read_devmem_4", |b| {
        let mut d = [0u8; 4];
        b.iter(|| {
            assert!(bus.read(black_box(BAR1_ADDR + 0x100), &mut d));
            black_box(d)
        })
    });
    g.bench_function("bus_miss_4", |b| {
        let mut d = [0u8; 4];
        b.iter(|| assert!(!bus.read(black_box(0xd000_0000), &mut d)))
    });
    g.bench_function("device_read_magic_4_no_bus", |b| {
        let mut d = [0u8; 4];
        b.iter(|| {
            dev.lock()
                .unwrap()
                .read_bar(BAR_REGS, black_box(REG_MAGIC), &mut d);
            black_box(d)
        })
    });
    g.finish();
}

/// Results of the mini-guest loops, in nanoseconds per iteration.
#[derive(Debug, Default)]
struct GuestLoops {
    iterations: u32,
    reps: usize,
    mmio_read_ns: Vec<f64>,
    mmio_write_ns: Vec<f64>,
    ram_read_ns: Vec<f64>,
    mmio_exits: u64,
}

/// 32-bit protected-mode loop, then status 0 to dmalab's exit port (with the
/// in-kernel irqchip a `hlt` never reaches the VMM):
/// `mov ecx, n; 1: <access>; dec ecx; jnz 1b; xor eax, eax; out 0xf4, al; hlt`.
fn loop_code(n: u32, access: &[u8]) -> Vec<u8> {
    let mut c = vec![0xb9];
    c.extend_from_slice(&n.to_le_bytes());
    c.extend_from_slice(access);
    c.push(0x49); // dec ecx
    let back = -((access.len() + 1 + 2) as i32);
    c.extend_from_slice(&[0x75, back as i8 as u8]); // jnz to the access
    c.extend_from_slice(&[0x31, 0xc0, 0xe6, 0xf4, 0xf4]);
    c
}

/// `mov eax, [addr]`
fn read_abs(addr: u32) -> Vec<u8> {
    let mut v = vec![0xa1];
    v.extend_from_slice(&addr.to_le_bytes());
    v
}

/// `mov [addr], eax`
fn write_abs(addr: u32) -> Vec<u8> {
    let mut v = vec![0xa3];
    v.extend_from_slice(&addr.to_le_bytes());
    v
}

/// Boots `code` at 1 MiB in a fresh 16 MiB VM with dma24 on the MMIO bus and
/// runs it until it writes the exit port; returns the host time from the first KVM_RUN and the
/// vCPU's MMIO exit count.
fn run_guest(code: &[u8]) -> Result<(Duration, u64), String> {
    use vmm::boot::{write_entry_structures, EntryPoint, EntryProtocol};
    use vmm::cpuid::CpuPolicy;
    use vmm::debugport::{DebugPorts, DEBUG_PORTS_BASE, DEBUG_PORTS_LEN};
    use vmm::exit::{StopReason, VmControl};
    use vmm::vcpu::Vcpu;

    let kvm = vmm::vm::open_kvm().map_err(|e| e.to_string())?;
    let vm = vmm::vm::create_vm(&kvm).map_err(|e| e.to_string())?;
    let mem = vmm::memory::create_guest_memory(16 << 20).map_err(|e| e.to_string())?;
    vmm::vm::register_memory(&vm, &mem).map_err(|e| e.to_string())?;
    let entry = EntryPoint {
        kernel_entry: 0x10_0000,
        protocol: EntryProtocol::Pvh { start_info: 0 },
    };
    write_entry_structures(&mem, &entry).map_err(|e| e.to_string())?;
    mem.write_slice(code, GuestAddress(entry.kernel_entry))
        .map_err(|e| e.to_string())?;
    let (_dev, bus) = device_and_bus(mem.clone());
    let control = Arc::new(VmControl::new().map_err(|e| e.to_string())?);
    let mut pio = Bus::new();
    pio.insert(
        Arc::new(Mutex::new(DebugPorts::new(control.clone()))),
        u64::from(DEBUG_PORTS_BASE),
        u64::from(DEBUG_PORTS_LEN),
    )
    .map_err(|e| e.to_string())?;
    let mut v = Vcpu::new(
        &kvm,
        &vm,
        0,
        Arc::new(pio),
        Arc::new(bus),
        control.clone(),
        mem.clone(),
        CpuPolicy::Filtered,
    )
    .map_err(|e| e.to_string())?;
    v.configure_cpuid(&kvm, 1).map_err(|e| e.to_string())?;
    v.configure_boot(&entry).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    while !control.should_stop() {
        if let Some(reason) = v.run_once() {
            return Err(format!("mini guest stopped: {reason}"));
        }
        if Instant::now() > deadline {
            return Err("mini guest did not finish in 60 s".into());
        }
    }
    let elapsed = t0.elapsed();
    match control.reason() {
        Some(StopReason::ExitPort(0)) => Ok((elapsed, v.stats().mmio)),
        other => Err(format!("mini guest stopped: {other:?}")),
    }
}

fn guest_loops(iterations: u32, reps: usize) -> Result<GuestLoops, String> {
    let mut r = GuestLoops {
        iterations,
        reps,
        ..GuestLoops::default()
    };
    // Warm-up: page in the VMM's code and the guest's first pages.
    run_guest(&loop_code(1000, &read_abs(BAR0_ADDR as u32)))?;
    for _ in 0..reps {
        let (t, exits) = run_guest(&loop_code(iterations, &read_abs(BAR0_ADDR as u32)))?;
        if exits < u64::from(iterations) {
            return Err(format!(
                "the guest's reads did not exit to the VMM ({exits} MMIO exits for {iterations} reads)"
            ));
        }
        r.mmio_exits = exits;
        r.mmio_read_ns
            .push(t.as_nanos() as f64 / f64::from(iterations));
        let (t, _) = run_guest(&loop_code(
            iterations,
            &write_abs((BAR0_ADDR + REG_IRQ_STATUS) as u32),
        ))?;
        r.mmio_write_ns
            .push(t.as_nanos() as f64 / f64::from(iterations));
        let (t, _) = run_guest(&loop_code(iterations, &read_abs(0x20_0000)))?;
        r.ram_read_ns
            .push(t.as_nanos() as f64 / f64::from(iterations));
    }
    Ok(r)
}

fn json_list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
    format!("[{}]", items.join(","))
}

fn main() {
    // cargo passes `--bench`; criterion's own options (e.g.
    // `--measurement-time 2`) follow `--`.
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    host_dispatch(&mut c);
    c.final_summary();

    let iterations: u32 = std::env::var("DMALAB_BENCH_MMIO_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    if !std::path::Path::new("/dev/kvm").exists() {
        println!("mmio_guest_json: {{\"error\":\"no /dev/kvm\"}}");
        return;
    }
    // A guest stuck in KVM_RUN (e.g. halted) never returns to the loop's
    // deadline check: give up from another thread.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        println!("mmio_guest_json: {{\"error\":\"mini guests did not finish in 300 s\"}}");
        std::process::exit(1);
    });
    match guest_loops(iterations, 3) {
        Ok(r) => println!(
            "mmio_guest_json: {{\"iterations\":{},\"reps\":{},\"mmio_exits\":{},\"mmio_read_ns\":{},\"mmio_write_ns\":{},\"ram_read_ns\":{}}}",
            r.iterations,
            r.reps,
            r.mmio_exits,
            json_list(&r.mmio_read_ns),
            json_list(&r.mmio_write_ns),
            json_list(&r.ram_read_ns)
        ),
        Err(e) => println!(
            "mmio_guest_json: {{\"error\":{}}}",
            serde_json::Value::String(e)
        ),
    }
}
