//! The engine: builds the dataflow on every worker from its plug-ins, runs it on
//! background threads, and exposes the live [`EngineState`] and a control channel
//! (retrain, A/B test, shutdown).
//!
//! ```text
//! Source ─► tap(read) ─► feed(models) ─► parse ─► tap(parsed) ─► dedup ─► score ─► decide
//!    ─► [DecisionOperator …] ─► publish ─┬─► live state (counters, recent, latency)
//!                                        ├─► aggregates (differential) ─► view
//!                                        └─► Sink … (files, Kafka, PostgreSQL, yours)
//!    acknowledgements of all of these ─► completion (checkpoint, commit offsets)
//! ```
//!
//! Three dataflows run on every worker (timely requires the same dataflows, in the same
//! order, everywhere):
//!
//! 1. **control** — an input fed by global worker 0 and broadcast to every worker of every
//!    process: `Stop` makes every source stop at its next activation (cluster-wide shutdown).
//! 2. **main** ([`graph`]) — the graph above. Control lives in it: the model feed is a
//!    pass-through on the raw stream whose model capability follows that stream's frontier
//!    (so `score` releases an epoch as soon as every source has closed it), and completion is
//!    an operator on the acknowledgement streams that writes checkpoints and commits source
//!    offsets when its frontier moves.
//! 3. **retrain** — global worker 0 reads a historical file into an input, the same
//!    `parse_complaints` operator validates it, complaints are gathered on worker 0, and once
//!    the request's epoch is complete a `std::thread` trains, registers the version and hands
//!    it back; the worker puts it into the model feed, so `score` switches at one epoch on
//!    every worker. Nothing restarts; no record is lost.
//!
//! The [`driver`] steps the worker (`step_or_park(1 ms)`, never blocking) and serves the
//! control channel; it reads no state of the main dataflow but a probe that says when the
//! source has finished.
//!
//! **Plug-ins.** [`Engine::builder`] takes the source, any number of [`Sink`]s and
//! [`DecisionOperator`]s ([`crate::plugin`]); the JSON Lines files of
//! [`EngineConfig::predictions_path`] / [`EngineConfig::dead_letters_path`] are a [`Sink`]
//! too ([`JsonlFiles`]). With a [`resumable`](Source::resumable) source (Kafka) and
//! [`EngineConfig::checkpoints`], global worker 0 checkpoints the next offset of every
//! partition and the aggregate totals of the newest complete epoch (see
//! [`crate::checkpoint`]), and a start resumes from the newest checkpoint.

mod closed_loop;
mod control;
mod driver;
pub mod graph;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use complaintflow_datasets::replay::Rate;
use complaintflow_datasets::{Format, LabelPolicy, ValidationOptions};
use complaintflow_models::{Model, TrainConfig};
use complaintflow_operators::kafka::CheckpointStore;
use complaintflow_operators::prelude::*;
use serde::{Deserialize, Serialize};
use timely::CommunicationConfig;

use crate::aggregate::{totals_from_json, Seed};
use crate::checkpoint::CheckpointConfig;
use crate::files::JsonlFiles;
use crate::plugin::{DecisionOperator, Sink, Source};
use crate::quality::MonitoringConfig;
use crate::sources::{FileSource, ReplaySource};
use crate::state::{lock, EngineState, ServingModel};

pub use control::ModelFeed;

