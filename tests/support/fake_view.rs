//! `FakeView`: a **test double** of the engine for the HTTP tests. It returns fixed values
//! set by the test and records the arguments the server passed, so a test can check routing
//! and parameter parsing without an engine.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::http::view::{
    AggregateAnswer, AggregateRow, DataflowView, Dimension, EngineView, Health, HealthStatus,
    HistogramSnapshot, HistoryView, LiveModel, MetricsSnapshot, ModelVersion, ModelsView,
    RetrainError, RetrainRequest, RetrainTicket, VolumePoint,
};

/// What the server asked for.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub aggregates: Vec<(Dimension, Option<usize>)>,
    pub recent: Vec<usize>,
    pub retrain: Vec<RetrainRequest>,
}

/// Fixed answers plus a log of calls.
pub struct FakeView {
    pub health: Mutex<Health>,
    pub rows: BTreeMap<Dimension, Vec<AggregateRow>>,
    pub as_of: Option<u64>,
    pub recent: Vec<serde_json::Value>,
    pub models: ModelsView,
    pub metrics: Mutex<MetricsSnapshot>,
    pub history: HistoryView,
    /// What `/api/dataflow` answers (empty unless the test sets it).
    pub dataflow: Mutex<DataflowView>,
    pub retrain_answer: Mutex<Result<(), RetrainError>>,
    pub calls: Mutex<Calls>,
}

pub fn row(key: &str, count: u64, escalations: u64, mean_score: f64) -> AggregateRow {
    AggregateRow {
        key: key.to_string(),
        count,
        escalations,
        escalation_rate: escalations as f64 / count as f64,
        mean_score,
    }
}

impl FakeView {
    /// A view with a few rows per dimension, ten recent decisions (priorities P1, P2, P3 in
    /// turn), one production model with a score histogram, and counters.
    pub fn new() -> FakeView {
        let mut rows = BTreeMap::new();
        rows.insert(
            Dimension::Product,
            vec![
                row("Debt collection", 60, 15, 0.12),
                row("Mortgage", 30, 3, 0.2),
                row("Student loan", 10, 5, 0.08),
            ],
        );
        rows.insert(
            Dimension::State,
            vec![
                row("CA", 50, 10, 0.15),
                row("TX", 40, 12, 0.13),
                row("(missing)", 10, 1, 0.2),
            ],
        );
        rows.insert(
            Dimension::Company,
            vec![
                row("Acme Servicing", 70, 20, 0.1),
                row("Beta Bank", 30, 3, 0.2),
            ],
        );
        rows.insert(
            Dimension::Issue,
            vec![row("Attempts to collect debt not owed", 100, 23, 0.13)],
        );
        rows.insert(Dimension::Hour, vec![row("2026-11-23T02", 100, 23, 0.13)]);
        let recent = (0..10)
            .map(|i| {
                let priority = ["P1", "P2", "P3"][i % 3];
                serde_json::json!({
                    "complaint_id": format!("{}", 1000 + i),
                    "model_version": "v0001",
                    "score": 0.01 * i as f64,
                    "escalate": i % 3 == 0,
                    "priority": priority,
                    "queue": "collections",
                    "reasons": [format!("reason {i}")],
                    "product": "Debt collection",
                    "state": "CA",
                    "company": "Acme Servicing",
                    "date_received": "2024-01-02",
                    "decided_ms": 1_700_000_000_000i64 + i as i64,
                })
            })
            .collect();
        let mut scores = HistogramSnapshot::scores();
        for (i, c) in [5u64, 20, 30, 20, 10, 5, 4, 3, 2, 1].iter().enumerate() {
            scores.counts[i] = *c;
        }
        scores.sum = 25.0;
        let mut training = HistogramSnapshot::scores();
        training.counts = vec![6, 19, 29, 21, 10, 5, 4, 3, 2, 1];
        let models = ModelsView {
            production: Some("v0001".into()),
            versions: vec![ModelVersion {
                version: "v0001".into(),
                stage: "production".into(),
                test_auc: Some(0.71),
                created_at: Some("2026-11-22T10:00:00Z".into()),
            }],
            live: vec![LiveModel {
                version: "v0001".into(),
                share: 1.0,
                predictions: 100,
                scores,
            }],
            training_scores: Some(training),
            retraining: vec![],
        };
        let mut lat = HistogramSnapshot::default();
        for v in [0.002, 0.004, 0.03, 0.03, 0.2, 1.5] {
            lat.observe(v);
        }
        let metrics = MetricsSnapshot {
            records_in: 110,
            parsed: 104,
            records_processed: 108,
            predictions: 100,
            escalations: 23,
            dead_letters: BTreeMap::from([
                ("malformed_json".to_string(), 6),
                ("missing_field".to_string(), 2),
            ]),
            epochs_completed: 6,
            epoch_latency_seconds: lat,
            consumer_lag: Some(42),
            input_waiting: true,
            checkpoint_age_secs: None,
        };
        let history = HistoryView {
            training_source: Some("train.json".into()),
            training: vec![VolumePoint {
                month: "2023-01".into(),
                product: "Mortgage".into(),
                count: 7,
            }],
            live: vec![VolumePoint {
                month: "2024-01".into(),
                product: "Mortgage".into(),
                count: 30,
            }],
            as_of: Some(6),
        };
        FakeView {
            health: Mutex::new(Health {
                status: HealthStatus::Running,
                uptime_secs: 12.5,
                workers: 2,
                processes: 1,
                source: "file:test.jsonl".into(),
                epoch: Some(6),
                message: None,
            }),
            rows,
            as_of: Some(6),
            recent,
            models,
            metrics: Mutex::new(metrics),
            history,
            dataflow: Mutex::new(DataflowView::default()),
            retrain_answer: Mutex::new(Ok(())),
            calls: Mutex::new(Calls::default()),
        }
    }

    pub fn calls(&self) -> Calls {
        self.calls.lock().unwrap().clone()
    }
}

impl EngineView for FakeView {
    fn health(&self) -> Health {
        self.health.lock().unwrap().clone()
    }

    fn aggregates(&self, by: Dimension, top: Option<usize>) -> AggregateAnswer {
        self.calls.lock().unwrap().aggregates.push((by, top));
        let mut rows = self.rows.get(&by).cloned().unwrap_or_default();
        if let Some(n) = top {
            rows.truncate(n);
        }
        AggregateAnswer {
            by,
            as_of: self.as_of,
            rows,
        }
    }

    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        self.calls.lock().unwrap().recent.push(limit);
        self.recent.iter().take(limit).cloned().collect()
    }

    fn models(&self) -> ModelsView {
        self.models.clone()
    }

    fn metrics(&self) -> MetricsSnapshot {
        self.metrics.lock().unwrap().clone()
    }

    fn history(&self) -> HistoryView {
        self.history.clone()
    }

    fn dataflow(&self) -> DataflowView {
        self.dataflow.lock().unwrap().clone()
    }

    fn retrain(&self, req: RetrainRequest) -> Result<RetrainTicket, RetrainError> {
        self.calls.lock().unwrap().retrain.push(req.clone());
        self.retrain_answer.lock().unwrap().clone()?;
        Ok(RetrainTicket {
            id: "r1".into(),
            path: req.path,
            format: req.format.unwrap_or_else(|| "auto".into()),
            accepted_ms: 1_700_000_000_000,
        })
    }
}
