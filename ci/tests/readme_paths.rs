//! The README's "Where is it" table names a file for each concept: every
//! path in it must exist, so the table cannot drift when files move.

#![forbid(unsafe_code)]

use std::path::Path;

/// The paths in the table rows of the "## Where is it" section: each
/// markdown link target `](path)` (anchors dropped).
fn table_paths(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Where is it"))
        .expect("README.md has a \"## Where is it\" section");
    let mut paths = Vec::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').expect("a link closes");
            let target = rest[..end].split('#').next().unwrap_or_default();
            if !target.is_empty() && !target.contains("://") {
                paths.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    paths
}

#[test]
fn every_path_in_the_where_is_it_table_exists() {
    let root = ci::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let paths = table_paths(&readme);
    assert!(
        paths.len() >= 12,
        "the table should name a file for each of the 12 concepts, found {paths:?}"
    );
    let missing: Vec<&String> = paths.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "README.md \"Where is it\" names paths that do not exist (moved? update the table): {missing:?}"
    );
}

#[test]
fn the_parser_finds_links_and_the_check_can_fail() {
    let readme = "# x\n\n## Where is it\n\n| a | b |\n| --- | --- |\n| one | [`x/y.rs`](x/y.rs), [`z`](z#part) |\n| web | [w](https://example.org) |\n\n## Next\n| n | [`q`](q) |\n";
    assert_eq!(table_paths(readme), ["x/y.rs", "z"]);
    assert!(!Path::new(&ci::workspace_root()).join("x/y.rs").exists());
}
