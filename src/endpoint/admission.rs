//! Per-source admission on the endpoint listener, which anyone may reach without
//! credentials: a token bucket of requests per source IP address (in the manner of
//! Kamailio's pike), kept in a table that cannot grow without bound. Sans-IO: the caller
//! passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at once. A source whose bucket is full again holds nothing worth
/// keeping and is dropped first; a table full of busy sources refuses new ones.
pub const MAX_SOURCES: usize = 65_536;

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Over the rate; `first` is set on the first refusal of a spell (log it once).
    Refuse {
        first: bool,
    },
    /// Admitted again after a spell of refusals, of which there were `refused`.
    Recovered {
        refused: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Requests refused in the current spell.
    refused: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct SourceLimits {
    rate: f64,
    burst: f64,
    sources: HashMap<IpAddr, Bucket>,
    max_sources: usize,
    /// After a sweep that freed nothing, the next is not tried before this (a sweep
    /// walks the whole table).
    no_sweep_until: Option<Instant>,
}

impl SourceLimits {
    /// `rate` requests per second from one source, with bursts of twice that.
    pub fn new(rate: u32) -> SourceLimits {
        SourceLimits::with_capacity(rate, MAX_SOURCES)
    }

    pub fn with_capacity(rate: u32, max_sources: usize) -> SourceLimits {
        let rate = f64::from(rate.max(1));
        SourceLimits {
            rate,
            burst: 2.0 * rate,
            sources: HashMap::new(),
            max_sources,
            no_sweep_until: None,
        }
    }

    /// Takes one request from `ip` at `now`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.max_sources {
            if self.no_sweep_until.is_none_or(|t| now >= t) {
                self.sweep(now);
            }
            if self.sources.len() >= self.max_sources {
                self.no_sweep_until = Some(now + Duration::from_millis(100));
                return Verdict::Refuse { first: false };
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.sources.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
            refused: 0,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            if b.refused > 0 {
                let refused = std::mem::take(&mut b.refused);
                return Verdict::Recovered { refused };
            }
            Verdict::Admit
        } else {
            b.refused += 1;
            Verdict::Refuse {
                first: b.refused == 1,
            }
        }
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Forgets the sources whose bucket has refilled (they would start afresh anyway).
    pub fn sweep(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        self.sources
            .retain(|_, b| b.refused > 0 || now.saturating_duration_since(b.at) < refill);
        if self.sources.capacity() > 1024 && self.sources.len() < self.sources.capacity() / 4 {
            self.sources.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let t0 = Instant::now();
        let mut l = SourceLimits::new(10);
        for _ in 0..20 {
            assert_eq!(l.admit(ip(1), t0), Verdict::Admit);
        }
        assert_eq!(l.admit(ip(1), t0), Verdict::Refuse { first: true });
        assert_eq!(l.admit(ip(1), t0), Verdict::Refuse { first: false });
        // Another source is unaffected.
        assert_eq!(l.admit(ip(2), t0), Verdict::Admit);
        // A tenth of a second later: one more, and the spell's count.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.admit(ip(1), t1), Verdict::Recovered { refused: 2 });
        assert_eq!(l.admit(ip(1), t1), Verdict::Refuse { first: true });
    }

    #[test]
    fn a_steady_phone_is_never_refused() {
        let t0 = Instant::now();
        let mut l = SourceLimits::new(50);
        for i in 0..10_000u64 {
            // 40 requests a second, for 250 s.
            let t = t0 + Duration::from_millis(25 * i);
            assert_eq!(l.admit(ip(1), t), Verdict::Admit);
        }
    }

    #[test]
    fn the_table_is_bounded_under_a_flood_from_many_sources() {
        let t0 = Instant::now();
        let mut l = SourceLimits::with_capacity(50, 1000);
        for n in 0..100_000u32 {
            // 50,000 sources a second, one request each.
            let t = t0 + Duration::from_micros(20 * u64::from(n));
            let v = l.admit(ip(n), t);
            assert!(l.len() <= 1000);
            // Idle sources are swept to make room; only a table full of sources
            // seen in the last refill period (2 / 50 s = 40 ms, 2,000 sources here)
            // refuses, and a source refused that way is not counted as a spell.
            assert_ne!(v, Verdict::Refuse { first: true });
        }
    }
}
