use super::*;
use crate::dma24_config::Dma24Config;
use crate::regs::*;
use crate::testutil::{assert_same, mem, trace, Mem, SharedBuf};
use crate::trace::{HashHex, Hex, TraceSink};

/// A test size as a register value (test sizes are small).
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap()
}

const DEVMEM: usize = 64 * 1024;

struct Rig {
    mem: Mem,
    devmem: Vec<u8>,
    tracer: Tracer,
    sink: TraceSink,
    buf: SharedBuf,
    mask: DmaMask,
}

/// 1 MiB of RAM at 0, a gap, 64 KiB at 0x20_0000; 24-bit mask unless told.
fn rig(bits: u8, overflow: Overflow) -> Rig {
    let config = Dma24Config {
        mask_bits: bits,
        overflow,
        ..Dma24Config::default()
    };
    let (sink, buf) = trace(&config);
    Rig {
        mem: mem(&[(0, 0x10_0000), (0x20_0000, 0x1_0000)]),
        devmem: (0..DEVMEM).map(|i| (i * 7).to_le_bytes()[0]).collect(),
        tracer: Tracer::new(Some(sink.clone())),
        sink,
        buf,
        mask: DmaMask { bits, overflow },
    }
}

fn ok() -> Result<(), Outcome> {
    Ok(())
}

impl Rig {
    fn run(&mut self, job: Job) -> Report {
        let engine = Engine::new(&self.mem, self.mask, &self.tracer);
        engine.run(&job, &mut self.devmem, &ok)
    }

    fn records(&self) -> Vec<crate::trace::DmaRecord> {
        self.sink.finish().unwrap();
        self.buf.records()
    }

    fn fill(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// All of guest RAM, to check that nothing changed.
    fn ram(&self) -> Vec<u8> {
        [self.read(0, 0x10_0000), self.read(0x20_0000, 0x1_0000)].concat()
    }
}

fn single(dir: Direction, addr: u64, len: u32, dev_offset: u32) -> Job {
    Job {
        transfer: 1,
        dir,
        sg: false,
        addr,
        len,
        dev_offset,
    }
}

#[test]
fn reject_mask_translation() {
    let m = DmaMask {
        bits: 24,
        overflow: Overflow::Reject,
    };
    assert_eq!(m.translate(0xff_f000, 0x1000), Ok((0xff_f000, false)));
    assert_eq!(m.translate(0xff_f001, 0x1000), Err(Outcome::RejectedMask));
    assert_eq!(m.translate(0x100_0000, 1), Err(Outcome::RejectedMask));
    let m64 = DmaMask {
        bits: 64,
        overflow: Overflow::Reject,
    };
    assert_eq!(m64.translate(u64::MAX, 1), Ok((u64::MAX, false)));
    assert_eq!(m64.translate(u64::MAX, 2), Err(Outcome::RejectedMask));
}

#[test]
fn truncate_translation_and_pieces() {
    let m = DmaMask {
        bits: 24,
        overflow: Overflow::Truncate,
    };
    assert_eq!(m.translate(0x1234_5678, 16), Ok((0x34_5678, true)));
    assert_eq!(m.translate(0x34_5678, 16), Ok((0x34_5678, false)));
    // In range but runs past the top: wraps.
    assert_eq!(m.translate(0xff_fff0, 0x20), Ok((0xff_fff0, true)));
    let p: Vec<_> = m.pieces(0xff_fff0, 0x20).collect();
    assert_eq!(p, vec![(0xff_fff0, 0, 0x10), (0, 0x10, 0x10)]);
    // 12-bit mask, 3 pages: wraps onto the same page three times.
    let m12 = DmaMask {
        bits: 12,
        overflow: Overflow::Truncate,
    };
    let p: Vec<_> = m12.pieces(0x800, 0x3000).collect();
    assert_eq!(p.len(), 4);
    assert_eq!(p[0], (0x800, 0, 0x800));
    assert_eq!(p[1], (0, 0x800, 0x1000));
    assert_eq!(p.iter().map(|x| x.2).sum::<u64>(), 0x3000);
    let m64 = DmaMask {
        bits: 64,
        overflow: Overflow::Truncate,
    };
    assert_eq!(
        m64.pieces(u64::MAX, 2).collect::<Vec<_>>(),
        vec![(u64::MAX, 0, 1), (0, 1, 1)]
    );
}

#[test]
fn descriptor_bytes_round_trip() {
    let d = Descriptor {
        addr: 0x1122_3344_5566_7788,
        len: 0x99aa_bbcc,
        flags: DESC_LAST,
    };
    let b = d.to_bytes();
    assert_eq!(b[0], 0x88);
    assert_eq!(b[8], 0xcc);
    assert_eq!(b[12], 1);
    assert_eq!(Descriptor::from_bytes(b), d);
}

#[test]
fn to_device_copies_and_traces() {
    let mut r = rig(24, Overflow::Reject);
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251).to_le_bytes()[0]).collect();
    r.fill(0x8000, &data);
    let rep = r.run(single(Direction::ToDevice, 0x8000, 4096, 0x100));
    assert_eq!(
        rep,
        Report {
            failure: None,
            truncated: false,
            bytes: 4096,
            last_seq: 1,
            fault_addr: None
        }
    );
    assert_eq!(&r.devmem[0x100..0x1100], &data[..]);
    assert_eq!(r.devmem[0xff], (0xff * 7u32).to_le_bytes()[0]); // untouched around it
    assert_eq!(r.devmem[0x1100], (0x1100 * 7u32).to_le_bytes()[0]);
    let recs = r.records();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!((rec.seq, rec.transfer, rec.segment), (1, 1, 0));
    assert_eq!(rec.dir, Direction::ToDevice);
    assert_eq!(rec.requested_addr, Hex(0x8000));
    assert_eq!(rec.effective_addr, Some(Hex(0x8000)));
    assert_eq!((rec.len, rec.dev_offset, rec.mask_bits), (4096, 0x100, 24));
    assert_eq!(rec.outcome, Outcome::Ok);
    assert_eq!(rec.error, 0);
    assert_eq!(rec.hash, Some(HashHex(hash_bytes(&data))));
}

