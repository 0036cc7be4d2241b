//! The generated document, checked as text: the marks per outcome add up to
//! the trace's counts, the mask line sits at the mask, a truncated access
//! has both its ends, the summary and the fault links are there, and bad
//! input gets the reader's errors.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use device_model::trace::summary::summarize;
use device_model::trace::{ReadError, TraceReader};
use trace_report::{render, synth, DETAIL_LIMIT, FAULT_LIST_LIMIT};

fn report(text: &str) -> String {
    render(TraceReader::new(text.as_bytes()).unwrap(), "t.jsonl")
        .unwrap()
        .0
}

/// Every element with `marker` in its start tag, as (attribute -> value).
fn elements(html: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
    html.split('<')
        .map(|tag| tag.split('>').next().unwrap_or_default())
        .filter(|tag| tag.contains(marker))
        .map(attributes)
        .collect()
}

/// `name k="v" k2="v2"/` -> {k: v, k2: v2} (values never contain quotes:
/// the page escapes them).
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    let mut rest = tag.split_once(' ').map_or("", |(_, r)| r);
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        attrs.insert(key.trim().to_string(), value.to_string());
        rest = tail;
    }
    attrs
}

/// The address map's svg alone.
fn addrmap(html: &str) -> &str {
    let start = html.find("<svg id=\"addrmap\"").expect("an address map");
    &html[start..start + html[start..].find("</svg>").unwrap()]
}

fn counts_by_outcome(html: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for m in elements(addrmap(html), "class=\"mark ") {
        *counts.entry(m["data-outcome"].clone()).or_default() +=
            m["data-count"].parse::<u64>().unwrap();
    }
    counts
}

fn trace_counts(text: &str) -> BTreeMap<String, u64> {
    summarize(text.as_bytes())
        .unwrap()
        .by_outcome
        .iter()
        .map(|(o, n)| (o.as_str().to_string(), *n))
        .collect()
}

#[test]
fn marks_per_outcome_equal_the_trace_counts_small_and_binned() {
    for records in [300, DETAIL_LIMIT + 2000] {
        let text = synth::trace_text(records, 5);
        let html = report(&text);
        assert_eq!(
            counts_by_outcome(&html),
            trace_counts(&text),
            "{records} records"
        );
    }
}

#[test]
fn small_trace_has_one_mark_per_record_with_its_fields() {
    let text = synth::trace_text(300, 9);
    let html = report(&text);
    let marks = elements(addrmap(&html), "class=\"mark ");
    assert_eq!(marks.len(), 300);
    assert!(marks
        .iter()
        .all(|m| m["data-count"] == "1" && m.contains_key("data-i")));
    // Every record's fields are in the page for hovering.
    let json = html
        .split("<script type=\"application/json\" id=\"records\">")
        .nth(1)
        .unwrap();
    let json = &json[..json.find("</script>").unwrap()];
    let records: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    assert_eq!(records.len(), 300);
    assert!(records[0]["hash"].is_string());
}

#[test]
fn large_trace_is_binned_and_stays_small() {
    let text = synth::trace_text(DETAIL_LIMIT * 3, 2);
    let html = report(&text);
    let marks = elements(addrmap(&html), "class=\"mark ");
    assert!(marks.len() < 8000, "{} marks", marks.len());
    let singles = marks.iter().filter(|m| m.contains_key("data-seq")).count();
    assert_eq!(singles, FAULT_LIST_LIMIT);
    assert!(html.len() < 4 << 20, "{} bytes", html.len());
    assert!(html.contains("\"records\">[]</script>"));
}

/// x of the mask line, computed the way the page's log scale does.
#[test]
fn mask_line_is_at_the_mask() {
    for (bits, mask) in [(24, "0xffffff"), (20, "0xfffff")] {
        let text = synth::trace_text(50, 1).replace(
            "\"mask_bits\":24,\"mask\":\"0xffffff\"",
            &format!("\"mask_bits\":{bits},\"mask\":\"{mask}\""),
        );
        let html = report(&text);
        let svg = addrmap(&html);
        let line = &elements(svg, "class=\"ref mask\"")[0];
        let limit = u64::from_str_radix(&mask[2..], 16).unwrap() + 1;
        assert_eq!(line["data-addr"], format!("{limit:#x}"));
        assert_eq!(line["x1"], line["x2"], "a vertical line");
        // Same x as a mark ending exactly at the limit would start.
        let zone = &elements(svg, "class=\"ref zone-dma\"")[0];
        if bits == 24 {
            assert_eq!(line["x1"], zone["x1"], "24-bit mask == ZONE_DMA's 16 MiB");
        } else {
            let (m, z): (f64, f64) = (line["x1"].parse().unwrap(), zone["x1"].parse().unwrap());
            assert!(m < z, "a 20-bit mask lies left of 16 MiB");
        }
        assert!(svg.contains(&format!("device mask: {bits} bits ({mask})")));
    }
    let html = report(&synth::trace_text(50, 1));
    let svg = addrmap(&html);
    let ram = &elements(svg, "class=\"ref ram-end\"")[0];
    assert_eq!(ram["data-addr"], "0x8000000");
    let mmio = &elements(svg, "class=\"ref mmio\"")[0];
    assert_eq!(
        (mmio["data-lo"].as_str(), mmio["data-hi"].as_str()),
        ("0xc0000000", "0xfe000000")
    );
}

