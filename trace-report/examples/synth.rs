//! Writes a synthetic trace: `cargo run -p trace-report --example synth -- RECORDS OUT`.

#![forbid(unsafe_code)]

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let out = args
        .next()
        .unwrap_or_else(|| "synthetic.trace.jsonl".into());
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
    trace_report::synth::write_trace(&mut w, records, 1)?;
    println!("{out}: {records} records");
    Ok(())
}
