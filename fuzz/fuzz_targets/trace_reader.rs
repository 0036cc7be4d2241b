//! The trace reader and the summary on arbitrary bytes: every input is read
//! to its end or to a clear error, never a panic.
#![no_main]

use device_model::trace::summary::summarize;
use device_model::trace::{Record, Trace, TraceReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = TraceReader::new(data) {
        let mut dma = 0u64;
        let mut reader = reader;
        for r in reader.by_ref() {
            match r {
                Ok(Record::Dma(_)) => dma += 1,
                Ok(_) => {}
                Err(e) => {
                    // Every error names what is wrong.
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert_eq!(reader.dma_records(), dma);
        let _ = reader.completeness().to_string();
    }
    if let Ok(s) = summarize(data) {
        let _ = s.to_json();
        let _ = s.render_table();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = Trace::parse(text) {
            let _ = t.completeness().to_string();
        }
    }
});
