use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::engine::Descriptor;
use crate::testutil::{mem, trace, Irq, IrqLog, Mem, SharedBuf};
use pci::regs::{
    PCI_COMMAND_INTX_DISABLE as CMD_INTX_DISABLE, PCI_COMMAND_MASTER as CMD_BUS_MASTER,
    PCI_COMMAND_MEMORY as CMD_MEM, PCI_STATUS_INTERRUPT as STATUS_INTX,
};

const SECOND: Duration = Duration::from_secs(5);

struct Rig {
    dev: Dma24<Mem>,
    mem: Mem,
    irq: Arc<IrqLog>,
    buf: SharedBuf,
}

fn rig_with(config: Dma24Config) -> Rig {
    let mem = mem(&[(0, 0x10_0000), (0x20_0000, 0x1_0000)]);
    let irq = Arc::new(IrqLog::default());
    let (sink, buf) = trace(&config);
    let dev = Dma24::new(config, mem.clone(), irq.clone(), Some(sink)).unwrap();
    let mut r = Rig { dev, mem, irq, buf };
    r.cfg16(0x04, CMD_MEM | CMD_BUS_MASTER);
    r
}

/// Memory decode and bus mastering on, interrupts enabled.
fn rig() -> Rig {
    let mut r = rig_with(Dma24Config::default());
    r.w32(REG_CONTROL, CTRL_IRQ_ENABLE);
    r
}

