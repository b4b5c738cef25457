//! Live aggregates of decisions: a differential collection keyed by `(dimension, key)` whose
//! diff carries `(count, escalations, score sum in millionths)`; `count_total` keeps the
//! running totals in an arrangement and emits their changes, which go to global worker 0 and
//! update the [`AggregateView`](crate::state::AggregateView) the HTTP layer reads.
//!
//! **Dimensions.** `product`, `state`, `company`, `issue` (as in the complaint); `month` =
//! the month the CFPB *received* the complaint (`YYYY-MM`, a business time trend that is the
//! same however the stream is replayed); `hour` = the UTC hour in which the engine *decided*
//! (`YYYY-MM-DDTHH`, an operational view of the live stream; it depends on when the job ran).
//!
//! **Cost.** Each worker first sums its decisions per `(dimension, key)` and epoch, so the
//! differential collection sees one update per key and epoch (a few hundred), not six per
//! decision.
//!
//! **Memory.** The only trace is the one inside `count_total`, which advances its logical
//! and physical compaction to its input frontier every time it runs (differential 0.26,
//! `operators/count.rs`), so it holds one consolidated total per key, whatever the length of
//! the stream. No other trace handle is kept (an unadvanced handle would pin history).
//!
//! **Completeness.** The view is stamped `as_of = e` once the frontier of the total changes
//! at worker 0 has passed epoch `e`: every decision of epochs ≤ e on every worker and process
//! is counted, none of a later epoch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use complaintflow_operators::Decision;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{ProbeHandle, Stream};

use crate::state::{AggregateView, Dimension, EngineState, Totals};

/// `(count, escalations, score sum in millionths)`: the diff of the aggregate collection.
pub type Sums = (isize, isize, isize);

const MISSING: &str = "(missing)";

/// One epoch's partial sums on one worker.
#[derive(Default)]
struct EpochSums {
    text: [HashMap<String, Sums>; 4],
    hour: HashMap<i64, Sums>,
    month: HashMap<(i32, u32), Sums>,
}

fn add(s: &mut Sums, d: Sums) {
    s.0 += d.0;
    s.1 += d.1;
    s.2 += d.2;
}

fn add_text(m: &mut HashMap<String, Sums>, key: Option<&str>, d: Sums) {
    let key = key.unwrap_or(MISSING);
    match m.get_mut(key) {
        Some(s) => add(s, d),
        None => {
            m.insert(key.to_string(), d);
        }
    }
}

impl EpochSums {
    fn add(&mut self, d: &Decision) {
        use chrono::Datelike;
        let sums: Sums = (1, isize::from(d.escalate), (d.score * 1e6).round() as isize);
        let [product, state, company, issue] = &mut self.text;
        add_text(product, d.product.as_deref(), sums);
        add_text(state, d.state.as_deref(), sums);
        add_text(company, d.company.as_deref(), sums);
        add_text(issue, d.issue.as_deref(), sums);
        add(
            self.hour
                .entry(d.decided_ms.div_euclid(3_600_000))
                .or_default(),
            sums,
        );
        let month = (d.date_received.year(), d.date_received.month());
        add(self.month.entry(month).or_default(), sums);
    }

    fn drain(self) -> impl Iterator<Item = ((Dimension, String), Sums)> {
        let [product, state, company, issue] = self.text;
        let text = [
            (Dimension::Product, product),
            (Dimension::State, state),
            (Dimension::Company, company),
            (Dimension::Issue, issue),
        ]
        .into_iter()
        .flat_map(|(dim, m)| m.into_iter().map(move |(k, s)| ((dim, k), s)));
        let hour = self
            .hour
            .into_iter()
            .map(|(h, s)| ((Dimension::Hour, hour_key(h)), s));
        let month = self
            .month
            .into_iter()
            .map(|((y, m), s)| ((Dimension::Month, format!("{y:04}-{m:02}")), s));
        text.chain(hour).chain(month)
    }
}