#[test]
fn truncated_record_has_both_ends() {
    let text = synth::trace_text(300, 4);
    let html = report(&text);
    let svg = addrmap(&html);
    let truncated = elements(svg, "class=\"mark o-truncated");
    assert!(!truncated.is_empty());
    for m in &truncated {
        let seq = &m["data-seq"];
        let link = elements(svg, &format!("class=\"trunc-link\" data-seq=\"{seq}\""));
        assert_eq!(link.len(), 1, "seq {seq}");
        let link = &link[0];
        assert_eq!(link["data-req"], m["data-req"]);
        assert_eq!(link["data-eff"], m["data-eff"]);
        assert_ne!(link["data-req"], link["data-eff"]);
        // One end at the mark (its effective address), one at the request.
        assert_eq!(link["x2"], m["x"]);
        let circle = &elements(svg, &format!("class=\"trunc-req\" data-seq=\"{seq}\""))[0];
        assert_eq!(circle["cx"], link["x1"]);
        let (req, eff): (f64, f64) = (link["x1"].parse().unwrap(), link["x2"].parse().unwrap());
        assert!(req > eff, "the request lies above 16 MiB, the access below");
    }
}

#[test]
fn refused_access_sits_at_its_requested_address() {
    let html = report(&synth::trace_text(300, 4));
    let svg = addrmap(&html);
    let refused = elements(svg, " refused\"");
    assert!(!refused.is_empty());
    for m in refused {
        assert!(!m.contains_key("data-eff"));
        let ok_at_same = elements(svg, &format!("data-req=\"{}\"", m["data-req"]));
        assert!(ok_at_same.iter().all(|o| o["x"] == m["x"]));
    }
}

#[test]
fn summary_and_fault_links() {
    let text = synth::trace_text(300, 6);
    let html = report(&text);
    let table = summarize(text.as_bytes()).unwrap().render_table();
    let first = table.lines().next().unwrap();
    assert!(html.contains(first), "the summary's first line");
    assert!(html.contains("complete: 300 records written, 0 dropped"));
    let links = elements(&html, "class=\"fault-link\"");
    let summary = summarize(text.as_bytes()).unwrap();
    assert_eq!(links.len(), summary.faults.len() + summary.truncated.len());
    for l in links {
        let target = l["href"].trim_start_matches('#');
        assert!(html.contains(&format!("id=\"{target}\"")), "{target}");
    }
}

#[test]
fn bad_input_gets_the_readers_errors() {
    let e = TraceReader::new("".as_bytes()).err().unwrap();
    assert!(matches!(e, ReadError::Empty));
    let body: String = synth::trace_text(10, 1)
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let e = TraceReader::new(body.as_bytes()).err().unwrap();
    assert!(matches!(e, ReadError::MissingHeader { .. }), "{e}");
    let mut lines: Vec<String> = synth::trace_text(10, 1)
        .lines()
        .map(str::to_string)
        .collect();
    lines[4] = "{\"type\":\"dma\",\"seq\":x}".into();
    let text = lines.join("\n");
    let e = render(TraceReader::new(text.as_bytes()).unwrap(), "t").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("trace line 5 is not a valid record"),
        "{e}"
    );
}

#[test]
fn trace_without_footer_says_incomplete() {
    let text: String = synth::trace_text(40, 1)
        .lines()
        .take(31)
        .map(|l| format!("{l}\n"))
        .collect();
    let (html, stats) = render(TraceReader::new(text.as_bytes()).unwrap(), "t").unwrap();
    assert_eq!(
        stats.completeness.to_string(),
        "incomplete: 30 records, no footer"
    );
    assert!(html.contains("id=\"incomplete\">incomplete: 30 records, no footer"));
}

#[test]
fn header_text_is_escaped() {
    let text = synth::trace_text(5, 1).replacen("0000:00:01.0", "<script>x</script>", 1);
    let html = report(&text);
    assert!(!html.contains("<script>x</script>"));
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
}