impl Rig {
    fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0; 4];
        self.dev.read_bar(0, off, &mut b);
        u32::from_le_bytes(b)
    }
    fn r64(&mut self, off: u64) -> u64 {
        let mut b = [0; 8];
        self.dev.read_bar(0, off, &mut b);
        u64::from_le_bytes(b)
    }
    fn w32(&mut self, off: u64, v: u32) {
        self.dev.write_bar(0, off, &v.to_le_bytes());
    }
    fn w64(&mut self, off: u64, v: u64) {
        self.dev.write_bar(0, off, &v.to_le_bytes());
    }
    fn cfg16(&mut self, off: u16, v: u16) {
        self.dev.write_config(off, &v.to_le_bytes());
    }
    fn cfg32(&mut self, off: u16) -> u32 {
        let mut b = [0; 4];
        self.dev.read_config(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn program(&mut self, addr: u64, dev_offset: u32, len: u32) {
        self.w64(REG_DMA_ADDR, addr);
        self.w32(REG_DEV_OFFSET, dev_offset);
        self.w32(REG_DMA_LEN, len);
    }
    /// START and wait for the worker.
    fn run(&mut self, cmd: u32) {
        self.w32(REG_DMA_CMD, cmd);
        assert!(self.dev.wait_idle(SECOND));
    }
    fn fill(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
    fn devmem(&mut self, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.dev.read_bar(1, off, &mut v);
        v
    }
    fn ack(&mut self) {
        let s = self.r32(REG_IRQ_STATUS);
        self.w32(REG_IRQ_STATUS, s);
    }
    /// Asserts the device failed the last START with `err`.
    fn assert_error(&mut self, err: u32) {
        assert_eq!(self.r32(REG_STATUS), STATUS_ERROR);
        assert_eq!(self.r32(REG_ERROR), err);
        assert_eq!(self.r32(REG_IRQ_STATUS) & IRQ_ERROR, IRQ_ERROR);
    }
    fn records(&self) -> Vec<crate::trace::DmaRecord> {
        self.dev.trace_sink().unwrap().finish().unwrap();
        self.buf.records()
    }
}

#[test]
fn identity_registers() {
    let mut r = rig();
    assert_eq!(r.r32(REG_MAGIC), MAGIC);
    assert_eq!(r.r32(REG_VERSION), VERSION);
    assert_eq!(r.r32(REG_CAPS), 24 | CAPS_SG);
    assert_eq!(r.r32(REG_DEVMEM_SIZE), 65536);
    let mut r = rig_with(Dma24Config::parse("mask-bits=32,overflow=truncate,mem=8").unwrap());
    assert_eq!(r.r32(REG_CAPS), 32 | CAPS_SG | CAPS_TRUNCATE);
    assert_eq!(r.r32(REG_DEVMEM_SIZE), 8192);
    // Read-only.
    r.w32(REG_MAGIC, 0);
    r.w32(REG_CAPS, 0);
    assert_eq!(r.r32(REG_MAGIC), MAGIC);
    assert_eq!(r.r32(REG_CAPS), 32 | CAPS_SG | CAPS_TRUNCATE);
}

#[test]
fn read_write_registers() {
    let mut r = rig();
    r.w64(REG_DMA_ADDR, 0x1122_3344_5566_7788);
    assert_eq!(r.r64(REG_DMA_ADDR), 0x1122_3344_5566_7788);
    r.w32(REG_DMA_ADDR + 4, 0);
    assert_eq!(r.r64(REG_DMA_ADDR), 0x5566_7788);
    r.dev.write_bar(0, REG_DMA_ADDR + 1, &[0xaa]);
    assert_eq!(r.r64(REG_DMA_ADDR), 0x5566_aa88);
    r.w64(REG_DEV_OFFSET, 0x0000_2000_0000_0100); // DEV_OFFSET and DMA_LEN at once
    assert_eq!(r.r32(REG_DEV_OFFSET), 0x100);
    assert_eq!(r.r32(REG_DMA_LEN), 0x2000);
    // CMD reads as zero; CONTROL keeps IRQ_ENABLE only.
    assert_eq!(r.r32(REG_DMA_CMD), 0);
    r.w32(REG_CONTROL, 0xffff_fffe);
    assert_eq!(r.r32(REG_CONTROL), CTRL_IRQ_ENABLE);
    r.w32(REG_CONTROL, 0);
    assert_eq!(r.r32(REG_CONTROL), 0);
    // Status, error and the counters ignore writes.
    for off in [REG_STATUS, REG_ERROR] {
        r.w32(off, 0xffff_ffff);
        assert_eq!(r.r32(off), 0);
    }
    for off in [
        REG_COUNT_TRANSFERS,
        REG_COUNT_BYTES_TO_DEVICE,
        REG_COUNT_BYTES_FROM_DEVICE,
        REG_COUNT_FAULTS,
        REG_LAST_SEQ,
        REG_FAULT_ADDR,
    ] {
        r.w64(off, u64::MAX);
        assert_eq!(r.r64(off), 0, "{off:#x}");
    }
    // Unmapped space.
    r.w32(0x800, 0xffff_ffff);
    assert_eq!(r.r32(0x800), 0);
    assert_eq!(r.r32(0xffc), 0);
}

#[test]
fn memory_decode_off_master_aborts() {
    let mut r = rig();
    r.cfg16(0x04, CMD_BUS_MASTER);
    assert_eq!(r.r32(REG_MAGIC), 0xffff_ffff);
    r.w32(REG_DMA_LEN, 5);
    r.dev.write_bar(1, 0, &[1, 2, 3, 4]);
    assert_eq!(r.devmem(0, 4), [0xff; 4]);
    r.cfg16(0x04, CMD_MEM | CMD_BUS_MASTER);
    assert_eq!(r.r32(REG_DMA_LEN), 0);
    assert_eq!(r.devmem(0, 4), [0; 4]);
    assert_eq!(r.r32(REG_MAGIC), MAGIC);
    let mut b = [0u8; 4];
    r.dev.read_bar(7, 0, &mut b);
    assert_eq!(b, [0xff; 4]);
}

#[test]
fn device_memory_any_width() {
    let mut r = rig();
    r.dev.write_bar(1, 3, &[0xab]);
    r.dev.write_bar(1, 6, &0x1234u16.to_le_bytes());
    r.dev
        .write_bar(1, 8, &0xdead_beef_cafe_f00du64.to_le_bytes());
    r.dev.write_bar(1, 0xfffe, &[1, 2, 3, 4]); // runs off the end: tail dropped
    assert_eq!(
        r.devmem(0, 16),
        [0, 0, 0, 0xab, 0, 0, 0x34, 0x12, 0x0d, 0xf0, 0xfe, 0xca, 0xef, 0xbe, 0xad, 0xde]
    );
    assert_eq!(r.devmem(0xfffe, 4), [1, 2, 0, 0]);
    assert_eq!(r.devmem(u64::MAX, 2), [0, 0]);
}

#[test]
fn pci_identity_and_bars_through_the_trait() {
    let mut r = rig();
    assert_eq!(r.cfg32(0), 0xd024_1234);
    r.dev.write_config(0x10, &u32::MAX.to_le_bytes());
    r.dev.write_config(0x14, &u32::MAX.to_le_bytes());
    assert_eq!(r.cfg32(0x10), 0xffff_f000);
    assert_eq!(r.cfg32(0x14), 0xffff_0000);
    assert!(r.dev.bars().iter().all(|b| !b.decoding), "sizing");
    r.dev.write_config(0x10, &0xfe00_0000u32.to_le_bytes());
    r.dev.write_config(0x14, &0xfe01_0000u32.to_le_bytes());
    let bars = r.dev.bars();
    assert_eq!(
        (bars[0].address, bars[0].size, bars[0].decoding),
        (0xfe00_0000, 4096, true)
    );
    assert_eq!(
        (bars[1].address, bars[1].size, bars[1].decoding),
        (0xfe01_0000, 65536, true)
    );
    r.cfg16(0x04, CMD_BUS_MASTER);
    assert!(r.dev.bars().iter().all(|b| !b.decoding));
}

#[test]
fn to_device_then_from_device_with_intx() {
    let mut r = rig();
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 13).to_le_bytes()[0]).collect();
    r.fill(0x4000, &data);
    r.program(0x4000, 0x800, 4096);
    r.run(CMD_START);
    assert_eq!(r.r32(REG_STATUS), STATUS_DONE);
    assert_eq!(r.r32(REG_ERROR), ERR_NONE);
    assert_eq!(r.r32(REG_IRQ_STATUS), IRQ_DONE);
    assert!(r.dev.intx_asserted());
    assert_eq!(
        (r.cfg32(0x04) >> 16) & u32::from(STATUS_INTX),
        u32::from(STATUS_INTX)
    );
    assert_eq!(r.irq.take(), [Irq::Intx(true)]);
    assert_eq!(r.devmem(0x800, 4096), data);
    // Acknowledge: W1C of the wrong bit keeps the line up, the right one drops it.
    r.w32(REG_IRQ_STATUS, IRQ_ERROR);
    assert!(r.dev.intx_asserted());
    r.w32(REG_IRQ_STATUS, IRQ_DONE);
    assert!(!r.dev.intx_asserted());
    assert_eq!(r.r32(REG_IRQ_STATUS), 0);
    assert_eq!((r.cfg32(0x04) >> 16) & u32::from(STATUS_INTX), 0);
    assert_eq!(r.irq.take(), [Irq::Intx(false)]);
    // And back out to another buffer in the second RAM region.
    r.program(0x20_0100, 0x800, 4096);
    r.run(CMD_START | CMD_FROM_DEVICE);
    assert_eq!(r.r32(REG_STATUS), STATUS_DONE);
    assert_eq!(r.read(0x20_0100, 4096), data);
    assert_eq!(r.r64(REG_COUNT_TRANSFERS), 2);
    assert_eq!(r.r64(REG_COUNT_BYTES_TO_DEVICE), 4096);
    assert_eq!(r.r64(REG_COUNT_BYTES_FROM_DEVICE), 4096);
    assert_eq!(r.r64(REG_COUNT_FAULTS), 0);
    assert_eq!(r.r64(REG_LAST_SEQ), 2);
    let recs = r.records();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[1].seq, recs[1].transfer), (2, 2));
    assert_eq!(recs[1].hash, recs[0].hash);
}

