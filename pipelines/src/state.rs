//! The engine's live state, shared with the HTTP layer: aggregates (complete as of an epoch),
//! recent decisions, counters, epoch latencies, serving models.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use complaintflow_operators::Decision;
use serde::{Deserialize, Serialize};

/// An aggregate dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// CFPB product.
    Product,
    /// Two-letter state.
    State,
    /// Company.
    Company,
    /// CFPB issue.
    Issue,
    /// Processing hour (UTC, `YYYY-MM-DDTHH`) of the decision.
    Hour,
    /// Month the CFPB received the complaint (`YYYY-MM`).
    Month,
    /// Month received × product: key `YYYY-MM|product` (see [`month_product_key`]), for the
    /// dashboard's volume-over-time chart by product.
    MonthProduct,
}

impl Dimension {
    /// All dimensions.
    pub const ALL: [Dimension; 7] = [
        Dimension::Product,
        Dimension::State,
        Dimension::Company,
        Dimension::Issue,
        Dimension::Hour,
        Dimension::Month,
        Dimension::MonthProduct,
    ];

    /// Lower-case name (`product`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Product => "product",
            Dimension::State => "state",
            Dimension::Company => "company",
            Dimension::Issue => "issue",
            Dimension::Hour => "hour",
            Dimension::Month => "month",
            Dimension::MonthProduct => "month_product",
        }
    }

    /// The dimension's key of a decision (`(missing)` when absent).
    pub fn key_of(self, d: &Decision) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(missing)".to_string());
        match self {
            Dimension::Product => opt(&d.product),
            Dimension::State => opt(&d.state),
            Dimension::Company => opt(&d.company),
            Dimension::Issue => opt(&d.issue),
            Dimension::Hour => chrono::DateTime::from_timestamp_millis(d.decided_ms).map_or_else(
                || "(unknown)".to_string(),
                |t| t.format("%Y-%m-%dT%H").to_string(),
            ),
            Dimension::Month => d.date_received.format("%Y-%m").to_string(),
            Dimension::MonthProduct => month_product_key(
                &d.date_received.format("%Y-%m").to_string(),
                d.product.as_deref().unwrap_or("(missing)"),
            ),
        }
    }
}

/// The [`Dimension::MonthProduct`] key: `YYYY-MM|product`. The month never holds a `|`, so
/// [`split_month_product`] splits at the first one even when a product name holds one.
///
/// ```
/// use complaintflow_pipelines::state::{month_product_key, split_month_product};
/// let k = month_product_key("2019-09", "Debt collection");
/// assert_eq!(k, "2019-09|Debt collection");
/// assert_eq!(split_month_product(&k), Some(("2019-09", "Debt collection")));
/// ```
pub fn month_product_key(month: &str, product: &str) -> String {
    format!("{month}|{product}")
}

/// Splits a [`Dimension::MonthProduct`] key into month and product.
pub fn split_month_product(key: &str) -> Option<(&str, &str)> {
    key.split_once('|')
}

/// Bucket upper bounds (seconds, inclusive) of [`EngineState::epoch_latency_hist`], the
/// Prometheus-style cumulative epoch-latency histogram.
pub const EPOCH_LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Number of score bins of [`ScoreStats`]: ten equal-width bins over `[0, 1]`.
pub const SCORE_BINS: usize = 10;

