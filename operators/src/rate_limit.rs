//! `rate_limit`: hold a stream back to a target rate without blocking the worker.
//!
//! Records wait in the operator (which keeps a capability for their time) and are released
//! when due; the operator then asks to be re-scheduled when the next record is due. Each
//! worker gets an equal share of the rate. Time comes from a
//! [`Clock`](complaintflow_datasets::replay::Clock), so tests can use a `ManualClock`.
//!
//! ```
//! use complaintflow_operators::rate_limit::RateLimit;
//! use complaintflow_datasets::replay::Rate;
//! use timely::dataflow::operators::{ToStream, Capture};
//! use timely::dataflow::operators::capture::Extract;
//! let start = std::time::Instant::now();
//! let out = timely::example(|scope| {
//!     (0..20u32).to_stream(scope).container::<Vec<_>>().rate_limit(Rate::PerSecond(200.0)).capture()
//! });
//! let got: Vec<u32> = out.extract().into_iter().flat_map(|(_, v)| v).collect();
//! assert_eq!(got, (0..20).collect::<Vec<_>>());          // nothing lost, order kept
//! assert!(start.elapsed() >= std::time::Duration::from_millis(90)); // 20 records at 200/s
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use complaintflow_datasets::replay::{Clock, Rate, SystemClock};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

/// Paces releases to a rate on a [`Clock`]: how many records may go now, and how long to
/// wait when none may. Unused credit is capped at 100 ms worth of records (at least one), so
/// an idle period is not followed by an unbounded burst.
///
/// ```
/// use std::time::Duration;
/// use complaintflow_datasets::replay::ManualClock;
/// use complaintflow_operators::rate_limit::Pacer;
/// let clock = ManualClock::new();
/// let mut p = Pacer::new(Some(100.0), clock.clone());
/// assert_eq!(p.allowed(), (1, None)); // the first record is due at once
/// p.consumed(1);
/// assert_eq!(p.allowed(), (0, Some(Duration::from_millis(10))));
/// clock.advance(Duration::from_millis(50));
/// assert_eq!(p.allowed().0, 5);
/// clock.advance(Duration::from_secs(60)); // idle: credit capped at 100 ms = 10 records
/// assert_eq!(p.allowed().0, 10);
/// ```
#[derive(Debug)]
pub struct Pacer<C> {
    clock: C,
    per_second: Option<f64>,
    start: Option<Duration>,
    scheduled: u64,
}

impl<C: Clock> Pacer<C> {
    /// A pacer at `per_second` (`None` or a non-positive rate: unlimited).
    pub fn new(per_second: Option<f64>, clock: C) -> Self {
        let per_second = per_second.filter(|r| r.is_finite() && *r > 0.0);
        Pacer {
            clock,
            per_second,
            start: None,
            scheduled: 0,
        }
    }

    /// Records that may be released now (`u64::MAX` when unlimited) and, when none may, the
    /// wait until the next one is due.
    pub fn allowed(&mut self) -> (u64, Option<Duration>) {
        let Some(r) = self.per_second else {
            return (u64::MAX, None);
        };
        let now = self.clock.now();
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_sub(start).as_secs_f64();
        let due = (elapsed * r).floor() as u64 + 1;
        let credit = ((r * 0.1).ceil() as u64).max(1);
        if due > self.scheduled + credit {
            self.scheduled = due - credit;
        }
        let n = due.saturating_sub(self.scheduled);
        if n > 0 {
            (n, None)
        } else {
            let wait = (self.scheduled as f64 / r - elapsed).max(0.0);
            (
                0,
                Some(Duration::from_secs_f64(wait).max(Duration::from_micros(100))),
            )
        }
    }

    /// Records `n` releases.
    pub fn consumed(&mut self, n: u64) {
        self.scheduled = self.scheduled.saturating_add(n);
    }

    /// The clock's time.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Whether a rate is set.
    pub fn is_limited(&self) -> bool {
        self.per_second.is_some()
    }
}

/// `rate_limit`: release at most `rate` records per second (over all workers).
pub trait RateLimit<'s, T: Timestamp + TotalOrder, D> {
    /// Paces with the system clock. See the [module example](self).
    fn rate_limit(self, rate: Rate) -> Stream<'s, T, Vec<D>>;
    /// Paces with `clock` (e.g. a `ManualClock` in tests).
    fn rate_limit_with<C: Clock + 'static>(self, rate: Rate, clock: C) -> Stream<'s, T, Vec<D>>;
}

impl<'s, T: Timestamp + TotalOrder, D: Clone + 'static> RateLimit<'s, T, D>
    for Stream<'s, T, Vec<D>>
{
    fn rate_limit(self, rate: Rate) -> Stream<'s, T, Vec<D>> {
        self.rate_limit_with(rate, SystemClock::default())
    }

    fn rate_limit_with<C: Clock + 'static>(self, rate: Rate, clock: C) -> Stream<'s, T, Vec<D>> {
        let Some(total) = rate.per_second() else {
            return self;
        };
        let scope = self.scope();
        let per_worker = total / scope.peers().max(1) as f64;
        self.unary(Pipeline, "RateLimit", move |_cap, info| {
            let activator = scope.activator_for(info.address);
            let mut queue: VecDeque<(Capability<T>, VecDeque<D>)> = VecDeque::new();
            let mut pacer = Pacer::new(Some(per_worker), clock);
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(c) = cap.retain_least(0) else { return };
                    let mut recs = VecDeque::new();
                    for batch in data {
                        recs.extend(batch.drain(..));
                    }
                    queue.push_back((c, recs));
                });
                if queue.is_empty() {
                    return;
                }
                let (mut n, _) = pacer.allowed();
                while n > 0 {
                    let Some((cap, recs)) = queue.front_mut() else {
                        break;
                    };
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(recs.len());
                    if take > 0 {
                        let mut session = output.session(&*cap);
                        for d in recs.drain(..take) {
                            session.give(d);
                        }
                    }
                    n -= take as u64;
                    pacer.consumed(take as u64);
                    if recs.is_empty() {
                        queue.pop_front();
                    }
                }
                if !queue.is_empty() {
                    match pacer.allowed() {
                        (0, Some(w)) => activator.activate_after(w),
                        _ => activator.activate(),
                    }
                }
            }
        })
    }
}