/// Engine configuration. [`EngineConfig::new`] gives the documented defaults.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads in this process. Default 1. Use at most one per core: timely slows
    /// down ×30 with more busy threads than cores (`start` logs a warning).
    pub workers: usize,
    /// Processes in the cluster (1 = this process alone). Default 1.
    pub processes: usize,
    /// This process's index, `0..processes`. Default 0.
    pub process: usize,
    /// `host:port` of every process, entry i = process i (a hostfile's lines). Empty
    /// (default): `127.0.0.1:2101+i`.
    pub addresses: Vec<String>,
    /// In a cluster, how long this process waits for every peer to connect at start before it
    /// stops with an error naming the cluster's addresses (timely itself would wait forever,
    /// e.g. for a peer that failed to start). Default 60 s.
    pub join_timeout: Duration,
    /// Ids the duplicate check remembers over the whole cluster: at least this many of the
    /// latest admitted ids (per worker, its share in two generations; memory ≤ 2 × this ×
    /// ≈ 10 bytes). A repeat of an older id is scored again. Default 10,000,000.
    pub dedup_window: usize,
    /// Epochs (`max_records_per_epoch`, `trigger_interval`), rate, read batch and file
    /// split of the source.
    pub policy: SourcePolicy,
    /// Record validation.
    pub validation: ValidationOptions,
    /// Decision rules.
    pub decision: DecisionRules,
    /// Predictions JSON Lines file (written by global worker 0), or none.
    pub predictions_path: Option<PathBuf>,
    /// Dead letters JSON Lines file (written by global worker 0), or none.
    pub dead_letters_path: Option<PathBuf>,
    /// Decisions kept for `/api/predictions/recent`. Default 1,000.
    pub recent_capacity: usize,
    /// Exit when the source is exhausted (and no retraining is running); otherwise keep
    /// running until [`EngineHandle::shutdown`]. Default `false`.
    pub once: bool,
    /// Model registry (retrained versions are registered there; A/B candidates loaded).
    pub registry_dir: PathBuf,
    /// Default training configuration of retraining requests.
    pub train: TrainConfig,
    /// Sinks attached to the engine's outputs (e.g. Kafka topics, PostgreSQL), besides the
    /// JSON Lines files. An epoch counts as complete (and may be checkpointed) only once
    /// every sink has acknowledged it. Default none; [`EngineBuilder::sink`] adds one.
    pub sinks: Vec<Arc<dyn Sink>>,
    /// User operators on the decision stream, in order ([`EngineBuilder::operator`]).
    pub operators: Vec<Arc<dyn DecisionOperator>>,
    /// Checkpoints and resume (only with a source that is
    /// [`resumable`](SourceFactory::resumable)). Default none.
    pub checkpoints: Option<CheckpointConfig>,
    /// Outcome records (`run --outcomes`): joined with the predictions by complaint id for the
    /// live quality metrics ([`crate::quality`]). Default none.
    pub outcomes: Option<Arc<dyn Source>>,
    /// How outcomes become labels. Default: the initial model's policy (`relief`).
    pub label_policy: LabelPolicy,
    /// Thresholds of the monitoring actions and the closed retraining loop.
    pub monitoring: MonitoringConfig,
}

impl EngineConfig {
    /// Defaults, with the registry at `registry_dir`.
    ///
    /// ```
    /// let cfg = complaintflow_pipelines::EngineConfig::new("state/registry");
    /// assert_eq!((cfg.workers, cfg.processes, cfg.policy.max_records_per_epoch), (1, 1, 10_000));
    /// ```
    pub fn new(registry_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            workers: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
            join_timeout: Duration::from_secs(60),
            dedup_window: 10_000_000,
            policy: SourcePolicy {
                clock_epochs: true,
                ..SourcePolicy::default()
            },
            validation: ValidationOptions::default(),
            decision: DecisionRules::default(),
            predictions_path: None,
            dead_letters_path: None,
            recent_capacity: 1_000,
            once: false,
            registry_dir: registry_dir.into(),
            train: TrainConfig::default(),
            sinks: Vec::new(),
            operators: Vec::new(),
            checkpoints: None,
            outcomes: None,
            label_policy: LabelPolicy::default(),
            monitoring: MonitoringConfig::default(),
        }
    }
}

/// Where complaints come from.
#[derive(Clone)]
pub enum SourceSpec {
    /// A file in any supported format, as fast as allowed by `EngineConfig::rate`.
    File {
        /// Path.
        path: PathBuf,
        /// Format (`Auto` to detect).
        format: Format,
    },
    /// A replay of a file's records, or of `resample` resampled copies of its complaints,
    /// at `rate`.
    Replay {
        /// Path.
        path: PathBuf,
        /// Format.
        format: Format,
        /// Rate over all workers.
        rate: Rate,
        /// `Some(n)`: emit `n` resampled copies (fresh synthetic ids) instead of the file.
        resample: Option<u64>,
        /// Resampler seed.
        seed: u64,
    },
    /// A source plugged in from outside this crate.
    Custom(Arc<dyn Source>),
}