#[test]
fn msi_instead_of_intx() {
    let mut r = rig();
    r.dev.write_config(0x44, &0xfee0_1000u32.to_le_bytes());
    r.dev.write_config(0x48, &0u32.to_le_bytes());
    r.dev.write_config(0x4c, &0x0000_4041u32.to_le_bytes());
    r.dev.write_config(0x42, &1u16.to_le_bytes());
    r.program(0x1000, 0, 64);
    r.run(CMD_START);
    assert_eq!(r.irq.take(), [Irq::Msi(0xfee0_1000, 0x4041)]);
    assert!(!r.dev.intx_asserted());
    // One message per completion, even before the first is acknowledged.
    r.run(CMD_START);
    assert_eq!(r.irq.take(), [Irq::Msi(0xfee0_1000, 0x4041)]);
    r.ack();
    // An error completion too.
    r.program(0x100_0000, 0, 64);
    r.run(CMD_START);
    r.assert_error(ERR_MASK);
    assert_eq!(r.irq.take(), [Irq::Msi(0xfee0_1000, 0x4041)]);
    // Disabling MSI with a cause pending falls back to INTx at once.
    r.dev.write_config(0x42, &0u16.to_le_bytes());
    assert!(r.dev.intx_asserted());
    assert_eq!(r.irq.take(), [Irq::Intx(true)]);
}

