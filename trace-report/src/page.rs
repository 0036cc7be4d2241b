//! The HTML page: one file, its style, script and pictures inline (no
//! network). `assets/page.html` is the skeleton; each `{{name}}` in it is
//! replaced once.

use std::fmt::Write as _;

use device_model::trace::Completeness;

use crate::model::{Model, FAULT_LIST_LIMIT};
use crate::svg::esc;
use crate::{addrmap, timeline};

const SKELETON: &str = include_str!("../assets/page.html");
const STYLE: &str = include_str!("../assets/report.css");
const SCRIPT: &str = include_str!("../assets/report.js");

/// The whole page for `model`; `title` names the trace file.
pub fn render(model: &Model, title: &str) -> String {
    let parts: [(&str, String); 10] = [
        ("title", esc(title)),
        ("style", STYLE.to_string()),
        ("banner", banner(model)),
        ("summary", esc(&model.summary.render_table())),
        ("addrmap", addrmap::render(model)),
        ("timeline", timeline::render(model)),
        ("faults", faults(model)),
        ("mode", mode(model)),
        ("records", records_json(model)),
        ("script", SCRIPT.to_string()),
    ];
    let mut page =
        String::with_capacity(SKELETON.len() + parts.iter().map(|p| p.1.len()).sum::<usize>());
    let mut rest = SKELETON;
    while let Some(at) = rest.find("{{") {
        page.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find("}}") else {
            page.push_str(&rest[at..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        match parts.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => page.push_str(v),
            None => page.push_str(&rest[at..at + 4 + end]),
        }
        rest = &after[end + 2..];
    }
    page.push_str(rest);
    page
}

fn banner(model: &Model) -> String {
    let h = &model.header;
    let state = match model.completeness {
        Completeness::Complete(_) => format!(
            r#"<span class="complete">{}</span>"#,
            esc(&model.completeness.to_string())
        ),
        Completeness::Incomplete { .. } => format!(
            r#"<span class="incomplete" id="incomplete">{} (the VMM did not finish the trace)</span>"#,
            esc(&model.completeness.to_string())
        ),
    };
    format!(
        "device {} ({}:{}), mask {} bits ({}), overflow={}, {} records, {} transfers; {}",
        esc(&h.bdf),
        h.vendor_id,
        h.device_id,
        h.mask_bits,
        h.mask,
        esc(&h.overflow),
        model.summary.records,
        model.summary.transfers,
        state
    )
}

fn mode(model: &Model) -> String {
    match &model.detail {
        Some(_) => "every record is a mark; hover one for its fields".into(),
        None => format!(
            "{} records: marks are bins (one per pixel column, darker = more; hover for the count); the first {FAULT_LIST_LIMIT} faults are marks of their own",
            model.accesses.len()
        ),
    }
}

/// The fault list: every fault that has its own mark, linked to it.
fn faults(model: &Model) -> String {
    let mut o = String::new();
    let listed: Vec<_> = model
        .accesses
        .iter()
        .filter(|a| a.single && a.is_fault())
        .collect();
    let total = model.summary.faults.len() + model.summary.truncated.len();
    if total == 0 {
        return "<p>No faults: every access moved bytes where the driver asked.</p>".into();
    }
    o.push_str("<table class=\"faults\"><thead><tr><th>seq</th><th>t</th><th>transfer</th><th>dir</th><th>outcome</th><th>requested</th><th>effective</th><th>len</th></tr></thead><tbody>");
    for a in &listed {
        let eff = a.effective.map_or("-".to_string(), |e| format!("{e:#x}"));
        let _ = write!(
            o,
            r##"<tr class="o-{oc}"><td><a class="fault-link" href="#mark-{seq}" data-seq="{seq}">{seq}</a></td><td>{t}</td><td>{tr}</td><td>{dir}</td><td>{oc}</td><td>{req:#x}</td><td>{eff}</td><td>{len}</td></tr>"##,
            seq = a.seq,
            t = crate::scale::duration(a.t_ns),
            tr = a.transfer,
            dir = a.dir.as_str(),
            oc = a.outcome.as_str(),
            req = a.requested,
            len = a.len,
        );
    }
    o.push_str("</tbody></table>");
    if total > listed.len() {
        let _ = write!(
            o,
            "<p>... and {} more, counted in the bins (<code>dmalab trace summary --json</code> lists them all).</p>",
            total - listed.len()
        );
    }
    o
}

/// Every record's fields for hovering (small traces), as JSON that cannot
/// close the script element it sits in.
fn records_json(model: &Model) -> String {
    let Some(records) = &model.detail else {
        return "[]".into();
    };
    serde_json::to_string(records)
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c")
}