impl SourceSpec {
    /// The source plug-in.
    pub fn into_source(self) -> Arc<dyn Source> {
        match self {
            SourceSpec::File { path, format } => Arc::new(FileSource { path, format }),
            SourceSpec::Replay {
                path,
                format,
                rate,
                resample,
                seed,
            } => Arc::new(ReplaySource {
                path,
                format,
                rate,
                resample,
                seed,
            }),
            SourceSpec::Custom(s) => s,
        }
    }
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::File { path, format } => write!(f, "file:{} ({format})", path.display()),
            SourceSpec::Replay {
                path,
                rate,
                resample,
                ..
            } => write!(
                f,
                "replay:{} at {rate} (resample {resample:?})",
                path.display()
            ),
            SourceSpec::Custom(c) => write!(f, "{}", c.describe()),
        }
    }
}

/// A request to retrain from a historical file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainRequest {
    /// The file (read by process 0).
    pub path: PathBuf,
    /// Its format.
    #[serde(default)]
    pub format: Format,
    /// Training configuration; `None` = the engine's.
    #[serde(default)]
    pub train_config: Option<TrainConfig>,
    /// `None`: the new version is promoted and replaces production. `Some(f)`: it stays a
    /// candidate and scores the share `f` of complaints (A/B).
    #[serde(default)]
    pub ab_fraction: Option<f64>,
}

/// Messages to a running engine (through [`EngineHandle::control`]).
#[derive(Debug)]
pub enum Control {
    /// Retrain; the new version is registered and swapped in.
    Retrain(Box<RetrainRequest>),
    /// Start an A/B test: registry version `version` scores the share `fraction` of
    /// complaints from the current epoch on (until a new production model).
    AbTest {
        /// Registry version of the candidate.
        version: String,
        /// Share of complaints, 0–1.
        fraction: f64,
    },
    /// Stop every process: finish the open epoch, flush, exit.
    Shutdown,
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad configuration.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// Timely could not start (e.g. cluster peers unreachable).
    #[error("the dataflow could not start: {0}")]
    Start(String),
    /// A worker failed.
    #[error("a dataflow worker failed: {0}")]
    Worker(String),
    /// The engine has stopped (or this is not process 0).
    #[error("the engine cannot take this request: {0}")]
    Unavailable(String),
    /// The source failed (e.g. its topic does not exist).
    #[error("the source failed: {0}")]
    Source(String),
    /// A sink could not be set up.
    #[error("an output sink failed: {0}")]
    Sink(String),
}

/// What a finished run did (process 0 sees every output; other processes see none).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// Records read by the sources.
    pub records_in: u64,
    /// Records that parsed and validated.
    pub parsed: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Dead letters by kind.
    pub dead_letters_by_kind: BTreeMap<String, u64>,
    /// Decisions written.
    pub predictions: u64,
    /// Escalations.
    pub escalations: u64,
    /// Decisions by model version.
    pub by_model: BTreeMap<String, u64>,
    /// Epochs completed.
    pub epochs: u64,
    /// Median epoch latency, seconds.
    pub epoch_latency_p50_seconds: Option<f64>,
    /// 99th percentile epoch latency, seconds.
    pub epoch_latency_p99_seconds: Option<f64>,
    /// Wall time, seconds.
    pub elapsed_secs: f64,
    /// Worker threads per process actually used.
    pub workers: usize,
}

/// A running engine.
pub struct EngineHandle {
    state: Arc<EngineState>,
    control: Mutex<Sender<Control>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), EngineError>>,
    process: usize,
    fatal: Fatal,
    resumed: Option<u64>,
}

impl EngineHandle {
    /// The live state (aggregates, recent decisions, counters, models).
    pub fn state(&self) -> Arc<EngineState> {
        Arc::clone(&self.state)
    }

    /// A clonable, `Send + Sync` client of this engine (state, retraining, A/B tests,
    /// shutdown) for the HTTP layer and other threads; [`join`](Self::join) stays with the
    /// handle.
    pub fn client(&self) -> EngineClient {
        EngineClient {
            state: Arc::clone(&self.state),
            control: Arc::new(Mutex::new(self.control())),
            stop: Arc::clone(&self.stop),
            process: self.process,
        }
    }