#[test]
fn interrupt_disable_and_irq_enable() {
    let mut r = rig();
    r.cfg16(0x04, CMD_MEM | CMD_BUS_MASTER | CMD_INTX_DISABLE);
    r.program(0x1000, 0, 64);
    r.run(CMD_START);
    assert!(!r.dev.intx_asserted());
    // Status.Interrupt Status still shows the request.
    assert_ne!((r.cfg32(0x04) >> 16) & u32::from(STATUS_INTX), 0);
    r.cfg16(0x04, CMD_MEM | CMD_BUS_MASTER);
    assert!(r.dev.intx_asserted());
    r.ack();
    assert_eq!(r.irq.take(), [Irq::Intx(true), Irq::Intx(false)]);
    // CTRL_IRQ_ENABLE off: the cause is latched but nothing is signalled
    // until interrupts are enabled again.
    r.w32(REG_CONTROL, 0);
    r.run(CMD_START);
    assert_eq!(r.r32(REG_IRQ_STATUS), IRQ_DONE);
    assert!(!r.dev.intx_asserted());
    assert_eq!(r.irq.take(), []);
    r.w32(REG_CONTROL, CTRL_IRQ_ENABLE);
    assert!(r.dev.intx_asserted());
    assert_eq!(r.irq.take(), [Irq::Intx(true)]);
}

#[test]
fn refusals_without_memory() {
    let mut r = rig();
    type Case<'a> = (&'a dyn Fn(&mut Rig), u32, u32);
    let cases: [Case; 5] = [
        (&|r| r.program(0x1000, 0, 0), CMD_START, ERR_BAD_LENGTH),
        (
            &|r| r.program(0x1000, 0, 0x1_0001),
            CMD_START,
            ERR_BAD_LENGTH,
        ),
        (
            &|r| r.program(0x1000, 0xff00, 0x200),
            CMD_START,
            ERR_BAD_OFFSET,
        ),
        (
            &|r| r.program(0x1000, 0x1_0000, 16),
            CMD_START | CMD_SG,
            ERR_BAD_OFFSET,
        ),
        (
            &|r| r.program(0x1000, 0, 16),
            CMD_START | 0x10,
            ERR_BAD_COMMAND,
        ),
    ];
    for (i, (setup, cmd, err)) in cases.into_iter().enumerate() {
        setup(&mut r);
        r.run(cmd);
        r.assert_error(err);
        assert_eq!(r.r64(REG_COUNT_FAULTS), i as u64 + 1);
        assert_eq!(r.r64(REG_LAST_SEQ), i as u64 + 1);
        assert_eq!(r.r64(REG_FAULT_ADDR), 0x1000);
        r.ack();
    }
    // Bus mastering off.
    r.cfg16(0x04, CMD_MEM);
    r.program(0x2000, 0, 16);
    r.run(CMD_START);
    r.assert_error(ERR_BME_OFF);
    assert_eq!(r.r64(REG_FAULT_ADDR), 0x2000);
    // A write of direction bits without START does nothing.
    r.ack();
    r.w32(REG_DMA_CMD, CMD_FROM_DEVICE);
    assert_eq!(r.r32(REG_IRQ_STATUS), 0);
    let recs = r.records();
    let outcomes: Vec<_> = recs.iter().map(|x| x.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::BadLength,
            Outcome::BadLength,
            Outcome::BadOffset,
            Outcome::BadOffset,
            Outcome::BadCommand,
            Outcome::BmeOff
        ]
    );
    assert!(recs
        .iter()
        .all(|x| x.effective_addr.is_none() && x.hash.is_none()));
    assert_eq!(recs[5].error, ERR_BME_OFF);
    assert_eq!(recs[5].requested_addr.0, 0x2000);
}

