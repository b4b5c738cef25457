//! [`LiveView`]: the [`EngineView`] of a running engine (pipelines' live state + the model
//! registry), as the HTTP layer reads it.
//!
//! Everything but the training profile is read from the engine's
//! [`EngineState`](complaintflow_pipelines::EngineState) under short locks: aggregates
//! (complete as of an epoch), recent decisions, counters, the cumulative epoch-latency
//! histogram, live score histograms with exact sums per version.
//!
//! **Training profile.** The drift alert and the volume chart need the production model's
//! training data: its scores on it ([`ModelsView::training_scores`]) and its complaints by
//! month × product ([`HistoryView::training`]). Neither is stored by training, so the view
//! computes them **once per model version, on a background thread**, from the file the
//! registry recorded (`metadata.json` → `data.path`): it reads the file, keeps the complaints
//! labelled under the version's label policy, reconstructs the training split and scores it
//! with the version's model. The split is checked against the registry's row count
//! (`rows.train`): the hash split at [`LiveView::with_train_fraction`] (default `0.75`, the
//! training default) first, then the temporal split (earliest `rows.train` labelled
//! complaints); when neither matches, every labelled complaint of the file is used and the
//! profile says so. Until the profile is ready (or when the file is gone) `training_scores`
//! is `null` and `training` is empty; [`HistoryView::training_source`] tells why.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use complaintflow_datasets::split::is_train;
use complaintflow_datasets::{read_path, Format, ValidationOptions};
use complaintflow_models::{Registry, SparseFeatures, VersionMetadata};
use complaintflow_pipelines as pl;
use pl::EngineClient;

use crate::http::view::{
    AggregateAnswer, DataflowView, Dimension, EngineView, Health, HealthStatus, HistogramSnapshot,
    HistoryView, LiveModel, MetricsSnapshot, ModelVersion, ModelsView, RetrainError,
    RetrainRequest, RetrainTicket, VolumePoint,
};

/// The production model's training data, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingProfile {
    /// Model version.
    pub version: String,
    /// The training file and how its training rows were found, human-readable.
    pub source: String,
    /// Training rows scored.
    pub rows: u64,
    /// The version's scores on them.
    pub scores: HistogramSnapshot,
    /// Training complaints by month received × product, by month then product.
    pub volume: Vec<VolumePoint>,
    /// Training complaints by state (`(missing)` when absent), for the drift of the live
    /// state mix.
    pub states: BTreeMap<String, u64>,
}

/// Why a training profile could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The registry has no usable record of the version.
    #[error("model {version}: {message}")]
    Registry {
        /// Version.
        version: String,
        /// What went wrong.
        message: String,
    },
    /// The registry does not say which file the version was trained on.
    #[error("model {0}: the registry does not record its training file")]
    NoDataPath(String),
    /// The training file cannot be read.
    #[error("training file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The file has no labelled complaint.
    #[error("training file {0} has no labelled complaint")]
    Empty(String),
}

#[derive(Clone, Debug)]
enum Profile {
    Computing,
    Ready(Arc<TrainingProfile>),
    Failed(String),
}

