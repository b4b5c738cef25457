//! What the HTTP layer reads from the engine: the [`EngineView`] trait and the types it
//! returns.
//!
//! These types **are** the HTTP JSON contract: every `/api/*` answer is one of them serialized
//! with serde, field for field (snake_case names, `null` for `None`). The engine side (an adapter
//! over the pipelines' live state) implements [`EngineView`]; the server never touches the
//! dataflow directly.
//!
//! The types shared with the engine (aggregates, histograms, metrics, [`Dimension`]) are
//! defined once in `complaintflow_pipelines::contract` and re-exported here; the dataflow
//! view ([`DataflowView`]) in `complaintflow_pipelines::introspect`. The rest (health, models,
//! history, retraining) is defined here.
//!
//! Conventions:
//! - counters are cumulative since the engine started (`u64`), never reset;
//! - rates are fractions in `[0, 1]` (`escalation_rate`, `share`), percentages are named `_pct`;
//! - scores are P(successful resolution) in `[0, 1]`;
//! - `as_of` is the last epoch completely reflected in an answer, over all workers and processes
//!   (`null` before the first epoch completes);
//! - times are milliseconds since the Unix epoch (`_ms`) or RFC 3339 strings (`_at`).

use serde::{Deserialize, Serialize};

pub use complaintflow_pipelines::contract::{
    AggregateAnswer, AggregateRow, Dimension, Histogram, HistogramSnapshot, MetricsSnapshot,
    UnknownDimension, EPOCH_LATENCY_BOUNDS, SCORE_BINS,
};
pub use complaintflow_pipelines::introspect::{DataflowEdge, DataflowOperator, DataflowView};
pub use complaintflow_pipelines::quality::{QualityMetrics, QualityReport, VersionQuality};

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

    /// The dataflow's operators and channels with their records, batches and busy time, from
    /// timely's logging (`GET /api/dataflow`). The default is an empty view (an engine
    /// without a dataflow, such as a test double).
    fn dataflow(&self) -> DataflowView {
        DataflowView::default()
    }

    /// Live model quality per version: predictions joined with outcomes, metrics per scope,
    /// the monitoring action (`GET /api/model/quality`). The default is a disabled report
    /// (an engine that reads no outcomes).
    fn quality(&self) -> QualityReport {
        QualityReport::default()
    }
}

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