    /// Asks the engine to retrain from `path` with the engine's training configuration and
    /// promote the result (process 0 only). See [`request_retrain`](Self::request_retrain).
    pub fn retrain(&self, path: PathBuf, format: Format) -> Result<(), EngineError> {
        self.request_retrain(RetrainRequest {
            path,
            format,
            train_config: None,
            ab_fraction: None,
        })
    }

    /// Starts an A/B test with registry version `version` on the share `fraction` of
    /// complaints (process 0 only), from the epoch being read when the message arrives.
    pub fn start_ab_test(&self, version: &str, fraction: f64) -> Result<(), EngineError> {
        validate_ab(self.process, fraction)?;
        self.send(Control::AbTest {
            version: version.to_string(),
            fraction,
        })
    }

    /// Asks the engine to retrain (process 0 only). Returns once the request is queued;
    /// progress shows in [`EngineState::retrain_log`] and [`EngineState::models`].
    pub fn request_retrain(&self, req: RetrainRequest) -> Result<(), EngineError> {
        validate_retrain(self.process, &req)?;
        self.send(Control::Retrain(Box::new(req)))
    }

    /// A clonable sender for control messages.
    pub fn control(&self) -> Sender<Control> {
        lock(&self.control).clone()
    }

    fn send(&self, msg: Control) -> Result<(), EngineError> {
        send(&self.control, msg)
    }

    /// Stops reading (on every process when called on process 0); the open epoch is
    /// finished and flushed, then the workers exit. Returns at once: call [`join`](Self::join).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.send(Control::Shutdown);
    }

    /// Whether the workers have exited.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// The epoch of the checkpoint this run resumed from, if any.
    pub fn resumed_from(&self) -> Option<u64> {
        self.resumed
    }

    /// A failure that is stopping the engine (source or sink), if any.
    pub fn failure(&self) -> Option<EngineError> {
        lock(&self.fatal).clone().map(FatalError::into_error)
    }

    /// Waits for the workers to exit (source exhausted with `once`, or after
    /// [`shutdown`](Self::shutdown)).
    pub fn join(self) -> Result<RunSummary, EngineError> {
        match self.thread.join() {
            Ok(r) => r?,
            Err(_) => return Err(EngineError::Worker("the engine thread panicked".into())),
        }
        if let Some(f) = lock(&self.fatal).clone() {
            return Err(f.into_error());
        }
        let m = self.state.snapshot();
        Ok(RunSummary {
            records_in: m.records_in,
            parsed: m.parsed,
            dead_letters: m.dead_letters,
            dead_letters_by_kind: m.dead_letters_by_kind,
            predictions: m.predictions,
            escalations: m.escalations,
            by_model: m.predictions_by_model,
            epochs: m.epochs,
            epoch_latency_p50_seconds: m.epoch_latency_p50_seconds,
            epoch_latency_p99_seconds: m.epoch_latency_p99_seconds,
            elapsed_secs: m.uptime_seconds,
            workers: m.workers,
        })
    }
}

/// A clonable client of a running engine: everything of [`EngineHandle`] but `join`.
#[derive(Clone)]
pub struct EngineClient {
    state: Arc<EngineState>,
    control: Arc<Mutex<Sender<Control>>>,
    stop: Arc<AtomicBool>,
    process: usize,
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient")
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl EngineClient {
    /// The live state.
    pub fn state(&self) -> Arc<EngineState> {
        Arc::clone(&self.state)
    }

    /// This process's index in the cluster.
    pub fn process(&self) -> usize {
        self.process
    }

    /// See [`EngineHandle::request_retrain`].
    pub fn request_retrain(&self, req: RetrainRequest) -> Result<(), EngineError> {
        validate_retrain(self.process, &req)?;
        send(&self.control, Control::Retrain(Box::new(req)))
    }

    /// See [`EngineHandle::start_ab_test`].
    pub fn start_ab_test(&self, version: &str, fraction: f64) -> Result<(), EngineError> {
        validate_ab(self.process, fraction)?;
        send(
            &self.control,
            Control::AbTest {
                version: version.to_string(),
                fraction,
            },
        )
    }

    /// See [`EngineHandle::shutdown`].
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = send(&self.control, Control::Shutdown);
    }
}

