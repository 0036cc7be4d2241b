//! Command-line options of `cargo xtask bench`.

use std::path::PathBuf;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Boot,
    Initcall,
    Mmio,
    Dma,
    Trace,
    Zerocopy,
    Vfio,
}

impl Part {
    const ALL: [Part; 7] = [
        Part::Boot,
        Part::Initcall,
        Part::Mmio,
        Part::Dma,
        Part::Trace,
        Part::Zerocopy,
        Part::Vfio,
    ];

    fn parse(s: &str) -> Option<Part> {
        match s {
            "boot" => Some(Part::Boot),
            "initcall" | "initcalls" => Some(Part::Initcall),
            "mmio" => Some(Part::Mmio),
            "dma" => Some(Part::Dma),
            "trace" => Some(Part::Trace),
            "zerocopy" => Some(Part::Zerocopy),
            "vfio" => Some(Part::Vfio),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Options {
    /// Boots per VMM.
    pub runs: usize,
    pub quick: bool,
    pub json: PathBuf,
    pub parts: Vec<Part>,
    pub qemu: bool,
}

pub const USAGE: &str = "\
usage: cargo xtask bench [--runs N] [--quick] [--json PATH] [--only PARTS] [--no-qemu]
  --runs N       boots per VMM (default 3; --quick: 1)
  --quick        one boot each, no initcall_debug boot, short criterion runs
  --json PATH    where to write the results (default ~/.cache/dmalab/bench/latest.json)
  --only PARTS   comma list of boot,initcall,mmio,dma,trace,zerocopy,vfio (default: all)
  --no-qemu      boot dmalab only";

pub fn parse_options(args: &[String], default_json: PathBuf) -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        quick: false,
        json: default_json,
        parts: Part::ALL.to_vec(),
        qemu: true,
    };
    let mut runs = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--runs" => {
                let v = value("--runs")?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| format!("--runs {v}: give a number from 1 to 50"))?;
                runs = Some(n);
            }
            "--quick" => o.quick = true,
            "--json" => o.json = PathBuf::from(value("--json")?),
            "--only" => {
                let v = value("--only")?;
                let mut parts = Vec::new();
                for p in v.split(',').filter(|p| !p.is_empty()) {
                    parts.push(Part::parse(p).ok_or_else(|| {
                        format!("--only: unknown part {p:?} (boot, initcall, mmio, dma, trace)")
                    })?);
                }
                parts.sort();
                parts.dedup();
                o.parts = parts;
            }
            "--no-qemu" => o.qemu = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    o.runs = runs.unwrap_or(if o.quick { 1 } else { 3 });
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let d = PathBuf::from("/x.json");
        let o = parse_options(&[], d.clone()).unwrap();
        assert_eq!((o.runs, o.quick, o.qemu), (3, false, true));
        assert_eq!(o.parts, Part::ALL.to_vec());
        let args: Vec<String> = [
            "--quick",
            "--only",
            "mmio,boot",
            "--json",
            "/y.json",
            "--no-qemu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse_options(&args, d.clone()).unwrap();
        assert_eq!(o.runs, 1);
        assert_eq!(o.parts, vec![Part::Boot, Part::Mmio]);
        assert_eq!(o.json, PathBuf::from("/y.json"));
        assert!(!o.qemu);
        let args = vec!["--runs".to_string(), "5".to_string(), "--quick".to_string()];
        assert_eq!(parse_options(&args, d.clone()).unwrap().runs, 5);
        assert!(parse_options(&["--runs".into(), "0".into()], d.clone()).is_err());
        assert!(parse_options(&["--only".into(), "x".into()], d.clone()).is_err());
        assert!(parse_options(&["--bogus".into()], d).is_err());
    }
}
