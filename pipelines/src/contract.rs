//! The types shared by the engine and the HTTP layer: one definition each.
//!
//! The engine fills them ([`crate::state::EngineState`] keeps [`Totals`], [`ScoreStats`],
//! [`Histogram`]s and [`ServingModel`]s); the HTTP layer (`src/http/view.rs` re-exports this
//! module) serializes [`AggregateAnswer`], [`Histogram`] and [`MetricsSnapshot`] as its JSON
//! contract, field for field (snake_case names, `null` for `None`). Changing a field here
//! changes `/api/*`: `tests/http_contract.rs` and `tests/dashboard_e2e.rs` check the shapes.
//!
//! This module depends on nothing else in the crate (no engine type, no timely), so the
//! engine's modules and the HTTP layer can both use it without importing each other.
//!
//! Conventions: counters are cumulative since the engine started (`u64`); rates are fractions
//! in `[0, 1]`; scores are P(successful resolution) in `[0, 1]`; `as_of` is the last epoch
//! completely reflected in an answer over all workers and processes (`None` before the first).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Number of score bins used for score histograms ([`ScoreStats`], [`Histogram::scores`]) and
/// the population stability index: ten equal-width bins over `[0, 1]`.
pub const SCORE_BINS: usize = 10;

/// Bucket upper bounds (seconds, inclusive) of the epoch-latency histogram
/// (`EngineState::epoch_latency_hist`, `/metrics`' `complaintflow_epoch_latency_seconds`).
pub const EPOCH_LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

// ------------------------------------------------------------------------------ dimensions

/// An aggregate dimension: the `by` of `/api/aggregates`.
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

    /// Lower-case name (`product`, …), as in the JSON and the `by` parameter.
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

/// The [`Dimension::MonthProduct`] key: `YYYY-MM|product`. The month never holds a `|`, so
/// [`split_month_product`] splits at the first one even when a product name holds one.
///
/// ```
/// use complaintflow_pipelines::state::{month_product_key, split_month_product};
/// let k = month_product_key("2019-09", "Debt collection");
/// assert_eq!(k, "2019-09|Debt collection");
/// assert_eq!(split_month_product(&k), Some(("2019-09", "Debt collection")));
/// assert_eq!(split_month_product("2019-09|A|B"), Some(("2019-09", "A|B")));
/// ```
pub fn month_product_key(month: &str, product: &str) -> String {
    format!("{month}|{product}")
}

/// Splits a [`Dimension::MonthProduct`] key into month and product.
pub fn split_month_product(key: &str) -> Option<(&str, &str)> {
    key.split_once('|')
}

// ------------------------------------------------------------------------------ aggregates

/// Running totals of one aggregate key, as the engine sums them (signed: they are sums of
/// differential updates, which may retract).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Decisions.
    pub count: i64,
    /// Escalated decisions.
    pub escalations: i64,
    /// Sum of scores in millionths.
    pub score_sum_micro: i64,
}

impl Totals {
    /// The answer row of `key`: `None` when the key holds no decision (`count <= 0`);
    /// negative escalations read as 0.
    ///
    /// ```
    /// use complaintflow_pipelines::contract::Totals;
    /// let t = Totals { count: 4, escalations: 1, score_sum_micro: 2_000_000 };
    /// let r = t.row("Mortgage").unwrap();
    /// assert_eq!((r.count, r.escalations, r.escalation_rate, r.mean_score), (4, 1, 0.25, 0.5));
    /// assert!(Totals::default().row("none").is_none());
    /// ```
    pub fn row(&self, key: &str) -> Option<AggregateRow> {
        let count = u64::try_from(self.count).ok().filter(|c| *c > 0)?;
        let escalations = u64::try_from(self.escalations).unwrap_or(0);
        Some(AggregateRow {
            key: key.to_string(),
            count,
            escalations,
            escalation_rate: escalations as f64 / count as f64,
            mean_score: self.score_sum_micro as f64 / 1e6 / count as f64,
        })
    }
}

/// One row of an aggregate answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateRow {
    /// The dimension's value (a product, a state code, …; `(missing)` when the field is empty).
    pub key: String,
    /// Decisions with this key.
    pub count: u64,
    /// Escalated decisions among them.
    pub escalations: u64,
    /// `escalations / count`.
    pub escalation_rate: f64,
    /// Mean predicted P(successful resolution).
    pub mean_score: f64,
}

/// `GET /api/aggregates?by=…&top=…`: complete over all workers and processes through
/// `as_of`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateAnswer {
    /// The dimension asked for.
    pub by: Dimension,
    /// The last epoch fully reflected (`null` before the first epoch completes).
    pub as_of: Option<u64>,
    /// Rows by `count` descending, then `key` ascending.
    pub rows: Vec<AggregateRow>,
}