/// An [`EngineView`] over a running engine. `cmd::run` creates it after `start` and moves
/// its [`status`](LiveView::set_status) along the job's lifecycle.
pub struct LiveView {
    client: EngineClient,
    registry: Registry,
    source: String,
    status: Mutex<(HealthStatus, Option<String>)>,
    tickets: AtomicU64,
    validation: ValidationOptions,
    train_fraction: f64,
    profiles: Arc<Mutex<HashMap<String, Profile>>>,
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
            validation: ValidationOptions::default(),
            train_fraction: complaintflow_models::TrainConfig::default().train_fraction,
            profiles: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Record validation used to read training files for the training profile (default:
    /// [`ValidationOptions::default`]; pass the `[data]` configuration).
    pub fn with_validation(mut self, v: ValidationOptions) -> LiveView {
        self.validation = v;
        self
    }

    /// The `train_fraction` the hash split of training used (default `0.75`; pass
    /// `[train] train_fraction`). Only used to reconstruct training splits.
    pub fn with_train_fraction(mut self, f: f64) -> LiveView {
        self.train_fraction = f;
        self
    }

    /// Sets the lifecycle state `/health` reports (with a message when draining or failed).
    pub fn set_status(&self, status: HealthStatus, message: Option<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = (status, message);
    }

    /// The training profile of `version`: `Ok(Some)` when ready, `Ok(None)` while it is being
    /// computed (the first call starts the computation on a background thread), `Err` with the
    /// reason when it cannot be computed.
    pub fn training_profile(&self, version: &str) -> Result<Option<Arc<TrainingProfile>>, String> {
        let mut profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        match profiles.get(version) {
            Some(Profile::Ready(p)) => return Ok(Some(Arc::clone(p))),
            Some(Profile::Failed(e)) => return Err(e.clone()),
            Some(Profile::Computing) => return Ok(None),
            None => {}
        }
        profiles.insert(version.to_string(), Profile::Computing);
        drop(profiles);
        let (registry, version_s, validation, fraction, store) = (
            self.registry.clone(),
            version.to_string(),
            self.validation.clone(),
            self.train_fraction,
            Arc::clone(&self.profiles),
        );
        let spawned = std::thread::Builder::new()
            .name("training-profile".into())
            .spawn(move || {
                let t0 = std::time::Instant::now();
                let result = compute_profile(&registry, &version_s, &validation, fraction);
                let entry = match result {
                    Ok(p) => {
                        tracing::info!(version = %p.version, rows = p.rows, source = %p.source, secs = t0.elapsed().as_secs_f64(), "training profile ready (scores of the production model on its training data)");
                        Profile::Ready(Arc::new(p))
                    }
                    Err(e) => {
                        tracing::warn!(version = %version_s, "no training profile: {e}");
                        Profile::Failed(e.to_string())
                    }
                };
                store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(version_s, entry);
            });
        if let Err(e) = spawned {
            let msg = format!("cannot start the training-profile thread: {e}");
            self.profiles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(version.to_string(), Profile::Failed(msg.clone()));
            return Err(msg);
        }
        Ok(None)
    }

    /// The registry's production version, or else the newest production model `score` holds.
    fn production_version(&self, versions: &[VersionMetadata]) -> Option<String> {
        versions
            .iter()
            .find(|v| v.stage == complaintflow_models::Stage::Production)
            .map(|v| v.version.clone())
            .or_else(|| {
                self.client
                    .state()
                    .models()
                    .iter()
                    .rev()
                    .find(|m| m.role == "production")
                    .map(|m| m.version.clone())
            })
    }
}

/// One labelled complaint of a training file, as the profile needs it.
struct Row {
    date: chrono::NaiveDate,
    id: u64,
    product: u32,
    score: f64,
    hash_train: bool,
    state: Option<&'static str>,
}

/// Computes a version's [`TrainingProfile`]. See the [module docs](self).
pub fn compute_profile(
    registry: &Registry,
    version: &str,
    validation: &ValidationOptions,
    train_fraction: f64,
) -> Result<TrainingProfile, ProfileError> {
    let reg_err = |e: complaintflow_models::ModelError| ProfileError::Registry {
        version: version.to_string(),
        message: e.to_string(),
    };
    let meta = registry.get(version).map_err(reg_err)?;
    let path = meta
        .data
        .path
        .clone()
        .ok_or_else(|| ProfileError::NoDataPath(version.to_string()))?;
    let model = registry.load_model(version).map_err(reg_err)?;
    let read_err = |message: String| ProfileError::Read {
        path: path.clone(),
        message,
    };
    if !Path::new(&path).is_file() {
        return Err(read_err(
            "not found (the registry records it as given at training time)".into(),
        ));
    }
    let policy = meta.label_policy;
    let mut products: Vec<String> = Vec::new();
    let mut product_ids: HashMap<String, u32> = HashMap::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut buf = SparseFeatures::new();
    let records = read_path(Path::new(&path), Format::Auto, validation)
        .map_err(|e| read_err(e.to_string()))?;
    for c in records.filter_map(Result::ok) {
        if policy.label(&c).is_none() {
            continue;
        }
        let p = c.product.as_deref().unwrap_or("(missing)");
        let pid = match product_ids.get(p) {
            Some(i) => *i,
            None => {
                let i = products.len() as u32;
                products.push(p.to_string());
                product_ids.insert(p.to_string(), i);
                i
            }
        };
        rows.push(Row {
            date: c.date_received,
            id: c.complaint_id.0,
            product: pid,
            score: model.score(&c, &mut buf),
            hash_train: is_train(c.complaint_id, train_fraction),
            state: c.state.map(|s| s.code()),
        });
    }
    if rows.is_empty() {
        return Err(ProfileError::Empty(path));
    }
    let want = meta.rows.train;
    let hash_n = rows.iter().filter(|r| r.hash_train).count() as u64;
    let file = PathBuf::from(&path)
        .file_name()
        .map_or_else(|| path.clone(), |f| f.to_string_lossy().into_owned());
    let (keep, how): (Vec<&Row>, String) = if hash_n == want {
        (
            rows.iter().filter(|r| r.hash_train).collect(),
            format!("hash split {train_fraction}"),
        )
    } else if want > 0 && want < rows.len() as u64 && rows.len() as u64 == want + meta.rows.test {
        let mut sorted: Vec<&Row> = rows.iter().collect();
        sorted.sort_by_key(|r| (r.date, r.id));
        sorted.truncate(want as usize);
        (sorted, "temporal split".to_string())
    } else {
        (
            rows.iter().collect(),
            format!(
                "all {} labelled complaints: the split could not be reconstructed (registry: {want} training rows)",
                rows.len()
            ),
        )
    };
    let mut scores = HistogramSnapshot::scores();
    let mut volume: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for r in &keep {
        scores.observe(r.score);
        *states
            .entry(r.state.unwrap_or("(missing)").to_string())
            .or_default() += 1;
        *volume
            .entry((r.date.format("%Y-%m").to_string(), r.product))
            .or_default() += 1;
    }
    let volume = volume
        .into_iter()
        .map(|((month, p), count)| VolumePoint {
            month,
            product: products
                .get(p as usize)
                .cloned()
                .unwrap_or_else(|| "(missing)".into()),
            count,
        })
        .collect();
    Ok(TrainingProfile {
        version: version.to_string(),
        source: format!(
            "{file}: {} training complaints of {version} ({how})",
            keep.len()
        ),
        rows: keep.len() as u64,
        scores,
        volume,
        states,
    })
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
        // The engine's answer is the contract type: no conversion.
        self.client.state().aggregates(by, top)
    }

