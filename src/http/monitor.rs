//! The monitor: samples the engine's counters every `sample_interval_ms`, keeps bounded time
//! series of derived values (throughput, epoch latency quantiles, lag, dead-letter and
//! escalation percentages, score drift), and drives the [alert rules](super::alerts).
//!
//! [`SeriesStore`] is the pure part (fed snapshots with explicit times); [`Monitor`] wraps it
//! and the [`AlertEvaluator`] behind a lock for the server's sampler task and handlers.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::alerts::{
    score_psi, ActiveAlert, AlertEvaluator, AlertEvent, AlertInputs, AlertName, AlertState,
    AlertsConfig, RuleStatus,
};
use super::view::{HistogramSnapshot, MetricsSnapshot, ModelsView};

/// Counters kept per sample, to compute windows.
#[derive(Clone, Debug)]
struct Raw {
    t_ms: i64,
    processed: u64,
    predictions: u64,
    escalations: u64,
    dead_letters: u64,
    epoch_latency: HistogramSnapshot,
}

/// One point of every series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Sample time, ms since the Unix epoch.
    pub t_ms: i64,
    /// Records processed since start.
    pub processed: u64,
    /// Records processed per minute since the previous sample.
    pub throughput_per_min: Option<f64>,
    /// Median epoch latency over the window, ms.
    pub epoch_latency_p50_ms: Option<f64>,
    /// 99th percentile epoch latency over the window, ms.
    pub epoch_latency_p99_ms: Option<f64>,
    /// Consumer lag, records.
    pub consumer_lag: Option<f64>,
    /// Dead letters, percent of records processed in the window.
    pub dead_letter_pct: Option<f64>,
    /// Escalations, percent of decisions in the window.
    pub escalation_pct: Option<f64>,
    /// PSI of the production model's live scores against its training scores.
    pub psi: Option<f64>,
}

/// `GET /api/metrics/series`: the series in columns (one array per series, aligned on `t_ms`;
/// `null` where a value is not defined).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    /// Sampling period, ms.
    pub interval_ms: u64,
    /// Window of the windowed values (latency quantiles, percentages), seconds.
    pub window_secs: f64,
    /// Sample times, ms since the Unix epoch.
    pub t_ms: Vec<i64>,
    /// See [`SeriesPoint::processed`].
    pub processed: Vec<u64>,
    /// See [`SeriesPoint::throughput_per_min`].
    pub throughput_per_min: Vec<Option<f64>>,
    /// See [`SeriesPoint::epoch_latency_p50_ms`].
    pub epoch_latency_p50_ms: Vec<Option<f64>>,
    /// See [`SeriesPoint::epoch_latency_p99_ms`].
    pub epoch_latency_p99_ms: Vec<Option<f64>>,
    /// See [`SeriesPoint::consumer_lag`].
    pub consumer_lag: Vec<Option<f64>>,
    /// See [`SeriesPoint::dead_letter_pct`].
    pub dead_letter_pct: Vec<Option<f64>>,
    /// See [`SeriesPoint::escalation_pct`].
    pub escalation_pct: Vec<Option<f64>>,
    /// See [`SeriesPoint::psi`].
    pub psi: Vec<Option<f64>>,
}

/// Bounded history of samples and the values derived from them. Pure: times are given.
#[derive(Clone, Debug)]
pub struct SeriesStore {
    capacity: usize,
    window_ms: i64,
    psi_min_samples: u64,
    raw: VecDeque<Raw>,
    points: VecDeque<SeriesPoint>,
    last_waiting: bool,
}

impl SeriesStore {
    /// Keeps `capacity` points (at least enough to cover two windows of `window_secs` at one
    /// sample per second is the caller's choice); windowed values use `window_secs`.
    pub fn new(capacity: usize, window_secs: f64, psi_min_samples: u64) -> SeriesStore {
        SeriesStore {
            capacity: capacity.max(2),
            window_ms: (window_secs * 1000.0).round().max(1.0) as i64,
            psi_min_samples,
            raw: VecDeque::new(),
            points: VecDeque::new(),
            last_waiting: false,
        }
    }