#[test]
fn from_device_copies() {
    let mut r = rig(24, Overflow::Reject);
    let before = r.ram();
    let rep = r.run(single(Direction::FromDevice, 0x20_0010, 32, 8));
    assert_eq!(rep.failure, None);
    assert_eq!(rep.bytes, 32);
    assert_eq!(r.read(0x20_0010, 32), r.devmem[8..40].to_vec());
    let mut expect = before;
    expect[0x10_0010..0x10_0030].copy_from_slice(&r.devmem[8..40]);
    assert_same(&r.ram(), &expect);
}

#[test]
fn beyond_mask_is_rejected_untouched() {
    let mut r = rig(16, Overflow::Reject);
    let (ram, dev) = (r.ram(), r.devmem.clone());
    // Starts inside the 16-bit mask but ends beyond it.
    let rep = r.run(single(Direction::FromDevice, 0xff00, 0x200, 0));
    assert_eq!(rep.failure, Some(Outcome::RejectedMask));
    assert_eq!(rep.error_code(), ERR_MASK);
    assert_eq!(rep.fault_addr, Some(0xff00));
    assert_eq!(rep.bytes, 0);
    let rep = r.run(single(Direction::ToDevice, 0x1_0000, 1, 0));
    assert_eq!(rep.failure, Some(Outcome::RejectedMask));
    assert_same(&r.ram(), &ram);
    assert_same(&r.devmem, &dev);
    let recs = r.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].outcome, Outcome::RejectedMask);
    assert_eq!(recs[0].error, ERR_MASK);
    assert_eq!(recs[0].effective_addr, None);
    assert_eq!(recs[0].hash, None);
    assert_eq!(recs[1].requested_addr, Hex(0x1_0000));
}

