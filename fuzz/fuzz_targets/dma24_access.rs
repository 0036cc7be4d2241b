//! dma24 as a guest sees it: register, config-space and BAR accesses in any
//! order over a random RAM layout with holes, either overflow mode, any
//! mask width. Checks: no panic; in reject mode no byte beyond the mask is
//! written (canary); every move the trace reports is inside RAM and the
//! mask; the byte and transfer counters agree with the trace.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use device_model::regs::*;
use device_model::{Direction, Dma24, InterruptSink, Overflow, PciDevice};
use dmalab_fuzz::{
    assert_moves_inside_ram, dma_records, memory_sink, AddrPick, BeyondMask, Layout, RegionSpec,
    Shape,
};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

#[derive(Arbitrary, Debug)]
struct Input {
    shape: Shape,
    regions: Vec<RegionSpec>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Any BAR0 access (offset within the first 0x80 bytes mostly).
    RegWrite {
        offset: u16,
        size: u8,
        value: u64,
    },
    RegRead {
        offset: u16,
        size: u8,
    },
    /// Programs a single transfer the way a driver does.
    Single {
        addr: AddrPick,
        len: u32,
        dev_offset: u32,
    },
    /// Writes a descriptor into guest RAM (the guest owns its RAM).
    Descriptor {
        at: AddrPick,
        addr: AddrPick,
        len: u16,
        flags: u8,
    },
    /// REG_DMA_CMD; `wait`: let the transfer finish before the next op.
    Command {
        cmd: u8,
        wait: bool,
    },
    ConfigWrite {
        offset: u16,
        size: u8,
        value: u32,
    },
    ConfigRead {
        offset: u16,
        size: u8,
    },
    /// BAR1 (device memory) or a BAR that does not exist.
    BarWrite {
        bar: u8,
        offset: u32,
        len: u8,
        byte: u8,
    },
    BarRead {
        bar: u8,
        offset: u32,
        len: u8,
    },
}

struct NoIrq;
impl InterruptSink for NoIrq {
    fn set_intx(&self, _: bool) {}
    fn signal_msi(&self, _: u64, _: u32) {}
}

fn size_of(size: u8) -> usize {
    [1, 2, 4, 8][usize::from(size % 4)]
}

fn reg_offset(offset: u16) -> u64 {
    // Mostly the registers that exist, sometimes anywhere in (or past) BAR0.
    if offset & 0x8000 == 0 {
        u64::from(offset % 0x80)
    } else {
        u64::from(offset & 0x1fff)
    }
}

/// Whether a write of `n` bytes at BAR0 offset `reg` reaches REG_CONTROL
/// (where CTRL_RESET is).
fn writes_control(reg: u64, n: usize) -> bool {
    reg <= REG_CONTROL && reg.saturating_add(n as u64) > REG_CONTROL
}

const IDLE: Duration = Duration::from_secs(10);

fn read_u64(dev: &Dma24<dmalab_fuzz::Mem>, reg: u64) -> u64 {
    let mut b = [0u8; 8];
    dev.read_bar(BAR_REGS, reg, &mut b);
    u64::from_le_bytes(b)
}

fn write_reg(dev: &Dma24<dmalab_fuzz::Mem>, reg: u64, value: u64, size: usize) {
    dev.write_bar(BAR_REGS, reg, &value.to_le_bytes()[..size]);
}

