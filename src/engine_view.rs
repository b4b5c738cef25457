//! [`LiveView`]: the [`EngineView`] of a running engine (pipelines' live state + the model
//! registry), as the HTTP layer reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use complaintflow_models::Registry;
use complaintflow_pipelines as pl;
use pl::EngineClient;

use crate::http::view::{
    AggregateAnswer, AggregateRow, Dimension, EngineView, Health, HealthStatus, HistogramSnapshot,
    HistoryView, LiveModel, MetricsSnapshot, ModelVersion, ModelsView, RetrainError,
    RetrainRequest, RetrainTicket,
};

/// An [`EngineView`] over a running engine. `cmd::run` creates it after `start` and moves
/// its [`status`](LiveView::set_status) along the job's lifecycle.
pub struct LiveView {
    client: EngineClient,
    registry: Registry,
    source: String,
    status: Mutex<(HealthStatus, Option<String>)>,
    tickets: AtomicU64,
}

impl LiveView {
    /// A view of the engine behind `client`, reading model versions from `registry`;
    /// `source` describes the input (`file:PATH`, `kafka:TOPIC@BROKERS`).
    pub fn new(client: EngineClient, registry: Registry, source: impl Into<String>) -> LiveView {
        LiveView {
            client,
            registry,
            source: source.into(),
            status: Mutex::new((HealthStatus::Running, None)),
            tickets: AtomicU64::new(0),
        }
    }

    /// Sets the lifecycle state `/health` reports (with a message when draining or failed).
    pub fn set_status(&self, status: HealthStatus, message: Option<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = (status, message);
    }
}

fn dimension(by: Dimension) -> pl::Dimension {
    match by {
        Dimension::Product => pl::Dimension::Product,
        Dimension::State => pl::Dimension::State,
        Dimension::Company => pl::Dimension::Company,
        Dimension::Issue => pl::Dimension::Issue,
        Dimension::Hour => pl::Dimension::Hour,
    }
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl EngineView for LiveView {
    fn health(&self) -> Health {
        let st = self.client.state();
        let (status, message) = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Health {
            status,
            uptime_secs: st.started.elapsed().as_secs_f64(),
            workers: st.workers,
            processes: st.processes,
            source: self.source.clone(),
            epoch: st.snapshot().last_complete_epoch,
            message,
        }
    }

    fn aggregates(&self, by: Dimension, top: Option<usize>) -> AggregateAnswer {
        let a = self.client.state().aggregates(dimension(by), top);
        AggregateAnswer {
            by,
            as_of: a.as_of,
            rows: a
                .rows
                .into_iter()
                .map(|r| AggregateRow {
                    key: r.key,
                    count: non_negative(r.count),
                    escalations: non_negative(r.escalations),
                    escalation_rate: r.escalation_rate,
                    mean_score: r.mean_score,
                })
                .collect(),
        }
    }

    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        self.client
            .state()
            .recent(limit)
            .iter()
            .filter_map(|d| serde_json::to_value(d).ok())
            .collect()
    }

    fn models(&self) -> ModelsView {
        let st = self.client.state();
        let versions = self.registry.list().unwrap_or_default();
        let production = versions
            .iter()
            .find(|v| v.stage == complaintflow_models::Stage::Production)
            .map(|v| v.version.clone());
        let by_model = st.snapshot().predictions_by_model;
        let hist = st.score_hist.lock().map(|h| h.clone()).unwrap_or_default();
        // The models `score` holds now: the newest production model and any candidate
        // sent after it.
        let serving = st.models();
        let from = serving
            .iter()
            .rposition(|m| m.role == "production")
            .unwrap_or(0);
        let live_models = &serving[from.min(serving.len())..];
        let candidate_share: f64 = live_models.iter().filter_map(|m| m.fraction).sum();
        let live = live_models
            .iter()
            .map(|m| {
                let scores = hist
                    .get(&m.version)
                    .and_then(|bins| {
                        let sum = bins
                            .iter()
                            .enumerate()
                            .map(|(i, n)| (i as f64 + 0.5) / 10.0 * *n as f64)
                            .sum();
                        HistogramSnapshot::scores_from_bins(bins, sum)
                    })
                    .unwrap_or_else(HistogramSnapshot::scores);
                LiveModel {
                    version: m.version.clone(),
                    share: m.fraction.unwrap_or((1.0 - candidate_share).max(0.0)),
                    predictions: by_model.get(&m.version).copied().unwrap_or(0),
                    scores,
                }
            })
            .collect();
        ModelsView {
            production,
            versions: versions
                .iter()
                .map(|v| ModelVersion {
                    version: v.version.clone(),
                    stage: v.stage.to_string(),
                    test_auc: v.test_metrics.auc_roc,
                    created_at: Some(v.created_at.clone()),
                })
                .collect(),
            live,
            training_scores: None,
            retraining: st.retrain_log(),
        }
    }

    fn metrics(&self) -> MetricsSnapshot {
        let st = self.client.state();
        let m = st.snapshot();
        let mut latency = HistogramSnapshot::default();
        for l in st
            .epoch_latency
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
        {
            latency.observe(l);
        }
        let consumer_lag = *st.consumer_lag.lock().unwrap_or_else(|p| p.into_inner());
        let checkpoint_age_secs = st
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed().as_secs_f64());
        MetricsSnapshot {
            records_in: m.records_in,
            parsed: m.parsed,
            records_processed: m.predictions + m.dead_letters,
            predictions: m.predictions,
            escalations: m.escalations,
            dead_letters: m.dead_letters_by_kind,
            epochs_completed: m.epochs,
            epoch_latency_seconds: latency,
            consumer_lag,
            input_waiting: st.input_waiting.load(Ordering::Relaxed),
            checkpoint_age_secs,
        }
    }

    fn history(&self) -> HistoryView {
        HistoryView::default()
    }

    fn retrain(&self, req: RetrainRequest) -> Result<RetrainTicket, RetrainError> {
        let format_name = req.format.clone().unwrap_or_else(|| "auto".to_string());
        let format: complaintflow_datasets::Format = format_name
            .parse()
            .map_err(|e| RetrainError::Invalid(format!("format {format_name:?}: {e}")))?;
        let r = pl::RetrainRequest {
            path: req.path.clone().into(),
            format,
            train_config: None,
            ab_fraction: None,
        };
        match self.client.request_retrain(r) {
            Ok(()) => Ok(RetrainTicket {
                id: format!(
                    "retrain-{}",
                    self.tickets.fetch_add(1, Ordering::Relaxed) + 1
                ),
                path: req.path,
                format: format_name,
                accepted_ms: crate::http::now_ms(),
            }),
            Err(pl::EngineError::Config(m)) => Err(RetrainError::Invalid(m)),
            Err(e) => Err(RetrainError::Busy(e.to_string())),
        }
    }
}