#[test]
fn truncate_wraps_like_hardware() {
    let mut r = rig(16, Overflow::Truncate);
    let before = r.ram();
    // 0x3_0040 has bit 16+ set: lands at 0x0040.
    let rep = r.run(single(Direction::FromDevice, 0x3_0040, 64, 0));
    assert_eq!(rep.failure, None);
    assert!(rep.truncated);
    assert_eq!(r.read(0x40, 64), r.devmem[0..64].to_vec());
    assert_eq!(r.read(0x3_0040, 64), before[0x3_0040..0x3_0080].to_vec());
    // Runs past 0xffff: the tail wraps to 0.
    let rep = r.run(single(Direction::FromDevice, 0xfff0, 0x20, 0x100));
    assert!(rep.truncated);
    assert_eq!(r.read(0xfff0, 16), r.devmem[0x100..0x110].to_vec());
    assert_eq!(r.read(0, 16), r.devmem[0x110..0x120].to_vec());
    let recs = r.records();
    assert_eq!(recs[0].outcome, Outcome::Truncated);
    assert_eq!(recs[0].requested_addr, Hex(0x3_0040));
    assert_eq!(recs[0].effective_addr, Some(Hex(0x40)));
    assert_eq!(recs[0].error, ERR_NONE);
    assert!(recs[0].hash.is_some());
    assert_eq!(recs[1].effective_addr, Some(Hex(0xfff0)));
}

#[test]
fn outside_ram_is_rejected_untouched() {
    let mut r = rig(32, Overflow::Reject);
    let (ram, dev) = (r.ram(), r.devmem.clone());
    for (addr, len) in [
        (0x15_0000, 16),
        (0xf_fff0, 32),
        (0x20_fff0, 32),
        (0x100_0000, 4096),
    ] {
        for dir in [Direction::ToDevice, Direction::FromDevice] {
            let rep = r.run(single(dir, addr, len, 0));
            assert_eq!(rep.failure, Some(Outcome::RejectedRam), "{addr:#x}");
            assert_eq!(rep.error_code(), ERR_RAM);
            assert_eq!(rep.fault_addr, Some(addr));
        }
    }
    assert_same(&r.ram(), &ram);
    assert_same(&r.devmem, &dev);
    let recs = r.records();
    assert_eq!(recs.len(), 8);
    assert!(recs
        .iter()
        .all(|x| x.outcome == Outcome::RejectedRam && x.hash.is_none()));
    assert_eq!(recs[0].effective_addr, Some(Hex(0x15_0000)));
}

#[test]
fn truncated_into_a_gap_is_rejected() {
    // 24-bit truncate: 0x1_0015_0000 -> 0x15_0000, which is in the gap.
    let mut r = rig(24, Overflow::Truncate);
    let rep = r.run(single(Direction::FromDevice, 0x1_0015_0000, 16, 0));
    assert_eq!(rep.failure, Some(Outcome::RejectedRam));
    let rec = &r.records()[0];
    assert_eq!(rec.effective_addr, Some(Hex(0x15_0000)));
    assert_eq!(rec.requested_addr, Hex(0x1_0015_0000));
}

#[test]
fn gate_refusals() {
    let mut r = rig(24, Overflow::Reject);
    let ram = r.ram();
    let engine = Engine::new(&r.mem, r.mask, &r.tracer);
    let job = single(Direction::FromDevice, 0x1000, 16, 0);
    let rep = engine.run(&job, &mut r.devmem, &|| Err(Outcome::BmeOff));
    assert_eq!(rep.failure, Some(Outcome::BmeOff));
    assert_eq!(rep.error_code(), ERR_BME_OFF);
    let rep = engine.run(&job, &mut r.devmem, &|| Err(Outcome::Aborted));
    assert_eq!(rep.failure, Some(Outcome::Aborted));
    assert_same(&r.ram(), &ram);
    let recs = r.records();
    assert_eq!(recs[0].outcome, Outcome::BmeOff);
    assert_eq!(recs[1].outcome, Outcome::Aborted);
    assert_eq!(recs[1].error, ERR_ABORTED);
}

