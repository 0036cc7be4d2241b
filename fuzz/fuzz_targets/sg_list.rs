//! Scatter-gather descriptor lists straight into the DMA engine: lists with
//! chains, loops, holes, zero lengths, reserved flags and addresses beyond
//! the mask, over a random RAM layout. Checks: no panic; reject mode writes
//! nothing beyond the mask and never truncates; device memory outside the
//! bytes moved is untouched; a list that succeeds without truncation moved
//! exactly the bytes a reference walk of its descriptors names.
#![no_main]

use arbitrary::Arbitrary;
use device_model::engine::{Descriptor, DmaMask, Engine, Job};
use device_model::regs::{DESC_CHAIN, DESC_LAST, DESC_SIZE, SG_MAX_DESCRIPTORS};
use device_model::trace::Tracer;
use device_model::{Direction, Overflow};
use dmalab_fuzz::{AddrPick, BeyondMask, Layout, RegionSpec, Shape};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

#[derive(Arbitrary, Debug)]
struct Input {
    shape: Shape,
    regions: Vec<RegionSpec>,
    from_device: bool,
    list: AddrPick,
    dev_offset: u16,
    descriptors: Vec<Desc>,
}

#[derive(Arbitrary, Debug)]
struct Desc {
    /// Where this descriptor goes: right after the previous one, or elsewhere.
    jump: Option<AddrPick>,
    addr: AddrPick,
    len: u16,
    flags: u8,
}

fuzz_target!(|input: Input| {
    let config = input.shape.config();
    let layout = Layout::new(config.mask_bits, &input.regions);
    let mem = layout.memory();
    let start = layout.address(input.list);
    let mut at = start;
    for d in input.descriptors.iter().take(40) {
        if let Some(j) = d.jump {
            // A chain descriptor to the new place, then continue there.
            let next = layout.address(j);
            let chain = Descriptor {
                addr: next,
                len: 0,
                flags: DESC_CHAIN,
            };
            let _ = mem.write_slice(&chain.to_bytes(), GuestAddress(at));
            at = next;
        }
        let flags = match d.flags & 0xc0 {
            0 => u32::from(d.flags) & (DESC_LAST | DESC_CHAIN),
            _ => u32::from(d.flags) << 24 | u32::from(d.flags),
        };
        let desc = Descriptor {
            addr: layout.address(d.addr),
            len: u32::from(d.len) % 0x3000,
            flags,
        };
        // Fails where `at` is not RAM: the guest could not write there either.
        let _ = mem.write_slice(&desc.to_bytes(), GuestAddress(at));
        at = at.wrapping_add(DESC_SIZE);
    }
    let beyond = BeyondMask::snapshot(&mem, &layout, config.mask());
    let devmem_len = usize::try_from(config.devmem_size).expect("small devmem");
    let before: Vec<u8> = (0..devmem_len).map(|i| (i % 251) as u8).collect();
    let mut devmem = before.clone();
    // No trace sink (a writer thread per input would halve the rate): the
    // tracer still numbers records; dma24_access checks the trace itself.
    let tracer = Tracer::new(None);
    let mask = DmaMask {
        bits: config.mask_bits,
        overflow: config.overflow,
    };
    let job = Job {
        transfer: 1,
        dir: if input.from_device {
            Direction::FromDevice
        } else {
            Direction::ToDevice
        },
        sg: true,
        addr: start,
        len: 0,
        dev_offset: u32::from(input.dev_offset) % (devmem_len as u32 + 16),
    };
    let report = Engine::new(&mem, mask, &tracer).run(&job, &mut devmem, &|| Ok(()));
    assert!(report.last_seq >= 1, "every transfer leaves a record");
    if config.overflow == Overflow::Reject {
        beyond.assert_untouched(&mem, mask.value());
        assert!(!report.truncated, "reject mode never truncates");
    }
    // Device memory changes only inside [dev_offset, dev_offset + bytes).
    let lo = (job.dev_offset as usize).min(devmem_len);
    let hi = lo + usize::try_from(report.bytes).expect("small");
    assert!(
        hi <= devmem_len,
        "moved {} bytes past device memory",
        report.bytes
    );
    assert!(
        devmem[..lo] == before[..lo],
        "device memory changed below dev_offset"
    );
    assert!(
        devmem[hi..] == before[hi..],
        "device memory changed past the bytes moved"
    );
    if job.dir == Direction::ToDevice && report.failure.is_none() && !report.truncated {
        // A reference walk of the list: device memory must hold the data
        // descriptors' bytes, in order.
        let want = reference_walk(&mem, start);
        assert_eq!(report.bytes, want.len() as u64, "bytes moved vs the list");
        assert!(
            devmem[lo..hi] == want[..],
            "device memory differs from the list's data"
        );
    }
});

/// The data a well-formed list at `next` names, read the simple way.
fn reference_walk(mem: &dmalab_fuzz::Mem, mut next: u64) -> Vec<u8> {
    let mut data = Vec::new();
    for _ in 0..SG_MAX_DESCRIPTORS {
        let mut raw = [0u8; 16];
        mem.read_slice(&mut raw, GuestAddress(next))
            .expect("the engine read it");
        let d = Descriptor::from_bytes(raw);
        if d.flags & DESC_CHAIN != 0 {
            next = d.addr;
            continue;
        }
        let mut part = vec![0u8; d.len as usize];
        mem.read_slice(&mut part, GuestAddress(d.addr))
            .expect("the engine read it");
        data.extend_from_slice(&part);
        if d.flags & DESC_LAST != 0 {
            break;
        }
        next = next.wrapping_add(DESC_SIZE);
    }
    data
}
