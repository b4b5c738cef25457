//! Replay at a controlled rate, and resampling real complaints for load generation.
//!
//! [`Paced`] (via [`ReplayExt::paced`]) yields the items of an iterator no faster than a
//! [`Rate`]; time comes from a [`Clock`], so tests use a [`ManualClock`] and never sleep.
//! [`Resampler`] draws copies of real complaints with fresh ids from
//! [`RESAMPLED_ID_BASE`] upwards, so generated load can never be mistaken for real records.
//!
//! ```
//! use std::time::Duration;
//! use complaintflow_datasets::replay::{ManualClock, Rate, ReplayExt};
//! let clock = ManualClock::new();
//! let rate: Rate = "600/min".parse().unwrap(); // 10 per second
//! let n = (0..21).paced_with(rate, clock.clone()).count();
//! assert_eq!(n, 21);
//! // the 21st item is due 2 s after the first
//! assert_eq!(clock.now(), Duration::from_secs(2));
//! ```

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::schema::{Complaint, ComplaintId};

/// A target rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rate {
    /// As fast as possible.
    Unlimited,
    /// At most this many items per second (> 0).
    PerSecond(f64),
}

impl Rate {
    /// Items per second (`None` for unlimited).
    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(r) => Some(r),
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    /// `unlimited` (or `max`, `0`), `N/s`, `N/sec`, `N/min`, `N/h`, or a bare `N` (per second).
    fn from_str(s: &str) -> Result<Rate, String> {
        let t = s.trim().to_ascii_lowercase();
        if matches!(t.as_str(), "unlimited" | "max" | "inf" | "0") {
            return Ok(Rate::Unlimited);
        }
        let (num, unit) = t.split_once('/').unwrap_or((t.as_str(), "s"));
        let n: f64 = num
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("rate {s:?}: {num:?} is not a number"))?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hr" | "hour" => 3600.0,
            u => return Err(format!("rate {s:?}: unknown unit {u:?} (use s, min or h)")),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("rate {s:?} must be positive (or `unlimited`)"));
        }
        Ok(Rate::PerSecond(n / secs))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::PerSecond(r) => write!(f, "{r}/s"),
        }
    }
}

/// A source of time for [`Paced`].
pub trait Clock {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    /// Waits for `d`.
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// A test clock: `sleep` advances it instantly; clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Current time.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        ManualClock::now(self)
    }
    fn sleep(&self, d: Duration) {
        self.advance(d)
    }
}

/// An iterator yielding its inner items no faster than a [`Rate`]: item `k` (0-based) is not
/// released before `start + k / rate`. If the consumer falls behind, items are released at
/// once until it catches up (no burst limit beyond the schedule).
pub struct Paced<I, C> {
    inner: I,
    rate: Rate,
    clock: C,
    start: Option<Duration>,
    emitted: u64,
}

impl<I: Iterator, C: Clock> Iterator for Paced<I, C> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        if let Rate::PerSecond(r) = self.rate {
            let now = self.clock.now();
            let start = *self.start.get_or_insert(now);
            let due = start + Duration::from_secs_f64(self.emitted as f64 / r);
            if due > now {
                self.clock.sleep(due - now);
            }
        }
        self.emitted += 1;
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// Adds pacing to every iterator.
pub trait ReplayExt: Iterator + Sized {
    /// Paces with the real clock.
    fn paced(self, rate: Rate) -> Paced<Self, SystemClock> {
        self.paced_with(rate, SystemClock::default())
    }
    /// Paces with the given clock.
    fn paced_with<C: Clock>(self, rate: Rate, clock: C) -> Paced<Self, C> {
        Paced {
            inner: self,
            rate,
            clock,
            start: None,
            emitted: 0,
        }
    }
}

impl<I: Iterator> ReplayExt for I {}

/// The first complaint id given to resampled (generated) complaints. Real CFPB ids are below
/// 20 million (2025); ids from 900,000,000,000 up are resampled copies, never real records.
pub const RESAMPLED_ID_BASE: u64 = 900_000_000_000;

/// True for ids handed out by a [`Resampler`].
pub fn is_resampled(id: ComplaintId) -> bool {
    id.0 >= RESAMPLED_ID_BASE
}

