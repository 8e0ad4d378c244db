//! Rate limits for output the guest controls: a driver can hit a bad
//! register, write the MAC or send control commands millions of times a
//! second, and each of those must not become a log line (or an event-log
//! line, written and flushed under the device lock).
//!
//! A [`RateLimiter`] belongs to one source (a transport, a device) and keeps
//! a token bucket per kind of message: a burst of `burst` messages, then one
//! per `refill`. Suppressed messages are counted, and the next message let
//! through reports the count first (the `limited!` macro for log lines;
//! the net device writes an `events_suppressed` entry to its event log).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Messages of one kind let through at once before the limit applies.
pub const DEFAULT_BURST: u32 = 10;
/// Time for one more message of a kind once the burst is spent.
pub const DEFAULT_REFILL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Bucket {
    kind: &'static str,
    tokens: u32,
    last: Instant,
    suppressed: u64,
}

/// Token buckets per message kind for one source.
#[derive(Debug)]
pub struct RateLimiter {
    source: String,
    burst: u32,
    refill: Duration,
    // A handful of kinds per source, all `&'static str` from the code, so
    // a short list is enough and cannot grow with guest input.
    buckets: Mutex<Vec<Bucket>>,
    total_suppressed: Mutex<u64>,
}

impl RateLimiter {
    /// A limiter for `source` (named in the suppression notices) with
    /// [`DEFAULT_BURST`] and [`DEFAULT_REFILL`].
    pub fn new(source: impl Into<String>) -> Self {
        Self::with_rate(source, DEFAULT_BURST, DEFAULT_REFILL)
    }

    /// A limiter letting `burst` messages of a kind through at once, then
    /// one per `refill`.
    pub fn with_rate(source: impl Into<String>, burst: u32, refill: Duration) -> Self {
        Self {
            source: source.into(),
            burst: burst.max(1),
            refill: refill.max(Duration::from_nanos(1)),
            buckets: Mutex::new(Vec::new()),
            total_suppressed: Mutex::new(0),
        }
    }

    /// The source the limiter speaks for.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a message of `kind` may go out now: `Some(n)` if it may,
    /// with `n` messages of that kind suppressed since the last one let
    /// through (report them first); `None` if it is suppressed.
    pub fn admit(&self, kind: &'static str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    /// [`admit`](Self::admit) at time `now` (for tests).
    pub fn admit_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut buckets = lock(&self.buckets);
        let i = match buckets.iter().position(|b| b.kind == kind) {
            Some(i) => i,
            None => {
                buckets.push(Bucket {
                    kind,
                    tokens: self.burst,
                    last: now,
                    suppressed: 0,
                });
                buckets.len() - 1
            }
        };
        let b = &mut buckets[i];
        let elapsed = now.saturating_duration_since(b.last);
        let earned = elapsed.as_nanos() / self.refill.as_nanos();
        if earned > 0 {
            b.tokens = u32::try_from(u128::from(b.tokens) + earned)
                .unwrap_or(u32::MAX)
                .min(self.burst);
            // Keep the fraction of a period already elapsed.
            b.last = if b.tokens == self.burst {
                now
            } else {
                b.last + self.refill * u32::try_from(earned).unwrap_or(u32::MAX)
            };
        }
        if b.tokens == 0 {
            b.suppressed += 1;
            *lock(&self.total_suppressed) += 1;
            return None;
        }
        b.tokens -= 1;
        Some(std::mem::take(&mut b.suppressed))
    }

    /// For a log line of `kind` at `level`: whether to write it. When it
    /// may go out after others were suppressed, the suppression notice is
    /// logged first.
    pub fn allow_log(&self, kind: &'static str, level: log::Level) -> bool {
        match self.admit(kind) {
            None => false,
            Some(0) => true,
            Some(n) => {
                log::log!(
                    level,
                    "{}: {n} more `{kind}` messages were suppressed (rate limit)",
                    self.source
                );
                true
            }
        }
    }

    /// Messages suppressed so far, of every kind.
    pub fn suppressed(&self) -> u64 {
        *lock(&self.total_suppressed)
    }
}

/// Logs through a [`RateLimiter`]: `limited!(limiter, "kind", Level::Warn,
/// "format", args...)` writes the line unless messages of that kind from
/// that source are over their rate; a line after suppressed ones is
/// preceded by the count.
macro_rules! limited {
    ($limiter:expr, $kind:expr, $level:expr, $($arg:tt)+) => {
        if $limiter.allow_log($kind, $level) {
            log::log!($level, $($arg)+);
        }
    };
}
pub(crate) use limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_period_with_the_count_reported() {
        let l = RateLimiter::with_rate("dev", 3, Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for _ in 0..3 {
            assert_eq!(l.admit_at("bad_write", at(0)), Some(0));
        }
        for _ in 0..100 {
            assert_eq!(l.admit_at("bad_write", at(10)), None);
        }
        // Other kinds have their own bucket.
        assert_eq!(l.admit_at("bad_read", at(10)), Some(0));
        // Not a whole period yet.
        assert_eq!(l.admit_at("bad_write", at(999)), None);
        // One token back after a period: the 101 suppressed are reported.
        assert_eq!(l.admit_at("bad_write", at(1000)), Some(101));
        assert_eq!(l.admit_at("bad_write", at(1001)), None);
        // Two periods later, two tokens (at most `burst`).
        assert_eq!(l.admit_at("bad_write", at(3000)), Some(1));
        assert_eq!(l.admit_at("bad_write", at(3000)), Some(0));
        assert_eq!(l.admit_at("bad_write", at(3000)), None);
        assert_eq!(l.admit_at("bad_write", at(60_000)), Some(1));
        assert_eq!(l.admit_at("bad_write", at(60_000)), Some(0));
        assert_eq!(l.admit_at("bad_write", at(60_000)), Some(0));
        assert_eq!(l.admit_at("bad_write", at(60_000)), None);
        assert_eq!(l.suppressed(), 104);
    }

    #[test]
    fn sustained_spam_is_bounded_by_the_rate() {
        let l = RateLimiter::with_rate("dev", 10, Duration::from_millis(100));
        let t0 = Instant::now();
        // A million messages over ten seconds.
        let passed = (0..1_000_000u64)
            .filter(|i| {
                l.admit_at("spam", t0 + Duration::from_micros(i * 10))
                    .is_some()
            })
            .count();
        assert_eq!(passed, 10 + 99, "the burst, then one per 100 ms");
    }
}
