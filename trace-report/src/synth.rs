//! Synthetic traces with every kind of record: for the tests and for the
//! bench's million-record report. Deterministic for a seed.

use std::io::{self, Write};

/// Writes a trace of `records` DMA records (plus header and footer) to `out`:
/// transfers of one to four segments, some scatter-gather with descriptor
/// fetches, one in 50 refused by the mask, one in 97 truncated (so both
/// ends are in the picture), one in 401 with bus mastering off. Header as a
/// 24-bit device on a 128 MiB guest.
pub fn write_trace(out: &mut impl Write, records: usize, seed: u64) -> io::Result<()> {
    writeln!(
        out,
        r#"{{"type":"header","version":1,"bdf":"0000:00:01.0","vendor_id":"0x1234","device_id":"0xd024","mask_bits":24,"mask":"0xffffff","overflow":"truncate","devmem_size":65536,"hash":"xxh3_64","queue_capacity":65536,"memory":{{"ram":[["0x0","0x8000000"]],"mmio_window":["0xc0000000","0xfe000000"]}}}}"#
    )?;
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        // xorshift64: enough for varied but repeatable pictures.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut t = 1_000_000u64;
    let mut seq = 0u64;
    let mut transfer = 0u64;
    while usize::try_from(seq).unwrap_or(usize::MAX) < records {
        transfer += 1;
        let left = records - usize::try_from(seq).unwrap_or(records);
        let sg = next() % 3 == 0;
        let segments = usize::try_from(next() % 4 + 1).unwrap_or(1).min(left);
        for (i, segment) in (0..segments).zip(0u32..) {
            seq += 1;
            t += 2_000 + next() % 50_000;
            let dir = if sg && i % 2 == 0 {
                "descriptor_fetch"
            } else if transfer.is_multiple_of(2) {
                "to_device"
            } else {
                "from_device"
            };
            let len = if dir == "descriptor_fetch" {
                16
            } else {
                512 << (next() % 4)
            };
            let page = next() % 0xe00;
            let mut requested = 0x10_0000 + page * 0x1000;
            let mut effective = Some(requested);
            let (outcome, error) = if seq.is_multiple_of(50) {
                requested = 0x100_0000 + (next() % 0x700) * 0x1_0000;
                effective = None;
                ("rejected_mask", 1)
            } else if seq.is_multiple_of(97) {
                requested = 0x100_0000 + page * 0x1000;
                effective = Some(requested & 0xff_ffff);
                ("truncated", 0)
            } else if seq.is_multiple_of(401) {
                effective = None;
                ("bme_off", 4)
            } else {
                ("ok", 0)
            };
            let eff = effective.map_or("null".to_string(), |e| format!("\"{e:#x}\""));
            let hash = if effective.is_some() && error == 0 {
                format!("\"{:016x}\"", next())
            } else {
                "null".into()
            };
            writeln!(
                out,
                r#"{{"type":"dma","seq":{seq},"t_ns":{t},"bdf":"0000:00:01.0","transfer":{transfer},"segment":{segment},"dir":"{dir}","requested_addr":"{requested:#x}","effective_addr":{eff},"len":{len},"dev_offset":{off},"mask_bits":24,"outcome":"{outcome}","error":{error},"hash":{hash}}}"#,
                off = (u64::from(segment) * 512) % 65536,
            )?;
            if error != 0 {
                break;
            }
        }
    }
    writeln!(
        out,
        r#"{{"type":"footer","records":{seq},"dropped":0,"t_ns":{}}}"#,
        t + 1000
    )
}

/// [`write_trace`] into a string.
pub fn trace_text(records: usize, seed: u64) -> String {
    let mut v = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_trace(&mut v, records, seed);
    String::from_utf8_lossy(&v).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_model::trace::Trace;
    use device_model::Outcome;

    #[test]
    fn synthetic_trace_reads_back_with_every_kind() {
        let t = Trace::parse(&trace_text(1000, 1)).unwrap();
        assert_eq!(t.records.len(), 1000);
        assert_eq!(t.footer.unwrap().records, 1000);
        for o in [
            Outcome::Ok,
            Outcome::RejectedMask,
            Outcome::Truncated,
            Outcome::BmeOff,
        ] {
            assert!(t.records.iter().any(|r| r.outcome == o), "{o:?}");
        }
        let mut seqs: Vec<u64> = t.records.iter().map(|r| r.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 1000);
        assert!(t.records.windows(2).all(|w| w[0].t_ns < w[1].t_ns));
        assert!(t.header.memory.is_some());
    }
}