#[test]
fn single_length_and_offset_rules() {
    assert_eq!(check_single(0, 0, DEVMEM), Err(Outcome::BadLength));
    assert_eq!(
        check_single(u32_of(DEVMEM) + 1, 0, DEVMEM),
        Err(Outcome::BadLength)
    );
    assert_eq!(check_single(u32_of(DEVMEM), 0, DEVMEM), Ok(()));
    assert_eq!(
        check_single(16, u32_of(DEVMEM) - 15, DEVMEM),
        Err(Outcome::BadOffset)
    );
    assert_eq!(check_single(16, u32::MAX, DEVMEM), Err(Outcome::BadOffset));
    let mut r = rig(24, Overflow::Reject);
    let rep = r.run(single(Direction::ToDevice, 0, 0, 0));
    assert_eq!(rep.failure, Some(Outcome::BadLength));
    let rep = r.run(single(Direction::ToDevice, 0, 16, u32_of(DEVMEM)));
    assert_eq!(rep.failure, Some(Outcome::BadOffset));
    assert_eq!(rep.error_code(), ERR_BAD_OFFSET);
}

// ---- scatter-gather ----

fn sg(dir: Direction, list: u64, dev_offset: u32) -> Job {
    Job {
        transfer: 2,
        dir,
        sg: true,
        addr: list,
        len: 0,
        dev_offset,
    }
}

fn put_list(r: &Rig, at: u64, descs: &[Descriptor]) {
    let bytes: Vec<u8> = descs.iter().flat_map(|d| d.to_bytes()).collect();
    r.fill(at, &bytes);
}

fn data(addr: u64, len: u32) -> Descriptor {
    Descriptor {
        addr,
        len,
        flags: 0,
    }
}

fn last(addr: u64, len: u32) -> Descriptor {
    Descriptor {
        addr,
        len,
        flags: DESC_LAST,
    }
}

fn chain(addr: u64) -> Descriptor {
    Descriptor {
        addr,
        len: 0,
        flags: DESC_CHAIN,
    }
}

#[test]
fn sg_gathers_through_a_chain() {
    let mut r = rig(24, Overflow::Reject);
    r.fill(0x1000, &[1; 100]);
    r.fill(0x5000, &[2; 200]);
    r.fill(0x20_0000, &[3; 300]);
    put_list(&r, 0x9000, &[data(0x1000, 100), chain(0xa000)]);
    put_list(&r, 0xa000, &[data(0x5000, 200), last(0x20_0000, 300)]);
    let rep = r.run(sg(Direction::ToDevice, 0x9000, 0x40));
    assert_eq!(rep.failure, None);
    assert_eq!(rep.bytes, 600);
    assert_eq!(rep.last_seq, 7);
    assert_eq!(&r.devmem[0x40..0xa4], &[1; 100][..]);
    assert_eq!(&r.devmem[0xa4..0x16c], &[2; 200][..]);
    assert_eq!(&r.devmem[0x16c..0x298], &[3; 300][..]);
    assert_eq!(r.devmem[0x298], (0x298 * 7u32).to_le_bytes()[0]);
    let recs = r.records();
    let dirs: Vec<_> = recs.iter().map(|x| x.dir).collect();
    use Direction::*;
    assert_eq!(
        dirs,
        [
            DescriptorFetch,
            ToDevice,
            DescriptorFetch,
            DescriptorFetch,
            ToDevice,
            DescriptorFetch,
            ToDevice
        ]
    );
    let addrs: Vec<_> = recs.iter().map(|x| x.requested_addr.0).collect();
    assert_eq!(
        addrs,
        [0x9000, 0x1000, 0x9010, 0xa000, 0x5000, 0xa010, 0x20_0000]
    );
    assert_eq!(
        recs.iter().map(|x| x.segment).collect::<Vec<_>>(),
        (0..7).collect::<Vec<u32>>()
    );
    assert_eq!(recs[4].dev_offset, 0xa4);
    assert!(recs
        .iter()
        .all(|x| x.transfer == 2 && x.outcome == Outcome::Ok));
    assert_eq!(recs[0].len, 16);
    assert_eq!(
        recs[0].hash,
        Some(HashHex(hash_bytes(&data(0x1000, 100).to_bytes())))
    );
}