#[test]
fn memory_faults_are_reported() {
    let mut r = rig();
    let before = r.read(0, 0x10_0000);
    r.program(0xff_ff00, 0, 0x200);
    r.run(CMD_START | CMD_FROM_DEVICE);
    r.assert_error(ERR_MASK);
    assert_eq!(r.r64(REG_FAULT_ADDR), 0xff_ff00);
    r.ack();
    r.program(0x18_0000, 0, 16);
    r.run(CMD_START | CMD_FROM_DEVICE);
    r.assert_error(ERR_RAM);
    assert_eq!(r.read(0, 0x10_0000), before);
    assert_eq!(r.r64(REG_COUNT_FAULTS), 2);
    assert_eq!(r.r64(REG_COUNT_BYTES_FROM_DEVICE), 0);
}

#[test]
fn truncate_mode_lands_low_and_says_so() {
    let mut r = rig_with(Dma24Config::parse("overflow=truncate").unwrap());
    r.dev.write_bar(1, 0, &[7; 32]);
    r.program(0x100_2000, 0, 32);
    r.run(CMD_START | CMD_FROM_DEVICE);
    assert_eq!(r.r32(REG_STATUS), STATUS_DONE);
    assert_eq!(r.read(0x2000, 32), [7; 32]);
    let rec = &r.records()[0];
    assert_eq!(rec.outcome, Outcome::Truncated);
    assert_eq!(rec.requested_addr.0, 0x100_2000);
    assert_eq!(rec.effective_addr.map(|h| h.0), Some(0x2000));
}

