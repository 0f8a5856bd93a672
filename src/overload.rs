//! DR-ERR-1: telling a standing queue from a burst.
//!
//! A delay signal (how long work waited in the transaction layer's queue, how late the
//! runtime's lag probe woke) spikes for reasons that are not overload: a burst that the
//! daemon drains in a few milliseconds, or the whole VM not being scheduled by its host
//! for 100 ms. Shedding on such a spike turns away calls a daemon at half its capacity
//! would have carried. As CoDel does for packet queues (RFC 8289 §3.1), the daemon
//! therefore acts on the smallest delay seen over an interval: only a queue that never
//! drained below the limit for [`INTERVAL`] is standing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a delay must stand before it counts (CoDel's interval).
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The smallest of the delays sampled over the last full [`INTERVAL`], published for
/// any thread to read. Sampled by one owner, read by many.
#[derive(Debug, Default)]
pub struct StandingDelay {
    published_us: AtomicU64,
}

impl StandingDelay {
    /// The smallest delay of the last full interval (zero before the first one).
    pub fn get(&self) -> Duration {
        Duration::from_micros(self.published_us.load(Ordering::Relaxed))
    }

    fn set(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.published_us.store(us, Ordering::Relaxed);
    }
}

/// The sampling side of a [`StandingDelay`]: owned by the one task that measures.
#[derive(Debug, Default)]
pub struct Window {
    start: Option<Instant>,
    min: Duration,
}

impl Window {
    /// One delay measured at `now`. When an interval is full, publishes its minimum.
    /// A gap of more than two intervals since the window opened (nothing to sample: the
    /// queue was empty, or the whole process was not scheduled) is no standing queue:
    /// the window starts again and zero is published.
    pub fn sample(&mut self, now: Instant, delay: Duration, out: &StandingDelay) {
        let Some(start) = self.start else {
            self.start = Some(now);
            self.min = delay;
            return;
        };
        let age = now.saturating_duration_since(start);
        if age > 2 * INTERVAL {
            out.set(Duration::ZERO);
            self.start = Some(now);
            self.min = delay;
        } else if age >= INTERVAL {
            out.set(self.min.min(delay));
            self.start = Some(now);
            self.min = Duration::MAX;
        } else {
            self.min = self.min.min(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `(at ms, delay ms)` samples and returns what is published after each.
    fn run(samples: &[(u64, u64)]) -> Vec<u64> {
        let t0 = Instant::now();
        let mut w = Window::default();
        let out = StandingDelay::default();
        samples
            .iter()
            .map(|&(at, d)| {
                w.sample(t0 + MS * at as u32, MS * d as u32, &out);
                out.get().as_millis() as u64
            })
            .collect()
    }

    #[test]
    fn dr_err_1_one_spike_is_no_standing_queue() {
        // A 100 ms stall (a VM not scheduled): one late sample among prompt ones.
        let mut s: Vec<(u64, u64)> = (0..40).map(|i| (i * 5, 0)).collect();
        s[10].1 = 100;
        assert!(run(&s).iter().all(|&p| p == 0));
    }

    #[test]
    fn dr_err_1_a_delay_that_stands_for_an_interval_is_published() {
        // Every sample 25-40 ms late for 200 ms: the minimum, 25, stands.
        let s: Vec<(u64, u64)> = (0..41).map(|i| (i * 5, 25 + (i % 4) * 5)).collect();
        let p = run(&s);
        assert_eq!(p[19], 0, "not before a full interval");
        assert_eq!(p[20], 25);
        assert_eq!(p[40], 25);
    }

    #[test]
    fn dr_err_1_a_drained_queue_clears_at_the_next_interval() {
        let mut s: Vec<(u64, u64)> = (0..21).map(|i| (i * 5, 30)).collect();
        s.extend((21..41).map(|i| (i * 5, 30)));
        s[30].1 = 1; // drained once within the second interval
        let p = run(&s);
        assert_eq!(p[20], 30);
        assert_eq!(p[40], 1);
    }

    #[test]
    fn dr_err_1_a_long_gap_restarts_the_window() {
        // A standing delay, then nothing to sample for a second, then one late sample.
        let mut s: Vec<(u64, u64)> = (0..21).map(|i| (i * 5, 30)).collect();
        s.push((1200, 50));
        let p = run(&s);
        assert_eq!(p[20], 30);
        assert_eq!(p[21], 0, "one sample after a gap is no standing queue");
    }
}
