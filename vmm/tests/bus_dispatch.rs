//! The VMM's share of an exit: bus lookup + device lock + a trivial device,
//! with a realistic number of ranges on the bus. Prints ns per access; the
//! target is well under 200 ns in release builds (`cargo test --release -p
//! vmm --test bus_dispatch -- --nocapture`). The assertion is loose so debug
//! builds on a loaded machine pass.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm::bus::{Bus, BusDevice};

struct Reg(u32);

impl BusDevice for Reg {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        let b = self.0.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&b[..n]);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        self.0 = self.0.wrapping_add(u32::from(data[0]));
    }
}

#[test]
fn dispatch_cost() {
    let mut bus = Bus::new();
    // 16 devices of 4 KiB each, like BARs in an MMIO window.
    for i in 0..16u64 {
        bus.insert(
            Arc::new(Mutex::new(Reg(0))),
            0xc000_0000 + i * 0x1000,
            0x1000,
        )
        .unwrap();
    }
    const N: u64 = 2_000_000;
    let mut data = [0u8; 4];
    let t = Instant::now();
    for i in 0..N {
        let addr = 0xc000_0000 + (i & 15) * 0x1000 + (i & 0xffc);
        if i & 1 == 0 {
            black_box(bus.read(black_box(addr), &mut data));
        } else {
            black_box(bus.write(black_box(addr), &data));
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / N as f64;
    eprintln!(
        "bus dispatch: {ns:.1} ns per access ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    assert!(ns < 2000.0, "{ns} ns per bus access");
}