#[test]
fn sg_scatters_from_device() {
    let mut r = rig(24, Overflow::Reject);
    put_list(&r, 0x9000, &[data(0x3000, 10), last(0x7000, 20)]);
    let before = r.ram();
    let rep = r.run(sg(Direction::FromDevice, 0x9000, 0));
    assert_eq!(rep.failure, None);
    assert_eq!(r.read(0x3000, 10), r.devmem[0..10].to_vec());
    assert_eq!(r.read(0x7000, 20), r.devmem[10..30].to_vec());
    let mut expect = before;
    expect[0x3000..0x300a].copy_from_slice(&r.devmem[0..10]);
    expect[0x7000..0x7014].copy_from_slice(&r.devmem[10..30]);
    // The list itself was only read.
    assert_same(&r.ram(), &expect);
}

fn sg_fails(r: &mut Rig, list: u64, want: Outcome) -> (Report, Vec<crate::trace::DmaRecord>) {
    let rep = r.run(sg(Direction::ToDevice, list, 0));
    assert_eq!(rep.failure, Some(want));
    assert_eq!(rep.error_code(), want.error_code());
    let recs = r.records();
    assert_eq!(recs.last().unwrap().outcome, want);
    assert_eq!(recs.last().unwrap().error, want.error_code());
    (rep, recs)
}

#[test]
fn sg_bad_descriptors() {
    for bad in [
        Descriptor {
            addr: 0x1000,
            len: 4,
            flags: DESC_LAST | 0x80,
        },
        Descriptor {
            addr: 0x1000,
            len: 4,
            flags: DESC_LAST | DESC_CHAIN,
        },
        last(0x1000, 0),
    ] {
        let mut r = rig(24, Overflow::Reject);
        put_list(&r, 0x9000, &[data(0x2000, 8), bad]);
        let (rep, recs) = sg_fails(&mut r, 0x9000, Outcome::BadDescriptor);
        assert_eq!(rep.bytes, 8, "the first segment moved");
        assert_eq!(rep.fault_addr, Some(0x1000));
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[3].requested_addr, Hex(0x1000));
        assert_eq!(recs[3].dir, Direction::ToDevice);
    }
}

#[test]
fn sg_chain_loop_is_caught() {
    let mut r = rig(24, Overflow::Reject);
    put_list(&r, 0x9000, &[chain(0x9000)]);
    let (rep, recs) = sg_fails(&mut r, 0x9000, Outcome::ListTooLong);
    assert_eq!(recs.len(), SG_MAX_DESCRIPTORS + 1);
    assert_eq!(rep.last_seq, SG_MAX_DESCRIPTORS as u64 + 1);
    assert_eq!(recs.last().unwrap().dir, Direction::DescriptorFetch);
}

#[test]
fn sg_too_many_segments() {
    let mut r = rig(24, Overflow::Reject);
    let list: Vec<_> = (0..SG_MAX_SEGMENTS + 1)
        .map(|i| data(0x1000 + i as u64, 1))
        .collect();
    put_list(&r, 0x1_0000, &list);
    let (rep, recs) = sg_fails(&mut r, 0x1_0000, Outcome::ListTooLong);
    assert_eq!(rep.bytes, SG_MAX_SEGMENTS as u64);
    assert_eq!(recs.last().unwrap().dir, Direction::ToDevice);
}

