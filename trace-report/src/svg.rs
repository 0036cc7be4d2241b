//! What the pictures share: escaping and the lanes.

use device_model::Direction;

/// Lane names, top to bottom, in both pictures.
pub const LANES: [&str; 3] = ["to_device", "from_device", "descriptor_fetch"];

pub fn lane_of(dir: Direction) -> u8 {
    match dir {
        Direction::ToDevice => 0,
        Direction::FromDevice => 1,
        Direction::DescriptorFetch => 2,
    }
}

/// Text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