impl AggregateAnswer {
    /// Sum of `count` over the rows.
    pub fn total_count(&self) -> u64 {
        self.rows.iter().map(|r| r.count).sum()
    }

    /// Mean score over all rows, weighted by count (`None` when there are no decisions).
    ///
    /// ```
    /// use complaintflow_pipelines::contract::{AggregateAnswer, Dimension, Totals};
    /// let rows = [("a", 1, 100_000), ("b", 3, 900_000)]
    ///     .iter()
    ///     .filter_map(|(k, n, s)| Totals { count: *n, escalations: 0, score_sum_micro: *s }.row(k))
    ///     .collect();
    /// let a = AggregateAnswer { by: Dimension::Product, as_of: Some(0), rows };
    /// assert_eq!(a.total_count(), 4);
    /// assert!((a.mean_score().unwrap() - 0.25).abs() < 1e-12);
    /// ```
    pub fn mean_score(&self) -> Option<f64> {
        let n = self.total_count();
        (n > 0).then(|| {
            self.rows
                .iter()
                .map(|r| r.mean_score * r.count as f64)
                .sum::<f64>()
                / n as f64
        })
    }
}

// ------------------------------------------------------------------------------ histograms

/// A histogram with fixed buckets, cumulative since start, in the shape Prometheus exposes.
///
/// `bounds` are the bucket upper bounds (inclusive, ascending, finite); `counts` has one more
/// entry than `bounds`: `counts[i]` counts observations `v` with `bounds[i-1] < v <= bounds[i]`,
/// and the last entry those above the highest bound (and NaN). Counts are per bucket, **not**
/// cumulative. `sum` is the sum of the finite observations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bucket upper bounds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket; `bounds.len() + 1` entries.
    pub counts: Vec<u64>,
    /// Sum of the finite observations.
    pub sum: f64,
}

/// The HTTP layer's name of [`Histogram`] (the same type).
pub type HistogramSnapshot = Histogram;

impl Default for Histogram {
    /// An empty epoch-latency histogram ([`EPOCH_LATENCY_BOUNDS`]).
    fn default() -> Self {
        Histogram::new(&EPOCH_LATENCY_BOUNDS)
    }
}

impl Histogram {
    /// An empty histogram with these bucket upper bounds.
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// An empty score histogram: [`SCORE_BINS`] equal-width bins over `[0, 1]` (bounds
    /// [`score_bounds`] `0.1, 0.2, …, 0.9`, the last bin `(0.9, 1]`).
    pub fn scores() -> Histogram {
        Histogram::new(&score_bounds())
    }

    /// A score histogram from per-bin counts of [`SCORE_BINS`] equal-width bins and the sum of
    /// the scores. `None` when `bins` does not have [`SCORE_BINS`] entries.
    pub fn scores_from_bins(bins: &[u64], sum: f64) -> Option<Histogram> {
        (bins.len() == SCORE_BINS).then(|| {
            let mut h = Histogram::scores();
            h.counts.copy_from_slice(bins);
            h.sum = sum;
            h
        })
    }

    /// Records one observation (NaN is counted in the last bucket and not summed).
    ///
    /// ```
    /// use complaintflow_pipelines::state::Histogram;
    /// let mut h = Histogram::new(&[1.0, 2.0]);
    /// for v in [0.5, 1.0, 1.5, 3.0, f64::NAN] { h.observe(v); }
    /// assert_eq!(h.counts, vec![2, 1, 2]);
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

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Whether `counts` has `bounds.len() + 1` entries and the bounds ascend.
    pub fn is_well_formed(&self) -> bool {
        self.counts.len() == self.bounds.len() + 1
            && self.bounds.windows(2).all(|w| w[0] < w[1])
            && self.bounds.iter().all(|b| b.is_finite())
    }