    fn recent(&self, limit: usize) -> Vec<serde_json::Value> {
        self.client
            .state()
            .recent(limit)
            .iter()
            .filter_map(|d| serde_json::from_slice(&d.json).ok())
            .collect()
    }

    fn models(&self) -> ModelsView {
        let st = self.client.state();
        let versions = self.registry.list().unwrap_or_default();
        let production = self.production_version(&versions);
        let by_model = st.snapshot().predictions_by_model;
        let stats = st.score_stats();
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
            .map(|m| LiveModel {
                version: m.version.clone(),
                share: m.fraction.unwrap_or((1.0 - candidate_share).max(0.0)),
                predictions: by_model.get(&m.version).copied().unwrap_or(0),
                scores: stats
                    .get(&m.version)
                    .map_or_else(HistogramSnapshot::scores, pl::state::ScoreStats::histogram),
            })
            .collect();
        let training_scores = production
            .as_deref()
            .and_then(|v| self.training_profile(v).ok().flatten())
            .map(|p| p.scores.clone());
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
            training_scores,
            retraining: st.retrain_log(),
        }
    }

    fn metrics(&self) -> MetricsSnapshot {
        let st = self.client.state();
        let m = st.snapshot();
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
            epoch_latency_seconds: st.epoch_latency_histogram(),
            consumer_lag,
            input_waiting: st.input_waiting.load(Ordering::Relaxed),
            checkpoint_age_secs,
        }
    }

    fn history(&self) -> HistoryView {
        let live_ans = self
            .client
            .state()
            .aggregates(pl::Dimension::MonthProduct, None);
        let mut live: Vec<VolumePoint> = live_ans
            .rows
            .into_iter()
            .filter_map(|r| {
                let (month, product) = pl::state::split_month_product(&r.key)?;
                Some(VolumePoint {
                    month: month.to_string(),
                    product: product.to_string(),
                    count: r.count,
                })
            })
            .collect();
        live.sort_by(|a, b| (&a.month, &a.product).cmp(&(&b.month, &b.product)));
        let versions = self.registry.list().unwrap_or_default();
        let (training_source, training) = match self.production_version(&versions) {
            None => (Some("no production model".to_string()), Vec::new()),
            Some(v) => match self.training_profile(&v) {
                Ok(Some(p)) => (Some(p.source.clone()), p.volume.clone()),
                Ok(None) => (
                    Some(format!("reading the training data of {v}…")),
                    Vec::new(),
                ),
                Err(e) => (Some(format!("training data unavailable: {e}")), Vec::new()),
            },
        };
        HistoryView {
            training_source,
            training,
            live,
            as_of: live_ans.as_of,
        }
    }

    fn dataflow(&self) -> DataflowView {
        self.client.state().dataflow.snapshot()
    }

    fn quality(&self) -> crate::http::view::QualityReport {
        let mut q = self.client.state().quality_report();
        // Drift: the production model's live scores, products and states against its
        // training data (once the training profile is computed).
        let versions = self.registry.list().unwrap_or_default();
        if let Some(v) = self.production_version(&versions) {
            if let Ok(Some(p)) = self.training_profile(&v) {
                let live = |d: pl::Dimension| -> BTreeMap<String, u64> {
                    self.client
                        .state()
                        .aggregates(d, None)
                        .rows
                        .into_iter()
                        .map(|r| (r.key, r.count))
                        .collect()
                };
                let mut products: BTreeMap<String, u64> = BTreeMap::new();
                for point in &p.volume {
                    *products.entry(point.product.clone()).or_default() += point.count;
                }
                q.drift.product_psi =
                    crate::http::alerts::categorical_psi(&products, &live(pl::Dimension::Product));
                q.drift.state_psi =
                    crate::http::alerts::categorical_psi(&p.states, &live(pl::Dimension::State));
                q.drift.score_psi = crate::http::monitor::production_psi(&self.models(), 1);
            }
        }
        q
    }

    fn retrain(&self, req: RetrainRequest) -> Result<RetrainTicket, RetrainError> {
        let format_name = req.format.clone().unwrap_or_else(|| "auto".to_string());
        let format: Format = format_name
            .parse()
            .map_err(|e| RetrainError::Invalid(format!("format {format_name:?}: {e}")))?;
        if !Path::new(&req.path).is_file() {
            return Err(RetrainError::Invalid(format!(
                "path {:?}: no such file on the engine's host",
                req.path
            )));
        }
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
            Err(pl::EngineError::Config(m)) => Err(RetrainError::Invalid(format!("path: {m}"))),
            Err(e) => Err(RetrainError::Busy(e.to_string())),
        }
    }
}
