//! Property test: the DMA engine agrees with a naive byte-by-byte model of
//! the spec (README "DMA mask and overflow") on random single transfers and
//! random descriptor lists, over guest memory with holes. After every
//! transfer the whole of guest RAM and device memory must equal the model's,
//! so any stray write (or a write that should not have happened) fails.

use device_model::engine::{Descriptor, DmaMask, Engine, Job};
use device_model::regs::*;
use device_model::trace::Tracer;
use device_model::{Direction, Outcome, Overflow};
use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// A test size as a register value (test sizes are small).
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap()
}

/// A test address as an index into the model's RAM.
fn usize_of(a: u64) -> usize {
    usize::try_from(a).unwrap()
}

/// RAM: two regions with a hole between them and a hole above.
const REGIONS: [(u64, usize); 2] = [(0x0, 0x6000), (0x8000, 0x4000)];
const DEVMEM: usize = 0x2000;

/// Guest memory as the model sees it: a byte per address, None for holes.
struct Model {
    ram: Vec<Option<u8>>, // indexed by address, up to the top of RAM
    devmem: Vec<u8>,
    mask: DmaMask,
}

impl Model {
    fn byte_addr(&self, a: u64) -> Option<usize> {
        let a = usize::try_from(a).ok()?;
        self.ram.get(a).and_then(|b| b.map(|_| a))
    }

    /// One access; Ok(()) or the outcome that refused it. Nothing changes
    /// unless every byte can move.
    fn access(&mut self, dir: Direction, addr: u64, dev: &mut [u8]) -> Result<(), Outcome> {
        let len = dev.len() as u64;
        let mask = self.mask.value();
        let mut addrs = Vec::with_capacity(dev.len());
        for i in 0..len {
            let a = match self.mask.overflow {
                Overflow::Reject => match addr.checked_add(i) {
                    Some(a) if a <= mask => a,
                    _ => return Err(Outcome::RejectedMask),
                },
                Overflow::Truncate => (addr & mask).wrapping_add(i) & mask,
            };
            addrs.push(a);
        }
        let idx: Option<Vec<usize>> = addrs.iter().map(|&a| self.byte_addr(a)).collect();
        let idx = idx.ok_or(Outcome::RejectedRam)?;
        for (d, i) in dev.iter_mut().zip(idx) {
            match dir {
                Direction::FromDevice => self.ram[i] = Some(*d),
                _ => *d = self.ram[i].unwrap_or(0),
            }
        }
        Ok(())
    }

    fn run(&mut self, job: &Job) -> Result<(), Outcome> {
        if !job.sg {
            let (off, len) = (job.dev_offset as usize, job.len as usize);
            if len == 0 || len > DEVMEM {
                return Err(Outcome::BadLength);
            }
            if off + len > DEVMEM {
                return Err(Outcome::BadOffset);
            }
            let mut buf = self.devmem[off..off + len].to_vec();
            self.access(job.dir, job.addr, &mut buf)?;
            self.devmem[off..off + len].copy_from_slice(&buf);
            return Ok(());
        }
        let (mut next, mut off, mut segments) = (job.addr, job.dev_offset as usize, 0);
        for _ in 0..SG_MAX_DESCRIPTORS {
            let mut raw = [0u8; 16];
            self.access(Direction::DescriptorFetch, next, &mut raw)?;
            let d = Descriptor::from_bytes(raw);
            let (chain, last) = (d.flags & DESC_CHAIN != 0, d.flags & DESC_LAST != 0);
            if d.flags & DESC_RESERVED != 0 || (chain && last) || (!chain && d.len == 0) {
                return Err(Outcome::BadDescriptor);
            }
            if chain {
                next = d.addr;
                continue;
            }
            if segments == SG_MAX_SEGMENTS {
                return Err(Outcome::ListTooLong);
            }
            let len = d.len as usize;
            if off + len > DEVMEM {
                return Err(Outcome::BadOffset);
            }
            let mut buf = self.devmem[off..off + len].to_vec();
            self.access(job.dir, d.addr, &mut buf)?;
            self.devmem[off..off + len].copy_from_slice(&buf);
            off += len;
            segments += 1;
            if last {
                return Ok(());
            }
            next = next.wrapping_add(16);
        }
        Err(Outcome::ListTooLong)
    }
}

fn guest() -> GuestMemoryMmap<()> {
    let r: Vec<_> = REGIONS.iter().map(|&(a, n)| (GuestAddress(a), n)).collect();
    GuestMemoryMmap::from_ranges(&r).unwrap()
}

