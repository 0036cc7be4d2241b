//! `dmalab`'s command line on arbitrary arguments: the `--device` spec
//! parser, `--mem`, `--timeout`, `--log-level` and the rest, through clap as
//! a user reaches them and directly. Every input parses or gets an error
//! message, never a panic.
#![no_main]

use std::cell::RefCell;

use clap::{CommandFactory, FromArgMatches};
use device_model::Dma24Config;
use libfuzzer_sys::fuzz_target;
use vmm::cli::{parse_mem, Cli};
use vmm::pci::parse_device_spec;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // One argument per line (seeds stay plain text).
    let args: Vec<&str> = text.split('\n').collect();
    let first = args.first().copied().unwrap_or("");
    match parse_device_spec(first) {
        Ok(c) => c.validate().expect("a parsed spec is valid"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(c) = Dma24Config::parse(first) {
        c.validate().expect("a parsed spec is valid");
    }
    if let Ok(mib) = parse_mem(first) {
        assert!(mib > 0);
    }
    let _ = vmm::logger::parse_level(first);
    let argv = std::iter::once("dmalab").chain(args.iter().copied());
    // Built once per process: building clap's command per input would be
    // most of the cost. Parsing does not change it.
    thread_local! {
        static COMMAND: RefCell<clap::Command> = RefCell::new(Cli::command());
    }
    let parsed = COMMAND.with(|c| c.borrow_mut().try_get_matches_from_mut(argv));
    match parsed.and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => drop(cli),
        Err(e) => drop(e.render().to_string()),
    }
});
