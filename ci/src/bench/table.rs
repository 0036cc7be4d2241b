//! The results table: rows with targets, and its text rendering.

use serde::Serialize;

use super::stats::Stats;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub part: String,
    pub metric: String,
    /// Main figure in `unit` (None: not measured).
    pub value: Option<f64>,
    pub unit: String,
    /// What the table shows.
    pub shown: String,
    pub target: Option<String>,
    /// None: no target or not measured.
    pub met: Option<bool>,
    pub how: String,
}

pub(super) fn row(part: &str, metric: &str, how: &str) -> Row {
    Row {
        part: part.into(),
        metric: metric.into(),
        value: None,
        unit: String::new(),
        shown: String::new(),
        target: None,
        met: None,
        how: how.into(),
    }
}

impl Row {
    pub(super) fn value(mut self, v: f64, unit: &str, shown: String) -> Row {
        self.value = Some(v);
        self.unit = unit.into();
        self.shown = shown;
        self
    }
    pub(super) fn not_measured(mut self, why: &str) -> Row {
        self.value = None;
        self.met = None;
        self.shown = format!("not measured: {why}");
        self
    }
    /// Target "≤ limit": met when the value is at most `limit`.
    pub(super) fn at_most(mut self, limit: f64, shown: &str) -> Row {
        self.target = Some(format!("≤ {shown}"));
        self.met = self.value.map(|v| v <= limit);
        self
    }
    pub(super) fn at_least(mut self, limit: f64, shown: &str) -> Row {
        self.target = Some(format!("≥ {shown}"));
        self.met = self.value.map(|v| v >= limit);
        self
    }
}

pub(super) fn fmt_stats(s: &Stats, unit: &str, digits: usize) -> String {
    if s.n == 1 {
        format!("{:.*} {unit} (1 run)", digits, s.median)
    } else {
        format!(
            "{:.*} {unit} (min {:.*}, max {:.*}; {} runs)",
            digits, s.median, digits, s.min, digits, s.max, s.n
        )
    }
}

pub(super) fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Renders rows as a text table, wrapping long cells.
pub fn render_table(rows: &[Row]) -> String {
    let head = ["metric", "value", "target", "met"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.metric.clone(),
                r.shown.clone(),
                r.target.clone().unwrap_or_else(|| "-".into()),
                match (r.met, r.value) {
                    (Some(true), _) => "met".into(),
                    (Some(false), _) => "NOT met".into(),
                    (None, None) => "n/a".into(),
                    (None, Some(_)) => "-".into(),
                },
            ]
        })
        .collect();
    let max = [44usize, 58, 12, 7];
    let mut width = [0usize; 4];
    for (i, h) in head.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for c in &cells {
        for i in 0..4 {
            width[i] = width[i].max(c[i].chars().count().min(max[i]));
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, parts: &[String; 4]| {
        let wrapped: Vec<Vec<String>> = (0..4).map(|i| wrap(&parts[i], width[i])).collect();
        let h = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..h {
            let mut l = String::from("|");
            for i in 0..4 {
                let s = wrapped[i].get(k).map_or("", String::as_str);
                l.push_str(&format!(
                    " {s}{} |",
                    " ".repeat(width[i] - s.chars().count())
                ));
            }
            out.push_str(l.trim_end());
            out.push('\n');
        }
    };
    line(&mut out, &head.map(String::from));
    let sep: Vec<String> = width.iter().map(|w| "-".repeat(*w + 2)).collect();
    out.push_str(&format!("|{}|\n", sep.join("|")));
    let mut part = "";
    for (r, c) in rows.iter().zip(&cells) {
        if r.part != part {
            part = &r.part;
            let title = format!("[{part}]");
            line(
                &mut out,
                &[title, String::new(), String::new(), String::new()],
            );
        }
        line(&mut out, c);
    }
    out
}

/// Greedy word wrap to `w` columns (long words are cut).
fn wrap(s: &str, w: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in s.split(' ') {
        let cur = out.last_mut().expect("never empty");
        let need = cur.chars().count() + usize::from(!cur.is_empty()) + word.chars().count();
        if need <= w || cur.is_empty() && word.chars().count() <= w {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        } else if word.chars().count() <= w {
            out.push(word.to_string());
        } else {
            let chars: Vec<char> = word.chars().collect();
            for chunk in chars.chunks(w) {
                out.push(chunk.iter().collect());
            }
        }
    }
    out.retain(|l| !l.is_empty());
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rendering_and_targets() {
        let rows = vec![
            row("boot", "boot to driver-ready", "how")
                .value(40.0, "s", "40.0 s".into())
                .at_most(30.0, "30 s"),
            row("boot", "first instruction", "how")
                .value(1.0, "ms", "1.00 ms".into())
                .at_most(5.0, "5 ms"),
            row("mmio", "guest read", "")
                .not_measured("no device yet")
                .at_most(200.0, "200 ns"),
            row("mmio", "no target", "").value(3.0, "x", "3".into()),
        ];
        assert_eq!(rows[0].met, Some(false));
        assert_eq!(rows[1].met, Some(true));
        assert_eq!(rows[2].met, None);
        let t = render_table(&rows);
        assert!(t.contains("[boot]") && t.contains("[mmio]"), "{t}");
        assert!(t.contains("NOT met") && t.contains("| met"), "{t}");
        assert!(t.contains("n/a"), "{t}");
        assert!(t.contains("≤ 30 s"), "{t}");
        for l in t.lines() {
            assert!(l.starts_with('|'), "{l}");
        }
        assert_eq!(wrap("aaa bbb ccc", 7), vec!["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
