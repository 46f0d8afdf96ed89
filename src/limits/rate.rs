//! A per-caller token bucket, node-local (no raft traffic): each caller may
//! make `burst` queries at once and `rate` per second after that. Time comes
//! from the caller so tests drive it with a fake clock.
//!
//! Memory is bounded: buckets that have refilled completely carry no state
//! worth keeping and are dropped, and the map never holds more than
//! `max_callers` entries (when full of busy callers, a new caller evicts the
//! one seen longest ago, which errs towards serving, never towards growth).

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: the most queries granted at once.
    pub burst: u32,
    /// Most callers tracked at once.
    pub max_callers: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateConfig,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(cfg: RateConfig) -> RateLimiter {
        RateLimiter {
            cfg,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `caller` at `now`; when none is left, how long
    /// until one is.
    pub fn acquire(&mut self, caller: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.cfg.burst);
        if !self.buckets.contains_key(caller) {
            self.make_room(now);
        }
        let rate = self.cfg.per_second;
        let b = self.buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        // A clock that went backwards adds nothing.
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now.max(b.at);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - b.tokens;
            Err(Duration::from_secs_f64(missing / rate).max(Duration::from_millis(1)))
        }
    }

    /// Callers currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn full_at(&self, b: &Bucket) -> Instant {
        let missing = (f64::from(self.cfg.burst) - b.tokens).max(0.0);
        b.at + Duration::from_secs_f64(missing / self.cfg.per_second)
    }

    /// Before adding a caller to a full map: drop every bucket that has
    /// refilled (forgetting it changes no answer), and if none has, the one
    /// untouched longest.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.cfg.max_callers {
            return;
        }
        let refilled: Vec<String> = self
            .buckets
            .iter()
            .filter(|(_, b)| self.full_at(b) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &refilled {
            self.buckets.remove(k);
        }
        if self.buckets.len() >= self.cfg.max_callers {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limiter(per_second: f64, burst: u32, max_callers: usize) -> RateLimiter {
        RateLimiter::new(RateConfig {
            per_second,
            burst,
            max_callers,
        })
    }

    #[test]
    fn burst_then_refusal_with_the_wait_then_served_again() {
        let mut l = limiter(2.0, 3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.acquire("a", t0), Ok(()));
        }
        let wait = l.acquire("a", t0).expect_err("bucket empty");
        assert_eq!(wait, Duration::from_millis(500));
        // Another caller has its own bucket.
        assert_eq!(l.acquire("b", t0), Ok(()));
        assert!(l.acquire("a", t0 + wait / 2).is_err());
        assert_eq!(l.acquire("a", t0 + wait), Ok(()));
        assert!(l.acquire("a", t0 + wait).is_err());
    }

    #[test]
    fn the_map_never_exceeds_its_cap() {
        let mut l = limiter(1.0, 2, 4);
        let t0 = Instant::now();
        for i in 0..100 {
            let _ = l.acquire(&format!("caller-{i}"), t0 + Duration::from_millis(i));
            assert!(l.tracked() <= 4);
        }
        // After every bucket refilled, a newcomer clears them all out.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(l.acquire("new", later), Ok(()));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn evicting_a_refilled_caller_changes_nothing_for_it() {
        let mut l = limiter(1.0, 1, 1);
        let t0 = Instant::now();
        assert_eq!(l.acquire("a", t0), Ok(()));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.acquire("b", t1), Ok(()));
        assert_eq!(l.acquire("a", t1 + Duration::from_secs(1)), Ok(()));
    }

    proptest! {
        /// Over any window [s, e] of a run, a caller is granted at most
        /// burst + rate * (e - s) queries: the bucket holds at most burst
        /// at s and earns rate per second after.
        #[test]
        fn grants_never_exceed_burst_plus_rate_times_window(
            per_second in 0.5f64..50.0,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0u64..400, 1..200),
        ) {
            let mut l = limiter(per_second, burst, 8);
            let t0 = Instant::now();
            let mut at = 0u64;
            let mut granted = Vec::new();
            for gap in gaps {
                at += gap;
                if l.acquire("x", t0 + Duration::from_millis(at)).is_ok() {
                    granted.push(at);
                }
            }
            for (i, &s) in granted.iter().enumerate() {
                for (j, &e) in granted.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as f64;
                    let bound = f64::from(burst) + per_second * (e - s) as f64 / 1000.0;
                    prop_assert!(n <= bound + 1e-6, "{n} grants in [{s}, {e}] ms; bound {bound}");
                }
            }
        }
    }
}
