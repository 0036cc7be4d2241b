//! A small stderr logger for the `log` crate, with every line stamped by the
//! time since the VMM started (the same clock the boot timer reports).

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

static START: OnceLock<Instant> = OnceLock::new();
static LOGGER: StderrLogger = StderrLogger;

/// Fix the VMM's time zero. The first call wins; `main` calls it first thing.
pub fn mark_start() -> Instant {
    *START.get_or_init(Instant::now)
}

/// Time since [`mark_start`] (or since the first call of this function).
pub fn since_start() -> Duration {
    mark_start().elapsed()
}

/// Milliseconds since the start, with microsecond resolution, for messages.
pub fn ms_since_start() -> f64 {
    since_start().as_secs_f64() * 1000.0
}

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = since_start();
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        // One write per line so lines from several threads do not interleave.
        let line = format!(
            "[{:>4}.{:06} dmalab {}] {}\n",
            t.as_secs(),
            t.subsec_micros(),
            level,
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Install the logger with `level` (a second call only changes the level).
pub fn init(level: LevelFilter) {
    mark_start();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parse a level name (`off`, `error`, `warn`, `info`, `debug`, `trace`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("INFO"), Some(LevelFilter::Info));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn clock_is_monotonic() {
        let a = since_start();
        let b = since_start();
        assert!(b >= a);
    }
}