/// A histogram with fixed bucket upper bounds, cumulative since start: `counts[i]` counts
/// observations `v` with `bounds[i-1] < v <= bounds[i]`, the last entry those above the
/// highest bound (and NaN). Counts are per bucket, not cumulative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bucket upper bounds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket, `bounds.len() + 1` entries.
    pub counts: Vec<u64>,
    /// Sum of the finite observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram with these bounds.
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Records one observation.
    ///
    /// ```
    /// use complaintflow_pipelines::state::Histogram;
    /// let mut h = Histogram::new(&[1.0, 2.0]);
    /// for v in [0.5, 1.0, 1.5, 3.0] { h.observe(v); }
    /// assert_eq!(h.counts, vec![2, 1, 1]);
    /// assert_eq!(h.sum, 6.0);
    /// ```
    pub fn observe(&mut self, v: f64) {
        let i = bucket(&self.bounds, v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        if v.is_finite() {
            self.sum += v;
        }
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Index of the first bound `>= v` (`bounds.len()` when none is, or for NaN).
fn bucket(bounds: &[f64], v: f64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

/// Upper bounds of the score bins: `0.1, 0.2, …, 0.9` (the last bin is `(0.9, 1]`).
pub fn score_bounds() -> [f64; SCORE_BINS - 1] {
    std::array::from_fn(|i| (i + 1) as f64 / SCORE_BINS as f64)
}

/// Live scores of one model version: per-bin counts (bins as [`score_bounds`], upper bound
/// inclusive, as Prometheus' `le`) and the exact sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreStats {
    /// Scores per bin.
    pub bins: [u64; SCORE_BINS],
    /// Sum of the (finite) scores.
    pub sum: f64,
}

impl ScoreStats {
    /// Records one score.
    ///
    /// ```
    /// use complaintflow_pipelines::state::ScoreStats;
    /// let mut s = ScoreStats::default();
    /// for v in [0.05, 0.1, 0.1000001, 0.95] { s.observe(v); }
    /// assert_eq!(s.bins, [2, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// assert!((s.sum - 1.2000001).abs() < 1e-12);
    /// ```
    pub fn observe(&mut self, score: f64) {
        let i = bucket(&score_bounds(), score).min(SCORE_BINS - 1);
        self.bins[i] += 1;
        if score.is_finite() {
            self.sum += score;
        }
    }

    /// Scores in all.
    pub fn count(&self) -> u64 {
        self.bins.iter().sum()
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Dimension`] (the `by` of a query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("by={0:?} is not a dimension: use one of product, state, company, issue, hour, month, month_product")]
pub struct UnknownDimension(pub String);

impl std::str::FromStr for Dimension {
    type Err = UnknownDimension;

    /// ```
    /// use complaintflow_pipelines::Dimension;
    /// assert_eq!("state".parse::<Dimension>(), Ok(Dimension::State));
    /// assert!("colour".parse::<Dimension>().unwrap_err().to_string().contains("by=\"colour\""));
    /// ```
    fn from_str(s: &str) -> Result<Self, UnknownDimension> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDimension(s.to_string()))
    }
}

/// Running totals of one aggregate key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Decisions.
    pub count: i64,
    /// Escalated decisions.
    pub escalations: i64,
    /// Sum of scores in millionths.
    pub score_sum_micro: i64,
}

/// One row of an aggregate answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateRow {
    /// The key (a product, a state, …).
    pub key: String,
    /// Decisions.
    pub count: i64,
    /// Escalations.
    pub escalations: i64,
    /// escalations / count.
    pub escalation_rate: f64,
    /// Mean P(success).
    pub mean_score: f64,
}

/// An answer to `/api/aggregates`: complete over all workers and processes through `as_of`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateAnswer {
    /// The dimension.
    pub by: Dimension,
    /// The last epoch fully reflected (`None` before the first epoch completes).
    pub as_of: Option<u64>,
    /// Rows by count, descending.
    pub rows: Vec<AggregateRow>,
}

/// Consistent snapshot of every dimension.
#[derive(Clone, Debug, Default)]
pub struct AggregateView {
    /// Last complete epoch.
    pub as_of: Option<u64>,
    /// Totals per dimension and key.
    pub totals: BTreeMap<Dimension, BTreeMap<String, Totals>>,
}

/// A model version the `score` operator holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingModel {
    /// Registry version.
    pub version: String,
    /// `production` or `candidate`.
    pub role: String,
    /// A/B share of a candidate (`None` for production).
    pub fraction: Option<f64>,
    /// First epoch it scores.
    pub since_epoch: u64,
    /// Its decision threshold on P(success).
    pub threshold: f64,
}

/// Counters, gauges and quantiles of a running engine, for `/metrics` and `/health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Records read by the sources.
    pub records_in: u64,
    /// Records that parsed and validated.
    pub parsed: u64,
    /// Decisions written.
    pub predictions: u64,
    /// Escalated decisions.
    pub escalations: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Dead letters by error kind.
    pub dead_letters_by_kind: BTreeMap<String, u64>,
    /// Decisions by model version.
    pub predictions_by_model: BTreeMap<String, u64>,
    /// Epochs completed at the outputs.
    pub epochs: u64,
    /// The last epoch complete everywhere (`None` before the first).
    pub last_complete_epoch: Option<u64>,
    /// Median epoch latency (first record ingested → epoch written), seconds.
    pub epoch_latency_p50_seconds: Option<f64>,
    /// 99th percentile epoch latency, seconds.
    pub epoch_latency_p99_seconds: Option<f64>,
    /// Seconds since the engine started.
    pub uptime_seconds: f64,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
}

