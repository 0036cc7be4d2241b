//! The DMA engine: decides where each access goes (mask, overflow mode, RAM
//! bounds, bus mastering), moves the bytes with `vm-memory`, and traces every
//! access it attempts. It knows nothing of registers or threads, so it can be
//! tested and benchmarked on its own.
//!
//! Every check happens before any byte moves: an access is either done
//! whole or not at all (the only exception is a `vm-memory` error after the
//! checks passed, which cannot happen with plain RAM).

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::dma24_config::{mask_of, Overflow};
use crate::outcome::{Direction, Outcome};
use crate::regs::{
    DESC_CHAIN, DESC_LAST, DESC_RESERVED, DESC_SIZE, SG_MAX_DESCRIPTORS, SG_MAX_SEGMENTS,
};
use crate::trace::{hash_bytes, DmaEvent, Tracer};

/// [`DESC_SIZE`] as an array length.
#[allow(clippy::cast_possible_truncation)] // 16 fits any usize
const DESC_BYTES: usize = DESC_SIZE as usize;

/// The bytes `[start, end)` of device memory, or `None` when the range is
/// not inside it (so no index can panic, whatever the guest programmed).
fn devmem_range(devmem: &mut [u8], start: u64, end: u64) -> Option<&mut [u8]> {
    let start = usize::try_from(start).ok()?;
    let end = usize::try_from(end).ok()?;
    devmem.get_mut(start..end)
}

/// The device's view of the bus: how many address lines it drives and what
/// happens to an address that needs more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaMask {
    pub bits: u8,
    pub overflow: Overflow,
}

impl DmaMask {
    pub fn value(self) -> u64 {
        mask_of(self.bits)
    }

    /// Where `len` (>= 1) bytes at bus address `addr` go: the effective
    /// start address and whether it differs from what was asked.
    ///
    /// - reject: the whole range `addr..addr+len` must be within the mask.
    /// - truncate: the address is cut to the mask, and a range that runs past
    ///   the mask wraps to 0, as a counter with only `bits` bits would.
    pub fn translate(self, addr: u64, len: u64) -> Result<(u64, bool), Outcome> {
        let mask = self.value();
        let last = addr.checked_add(len.saturating_sub(1));
        match self.overflow {
            Overflow::Reject => match last {
                Some(last) if last <= mask => Ok((addr, false)),
                _ => Err(Outcome::RejectedMask),
            },
            Overflow::Truncate => {
                let eff = addr & mask;
                let wraps = eff
                    .checked_add(len.saturating_sub(1))
                    .is_none_or(|l| l > mask);
                Ok((eff, eff != addr || wraps))
            }
        }
    }

    /// The pieces `(bus address, offset in the access, length)` an access
    /// of `len` bytes from effective address `eff` is made of: one, unless
    /// it wraps at the mask.
    pub fn pieces(self, eff: u64, len: u64) -> impl Iterator<Item = (u64, u64, u64)> {
        let mask = self.value();
        let mut addr = eff & mask;
        let mut done = 0u64;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let room = (mask - addr).saturating_add(1); // addr <= mask
            let n = room.min(len - done);
            let piece = (addr, done, n);
            done += n;
            addr = addr.wrapping_add(n) & mask;
            Some(piece)
        })
    }
}

/// A scatter-gather descriptor as it sits in guest memory (16 bytes LE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    pub flags: u32,
}

impl Descriptor {
    pub fn to_bytes(self) -> [u8; DESC_BYTES] {
        let mut b = [0; DESC_BYTES];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; DESC_BYTES]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, f2, f3] = b;
        Descriptor {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u32::from_le_bytes([f0, f1, f2, f3]),
        }
    }
}

/// One transfer as latched from the registers at START.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// Transfer id for the trace (1, 2, ... per device).
    pub transfer: u64,
    /// ToDevice or FromDevice.
    pub dir: Direction,
    /// REG_DMA_ADDR is a descriptor list, not a buffer.
    pub sg: bool,
    pub addr: u64,
    pub len: u32,
    pub dev_offset: u32,
}

