//! A small trace for the reader's and the summary's tests: four records
//! (one refused by the mask, a gap in seq where one was dropped) and a footer.

pub const HEADER: &str = r#"{"type":"header","version":1,"bdf":"0000:00:01.0","vendor_id":"0x1234","device_id":"0xd024","mask_bits":24,"mask":"0xffffff","overflow":"reject","devmem_size":65536,"hash":"xxh3_64","queue_capacity":65536}"#;

pub const RECORDS: [&str; 4] = [
    r#"{"type":"dma","seq":1,"t_ns":10,"bdf":"0000:00:01.0","transfer":1,"segment":0,"dir":"to_device","requested_addr":"0x1000","effective_addr":"0x1000","len":4096,"dev_offset":0,"mask_bits":24,"outcome":"ok","error":0,"hash":"0123456789abcdef"}"#,
    r#"{"type":"dma","seq":2,"t_ns":20,"bdf":"0000:00:01.0","transfer":2,"segment":0,"dir":"from_device","requested_addr":"0x1000000","effective_addr":null,"len":512,"dev_offset":0,"mask_bits":24,"outcome":"rejected_mask","error":1,"hash":null}"#,
    r#"{"type":"dma","seq":4,"t_ns":30,"bdf":"0000:00:01.0","transfer":3,"segment":0,"dir":"descriptor_fetch","requested_addr":"0x2000","effective_addr":"0x2000","len":16,"dev_offset":0,"mask_bits":24,"outcome":"ok","error":0,"hash":"0000000000000001"}"#,
    r#"{"type":"dma","seq":5,"t_ns":40,"bdf":"0000:00:01.0","transfer":3,"segment":1,"dir":"from_device","requested_addr":"0x3000","effective_addr":"0x3000","len":100,"dev_offset":0,"mask_bits":24,"outcome":"ok","error":0,"hash":"0000000000000002"}"#,
];

pub const FOOTER: &str = r#"{"type":"footer","records":4,"dropped":1,"t_ns":50}"#;

/// The whole trace as file text.
pub fn trace_text() -> String {
    let mut s = format!("{HEADER}\n");
    for r in RECORDS {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(FOOTER);
    s.push('\n');
    s
}
