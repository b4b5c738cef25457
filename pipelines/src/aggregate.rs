//! Live aggregates of decisions: a differential collection keyed by `(dimension, key)` whose
//! diff carries `(count, escalations, score sum in millionths)`; `count_total` keeps the
//! running totals in an arrangement and emits their changes, which go to global worker 0 and
//! update the [`AggregateView`](crate::state::AggregateView) the HTTP layer reads.
//!
//! **Dimensions.** `product`, `state`, `company`, `issue` (as in the complaint); `month` =
//! the month the CFPB *received* the complaint (`YYYY-MM`, a business time trend that is the
//! same however the stream is replayed); `hour` = the UTC hour in which the engine *decided*
//! (`YYYY-MM-DDTHH`, an operational view of the live stream; it depends on when the job ran);
//! `month_product` = month received × product, key `YYYY-MM|product` (the dashboard's volume
//! chart by product).
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
//! **Completeness.** Each worker turns the total changes of the keys it owns into
//! [`AggregateChange`]s (the new totals of a key after an epoch; the `complaints-aggregates`
//! topic's records) once the epoch is complete there. Global worker 0 applies them to the
//! view in epoch order and stamps it `as_of = e` once its input frontier has passed epoch
//! `e`: every decision of epochs ≤ e on every worker and process is counted, none of a later
//! epoch.
//!
//! **Checkpoints.** With checkpoints on, worker 0 also keeps an [`AggregateLedger`] (the
//! totals as of the last checkpoint plus the changes since), so a checkpoint of epoch `e`
//! stores exactly the totals at the end of `e`, in [`totals_to_json`]'s format — every
//! dimension of [`Dimension::ALL`] by name, so adding a dimension needs no change here. A
//! restart feeds them back in as [`Seed`]s at epoch `e`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::{Decision, Stash};
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Concat;
use timely::dataflow::Stream;

use crate::state::{AggregateView, Dimension, EngineState, Totals};

/// `(count, escalations, score sum in millionths)`: the diff of the aggregate collection.
pub type Sums = (isize, isize, isize);

/// The per-epoch, per-worker maps are keyed by short strings looked up several times per
/// record: a fast non-cryptographic hasher (foldhash) instead of SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const MISSING: &str = "(missing)";

/// One epoch's partial sums on one worker.
#[derive(Default)]
struct EpochSums {
    text: [HashMap<String, Sums>; 4],
    hour: HashMap<i64, Sums>,
    month: HashMap<(i32, u32), Sums>,
    /// `month_product`: month received → product → sums.
    month_product: HashMap<(i32, u32), HashMap<String, Sums>>,
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
        add_text(
            self.month_product.entry(month).or_default(),
            d.product.as_deref(),
            sums,
        );
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
        let month_product = self
            .month_product
            .into_iter()
            .flat_map(|((y, m), products)| {
                products.into_iter().map(move |(p, s)| {
                    let key = crate::state::month_product_key(&format!("{y:04}-{m:02}"), &p);
                    ((Dimension::MonthProduct, key), s)
                })
            });
        text.chain(hour).chain(month).chain(month_product)
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

/// The totals of one aggregate key after an epoch in which they changed: the records of the
/// `complaints-aggregates` topic (key [`AggregateChange::message_key`], so a compacted topic
/// keeps the latest totals of every key). A key that disappeared has all totals 0.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AggregateChange {
    /// The epoch whose end these totals describe.
    pub epoch: u64,
    /// The dimension.
    pub dimension: Dimension,
    /// The key (a product, a state, …).
    pub key: String,
    /// Decisions.
    pub count: i64,
    /// Escalated decisions.
    pub escalations: i64,
    /// Sum of scores in millionths.
    pub score_sum_micro: i64,
}

impl AggregateChange {
    /// The totals.
    pub fn totals(&self) -> Totals {
        Totals {
            count: self.count,
            escalations: self.escalations,
            score_sum_micro: self.score_sum_micro,
        }
    }