fn send(control: &Mutex<Sender<Control>>, msg: Control) -> Result<(), EngineError> {
    lock(control)
        .send(msg)
        .map_err(|_| EngineError::Unavailable("the engine has stopped".into()))
}

fn validate_ab(process: usize, fraction: f64) -> Result<(), EngineError> {
    if process != 0 {
        return Err(EngineError::Unavailable(
            "A/B tests are started on process 0".into(),
        ));
    }
    if !(0.0..=1.0).contains(&fraction) {
        return Err(EngineError::Config(format!(
            "A/B fraction {fraction}: must be in [0, 1]"
        )));
    }
    Ok(())
}

fn validate_retrain(process: usize, req: &RetrainRequest) -> Result<(), EngineError> {
    if process != 0 {
        return Err(EngineError::Unavailable(
            "retraining is requested on process 0".into(),
        ));
    }
    if !req.path.is_file() {
        return Err(EngineError::Config(format!(
            "retraining data {} is not a readable file",
            req.path.display()
        )));
    }
    if let Some(f) = req.ab_fraction {
        if !(0.0..=1.0).contains(&f) {
            return Err(EngineError::Config(format!(
                "ab_fraction = {f}: must be in [0, 1]"
            )));
        }
    }
    if let Some(c) = &req.train_config {
        c.validate()
            .map_err(|e| EngineError::Config(e.to_string()))?;
    }
    Ok(())
}

fn communication(cfg: &EngineConfig, workers: usize) -> Result<CommunicationConfig, EngineError> {
    if cfg.processes <= 1 {
        return Ok(if workers == 1 {
            CommunicationConfig::Thread
        } else {
            CommunicationConfig::Process(workers)
        });
    }
    if cfg.process >= cfg.processes {
        return Err(EngineError::Config(format!(
            "process {} is out of range for {} processes (use 0..{})",
            cfg.process,
            cfg.processes,
            cfg.processes - 1
        )));
    }
    let addresses = cluster_addresses(cfg);
    if addresses.len() != cfg.processes {
        return Err(EngineError::Config(format!(
            "the host list has {} addresses but there are {} processes: give one host:port per process",
            addresses.len(),
            cfg.processes
        )));
    }
    install_lost_peer_hook(cfg.process, addresses.clone());
    Ok(CommunicationConfig::Cluster {
        threads: workers,
        process: cfg.process,
        addresses,
        report: false,
        zerocopy: false,
    })
}

/// `host:port` of every process: the configured list, or `127.0.0.1:2101+i`.
fn cluster_addresses(cfg: &EngineConfig) -> Vec<String> {
    if cfg.addresses.is_empty() {
        (0..cfg.processes)
            .map(|i| format!("127.0.0.1:{}", 2101 + i))
            .collect()
    } else {
        cfg.addresses.clone()
    }
}

/// In a cluster, a peer process that dies (or whose link is cut) makes timely's network
/// threads panic with "timely communication error" while the workers wait for progress that
/// will never come. This hook turns that into one clear error naming the lost peer and ends
/// the process (exit code 70), so every surviving process stops within moments instead of
/// hanging; a restart of the cluster resumes from the newest checkpoint every process has.
fn install_lost_peer_hook(me: usize, addresses: Vec<String>) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if payload.starts_with("timely communication error") {
                let thread = std::thread::current();
                let peer = thread
                    .name()
                    .and_then(|n| n.strip_prefix("timely:recv-").or(n.strip_prefix("timely:send-")))
                    .and_then(|i| i.parse::<usize>().ok());
                let addr = peer
                    .and_then(|p| addresses.get(p))
                    .map_or("?", String::as_str);
                let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
                tracing::error!(process = me, lost_peer = %peer, peer_addr = addr,
                    "lost the connection to a peer process; stopping this process");
                eprintln!(
                    "error: process {me} lost its connection to process {peer} ({addr}): {payload}. \
                     Stopping. Restart every process of the cluster: it resumes from the newest \
                     checkpoint all of them have."
                );
                std::process::exit(70);
            }
            previous(info);
        }));
    });
}