/// Bus addresses that hit RAM, holes, the mask edge and far beyond.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..0xd000,
        1 => (0u64..0x1000).prop_map(|a| 0xf000 + a),
        1 => (1u64..16, 0u64..0xd000).prop_map(|(hi, lo)| (hi << 16) | lo),
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1u32..0x300, 1 => 0u32..(u32_of(DEVMEM) + 2), 1 => Just(0u32)]
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    let flags = prop_oneof![
        6 => Just(0u32),
        2 => Just(DESC_LAST),
        2 => Just(DESC_CHAIN),
        1 => any::<u32>(),
    ];
    (addr(), len(), flags).prop_map(|(addr, len, flags)| Descriptor { addr, len, flags })
}

#[derive(Debug, Clone)]
struct Case {
    bits: u8,
    overflow: Overflow,
    job: Job,
    /// Descriptors to plant (at `list_at`, and each CHAIN target gets the
    /// rest of the list), for SG jobs.
    list: Vec<Descriptor>,
    seed: u8,
}

fn case() -> impl Strategy<Value = Case> {
    let bits = prop_oneof![Just(12u8), Just(14), Just(15), Just(16), Just(24), Just(64)];
    let overflow = prop_oneof![Just(Overflow::Reject), Just(Overflow::Truncate)];
    let dir = prop_oneof![Just(Direction::ToDevice), Just(Direction::FromDevice)];
    (
        bits,
        overflow,
        (
            dir,
            any::<bool>(),
            addr(),
            len(),
            0u32..(u32_of(DEVMEM) + 16),
        ),
        prop::collection::vec(descriptor(), 0..12),
        any::<u8>(),
    )
        .prop_map(
            |(bits, overflow, (dir, sg, addr, len, dev_offset), mut list, seed)| {
                // Point half the CHAIN descriptors back into the list itself:
                // forward jumps and loops.
                let n = list.len() as u64 + 1;
                for d in list
                    .iter_mut()
                    .filter(|d| d.flags & DESC_CHAIN != 0 && d.addr & 1 == 0)
                {
                    d.addr = addr.wrapping_add(16 * (d.addr % n));
                }
                Case {
                    bits,
                    overflow,
                    job: Job {
                        transfer: 1,
                        dir,
                        sg,
                        addr,
                        len,
                        dev_offset,
                    },
                    list,
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn engine_matches_byte_model(c in case()) {
        let mem = guest();
        // Distinct contents everywhere, so a misplaced byte shows.
        for &(start, n) in &REGIONS {
            let fill: Vec<u8> = (0..n).map(|i| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(c.seed)).collect();
            mem.write_slice(&fill, GuestAddress(start)).unwrap();
        }
        // Plant the descriptor list where the job points (if that is RAM).
        let bytes: Vec<u8> = c.list.iter().flat_map(|d| d.to_bytes()).collect();
        let _ = mem.write_slice(&bytes, GuestAddress(c.job.addr));
        let top = REGIONS.iter().map(|&(a, n)| usize_of(a) + n).max().unwrap();
        let mut model = Model {
            ram: vec![None; top],
            devmem: (0..DEVMEM).map(|i| i.to_le_bytes()[0] ^ 0x5a).collect(),
            mask: DmaMask { bits: c.bits, overflow: c.overflow },
        };
        for &(start, n) in &REGIONS {
            let mut v = vec![0u8; n];
            mem.read_slice(&mut v, GuestAddress(start)).unwrap();
            for (i, b) in v.into_iter().enumerate() {
                model.ram[usize_of(start) + i] = Some(b);
            }
        }
        let mut devmem = model.devmem.clone();
        let tracer = Tracer::new(None);
        let engine = Engine::new(&mem, model.mask, &tracer);
        let report = engine.run(&c.job, &mut devmem, &|| Ok(()));
        let want = model.run(&c.job);
        prop_assert_eq!(report.failure, want.err());
        prop_assert!(devmem == model.devmem, "device memory differs from the model");
        for &(start, n) in &REGIONS {
            let mut got = vec![0u8; n];
            mem.read_slice(&mut got, GuestAddress(start)).unwrap();
            let want: Vec<u8> = model.ram[usize_of(start)..usize_of(start) + n].iter().map(|b| b.unwrap()).collect();
            prop_assert!(got == want, "guest RAM at {:#x} differs from the model", start);
        }
    }
}