/// How a transfer ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The failing outcome, or None when every access moved its bytes.
    pub failure: Option<Outcome>,
    /// Some access moved bytes to/from a wrapped address.
    pub truncated: bool,
    /// Data bytes moved (descriptor fetches not included).
    pub bytes: u64,
    /// Trace sequence number of the last record (0 if none).
    pub last_seq: u64,
    /// Requested bus address of the failing access.
    pub fault_addr: Option<u64>,
}

impl Report {
    /// REG_ERROR for this transfer.
    pub fn error_code(&self) -> u32 {
        self.failure
            .map_or(crate::regs::ERR_NONE, Outcome::error_code)
    }
}

/// Single mode length/offset rules, shared with the START validation.
pub fn check_single(len: u32, dev_offset: u32, devmem_size: usize) -> Result<(), Outcome> {
    let (len, off) = (len as usize, dev_offset as usize);
    if len == 0 || len > devmem_size {
        Err(Outcome::BadLength)
    } else if off.checked_add(len).is_none_or(|end| end > devmem_size) {
        Err(Outcome::BadOffset)
    } else {
        Ok(())
    }
}

/// The DMA engine bound to one guest memory, mask and trace.
pub struct Engine<'a, M: GuestMemory> {
    mem: &'a M,
    mask: DmaMask,
    tracer: &'a Tracer,
}

/// Asked before every access: `Err(BmeOff)` when bus mastering is off,
/// `Err(Aborted)` when the transfer was cancelled.
pub type Gate<'g> = &'g dyn Fn() -> Result<(), Outcome>;

/// The state of one running transfer.
struct Pass<'g> {
    job: Job,
    gate: Gate<'g>,
    segment: u32,
    report: Report,
}

impl<'a, M: GuestMemory> Engine<'a, M> {
    pub fn new(mem: &'a M, mask: DmaMask, tracer: &'a Tracer) -> Self {
        Engine { mem, mask, tracer }
    }

    /// Runs a whole transfer against `devmem` (the device memory).
    pub fn run(&self, job: &Job, devmem: &mut [u8], gate: Gate<'_>) -> Report {
        let mut pass = Pass {
            job: *job,
            gate,
            segment: 0,
            report: Report::default(),
        };
        let res = if job.sg {
            self.run_sg(&mut pass, devmem)
        } else {
            self.run_single(&mut pass, devmem)
        };
        pass.report.failure = res.err();
        pass.report
    }

    fn run_single(&self, p: &mut Pass<'_>, devmem: &mut [u8]) -> Result<(), Outcome> {
        let (addr, len, off) = (p.job.addr, p.job.len, p.job.dev_offset);
        if let Err(o) = check_single(len, off, devmem.len()) {
            return Err(self.refuse(p, p.job.dir, addr, len.into(), off.into(), o));
        }
        let (off, end) = (u64::from(off), u64::from(off) + u64::from(len));
        let Some(part) = devmem_range(devmem, off, end) else {
            return Err(self.refuse(p, p.job.dir, addr, len.into(), off, Outcome::BadOffset));
        };
        self.access(p, p.job.dir, addr, off, part)?;
        p.report.bytes += u64::from(len);
        Ok(())
    }

    fn run_sg(&self, p: &mut Pass<'_>, devmem: &mut [u8]) -> Result<(), Outcome> {
        let dir = p.job.dir;
        let mut next = p.job.addr;
        let mut dev_off = u64::from(p.job.dev_offset);
        let mut data_segments = 0usize;
        for _ in 0..SG_MAX_DESCRIPTORS {
            let mut raw = [0u8; DESC_BYTES];
            self.access(p, Direction::DescriptorFetch, next, 0, &mut raw)?;
            let d = Descriptor::from_bytes(raw);
            let refuse =
                |p: &mut Pass<'_>, o| self.refuse(p, dir, d.addr, d.len.into(), dev_off, o);
            let chain = d.flags & DESC_CHAIN != 0;
            let last = d.flags & DESC_LAST != 0;
            if d.flags & DESC_RESERVED != 0 || (chain && last) || (!chain && d.len == 0) {
                return Err(refuse(p, Outcome::BadDescriptor));
            }
            if chain {
                next = d.addr;
                continue;
            }
            if data_segments == SG_MAX_SEGMENTS {
                return Err(refuse(p, Outcome::ListTooLong));
            }
            let end = dev_off + u64::from(d.len);
            let Some(part) = devmem_range(devmem, dev_off, end) else {
                return Err(refuse(p, Outcome::BadOffset));
            };
            self.access(p, dir, d.addr, dev_off, part)?;
            p.report.bytes += u64::from(d.len);
            data_segments += 1;
            dev_off = end;
            if last {
                return Ok(());
            }
            next = next.wrapping_add(DESC_SIZE);
        }
        // SG_MAX_DESCRIPTORS fetched and still no LAST: a loop or a runaway.
        Err(self.refuse(
            p,
            Direction::DescriptorFetch,
            next,
            DESC_SIZE,
            0,
            Outcome::ListTooLong,
        ))
    }

