//! Property test: random sequences of config-space writes, register writes
//! of every width and BAR1 accesses never panic, leave the device idle and
//! consistent, never touch guest RAM beyond the DMA mask (a canary region
//! above a 16-bit mask must survive, in both overflow modes), and produce a
//! trace that reads back with contiguous sequence numbers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use device_model::regs::*;
use device_model::trace::summary::summarize_file;
use device_model::{Dma24, Dma24Config, InterruptSink, PciDevice, TraceSink};
use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// RAM within the 16-bit mask (with a hole at 0x8000..0xc000), and a canary
/// region at 0x2_0000 that no DMA may reach.
const RAM: [(u64, usize); 3] = [(0x0, 0x8000), (0xc000, 0x4000), (0x2_0000, 0x1_0000)];
const CANARY: u64 = 0x2_0000;

static CASE: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct Irq {
    level: AtomicBool,
    msis: AtomicU64,
}

impl InterruptSink for Irq {
    fn set_intx(&self, asserted: bool) {
        // The device only reports changes.
        assert_ne!(self.level.swap(asserted, Ordering::SeqCst), asserted);
    }
    fn signal_msi(&self, _address: u64, _data: u32) {
        self.msis.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Config(u16, Vec<u8>),
    Reg(u64, Vec<u8>),
    DevMem(u64, Vec<u8>),
    ReadBar(u8, u64, usize),
    /// A well-formed START, to reach the engine often.
    Start {
        addr: u64,
        len: u32,
        cmd: u32,
    },
    Idle,
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(1usize), Just(2), Just(4), Just(8), 0usize..12]
        .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u16..0x60, bytes()).prop_map(|(o, d)| Op::Config(o, d)),
        1 => (any::<u16>(), bytes()).prop_map(|(o, d)| Op::Config(o, d)),
        4 => (0u64..0x78, bytes()).prop_map(|(o, d)| Op::Reg(o, d)),
        1 => (any::<u64>(), bytes()).prop_map(|(o, d)| Op::Reg(o, d)),
        1 => (0u64..0x1_0010, bytes()).prop_map(|(o, d)| Op::DevMem(o, d)),
        1 => (0u8..4, any::<u64>(), 0usize..9).prop_map(|(b, o, n)| Op::ReadBar(b, o, n)),
        3 => (0u64..0x3_0000, 1u32..0x3000, 0u32..8).prop_map(|(addr, len, cmd)| Op::Start {
            addr,
            len,
            cmd: CMD_START | (cmd << 1) & (CMD_FROM_DEVICE | CMD_SG),
        }),
        1 => Just(Op::Idle),
    ]
}

fn r32(dev: &mut impl PciDevice, off: u64) -> u32 {
    let mut b = [0; 4];
    dev.read_bar(0, off, &mut b);
    u32::from_le_bytes(b)
}

fn cfg16(dev: &mut impl PciDevice, off: u16) -> u16 {
    let mut b = [0; 2];
    dev.read_config(off, &mut b);
    u16::from_le_bytes(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_ops_stay_safe(
        truncate in any::<bool>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let ranges: Vec<_> = RAM.iter().map(|&(a, n)| (GuestAddress(a), n)).collect();
        let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).unwrap();
        let canary: Vec<u8> = (0..0x1_0000usize).map(|i| (i % 253).to_le_bytes()[0]).collect();
        mem.write_slice(&canary, GuestAddress(CANARY)).unwrap();
        let spec = if truncate { "mask-bits=16,overflow=truncate,mem=16" } else { "mask-bits=16,mem=16" };
        let config = Dma24Config::parse(spec).unwrap();
        let dir = std::env::temp_dir().join(format!("dma24-prop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.jsonl", CASE.fetch_add(1, Ordering::SeqCst)));
        let sink = TraceSink::create(&path, &config).unwrap();
        let irq = Arc::new(Irq::default());
        let mut dev = Dma24::new(config, mem.clone(), irq.clone(), Some(sink.clone())).unwrap();
        // Start from a usable device: decode, bus mastering, interrupts on.
        dev.write_config(0x04, &6u16.to_le_bytes());
        dev.write_bar(0, REG_CONTROL, &CTRL_IRQ_ENABLE.to_le_bytes());

        for op in &ops {
            match op {
                Op::Config(o, d) => {
                    // The BAR moves reported are exactly the change in decode.
                    let before = dev.bars();
                    let moved = dev.write_config(*o, d);
                    let expected: Vec<_> = before
                        .iter()
                        .zip(dev.bars())
                        .filter(|(old, new)| old.decoded_base() != new.decoded_base())
                        .map(|(old, new)| (new.index, old.decoded_base(), new.decoded_base()))
                        .collect();
                    let got: Vec<_> = moved
                        .iter()
                        .map(|m| (m.bar, m.old_base, m.new_base))
                        .collect();
                    prop_assert_eq!(got, expected);
                }
                Op::Reg(o, d) => dev.write_bar(0, *o, d),
                Op::DevMem(o, d) => dev.write_bar(1, *o, d),
                Op::ReadBar(b, o, n) => dev.read_bar(*b, *o, &mut vec![0; *n]),
                Op::Start { addr, len, cmd } => {
                    dev.write_bar(0, REG_DMA_ADDR, &addr.to_le_bytes());
                    dev.write_bar(0, REG_DMA_LEN, &len.to_le_bytes());
                    dev.write_bar(0, REG_DMA_CMD, &cmd.to_le_bytes());
                }
                Op::Idle => prop_assert!(dev.wait_idle(Duration::from_secs(10))),
            }
        }
        prop_assert!(dev.wait_idle(Duration::from_secs(10)));

        // Consistency of the interrupt outputs with the registers.
        let command = cfg16(&mut dev, 0x04);
        let msi_on = cfg16(&mut dev, 0x42) & 1 != 0;
        if command & 2 != 0 {
            prop_assert_eq!(r32(&mut dev, REG_STATUS) & STATUS_BUSY, 0);
            let pending = r32(&mut dev, REG_IRQ_STATUS) != 0
                && r32(&mut dev, REG_CONTROL) & CTRL_IRQ_ENABLE != 0;
            let level = pending && !msi_on && command & (1 << 10) == 0;
            prop_assert_eq!(dev.intx_asserted(), level);
            prop_assert_eq!(cfg16(&mut dev, 0x06) & 8 != 0, pending && !msi_on);
        }
        prop_assert_eq!(irq.level.load(Ordering::SeqCst), dev.intx_asserted());

        // Nothing beyond the mask was touched.
        let mut after = vec![0u8; canary.len()];
        mem.read_slice(&mut after, GuestAddress(CANARY)).unwrap();
        prop_assert!(after == canary, "canary region above the DMA mask changed");

        // The trace is complete and contiguous.
        drop(dev);
        let stats = sink.finish().unwrap();
        let s = summarize_file(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        prop_assert_eq!(stats.dropped, 0);
        prop_assert_eq!(s.records, stats.records);
        prop_assert_eq!(s.seq_gaps, 0);
        prop_assert!(s.footer.is_some());
    }
}