    /// Adds a sample taken at `now_ms`; returns the point and the inputs of the alert rules.
    pub fn push(
        &mut self,
        now_ms: i64,
        m: &MetricsSnapshot,
        models: &ModelsView,
    ) -> (SeriesPoint, AlertInputs) {
        let raw = Raw {
            t_ms: now_ms,
            processed: m.records_processed,
            predictions: m.predictions,
            escalations: m.escalations,
            dead_letters: m.dead_letters_total(),
            epoch_latency: m.epoch_latency_seconds.clone(),
        };
        let throughput_per_min = self.raw.back().and_then(|prev| per_min(prev, &raw));
        let base = self.at_or_before(now_ms - self.window_ms).cloned();
        let (mut p50, mut p99, mut dl_pct, mut esc_pct) = (None, None, None, None);
        if let Some(b) = &base {
            if let Some(d) = raw.epoch_latency.since(&b.epoch_latency) {
                p50 = d.quantile(0.5).map(|s| s * 1000.0);
                p99 = d.quantile(0.99).map(|s| s * 1000.0);
            }
            let dp = raw.processed.saturating_sub(b.processed);
            if dp > 0 {
                dl_pct = Some(
                    raw.dead_letters.saturating_sub(b.dead_letters) as f64 * 100.0 / dp as f64,
                );
            }
            let dpred = raw.predictions.saturating_sub(b.predictions);
            if dpred > 0 {
                esc_pct = Some(
                    raw.escalations.saturating_sub(b.escalations) as f64 * 100.0 / dpred as f64,
                );
            }
        }
        let rate = base.as_ref().and_then(|b| per_min(b, &raw));
        let psi = production_psi(models, self.psi_min_samples);
        let point = SeriesPoint {
            t_ms: now_ms,
            processed: m.records_processed,
            throughput_per_min,
            epoch_latency_p50_ms: p50,
            epoch_latency_p99_ms: p99,
            consumer_lag: m.consumer_lag.map(|l| l as f64),
            dead_letter_pct: dl_pct,
            escalation_pct: esc_pct,
            psi,
        };
        let inputs = AlertInputs {
            rate_per_min: if m.input_waiting { rate } else { None },
            lag: point.consumer_lag,
            dead_letter_pct: dl_pct,
            psi,
        };
        self.last_waiting = m.input_waiting;
        self.raw.push_back(raw);
        self.points.push_back(point.clone());
        while self.raw.len() > self.capacity {
            self.raw.pop_front();
        }
        while self.points.len() > self.capacity {
            self.points.pop_front();
        }
        (point, inputs)
    }

    /// The newest sample taken at or before `t_ms`, or the oldest one if none is that old
    /// (a window not yet full is measured over what there is); `None` with no samples.
    fn at_or_before(&self, t_ms: i64) -> Option<&Raw> {
        self.raw
            .iter()
            .rev()
            .find(|r| r.t_ms <= t_ms)
            .or_else(|| self.raw.front())
    }

    /// Records processed per minute over the last window (`current`) and the window before it
    /// (`previous`, `None` until the history covers two windows).
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        let Some(last) = self.raw.back() else {
            return (None, None);
        };
        let w = self.window_ms;
        let start = self.at_or_before(last.t_ms - w);
        let current = start.and_then(|s| per_min(s, last));
        let previous = match (
            self.raw.iter().rev().find(|r| r.t_ms <= last.t_ms - w),
            self.raw.iter().rev().find(|r| r.t_ms <= last.t_ms - 2 * w),
        ) {
            (Some(mid), Some(first)) => per_min(first, mid),
            _ => None,
        };
        (current, previous)
    }

    /// The latest point.
    pub fn last(&self) -> Option<&SeriesPoint> {
        self.points.back()
    }

    /// Whether the latest sample said input was waiting.
    pub fn input_waiting(&self) -> bool {
        self.last_waiting
    }

    /// The series in columns.
    pub fn view(&self, interval_ms: u64) -> SeriesView {
        let mut v = SeriesView {
            interval_ms,
            window_secs: self.window_ms as f64 / 1000.0,
            ..SeriesView::default()
        };
        for p in &self.points {
            v.t_ms.push(p.t_ms);
            v.processed.push(p.processed);
            v.throughput_per_min.push(p.throughput_per_min);
            v.epoch_latency_p50_ms.push(p.epoch_latency_p50_ms);
            v.epoch_latency_p99_ms.push(p.epoch_latency_p99_ms);
            v.consumer_lag.push(p.consumer_lag);
            v.dead_letter_pct.push(p.dead_letter_pct);
            v.escalation_pct.push(p.escalation_pct);
            v.psi.push(p.psi);
        }
        v
    }
}

