//! The `initcall` part: the slowest initcalls of an `initcall_debug` boot.

use std::time::Duration;

use serde::Serialize;

use super::analysis::Boot;
use super::guest::BOOT_EXTRA;
use super::inputs::{progress, Inputs};
use super::table::{row, Row};
use super::vmm::{dmalab_command, Vmm};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Initcall {
    pub name: String,
    pub ret: i64,
    pub usecs: u64,
}

/// `initcall pty_init+0x0/0x40 returned 0 after 25000 usecs` (anywhere in
/// the line, printk time or not); the `+0x0/0x40` and a module tag go.
pub fn parse_initcall(line: &str) -> Option<Initcall> {
    let at = line.find("initcall ")?;
    let rest = &line[at + "initcall ".len()..];
    let (sym, rest) = rest.split_once(" returned ")?;
    let (ret, rest) = rest.split_once(" after ")?;
    let usecs = rest.trim().strip_suffix("usecs")?.trim().parse().ok()?;
    let sym = sym.split_whitespace().next()?;
    let name = sym.split('+').next().unwrap_or(sym).to_string();
    Some(Initcall {
        name,
        ret: ret.trim().parse().ok()?,
        usecs,
    })
}

/// The `n` slowest initcalls of a console log, slowest first.
pub fn top_initcalls(console: &str, n: usize) -> Vec<Initcall> {
    let mut v: Vec<Initcall> = console.lines().filter_map(parse_initcall).collect();
    v.sort_by(|a, b| b.usecs.cmp(&a.usecs).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

/// What the initcall part measured.
#[derive(Default)]
pub struct InitcallPart {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub top10: Vec<Initcall>,
    pub boot: Option<Boot>,
}

pub fn initcall_part(inputs: &Inputs) -> InitcallPart {
    let mut part = InitcallPart::default();
    let how = "one extra dmalab boot with `initcall_debug ignore_loglevel initramfs_async=0`: the 'initcall X returned R after N usecs' lines, slowest first (the printing itself slows that boot; initramfs_async=0 unpacks the initramfs inside its initcall, populate_rootfs, instead of in the background, so its cost shows)";
    if inputs.opts.quick {
        part.rows
            .push(row("boot", "slowest initcall", how).not_measured("skipped with --quick"));
        return part;
    }
    let (images, dmalab) = match inputs.guest_artifacts("boot", "slowest initcall", how) {
        Ok(a) => a,
        Err(r) => {
            part.rows.push(*r);
            return part;
        }
    };
    progress("initcall_debug boot: dmalab");
    let extra = format!("{BOOT_EXTRA} initcall_debug ignore_loglevel initramfs_async=0");
    let cmd = dmalab_command(&dmalab, &images, &extra, false, None);
    let (b, cap) = match inputs.one_boot(
        Vmm::Dmalab,
        0,
        cmd,
        "boot-dmalab-initcall_debug",
        Duration::from_secs(60),
    ) {
        Ok(x) => x,
        Err(note) => {
            part.notes.push(note);
            part.rows
                .push(row("boot", "slowest initcall", how).not_measured("the boot did not run"));
            return part;
        }
    };
    let top = top_initcalls(&cap.text(), 10);
    let r = row("boot", "slowest initcall", how);
    part.rows.push(match top.first() {
        Some(i) => r.value(
            i.usecs as f64 / 1e6,
            "s",
            format!(
                "{} {:.2} s (top 10 total {:.1} s; below)",
                i.name,
                i.usecs as f64 / 1e6,
                top.iter().map(|i| i.usecs).sum::<u64>() as f64 / 1e6
            ),
        ),
        None => r.not_measured("no initcall lines on the console"),
    });
    part.top10 = top;
    part.boot = Some(b);
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initcall_lines() {
        let l = "[   12.000001] initcall pty_init+0x0/0x40 returned 0 after 25000 usecs";
        assert_eq!(
            parse_initcall(l),
            Some(Initcall {
                name: "pty_init".into(),
                ret: 0,
                usecs: 25000
            })
        );
        let m = "initcall dmalab_init+0x0/0x1000 [dmalab] returned -19 after 7 usecs";
        let i = parse_initcall(m).unwrap();
        assert_eq!((i.name.as_str(), i.ret, i.usecs), ("dmalab_init", -19, 7));
        assert_eq!(
            parse_initcall("[ 1.0] calling  pty_init+0x0/0x40 @ 1"),
            None
        );
        assert_eq!(
            parse_initcall("initcall x returned 0 after many usecs"),
            None
        );
        let console = "\
[ 1.0] initcall a+0x0/0x1 returned 0 after 5 usecs
[ 1.1] initcall b+0x0/0x1 returned 0 after 500 usecs
noise
[ 1.2] initcall c+0x0/0x1 returned 0 after 50 usecs
";
        let top = top_initcalls(console, 2);
        assert_eq!(
            top.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }
}