fuzz_target!(|input: Input| {
    let config = input.shape.config();
    let layout = Layout::new(config.mask_bits, &input.regions);
    let mem = layout.memory();
    let mut beyond = BeyondMask::snapshot(&mem, &layout, config.mask());
    let (sink, trace) = memory_sink(&config);
    let dev = Dma24::new(
        config.clone(),
        mem.clone(),
        Arc::new(NoIrq) as Arc<dyn InterruptSink>,
        Some(sink),
    )
    .expect("valid config");
    // Memory decoding and bus mastering on, as a driver's probe leaves it;
    // the ops may turn them off again.
    dev.write_config(0x04, &0x0006u16.to_le_bytes());
    // A CTRL_RESET while a transfer runs discards its completion (by design),
    // so transfer counts are exact only without one.
    let mut reset_in_flight = false;
    for op in input.ops.iter().take(64) {
        match *op {
            Op::RegWrite {
                offset,
                size,
                value,
            } => {
                let reg = reg_offset(offset);
                let n = size_of(size);
                reset_in_flight |= writes_control(reg, n) && !dev.wait_idle(Duration::ZERO);
                write_reg(&dev, reg, value, n);
            }
            Op::RegRead { offset, size } => {
                let mut b = [0u8; 8];
                dev.read_bar(BAR_REGS, reg_offset(offset), &mut b[..size_of(size)]);
            }
            Op::Single {
                addr,
                len,
                dev_offset,
            } => {
                write_reg(&dev, REG_DMA_ADDR, layout.address(addr), 8);
                // Mostly lengths and offsets that fit device memory.
                let len = if len & 0x8000_0000 == 0 {
                    len % 0x4000
                } else {
                    len
                };
                write_reg(&dev, REG_DMA_LEN, len.into(), 4);
                write_reg(&dev, REG_DEV_OFFSET, (dev_offset % 0x2_0000).into(), 4);
            }
            Op::Descriptor {
                at,
                addr,
                len,
                flags,
            } => {
                let d = device_model::engine::Descriptor {
                    addr: layout.address(addr),
                    len: len.into(),
                    flags: if flags & 0x80 != 0 {
                        flags.into()
                    } else {
                        u32::from(flags) & 3
                    },
                };
                // Only where all 16 bytes are RAM: then the guest could write it.
                let at = layout.address(at);
                if layout.holds(at, 16) {
                    mem.write_slice(&d.to_bytes(), GuestAddress(at))
                        .expect("RAM");
                    beyond.guest_wrote(at, &d.to_bytes());
                }
            }
            Op::Command { cmd, wait } => {
                write_reg(&dev, REG_DMA_CMD, cmd.into(), 4);
                if wait {
                    assert!(dev.wait_idle(IDLE), "transfer did not finish");
                }
            }
            Op::ConfigWrite {
                offset,
                size,
                value,
            } => {
                let n = size_of(size).min(4);
                dev.write_config(offset % 0x1100, &value.to_le_bytes()[..n]);
            }
            Op::ConfigRead { offset, size } => {
                let mut b = [0u8; 4];
                dev.read_config(offset % 0x1100, &mut b[..size_of(size).min(4)]);
            }
            Op::BarWrite {
                bar,
                offset,
                len,
                byte,
            } => {
                let data = vec![byte; usize::from(len)];
                // A write to BAR0 is split into register writes: it can
                // reset the device as well.
                reset_in_flight |= bar % 4 == BAR_REGS
                    && writes_control(offset.into(), data.len())
                    && !dev.wait_idle(Duration::ZERO);
                dev.write_bar(bar % 4, offset.into(), &data);
            }
            Op::BarRead { bar, offset, len } => {
                let mut data = vec![0u8; usize::from(len)];
                dev.read_bar(bar % 4, offset.into(), &mut data);
            }
        }
    }
    assert!(dev.wait_idle(IDLE), "transfer did not finish");
    // Counters are read with memory decoding on (the ops may have turned it off).
    let mut cmd = [0u8; 2];
    dev.read_config(0x04, &mut cmd);
    dev.write_config(0x04, &(u16::from_le_bytes(cmd) | 0x2).to_le_bytes());
    let transfers = read_u64(&dev, REG_COUNT_TRANSFERS);
    let faults = read_u64(&dev, REG_COUNT_FAULTS);
    let to_device = read_u64(&dev, REG_COUNT_BYTES_TO_DEVICE);
    let from_device = read_u64(&dev, REG_COUNT_BYTES_FROM_DEVICE);
    let sink = dev.trace_sink().expect("traced").clone();
    drop(dev);
    sink.finish().expect("in-memory trace finishes");
    let records = dma_records(&trace);

    let mask = config.mask();
    assert_moves_inside_ram(&records, &layout, mask);
    if config.overflow == Overflow::Reject {
        beyond.assert_untouched(&mem, mask);
    }
    let moved = |dir| {
        records
            .iter()
            .filter(|r| r.dir == dir && r.outcome.moved())
            .map(|r| r.len)
            .sum::<u64>()
    };
    assert_eq!(to_device, moved(Direction::ToDevice), "bytes to device");
    assert_eq!(
        from_device,
        moved(Direction::FromDevice),
        "bytes from device"
    );
    // Per transfer id: did every access move its bytes?
    let mut by_transfer: BTreeMap<u64, bool> = BTreeMap::new();
    for r in &records {
        *by_transfer.entry(r.transfer).or_insert(true) &= r.outcome.moved();
    }
    let ok = by_transfer.values().filter(|&&ok| ok).count() as u64;
    let failed = by_transfer.len() as u64 - ok;
    if reset_in_flight {
        assert!(
            transfers <= ok && faults <= failed,
            "counted more than traced"
        );
    } else {
        assert_eq!(transfers, ok, "transfers counter vs trace");
        assert_eq!(faults, failed, "faults counter vs trace");
    }
});