#[test]
fn sg_runs_off_device_memory() {
    let mut r = rig(24, Overflow::Reject);
    put_list(
        &r,
        0x9000,
        &[data(0x1000, 0x8000), data(0x1000, 0x8000), last(0x1000, 1)],
    );
    let (rep, _) = sg_fails(&mut r, 0x9000, Outcome::BadOffset);
    assert_eq!(rep.bytes, 0x1_0000);
}

#[test]
fn sg_list_obeys_mask_and_ram() {
    // The list itself beyond the 16-bit mask: refused at the first fetch.
    let mut r = rig(16, Overflow::Reject);
    put_list(&r, 0x2_0000, &[last(0x1000, 4)]);
    let (rep, recs) = sg_fails(&mut r, 0x2_0000, Outcome::RejectedMask);
    assert_eq!(rep.fault_addr, Some(0x2_0000));
    assert_eq!(recs[0].dir, Direction::DescriptorFetch);
    // A list that runs into the gap.
    let mut r = rig(24, Overflow::Reject);
    put_list(&r, 0xf_fff0, &[data(0x1000, 4)]);
    let (_, recs) = sg_fails(&mut r, 0xf_fff0, Outcome::RejectedRam);
    assert_eq!(recs[2].requested_addr, Hex(0x10_0000));
    // A data segment beyond the mask.
    let mut r = rig(16, Overflow::Reject);
    put_list(&r, 0x9000, &[last(0x1_fff0, 4)]);
    sg_fails(&mut r, 0x9000, Outcome::RejectedMask);
}

#[test]
fn sg_list_truncated_is_fetched_from_wrapped_address() {
    let mut r = rig(16, Overflow::Truncate);
    put_list(&r, 0x9000, &[last(0x1000, 4)]);
    r.fill(0x1000, &[9, 9, 9, 9]);
    let rep = r.run(sg(Direction::ToDevice, 0x7_9000, 0));
    assert_eq!(rep.failure, None);
    assert!(rep.truncated);
    assert_eq!(&r.devmem[..4], &[9, 9, 9, 9]);
    let recs = r.records();
    assert_eq!(recs[0].outcome, Outcome::Truncated);
    assert_eq!(recs[0].effective_addr, Some(Hex(0x9000)));
    assert_eq!(recs[1].outcome, Outcome::Ok);
}

#[test]
fn no_hash_without_trace() {
    let m = mem(&[(0, 0x1_0000)]);
    let tracer = Tracer::new(None);
    let engine = Engine::new(
        &m,
        DmaMask {
            bits: 24,
            overflow: Overflow::Reject,
        },
        &tracer,
    );
    let mut dev = vec![0u8; 4096];
    let rep = engine.run(&single(Direction::ToDevice, 0, 4096, 0), &mut dev, &ok);
    assert_eq!(rep.last_seq, 1);
    assert_eq!(rep.bytes, 4096);
}

#[test]
fn trace_without_hash() {
    let m = mem(&[(0, 0x1_0000)]);
    let buf = SharedBuf::default();
    let opts = crate::trace::TraceOptions {
        hash: false,
        ..Default::default()
    };
    let sink = TraceSink::from_writer(
        "t".into(),
        Box::new(buf.clone()),
        &Dma24Config::default(),
        opts,
    )
    .unwrap();
    let tracer = Tracer::new(Some(sink.clone()));
    assert!(tracer.enabled() && !tracer.hashes());
    let engine = Engine::new(
        &m,
        DmaMask {
            bits: 24,
            overflow: Overflow::Reject,
        },
        &tracer,
    );
    let mut dev = vec![0u8; 64];
    let rep = engine.run(&single(Direction::ToDevice, 0, 64, 0), &mut dev, &ok);
    assert_eq!(rep.failure, None);
    sink.finish().unwrap();
    assert!(buf
        .text()
        .lines()
        .next()
        .unwrap()
        .contains("\"hash\":\"none\""));
    let recs = buf.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, Outcome::Ok);
    assert_eq!(recs[0].hash, None);
}
