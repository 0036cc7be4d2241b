//! `dmalab`: command line entry point. See `dmalab run --help`.

use clap::Parser;
use log::LevelFilter;
use vmm::cli::{Cli, Command, TraceCommand};
use vmm::{logger, ExitCode};

fn main() {
    logger::mark_start();
    // Before any thread exists, so every thread inherits the mask.
    vmm::signals::block_stop_signals();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors exit 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            });
        }
    };
    let level = cli
        .log_level
        .or_else(|| {
            std::env::var("DMALAB_LOG")
                .ok()
                .and_then(|v| logger::parse_level(&v))
        })
        .unwrap_or(LevelFilter::Info);
    logger::init(level);
    let code = match cli.command {
        Command::Run(args) => match vmm::run(&args.into_config()) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("dmalab: error: {e}");
                e.exit_code()
            }
        },
        Command::Serve(args) => match vmm::serve::serve(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("dmalab: error: {e}");
                e.exit_code()
            }
        },
        Command::Trace(TraceCommand::Summary { file, json }) => {
            match device_model::trace::summary::summarize_file(&file) {
                Ok(s) => {
                    print!(
                        "{}",
                        if json {
                            s.to_json() + "\n"
                        } else {
                            s.render_table()
                        }
                    );
                    ExitCode::Clean
                }
                Err(e) => {
                    eprintln!("dmalab: error: {e}");
                    ExitCode::Usage
                }
            }
        }
        Command::Trace(TraceCommand::View { file, output }) => {
            let output = output.unwrap_or_else(|| trace_report::default_output(&file));
            match trace_report::write_report(&file, &output) {
                Ok(s) => {
                    println!(
                        "{} ({} records, {})",
                        output.display(),
                        s.records,
                        s.completeness
                    );
                    ExitCode::Clean
                }
                Err(e) => {
                    eprintln!("dmalab: error: {e}");
                    ExitCode::Usage
                }
            }
        }
        Command::Trace(TraceCommand::Export { file, output, .. }) => {
            match trace_report::write_chrome(&file, &output) {
                Ok(s) => {
                    println!(
                        "{} ({} records, {} transfers, {} faults)",
                        output.display(),
                        s.records,
                        s.transfers,
                        s.faults
                    );
                    ExitCode::Clean
                }
                Err(e) => {
                    eprintln!("dmalab: error: {e}");
                    ExitCode::Usage
                }
            }
        }
    };
    std::process::exit(code.code());
}