#[test]
fn scatter_gather_end_to_end() {
    let mut r = rig();
    let list = [
        Descriptor {
            addr: 0x3000,
            len: 8,
            flags: 0,
        },
        Descriptor {
            addr: 0x20_0000,
            len: 8,
            flags: DESC_LAST,
        },
    ];
    let bytes: Vec<u8> = list.iter().flat_map(|d| d.to_bytes()).collect();
    r.fill(0x8000, &bytes);
    r.fill(0x3000, &[1; 8]);
    r.fill(0x20_0000, &[2; 8]);
    r.program(0x8000, 0x10, 0);
    r.run(CMD_START | CMD_SG);
    assert_eq!(r.r32(REG_STATUS), STATUS_DONE);
    assert_eq!(
        r.devmem(0x10, 16),
        [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
    );
    assert_eq!(r.r64(REG_COUNT_BYTES_TO_DEVICE), 16);
    assert_eq!(r.r64(REG_LAST_SEQ), 4);
}

#[test]
fn start_while_busy_and_bme_cleared_mid_transfer() {
    let mut r = rig();
    r.program(0x1000, 0, 64);
    let shared = Arc::clone(&r.dev.shared);
    let hold = lock(&shared.devmem); // the worker cannot start copying
    r.w32(REG_DMA_CMD, CMD_START);
    assert_eq!(r.r32(REG_STATUS), STATUS_BUSY);
    r.w32(REG_DMA_CMD, CMD_START);
    assert_eq!(r.r32(REG_STATUS), STATUS_BUSY | STATUS_ERROR);
    assert_eq!(r.r32(REG_ERROR), ERR_BUSY);
    assert!(!r.dev.wait_idle(Duration::from_millis(20)));
    // The driver turns bus mastering off before the engine gets going.
    r.cfg16(0x04, CMD_MEM);
    drop(hold);
    assert!(r.dev.wait_idle(SECOND));
    r.assert_error(ERR_BME_OFF);
    let outcomes: Vec<_> = r.records().iter().map(|x| x.outcome).collect();
    assert_eq!(outcomes, [Outcome::Busy, Outcome::BmeOff]);
}

#[test]
fn reset_while_busy_discards_the_transfer() {
    let mut r = rig();
    r.w64(REG_COUNT_FAULTS, 0);
    r.program(0x1000, 0, 64);
    let shared = Arc::clone(&r.dev.shared);
    let hold = lock(&shared.devmem);
    r.w32(REG_DMA_CMD, CMD_START);
    r.w32(REG_CONTROL, CTRL_RESET | CTRL_IRQ_ENABLE);
    assert_eq!(r.r32(REG_STATUS), 0);
    assert_eq!(r.r32(REG_CONTROL), CTRL_IRQ_ENABLE);
    assert_eq!(r.r64(REG_DMA_ADDR), 0);
    assert_eq!(r.r32(REG_DMA_LEN), 0);
    drop(hold);
    assert!(r.dev.wait_idle(SECOND));
    assert_eq!(r.r32(REG_STATUS), 0);
    assert_eq!(r.r32(REG_IRQ_STATUS), 0);
    assert!(!r.dev.intx_asserted());
    assert_eq!(r.irq.take(), []);
    // The device works again after the reset.
    r.program(0x1000, 0, 64);
    r.run(CMD_START);
    assert_eq!(r.r32(REG_STATUS), STATUS_DONE);
    let recs = r.records();
    assert_eq!(recs[0].outcome, Outcome::Aborted);
    assert_eq!(recs[1].outcome, Outcome::Ok);
    // The reset is in the trace, placed before the aborted segment: the
    // transfer it cut short (1) moved nothing after it; transfer 2 is new.
    let t = crate::trace::Trace::parse(&r.buf.text()).unwrap();
    let [reset] = t.resets.as_slice() else {
        panic!("one reset: {:?}", t.resets)
    };
    assert_eq!((reset.after_seq, reset.last_transfer), (0, 1));
    assert_eq!(reset.bdf, t.header.bdf);
    let after: Vec<_> = t
        .records
        .iter()
        .filter(|d| d.seq > reset.after_seq)
        .collect();
    assert!(after
        .iter()
        .filter(|d| d.transfer <= reset.last_transfer)
        .all(|d| d.outcome == Outcome::Aborted && d.hash.is_none()));
    assert_eq!(
        t.footer.unwrap().records,
        2,
        "resets are not counted as records"
    );
}

#[test]
fn reset_clears_pending_interrupt_keeps_counters() {
    let mut r = rig();
    r.program(0x1000, 0, 64);
    r.run(CMD_START);
    assert!(r.dev.intx_asserted());
    r.w32(REG_CONTROL, CTRL_RESET);
    assert!(!r.dev.intx_asserted());
    assert_eq!(r.r32(REG_IRQ_STATUS), 0);
    assert_eq!(r.r32(REG_CONTROL), 0);
    assert_eq!(r.r64(REG_COUNT_TRANSFERS), 1);
    assert_eq!(r.r64(REG_COUNT_BYTES_TO_DEVICE), 64);
    assert_eq!(r.r64(REG_LAST_SEQ), 1);
}

#[test]
fn drop_with_a_transfer_queued_joins_the_worker() {
    let mut r = rig();
    r.program(0x1000, 0, 64);
    r.w32(REG_DMA_CMD, CMD_START);
    let sink = r.dev.trace_sink().cloned().unwrap();
    drop(r.dev);
    let stats = sink.finish().unwrap();
    assert_eq!(stats.records, 1);
}

#[test]
fn works_without_a_trace() {
    let mem = mem(&[(0, 0x1_0000)]);
    let irq = Arc::new(IrqLog::default());
    let dev = Dma24::new(Dma24Config::default(), mem, irq, None).unwrap();
    dev.write_config(0x04, &(CMD_MEM | CMD_BUS_MASTER).to_le_bytes());
    dev.write_bar(0, REG_DMA_LEN, &16u32.to_le_bytes());
    dev.write_bar(0, REG_DMA_CMD, &CMD_START.to_le_bytes());
    assert!(dev.wait_idle(SECOND));
    let mut b = [0; 8];
    dev.read_bar(0, REG_LAST_SEQ, &mut b);
    assert_eq!(u64::from_le_bytes(b), 1);
    assert!(dev.trace_sink().is_none());
}

#[test]
fn invalid_config_is_refused() {
    let bad = Dma24Config {
        mask_bits: 70,
        ..Dma24Config::default()
    };
    let err = Dma24::new(bad, mem(&[(0, 4096)]), Arc::new(IrqLog::default()), None)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid dma24 configuration: dma24 option mask-bits=70: must be between 12 and 64"
    );
}

#[test]
fn usable_as_a_boxed_pci_device() {
    let dev = Dma24::new(
        Dma24Config::default(),
        mem(&[(0, 4096)]),
        Arc::new(IrqLog::default()),
        None,
    )
    .unwrap();
    let boxed: Box<dyn PciDevice> = Box::new(dev);
    let mut b = [0u8; 2];
    boxed.read_config(0, &mut b);
    assert_eq!(u16::from_le_bytes(b), VENDOR_ID);
    assert_eq!(boxed.bars().len(), 2);
}
