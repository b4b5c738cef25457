//! What the HTTP layer reads from the engine: the [`EngineView`] trait and the types it
//! returns.
//!
//! These types **are** the HTTP JSON contract: every `/api/*` answer is one of them serialized
//! with serde, field for field (snake_case names, `null` for `None`). The engine side (an adapter
//! over the pipelines' live state) implements [`EngineView`]; the server never touches the
//! dataflow directly.
//!
//! Conventions:
//! - counters are cumulative since the engine started (`u64`), never reset;
//! - rates are fractions in `[0, 1]` (`escalation_rate`, `share`), percentages are named `_pct`;
//! - scores are P(successful resolution) in `[0, 1]`;
//! - `as_of` is the last epoch completely reflected in an answer, over all workers and processes
//!   (`null` before the first epoch completes);
//! - times are milliseconds since the Unix epoch (`_ms`) or RFC 3339 strings (`_at`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Number of score bins used for score histograms and the population stability index:
/// ten equal-width bins over `[0, 1]`.
pub const SCORE_BINS: usize = 10;

/// Default bucket upper bounds (seconds) of the epoch latency histogram.
pub const EPOCH_LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The engine as the HTTP layer sees it. Every method is cheap and non-blocking enough to be
/// called from an async handler (it reads shared state behind short locks; it never waits for
/// an epoch).
pub trait EngineView: Send + Sync + 'static {
    /// Liveness and shape of the running job (`GET /health`).
    fn health(&self) -> Health;

    /// Aggregates by one dimension, rows sorted by `count` descending then `key` ascending,
    /// truncated to `top` rows when given (`GET /api/aggregates`). The answer is consistent as
    /// of one epoch: never half an epoch.
    fn aggregates(&self, by: Dimension, top: Option<usize>) -> AggregateAnswer;

    /// The latest `limit` decisions, newest first (`GET /api/predictions/recent`), as the
    /// engine writes them to the predictions sink. Each object has at least `complaint_id`,
    /// `model_version`, `score`, `escalate`, `priority` (`P1`/`P2`/`P3`), `queue`, `reasons`
    /// (array of strings), `product`, `state`, `company` (strings or `null`), `date_received`
    /// (`YYYY-MM-DD`) and `decided_ms`; `issue` when known. Extra fields are passed through.
    fn recent(&self, limit: usize) -> Vec<serde_json::Value>;

    /// Model versions, the ones serving live traffic and their score distributions
    /// (`GET /api/models`).
    fn models(&self) -> ModelsView;

    /// Counters and histograms for `/metrics`, the time series sampler and the alert rules.
    fn metrics(&self) -> MetricsSnapshot;

    /// Complaint volume by month received × product: the training data and the live stream,
    /// to draw on one time axis (`GET /api/history`).
    fn history(&self) -> HistoryView;

    /// Asks the engine to retrain on a historical file (`POST /api/retrain`). Returns at once
    /// with a ticket; progress shows in [`ModelsView::retraining`].
    fn retrain(&self, req: RetrainRequest) -> Result<RetrainTicket, RetrainError>;
}

/// An aggregate dimension: the `by` of `/api/aggregates` (the engine's own type).
pub use complaintflow_pipelines::state::UnknownDimension;
pub use complaintflow_pipelines::Dimension;

/// Lifecycle of the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Building the dataflow, loading or training the first model.
    Starting,
    /// Processing (or waiting for) input.
    Running,
    /// Shutting down: finishing the open epoch.
    Draining,
    /// The source is exhausted (`--once`) and every epoch is complete; the API still answers.
    Finished,
    /// The dataflow stopped on an error (`/health` answers 503).
    Failed,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Lifecycle state.
    pub status: HealthStatus,
    /// Seconds since the engine started.
    pub uptime_secs: f64,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes in the timely cluster.
    pub processes: usize,
    /// The input, human-readable (`file:PATH`, `kafka:TOPIC@BROKERS`, …).
    pub source: String,
    /// Last epoch complete everywhere (`null` before the first one).
    pub epoch: Option<u64>,
    /// Why the job failed or is draining, when it is.
    pub message: Option<String>,
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

/// `GET /api/aggregates?by=…&top=…`.
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

/// A histogram with fixed buckets, cumulative since start, in the shape Prometheus exposes.
///
/// `bounds` are the bucket upper bounds (inclusive, ascending, finite); `counts` has one more
/// entry than `bounds`: `counts[i]` counts observations `v` with `bounds[i-1] < v <= bounds[i]`,
/// and the last entry those above the highest bound. Counts are per bucket, **not**
/// cumulative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket; `bounds.len() + 1` entries.
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot::with_bounds(&EPOCH_LATENCY_BOUNDS)
    }
}