/// Builds and starts an engine: its source, its sinks and user operators, and the initial
/// production model. What `complaintflow run` uses; a library user adds plug-ins the same way.
///
/// ```no_run
/// use std::sync::Arc;
/// use complaintflow_pipelines::{Engine, EngineConfig, JsonlFiles, SourceSpec};
/// let registry = complaintflow_models::Registry::open("state/registry")?;
/// let model = registry.load_production()?;
/// let mut cfg = EngineConfig::new("state/registry");
/// cfg.once = true;
/// let engine = Engine::builder(cfg)
///     .source(SourceSpec::File { path: complaintflow_datasets::bundled_sample_path(), format: Default::default() }.into_source())
///     .sink(Arc::new(JsonlFiles { predictions: Some("state/predictions.jsonl".into()), dead_letters: None }))
///     .start(model)?;
/// let summary = engine.join()?;
/// println!("{} predictions", summary.predictions);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EngineBuilder {
    cfg: EngineConfig,
    source: Option<Arc<dyn Source>>,
    candidates: Vec<(Model, f64)>,
}

/// The engine's entry point: [`Engine::builder`].
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// A builder with configuration `cfg`.
    pub fn builder(cfg: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            cfg,
            source: None,
            candidates: Vec::new(),
        }
    }
}

impl EngineBuilder {
    /// The source (required).
    pub fn source(mut self, source: Arc<dyn Source>) -> EngineBuilder {
        self.source = Some(source);
        self
    }

    /// Adds a sink.
    pub fn sink(mut self, sink: Arc<dyn Sink>) -> EngineBuilder {
        self.cfg.sinks.push(sink);
        self
    }

    /// Adds a user operator on the decision stream (after the ones added before).
    pub fn operator(mut self, op: Arc<dyn DecisionOperator>) -> EngineBuilder {
        self.cfg.operators.push(op);
        self
    }

    /// Starts with an A/B test: `model` scores the share `fraction` (0–1) of complaints
    /// from the first epoch on, beside the production model.
    pub fn candidate(mut self, model: Model, fraction: f64) -> EngineBuilder {
        self.candidates.push((model, fraction));
        self
    }

    /// The configuration, to adjust.
    pub fn config_mut(&mut self) -> &mut EngineConfig {
        &mut self.cfg
    }

    /// Checks everything and starts the workers on background threads, with `initial_model`
    /// as the production model (process 0's is used; other processes may pass the same).
    pub fn start(self, initial_model: Model) -> Result<EngineHandle, EngineError> {
        let source = self
            .source
            .ok_or_else(|| EngineError::Config("no source: call EngineBuilder::source".into()))?;
        launch(self.cfg, source, initial_model, self.candidates)
    }
}

/// Starts the engine with `source` (see [`EngineBuilder`]; this is
/// `Engine::builder(cfg).source(source.into_source()).start(initial_model)`).
pub fn start(
    cfg: EngineConfig,
    source: SourceSpec,
    initial_model: Model,
) -> Result<EngineHandle, EngineError> {
    Engine::builder(cfg)
        .source(source.into_source())
        .start(initial_model)
}

