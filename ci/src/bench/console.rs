//! Numbers in console and dmalab log lines.

/// `[   43.393956] Run /init as init process` -> (43.393956, "Run /init ...").
pub fn printk_time(line: &str) -> Option<(f64, &str)> {
    let l = line.trim_start_matches(['\r', '\n']).trim_start();
    let rest = l.strip_prefix('[')?;
    let (ts, text) = rest.split_once(']')?;
    let t: f64 = ts.trim().parse().ok()?;
    Some((t, text.strip_prefix(' ').unwrap_or(text).trim_end()))
}

/// The number in `... <before>NUMBER<after>...` of a dmalab log line, e.g.
/// `log_number(l, "first guest instruction at ", " ms")`.
pub fn log_number(line: &str, before: &str, after: &str) -> Option<f64> {
    let at = line.find(before)?;
    let rest = &line[at + before.len()..];
    let end = rest.find(after)?;
    rest[..end].trim().parse().ok()
}

pub(super) fn field<T: std::str::FromStr>(text: &str, key: &str) -> Option<T> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

/// The driver's KUnit case `register_read_round_trip` prints
/// `# <dev>: mmio_read_ns=N reads=R (readl of REG_MAGIC, mean)`: (N, R).
pub fn parse_driver_mmio(line: &str) -> Option<(f64, u64)> {
    let at = line.find("mmio_read_ns=")?;
    let rest = &line[at..];
    let ns = field(rest, "mmio_read_ns=")?;
    Some((ns, field(rest, "reads=").unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_mmio_line() {
        let l = "[   40.1]     # dma24-0: mmio_read_ns=14250 reads=200 (readl of REG_MAGIC, mean)";
        assert_eq!(parse_driver_mmio(l), Some((14250.0, 200)));
        assert_eq!(parse_driver_mmio("mmio_read_ns=7"), Some((7.0, 0)));
        assert_eq!(parse_driver_mmio("mmio_read_ns=x"), None);
        assert_eq!(parse_driver_mmio("nothing"), None);
    }

    #[test]
    fn printk_times() {
        assert_eq!(
            printk_time("[   43.393956] Run /init as init process"),
            Some((43.393956, "Run /init as init process"))
        );
        assert_eq!(
            printk_time("\r[    0.000000] Linux\r"),
            Some((0.0, "Linux"))
        );
        assert_eq!(printk_time("dmalab-init: insmod dmalab ok"), None);
        assert_eq!(printk_time("[abc] x"), None);
    }

    #[test]
    fn vmm_log_numbers() {
        let l = "[   0.058720 dmalab INFO ] first guest instruction at 58.718 ms after VMM start";
        assert_eq!(
            log_number(l, "first guest instruction at ", " ms"),
            Some(58.718)
        );
        let l = "[   0.057214 dmalab INFO ] VM ready in 57.1 ms (57.2 ms after VMM start)";
        assert_eq!(log_number(l, "VM ready in ", " ms"), Some(57.1));
        let l = "dmalab-init: user space up (uptime 50.02 s)";
        assert_eq!(
            log_number(l, "dmalab-init: user space up (uptime ", " s)"),
            Some(50.02)
        );
        assert_eq!(log_number("nothing", "VM ready in ", " ms"), None);
    }
}