impl HistogramSnapshot {
    /// An empty histogram with these bucket upper bounds.
    pub fn with_bounds(bounds: &[f64]) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// An empty score histogram: [`SCORE_BINS`] equal-width bins over `[0, 1]` (bounds
    /// `0.1, 0.2, …, 0.9`, the last bin `(0.9, 1]`).
    pub fn scores() -> HistogramSnapshot {
        let bounds: Vec<f64> = (1..SCORE_BINS)
            .map(|i| i as f64 / SCORE_BINS as f64)
            .collect();
        HistogramSnapshot::with_bounds(&bounds)
    }

    /// A score histogram from per-bin counts of [`SCORE_BINS`] equal-width bins and the sum of
    /// the scores. `None` when `bins` does not have [`SCORE_BINS`] entries.
    pub fn scores_from_bins(bins: &[u64], sum: f64) -> Option<HistogramSnapshot> {
        (bins.len() == SCORE_BINS).then(|| {
            let mut h = HistogramSnapshot::scores();
            h.counts.copy_from_slice(bins);
            h.sum = sum;
            h
        })
    }

    /// Records one observation (NaN is counted in the last bucket and not summed).
    pub fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
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
    pub fn since(&self, earlier: &HistogramSnapshot) -> Option<HistogramSnapshot> {
        if self.bounds != earlier.bounds || self.counts.len() != earlier.counts.len() {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.checked_sub(*b))
            .collect::<Option<Vec<u64>>>()?;
        Some(HistogramSnapshot {
            bounds: self.bounds.clone(),
            counts,
            sum: self.sum - earlier.sum,
        })
    }

    /// The `q` quantile (`0 ≤ q ≤ 1`), interpolated linearly inside the bucket that holds it
    /// (as Prometheus' `histogram_quantile` does; the first bucket starts at 0, the overflow
    /// bucket answers the highest bound). `None` when empty or malformed.
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
                let lo = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lo + (hi - lo) * frac);
            }
            below += c;
        }
        self.bounds.last().copied()
    }
}

/// `GET /api/models`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelsView {
    /// The registry's production version (`null` when none is promoted).
    pub production: Option<String>,
    /// Every registered version, newest last.
    pub versions: Vec<ModelVersion>,
    /// Versions serving live traffic now: one, or two during an A/B split.
    pub live: Vec<LiveModel>,
    /// Scores of the production model on its own training data, as a [`HistogramSnapshot::scores`]
    /// histogram: the reference distribution of the drift (PSI) alert. `null` when unknown.
    pub training_scores: Option<HistogramSnapshot>,
    /// Retraining status messages, oldest first (bounded by the engine).
    pub retraining: Vec<String>,
}

/// A registered model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Version id (`v0001`, …).
    pub version: String,
    /// Registry stage (`production`, `staging`, `archived`, …).
    pub stage: String,
    /// ROC AUC on the held-out test split.
    pub test_auc: Option<f64>,
    /// Registration time, RFC 3339.
    pub created_at: Option<String>,
}

/// A version serving live traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveModel {
    /// Version id.
    pub version: String,
    /// Configured share of new traffic routed to it, `0..=1` (shares of live versions sum to 1).
    pub share: f64,
    /// Predictions it has made since start.
    pub predictions: u64,
    /// Its live scores since start, a [`HistogramSnapshot::scores`] histogram.
    pub scores: HistogramSnapshot,
}

/// Counters and histograms of the running job, cumulative since start.
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
    /// Epoch latency: first record of the epoch ingested → epoch complete, seconds.
    pub epoch_latency_seconds: HistogramSnapshot,
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

/// Complaints in one month received for one product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePoint {
    /// Month the CFPB received them, `YYYY-MM`.
    pub month: String,
    /// Product (`(missing)` when absent).
    pub product: String,
    /// Complaints.
    pub count: u64,
}

/// `GET /api/history`: complaint volume by month received × product, for the training data
/// and for the live stream, on the same axis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// The production model's training file, when known.
    pub training_source: Option<String>,
    /// Training complaints by month × product (fixed while the model does not change).
    pub training: Vec<VolumePoint>,
    /// Decisions of the live stream by month received × product.
    pub live: Vec<VolumePoint>,
    /// The epoch `live` is consistent as of.
    pub as_of: Option<u64>,
}

/// `POST /api/retrain` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainRequest {
    /// Historical complaints file, as the engine's host sees it.
    pub path: String,
    /// `auto` (default), `json`, `jsonl`, `csv` or `api`.
    #[serde(default)]
    pub format: Option<String>,
}

/// `202 Accepted` answer of `POST /api/retrain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrainTicket {
    /// Ticket id, to find in [`ModelsView::retraining`].
    pub id: String,
    /// The file being read.
    pub path: String,
    /// Its format.
    pub format: String,
    /// When the request was accepted, ms since the Unix epoch.
    pub accepted_ms: i64,
}

/// Why a retraining request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetrainError {
    /// The request is wrong (missing file, unknown format): `400`.
    #[error("{0}")]
    Invalid(String),
    /// The engine cannot take it now (already retraining, shutting down): `409`.
    #[error("{0}")]
    Busy(String),
}