    /// The observations made since `earlier` (same bounds), or `None` when the bounds differ
    /// or a count went down (the engine restarted).
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        if self.bounds != earlier.bounds || self.counts.len() != earlier.counts.len() {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.checked_sub(*b))
            .collect::<Option<Vec<u64>>>()?;
        Some(Histogram {
            bounds: self.bounds.clone(),
            counts,
            sum: self.sum - earlier.sum,
        })
    }

    /// The `q` quantile (`0 ≤ q ≤ 1`), interpolated linearly inside the bucket that holds it
    /// (as Prometheus' `histogram_quantile` does; the first bucket starts at 0, the overflow
    /// bucket answers the highest bound). `None` when empty or malformed.
    ///
    /// ```
    /// use complaintflow_pipelines::contract::Histogram;
    /// let mut h = Histogram::new(&[1.0, 2.0]);
    /// for v in [0.5, 1.5, 1.5, 1.5] { h.observe(v); }
    /// assert_eq!(h.quantile(0.25), Some(1.0));
    /// assert_eq!(h.quantile(1.0), Some(2.0));
    /// assert_eq!(Histogram::new(&[1.0]).quantile(0.5), None);
    /// ```
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 || !self.is_well_formed() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let Some(&hi) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lo = if i == 0 {
                    0.0
                } else {
                    self.bounds.get(i - 1).copied().unwrap_or(0.0)
                };
                let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lo + (hi - lo) * frac);
            }
            below += c;
        }
        self.bounds.last().copied()
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
        if let Some(b) = self.bins.get_mut(i) {
            *b += 1;
        }
        if score.is_finite() {
            self.sum += score;
        }
    }

    /// Scores in all.
    pub fn count(&self) -> u64 {
        self.bins.iter().sum()
    }

    /// The same scores as a [`Histogram::scores`] histogram (what `/api/models` shows).
    ///
    /// ```
    /// use complaintflow_pipelines::contract::ScoreStats;
    /// let mut s = ScoreStats::default();
    /// s.observe(0.95);
    /// let h = s.histogram();
    /// assert_eq!((h.count(), h.counts[9], h.bounds.len()), (1, 1, 9));
    /// ```
    pub fn histogram(&self) -> Histogram {
        Histogram::scores_from_bins(&self.bins, self.sum).unwrap_or_else(Histogram::scores)
    }
}

/// The `q` quantile (nearest rank) of sorted values; 0 for none.
///
/// ```
/// assert_eq!(complaintflow_pipelines::state::quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
/// assert_eq!(complaintflow_pipelines::state::quantile(&[], 0.5), 0.0);
/// ```
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

// ------------------------------------------------------------------------------ models, metrics

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

/// `GET /api/metrics`: counters and histograms of the running job, cumulative since start;
/// what `/metrics`, the time-series sampler and the alert rules read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Records read from the source.
    pub records_in: u64,
    /// Records parsed into complaints.
    pub parsed: u64,
    /// Records that reached an outcome: a prediction or a dead letter
    /// (`predictions + Σ dead_letters` once every epoch is complete).
    pub records_processed: u64,
    /// Decisions written.
    pub predictions: u64,
    /// Escalated decisions.
    pub escalations: u64,
    /// Dead letters by reason (the error kind: `malformed_json`, `record_too_large`, …).
    pub dead_letters: BTreeMap<String, u64>,
    /// Epochs complete at every output.
    pub epochs_completed: u64,
    /// Epoch latency: first record of the epoch ingested → epoch complete, seconds
    /// ([`EPOCH_LATENCY_BOUNDS`] buckets).
    pub epoch_latency_seconds: Histogram,
    /// Records behind the head of the input (Kafka), `null` for sources without a lag.
    pub consumer_lag: Option<i64>,
    /// Whether the source has input it has not read yet (a file not yet exhausted, a Kafka
    /// topic still open). The processing-rate alert applies only while this is true.
    pub input_waiting: bool,
    /// Seconds since the last checkpoint, `null` without checkpoints.
    pub checkpoint_age_secs: Option<f64>,
}

impl MetricsSnapshot {
    /// Dead letters over all reasons.
    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bins_agree_between_stats_and_histogram() {
        let mut s = ScoreStats::default();
        let mut h = Histogram::scores();
        for i in 0..=1000 {
            let v = f64::from(i) / 1000.0;
            s.observe(v);
            h.observe(v);
        }
        assert_eq!(s.histogram(), h);
        assert_eq!(h.bounds, score_bounds().to_vec());
    }

    #[test]
    fn totals_rows_skip_empty_and_retracted_keys() {
        let gone = Totals {
            count: -1,
            escalations: 0,
            score_sum_micro: 0,
        };
        assert!(gone.row("k").is_none());
        let odd = Totals {
            count: 2,
            escalations: -1,
            score_sum_micro: 1_000_000,
        };
        let r = odd.row("k").expect("a row");
        assert_eq!(
            (r.escalations, r.escalation_rate, r.mean_score),
            (0, 0.0, 0.5)
        );
    }

    #[test]
    fn histogram_json_is_the_http_shape() {
        let mut h = Histogram::new(&[0.5]);
        h.observe(0.25);
        assert_eq!(
            serde_json::to_string(&h).expect("json"),
            r#"{"bounds":[0.5],"counts":[1,0],"sum":0.25}"#
        );
        assert_eq!(Histogram::default().bounds, EPOCH_LATENCY_BOUNDS.to_vec());
    }
}