    /// The Kafka message key: `dimension|key`.
    ///
    /// ```
    /// use complaintflow_pipelines::{aggregate::AggregateChange, Dimension};
    /// let c = AggregateChange { epoch: 3, dimension: Dimension::State, key: "CA".into(),
    ///     count: 2, escalations: 1, score_sum_micro: 900_000 };
    /// assert_eq!(c.message_key(), "state|CA");
    /// ```
    pub fn message_key(&self) -> String {
        format!("{}|{}", self.dimension.as_str(), self.key)
    }
}

/// An update entering the aggregate collection directly: `((dimension, key), epoch, sums)`
/// (how a restart seeds the totals of its checkpoint).
pub type Seed = ((Dimension, String), u64, Sums);

/// Totals as of the last checkpoint plus the changes of later complete epochs, kept on global
/// worker 0 when checkpoints are on, so a checkpoint of epoch `e` stores exactly the totals
/// at the end of `e` even when the live view is already further.
#[derive(Debug, Default)]
pub struct AggregateLedger {
    enabled: bool,
    base: BTreeMap<(Dimension, String), Totals>,
    pending: BTreeMap<u64, Vec<AggregateChange>>,
    max_epoch: Option<u64>,
}

impl AggregateLedger {
    /// A ledger that records changes only when `enabled` (checkpoints on).
    pub fn new(enabled: bool) -> AggregateLedger {
        AggregateLedger {
            enabled,
            ..AggregateLedger::default()
        }
    }

    /// Notes that every epoch `<= epoch` is complete at the view.
    fn saw(&mut self, epoch: u64) {
        self.max_epoch = self.max_epoch.max(Some(epoch));
    }

    fn record(&mut self, epoch: u64, changes: Vec<AggregateChange>) {
        self.max_epoch = self.max_epoch.max(Some(epoch));
        if self.enabled && !changes.is_empty() {
            self.pending.entry(epoch).or_default().extend(changes);
        }
    }

    /// The highest epoch seen (complete at the view).
    pub fn max_epoch(&self) -> Option<u64> {
        self.max_epoch
    }

    /// The totals at the end of `epoch` (folds the changes of epochs `<= epoch` in; call
    /// with growing epochs, each complete at the view).
    pub fn totals_through(&mut self, epoch: u64) -> &BTreeMap<(Dimension, String), Totals> {
        let later = self.pending.split_off(&(epoch + 1));
        for (_, changes) in std::mem::replace(&mut self.pending, later) {
            for c in changes {
                if c.count == 0 && c.escalations == 0 && c.score_sum_micro == 0 {
                    self.base.remove(&(c.dimension, c.key));
                } else {
                    let t = c.totals();
                    self.base.insert((c.dimension, c.key), t);
                }
            }
        }
        &self.base
    }
}