/// Counters and live views shared by the workers and the HTTP layer. One per process;
/// process 0's holds the complete picture (every output is routed to global worker 0).
#[derive(Debug)]
pub struct EngineState {
    /// Aggregates; updated in place when an epoch completes.
    pub aggregates: RwLock<AggregateView>,
    /// Latest decisions (bounded by `recent_capacity`).
    pub recent: Mutex<VecDeque<Decision>>,
    /// Capacity of `recent`.
    pub recent_capacity: usize,
    /// Records read by the sources.
    pub records_in: AtomicU64,
    /// Records that parsed and validated.
    pub parsed: AtomicU64,
    /// Decisions written.
    pub predictions: AtomicU64,
    /// Escalations among them.
    pub escalations: AtomicU64,
    /// Dead letters written.
    pub dead_letters: AtomicU64,
    /// Dead letters by error kind.
    pub dead_by_kind: Mutex<BTreeMap<String, u64>>,
    /// Decisions by model version.
    pub by_model: Mutex<BTreeMap<String, u64>>,
    /// Epochs completed at the outputs.
    pub epochs: AtomicU64,
    /// Latencies (seconds) of the latest 4,096 epochs: first record ingested → epoch complete.
    pub epoch_latency: Mutex<VecDeque<f64>>,
    /// Every epoch's latency since start, in [`EPOCH_LATENCY_BOUNDS`] buckets (cumulative;
    /// what `/metrics` exposes as `complaintflow_epoch_latency_seconds`).
    pub epoch_latency_hist: Mutex<Histogram>,
    /// The model versions sent to `score`, oldest first.
    pub models: Mutex<Vec<ServingModel>>,
    /// Their version names, oldest first (the same list as `models`, names only).
    pub serving: Mutex<Vec<String>>,
    /// Retraining status messages, oldest first.
    pub retrain_log: Mutex<Vec<String>>,
    /// Live scores by model version: ten bins of 0.1 and the exact sum.
    pub score_hist: Mutex<BTreeMap<String, ScoreStats>>,
    /// Whether the source has input it has not read yet (a file not exhausted, a Kafka
    /// topic with lag). Set by the engine (file sources) or the source (Kafka).
    pub input_waiting: AtomicBool,
    /// Records behind the head of the input (Kafka sources), `None` for sources without lag.
    pub consumer_lag: Mutex<Option<i64>>,
    /// When the last checkpoint was written (sources with checkpoints).
    pub last_checkpoint: Mutex<Option<Instant>>,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// Start time.
    pub started: Instant,
}

impl EngineState {
    /// Empty state.
    ///
    /// ```
    /// use complaintflow_pipelines::{Dimension, EngineState};
    /// let s = EngineState::new(100);
    /// assert_eq!(s.aggregates(Dimension::Product, None).as_of, None);
    /// assert!(s.recent(10).is_empty());
    /// ```
    pub fn new(recent_capacity: usize) -> EngineState {
        EngineState {
            aggregates: RwLock::new(AggregateView::default()),
            recent: Mutex::new(VecDeque::new()),
            recent_capacity,
            records_in: AtomicU64::new(0),
            parsed: AtomicU64::new(0),
            predictions: AtomicU64::new(0),
            escalations: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            dead_by_kind: Mutex::new(BTreeMap::new()),
            by_model: Mutex::new(BTreeMap::new()),
            epochs: AtomicU64::new(0),
            epoch_latency: Mutex::new(VecDeque::new()),
            epoch_latency_hist: Mutex::new(Histogram::new(&EPOCH_LATENCY_BOUNDS)),
            models: Mutex::new(Vec::new()),
            serving: Mutex::new(Vec::new()),
            retrain_log: Mutex::new(Vec::new()),
            score_hist: Mutex::new(BTreeMap::new()),
            input_waiting: AtomicBool::new(true),
            consumer_lag: Mutex::new(None),
            last_checkpoint: Mutex::new(None),
            workers: 1,
            processes: 1,
            started: Instant::now(),
        }
    }