/// An endless stream of copies of real complaints, drawn uniformly with replacement by a
/// seeded SplitMix64 generator (the same seed gives the same sequence everywhere), each with a
/// fresh id `RESAMPLED_ID_BASE + k`. All other fields are the real record's.
#[derive(Clone, Debug)]
pub struct Resampler {
    pool: Vec<Complaint>,
    state: u64,
    next_id: u64,
}

impl Resampler {
    /// A resampler over `pool`; an error if the pool is empty.
    pub fn new(pool: Vec<Complaint>, seed: u64) -> Result<Resampler, DatasetError> {
        if pool.is_empty() {
            return Err(DatasetError::Config(
                "cannot resample from an empty set of complaints".into(),
            ));
        }
        Ok(Resampler {
            pool,
            state: seed,
            next_id: RESAMPLED_ID_BASE,
        })
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64 (Steele, Lea & Flood 2014).
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Iterator for Resampler {
    type Item = Complaint;
    fn next(&mut self) -> Option<Complaint> {
        let len = self.pool.len() as u64;
        let i = (self.next_u64() % len) as usize;
        let mut c = self.pool.get(i)?.clone();
        c.complaint_id = ComplaintId(self.next_id);
        self.next_id += 1;
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn rates_parse() {
        assert_eq!(
            "10000/min".parse::<Rate>(),
            Ok(Rate::PerSecond(10000.0 / 60.0))
        );
        assert_eq!("500/s".parse::<Rate>(), Ok(Rate::PerSecond(500.0)));
        assert_eq!("7200/h".parse::<Rate>(), Ok(Rate::PerSecond(2.0)));
        assert_eq!("250".parse::<Rate>(), Ok(Rate::PerSecond(250.0)));
        assert_eq!("unlimited".parse::<Rate>(), Ok(Rate::Unlimited));
        assert!("-3/s".parse::<Rate>().is_err());
        assert!("3/fortnight".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn pacing_follows_the_schedule_and_catches_up() {
        let clock = ManualClock::new();
        let mut it = (0..100).paced_with(Rate::PerSecond(4.0), clock.clone());
        assert_eq!(it.next(), Some(0));
        assert_eq!(clock.now(), Duration::ZERO);
        assert_eq!(it.next(), Some(1));
        assert_eq!(clock.now(), Duration::from_millis(250));
        // consumer stalls for 1 s (now 1.25 s): items 2..=5 (due 0.5, 0.75, 1.0, 1.25 s) are
        // released at once, item 6 waits until 1.5 s
        clock.advance(Duration::from_secs(1));
        let t = clock.now();
        for _ in 0..4 {
            it.next();
        }
        assert_eq!(clock.now(), t);
        assert_eq!(it.next(), Some(6));
        assert_eq!(clock.now(), Duration::from_millis(1500));
        // unlimited never waits
        let c2 = ManualClock::new();
        assert_eq!(
            (0..1000).paced_with(Rate::Unlimited, c2.clone()).count(),
            1000
        );
        assert_eq!(c2.now(), Duration::ZERO);
    }

    #[test]
    fn resampler_is_seeded_and_marks_ids() {
        let d = NaiveDate::from_ymd_opt(2019, 1, 1).unwrap();
        let pool: Vec<Complaint> = (1..=5u64)
            .map(|i| Complaint::minimal(i, d + chrono::Days::new(i)))
            .collect();
        let a: Vec<Complaint> = Resampler::new(pool.clone(), 7).unwrap().take(50).collect();
        let b: Vec<Complaint> = Resampler::new(pool.clone(), 7).unwrap().take(50).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|c| is_resampled(c.complaint_id)));
        assert_eq!(a[0].complaint_id.0, RESAMPLED_ID_BASE);
        assert_eq!(a[49].complaint_id.0, RESAMPLED_ID_BASE + 49);
        assert!(pool.iter().all(|c| !is_resampled(c.complaint_id)));
        // every pool record is drawn at some point in 50 draws from 5
        for p in &pool {
            assert!(a.iter().any(|c| c.date_received == p.date_received));
        }
        assert!(Resampler::new(Vec::new(), 1).is_err());
    }
}
