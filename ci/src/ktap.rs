//! A KTAP reader for KUnit results printed on a guest console.
//!
//! The console also carries other kernel messages and, with PRINTK_TIME, a
//! `[    1.234567] ` prefix on every line: both are tolerated. Suites are the
//! `# Subtest: NAME` blocks; their cases are the `ok N name` / `not ok N name`
//! lines one level deeper; deeper levels (parameterised cases) count toward
//! their case only through the case's own line.

/// The outcome of one test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suite {
    pub name: String,
    pub cases: Vec<Case>,
    /// The suite's own result line, if the run got that far.
    pub ok: Option<bool>,
}

impl Suite {
    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Pass)
    }
    pub fn failed(&self) -> usize {
        self.count(|o| *o == Outcome::Fail)
    }
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skip(_)))
    }
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }
    pub fn case(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name == name)
    }
}

/// Strips a printk timestamp (`[  12.345678] `) if the line has one.
fn strip_timestamp(line: &str) -> &str {
    let t = line.trim_end_matches('\r');
    if let Some(rest) = t.strip_prefix('[') {
        if let Some(end) = rest.find("] ") {
            let stamp = rest[..end].trim();
            if !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return &rest[end + 2..];
            }
        }
    }
    t
}

/// Parses `ok 3 name # SKIP why` (without indentation) into a case.
fn parse_result(line: &str) -> Option<Case> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    number.parse::<u32>().ok()?;
    let (name, directive) = match rest.split_once(" # ") {
        Some((n, d)) => (n.trim(), Some(d.trim())),
        None => (rest.trim(), None),
    };
    let outcome = match directive {
        Some(d) if d.to_ascii_uppercase().starts_with("SKIP") => {
            Outcome::Skip(d[4..].trim().to_string())
        }
        _ if ok => Outcome::Pass,
        _ => Outcome::Fail,
    };
    Some(Case {
        name: name.to_string(),
        outcome,
    })
}

/// Every suite found in a console log, in order.
pub fn parse(console: &str) -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    // Indentation of the open suite's header; its cases sit at this depth too.
    let mut open: Option<usize> = None;
    for raw in console.lines() {
        let line = strip_timestamp(raw);
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if let Some(name) = body.strip_prefix("# Subtest: ") {
            if open.is_none() || indent <= open.unwrap_or(0) {
                suites.push(Suite {
                    name: name.trim().to_string(),
                    ..Suite::default()
                });
                open = Some(indent);
            }
            continue;
        }
        let Some(case) = parse_result(body) else {
            continue;
        };
        match open {
            Some(depth) if indent == depth => {
                if let Some(s) = suites.last_mut() {
                    s.cases.push(case);
                }
            }
            Some(depth) if indent < depth => {
                if let Some(s) = suites.iter_mut().rev().find(|s| s.name == case.name) {
                    s.ok = Some(case.outcome != Outcome::Fail);
                }
                open = None;
            }
            _ => {}
        }
    }
    suites
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    0.100000] random kernel line
[   30.000001] KTAP version 1
[   30.000002] 1..2
[   30.000003]     KTAP version 1
[   30.000004]     # Subtest: dmalab_dma
[   30.000005]     # module: dmalab
[   30.000006]     1..4
[   30.100000]     ok 1 round_trip_single
[   30.200000]         # round_trip_sg: pass:2 fail:0
[   30.200001]         ok 1 64
[   30.200002]         ok 2 4096
[   30.200003]     ok 2 round_trip_sg
[   30.300000]     # over_mask: EXPECTATION FAILED at dmalab.rs:10
[   30.300001]     not ok 3 over_mask
[   30.400000]     ok 4 vmalloc_buffer # SKIP no vmalloc in this build
[   30.400001] # dmalab_dma: pass:2 fail:1 skip:1 total:4
[   30.400002] not ok 1 dmalab_dma
[   30.500000]     KTAP version 1
[   30.500001]     # Subtest: dmalab_regs
[   30.500002]     1..1
[   30.500003]     ok 1 magic
[   30.500004] ok 2 dmalab_regs
";

    #[test]
    fn suites_and_cases() {
        let suites = parse(LOG);
        assert_eq!(suites.len(), 2);
        let dma = &suites[0];
        assert_eq!(dma.name, "dmalab_dma");
        assert_eq!(dma.ok, Some(false));
        assert_eq!((dma.passed(), dma.failed(), dma.skipped()), (2, 1, 1));
        assert_eq!(dma.case("over_mask").unwrap().outcome, Outcome::Fail);
        assert_eq!(
            dma.case("vmalloc_buffer").unwrap().outcome,
            Outcome::Skip("no vmalloc in this build".into())
        );
        assert_eq!(
            dma.cases.len(),
            4,
            "parameter lines are not cases: {:?}",
            dma.cases
        );
        assert_eq!(suites[1].name, "dmalab_regs");
        assert_eq!(suites[1].ok, Some(true));
        assert_eq!(suites[1].passed(), 1);
    }

    #[test]
    fn unfinished_suite_has_no_result() {
        let cut = LOG.lines().take(12).collect::<Vec<_>>().join("\n");
        let suites = parse(&cut);
        assert_eq!(suites.len(), 1);
        assert_eq!(suites[0].ok, None);
        assert_eq!(suites[0].passed(), 2);
    }

    #[test]
    fn timestamps_are_optional() {
        assert_eq!(strip_timestamp("[   1.5] ok 1 x"), "ok 1 x");
        assert_eq!(strip_timestamp("[not a stamp] x"), "[not a stamp] x");
        assert_eq!(strip_timestamp("    ok 1 x"), "    ok 1 x");
    }
}