    /// Counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let q = self.epoch_latency_quantiles();
        MetricsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            parsed: self.parsed.load(Ordering::Relaxed),
            predictions: self.predictions.load(Ordering::Relaxed),
            escalations: self.escalations.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            dead_letters_by_kind: lock(&self.dead_by_kind).clone(),
            predictions_by_model: lock(&self.by_model).clone(),
            epochs: self.epochs.load(Ordering::Relaxed),
            last_complete_epoch: self
                .aggregates
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_of,
            epoch_latency_p50_seconds: q.map(|x| x.0),
            epoch_latency_p99_seconds: q.map(|x| x.1),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            workers: self.workers,
            processes: self.processes,
        }
    }

    /// The model versions held by `score`, oldest first.
    pub fn models(&self) -> Vec<ServingModel> {
        lock(&self.models).clone()
    }

    /// Retraining status messages, oldest first.
    pub fn retrain_log(&self) -> Vec<String> {
        lock(&self.retrain_log).clone()
    }

    /// The aggregate answer for a dimension, `top` rows by count.
    pub fn aggregates(&self, by: Dimension, top: Option<usize>) -> AggregateAnswer {
        let view = self.aggregates.read().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<AggregateRow> = view
            .totals
            .get(&by)
            .map(|m| {
                m.iter()
                    .filter(|(_, t)| t.count > 0)
                    .map(|(k, t)| AggregateRow {
                        key: k.clone(),
                        count: t.count,
                        escalations: t.escalations,
                        escalation_rate: t.escalations as f64 / t.count as f64,
                        mean_score: t.score_sum_micro as f64 / 1e6 / t.count as f64,
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        if let Some(n) = top {
            rows.truncate(n);
        }
        AggregateAnswer {
            by,
            as_of: view.as_of,
            rows,
        }
    }

    /// The cumulative epoch-latency histogram, seconds.
    pub fn epoch_latency_histogram(&self) -> Histogram {
        lock(&self.epoch_latency_hist).clone()
    }

    /// Live scores by model version.
    pub fn score_stats(&self) -> BTreeMap<String, ScoreStats> {
        lock(&self.score_hist).clone()
    }

    /// The latest `limit` decisions, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Decision> {
        let r = lock(&self.recent);
        r.iter().rev().take(limit).cloned().collect()
    }

    /// p50 and p99 of recent epoch latencies, seconds.
    pub fn epoch_latency_quantiles(&self) -> Option<(f64, f64)> {
        let l = lock(&self.epoch_latency);
        if l.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = l.iter().copied().collect();
        v.sort_by(|a, b| a.total_cmp(b));
        Some((quantile(&v, 0.5), quantile(&v, 0.99)))
    }

    /// Merges one worker's digest of a batch of decisions: each lock is taken once per
    /// batch.
    pub(crate) fn observe_digest(&self, d: crate::outputs::DecisionDigest) {
        if d.count == 0 {
            return;
        }
        self.predictions.fetch_add(d.count, Ordering::Relaxed);
        self.escalations.fetch_add(d.escalations, Ordering::Relaxed);
        {
            let mut m = lock(&self.by_model);
            let mut h = lock(&self.score_hist);
            for (version, stats) in d.by_model {
                *m.entry(version.clone()).or_insert(0) += stats.count();
                let e = h.entry(version).or_default();
                for (b, n) in e.bins.iter_mut().zip(stats.bins) {
                    *b += n;
                }
                e.sum += stats.sum;
            }
        }
        let cap = self.recent_capacity.max(1);
        let newest = &d.recent[d.recent.len().saturating_sub(cap)..];
        let mut r = lock(&self.recent);
        while r.len() + newest.len() > cap && !r.is_empty() {
            r.pop_front();
        }
        r.extend(newest.iter().cloned());
    }

    pub(crate) fn note_model(&self, m: ServingModel) {
        lock(&self.serving).push(m.version.clone());
        lock(&self.models).push(m);
    }

    pub(crate) fn observe_epoch(&self, latency_seconds: f64) {
        self.epochs.fetch_add(1, Ordering::Relaxed);
        lock(&self.epoch_latency_hist).observe(latency_seconds);
        let mut l = lock(&self.epoch_latency);
        if l.len() >= 4096 {
            l.pop_front();
        }
        l.push_back(latency_seconds);
    }

    pub(crate) fn observe_dead_letter(&self, kind: &str) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        let mut m = lock(&self.dead_by_kind);
        *m.entry(kind.to_string()).or_insert(0) += 1;
    }
}

/// Locks a mutex, recovering the data if a holder panicked (counters stay usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `q` quantile (nearest rank) of sorted values; 0 for none.
///
/// ```
/// assert_eq!(complaintflow_pipelines::state::quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
/// ```
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}