fn per_min(a: &Raw, b: &Raw) -> Option<f64> {
    let dt = b.t_ms - a.t_ms;
    (dt > 0).then(|| b.processed.saturating_sub(a.processed) as f64 * 60_000.0 / dt as f64)
}

/// PSI of the production model's live scores (or the only live model's, when the production
/// version is not live) against the training scores.
pub fn production_psi(models: &ModelsView, min_samples: u64) -> Option<f64> {
    let training = models.training_scores.as_ref()?;
    let live = match &models.production {
        Some(p) => models.live.iter().find(|l| &l.version == p),
        None => None,
    }
    .or_else(|| (models.live.len() == 1).then(|| &models.live[0]))?;
    score_psi(training, &live.scores, min_samples)
}

/// `GET /api/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertsView {
    /// Rules evaluated at all (`[alerts] enabled`).
    pub enabled: bool,
    /// Pending and firing alerts.
    pub active: Vec<ActiveAlert>,
    /// Every rule with its latest value.
    pub rules: Vec<RuleStatus>,
    /// The latest fire/clear events, oldest first (at most 100).
    pub events: Vec<AlertEvent>,
}

const MAX_EVENTS: usize = 100;

struct Inner {
    store: SeriesStore,
    alerts: AlertEvaluator,
    events: VecDeque<AlertEvent>,
}

/// The shared monitor of a server: series and alerts behind one lock.
pub struct Monitor {
    interval_ms: u64,
    inner: Mutex<Inner>,
}

impl Monitor {
    /// A monitor keeping `capacity` samples taken every `interval_ms`.
    pub fn new(interval_ms: u64, capacity: usize, alerts: AlertsConfig) -> Monitor {
        // Keep at least two rate windows, so the KPI can compare with the previous period.
        let per_window = (alerts.window_secs * 1000.0 / interval_ms.max(1) as f64).ceil() as usize;
        let capacity = capacity.max(2 * per_window + 2);
        Monitor {
            interval_ms,
            inner: Mutex::new(Inner {
                store: SeriesStore::new(capacity, alerts.window_secs, alerts.psi_min_samples),
                alerts: AlertEvaluator::new(alerts),
                events: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a sample, evaluates the rules, logs and returns what fired or cleared.
    pub fn record(&self, now_ms: i64, m: &MetricsSnapshot, models: &ModelsView) -> Vec<AlertEvent> {
        let mut g = self.lock();
        let (_, inputs) = g.store.push(now_ms, m, models);
        let events = g.alerts.step(now_ms, &inputs);
        for e in &events {
            log_event(e);
            if g.events.len() >= MAX_EVENTS {
                g.events.pop_front();
            }
            g.events.push_back(e.clone());
        }
        events
    }

    /// The time series.
    pub fn series(&self) -> SeriesView {
        self.lock().store.view(self.interval_ms)
    }

    /// Rate per minute over the last window and the one before.
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        self.lock().store.rates()
    }

    /// Whether the latest sample said input was waiting.
    pub fn input_waiting(&self) -> bool {
        self.lock().store.input_waiting()
    }

    /// The latest PSI.
    pub fn last_psi(&self) -> Option<f64> {
        self.lock().store.last().and_then(|p| p.psi)
    }

    /// The alerts answer.
    pub fn alerts(&self) -> AlertsView {
        let g = self.lock();
        AlertsView {
            enabled: g.alerts.config().enabled,
            active: g.alerts.active(),
            rules: g.alerts.rules(),
            events: g.events.iter().cloned().collect(),
        }
    }

    /// Whether each rule is firing, for `/metrics`.
    pub fn firing(&self) -> Vec<(AlertName, bool)> {
        let g = self.lock();
        AlertName::ALL
            .into_iter()
            .map(|n| (n, g.alerts.state(n) == AlertState::Firing))
            .collect()
    }
}

fn log_event(e: &AlertEvent) {
    match e {
        AlertEvent::Fired {
            name,
            value,
            threshold,
            since_ms,
            ..
        } => {
            tracing::warn!(alert = %name, value, threshold, since_ms, "alert firing");
        }
        AlertEvent::Cleared {
            name,
            value,
            threshold,
            since_ms,
            ..
        } => {
            tracing::info!(alert = %name, value = ?value, threshold, since_ms, "alert cleared");
        }
    }
}