fn launch(
    mut cfg: EngineConfig,
    source: Arc<dyn Source>,
    initial_model: Model,
    candidates: Vec<(Model, f64)>,
) -> Result<EngineHandle, EngineError> {
    cfg.decision
        .validate()
        .map_err(|e| EngineError::Config(e.to_string()))?;
    initial_model
        .validate()
        .map_err(|e| EngineError::Config(format!("initial model: {e}")))?;
    source.check().map_err(EngineError::Config)?;
    if cfg.policy.max_records_per_epoch == 0 {
        return Err(EngineError::Config(
            "max_records_per_epoch must be at least 1".into(),
        ));
    }
    let workers = cfg.workers.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers > cores {
        tracing::warn!(
            workers,
            cores,
            "more worker threads than cores: timely slows down sharply when oversubscribed"
        );
    }
    let mut initial = vec![ModelUpdate {
        model: initial_model,
        role: ModelRole::Production,
    }];
    for (model, fraction) in candidates {
        validate_ab(cfg.process, fraction)?;
        model
            .validate()
            .map_err(|e| EngineError::Config(format!("A/B candidate: {e}")))?;
        initial.push(ModelUpdate {
            model,
            role: ModelRole::Candidate { fraction },
        });
    }
    let communication = communication(&cfg, workers)?;
    if cfg.checkpoints.is_some() && !source.resumable() {
        tracing::warn!(source = %source.describe(), "checkpoints are off: this source cannot resume from positions");
        cfg.checkpoints = None;
    }
    if cfg.predictions_path.is_some() || cfg.dead_letters_path.is_some() {
        let files: Arc<dyn Sink> = Arc::new(JsonlFiles {
            predictions: cfg.predictions_path.clone(),
            dead_letters: cfg.dead_letters_path.clone(),
        });
        cfg.sinks.insert(0, files);
    }
    if let Some(o) = &cfg.outcomes {
        o.check()
            .map_err(|e| EngineError::Config(format!("--outcomes {}: {e}", o.describe())))?;
    }
    cfg.monitoring.validate().map_err(EngineError::Config)?;
    for s in &cfg.sinks {
        s.check()
            .map_err(|e| EngineError::Sink(format!("{}: {e}", s.describe())))?;
    }
    let candidates = Arc::new(read_resume(cfg.checkpoints.as_ref())?);
    let resumed = candidates.last().and_then(|r| r.epoch);
    let barrier = Arc::new(std::sync::Barrier::new(workers));
    let mut state = EngineState::new(cfg.recent_capacity);
    state.workers = workers;
    state.processes = cfg.processes.max(1);
    state.quality_enabled = cfg.outcomes.is_some();
    state.monitoring = cfg.monitoring.clone();
    let state = Arc::new(state);
    if cfg.process == 0 {
        for u in &initial {
            state.note_model(serving(u, 0));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel::<Control>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let config = timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    };
    let process = cfg.process;
    let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
    let fatal: Fatal = Arc::new(Mutex::new(None));
    let fa = Arc::clone(&fatal);
    tracing::info!(source = %source.describe(), sinks = ?cfg.sinks, operators = ?cfg.operators,
        workers, processes = cfg.processes, process, resumed_from = ?resumed, "engine starting");
    let joined = Arc::new(AtomicBool::new(false));
    if cfg.processes > 1 {
        watch_join(&cfg, Arc::clone(&joined))?;
    }
    let thread = std::thread::Builder::new()
        .name("complaintflow-engine".into())
        .spawn(move || -> Result<(), EngineError> {
            let guards = timely::execute(config, move |worker| {
                joined.store(true, Ordering::SeqCst);
                let fresh = Arc::new(Resume::default());
                let shared = Shared {
                    state: &st,
                    stop: &sp,
                    control: &rx,
                    resume: &fresh,
                    candidates: &candidates,
                    barrier: &barrier,
                    fatal: &fa,
                };
                driver::run_worker(worker, &cfg, &source, &initial, &shared);
            })
            .map_err(EngineError::Start)?;
            for r in guards.join() {
                r.map_err(EngineError::Worker)?;
            }
            Ok(())
        })
        .map_err(|e| EngineError::Start(e.to_string()))?;
    Ok(EngineHandle {
        state,
        control: Mutex::new(tx),
        stop,
        thread,
        process,
        fatal,
        resumed,
    })
}

/// Timely connects a cluster's processes before any worker starts and waits for missing peers
/// forever. This watchdog turns a peer that never shows up (it failed to start, or its address
/// is wrong or unreachable) into one clear error after `join_timeout`, and ends the process
/// (exit code 70) as a lost peer does.
fn watch_join(cfg: &EngineConfig, joined: Arc<AtomicBool>) -> Result<(), EngineError> {
    let (me, n, limit) = (cfg.process, cfg.processes, cfg.join_timeout);
    let addresses = cluster_addresses(cfg).join(", ");
    std::thread::Builder::new()
        .name("complaintflow-join".into())
        .spawn(move || {
            let t0 = std::time::Instant::now();
            while !joined.load(Ordering::SeqCst) {
                if t0.elapsed() >= limit {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if joined.load(Ordering::SeqCst) {
                return;
            }
            tracing::error!(process = me, processes = n, waited_s = limit.as_secs_f64(),
                "the cluster did not form: a peer process never connected; stopping this process");
            eprintln!(
                "error: process {me} of {n} waited {limit:?} for its peers to connect ({addresses}) and \
                 stops. Start every process with the same --processes and hostfile, check that \
                 the addresses are reachable, or raise --join-timeout."
            );
            std::process::exit(70);
        })
        .map(drop)
        .map_err(|e| EngineError::Start(e.to_string()))
}

/// Reads every complete checkpoint of this process's state directory (when checkpoints and
/// resume are on), oldest first: the workers agree on the newest epoch every process of the
/// cluster has ([`driver`]) and resume from it.
fn read_resume(cfg: Option<&CheckpointConfig>) -> Result<Vec<Arc<Resume>>, EngineError> {
    let Some(cfg) = cfg.filter(|c| c.resume) else {
        return Ok(Vec::new());
    };
    let store = CheckpointStore::open(&cfg.state_dir, cfg.keep)
        .map_err(|e| EngineError::Config(e.to_string()))?;
    let all = store
        .all_valid()
        .map_err(|e| EngineError::Config(e.to_string()))?;
    if all.is_empty() {
        tracing::info!(dir = %store.dir().display(), "no checkpoint: starting fresh");
    }
    let mut out = Vec::with_capacity(all.len());
    for cp in all {
        let (seeds, warnings) = totals_from_json(&cp.aggregate_state, cp.epoch).map_err(|e| {
            EngineError::Config(format!(
                "checkpoint of epoch {} in {}: aggregate state: {e} (move the file away to resume from an older one)",
                cp.epoch,
                store.dir().display()
            ))
        })?;
        for w in warnings {
            tracing::warn!(epoch = cp.epoch, "checkpoint: {w}");
        }
        out.push(Arc::new(Resume {
            epoch: Some(cp.epoch),
            offsets: cp.offsets,
            seeds,
        }));
    }
    Ok(out)
}

/// What every worker of a process shares.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a> {
    pub(crate) state: &'a Arc<EngineState>,
    pub(crate) stop: &'a Arc<AtomicBool>,
    pub(crate) control: &'a Arc<Mutex<Option<Receiver<Control>>>>,
    /// Where this run resumes (set by the worker once the cluster agreed on it).
    pub(crate) resume: &'a Arc<Resume>,
    /// The checkpoints of this process's state directory, oldest first.
    pub(crate) candidates: &'a Arc<Vec<Arc<Resume>>>,
    /// The workers of this process, for the one step they take together at start (the first
    /// worker prepares the dedup logs for the agreed checkpoint, then all load them).
    pub(crate) barrier: &'a Arc<std::sync::Barrier>,
    pub(crate) fatal: &'a Fatal,
}

pub(crate) fn serving(u: &ModelUpdate, since_epoch: u64) -> ServingModel {
    let (role, fraction) = match u.role {
        ModelRole::Production => ("production", None),
        ModelRole::Candidate { fraction } => ("candidate", Some(fraction)),
    };
    ServingModel {
        version: u.model.version.clone(),
        role: role.to_string(),
        fraction,
        since_epoch,
        threshold: u.model.threshold,
    }
}

/// A failure that stops the engine, shared by its workers.
#[derive(Clone, Debug)]
pub(crate) enum FatalError {
    Source(String),
    Sink(String),
    Checkpoint(String),
}

impl FatalError {
    fn into_error(self) -> EngineError {
        match self {
            FatalError::Source(m) => EngineError::Source(m),
            FatalError::Sink(m) => EngineError::Sink(m),
            FatalError::Checkpoint(m) => EngineError::Config(m),
        }
    }
}

pub(crate) type Fatal = Arc<Mutex<Option<FatalError>>>;

/// Where a run resumes: read from the newest checkpoint at start.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// The checkpoint's epoch (`None`: no checkpoint, start fresh).
    pub(crate) epoch: Option<u64>,
    pub(crate) offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    pub(crate) seeds: Vec<Seed>,
}

/// Control messages broadcast to every worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Broadcasted {
    Stop,
    /// A checkpoint global worker 0 wrote (its JSON), for the other processes to keep too.
    Checkpoint {
        epoch: u64,
        json: Vec<u8>,
    },
    /// Process `process` is alive (sent every second by its first worker in a cluster).
    Heartbeat {
        process: usize,
    },
    /// Process `process` has finished its input and stops sending heartbeats.
    Leaving {
        process: usize,
    },
}

pub(crate) type TrainResult = Result<(Model, Option<f64>), String>;
