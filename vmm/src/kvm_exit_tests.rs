use std::sync::{Arc, Mutex};

use super::*;
use crate::bus::BusDevice;

/// A device whose bytes are its offset plus one, and which logs writes.
#[derive(Default)]
struct Probe {
    writes: Vec<(u64, Vec<u8>)>,
}

impl BusDevice for Probe {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (b, o) in data.iter_mut().zip(offset..) {
            *b = (o + 1).to_le_bytes()[0];
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.writes.push((offset, data.to_vec()));
    }
}

struct Rig {
    ctx: ExitContext,
    probe: Arc<Mutex<Probe>>,
}

/// The probe at ports 0x100-0x10f and at MMIO 0x1000-0x1fff.
fn rig() -> Rig {
    let probe = Arc::new(Mutex::new(Probe::default()));
    let mut pio = Bus::new();
    pio.insert(probe.clone(), 0x100, 0x10).unwrap();
    let mut mmio = Bus::new();
    mmio.insert(probe.clone(), 0x1000, 0x1000).unwrap();
    Rig {
        ctx: ExitContext::new(Arc::new(pio), Arc::new(mmio)),
        probe,
    }
}

impl Rig {
    fn handle(&mut self, exit: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> ExitAction {
        handle_kvm_exit(&mut self.ctx, exit)
    }

    fn port_io(&mut self, port: u16, size: usize, is_in: bool, data: &mut [u8]) {
        dispatch_port_io(&mut self.ctx, port, size, is_in, data);
    }
}

#[test]
fn mmio_reads_and_writes_reach_the_device() {
    let mut r = rig();
    let mut d = [0u8; 4];
    assert_eq!(
        r.handle(Ok(VcpuExit::MmioRead(0x1010, &mut d))),
        ExitAction::Resume
    );
    assert_eq!(d, [0x11, 0x12, 0x13, 0x14]);
    assert_eq!(
        r.handle(Ok(VcpuExit::MmioWrite(0x1020, &[7, 8]))),
        ExitAction::Resume
    );
    assert_eq!(r.probe.lock().unwrap().writes, vec![(0x20, vec![7, 8])]);
    assert_eq!(r.ctx.stats.mmio, 2);
    assert!(r.ctx.unhandled.is_empty());
}

#[test]
fn unclaimed_mmio_reads_all_ones_and_is_reported_once() {
    let mut r = rig();
    let mut d = [0u8; 4];
    for _ in 0..3 {
        assert_eq!(
            r.handle(Ok(VcpuExit::MmioRead(0x5000, &mut d))),
            ExitAction::Resume
        );
    }
    assert_eq!(d, [0xff; 4]);
    // Straddling the end of the device is not claimed either.
    r.handle(Ok(VcpuExit::MmioRead(0x1ffe, &mut d)));
    assert_eq!(d, [0xff; 4]);
    r.handle(Ok(VcpuExit::MmioWrite(0x6000, &[1])));
    assert_eq!(r.ctx.unhandled.len(), 3);
    assert_eq!(r.ctx.stats.mmio, 5);
}

#[test]
fn port_io_is_handed_back_then_dispatched_per_element() {
    let mut r = rig();
    let mut d = [0u8; 3];
    assert_eq!(
        r.handle(Ok(VcpuExit::IoIn(0x100, &mut d))),
        ExitAction::PortIo
    );
    assert_eq!(
        r.handle(Ok(VcpuExit::IoOut(0x100, &[1]))),
        ExitAction::PortIo
    );
    assert_eq!(r.ctx.stats.pio, 2);
    // `insb` with count 3: three 1-byte reads of the same port.
    r.port_io(0x104, 1, true, &mut d);
    assert_eq!(d, [5, 5, 5]);
    // `outsw` with count 2: two 2-byte writes.
    r.port_io(0x102, 2, false, &mut [1, 2, 3, 4]);
    assert_eq!(
        r.probe.lock().unwrap().writes,
        vec![(2, vec![1, 2]), (2, vec![3, 4])]
    );
    // No device: reads are all ones; size 0 does nothing.
    let mut e = [0u8; 2];
    r.port_io(0x80, 2, true, &mut e);
    assert_eq!(e, [0xff; 2]);
    r.port_io(0x100, 0, true, &mut e);
    assert_eq!(e, [0xff; 2]);
    assert_eq!(r.ctx.unhandled.len(), 1);
}

#[test]
fn exits_that_end_the_run() {
    let mut r = rig();
    let stop = |reason| ExitAction::Stop(reason);
    assert_eq!(r.handle(Ok(VcpuExit::Hlt)), stop(StopReason::Halted));
    assert_eq!(
        r.handle(Ok(VcpuExit::Shutdown)),
        stop(StopReason::TripleFault)
    );
    let cases = [
        (KVM_SYSTEM_EVENT_SHUTDOWN, StopReason::Halted),
        (KVM_SYSTEM_EVENT_RESET, StopReason::Reset),
        (KVM_SYSTEM_EVENT_CRASH, StopReason::Panic),
        (77, StopReason::Fault("KVM system event 77".into())),
    ];
    for (kind, reason) in cases {
        assert_eq!(r.handle(Ok(VcpuExit::SystemEvent(kind, &[]))), stop(reason));
    }
    match r.handle(Ok(VcpuExit::FailEntry(0x21, 3))) {
        ExitAction::Stop(StopReason::Fault(m)) => {
            assert!(
                m.contains("KVM_EXIT_FAIL_ENTRY") && m.contains("0x21") && m.contains("cpu 3"),
                "{m}"
            )
        }
        a => panic!("{a:?}"),
    }
    match r.handle(Ok(VcpuExit::Unsupported(99))) {
        ExitAction::Stop(StopReason::Fault(m)) => assert!(m.contains("unexpected KVM exit"), "{m}"),
        a => panic!("{a:?}"),
    }
    assert_eq!(r.ctx.stats.other, 1);
    match r.handle(Err(kvm_ioctls::Error::new(libc::EFAULT))) {
        ExitAction::Stop(StopReason::VmmError(m)) => {
            assert!(m.starts_with("KVM_RUN failed"), "{m}")
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn interruptions_and_internal_errors() {
    let mut r = rig();
    assert_eq!(r.handle(Ok(VcpuExit::Intr)), ExitAction::Resume);
    assert_eq!(r.handle(Ok(VcpuExit::IrqWindowOpen)), ExitAction::Resume);
    for errno in [libc::EINTR, libc::EAGAIN] {
        assert_eq!(
            r.handle(Err(kvm_ioctls::Error::new(errno))),
            ExitAction::Interrupted
        );
    }
    assert_eq!(r.ctx.stats.interrupted, 4);
    assert_eq!(
        r.handle(Ok(VcpuExit::InternalError)),
        ExitAction::InternalError
    );
}
