//! The timeline: t_ns across; a row of transfer spans, a row per direction
//! with a tick per segment (descriptor fetches in their own row), and a row
//! of fault markers. The page's script zooms it by recomputing x from each
//! element's `data-t`/`data-t0`/`data-t1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use device_model::Outcome;

use crate::model::Model;
use crate::scale::TimeScale;
use crate::svg::{lane_of, LANES};

const X0: f64 = crate::addrmap::X0;
const PLOT_W: f64 = crate::addrmap::PLOT_W;
const WIDTH: f64 = crate::addrmap::WIDTH;
const TOP: f64 = 10.0;
const ROW_H: f64 = 28.0;
/// Rows: transfers, the three lanes, faults.
const ROWS: [&str; 5] = ["transfers", LANES[0], LANES[1], LANES[2], "faults"];

fn row_y(row: u8) -> f64 {
    TOP + ROW_H * f64::from(row)
}

pub fn render(model: &Model) -> String {
    let scale = TimeScale::around(X0, PLOT_W, model.t_min, model.t_max);
    let axis_y = row_y(5);
    let height = axis_y + 40.0;
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" data-x0="{X0}" data-w="{PLOT_W}" data-tmin="{tmin}" data-tmax="{tmax}">"#,
        tmin = scale.min,
        tmax = scale.max
    );
    for (i, name) in ROWS.iter().enumerate() {
        let y = row_y(u8::try_from(i).unwrap_or(0));
        let _ = write!(
            o,
            r#"<rect class="lane" x="{X0}" y="{y}" width="{PLOT_W}" height="{ROW_H}"/><text class="lane-label" x="{}" y="{}">{name}</text>"#,
            X0 - 8.0,
            y + ROW_H / 2.0 + 4.0
        );
    }
    let _ = write!(
        o,
        r#"<line class="axis" x1="{X0}" y1="{axis_y}" x2="{}" y2="{axis_y}"/><g class="t-ticks" data-y="{axis_y}"></g><text class="axis-label" x="{}" y="{}">t since VM start (wheel: zoom, drag: pan, double-click: reset)</text>"#,
        X0 + PLOT_W,
        X0 + PLOT_W / 2.0,
        axis_y + 34.0
    );
    o.push_str(r#"<clipPath id="tl-clip"><rect x="150" y="0" width="1020" height="1000"/></clipPath><g class="tl-marks" clip-path="url(#tl-clip)">"#);
    spans(&mut o, model, &scale);
    segments(&mut o, model, &scale);
    o.push_str("</g></svg>");
    o
}

/// One span per transfer, from its first record to its last; binned per
/// pixel column (count of transfers starting there) for large traces.
fn spans(o: &mut String, model: &Model, scale: &TimeScale) {
    let mut spans: BTreeMap<u64, (u64, u64, Outcome)> = BTreeMap::new();
    for a in &model.accesses {
        let s = spans
            .entry(a.transfer)
            .or_insert((a.t_ns, a.t_ns, Outcome::Ok));
        s.0 = s.0.min(a.t_ns);
        s.1 = s.1.max(a.t_ns);
        if a.outcome != Outcome::Ok {
            s.2 = a.outcome;
        }
    }
    let y = row_y(0) + 6.0;
    if model.detail.is_some() {
        for (transfer, (t0, t1, worst)) in &spans {
            let x = scale.x(*t0);
            let w = (scale.x(*t1) - x).max(2.0);
            let _ = write!(
                o,
                r#"<rect class="span o-{o}" data-transfer="{transfer}" data-t0="{t0}" data-t1="{t1}" x="{x:.2}" y="{y}" width="{w:.2}" height="16"/>"#,
                o = worst.as_str()
            );
        }
        return;
    }
    let mut cols: BTreeMap<u64, u64> = BTreeMap::new();
    let bin = bin_ns(scale);
    for (t0, _, _) in spans.values() {
        *cols.entry(t0.saturating_sub(scale.min) / bin).or_default() += 1;
    }
    for (c, n) in cols {
        let (t0, t1) = (scale.min + c * bin, scale.min + (c + 1) * bin);
        let x = scale.x(t0);
        let _ = write!(
            o,
            r#"<rect class="span bin" data-count="{n}" data-t0="{t0}" data-t1="{t1}" x="{x:.2}" y="{y}" width="{w:.2}" height="16"/>"#,
            w = (scale.x(t1) - x).max(1.0)
        );
    }
}

/// Nanoseconds per pixel column (at least 1).
fn bin_ns(scale: &TimeScale) -> u64 {
    // The plot is 1020 px wide: a bin per px, rounded up.
    scale.span().div_ceil(1020).max(1)
}

fn segments(o: &mut String, model: &Model, scale: &TimeScale) {
    let mut bins: BTreeMap<(u8, Outcome, u64), u64> = BTreeMap::new();
    let bin = bin_ns(scale);
    for a in &model.accesses {
        let lane = lane_of(a.dir) + 1;
        if !a.single {
            *bins
                .entry((lane, a.outcome, a.t_ns.saturating_sub(scale.min) / bin))
                .or_default() += 1;
            continue;
        }
        let x = scale.x(a.t_ns) - 1.0;
        let _ = write!(
            o,
            r#"<rect id="tl-{seq}" class="seg o-{oc}" data-seq="{seq}" data-t="{t}" x="{x:.2}" y="{y}" width="2" height="20"/>"#,
            seq = a.seq,
            oc = a.outcome.as_str(),
            t = a.t_ns,
            y = row_y(lane) + 4.0,
        );
        if a.is_fault() {
            let _ = write!(
                o,
                r#"<rect class="fault-mark o-{oc}" data-seq="{seq}" data-t="{t}" x="{x:.2}" y="{y}" width="6" height="14" transform="translate(-2 0)"/>"#,
                seq = a.seq,
                oc = a.outcome.as_str(),
                t = a.t_ns,
                y = row_y(4) + 7.0,
            );
        }
    }
    for ((lane, outcome, c), n) in bins {
        let (t0, t1) = (scale.min + c * bin, scale.min + (c + 1) * bin);
        let x = scale.x(t0);
        let row = if outcome == Outcome::Ok { lane } else { 4 };
        let _ = write!(
            o,
            r#"<rect class="seg bin o-{oc}" data-count="{n}" data-t0="{t0}" data-t1="{t1}" x="{x:.2}" y="{y}" width="{w:.2}" height="20"/>"#,
            oc = outcome.as_str(),
            y = row_y(row) + 4.0,
            w = (scale.x(t1) - x).max(1.0),
        );
    }
}
