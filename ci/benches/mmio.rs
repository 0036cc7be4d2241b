//! MMIO dispatch cost, for `cargo xtask bench` (or on its own:
//! `cargo bench -p ci --bench mmio`).
//!
//! 1. Host side only (criterion, group `mmio_dispatch`): what the vCPU
//!    thread does between a KVM MMIO exit and the next KVM_RUN, built the
//!    way `vmm::device_manager::PciDevices` builds it: `vmm::bus::Bus`
//!    lookup and the window's bus-entry lock -> the `PciMmioWindow`'s BAR
//!    map scan -> dma24's state lock and register decode.
//! 2. Round trip seen by a guest (own harness, printed as one JSON line
//!    `mmio_guest_json: {...}`): a 32-bit mini guest runs N reads (or writes)
//!    of a dma24 register in a loop, through dmalab's own vCPU exit path
//!    (`vmm::vcpu::Vcpu::run_once` -> `Bus` -> PCI root -> dma24, attached
//!    with `vmm::pci::attach_dma24` like `dmalab run --device dma24`), timed
//!    on the host from the first KVM_RUN to the exit-port write that ends
//!    it. The same loop reading guest RAM instead is the baseline for the
//!    loop's own (emulated, on PVM) cost.
//!
//! Only the public API of the `vmm` and `device-model` crates is used.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use device_model::regs::{BAR_DEVMEM, BAR_REGS, REG_COUNT_TRANSFERS, REG_IRQ_STATUS, REG_MAGIC};
use device_model::{Dma24, Dma24Config, InterruptSink, PciDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::bus::Bus;
use vmm::memory::{PCI_MMIO_WINDOW_END, PCI_MMIO_WINDOW_START};
use vmm::pci::{HostBridge, PciRoot, DMA24_SLOT};

struct NoIrq;
impl InterruptSink for NoIrq {
    fn set_intx(&self, _: bool) {}
    fn signal_msi(&self, _: u64, _: u32) {}
}

type SharedDma24 = Arc<Dma24<GuestMemoryMmap>>;

/// A PCI root with the host bridge, the MMIO bus with its window, as
/// `vmm::device_manager::PciDevices` sets them up; `add` puts dma24 in its
/// slot.
fn root_and_bus(add: impl FnOnce(&mut PciRoot) -> SharedDma24) -> (SharedDma24, Bus) {
    let window = PCI_MMIO_WINDOW_END - PCI_MMIO_WINDOW_START;
    let mut root = PciRoot::new(PCI_MMIO_WINDOW_START, window).expect("PCI window");
    root.add_device(0, Arc::new(HostBridge), 0)
        .expect("host bridge");
    let dev = add(&mut root);
    let mut bus = Bus::new();
    bus.insert(root.mmio_window(), PCI_MMIO_WINDOW_START, window)
        .expect("PCI window on the MMIO bus");
    (dev, bus)
}

/// Where the root placed `bar` of the device.
fn bar_address(dev: &SharedDma24, bar: u8) -> u64 {
    dev.bars()
        .iter()
        .find(|b| b.index == bar)
        .map(|b| b.address)
        .expect("the BAR exists")
}

fn host_dispatch(c: &mut Criterion) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("1 MiB");
    let (dev, bus) = root_and_bus(|root| {
        let dev = Arc::new(
            Dma24::new(Dma24Config::default(), mem, Arc::new(NoIrq), None)
                .expect("dma24 with the default configuration"),
        );
        root.add_device(DMA24_SLOT, dev.clone(), 16)
            .expect("dma24 in its slot");
        dev
    });
    let bar0 = bar_address(&dev, BAR_REGS);
    let bar1 = bar_address(&dev, BAR_DEVMEM);
    let mut g = c.benchmark_group("mmio_dispatch");
    g.bench_function("bus_read_magic_4", |b| {
        let mut d = [0u8; 4];
        b.iter(|| {
            assert!(bus.read(black_box(bar0 + REG_MAGIC), &mut d));
            black_box(d)
        })
    });
    g.bench_function("bus_read_counter_8", |b| {
        let mut d = [0u8; 8];
        b.iter(|| {
            assert!(bus.read(black_box(bar0 + REG_COUNT_TRANSFERS), &mut d));
            black_box(d)
        })
    });
    g.bench_function("bus_write_irq_status_4", |b| {
        let d = 0u32.to_le_bytes();
        b.iter(|| assert!(bus.write(black_box(bar0 + REG_IRQ_STATUS), &d)))
    });
    g.bench_function("bus_read_devmem_4", |b| {
        let mut d = [0u8; 4];
        b.iter(|| {
            assert!(bus.read(black_box(bar1 + 0x100), &mut d));
            black_box(d)
        })
    });
    // An address no device claims (below the window): lookup only.
    g.bench_function("bus_miss_4", |b| {
        let mut d = [0u8; 4];
        b.iter(|| assert!(!bus.read(black_box(0x1000), &mut d)))
    });
    g.bench_function("device_read_magic_4_no_bus", |b| {
        let mut d = [0u8; 4];
        b.iter(|| {
            dev.read_bar(BAR_REGS, black_box(REG_MAGIC), &mut d);
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
                  // rel8 of the jnz: back over the access, dec ecx and the jnz itself.
    let back = i8::try_from(access.len() + 1 + 2)
        .map(i8::wrapping_neg)
        .expect("an access instruction is a few bytes");
    c.extend_from_slice(&[0x75, back.to_le_bytes()[0]]); // jnz to the access
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

/// Boots the loop `code(bar0)` at 1 MiB in a fresh 16 MiB VM with dma24
/// attached as `dmalab run --device dma24` attaches it, and runs it until it
/// writes the exit port; returns the host time from the first KVM_RUN and
/// the vCPU's MMIO exit count.
fn run_guest(code: impl Fn(u32) -> Vec<u8>) -> Result<(Duration, u64), String> {
    use vmm::boot::{write_entry_structures, EntryPoint, EntryProtocol};
    use vmm::cpuid::CpuPolicy;
    use vmm::debugport::{DebugPorts, DEBUG_PORTS_BASE, DEBUG_PORTS_LEN};
    use vmm::stop::{StopReason, VmControl};
    use vmm::vcpu::Vcpu;

    let err = |e: &dyn std::fmt::Display| e.to_string();
    let kvm = vmm::vm::open_kvm().map_err(|e| err(&e))?;
    let vm = Arc::new(vmm::vm::create_vm(&kvm).map_err(|e| err(&e))?);
    let mem = vmm::memory::create_guest_memory(16 << 20).map_err(|e| err(&e))?;
    vmm::vm::register_memory(&vm, &mem).map_err(|e| err(&e))?;
    let mut attach_err = None;
    let (dev, bus) = root_and_bus(|root| {
        match vmm::pci::attach_dma24(
            vm.clone(),
            &mem,
            root,
            vmm::pci::DMA24_SLOT,
            Dma24Config::default(),
            None,
        ) {
            Ok(a) => a.device,
            Err(e) => {
                attach_err = Some(e.to_string());
                // A detached stand-in so the bus can still be built.
                Arc::new(
                    Dma24::new(Dma24Config::default(), mem.clone(), Arc::new(NoIrq), None)
                        .expect("dma24"),
                )
            }
        }
    });
    if let Some(e) = attach_err {
        return Err(format!("attach_dma24: {e}"));
    }
    let bar0 = u32::try_from(bar_address(&dev, BAR_REGS)).map_err(|e| err(&e))?;
    let entry = EntryPoint {
        kernel_entry: 0x10_0000,
        protocol: EntryProtocol::Pvh { start_info: 0 },
    };
    write_entry_structures(&mem, &entry).map_err(|e| err(&e))?;
    mem.write_slice(&code(bar0), GuestAddress(entry.kernel_entry))
        .map_err(|e| err(&e))?;
    let control = Arc::new(VmControl::new().map_err(|e| err(&e))?);
    let mut pio = Bus::new();
    pio.insert(
        Arc::new(std::sync::Mutex::new(DebugPorts::new(control.clone()))),
        u64::from(DEBUG_PORTS_BASE),
        u64::from(DEBUG_PORTS_LEN),
    )
    .map_err(|e| err(&e))?;
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
    .map_err(|e| err(&e))?;
    v.configure_cpuid(&kvm, 1).map_err(|e| err(&e))?;
    v.configure_boot(&entry).map_err(|e| err(&e))?;
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
    run_guest(|bar0| loop_code(1000, &read_abs(bar0)))?;
    for _ in 0..reps {
        let (t, exits) = run_guest(|bar0| loop_code(iterations, &read_abs(bar0)))?;
        if exits < u64::from(iterations) {
            return Err(format!(
                "the guest's reads did not exit to the VMM ({exits} MMIO exits for {iterations} reads)"
            ));
        }
        r.mmio_exits = exits;
        r.mmio_read_ns
            .push(t.as_nanos() as f64 / f64::from(iterations));
        let (t, _) = run_guest(|bar0| {
            loop_code(
                iterations,
                &write_abs(bar0 + u32::try_from(REG_IRQ_STATUS).expect("a BAR0 offset")),
            )
        })?;
        r.mmio_write_ns
            .push(t.as_nanos() as f64 / f64::from(iterations));
        let (t, _) = run_guest(|_| loop_code(iterations, &read_abs(0x20_0000)))?;
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
