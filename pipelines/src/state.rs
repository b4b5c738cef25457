//! The engine's live state, shared with the HTTP layer: aggregates (complete as of an epoch),
//! recent decisions, counters, epoch latencies, serving models.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use complaintflow_operators::publish::SharedDecision;
use complaintflow_operators::Decision;
use serde::{Deserialize, Serialize};

// The types shared with the HTTP layer live in `crate::contract` (one definition each); the
// old paths (`state::Dimension`, `state::Histogram`, …) keep working through this re-export.
pub use crate::contract::{
    month_product_key, quantile, score_bounds, split_month_product, AggregateAnswer, AggregateRow,
    Dimension, Histogram, MetricsSnapshot, ScoreStats, ServingModel, Totals, UnknownDimension,
    EPOCH_LATENCY_BOUNDS, SCORE_BINS,
};

impl Dimension {
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

/// Consistent snapshot of every dimension.
#[derive(Clone, Debug, Default)]
pub struct AggregateView {
    /// Last complete epoch.
    pub as_of: Option<u64>,
    /// Totals per dimension and key.
    pub totals: BTreeMap<Dimension, BTreeMap<String, Totals>>,
}

/// The engine's own counters and quantiles ([`EngineState::snapshot`]): what a run summary
/// and the benches read. Not an HTTP type: `/api/metrics` is the contract's
/// [`MetricsSnapshot`], which the HTTP adapter (`src/engine_view.rs`) builds from these
/// counters, the epoch-latency histogram and the source's lag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineCounters {
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
    /// Latest decisions (bounded by `recent_capacity`), shared with the sinks (no copy).
    pub recent: Mutex<VecDeque<SharedDecision>>,
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
    /// Every epoch below this is complete at every output (the completion operator's
    /// frontier; `u64::MAX` once the dataflow has ended).
    pub completed_below: AtomicU64,
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
    /// Per-operator records, batches and busy time of this process's workers, from timely's
    /// logging ([`crate::introspect::install`] on every worker); `/api/dataflow` reads it.
    pub dataflow: crate::introspect::DataflowStats,
    /// Labelled counts of the predictions joined with outcomes (`run --outcomes`), on
    /// process 0; [`quality`](Self::quality_report) computes the metrics.
    pub quality: Mutex<crate::quality::QualityLedger>,
    /// Whether the engine reads outcomes.
    pub quality_enabled: bool,
    /// The monitoring thresholds (`[monitoring]`).
    pub monitoring: crate::quality::MonitoringConfig,
    /// With `[monitoring] auto_retrain`: the outcome records that are whole complaints with a
    /// final label, by complaint id (the latest read), the closed loop's training data.
    pub labelled_history: Mutex<BTreeMap<u64, Vec<u8>>>,
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
            completed_below: AtomicU64::new(0),
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
            dataflow: crate::introspect::DataflowStats::new(),
            quality: Mutex::new(crate::quality::QualityLedger::default()),
            quality_enabled: false,
            monitoring: crate::quality::MonitoringConfig::default(),
            labelled_history: Mutex::new(BTreeMap::new()),
        }
    }

    /// Live model quality per version, with the monitoring actions (`/api/model/quality`).
    ///
    /// ```
    /// let s = complaintflow_pipelines::EngineState::new(10);
    /// let r = s.quality_report();
    /// assert!(!r.enabled && r.versions.is_empty());
    /// ```
    pub fn quality_report(&self) -> crate::quality::QualityReport {
        lock(&self.quality).report(&self.monitoring, self.quality_enabled)
    }

    /// Counters now.
    pub fn snapshot(&self) -> EngineCounters {
        let q = self.epoch_latency_quantiles();
        EngineCounters {
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
            .map(|m| m.iter().filter_map(|(k, t)| t.row(k)).collect())
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

    /// The latest `limit` decisions, newest first (shared: their JSON is `json`).
    pub fn recent(&self, limit: usize) -> Vec<SharedDecision> {
        let r = lock(&self.recent);
        r.iter().rev().take(limit).cloned().collect()
    }

    /// The latest `limit` decisions, newest first, as records.
    pub fn recent_decisions(&self, limit: usize) -> Vec<Decision> {
        let r = lock(&self.recent);
        r.iter()
            .rev()
            .take(limit)
            .map(|d| d.decision.clone())
            .collect()
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
    pub(crate) fn observe_digest(&self, d: crate::live::DecisionDigest) {
        if d.count == 0 {
            return;
        }
        self.predictions.fetch_add(d.count, Ordering::Relaxed);
        self.escalations.fetch_add(d.escalations, Ordering::Relaxed);
        {
            let mut m = lock(&self.by_model);
            let mut h = lock(&self.score_hist);
            for (version, stats) in d.by_model {
                let version = version.to_string();
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

    pub(crate) fn observe_dead_letters(&self, kind: &str, n: u64) {
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
        let mut m = lock(&self.dead_by_kind);
        match m.get_mut(kind) {
            Some(c) => *c += n,
            None => {
                m.insert(kind.to_string(), n);
            }
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked (counters stay usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