/// The `hour` key of an hour number since the Unix epoch.
///
/// ```
/// assert_eq!(complaintflow_pipelines::aggregate::hour_key(491_000), "2026-01-05T08");
/// ```
pub fn hour_key(hours_since_epoch: i64) -> String {
    chrono::DateTime::from_timestamp(hours_since_epoch.saturating_mul(3600), 0).map_or_else(
        || "(unknown)".to_string(),
        |t| t.format("%Y-%m-%dT%H").to_string(),
    )
}

/// Builds the aggregates of `decisions` into `state.aggregates` (on global worker 0) and
/// attaches `probe` to the total changes.
pub fn aggregate_decisions<'s>(
    decisions: Stream<'s, u64, Vec<Decision>>,
    state: &Arc<EngineState>,
    probe: &ProbeHandle<u64>,
) {
    let partial = decisions.unary_frontier(Pipeline, "AggregatePartial", |_cap, _info| {
        let mut stash: BTreeMap<u64, (Capability<u64>, EpochSums)> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                let Some(t) = cap.least().copied() else {
                    return;
                };
                if !stash.contains_key(&t) {
                    let Some(c) = cap.retain_least(0) else { return };
                    stash.insert(t, (c, EpochSums::default()));
                }
                if let Some((_, sums)) = stash.get_mut(&t) {
                    for batch in data {
                        for d in batch.iter() {
                            sums.add(d);
                        }
                    }
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let t = *entry.key();
                let (cap, sums) = entry.remove();
                let mut session = output.session(&cap);
                for (key, s) in sums.drain() {
                    session.give((key, t, s));
                }
            }
        }
    });
    let totals = partial.as_collection().count_total();
    let state = Arc::clone(state);
    let mut multiset: HashMap<(Dimension, String), Vec<(Sums, isize)>> = HashMap::new();
    let mut dirty: HashSet<(Dimension, String)> = HashSet::new();
    let mut last_frontier: Option<u64> = Some(0);
    let mut max_seen: Option<u64> = None;
    totals.inner.probe_with(probe).sink(
        Exchange::new(|_: &_| 0u64),
        "AggregateView",
        move |(input, frontier)| {
            input.for_each_stamp(|_cap, data| {
                for batch in data {
                    for ((key, tot), t, diff) in batch.drain(..) {
                        max_seen = max_seen.max(Some(t));
                        let v = multiset.entry(key.clone()).or_default();
                        match v.iter_mut().find(|(x, _)| *x == tot) {
                            Some(e) => e.1 += diff,
                            None => v.push((tot, diff)),
                        }
                        v.retain(|(_, n)| *n != 0);
                        dirty.insert(key);
                    }
                }
            });
            let f = frontier.frontier().first().copied();
            if f == last_frontier {
                return;
            }
            last_frontier = f;
            let mut view = state.aggregates.write().unwrap_or_else(|p| p.into_inner());
            apply(&mut view, &mut multiset, &mut dirty);
            view.as_of = match f {
                Some(0) => None,
                Some(t) => Some(t - 1),
                None => max_seen.max(view.as_of),
            };
        },
    );
}

fn apply(
    view: &mut AggregateView,
    multiset: &mut HashMap<(Dimension, String), Vec<(Sums, isize)>>,
    dirty: &mut HashSet<(Dimension, String)>,
) {
    for key in dirty.drain() {
        let current = multiset
            .get(&key)
            .and_then(|v| v.iter().find(|(_, n)| *n > 0).map(|(s, _)| *s));
        let (dim, k) = key;
        match current {
            Some((n, e, s)) => {
                view.totals.entry(dim).or_default().insert(
                    k.clone(),
                    Totals {
                        count: n as i64,
                        escalations: e as i64,
                        score_sum_micro: s as i64,
                    },
                );
            }
            None => {
                if let Some(m) = view.totals.get_mut(&dim) {
                    m.remove(&k);
                }
                multiset.remove(&(dim, k));
            }
        }
    }
}
