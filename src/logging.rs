//! Logs go to stderr through tracing (journald picks them up under systemd). The level
//! comes from the config's `[log] level` unless `RUST_LOG` is set.

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber; an invalid filter is a configuration error.
pub fn init(settings: &LogSettings) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG `{v}`: {e}"))?
        }
        _ => EnvFilter::try_new(&settings.level)
            .map_err(|e| format!("log.level: `{}` is not a valid filter: {e}", settings.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if settings.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Lines per call site allowed in one [`WINDOW`] before the rest are counted instead.
pub const BURST: u32 = 50;
/// The window of [`BURST`], in seconds.
pub const WINDOW: u64 = 10;

/// The budget of one rate-limited log call site (see [`warn_limited!`](crate::warn_limited)):
/// at most [`BURST`] lines per [`WINDOW`] seconds; the lines over it are counted, and the
/// next line written carries that count as `suppressed`. Lock-free: the paths that use it
/// run once per message an attacker or an overload can send.
#[derive(Debug, Default)]
pub struct Limiter {
    window: std::sync::atomic::AtomicU64,
    written: std::sync::atomic::AtomicU32,
    suppressed: std::sync::atomic::AtomicU64,
}

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter {
            window: std::sync::atomic::AtomicU64::new(0),
            written: std::sync::atomic::AtomicU32::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether to write a line now; `Some(n)`: yes, and `n` lines were suppressed since
    /// the last one written.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(seconds_since_start())
    }

    /// [`admit`](Limiter::admit) at `now` seconds since start (for tests).
    pub fn admit_at(&self, now: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        // Window numbers start at 1 so that a fresh limiter (window 0) opens one.
        let window = now / WINDOW + 1;
        let seen = self.window.load(Relaxed);
        if seen != window
            && self
                .window
                .compare_exchange(seen, window, Relaxed, Relaxed)
                .is_ok()
        {
            self.written.store(0, Relaxed);
        }
        if self.written.fetch_add(1, Relaxed) < BURST {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.written.store(BURST, Relaxed);
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

fn seconds_since_start() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
}

/// `tracing::warn!` for a path that runs once per message from the network: at most
/// [`BURST`](crate::logging::BURST) lines per call site every
/// [`WINDOW`](crate::logging::WINDOW) seconds; the next line written after a quiet spell
/// says how many were suppressed (`suppressed=N`).
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {
        $crate::log_limited!(tracing::Level::WARN, $($arg)+)
    };
}

/// [`warn_limited!`](crate::warn_limited) at INFO.
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => {
        $crate::log_limited!(tracing::Level::INFO, $($arg)+)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::logging::Limiter = $crate::logging::Limiter::new();
        if tracing::enabled!($level) {
            match LIMIT.admit() {
                Some(0) => tracing::event!($level, $($arg)+),
                Some(suppressed) => tracing::event!($level, suppressed, $($arg)+),
                None => {}
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_the_count_of_what_was_suppressed() {
        let l = Limiter::new();
        for _ in 0..BURST {
            assert_eq!(l.admit_at(3), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(l.admit_at(4), None);
        }
        // The next window: the first line carries the count, then the count restarts.
        assert_eq!(l.admit_at(WINDOW + 1), Some(25));
        assert_eq!(l.admit_at(WINDOW + 1), Some(0));
        // Nothing suppressed over a quiet window: no count.
        assert_eq!(l.admit_at(5 * WINDOW), Some(0));
    }
}
