//! The address map: one lane per direction, bus address across (log scale),
//! each access a mark at `[effective, effective + len)` coloured by
//! outcome; a refused access at its requested address; a truncated one
//! joined to the address the driver asked for. Reference lines: the
//! device's mask, ZONE_DMA's 16 MiB, the end of each guest RAM range, the
//! PCI MMIO window.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use device_model::{Direction, Outcome};

use crate::model::{Access, Model};
use crate::scale::{bytes, AddrScale};
use crate::svg::{esc, lane_of, LANES};

pub const WIDTH: f64 = 1200.0;
pub const X0: f64 = 150.0;
pub const PLOT_W: f64 = 1020.0;
const TOP: f64 = 56.0;
const LANE_H: f64 = 48.0;
/// ZONE_DMA's end on x86-64: what GFP_DMA memory is below.
pub const ZONE_DMA_END: u64 = 16 << 20;

/// Where each kind of mark sits within its lane.
fn band(outcome: Outcome) -> (f64, f64) {
    match outcome {
        Outcome::Ok | Outcome::Truncated => (6.0, 20.0),
        _ => (30.0, 12.0),
    }
}

fn lane_y(dir: Direction) -> f64 {
    TOP + LANE_H * f64::from(lane_of(dir))
}

pub fn render(model: &Model) -> String {
    let scale = AddrScale::new(X0, PLOT_W, model.addr_max());
    let height = TOP + LANE_H * 3.0 + 44.0;
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        r#"<svg id="addrmap" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" data-x0="{X0}" data-w="{PLOT_W}">"#
    );
    for (i, name) in LANES.iter().enumerate() {
        let y = TOP + LANE_H * f64::from(u8::try_from(i).unwrap_or(0));
        let _ = write!(
            o,
            r#"<rect class="lane" x="{X0}" y="{y}" width="{PLOT_W}" height="{LANE_H}"/><text class="lane-label" x="{}" y="{}">{name}</text>"#,
            X0 - 8.0,
            y + LANE_H / 2.0 + 4.0
        );
    }
    references(&mut o, model, &scale);
    axis(&mut o, &scale, TOP + LANE_H * 3.0);
    o.push_str(r#"<g class="marks">"#);
    let mut bins: BTreeMap<(u8, Outcome, i64), Bin> = BTreeMap::new();
    for (i, a) in model.accesses.iter().enumerate() {
        if a.single {
            single(&mut o, a, model.detail.as_ref().map(|_| i), &scale);
        } else {
            let x = scale.x(a.at());
            // One bin per pixel column; truncation to the column is the point.
            #[allow(clippy::cast_possible_truncation)]
            let col = x.floor() as i64;
            let b = bins.entry((lane_of(a.dir), a.outcome, col)).or_default();
            b.count += 1;
            b.lo = b.lo.min(a.at());
            b.hi = b.hi.max(a.end());
        }
    }
    for ((lane, outcome, col), b) in &bins {
        let (dy, h) = band(*outcome);
        let y = TOP + LANE_H * f64::from(*lane) + dy;
        #[allow(clippy::cast_precision_loss)]
        let w = (scale.x(b.hi) - *col as f64).max(1.0);
        let _ = write!(
            o,
            r#"<rect class="mark bin o-{o}" data-outcome="{o}" data-dir="{d}" data-count="{c}" data-lo="{lo:#x}" data-hi="{hi:#x}" x="{col}" y="{y}" width="{w:.2}" height="{h}" style="opacity:{op:.2}"/>"#,
            o = outcome.as_str(),
            d = LANES[usize::from(*lane)],
            c = b.count,
            lo = b.lo,
            hi = b.hi,
            op = opacity(b.count),
        );
    }
    o.push_str("</g></svg>");
    o
}

#[derive(Clone, Copy)]
struct Bin {
    count: u64,
    lo: u64,
    hi: u64,
}

impl Default for Bin {
    fn default() -> Self {
        Bin {
            count: 0,
            lo: u64::MAX,
            hi: 0,
        }
    }
}

/// More accesses in a bin, darker mark (log, from 0.35 to 1).
#[allow(clippy::cast_precision_loss)]
fn opacity(count: u64) -> f64 {
    (0.35 + 0.13 * (count as f64).log2()).min(1.0)
}