/// The aggregate state of a checkpoint: `{dimension: {key: {count, escalations,
/// score_sum_micro}}}`, every dimension by its name — generic over [`Dimension::ALL`].
///
/// ```
/// use std::collections::BTreeMap;
/// use complaintflow_pipelines::{aggregate::{totals_from_json, totals_to_json}, Dimension, Totals};
/// let mut t = BTreeMap::new();
/// t.insert((Dimension::Product, "Mortgage".to_string()), Totals { count: 3, escalations: 1, score_sum_micro: 1_500_000 });
/// let json = totals_to_json(&t);
/// assert_eq!(json["product"]["Mortgage"]["count"], 3);
/// let (seeds, warnings) = totals_from_json(&json, 7).unwrap();
/// assert_eq!(seeds, vec![((Dimension::Product, "Mortgage".to_string()), 7, (3, 1, 1_500_000))]);
/// assert!(warnings.is_empty()); // every dimension is written, empty ones too
/// let mut old = json.clone();
/// old.as_object_mut().unwrap().remove("state");
/// old["no_such_dimension"] = serde_json::json!({});
/// let (_, warnings) = totals_from_json(&old, 7).unwrap();
/// assert_eq!(warnings.len(), 2); // unknown: skipped; missing: starts from zero
/// ```
pub fn totals_to_json(totals: &BTreeMap<(Dimension, String), Totals>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for d in Dimension::ALL {
        out.insert(
            d.as_str().to_string(),
            serde_json::Value::Object(Default::default()),
        );
    }
    for ((d, k), t) in totals {
        let entry = out
            .entry(d.as_str().to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(m) = entry {
            m.insert(
                k.clone(),
                serde_json::json!({
                    "count": t.count,
                    "escalations": t.escalations,
                    "score_sum_micro": t.score_sum_micro,
                }),
            );
        }
    }
    serde_json::Value::Object(out)
}

/// Reads [`totals_to_json`]'s format back as seeds at `epoch`, with warnings for dimensions
/// this build does not know (skipped) or that the state lacks (they restart from zero). An
/// error for anything else that does not fit.
pub fn totals_from_json(
    state: &serde_json::Value,
    epoch: u64,
) -> Result<(Vec<Seed>, Vec<String>), String> {
    let serde_json::Value::Object(dims) = state else {
        return Err("the aggregate state is not a JSON object".into());
    };
    let mut seeds = Vec::new();
    let mut warnings = Vec::new();
    for (name, keys) in dims {
        let Ok(dim) = name.parse::<Dimension>() else {
            warnings.push(format!(
                "dimension {name:?} of the checkpoint is unknown to this build: skipped"
            ));
            continue;
        };
        let keys: BTreeMap<String, Totals> =
            serde_json::from_value(keys.clone()).map_err(|e| format!("dimension {name}: {e}"))?;
        for (k, t) in keys {
            let sums = (
                isize::try_from(t.count).map_err(|e| format!("{name}/{k}: {e}"))?,
                isize::try_from(t.escalations).map_err(|e| format!("{name}/{k}: {e}"))?,
                isize::try_from(t.score_sum_micro).map_err(|e| format!("{name}/{k}: {e}"))?,
            );
            if sums != (0, 0, 0) {
                seeds.push(((dim, k), epoch, sums));
            }
        }
    }
    for d in Dimension::ALL {
        if !dims.contains_key(d.as_str()) {
            warnings.push(format!(
                "dimension {} is not in the checkpoint: it counts only records after epoch {epoch}",
                d.as_str()
            ));
        }
    }
    Ok((seeds, warnings))
}

/// Builds the aggregates of `decisions` (plus `seed` updates, e.g. a checkpoint's totals)
/// into `state.aggregates` on global worker 0 and records the changes of complete epochs in
/// `ledger` there. Returns the stream of [`AggregateChange`]s (data-parallel: each worker
/// emits those of the keys it owns) and the acknowledgement stream, whose frontier passes an
/// epoch once the view and the ledger hold every change of it.
pub fn aggregate_decisions<'s>(
    decisions: Stream<'s, u64, Vec<SharedDecision>>,
    seed: Option<Stream<'s, u64, Vec<Seed>>>,
    state: &Arc<EngineState>,
    ledger: &Rc<RefCell<AggregateLedger>>,
) -> (
    Stream<'s, u64, Vec<AggregateChange>>,
    Stream<'s, u64, Vec<u64>>,
) {
    let partial = decisions.unary_frontier(Pipeline, "AggregatePartial", |_cap, _info| {
        let mut stash: Stash<u64, EpochSums> = Stash::new(&[0]);
        move |(input, frontier), output| {
            input.for_each_stamp(|cap, data| {
                if let Some(sums) = stash.at(&cap) {
                    for batch in data {
                        for d in batch.iter() {
                            sums.add(&d.decision);
                        }
                    }
                }
            });
            while let Some((t, caps, sums)) = stash.pop_complete(frontier.frontier()) {
                let Some(cap) = caps.first() else { continue };
                let mut session = output.session(cap);
                for (key, s) in sums.drain() {
                    session.give((key, t, s));
                }
            }
        }
    });
    let partial = match seed {
        Some(s) => partial.concat(s),
        None => partial,
    };
    let totals = partial.as_collection().count_total();
    // Per worker: the new totals of each key whose totals changed in a complete epoch.
    type Updates = HashMap<(Dimension, String), Vec<(Sums, isize)>>;
    let changes = totals
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<AggregateChange>>, _, _, _>(
            Pipeline,
            "AggregateChanges",
            |_cap, _info| {
                let mut stash: Stash<u64, Updates> = Stash::new(&[0]);
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        for batch in data {
                            // A differential batch's capability is only a lower bound: each
                            // update carries its own time.
                            for ((key, tot), t, diff) in batch.drain(..) {
                                let Some(updates) = stash.at_time(&cap, t) else {
                                    continue;
                                };
                                let v = updates.entry(key).or_default();
                                match v.iter_mut().find(|(x, _)| *x == tot) {
                                    Some(e) => e.1 += diff,
                                    None => v.push((tot, diff)),
                                }
                            }
                        }
                    });
                    while let Some((t, caps, updates)) = stash.pop_complete(frontier.frontier()) {
                        let Some(cap) = caps.first() else { continue };
                        let mut session = output.session(cap);
                        for ((dimension, key), v) in updates {
                            let now = v.iter().find(|(_, n)| *n > 0).map(|(s, _)| *s);
                            let removed = v.iter().any(|(_, n)| *n < 0);
                            if now.is_none() && !removed {
                                continue; // added and removed within the epoch: no change
                            }
                            let (count, escalations, score) = now.unwrap_or((0, 0, 0));
                            session.give(AggregateChange {
                                epoch: t,
                                dimension,
                                key,
                                count: count as i64,
                                escalations: escalations as i64,
                                score_sum_micro: score as i64,
                            });
                        }
                    }
                }
            },
        );
    // Global worker 0: the live view, stamped as of the last complete epoch, and the ledger.
    let state = Arc::clone(state);
    let ledger = Rc::clone(ledger);
    // Only global worker 0 owns the view: the other workers' instances of this operator
    // receive nothing, and must not stamp `as_of` from their own (lagging) frontiers.
    let owner = changes.scope().index() == 0;
    let ack = changes
        .clone()
        .unary_frontier::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
            Exchange::new(|_: &AggregateChange| 0u64),
            "AggregateView",
            move |_cap, _info| {
                // Changes wait for their epoch to complete, holding its capability: the
                // acknowledgement passes an epoch only once it is applied.
                let mut stash: Stash<u64, Vec<AggregateChange>> = Stash::new(&[0]);
                let mut last_frontier: Option<u64> = Some(0);
                move |(input, frontier), _output| {
                    input.for_each_stamp(|cap, data| {
                        if let Some(v) = stash.at(&cap) {
                            for batch in data {
                                v.append(batch);
                            }
                        }
                    });
                    let f = frontier.frontier().first().copied();
                    if f == last_frontier {
                        return;
                    }
                    last_frontier = f;
                    if !owner {
                        return; // receives nothing (exchanged to worker 0)
                    }
                    let mut view = state.aggregates.write().unwrap_or_else(|p| p.into_inner());
                    let mut ledger = ledger.borrow_mut();
                    while let Some((t, _caps, changes)) = stash.pop_complete(frontier.frontier()) {
                        apply(&mut view, &changes);
                        ledger.record(t, changes);
                    }
                    if let Some(t) = f {
                        ledger.saw(t.saturating_sub(1));
                    }
                    view.as_of = match f {
                        Some(0) => None,
                        Some(t) => Some(t - 1),
                        None => ledger.max_epoch().max(view.as_of),
                    };
                }
            },
        );
    (changes, ack)
}

fn apply(view: &mut AggregateView, changes: &[AggregateChange]) {
    for c in changes {
        if c.count == 0 && c.escalations == 0 && c.score_sum_micro == 0 {
            if let Some(m) = view.totals.get_mut(&c.dimension) {
                m.remove(&c.key);
            }
        } else {
            view.totals
                .entry(c.dimension)
                .or_default()
                .insert(c.key.clone(), c.totals());
        }
    }
}
