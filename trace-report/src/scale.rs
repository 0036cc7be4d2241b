//! Axes: bus addresses on a log scale (so the first 16 MiB and a 4 GiB
//! MMIO window both fit in one picture), time on a linear one.

/// Bus address -> x pixel: `x0 + w * log2(1 + a/1 KiB) / log2(1 + max/1 KiB)`.
#[derive(Clone, Copy, Debug)]
pub struct AddrScale {
    pub x0: f64,
    pub width: f64,
    log_max: f64,
}

const UNIT: f64 = 1024.0;

impl AddrScale {
    pub fn new(x0: f64, width: f64, max: u64) -> Self {
        AddrScale {
            x0,
            width,
            log_max: log_pos(max).max(1.0),
        }
    }

    pub fn x(&self, addr: u64) -> f64 {
        self.x0 + self.width * (log_pos(addr) / self.log_max).min(1.0)
    }

    /// Tick addresses: 0, then powers of 16 from 64 KiB up to the axis end.
    pub fn ticks(&self) -> Vec<u64> {
        let mut t = vec![0u64];
        let mut a = 1u64 << 16;
        while log_pos(a) <= self.log_max + 1e-9 {
            t.push(a);
            match a.checked_mul(16) {
                Some(n) => a = n,
                None => break,
            }
        }
        t
    }
}

// Precision loss is fine: these are pixel positions.
#[allow(clippy::cast_precision_loss)]
fn log_pos(a: u64) -> f64 {
    (1.0 + a as f64 / UNIT).log2()
}

/// t_ns -> x pixel, linear from `min` to `max`.
#[derive(Clone, Copy, Debug)]
pub struct TimeScale {
    pub x0: f64,
    pub width: f64,
    pub min: u64,
    pub max: u64,
}

impl TimeScale {
    /// The records' times with a 2 % margin each side (a guest's first DMA
    /// comes tens of seconds into its boot: the axis starts near it).
    pub fn around(x0: f64, width: f64, first: u64, last: u64) -> Self {
        let margin = (last.saturating_sub(first) / 50).max(1);
        TimeScale {
            x0,
            width,
            min: first.saturating_sub(margin),
            max: last.saturating_add(margin),
        }
    }

    pub fn span(&self) -> u64 {
        self.max.saturating_sub(self.min).max(1)
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn x(&self, t: u64) -> f64 {
        let f = t.saturating_sub(self.min) as f64 / self.span() as f64;
        self.x0 + self.width * f.min(1.0)
    }
}

/// 4096 -> "4 KiB", 0x100_0000 -> "16 MiB".
pub fn bytes(a: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = a;
    let mut u = 0;
    while v >= 1024 && v.is_multiple_of(1024) && u + 1 < UNITS.len() {
        v /= 1024;
        u += 1;
    }
    format!("{v} {}", UNITS[u])
}

/// Nanoseconds as the most readable unit: "850 ns", "12.5 µs", "3.20 s".
#[allow(clippy::cast_precision_loss)]
pub fn duration(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scale_orders_and_bounds() {
        let s = AddrScale::new(100.0, 1000.0, 1 << 32);
        assert_eq!(s.x(0), 100.0);
        assert!((s.x(1 << 32) - 1100.0).abs() < 1e-9);
        assert!(s.x(0x100_0000) > s.x(0xff_ffff));
        assert!(s.x(u64::MAX) <= 1100.0);
        let ticks = s.ticks();
        assert_eq!(ticks[..3], [0, 1 << 16, 1 << 20]);
        assert_eq!(*ticks.last().unwrap(), 1 << 32);
    }

    #[test]
    fn units() {
        assert_eq!(bytes(0x100_0000), "16 MiB");
        assert_eq!(bytes(1 << 32), "4 GiB");
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(duration(850), "850 ns");
        assert_eq!(duration(12_500), "12.5 µs");
        assert_eq!(duration(3_200_000_000), "3.20 s");
    }
}