fn single(o: &mut String, a: &Access, detail: Option<usize>, scale: &AddrScale) {
    let (dy, h) = band(a.outcome);
    let y = lane_y(a.dir) + dy;
    let x = scale.x(a.at());
    let w = (scale.x(a.end()) - x).max(1.5);
    let outcome = a.outcome.as_str();
    let refused = if a.effective.is_none() {
        " refused"
    } else {
        ""
    };
    let _ = write!(
        o,
        r#"<rect id="mark-{seq}" class="mark o-{outcome}{refused}" data-seq="{seq}" data-outcome="{outcome}" data-dir="{dir}" data-count="1" data-t="{t}" data-transfer="{tr}" data-req="{req:#x}" data-len="{len}""#,
        seq = a.seq,
        dir = a.dir.as_str(),
        t = a.t_ns,
        tr = a.transfer,
        req = a.requested,
        len = a.len,
    );
    if let Some(e) = a.effective {
        let _ = write!(o, r#" data-eff="{e:#x}""#);
    }
    if let Some(i) = detail {
        let _ = write!(o, r#" data-i="{i}""#);
    }
    let _ = write!(o, r#" x="{x:.2}" y="{y}" width="{w:.2}" height="{h}"/>"#);
    if a.outcome == Outcome::Truncated {
        let xr = scale.x(a.requested);
        let yl = lane_y(a.dir) + 27.0;
        let _ = write!(
            o,
            r#"<line class="trunc-link" data-seq="{seq}" data-req="{req:#x}" data-eff="{eff:#x}" x1="{xr:.2}" y1="{yl}" x2="{x:.2}" y2="{ym}"/><circle class="trunc-req" data-seq="{seq}" cx="{xr:.2}" cy="{yl}" r="3"/>"#,
            seq = a.seq,
            req = a.requested,
            eff = a.at(),
            ym = y + h,
        );
    }
}

fn references(o: &mut String, model: &Model, scale: &AddrScale) {
    let bottom = TOP + LANE_H * 3.0;
    if let Some(layout) = &model.header.memory {
        if let Some([start, end]) = layout.mmio_window {
            let (x1, x2) = (scale.x(start.0), scale.x(end.0));
            let _ = write!(
                o,
                r#"<rect class="ref mmio" data-lo="{start}" data-hi="{end}" x="{x1:.2}" y="{TOP}" width="{w:.2}" height="{h}"><title>PCI MMIO window {start}..{end}</title></rect><text class="ref-label mmio" x="{x2:.2}" y="{ty}" text-anchor="end">PCI MMIO window</text>"#,
                w = (x2 - x1).max(1.0),
                h = LANE_H * 3.0,
                ty = TOP - 2.0,
            );
        }
        for [_, end] in &layout.ram {
            let x = scale.x(end.0);
            let _ = write!(
                o,
                r#"<line class="ref ram-end" data-addr="{end}" x1="{x:.2}" y1="{y1}" x2="{x:.2}" y2="{bottom}"/><text class="ref-label ram-end" x="{x:.2}" y="{ty}">end of RAM {b}</text>"#,
                y1 = TOP - 14.0,
                ty = TOP - 16.0,
                b = bytes(end.0),
            );
        }
    }
    let zx = scale.x(ZONE_DMA_END);
    let _ = write!(
        o,
        r#"<line class="ref zone-dma" data-addr="{ZONE_DMA_END:#x}" x1="{zx:.2}" y1="{y1}" x2="{zx:.2}" y2="{bottom}"/><text class="ref-label zone-dma" x="{tx:.2}" y="{ty}" text-anchor="end">ZONE_DMA 16 MiB</text>"#,
        y1 = TOP - 28.0,
        tx = zx - 4.0,
        ty = TOP - 30.0,
    );
    let limit = model.header.mask.0.saturating_add(1);
    let mx = scale.x(limit);
    let _ = write!(
        o,
        r#"<line class="ref mask" data-addr="{limit:#x}" x1="{mx:.2}" y1="{y1}" x2="{mx:.2}" y2="{bottom}"/><text class="ref-label mask" x="{tx:.2}" y="{ty}">device mask: {bits} bits ({mask})</text>"#,
        y1 = TOP - 44.0,
        tx = mx + 4.0,
        ty = TOP - 44.0 + 10.0,
        bits = model.header.mask_bits,
        mask = esc(&model.header.mask.to_string()),
    );
}

fn axis(o: &mut String, scale: &AddrScale, y: f64) {
    let _ = write!(
        o,
        r#"<line class="axis" x1="{X0}" y1="{y}" x2="{x2}" y2="{y}"/>"#,
        x2 = X0 + PLOT_W
    );
    for t in scale.ticks() {
        let x = scale.x(t);
        let _ = write!(
            o,
            r#"<line class="tick" x1="{x:.2}" y1="{y}" x2="{x:.2}" y2="{y2}"/><text class="tick-label" x="{x:.2}" y="{ty}">{label}</text>"#,
            y2 = y + 5.0,
            ty = y + 18.0,
            label = if t == 0 { "0".to_string() } else { bytes(t) },
        );
    }
    let _ = write!(
        o,
        r#"<text class="axis-label" x="{x}" y="{ty}">bus address (log scale)</text>"#,
        x = X0 + PLOT_W / 2.0,
        ty = y + 36.0
    );
}
