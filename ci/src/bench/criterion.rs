//! `cargo bench` runs and the criterion estimates they leave.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// A criterion `estimates.json`, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub median_ns: f64,
    pub mean_ns: f64,
    pub median_lower_ns: f64,
    pub median_upper_ns: f64,
}

pub fn parse_estimates(json: &str) -> Option<Estimate> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let median = &v["median"];
    Some(Estimate {
        median_ns: median["point_estimate"].as_f64()?,
        mean_ns: v["mean"]["point_estimate"].as_f64()?,
        median_lower_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
        median_upper_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
    })
}

/// Every `<group>/<bench>/new/estimates.json` under a criterion home, by
/// `group/bench`.
pub fn read_criterion(home: &Path, groups: &[&str]) -> BTreeMap<String, Estimate> {
    let mut out = BTreeMap::new();
    for g in groups {
        let Ok(rd) = std::fs::read_dir(home.join(g)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let file = e.path().join("new/estimates.json");
            if let Some(est) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| parse_estimates(&t))
            {
                out.insert(format!("{g}/{name}"), est);
            }
        }
    }
    out
}

/// `cargo bench -p PKG --bench NAME -- ARGS` with criterion's results under
/// `home`; returns its stdout (or why it failed).
pub(super) fn cargo_bench(
    pkg: &str,
    bench: &str,
    args: &[&str],
    home: &Path,
    env: &[(&str, String)],
    log: &Path,
) -> Result<String, String> {
    let mut c = Command::new(env!("CARGO"));
    c.args(["bench", "-p", pkg, "--bench", bench, "--"])
        .args(args)
        .env("CRITERION_HOME", home)
        .current_dir(ci::workspace_root());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::write(log, format!("{stdout}\n--- stderr\n{stderr}"));
    if out.status.success() {
        Ok(stdout)
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        Err(format!(
            "cargo bench -p {pkg} --bench {bench} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// The JSON a bench binary printed on its `KEY_json: {...}` line.
pub(super) fn bench_result(output: &str, key: &str) -> Result<serde_json::Value, String> {
    let prefix = format!("{key}_json: ");
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .ok_or_else(|| format!("the bench printed no {key}_json line"))?;
    serde_json::from_str(line).map_err(|e| format!("{key} result: {e}"))
}

pub(super) fn criterion_args(quick: bool) -> Vec<&'static str> {
    if quick {
        vec![
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]
    } else {
        vec![
            "--warm-up-time",
            "1",
            "--measurement-time",
            "2",
            "--sample-size",
            "30",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_estimates() {
        let j = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":30.4,"upper_bound":37.8},"point_estimate":33.9,"standard_error":1.9},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":27.1,"upper_bound":28.9},"point_estimate":27.6,"standard_error":1.2},"median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":0.4,"upper_bound":3.0},"point_estimate":1.1,"standard_error":1.1},"slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":8.0,"upper_bound":11.9},"point_estimate":10.6,"standard_error":1.1}}"#;
        assert_eq!(
            parse_estimates(j),
            Some(Estimate {
                median_ns: 27.6,
                mean_ns: 33.9,
                median_lower_ns: 27.1,
                median_upper_ns: 28.9
            })
        );
        assert_eq!(parse_estimates("{}"), None);
        assert_eq!(parse_estimates("not json"), None);

        let home = std::env::temp_dir().join(format!("dmalab-bench-test-{}", std::process::id()));
        let dir = home.join("g/b1/new");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("estimates.json"), j).unwrap();
        std::fs::create_dir_all(home.join("g/broken/new")).unwrap();
        std::fs::write(home.join("g/broken/new/estimates.json"), "{").unwrap();
        let m = read_criterion(&home, &["g", "missing"]);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["g/b1"]);
        let _ = std::fs::remove_dir_all(&home);
    }
}