    /// One DMA access between guest memory at bus address `addr` and `dev`
    /// (a slice of device memory, or a descriptor buffer).
    fn access(
        &self,
        p: &mut Pass<'_>,
        dir: Direction,
        addr: u64,
        dev_offset: u64,
        dev: &mut [u8],
    ) -> Result<(), Outcome> {
        let len = dev.len() as u64;
        if let Err(o) = (p.gate)() {
            return Err(self.refuse(p, dir, addr, len, dev_offset, o));
        }
        let (eff, truncated) = match self.mask.translate(addr, len) {
            Ok(r) => r,
            Err(o) => return Err(self.refuse(p, dir, addr, len, dev_offset, o)),
        };
        let outcome = match self.copy(dir, eff, len, dev) {
            Ok(()) if truncated => Outcome::Truncated,
            Ok(()) => Outcome::Ok,
            Err(o) => o,
        };
        let hash = (outcome.moved() && self.tracer.hashes()).then(|| hash_bytes(dev));
        self.record(p, dir, addr, Some(eff), len, dev_offset, outcome, hash);
        p.report.truncated |= truncated && outcome.moved();
        if outcome.moved() {
            Ok(())
        } else {
            p.report.fault_addr = Some(addr);
            Err(outcome)
        }
    }

    /// Checks that every piece is RAM, then moves them.
    fn copy(&self, dir: Direction, eff: u64, len: u64, dev: &mut [u8]) -> Result<(), Outcome> {
        let perm = match dir {
            Direction::FromDevice => Permissions::Write,
            _ => Permissions::Read,
        };
        let is_ram = |(a, _, n): (u64, u64, u64)| {
            usize::try_from(n).is_ok_and(|n| self.mem.check_range(GuestAddress(a), n, perm))
        };
        if !self.mask.pieces(eff, len).all(is_ram) {
            return Err(Outcome::RejectedRam);
        }
        for (a, at, n) in self.mask.pieces(eff, len) {
            let Some(part) = devmem_range(dev, at, at + n) else {
                return Err(Outcome::BadOffset);
            };
            let res = match dir {
                Direction::FromDevice => self.mem.write_slice(part, GuestAddress(a)),
                _ => self.mem.read_slice(part, GuestAddress(a)),
            };
            if res.is_err() {
                return Err(Outcome::RejectedRam);
            }
        }
        Ok(())
    }

    /// Traces an access refused before an address was computed; returns
    /// the outcome so callers can `return Err(self.refuse(..))`.
    fn refuse(
        &self,
        p: &mut Pass<'_>,
        dir: Direction,
        addr: u64,
        len: u64,
        off: u64,
        o: Outcome,
    ) -> Outcome {
        self.record(p, dir, addr, None, len, off, o, None);
        p.report.fault_addr = Some(addr);
        o
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        p: &mut Pass<'_>,
        dir: Direction,
        requested_addr: u64,
        effective_addr: Option<u64>,
        len: u64,
        dev_offset: u64,
        outcome: Outcome,
        hash: Option<u64>,
    ) {
        p.report.last_seq = self.tracer.record(DmaEvent {
            transfer: p.job.transfer,
            segment: p.segment,
            dir,
            requested_addr,
            effective_addr,
            len,
            dev_offset,
            mask_bits: self.mask.bits,
            outcome,
            hash,
        });
        p.segment += 1;
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
